//! The shared cache backends against real `redis-server` and `memcached` processes, started by
//! the test on free loopback ports (never skipped: without the binaries the test fails and says
//! what to install).
//!
//! The cache is process-wide, so every scenario that installs a `cache_config` runs inside the
//! one `#[test] fn backends`, one after the other. `child_process` is not a test of its own: the
//! fleet scenario runs this test binary again as a second OS process with `TC_BACKENDS_CHILD` set,
//! and only then does it do anything.
//!
//! Run: `cargo test --test backends -- --nocapture`

#[path = "../common/mod.rs"]
mod common;

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::cache::{
    alice, assert_nothing_readable, bob, group_request, key_of, new_token, parse_cache_config,
    redis_set_px, requests, PREFIX,
};
use common::merge;
use common::servers::{free_port, redis_server_args, wait_until, Link, ServerProcess, TempDir};
use fake_globus::{fixtures, FakeGlobus};
use serde_json::{json, Value};
use tokenchecker::cache::{Kind, Source};
use tokenchecker::stats::stats;
use tokenchecker::{Checker, Config};

const CHILD_ENV: &str = "TC_BACKENDS_CHILD";

// ---- servers ---------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq)]
enum Backend {
    Redis,
    Memcached,
}

impl Backend {
    fn source(self) -> Source {
        match self {
            Backend::Redis => Source::Redis,
            Backend::Memcached => Source::Memcached,
        }
    }
}

/// A redis-server or memcached child process on its own port (killed when dropped).
struct Server {
    backend: Backend,
    port: u16,
    process: Option<ServerProcess>,
}

impl Server {
    fn start(backend: Backend) -> Server {
        let mut s = Server {
            backend,
            port: free_port(),
            process: None,
        };
        s.spawn();
        s
    }

    fn spawn(&mut self) {
        let port = self.port.to_string();
        let (bin, mut args) = match self.backend {
            Backend::Redis => ("redis-server", redis_server_args(self.port)),
            Backend::Memcached => (
                "memcached",
                ["-p", &port, "-l", "127.0.0.1", "-U", "0"]
                    .map(String::from)
                    .to_vec(),
            ),
        };
        // memcached refuses to run as root unless told which user to be.
        if self.backend == Backend::Memcached && unsafe { libc::geteuid() } == 0 {
            args.extend(["-u", "root"].map(String::from));
        }
        self.process = Some(ServerProcess::start(
            bin,
            &args,
            self.port,
            Duration::from_secs(10),
        ));
    }

    fn kill(&mut self) {
        self.process = None;
    }

    fn url(&self) -> Value {
        match self.backend {
            Backend::Redis => format!("redis://127.0.0.1:{}/0", self.port).into(),
            Backend::Memcached => format!("127.0.0.1:{}", self.port).into(),
        }
    }

    /// A `cache_config` for this server, with `extra` merged in.
    fn cache(&self, extra: Value) -> Value {
        let mut c = json!({
            "backend": match self.backend {
                Backend::Redis => "dogpile.cache.redis",
                Backend::Memcached => "dogpile.cache.memcached",
            },
            "url": self.url(),
        });
        merge(&mut c, extra);
        c
    }

    // Raw access, as an operator with a dump tool would have it.

    fn raw_get(&self, key: &str) -> Option<Vec<u8>> {
        match self.backend {
            Backend::Redis => {
                let mut conn = self.redis();
                let kind: String = redis::cmd("TYPE").arg(key).query(&mut conn).unwrap();
                if kind == "set" {
                    // The identity indexes: their members, one per line.
                    let members: Vec<String> =
                        redis::cmd("SMEMBERS").arg(key).query(&mut conn).unwrap();
                    return Some(members.join("\n").into_bytes());
                }
                redis::cmd("GET").arg(key).query(&mut conn).unwrap()
            }
            Backend::Memcached => mc_get(self.port, key),
        }
    }

    fn raw_set(&self, key: &str, value: &[u8]) {
        match self.backend {
            Backend::Redis => redis_set_px(&mut self.redis(), key, value, 30_000),
            Backend::Memcached => mc_set(self.port, key, value, 30),
        }
    }

    /// Every key and value in the server.
    fn dump(&self) -> Vec<(String, Vec<u8>)> {
        let keys: Vec<String> = match self.backend {
            Backend::Redis => redis::cmd("KEYS")
                .arg("*")
                .query(&mut self.redis())
                .unwrap(),
            Backend::Memcached => mc_keys(self.port),
        };
        keys.into_iter()
            .filter_map(|k| self.raw_get(&k).map(|v| (k, v)))
            .collect()
    }

    fn redis(&self) -> redis::Connection {
        redis::Client::open(format!("redis://127.0.0.1:{}/0", self.port))
            .unwrap()
            .get_connection()
            .unwrap()
    }
}

// A raw memcached text-protocol client for the dump/tamper checks (the library uses
// async-memcached; this deliberately shares nothing with it).

fn mc_conn(port: u16) -> BufReader<TcpStream> {
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    BufReader::new(s)
}

fn read_line(r: &mut BufReader<TcpStream>) -> String {
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    line.trim_end().to_string()
}

fn mc_get(port: u16, key: &str) -> Option<Vec<u8>> {
    let mut r = mc_conn(port);
    write!(r.get_mut(), "get {key}\r\n").unwrap();
    let header = read_line(&mut r);
    if header == "END" {
        return None;
    }
    let len: usize = header
        .split(' ')
        .nth(3)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("unexpected memcached answer {header:?}"));
    let mut data = vec![0; len + 2];
    r.read_exact(&mut data).unwrap();
    data.truncate(len);
    assert_eq!(read_line(&mut r), "END");
    Some(data)
}

fn mc_set(port: u16, key: &str, value: &[u8], ttl: u32) {
    let mut r = mc_conn(port);
    let s = r.get_mut();
    write!(s, "set {key} 0 {ttl} {}\r\n", value.len()).unwrap();
    s.write_all(value).unwrap();
    s.write_all(b"\r\n").unwrap();
    assert_eq!(read_line(&mut r), "STORED");
}

fn mc_keys(port: u16) -> Vec<String> {
    let mut r = mc_conn(port);
    write!(r.get_mut(), "lru_crawler metadump all\r\n").unwrap();
    let mut keys = Vec::new();
    loop {
        let line = read_line(&mut r);
        if line == "END" || line.is_empty() {
            break;
        }
        assert!(
            !line.starts_with("BUSY") && !line.starts_with("ERROR"),
            "{line}"
        );
        if let Some(k) = line.split(' ').find_map(|f| f.strip_prefix("key=")) {
            keys.push(urlencoding::decode(k).unwrap().into_owned());
        }
    }
    keys
}

// ---- checkers ------------------------------------------------------------------------------

/// A checker that installs `cache` as the process-wide cache (a fresh store: a process view of
/// the backend with nothing in memory).
fn checker(fake: &FakeGlobus, cache: Value) -> Checker {
    common::checker(fake, json!({ "cache_config": cache }))
}

/// A checker that uses whatever cache is current.
fn plain_checker(fake: &FakeGlobus) -> Checker {
    common::checker(fake, json!({}))
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

// ---- the scenarios -------------------------------------------------------------------------

/// Every entry kind goes to the backend and comes back to another process view, sealed.
fn round_trip(fake: &FakeGlobus, server: &Server) -> Vec<String> {
    let cache = server.cache(json!({"timeout": 60}));
    let a = checker(fake, cache.clone());
    let tok = new_token(fake, "rt", alice());
    fake.reset();

    let first = a.check(&tok).unwrap();
    assert_eq!(first.source, Source::Network);
    std::thread::sleep(Duration::from_millis(60));

    // Another process's view: a new store, nothing in memory.
    let b = checker(fake, cache.clone());
    let second = b.check(&tok).unwrap();
    assert_eq!(second.source, server.backend.source());
    assert_eq!(*second.info, *first.info);
    assert!(
        second.age >= Duration::from_millis(50),
        "the age survives the trip: {:?}",
        second.age
    );
    assert_eq!(fake.counters().introspect, 1);

    // Groups and dependent tokens.
    let admin = group_request(fixtures::GROUP_ADMIN);
    let auth = a.authorize(&tok, &admin).unwrap();
    assert_eq!(
        auth.matched,
        format!("urn:globus:groups:id:{}", fixtures::GROUP_ADMIN)
    );
    let transfer = a.dependent_token(&tok, fixtures::TRANSFER_SCOPE).unwrap();
    let groups_token = a.dependent_token(&tok, fixtures::GROUPS_SCOPE).unwrap();
    assert_eq!(requests(fake), (1, 1, 1));
    for kind in Kind::ALL {
        assert!(
            server.raw_get(&key_of(fake, PREFIX, kind, &tok)).is_some(),
            "{kind:?} entry in {:?}",
            server.backend
        );
        let lock = format!("{}.lock", key_of(fake, PREFIX, kind, &tok));
        assert!(server.raw_get(&lock).is_none(), "lock released");
    }

    let c = checker(fake, cache);
    let auth = c.authorize(&tok, &admin).unwrap();
    assert_eq!(auth.state.source, server.backend.source());
    assert!(c
        .authorize(&tok, &group_request(fixtures::GROUP_PENDING))
        .is_err());
    let again = c.dependent_token(&tok, fixtures::TRANSFER_SCOPE).unwrap();
    assert_eq!(again.access_token, transfer.access_token);
    assert_eq!(
        requests(fake),
        (1, 1, 1),
        "everything came from {:?}",
        server.backend
    );

    // Purge removes every kind from the backend.
    let other = new_token(fake, "purge", alice());
    c.authorize(&other, &admin).unwrap();
    assert!(server
        .raw_get(&key_of(fake, PREFIX, Kind::Groups, &other))
        .is_some());
    c.purge(&other).unwrap();
    for kind in Kind::ALL {
        assert!(server
            .raw_get(&key_of(fake, PREFIX, kind, &other))
            .is_none());
    }
    assert_eq!(c.check(&other).unwrap().source, Source::Network);

    vec![tok, other, transfer.access_token, groups_token.access_token]
}

/// Nothing in a raw dump of the backend says who anybody is.
fn nothing_readable(server: &Server, secrets: &[String]) {
    let dump = server.dump();
    assert!(dump.len() >= 3, "{:?} holds the entries", server.backend);
    assert_nothing_readable(
        dump,
        PREFIX,
        secrets,
        &[fixtures::BOB_ID, fixtures::BOB_USERNAME],
    );
}

/// Altered values and values copied to another key are rejected, and the check stays right.
fn tampering(fake: &FakeGlobus, server: &Server) {
    let cache = server.cache(json!({}));
    let c = checker(fake, cache.clone());
    let a = new_token(fake, "tamper-a", alice());
    let b = new_token(fake, "tamper-b", bob());
    c.check(&a).unwrap();
    c.check(&b).unwrap();
    let ka = key_of(fake, PREFIX, Kind::Introspection, &a);
    let kb = key_of(fake, PREFIX, Kind::Introspection, &b);

    // Altered.
    let mut v = server.raw_get(&ka).unwrap();
    let mid = v.len() / 2;
    v[mid] ^= 0x20;
    server.raw_set(&ka, &v);
    let rejected = stats().backend_rejected_entries.get();
    let before = fake.counters().introspect;
    let s = checker(fake, cache.clone()).check(&a).unwrap();
    assert_eq!(s.source, Source::Network);
    assert_eq!(s.info.sub().as_deref(), Some(fixtures::ALICE_ID));
    assert!(stats().backend_rejected_entries.get() > rejected);
    assert_eq!(fake.counters().introspect, before + 1);

    // Garbage.
    server.raw_set(&ka, b"{\"active\": true, \"sub\": \"mallory\"}");
    let rejected = stats().backend_rejected_entries.get();
    let s = checker(fake, cache.clone()).check(&a).unwrap();
    assert_eq!(s.source, Source::Network);
    assert_eq!(s.info.sub().as_deref(), Some(fixtures::ALICE_ID));
    assert!(stats().backend_rejected_entries.get() > rejected);

    // Alice's (valid) entry copied over Bob's key: Bob must not become Alice.
    let alice_entry = server.raw_get(&ka).unwrap();
    server.raw_set(&kb, &alice_entry);
    let rejected = stats().backend_rejected_entries.get();
    let s = checker(fake, cache.clone()).check(&b).unwrap();
    assert_eq!(s.source, Source::Network);
    assert_eq!(s.info.sub().as_deref(), Some(fixtures::BOB_ID));
    assert!(stats().backend_rejected_entries.get() > rejected);

    // Alice's introspection copied to her own groups key: rejected too.
    let kg = key_of(fake, PREFIX, Kind::Groups, &a);
    server.raw_set(&kg, &alice_entry);
    let rejected = stats().backend_rejected_entries.get();
    let c = checker(fake, cache);
    c.authorize(&a, &group_request(fixtures::GROUP_MEMBER))
        .unwrap();
    assert!(stats().backend_rejected_entries.get() > rejected);
    // And the refetched values are good again.
    assert_eq!(c.check(&a).unwrap().source, server.backend.source());
}

/// The TTL set on the server never exceeds the entry's own, nor the configured caps.
fn ttls(fake: &FakeGlobus, redis: &Server, memcached: &Server) {
    // Redis: an entry's own TTL (the token expires in 20 s) and the timeout (30 s).
    let c = checker(fake, redis.cache(json!({"timeout": 30})));
    let short = new_token(fake, "ttl-short", json!({"exp_in": 20}));
    let long = new_token(fake, "ttl-long", alice());
    c.check(&short).unwrap();
    c.authorize(&long, &group_request(fixtures::GROUP_ADMIN))
        .unwrap();
    let pttl = |token: &str, kind: Kind| -> i64 {
        redis::cmd("PTTL")
            .arg(key_of(fake, PREFIX, kind, token))
            .query(&mut redis.redis())
            .unwrap()
    };
    let p = pttl(&short, Kind::Introspection);
    assert!(p > 0 && p <= 20_000, "PTTL {p}");
    for kind in Kind::ALL {
        // Dependent tokens live two days, but no entry outlives `timeout`.
        let p = pttl(&long, kind);
        assert!(p > 20_000 && p <= 30_000, "{kind:?} PTTL {p}");
    }
    // redis_expiration_time caps it further.
    let c = checker(
        fake,
        redis.cache(json!({"timeout": 30, "redis_expiration_time": 5})),
    );
    let capped = new_token(fake, "ttl-capped", alice());
    c.check(&capped).unwrap();
    let p = pttl(&capped, Kind::Introspection);
    assert!(p > 0 && p <= 5_000, "PTTL {p}");

    // Memcached: gone from the server once the entry's TTL has passed.
    let c = checker(fake, memcached.cache(json!({"timeout": 2})));
    let tok = new_token(fake, "ttl-mc", alice());
    c.check(&tok).unwrap();
    let key = key_of(fake, PREFIX, Kind::Introspection, &tok);
    assert!(memcached.raw_get(&key).is_some());
    assert_eq!(c.check(&tok).unwrap().source, Source::Memcached);
    std::thread::sleep(Duration::from_millis(3200));
    assert!(memcached.raw_get(&key).is_none(), "expired on the server");
    assert_eq!(c.check(&tok).unwrap().source, Source::Network);
    // memcached_expire_time caps it.
    let c = checker(
        fake,
        memcached.cache(json!({"timeout": 60, "memcached_expire_time": 1})),
    );
    let tok = new_token(fake, "ttl-mc2", alice());
    c.check(&tok).unwrap();
    std::thread::sleep(Duration::from_millis(2200));
    assert_eq!(c.check(&tok).unwrap().source, Source::Network);
}

/// The near cache answers a hot token without a round trip; purge clears both layers.
fn near_cache(fake: &FakeGlobus, server: &Server) {
    let cache = server.cache(json!({"near_cache_ttl": 1, "near_cache_max_entries": 100}));
    let c = checker(fake, cache.clone());
    let tok = new_token(fake, "near", alice());
    assert_eq!(c.check(&tok).unwrap().source, Source::Network);
    assert_eq!(c.check(&tok).unwrap().source, Source::Near);
    assert_eq!(
        c.try_check(&tok).unwrap().unwrap().unwrap().source,
        Source::Near
    );

    let d = checker(fake, cache);
    assert_eq!(d.check(&tok).unwrap().source, server.backend.source());
    assert_eq!(d.check(&tok).unwrap().source, Source::Near);
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(
        d.check(&tok).unwrap().source,
        server.backend.source(),
        "the near entry expired after near_cache_ttl"
    );

    d.purge(&tok).unwrap();
    assert!(server
        .raw_get(&key_of(fake, PREFIX, Kind::Introspection, &tok))
        .is_none());
    assert_eq!(d.check(&tok).unwrap().source, Source::Network);
}

/// A lock left by a process that died: the waiter takes over once it expires.
fn dead_lock_holder(fake: &FakeGlobus, server: &Server) {
    let c = checker(fake, server.cache(json!({"lock_timeout": 3})));
    let tok = new_token(fake, "dead-holder", alice());
    let lock = format!("{}.lock", key_of(fake, PREFIX, Kind::Introspection, &tok));
    let held_for = match server.backend {
        Backend::Redis => {
            redis_set_px(&mut server.redis(), &lock, "a-process-that-died", 1000);
            Duration::from_millis(900)
        }
        // Memcached counts whole seconds: a 2 s lock goes within 1 to 2 s.
        Backend::Memcached => {
            mc_set(server.port, &lock, b"a-process-that-died", 2);
            Duration::from_millis(900)
        }
    };
    let waits = stats().backend_lock_waits.get();
    let before = fake.counters().introspect;
    let t0 = Instant::now();
    let s = c.check(&tok).unwrap();
    let took = t0.elapsed();
    assert_eq!(s.source, Source::Network);
    assert!(
        took >= held_for && took < Duration::from_secs(4),
        "waited {took:?} for the dead holder's lock"
    );
    assert!(stats().backend_lock_waits.get() > waits);
    assert_eq!(fake.counters().introspect, before + 1);
    assert!(server.raw_get(&lock).is_none(), "our own lock released");
    assert_eq!(c.check(&tok).unwrap().source, server.backend.source());
}

/// `rediss://` against a TLS-only redis-server, trusting a private CA (`ssl_ca_certs`).
fn tls(fake: &FakeGlobus) {
    let dir = TempDir::new("backends-tls");
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir.dir())
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| {
                panic!("cannot run openssl ({e}): install it (apt-get install -y openssl)")
            });
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    openssl(
        &[
            &["req", "-x509"][..],
            &ec,
            &[
                "-keyout",
                "ca.key",
                "-out",
                "ca.crt",
                "-days",
                "2",
                "-subj",
                "/CN=tokenchecker test CA",
            ],
        ]
        .concat(),
    );
    openssl(
        &[
            &["req"][..],
            &ec,
            &[
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
                "-subj",
                "/CN=localhost",
            ],
        ]
        .concat(),
    );
    std::fs::write(
        dir.path("ext.cnf"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]);
    let port = free_port();
    let mut args = redis_server_args(0); // no plain port: TLS only
    args.extend(
        [
            "--tls-port",
            &port.to_string(),
            "--tls-cert-file",
            &dir.path("server.crt"),
            "--tls-key-file",
            &dir.path("server.key"),
            "--tls-ca-cert-file",
            &dir.path("ca.crt"),
            "--tls-auth-clients",
            "no",
        ]
        .map(String::from),
    );
    let _server = ServerProcess::start("redis-server", &args, port, Duration::from_secs(10));

    let cache = json!({
        "backend": "redis",
        "url": format!("rediss://localhost:{port}/0"),
        "ssl_ca_certs": dir.path("ca.crt"),
    });
    let c = checker(fake, cache.clone());
    let tok = new_token(fake, "tls", alice());
    assert_eq!(c.check(&tok).unwrap().source, Source::Network);
    let s = checker(fake, cache).check(&tok).unwrap();
    assert_eq!(s.source, Source::Redis, "over TLS");

    // Without the CA the server's certificate is not trusted: checks still work, uncached.
    let errors = stats().backend_errors.get();
    let c = checker(
        fake,
        json!({"backend": "redis", "url": format!("rediss://localhost:{port}/0")}),
    );
    assert_eq!(c.check(&tok).unwrap().source, Source::Network);
    assert!(stats().backend_errors.get() > errors);
}

/// Two memcached servers: keys are spread over both, and each process finds them.
fn memcached_spread(fake: &FakeGlobus) {
    let one = Server::start(Backend::Memcached);
    let two = Server::start(Backend::Memcached);
    let cache = json!({"backend": "memcached", "url": [one.url(), two.url()]});
    let c = checker(fake, cache.clone());
    let tokens: Vec<String> = (0..24)
        .map(|i| new_token(fake, &format!("spread{i}"), bob()))
        .collect();
    for t in &tokens {
        c.check(t).unwrap();
    }
    // Entries only (not the identity index, `tc:x:…`).
    let entries = |s: &Server| {
        s.dump()
            .iter()
            .filter(|(k, _)| !k.starts_with("tc:x:"))
            .count()
    };
    let (n1, n2) = (entries(&one), entries(&two));
    assert_eq!(n1 + n2, tokens.len());
    assert!(n1 > 0 && n2 > 0, "keys spread: {n1} + {n2}");
    let d = checker(fake, cache);
    for t in &tokens {
        assert_eq!(d.check(t).unwrap().source, Source::Memcached);
    }
}

/// Two OS processes sharing one backend make one introspection for a token both check at once.
fn fleet(fake: &FakeGlobus, server: &Server) {
    fake.reset();
    fake.set_fault(json!({"endpoint": "introspect", "latency_ms": 400}));
    let tok = new_token(fake, "fleet", alice());
    let cache = server.cache(json!({}));
    let config = common::config(fake, json!({ "cache_config": cache.clone() }));
    let start_at = unix_ms() + 1500;
    let spec = json!({"config": config, "token": tok, "start_at": start_at, "threads": 3});
    let child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_process",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, spec.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();

    let c = Arc::new(checker(fake, cache));
    let waits = stats().backend_lock_waits.get();
    let here = run_at(&c, &tok, start_at, 3);
    let waits = stats().backend_lock_waits.get() - waits;

    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "the child process failed");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find_map(|l| l.split_once("CHILD_RESULT ").map(|(_, r)| r))
        .unwrap_or_else(|| panic!("no result from the child: {stdout}"));
    let there: Value = serde_json::from_str(line).unwrap();
    fake.clear_faults();

    let introspections = fake.counters().introspect;
    assert_eq!(
        introspections, 1,
        "one introspection for the fleet (here {here:?}, there {there})"
    );
    let mut sources: Vec<String> = here.iter().map(|s| s.name().to_string()).collect();
    sources.extend(
        there["sources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_string()),
    );
    assert_eq!(
        sources.iter().filter(|s| *s == "network").count(),
        1,
        "{sources:?}"
    );
    assert!(
        sources.iter().any(|s| s == server.backend.source().name()),
        "the other process got it from the backend: {sources:?}"
    );
    let total_waits = waits + there["lock_waits"].as_u64().unwrap();
    assert!(
        total_waits >= 1,
        "the processes overlapped and one waited for the other's lock"
    );
}

/// Checks `token` from `threads` threads at the unix instant `start_at` (ms); their sources.
fn run_at(c: &Arc<Checker>, token: &str, start_at: u64, threads: usize) -> Vec<Source> {
    let now = unix_ms();
    if start_at > now {
        std::thread::sleep(Duration::from_millis(start_at - now));
    }
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let c = c.clone();
            let token = token.to_string();
            std::thread::spawn(move || c.check(&token).unwrap().source)
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

/// The backends' configuration keys (parsing only: installs nothing).
#[test]
fn config_keys() {
    let ok = [
        json!({"backend": "dogpile.cache.redis", "url": "redis://h:1/2", "socket_timeout": 0.5,
               "distributed_lock": false, "lock_timeout": 3, "redis_expiration_time": 60,
               "prefix": "app:", "near_cache_ttl": 1, "near_cache_max_entries": 10,
               "lock_sleep": 0.01, "breaker_failures": 5, "breaker_cooldown": 1,
               "thread_local_lock": false}),
        json!({"backend": "redis", "host": "h", "port": 1, "db": 3, "password": "p w"}),
        json!({"backend": "redis", "url": "rediss://h:1/0", "ssl_ca_certs": "/ca.pem",
               "ssl_certfile": "/c.pem", "ssl_keyfile": "/k.pem"}),
        json!({"backend": "dogpile.cache.memcached", "url": ["a:1", "b:2"], "distributed_lock": true,
               "memcached_expire_time": 30, "prefix": "p:", "timeout": 10, "dead_retry": 5,
               "lock_timeout": 2, "socket_timeout": 0.1, "near_cache_ttl": 0.5}),
        json!({"backend": "memcached", "url": "a:1"}),
    ];
    for c in ok {
        parse_cache_config(c.clone()).unwrap_or_else(|e| panic!("{c}: {}", e.message));
    }
    let bad = [
        (
            json!({"backend": "redis", "lock_timout": 3}),
            "'cache_config.lock_timout'",
        ),
        (json!({"backend": "redis", "url": "http://h"}), "redis://"),
        (
            json!({"backend": "redis", "url": "redis://h", "host": "h"}),
            "not both",
        ),
        (
            json!({"backend": "redis", "socket_timeout": 0}),
            "socket_timeout",
        ),
        (
            json!({"backend": "redis", "url": "redis://h", "ssl_ca_certs": "/x"}),
            "rediss://",
        ),
        (
            json!({"backend": "redis", "url": "rediss://h", "ssl_certfile": "/x"}),
            "go together",
        ),
        (json!({"backend": "memcached", "url": []}), "at least one"),
        (json!({"backend": "memcached", "url": "a b:1"}), "host:port"),
        (json!({"backend": "memcached", "prefix": "a b"}), "prefix"),
        (
            json!({"backend": "memcached", "dead_retry": 1, "breaker_cooldown": 1}),
            "dead_retry",
        ),
        (
            json!({"backend": "memcached", "redis_expiration_time": 1}),
            "redis_expiration_time",
        ),
        (
            json!({"backend": "redis", "near_cache_max_entries": 0}),
            "near_cache_max_entries",
        ),
    ];
    for (c, needle) in bad {
        let e = parse_cache_config(c.clone()).expect_err(&c.to_string());
        assert!(e.message.contains(needle), "{c}: {}", e.message);
    }
    // Unreadable TLS files are named when the store is built (the checker is created).
    let c = parse_cache_config(
        json!({"backend": "redis", "url": "rediss://h:1", "ssl_ca_certs": "/nonexistent/ca.pem"}),
    )
    .unwrap();
    let e = tokenchecker::cache::CacheStore::new(&c)
        .err()
        .expect("unreadable CA file");
    assert!(e.message.contains("ssl_ca_certs"), "{}", e.message);
    // A store for a backend that isn't there builds at once.
    let c =
        parse_cache_config(json!({"backend": "redis", "url": "redis://127.0.0.1:9/0"})).unwrap();
    tokenchecker::cache::CacheStore::new(&c).unwrap();
    let c = parse_cache_config(json!({"backend": "memcached", "url": "127.0.0.1:9"})).unwrap();
    tokenchecker::cache::CacheStore::new(&c).unwrap();
}

/// The other process of [`fleet`]; does nothing unless started by it.
#[test]
fn child_process() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let spec: Value = serde_json::from_str(&spec).unwrap();
    let c = Arc::new(Checker::new(Config::from_value(&spec["config"]).unwrap()).unwrap());
    if let Some(identity) = spec["purge_identity"].as_str() {
        c.purge_identity(identity).unwrap();
        println!("CHILD_RESULT {}", json!({"purged": identity}));
        return;
    }
    let sources = run_at(
        &c,
        spec["token"].as_str().unwrap(),
        spec["start_at"].as_u64().unwrap(),
        spec["threads"].as_u64().unwrap() as usize,
    );
    let names: Vec<&str> = sources.iter().map(|s| s.name()).collect();
    println!(
        "CHILD_RESULT {}",
        json!({"sources": names, "lock_waits": stats().backend_lock_waits.get()})
    );
}

/// `tc_purge_identity` in one process removes the identity's entries from the backend for the
/// whole fleet: another process (this test binary run again) purges Alice; here, her tokens are
/// then fetched again while Bob's is still served from the backend.
fn purge_identity_fleet(fake: &FakeGlobus, server: &Server) {
    fake.reset();
    let cache = server.cache(json!({}));
    let c = checker(fake, cache.clone());
    let alice1 = new_token(fake, "purge-fleet-a1", alice());
    let alice2 = new_token(fake, "purge-fleet-a2", alice());
    let bob = new_token(fake, "purge-fleet-b", bob());
    for t in [&alice1, &alice2, &bob] {
        assert_eq!(c.check(t).unwrap().source, Source::Network);
        assert_eq!(c.check(t).unwrap().source, server.backend.source());
    }
    c.authorize(&alice1, &group_request(fixtures::GROUP_MEMBER))
        .unwrap();
    let config = common::config(fake, json!({ "cache_config": cache }));
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_process", "--nocapture", "--test-threads=1"])
        .env(
            CHILD_ENV,
            json!({"config": config, "purge_identity": format!("urn:globus:auth:identity:{}", fixtures::ALICE_ID2)})
                .to_string(),
        )
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    assert!(out.status.success(), "the child process failed");
    assert!(String::from_utf8_lossy(&out.stdout).contains("CHILD_RESULT"));
    let before = requests(fake);
    for t in [&alice1, &alice2] {
        assert_eq!(
            c.check(t).unwrap().source,
            Source::Network,
            "purged by the other process"
        );
    }
    assert_eq!(c.check(&bob).unwrap().source, server.backend.source());
    // Alice's groups went too: authorizing by group asks again.
    c.authorize(&alice1, &group_request(fixtures::GROUP_MEMBER))
        .unwrap();
    let after = requests(fake);
    assert_eq!(after.0 - before.0, 2, "two introspections, Alice's tokens");
    assert_eq!(after.2 - before.2, 1, "Alice's groups fetched again");
    // No identity in the backend's keys or values, the indexes included.
    assert_nothing_readable(server.dump(), PREFIX, &[], &[]);
}

/// Killing the backend mid-run loses no check; restarting it is picked up.
fn outage(fake: &FakeGlobus, backend: Backend) {
    let mut server = Server::start(backend);
    let cache = server.cache(json!({
        "socket_timeout": 0.2,
        "breaker_failures": 2,
        "breaker_cooldown": 0.3,
    }));
    let c = Arc::new(checker(fake, cache));
    let tokens: Vec<String> = (0..5)
        .map(|i| new_token(fake, &format!("outage{i}"), alice()))
        .collect();
    for t in &tokens {
        c.check(t).unwrap();
    }
    assert_eq!(c.check(&tokens[0]).unwrap().source, backend.source());

    let checking = Checking::start(&c, &tokens, 2, Duration::from_millis(2));

    std::thread::sleep(Duration::from_millis(300));
    let errors = stats().backend_errors.get();
    let introspections = fake.counters().introspect;
    server.kill();
    std::thread::sleep(Duration::from_millis(1500));
    assert!(stats().backend_errors.get() > errors, "the outage was seen");
    // The fallback layer kept caching: not one introspection per check.
    let during = fake.counters().introspect - introspections;
    assert!(
        during <= 2 * tokens.len() as u64,
        "{during} introspections during the outage"
    );
    let skips = stats().breaker_open_skips.get();
    assert!(skips > 0, "the breaker skipped the dead backend");

    server.spawn(); // same port
    let hits = stats().backend_hits.get();
    wait_until(
        "backend hits after the restart",
        Duration::from_secs(10),
        || stats().backend_hits.get() > hits + 5,
    );
    let (checks, failures) = checking.stop();
    assert_eq!(failures, 0, "no check lost");
    assert!(checks > 100);
    assert_eq!(c.check(&tokens[0]).unwrap().source, backend.source());
}

/// Threads that keep checking Alice's `tokens` until stopped, counting checks and failures.
struct Checking {
    stop: Arc<AtomicBool>,
    checks: Arc<AtomicU64>,
    failures: Arc<AtomicU64>,
    workers: Vec<std::thread::JoinHandle<()>>,
}

impl Checking {
    fn start(c: &Arc<Checker>, tokens: &[String], threads: usize, pause: Duration) -> Checking {
        let stop = Arc::new(AtomicBool::new(false));
        let checks = Arc::new(AtomicU64::new(0));
        let failures = Arc::new(AtomicU64::new(0));
        let workers = (0..threads)
            .map(|w| {
                let (c, tokens, stop, checks, failures) = (
                    c.clone(),
                    tokens.to_vec(),
                    stop.clone(),
                    checks.clone(),
                    failures.clone(),
                );
                std::thread::spawn(move || {
                    let mut i = w;
                    while !stop.load(Ordering::Relaxed) {
                        match c.check(&tokens[i % tokens.len()]) {
                            Ok(s) if s.info.sub().as_deref() == Some(fixtures::ALICE_ID) => {}
                            other => {
                                eprintln!("check failed: {other:?}");
                                failures.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        checks.fetch_add(1, Ordering::Relaxed);
                        i += 1;
                        std::thread::sleep(pause);
                    }
                })
            })
            .collect();
        Checking {
            stop,
            checks,
            failures,
            workers,
        }
    }

    /// Stops the threads: (checks, failures).
    fn stop(self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        for w in self.workers {
            w.join().unwrap();
        }
        (
            self.checks.load(Ordering::Relaxed),
            self.failures.load(Ordering::Relaxed),
        )
    }
}

/// A purge while the backend cannot be reached (a partition: it keeps its data): when the link
/// heals, the purged entry is never served, and the backend gets the fresh answer.
fn purge_during_outage(fake: &FakeGlobus, server: &Server) {
    let link = Link::to(server.port);
    let url = match server.backend {
        Backend::Redis => format!("redis://127.0.0.1:{}/0", link.port),
        Backend::Memcached => format!("127.0.0.1:{}", link.port),
    };
    let cache = server.cache(json!({
        "url": url, "socket_timeout": 0.2, "breaker_cooldown": 0.2,
    }));
    let c = checker(fake, cache);
    let t = new_token(fake, "purge-outage", alice());
    assert_eq!(c.check(&t).unwrap().source, Source::Network);
    assert_eq!(c.check(&t).unwrap().source, server.backend.source());
    let introspections = fake.counters().introspect;

    link.cut();
    c.purge(&t).unwrap();
    link.heal();
    let key = key_of(fake, PREFIX, Kind::Introspection, &t);
    assert!(
        server.raw_get(&key).is_some(),
        "the purged entry is still in the backend (the delete did not reach it)"
    );
    // Let the breaker's cool-down pass, so the next check goes to the backend again.
    std::thread::sleep(Duration::from_millis(300));
    let s = c.check(&t).unwrap();
    assert_eq!(s.source, Source::Network, "the purged entry was served");
    assert_eq!(fake.counters().introspect, introspections + 1);
    let fresh = s.info.to_introspection();
    // Replayed: what the backend holds now is the fresh answer.
    let again = c.check(&t).unwrap();
    assert_eq!(again.source, server.backend.source());
    assert_eq!(again.info.to_introspection(), fresh);
    assert_eq!(fake.counters().introspect, introspections + 1);
}

/// A backend that accepts and never answers, or answers garbage, or isn't there: checks still
/// work, and after the first failures cost no extra latency.
fn broken_backends(fake: &FakeGlobus) {
    let hang = TcpListener::bind("127.0.0.1:0").unwrap();
    let hang_port = hang.local_addr().unwrap().port();
    let garbage = TcpListener::bind("127.0.0.1:0").unwrap();
    let garbage_port = garbage.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in hang.incoming().flatten() {
            held.push(s);
        }
    });
    std::thread::spawn(move || {
        for mut s in garbage.incoming().flatten() {
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 || s.write_all(b"HTTP/1.1 400 Bad\r\n\r\n\xff\xfe").is_err() {
                        break;
                    }
                }
            });
        }
    });
    let down = free_port();
    let cases = [
        json!({"backend": "redis", "url": format!("redis://127.0.0.1:{hang_port}/0")}),
        json!({"backend": "redis", "url": format!("redis://127.0.0.1:{garbage_port}/0")}),
        json!({"backend": "redis", "url": format!("redis://127.0.0.1:{down}/0")}),
        json!({"backend": "memcached", "url": format!("127.0.0.1:{hang_port}")}),
        json!({"backend": "memcached", "url": format!("127.0.0.1:{garbage_port}")}),
        json!({"backend": "memcached", "url": format!("127.0.0.1:{down}")}),
    ];
    for mut cache in cases {
        merge(
            &mut cache,
            json!({"socket_timeout": 0.2, "breaker_failures": 2, "breaker_cooldown": 30}),
        );
        let t0 = Instant::now();
        let c = checker(fake, cache.clone());
        assert!(
            t0.elapsed() < Duration::from_millis(500),
            "creating a checker doesn't wait for the backend"
        );
        let tokens: Vec<String> = (0..3)
            .map(|i| new_token(fake, &format!("broken{i}"), bob()))
            .collect();
        for t in &tokens {
            let s = c.check(t).unwrap_or_else(|e| panic!("{cache}: {e:?}"));
            assert_eq!(s.info.sub().as_deref(), Some(fixtures::BOB_ID));
        }
        // The breaker is open now: no call waits for the backend.
        let before = fake.counters().introspect;
        for _ in 0..10 {
            for t in &tokens {
                let t0 = Instant::now();
                let s = c.check(t).unwrap();
                assert!(
                    t0.elapsed() < Duration::from_millis(100),
                    "{cache}: a check took {:?} with the breaker open",
                    t0.elapsed()
                );
                assert_eq!(
                    s.source,
                    Source::Memory,
                    "{cache}: the fallback layer answers"
                );
            }
        }
        assert_eq!(fake.counters().introspect, before, "{cache}");
    }
}

/// Switching the process-wide cache between backends while other threads keep checking.
fn switching(fake: &FakeGlobus, redis: &Server, memcached: &Server) {
    let user = Arc::new(plain_checker(fake));
    let tokens: Vec<String> = (0..4)
        .map(|i| new_token(fake, &format!("switch{i}"), alice()))
        .collect();
    let checking = Checking::start(&user, &tokens, 3, Duration::ZERO);
    let configs = [
        redis.cache(json!({})),
        memcached.cache(json!({})),
        json!({"backend": "memory"}),
        redis.cache(json!({"near_cache_ttl": 0.5})),
        memcached.cache(json!({"near_cache_ttl": 0.5})),
        redis.cache(json!({"distributed_lock": false})),
    ];
    let mut seen = HashSet::new();
    for token in &tokens[..2] {
        for cache in &configs {
            let _ = checker(fake, cache.clone());
            std::thread::sleep(Duration::from_millis(120));
            seen.insert(user.check(token).unwrap().source.name());
        }
    }
    let (checks, failures) = checking.stop();
    assert_eq!(failures, 0);
    assert!(checks > 50);
    for source in ["redis", "memcached", "memory"] {
        assert!(seen.contains(source), "{source} in {seen:?}");
    }
}

#[test]
fn backends() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let fake = FakeGlobus::start();
    let redis = Server::start(Backend::Redis);
    let memcached = Server::start(Backend::Memcached);
    let step = |name: &str| eprintln!("--- {name}");

    let mut secrets = Vec::new();
    for server in [&redis, &memcached] {
        step(&format!("round trip, {:?}", server.backend));
        secrets.extend(round_trip(&fake, server));
    }
    for server in [&redis, &memcached] {
        step(&format!("tampering, {:?}", server.backend));
        tampering(&fake, server);
    }
    for server in [&redis, &memcached] {
        step(&format!("raw dump, {:?}", server.backend));
        nothing_readable(server, &secrets);
    }
    step("server TTLs");
    ttls(&fake, &redis, &memcached);
    for server in [&redis, &memcached] {
        step(&format!("near cache, {:?}", server.backend));
        near_cache(&fake, server);
    }
    for server in [&redis, &memcached] {
        step(&format!("dead lock holder, {:?}", server.backend));
        dead_lock_holder(&fake, server);
    }
    step("redis over TLS");
    tls(&fake);
    step("memcached over two servers");
    memcached_spread(&fake);
    for server in [&redis, &memcached] {
        step(&format!("fleet of two processes, {:?}", server.backend));
        fleet(&fake, server);
    }
    for server in [&redis, &memcached] {
        step(&format!(
            "purge of an identity across the fleet, {:?}",
            server.backend
        ));
        purge_identity_fleet(&fake, server);
    }
    for server in [&redis, &memcached] {
        step(&format!("purge during an outage, {:?}", server.backend));
        purge_during_outage(&fake, server);
    }
    step("broken backends");
    broken_backends(&fake);
    for backend in [Backend::Redis, Backend::Memcached] {
        step(&format!("outage, {backend:?}"));
        outage(&fake, backend);
    }
    step("switching backends while checking");
    switching(&fake, &redis, &memcached);
}
