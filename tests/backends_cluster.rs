//! The Redis backend against a real Redis Cluster (three masters) and a real Redis Sentinel
//! setup (a master, a replica and a sentinel), all `redis-server` processes started by the test
//! on free loopback ports and killed when it ends (never skipped: without the binaries the test
//! fails and says what to install).
//!
//! The cache is process-wide, so every scenario that installs a `cache_config` runs inside the
//! one `#[test] fn cluster_and_sentinel`, one after the other; `config_keys` only parses.
//!
//! Run: `cargo test --release --test backends_cluster -- --nocapture`

mod common;

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::cache::{
    alice, assert_nothing_readable, checker, group_request, key_of, new_token, parse_cache_config,
    redis_set_px, requests, PREFIX,
};
use common::servers::{
    free_port, free_ports, redis_server_args, wait_until_every, ServerProcess, TempDir,
};
use fake_globus::{fixtures, FakeGlobus};
use serde_json::{json, Value};
use tokenchecker::internals::cache::Kind;
use tokenchecker::internals::config::{BackendConfig, RedisTopology};
use tokenchecker::internals::stats::stats;
use tokenchecker::Source;
use tokenchecker::{tc_status, Checker};

const MASTER_PASSWORD: &str = "s3cret-master-pw";

// ---- processes -------------------------------------------------------------------------------

/// A `redis-server` child process on its own port, killed when dropped.
struct Server {
    port: u16,
    process: Option<ServerProcess>,
}

impl Server {
    fn start(port: u16, args: &[String]) -> Server {
        let process = ServerProcess::start("redis-server", args, port, Duration::from_secs(20));
        Server {
            port,
            process: Some(process),
        }
    }

    fn kill(&mut self) {
        self.process = None;
    }

    /// A plain connection to this node (no cluster routing), with `password`, on `db`.
    fn conn(&self, password: Option<&str>, db: u32) -> redis::Connection {
        let auth = password.map(|p| format!(":{p}@")).unwrap_or_default();
        let client =
            redis::Client::open(format!("redis://{auth}127.0.0.1:{}/{db}", self.port)).unwrap();
        client
            .get_connection_with_timeout(Duration::from_secs(5))
            .unwrap()
    }

    /// Every key and value in database `db` (KEYS and GET on this node itself: no redirection).
    fn dump(&self, password: Option<&str>, db: u32) -> BTreeMap<String, Vec<u8>> {
        let mut c = self.conn(password, db);
        let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut c).unwrap();
        keys.into_iter()
            .filter_map(|k| {
                let v: Option<Vec<u8>> = redis::cmd("GET").arg(&k).query(&mut c).ok()?;
                v.map(|v| (k, v))
            })
            .collect()
    }
}

/// Where a set of `redis-server` processes lives: a scratch directory of its own and free ports.
struct Layout {
    dir: TempDir,
    ports: Vec<u16>,
}

impl Layout {
    fn new(name: &str, ports: usize) -> Layout {
        Layout {
            dir: TempDir::new(name),
            ports: free_ports(ports),
        }
    }

    /// A data node on port `i`: on loopback, not persisted, its files in the directory, with
    /// `extra` arguments.
    fn start_node(&self, i: usize, extra: &[&str]) -> Server {
        let port = self.ports[i];
        let mut args = redis_server_args(port);
        args.extend(["--dir".to_string(), self.dir.path("")]);
        args.extend(extra.iter().map(|a| a.to_string()));
        Server::start(port, &args)
    }
}

/// Cluster and sentinel state takes a while to change: [`wait_until_every`] 50 ms.
fn wait_until(what: &str, limit: Duration, done: impl FnMut() -> bool) {
    wait_until_every(what, limit, Duration::from_millis(50), done);
}

// ---- a Redis Cluster -------------------------------------------------------------------------

struct Cluster {
    nodes: Vec<Server>,
    _layout: Layout,
}

impl Cluster {
    /// Three masters (no replicas), every slot assigned, `cluster_state:ok` on every node.
    fn start() -> Cluster {
        // Ports 0 to 2 for the nodes, 3 to 5 for their cluster buses.
        let layout = Layout::new("cluster", 6);
        let nodes: Vec<Server> = (0..3)
            .map(|i| {
                layout.start_node(
                    i,
                    &[
                        "--cluster-enabled",
                        "yes",
                        "--cluster-port",
                        &layout.ports[i + 3].to_string(),
                        "--cluster-config-file",
                        &layout.dir.path(&format!("nodes-{}.conf", layout.ports[i])),
                        "--cluster-node-timeout",
                        "5000",
                    ],
                )
            })
            .collect();
        let mut create = Command::new("redis-cli");
        create.arg("--cluster").arg("create");
        for n in &nodes {
            create.arg(format!("127.0.0.1:{}", n.port));
        }
        let out = create
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .expect("cannot run `redis-cli` (apt-get install -y redis-tools)");
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let cluster = Cluster {
            nodes,
            _layout: layout,
        };
        wait_until(
            "cluster_state:ok on every node",
            Duration::from_secs(60),
            || {
                cluster.nodes.iter().all(|n| {
                    redis::cmd("CLUSTER")
                        .arg("INFO")
                        .query::<String>(&mut n.conn(None, 0))
                        .is_ok_and(|info| info.contains("cluster_state:ok"))
                })
            },
        );
        cluster
    }

    fn seed(&self, i: usize) -> String {
        format!("redis://127.0.0.1:{}", self.nodes[i].port)
    }

    /// A cluster-aware client of the test's own (as an operator's tool would be).
    fn client(&self) -> redis::cluster::ClusterConnection {
        redis::cluster::ClusterClient::new(vec![self.seed(0)])
            .unwrap()
            .get_connection()
            .unwrap()
    }

    /// Every key and value, per node (KEYS and GET on each node itself: no redirection).
    fn dump(&self) -> Vec<BTreeMap<String, Vec<u8>>> {
        self.nodes.iter().map(|n| n.dump(None, 0)).collect()
    }
}

// ---- a Redis Sentinel setup ------------------------------------------------------------------

struct SentinelSetup {
    /// The first master, then its replica.
    data: Vec<Server>,
    sentinel: Server,
    _layout: Layout,
}

impl SentinelSetup {
    /// A master and a replica (both with a password) and one sentinel monitoring the master
    /// (quorum 1), which knows the replica.
    fn start() -> SentinelSetup {
        let auth = [
            "--requirepass",
            MASTER_PASSWORD,
            "--masterauth",
            MASTER_PASSWORD,
        ];
        // Ports 0 and 1 for the master and the replica, 2 for the sentinel.
        let layout = Layout::new("sentinel", 3);
        let ports = &layout.ports;
        let master = layout.start_node(0, &[&auth[..], &["--dbfilename", "m.rdb"]].concat());
        let replica = layout.start_node(
            1,
            &[
                &auth[..],
                &[
                    "--dbfilename",
                    "r.rdb",
                    "--replicaof",
                    "127.0.0.1",
                    &ports[0].to_string(),
                ],
            ]
            .concat(),
        );
        let conf = layout.dir.path("sentinel.conf");
        std::fs::write(
            &conf,
            format!(
                "port {}\nbind 127.0.0.1\ndir {}\n\
                 sentinel monitor mymaster 127.0.0.1 {} 1\n\
                 sentinel auth-pass mymaster {MASTER_PASSWORD}\n\
                 sentinel down-after-milliseconds mymaster 2000\n\
                 sentinel failover-timeout mymaster 10000\n",
                ports[2],
                layout.dir.path(""),
                ports[0]
            ),
        )
        .unwrap();
        let sentinel = Server::start(ports[2], &[conf, "--sentinel".to_string()]);
        let setup = SentinelSetup {
            data: vec![master, replica],
            sentinel,
            _layout: layout,
        };
        setup.wait_for_master(0);
        setup.wait_for_replica(1);
        setup
    }

    fn port(&self, i: usize) -> u16 {
        self.data[i].port
    }

    fn sentinel(&self) -> redis::Connection {
        self.sentinel.conn(None, 0)
    }

    /// The master's port as the sentinel says it.
    fn master_port(&self) -> Option<u16> {
        let addr: Option<(String, String)> = redis::cmd("SENTINEL")
            .arg("GET-MASTER-ADDR-BY-NAME")
            .arg("mymaster")
            .query(&mut self.sentinel())
            .ok()?;
        addr.and_then(|(_, port)| port.parse().ok())
    }

    /// The node's own view of its role ("master" or "slave").
    fn role(&self, i: usize) -> Option<String> {
        let mut c = redis::Client::open(format!(
            "redis://:{MASTER_PASSWORD}@127.0.0.1:{}/0",
            self.port(i)
        ))
        .ok()?
        .get_connection_with_timeout(Duration::from_secs(2))
        .ok()?;
        let role: Vec<redis::Value> = redis::cmd("ROLE").query(&mut c).ok()?;
        match role.first()? {
            redis::Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
            redis::Value::SimpleString(s) => Some(s.clone()),
            _ => None,
        }
    }

    /// Whether the sentinel names node `i` as the master and the node agrees.
    fn is_master(&self, i: usize) -> bool {
        self.master_port() == Some(self.port(i)) && self.role(i).as_deref() == Some("master")
    }

    /// Asks the sentinel for a failover (refused, and ignored, while one is in progress or not
    /// yet possible).
    fn request_failover(&self) {
        let _: redis::RedisResult<()> = redis::cmd("SENTINEL")
            .arg("FAILOVER")
            .arg("mymaster")
            .query(&mut self.sentinel());
    }

    /// Until the sentinel names node `i` as the master and the node agrees.
    fn wait_for_master(&self, i: usize) {
        wait_until(
            &format!("the sentinel to name node {i} the master"),
            Duration::from_secs(60),
            || self.is_master(i),
        );
    }

    /// Until node `i` is a replica, linked to its master, and the sentinel knows it as a good one.
    fn wait_for_replica(&self, i: usize) {
        let port = self.port(i).to_string();
        wait_until(
            &format!("node {i} to be a replica known to the sentinel"),
            Duration::from_secs(60),
            || {
                if self.role(i).as_deref() != Some("slave") {
                    return false;
                }
                let replicas: Vec<BTreeMap<String, String>> = match redis::cmd("SENTINEL")
                    .arg("REPLICAS")
                    .arg("mymaster")
                    .query(&mut self.sentinel())
                {
                    Ok(r) => r,
                    Err(_) => return false,
                };
                replicas.iter().any(|r| {
                    r.get("port") == Some(&port)
                        && r.get("flags").is_some_and(|f| {
                            f == "slave" // not s_down, o_down, disconnected, …
                        })
                        && r.get("master-link-status").map(String::as_str) == Some("ok")
                })
            },
        );
    }

    /// Every key and value in database `db` of node `i`.
    fn dump(&self, i: usize, db: u32) -> BTreeMap<String, Vec<u8>> {
        self.data[i].dump(Some(MASTER_PASSWORD), db)
    }
}

// ---- checkers and tokens ---------------------------------------------------------------------

/// Checks `token` and asks for its groups and a dependent token: one entry of every kind.
fn use_fully(c: &Checker, token: &str) -> Vec<String> {
    let state = c.check(token).unwrap();
    assert_eq!(state.info.sub().as_deref(), Some(fixtures::ALICE_ID));
    c.authorize(token, &group_request(fixtures::GROUP_ADMIN))
        .unwrap();
    let transfer = c.dependent_token(token, fixtures::TRANSFER_SCOPE).unwrap();
    let groups = c.dependent_token(token, fixtures::GROUPS_SCOPE).unwrap();
    vec![transfer.access_token, groups.access_token]
}

/// No key or value says who anybody is, or holds a token; every key has the prefix; no lock
/// is left.
fn nothing_readable(entries: &BTreeMap<String, Vec<u8>>, prefix: &str, secrets: &[String]) {
    for key in entries.keys() {
        assert!(!key.ends_with(".lock"), "lock {key} released");
    }
    assert_nothing_readable(entries, prefix, secrets, &[fixtures::ALICE_EMAIL, "tok-"]);
}

// ---- the cluster scenarios -------------------------------------------------------------------

/// Entries go to the node owning their slot, sealed; another process view reads them back.
fn cluster_round_trip(fake: &FakeGlobus, cluster: &Cluster) {
    // A dead seed first: the client goes on to the next one and discovers the rest.
    let cache = json!({
        "backend": "dogpile.cache.redis",
        "cluster": true,
        "url": [format!("redis://127.0.0.1:{}", free_port()), cluster.seed(1)],
        "socket_timeout": 2,
        "timeout": 120,
    });
    let a = checker(fake, &cache);
    fake.reset();
    let mut tokens = vec![new_token(fake, "cluster-full", alice())];
    let mut secrets = use_fully(&a, &tokens[0]);
    // More tokens (at least two) until every node holds some entry (keys hash to slots all
    // over the cluster: a node is missed by 60 tokens with a chance of 3·(2/3)^60 ≈ 10^-10).
    while tokens.len() < 3 || cluster.dump().iter().any(BTreeMap::is_empty) {
        assert!(tokens.len() < 60, "entries never reached every node");
        let t = new_token(fake, "cluster", alice());
        assert_eq!(a.check(&t).unwrap().source, Source::Network);
        tokens.push(t);
    }
    let introspections = fake.counters().introspect;
    assert_eq!(introspections, tokens.len() as u64);

    let dump = cluster.dump();
    let mut all = BTreeMap::new();
    for (i, node) in dump.iter().enumerate() {
        eprintln!("node {i}: {} entries", node.len());
        assert!(!node.is_empty(), "node {i} holds entries");
        all.extend(node.clone());
    }
    secrets.extend(tokens.iter().cloned());
    nothing_readable(&all, PREFIX, &secrets);
    for t in &tokens {
        let key = key_of(fake, PREFIX, Kind::Introspection, t);
        assert_eq!(
            dump.iter().filter(|n| n.contains_key(&key)).count(),
            1,
            "{key} on exactly one node"
        );
    }
    for kind in Kind::ALL {
        assert!(
            all.contains_key(&key_of(fake, PREFIX, kind, &tokens[0])),
            "{kind:?}"
        );
    }

    // Another process's view (a new store, from a single seed): every answer from the cluster.
    let b = checker(
        fake,
        &json!({"backend": "redis", "cluster": true, "url": cluster.seed(2), "socket_timeout": 2}),
    );
    for t in &tokens {
        let s = b.check(t).unwrap();
        assert_eq!(s.source, Source::Redis, "{t}");
        assert_eq!(s.info.sub().as_deref(), Some(fixtures::ALICE_ID));
    }
    let auth = b
        .authorize(&tokens[0], &group_request(fixtures::GROUP_ADMIN))
        .unwrap();
    assert_eq!(auth.state.source, Source::Redis);
    b.dependent_token(&tokens[0], fixtures::TRANSFER_SCOPE)
        .unwrap();
    assert_eq!(
        requests(fake),
        (introspections, 1, 1),
        "the second view made no request"
    );

    // Purge reaches the node that holds the entry.
    b.purge(&tokens[1]).unwrap();
    let key = key_of(fake, PREFIX, Kind::Introspection, &tokens[1]);
    assert!(cluster.dump().iter().all(|n| !n.contains_key(&key)));
    assert_eq!(b.check(&tokens[1]).unwrap().source, Source::Network);
}

/// The fetch lock in a cluster: the value and its lock hash to different slots (nodes), and a
/// waiter polls both.
fn cluster_locks(fake: &FakeGlobus, cluster: &Cluster) {
    let cache = json!({"backend": "redis_cluster", "url": [cluster.seed(0)], "socket_timeout": 2});
    let mut raw = cluster.client();

    // A waiter sees the value another process stores while it holds the lock.
    let a = checker(fake, &cache);
    let tok = new_token(fake, "cluster-wait", alice());
    a.check(&tok).unwrap();
    let key = key_of(fake, PREFIX, Kind::Introspection, &tok);
    let lock = format!("{key}.lock");
    let value: Vec<u8> = redis::cmd("GET").arg(&key).query(&mut raw).unwrap();
    redis::cmd("DEL").arg(&key).query::<()>(&mut raw).unwrap();
    redis_set_px(&mut raw, &lock, "another-process", 30_000);
    let before = fake.counters().introspect;
    let waits = stats().backend_lock_waits.get();
    let b = Arc::new(checker(fake, &cache));
    let waiter = {
        let (b, tok) = (b.clone(), tok.clone());
        std::thread::spawn(move || b.check(&tok).map(|s| s.source))
    };
    wait_until("the waiter to wait", Duration::from_secs(20), || {
        stats().backend_lock_waits.get() > waits
    });
    std::thread::sleep(Duration::from_millis(100));
    redis_set_px(&mut raw, &key, value, 60_000);
    assert_eq!(waiter.join().unwrap().unwrap(), Source::Redis);
    assert_eq!(
        fake.counters().introspect,
        before,
        "the waiter took the value"
    );
    redis::cmd("DEL").arg(&lock).query::<()>(&mut raw).unwrap();

    // A lock left by a process that died: the waiter takes over once it expires, and releases
    // its own lock (the compare-and-delete script runs on the lock's node).
    let tok = new_token(fake, "cluster-dead-holder", alice());
    let lock = format!("{}.lock", key_of(fake, PREFIX, Kind::Introspection, &tok));
    let c = checker(fake, &cache);
    let before = fake.counters().introspect;
    // Timed from before the lock is set: the check cannot end before the lock expires.
    let t0 = Instant::now();
    redis_set_px(&mut raw, &lock, "a-process-that-died", 1000);
    assert_eq!(c.check(&tok).unwrap().source, Source::Network);
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(10),
        "waited {took:?} for the dead holder's lock"
    );
    assert_eq!(fake.counters().introspect, before + 1);
    let held: Option<String> = redis::cmd("GET").arg(&lock).query(&mut raw).unwrap();
    assert!(held.is_none(), "our own lock released");
    assert_eq!(
        checker(fake, &cache).check(&tok).unwrap().source,
        Source::Redis
    );
}

/// A cluster that isn't there: the checker works (from the authorization server), quickly.
fn cluster_absent(fake: &FakeGlobus) {
    let cache = json!({"backend": "redis", "cluster": true,
                       "url": format!("redis://127.0.0.1:{}", free_port()),
                       "socket_timeout": 0.5});
    let c = checker(fake, &cache);
    let errors = stats().backend_errors.get();
    let tok = new_token(fake, "cluster-absent", alice());
    let t0 = Instant::now();
    assert_eq!(c.check(&tok).unwrap().source, Source::Network);
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    assert!(stats().backend_errors.get() > errors);
}

// ---- the sentinel scenarios ------------------------------------------------------------------

const SENTINEL_DB: u32 = 2;
const SENTINEL_PREFIX: &str = "app:";

/// Entries land on the master the sentinels name (in the configured database); another
/// process view reads them back; after a failover (the old master demoted, then the new one
/// killed) the checker follows the new master, and no check fails meanwhile.
fn sentinel(fake: &FakeGlobus, setup: &mut SentinelSetup) {
    // A sentinel that isn't there first; the master's password (the sentinel has none:
    // `sentinel_kwargs` says so, as with dogpile); database 2; our own prefix.
    let cache = json!({
        "backend": "dogpile.cache.redis_sentinel",
        "sentinels": [["127.0.0.1", free_port()], format!("127.0.0.1:{}", setup.sentinel.port)],
        "service_name": "mymaster",
        "password": MASTER_PASSWORD,
        "sentinel_kwargs": {"password": null},
        "db": SENTINEL_DB,
        "prefix": SENTINEL_PREFIX,
        "socket_timeout": 2,
        "breaker_failures": 1,
        "breaker_cooldown": 0.2,
        "timeout": 300,
    });
    let a = checker(fake, &cache);
    fake.reset();
    let tok = new_token(fake, "sentinel", alice());
    let mut secrets = use_fully(&a, &tok);
    secrets.push(tok.clone());
    let on_master = setup.dump(0, SENTINEL_DB);
    for kind in Kind::ALL {
        assert!(
            on_master.contains_key(&key_of(fake, SENTINEL_PREFIX, kind, &tok)),
            "{kind:?} entry on the master, database {SENTINEL_DB}"
        );
    }
    nothing_readable(&on_master, SENTINEL_PREFIX, &secrets);
    assert!(
        setup.dump(0, 0).is_empty(),
        "nothing in database 0 of the master"
    );

    let b = checker(fake, &cache);
    assert_eq!(b.check(&tok).unwrap().source, Source::Redis);
    assert_eq!(
        b.authorize(&tok, &group_request(fixtures::GROUP_ADMIN))
            .unwrap()
            .state
            .source,
        Source::Redis
    );
    assert_eq!(requests(fake), (1, 1, 1), "the second view made no request");

    // The replica has everything before the failover.
    let key = key_of(fake, SENTINEL_PREFIX, Kind::Introspection, &tok);
    wait_until("replication", Duration::from_secs(30), || {
        setup.dump(1, SENTINEL_DB).contains_key(&key)
    });

    // Failover 1: forced while the master is up; it is demoted to a replica (writes to it now
    // fail with READONLY) and the checker must follow to the new master.
    setup.request_failover();
    setup.wait_for_master(1);
    setup.wait_for_replica(0);
    follows_master(fake, &a, setup, 1);
    // Entries made before the failover are still served, from the new master.
    assert_eq!(
        checker(fake, &cache).check(&tok).unwrap().source,
        Source::Redis
    );

    // Failover 2: the master is killed.
    setup.data[1].kill();
    wait_until(
        "the sentinel to promote node 0",
        Duration::from_secs(90),
        || {
            // Speeds the failover up.
            setup.request_failover();
            setup.is_master(0)
        },
    );
    follows_master(fake, &a, setup, 0);
}

/// Checks new tokens through `c` (the store that knew the old master) until their entries land
/// on node `i`; every check succeeds meanwhile.
fn follows_master(fake: &FakeGlobus, c: &Checker, setup: &SentinelSetup, i: usize) {
    let t0 = Instant::now();
    let mut n = 0;
    wait_until(
        &format!("entries on node {i}"),
        Duration::from_secs(60),
        || {
            n += 1;
            let tok = new_token(fake, "failover", alice());
            let s = c.check(&tok).expect("no check fails during a failover");
            assert_eq!(s.info.sub().as_deref(), Some(fixtures::ALICE_ID));
            let key = key_of(fake, SENTINEL_PREFIX, Kind::Introspection, &tok);
            setup.dump(i, SENTINEL_DB).contains_key(&key)
        },
    );
    eprintln!(
        "entries reached node {i} after {n} checks, {:?}",
        t0.elapsed()
    );
    // And it stays there: the next entries too, read back by another process view.
    let tok = new_token(fake, "after-failover", alice());
    c.check(&tok).unwrap();
    let key = key_of(fake, SENTINEL_PREFIX, Kind::Introspection, &tok);
    assert!(setup.dump(i, SENTINEL_DB).contains_key(&key));
}

// ---- configuration ---------------------------------------------------------------------------

/// The cluster and sentinel keys (parsing and building stores only: installs nothing).
#[test]
fn config_keys() {
    let redis_of = |cache: Value| match parse_cache_config(cache.clone()) {
        Ok(c) => match c.backend {
            BackendConfig::Redis(r) => r,
            other => panic!("{cache}: {other:?}"),
        },
        Err(e) => panic!("{cache}: {}", e.message),
    };

    // Cluster: one seed, a list, startup_nodes (dogpile.cache.redis_cluster), host/port.
    let r = redis_of(json!({"backend": "redis", "cluster": true, "url": "redis://h:1"}));
    assert_eq!(
        r.topology,
        RedisTopology::Cluster {
            seeds: vec!["redis://h:1".into()]
        }
    );
    let r = redis_of(json!({"backend": "dogpile.cache.redis", "cluster": true,
                            "url": ["redis://:pw@a:1", "redis://:pw@b:2"], "prefix": "x:"}));
    assert_eq!(
        r.topology,
        RedisTopology::Cluster {
            seeds: vec!["redis://:pw@a:1".into(), "redis://:pw@b:2".into()]
        }
    );
    assert_eq!(r.shared.prefix, "x:");
    let r = redis_of(json!({"backend": "dogpile.cache.redis_cluster",
                            "startup_nodes": [["a", 1], "b:2"], "password": "p w"}));
    assert_eq!(
        r.topology,
        RedisTopology::Cluster {
            seeds: vec!["redis://:p%20w@a:1".into(), "redis://:p%20w@b:2".into()]
        }
    );
    let r = redis_of(json!({"backend": "redis_cluster", "host": "h", "port": 7000, "db": 0}));
    assert_eq!(
        r.topology,
        RedisTopology::Cluster {
            seeds: vec!["redis://h:7000".into()]
        }
    );
    let r = redis_of(json!({"backend": "redis", "cluster": false, "url": "redis://h:1/3"}));
    assert_eq!(r.topology, RedisTopology::Single);

    // Sentinel: pairs and strings, defaults, dogpile's password rule and sentinel_kwargs.
    let r = redis_of(json!({"backend": "dogpile.cache.redis_sentinel",
                            "sentinels": [["s1", 26379], "s2:26380"], "db": 1,
                            "password": "pw", "username": "u",
                            "redis_expiration_time": 60, "distributed_lock": true,
                            "lock_timeout": 5, "socket_timeout": 0.5, "prefix": "p:",
                            "near_cache_ttl": 1, "breaker_failures": 2,
                            "thread_local_lock": false}));
    let RedisTopology::Sentinel(s) = &r.topology else {
        panic!("{r:?}")
    };
    assert_eq!(
        s.sentinels,
        vec![("s1".to_string(), 26379), ("s2".to_string(), 26380)]
    );
    assert_eq!(s.service_name, "mymaster");
    assert_eq!(s.db, 1);
    assert_eq!(
        (s.username.as_deref(), s.password.as_deref()),
        (Some("u"), Some("pw"))
    );
    assert_eq!(
        (
            s.sentinel_username.as_deref(),
            s.sentinel_password.as_deref()
        ),
        (Some("u"), Some("pw")),
        "as in dogpile, the sentinels get the master's credentials by default"
    );
    assert!(!format!("{r:?}").contains("\"pw\""), "no password in Debug");
    assert!(r.url.starts_with("redis://s1:26379"));
    let r = redis_of(
        json!({"backend": "redis_sentinel", "sentinels": ["[::1]:5000"],
                            "service_name": "cache", "password": "pw",
                            "sentinel_kwargs": {"password": null, "username": "su"}}),
    );
    let RedisTopology::Sentinel(s) = &r.topology else {
        panic!("{r:?}")
    };
    assert_eq!(s.sentinels, vec![("::1".to_string(), 5000)]);
    assert_eq!(s.service_name, "cache");
    assert_eq!(
        (
            s.sentinel_username.as_deref(),
            s.sentinel_password.as_deref()
        ),
        (Some("su"), None)
    );

    let bad = [
        // Cluster.
        (
            json!({"backend": "redis", "cluster": "yes", "url": "redis://h"}),
            "'cache_config.cluster'",
        ),
        (
            json!({"backend": "redis", "url": ["redis://a:1", "redis://b:2"]}),
            "\"cluster\": true",
        ),
        (
            json!({"backend": "redis", "cluster": true, "url": []}),
            "at least one",
        ),
        (
            json!({"backend": "redis", "cluster": true, "url": ["redis://a:1", 7]}),
            "'cache_config.url'",
        ),
        (
            json!({"backend": "redis", "cluster": true, "url": "unix:///tmp/r.sock"}),
            "redis:// or",
        ),
        (
            json!({"backend": "redis", "cluster": true,
                   "url": ["redis://a:1", "rediss://b:2"]}),
            "redis:// or all rediss://",
        ),
        (
            json!({"backend": "redis", "cluster": true, "url": "redis://a:1", "host": "h"}),
            "not both",
        ),
        (
            json!({"backend": "redis", "cluster": true, "url": "redis://a:1",
                   "password": "p"}),
            "not both",
        ),
        (
            json!({"backend": "redis", "cluster": true, "host": "h", "db": 3}),
            "database 0",
        ),
        (
            json!({"backend": "redis_cluster", "url": "redis://a:1",
                   "startup_nodes": [["b", 2]]}),
            "not both",
        ),
        (
            json!({"backend": "redis_cluster", "startup_nodes": [["b", 70000]]}),
            "startup_nodes",
        ),
        (
            json!({"backend": "redis_cluster", "cluster": false}),
            "'cache_config.cluster'",
        ),
        (
            json!({"backend": "redis", "startup_nodes": [["b", 2]]}),
            "'cache_config.startup_nodes'",
        ),
        (
            json!({"backend": "redis", "cluster": true, "url": "redis://a:1",
                   "connection_kwargs": {"ssl": true}}),
            "'cache_config.connection_kwargs'",
        ),
        (
            json!({"backend": "redis", "cluster": true, "url": "redis://a:1",
                   "clustr_mode": 1}),
            "'cache_config.clustr_mode'",
        ),
        // Sentinel.
        (
            json!({"backend": "redis_sentinel"}),
            "'cache_config.sentinels'",
        ),
        (
            json!({"backend": "redis_sentinel", "sentinels": []}),
            "at least one",
        ),
        (
            json!({"backend": "redis_sentinel", "sentinels": "s1:26379"}),
            "'cache_config.sentinels'",
        ),
        (
            json!({"backend": "redis_sentinel", "sentinels": [["s1"]]}),
            "'cache_config.sentinels'",
        ),
        (
            json!({"backend": "redis_sentinel", "sentinels": [["s1", "26379"]]}),
            "'cache_config.sentinels'",
        ),
        (
            json!({"backend": "redis_sentinel", "sentinels": ["s1"]}),
            "'cache_config.sentinels'",
        ),
        (
            json!({"backend": "redis_sentinel", "sentinels": ["s1:0"]}),
            "'cache_config.sentinels'",
        ),
        (
            json!({"backend": "redis_sentinel", "sentinels": ["s1:1"], "service_name": ""}),
            "'cache_config.service_name'",
        ),
        (
            json!({"backend": "redis_sentinel", "sentinels": ["s1:1"], "service_name": 3}),
            "'cache_config.service_name'",
        ),
        (
            json!({"backend": "redis_sentinel", "sentinels": ["s1:1"],
                   "url": "redis://h:1"}),
            "'cache_config.url'",
        ),
        (
            json!({"backend": "redis_sentinel", "sentinels": ["s1:1"], "host": "h"}),
            "'cache_config.host'",
        ),
        (
            json!({"backend": "redis_sentinel", "sentinels": ["s1:1"], "cluster": true}),
            "'cache_config.cluster'",
        ),
        (
            json!({"backend": "redis_sentinel", "sentinels": ["s1:1"],
                   "sentinel_kwargs": {"socket_timeout": 1}}),
            "'cache_config.sentinel_kwargs.socket_timeout'",
        ),
        (
            json!({"backend": "redis_sentinel", "sentinels": ["s1:1"],
                   "sentinel_kwargs": {"password": 5}}),
            "'cache_config.sentinel_kwargs.password'",
        ),
        (
            json!({"backend": "redis_sentinel", "sentinels": ["s1:1"],
                   "sentinel_kwargs": "password"}),
            "'cache_config.sentinel_kwargs'",
        ),
        (
            json!({"backend": "redis_sentinel", "sentinels": ["s1:1"],
                   "connection_kwargs": {}}),
            "'cache_config.connection_kwargs'",
        ),
        (
            json!({"backend": "redis_sentinel", "sentinels": ["s1:1"],
                   "ssl_ca_certs": "/ca.pem"}),
            "redis_sentinel",
        ),
        (
            json!({"backend": "redis_sentinel", "sentinels": ["s1:1"], "db": -1}),
            "'cache_config.db'",
        ),
        (
            json!({"backend": "redis_sentinel", "sentinels": ["s1:1"], "sentinal": 1}),
            "'cache_config.sentinal'",
        ),
        (
            json!({"backend": "redis", "url": "redis://h:1", "sentinels": ["s1:1"]}),
            "redis_sentinel",
        ),
        (
            json!({"backend": "redis_sentinal", "sentinels": ["s1:1"]}),
            "redis_sentinel",
        ),
    ];
    for (c, needle) in bad {
        let e = parse_cache_config(c.clone()).expect_err(&c.to_string());
        assert_eq!(e.status, tc_status::TC_INVALID_CONFIG);
        assert!(e.message.contains(needle), "{c}: {}", e.message);
        assert!(!e.message.contains("pw"), "{}", e.message);
    }

    // Building stores: never connects, so absent servers are fine; a seed with a database
    // other than 0 and seeds with different passwords are named.
    let store = |cache: Value| {
        tokenchecker::internals::cache::CacheStore::new(&parse_cache_config(cache).unwrap())
    };
    store(json!({"backend": "redis", "cluster": true,
                 "url": ["redis://127.0.0.1:9", "redis://127.0.0.1:10"]}))
    .unwrap();
    store(json!({"backend": "redis_sentinel", "sentinels": [["127.0.0.1", 9]]})).unwrap();
    let e = store(json!({"backend": "redis", "cluster": true, "url": "redis://127.0.0.1:9/2"}))
        .err()
        .unwrap();
    assert!(e.message.contains("database 0"), "{}", e.message);
    let e = store(json!({"backend": "redis", "cluster": true,
                         "url": ["redis://:pw1@127.0.0.1:9", "redis://:pw2@127.0.0.1:10"]}))
    .err()
    .unwrap();
    assert!(e.message.contains("cache_config.url"), "{}", e.message);
    assert!(!e.message.contains("pw1"), "{}", e.message);
}

#[test]
fn cluster_and_sentinel() {
    let fake = FakeGlobus::start();
    let step = |name: &str| eprintln!("--- {name}");

    step("cluster: start");
    let cluster = Cluster::start();
    step("cluster: round trip, entries spread over the nodes");
    cluster_round_trip(&fake, &cluster);
    step("cluster: fetch locks across slots");
    cluster_locks(&fake, &cluster);
    step("cluster: absent");
    cluster_absent(&fake);
    drop(cluster);

    step("sentinel: start");
    let mut setup = SentinelSetup::start();
    step("sentinel: round trip, failovers");
    sentinel(&fake, &mut setup);
}
