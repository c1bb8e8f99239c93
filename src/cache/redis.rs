//! The Redis backend: one server, a Redis Cluster, or a master found through Redis Sentinel.
//!
//! - **One server**: the `redis` crate's `ConnectionManager` (one multiplexed connection,
//!   re-established by itself when it breaks).
//! - **Cluster**: the crate's async `ClusterConnection`, built from the seed URLs; it learns the
//!   slot map, follows `MOVED`/`ASK` redirections and reconnects to nodes by itself. Every
//!   command here names one key (a value, or a lock), so each goes to the node owning its slot;
//!   the one two-key read (a waiter's poll of the value and the lock) is two commands sent
//!   together, since the two keys may live on different nodes.
//! - **Sentinel**: the sentinels are asked for the master (the crate's `Sentinel`, which also
//!   checks with `ROLE` that the node it names is a master), and a multiplexed connection is made
//!   to it. When that connection fails (an I/O error, a timeout, a command abandoned mid-way, or
//!   `READONLY`/`MASTERDOWN`: the node is no longer the master), it is dropped and the next
//!   operation asks the sentinels again, so a failover is followed. The sentinels are asked in
//!   turn: one that fails or does not answer is asked last next time.
//!
//! Connections are made on first use, not when the store is built, so a checker can be created
//! while Redis is down. Every operation, connecting included, is bounded by the caller (see
//! [`super::shared`]: the operation timeout and the breaker); the connections' own connect and
//! response timeouts are set to the same value, and the cluster client retries redirections and
//! reconnections only within that bound.

use std::sync::Mutex;
use std::time::Duration;

use redis::aio::{
    ConnectionLike, ConnectionManager, ConnectionManagerConfig, MultiplexedConnection,
};
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use redis::sentinel::{Sentinel, SentinelNodeConnectionInfo};
use redis::{
    AsyncConnectionConfig, Client, ClientTlsConfig, Cmd, ConnectionAddr, ConnectionInfo, ErrorKind,
    IntoConnectionInfo, Pipeline, RedisConnectionInfo, RedisError, RedisFuture, RedisResult,
    Script, TlsCertificates, Value,
};
use tokio::sync::OnceCell;

use super::backend::{LogUpdate, Op, Pair, SharedBackend};
use super::{purges, Source};
use crate::config::{RedisConfig, RedisTopology, SentinelConfig};
use crate::status::Error;

/// Deletes the lock only if it still holds our owner value (it may have expired and been taken).
const UNLOCK: &str = r#"if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("DEL", KEYS[1]) else return 0 end"#;

pub struct RedisBackend {
    link: Link,
    timeout: Duration,
    unlock: Script,
    log_script: Script,
}

/// How the backend reaches its data.
enum Link {
    Single {
        client: Client,
        conn: OnceCell<ConnectionManager>,
    },
    Cluster {
        client: ClusterClient,
        conn: OnceCell<ClusterConnection>,
    },
    Sentinel(Box<SentinelLink>),
}

/// A connection of any of the three kinds (each is a cheap handle on a shared connection).
#[derive(Clone)]
enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
    Sentinel(MultiplexedConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
            Conn::Sentinel(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(cmd, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(cmd, offset, count),
            Conn::Sentinel(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
            Conn::Sentinel(c) => c.get_db(),
        }
    }
}

/// The master found through the sentinels, and how to find it again.
struct SentinelLink {
    service_name: String,
    /// How to connect to the master (database, username, password).
    master: SentinelNodeConnectionInfo,
    /// The connection to the current master, with its generation; `None`: ask the sentinels.
    current: Mutex<Option<(u64, MultiplexedConnection)>>,
    /// Held while asking the sentinels, so that concurrent operations ask once.
    discovery: tokio::sync::Mutex<Discovery>,
}

struct Discovery {
    /// One `Sentinel` per configured sentinel (each keeps its own connection to it).
    sentinels: Vec<SentinelNode>,
    /// The sentinel to ask first.
    next: usize,
    generation: u64,
}

struct SentinelNode {
    info: ConnectionInfo,
    sentinel: Sentinel,
    /// An attempt on it was abandoned (timed out): its connection may be stuck; make a new one.
    stale: bool,
}

/// A connection in use for one operation. For Sentinel, dropping it before [`settle`] was
/// called (the operation was abandoned, e.g. on the operation timeout), or settling it with an
/// error that says the master is gone, drops the connection: the next operation asks the
/// sentinels again.
///
/// [`settle`]: Lease::settle
struct Lease<'a> {
    conn: Conn,
    sentinel: Option<(&'a SentinelLink, u64)>,
}

impl Lease<'_> {
    fn settle<T>(mut self, result: RedisResult<T>) -> Result<T, String> {
        if let Err(e) = &result {
            if !master_is_gone(e) {
                self.sentinel = None;
            }
        } else {
            self.sentinel = None;
        }
        result.map_err(err)
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if let Some((link, generation)) = self.sentinel.take() {
            link.forget(generation);
        }
    }
}

/// Whether a Sentinel-found connection must be dropped after this error.
fn master_is_gone(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_timeout()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_unrecoverable_error()
        || matches!(e.kind(), ErrorKind::ReadOnly | ErrorKind::MasterDown)
}

fn err(e: RedisError) -> String {
    // RedisError's text names the command and the server's answer, never our values.
    format!("redis: {e}")
}

fn bad_url(e: RedisError) -> Error {
    // The detail, or the crate's fixed description of the error: never the URL (or password).
    let why = match e.detail() {
        Some(detail) => detail.to_string(),
        None if !e.is_io_error() => e.to_string(),
        None => "cannot parse it".to_string(),
    };
    Error::invalid_config(format!(
        "cache_config.url is not a usable Redis URL: {}",
        crate::status::clip(&why)
    ))
}

/// The TLS files of the configuration, read (`None` when there are none).
fn tls_certificates(config: &RedisConfig) -> Result<Option<TlsCertificates>, Error> {
    if config.tls_ca_file.is_none() && config.tls_client_cert.is_none() {
        return Ok(None);
    }
    let read =
        |key: &str, path: &str| crate::config::read_pem_file(&format!("cache_config.{key}"), path);
    let root_cert = match &config.tls_ca_file {
        Some(path) => Some(read("ssl_ca_certs", path)?),
        None => None,
    };
    let client_tls = match &config.tls_client_cert {
        Some((cert, key)) => Some(ClientTlsConfig {
            client_cert: read("ssl_certfile", cert)?,
            client_key: read("ssl_keyfile", key)?,
        }),
        None => None,
    };
    Ok(Some(TlsCertificates {
        client_tls,
        root_cert,
    }))
}

impl RedisBackend {
    pub fn new(config: &RedisConfig) -> Result<RedisBackend, Error> {
        let timeout = config.shared.socket_timeout;
        let link = match &config.topology {
            RedisTopology::Single => {
                let client = match tls_certificates(config)? {
                    Some(certs) => Client::build_with_tls(config.url.as_str(), certs),
                    None => Client::open(config.url.as_str()),
                }
                .map_err(bad_url)?;
                Link::Single {
                    client,
                    conn: OnceCell::new(),
                }
            }
            RedisTopology::Cluster { seeds } => {
                let mut nodes = Vec::with_capacity(seeds.len());
                for seed in seeds {
                    let info = seed.as_str().into_connection_info().map_err(bad_url)?;
                    if info.redis.db != 0 {
                        return Err(Error::invalid_config(
                            "cache_config.url: a Redis Cluster has only database 0; \
                             give no database in the seed URLs",
                        ));
                    }
                    nodes.push(info);
                }
                let mut builder = ClusterClientBuilder::new(nodes)
                    .connection_timeout(timeout)
                    .response_timeout(timeout)
                    // Redirections (MOVED, ASK) and reconnections are retries: a few, quick;
                    // the operation timeout above bounds them all.
                    .retries(3)
                    .min_retry_wait(5)
                    .max_retry_wait(100);
                if let Some(certs) = tls_certificates(config)? {
                    builder = builder.certs(certs);
                }
                Link::Cluster {
                    client: builder.build().map_err(bad_url)?,
                    conn: OnceCell::new(),
                }
            }
            RedisTopology::Sentinel(s) => Link::Sentinel(Box::new(SentinelLink::new(s)?)),
        };
        Ok(RedisBackend {
            link,
            timeout,
            unlock: Script::new(UNLOCK),
            log_script: Script::new(purges::REDIS_SCRIPT),
        })
    }

    async fn conn(&self) -> Result<Lease<'_>, String> {
        let conn = match &self.link {
            Link::Single { client, conn } => Conn::Single(
                conn.get_or_try_init(|| async {
                    let config = ConnectionManagerConfig::new()
                        .set_connection_timeout(self.timeout)
                        .set_response_timeout(self.timeout)
                        // One attempt per (re)connection: the breaker above paces the attempts,
                        // and a retry with backoff here would only hold callers up.
                        .set_number_of_retries(0);
                    ConnectionManager::new_with_config(client.clone(), config).await
                })
                .await
                .cloned()
                .map_err(err)?,
            ),
            Link::Cluster { client, conn } => Conn::Cluster(
                conn.get_or_try_init(|| client.get_async_connection())
                    .await
                    .cloned()
                    .map_err(err)?,
            ),
            Link::Sentinel(link) => {
                let (generation, conn) = link.master(self.timeout).await?;
                return Ok(Lease {
                    conn: Conn::Sentinel(conn),
                    sentinel: Some((link, generation)),
                });
            }
        };
        Ok(Lease {
            conn,
            sentinel: None,
        })
    }
}

impl SharedBackend for RedisBackend {
    fn source(&self) -> Source {
        Source::Redis
    }

    fn get<'a>(&'a self, key: &'a str) -> Op<'a, Option<Vec<u8>>> {
        Box::pin(async move {
            let mut c = self.conn().await?;
            let r = redis::cmd("GET").arg(key).query_async(&mut c.conn).await;
            c.settle(r)
        })
    }

    fn set<'a>(&'a self, key: &'a str, value: &'a [u8], ttl: Duration) -> Op<'a, ()> {
        Box::pin(async move {
            let mut c = self.conn().await?;
            let r = redis::cmd("SET")
                .arg(key)
                .arg(value)
                .arg("PX")
                .arg(ttl.as_millis() as u64)
                .query_async::<()>(&mut c.conn)
                .await;
            c.settle(r)
        })
    }

    fn delete<'a>(&'a self, key: &'a str) -> Op<'a, ()> {
        Box::pin(async move {
            let mut c = self.conn().await?;
            let r = redis::cmd("DEL")
                .arg(key)
                .query_async::<()>(&mut c.conn)
                .await;
            c.settle(r)
        })
    }

    /// `GET` twice, pipelined (on a cluster, sent together: the keys' slots may differ).
    fn get_pair<'a>(&'a self, key: &'a str, other: &'a str) -> Op<'a, Pair> {
        Box::pin(async move {
            let mut c = self.conn().await?;
            let r = if let Conn::Cluster(cluster) = &c.conn {
                let (mut a, mut b) = (cluster.clone(), cluster.clone());
                let mut first = redis::cmd("GET");
                first.arg(key);
                let mut second = redis::cmd("GET");
                second.arg(other);
                futures::try_join!(
                    first.query_async::<Option<Vec<u8>>>(&mut a),
                    second.query_async::<Option<Vec<u8>>>(&mut b)
                )
            } else {
                redis::pipe()
                    .cmd("GET")
                    .arg(key)
                    .cmd("GET")
                    .arg(other)
                    .query_async(&mut c.conn)
                    .await
            };
            c.settle(r)
        })
    }

    /// The purge log's script (`purges::REDIS_SCRIPT`): atomic on the server.
    fn log_add<'a>(&'a self, key: &'a str, u: LogUpdate<'a>) -> Op<'a, ()> {
        Box::pin(async move {
            let mut c = self.conn().await?;
            let r = self
                .log_script
                .key(key)
                .arg(u.head)
                .arg(u.cutoff_ms)
                .arg(u.max_bytes)
                .arg((u.ttl.as_millis() as u64).max(1))
                .arg(u.now_ms)
                .invoke_async::<i64>(&mut c.conn)
                .await;
            c.settle(r).map(|_| ())
        })
    }

    /// `SET lock owner NX PX ttl` (the value's key plays no part: on a cluster, the lock is
    /// wherever its own slot is).
    fn try_lock<'a>(
        &'a self,
        _key: &'a str,
        lock: &'a str,
        owner: &'a str,
        ttl: Duration,
    ) -> Op<'a, bool> {
        Box::pin(async move {
            let mut c = self.conn().await?;
            let r: RedisResult<Option<String>> = redis::cmd("SET")
                .arg(lock)
                .arg(owner)
                .arg("NX")
                .arg("PX")
                .arg((ttl.as_millis() as u64).max(1))
                .query_async(&mut c.conn)
                .await;
            c.settle(r).map(|ok| ok.is_some())
        })
    }

    /// A Lua script: `DEL` if `GET` gives our owner value.
    fn unlock<'a>(&'a self, _key: &'a str, lock: &'a str, owner: &'a str) -> Op<'a, ()> {
        Box::pin(async move {
            let mut c = self.conn().await?;
            let r = self
                .unlock
                .key(lock)
                .arg(owner)
                .invoke_async::<i64>(&mut c.conn)
                .await;
            c.settle(r).map(|_| ())
        })
    }

    /// `GET` and `EXISTS`, pipelined (on a cluster, sent together: the keys' slots may differ).
    fn poll<'a>(&'a self, key: &'a str, lock: &'a str) -> Op<'a, (Option<Vec<u8>>, bool)> {
        Box::pin(async move {
            let mut c = self.conn().await?;
            let r = if let Conn::Cluster(cluster) = &c.conn {
                // The two keys may be in different slots (nodes): two commands, sent together.
                let (mut a, mut b) = (cluster.clone(), cluster.clone());
                let mut get = redis::cmd("GET");
                get.arg(key);
                let mut exists = redis::cmd("EXISTS");
                exists.arg(lock);
                futures::try_join!(
                    get.query_async::<Option<Vec<u8>>>(&mut a),
                    exists.query_async::<bool>(&mut b)
                )
            } else {
                redis::pipe()
                    .cmd("GET")
                    .arg(key)
                    .cmd("EXISTS")
                    .arg(lock)
                    .query_async(&mut c.conn)
                    .await
            };
            c.settle(r)
        })
    }
}

impl SentinelLink {
    fn new(config: &SentinelConfig) -> Result<SentinelLink, Error> {
        let mut sentinels = Vec::with_capacity(config.sentinels.len());
        for (host, port) in &config.sentinels {
            let info = ConnectionInfo {
                addr: ConnectionAddr::Tcp(host.clone(), *port),
                redis: RedisConnectionInfo {
                    username: config.sentinel_username.clone(),
                    password: config.sentinel_password.clone(),
                    ..Default::default()
                },
            };
            sentinels.push(SentinelNode {
                sentinel: build_sentinel(&info)?,
                info,
                stale: false,
            });
        }
        Ok(SentinelLink {
            service_name: config.service_name.clone(),
            master: SentinelNodeConnectionInfo {
                tls_mode: None,
                redis_connection_info: Some(RedisConnectionInfo {
                    db: config.db as i64,
                    username: config.username.clone(),
                    password: config.password.clone(),
                    ..Default::default()
                }),
            },
            current: Mutex::new(None),
            discovery: tokio::sync::Mutex::new(Discovery {
                sentinels,
                next: 0,
                generation: 0,
            }),
        })
    }

    fn current(&self) -> Option<(u64, MultiplexedConnection)> {
        self.current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Drops the connection of this generation (a newer one is kept).
    fn forget(&self, generation: u64) {
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if current.as_ref().is_some_and(|(g, _)| *g == generation) {
            *current = None;
        }
    }

    /// The connection to the master, asking the sentinels for it when there is none.
    async fn master(&self, timeout: Duration) -> Result<(u64, MultiplexedConnection), String> {
        if let Some(current) = self.current() {
            return Ok(current);
        }
        let mut discovery = self.discovery.lock().await;
        // Another operation may have found it while this one waited.
        if let Some(current) = self.current() {
            return Ok(current);
        }
        let client = discovery
            .find_master(&self.service_name, &self.master, timeout)
            .await?;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(timeout)
            .set_response_timeout(timeout);
        let conn = client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(err)?;
        discovery.generation += 1;
        let found = (discovery.generation, conn);
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = Some(found.clone());
        Ok(found)
    }
}

fn build_sentinel(info: &ConnectionInfo) -> Result<Sentinel, Error> {
    Sentinel::build(vec![info.clone()]).map_err(|e| {
        Error::invalid_config(format!(
            "cache_config.sentinels: {}",
            e.detail().unwrap_or("not a usable sentinel address")
        ))
    })
}

impl Discovery {
    /// Asks the sentinels in turn for the master, each for at most `timeout`.
    async fn find_master(
        &mut self,
        service_name: &str,
        master: &SentinelNodeConnectionInfo,
        timeout: Duration,
    ) -> Result<Client, String> {
        let n = self.sentinels.len();
        let mut last_error = String::from("redis: no sentinel to ask");
        for _ in 0..n {
            let i = self.next % n;
            // Pessimistic: if this attempt is abandoned, the next one starts with the next
            // sentinel (a sentinel that never answers must not hold every discovery up).
            self.next = (i + 1) % n;
            let node = &mut self.sentinels[i];
            if node.stale {
                if let Ok(fresh) = build_sentinel(&node.info) {
                    node.sentinel = fresh;
                }
            }
            node.stale = true;
            let attempt = tokio::time::timeout(
                timeout,
                node.sentinel.async_master_for(service_name, Some(master)),
            )
            .await;
            match attempt {
                Ok(Ok(client)) => {
                    node.stale = false;
                    self.next = i;
                    return Ok(client);
                }
                Ok(Err(e)) => {
                    node.stale = false;
                    last_error = format!("redis sentinel: {e}");
                }
                Err(_) => {
                    last_error = format!("redis sentinel: no answer within {timeout:?}");
                }
            }
        }
        Err(last_error)
    }
}
