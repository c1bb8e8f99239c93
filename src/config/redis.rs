//! The Redis backends: one server, a Redis Cluster, or a master found through Redis Sentinel.

use std::time::Duration;

use serde_json::Value;

use super::cache::{near_cache, positive_or_none, positive_seconds, NearCacheConfig};
use super::{clip, Keys};
use crate::status::Error;

#[derive(Debug, Clone, PartialEq)]
pub struct RedisConfig {
    /// `redis://…` or `rediss://…`; built from host/port/db/username/password when not given.
    /// A cluster: its first seed. Sentinel: `redis://host:port` of the first sentinel (for
    /// messages only; the master is found through the sentinels).
    pub url: String,
    /// One server, a Redis Cluster, or a master found through Redis Sentinel.
    pub topology: RedisTopology,
    pub socket_timeout: Duration,
    pub distributed_lock: bool,
    pub lock_timeout: Duration,
    /// Server-side expiry cap; entries get min(this, their own TTL).
    pub expiration_time: Option<Duration>,
    pub prefix: String,
    pub near_cache: Option<NearCacheConfig>,
    /// The longest pause between two looks of a process waiting for another one's fetch.
    pub lock_sleep: Duration,
    /// Consecutive failures after which the backend is skipped for `breaker_cooldown`.
    pub breaker_failures: u32,
    pub breaker_cooldown: Duration,
    /// `rediss://` only: a PEM file of the CAs to trust instead of the system's (`ssl_ca_certs`).
    pub tls_ca_file: Option<String>,
    /// `rediss://` only: a client certificate and its key, PEM (`ssl_certfile`, `ssl_keyfile`).
    pub tls_client_cert: Option<(String, String)>,
}

/// How the Redis backend reaches its data.
#[derive(Debug, Clone, PartialEq)]
pub enum RedisTopology {
    /// One server (or a proxy in front of several): `url`.
    Single,
    /// A Redis Cluster (`"cluster": true`, or the `redis_cluster` backend): the seed URLs, all
    /// `redis://` or all `rediss://`, database 0; the rest of the cluster is discovered.
    Cluster { seeds: Vec<String> },
    /// A master found through Redis Sentinel (the `redis_sentinel` backend).
    Sentinel(Box<SentinelConfig>),
}

/// The `redis_sentinel` backend's arguments, as dogpile's `RedisSentinelBackend` takes them.
#[derive(Clone, PartialEq)]
pub struct SentinelConfig {
    /// The sentinels, as host and port.
    pub sentinels: Vec<(String, u16)>,
    /// The master's name in the sentinels' configuration (`service_name`, default `mymaster`).
    pub service_name: String,
    /// The master's database, username and password.
    pub db: u64,
    pub username: Option<String>,
    pub password: Option<String>,
    /// The sentinels' own username and password: `sentinel_kwargs`, else (as in dogpile) the
    /// master's.
    pub sentinel_username: Option<String>,
    pub sentinel_password: Option<String>,
}

impl std::fmt::Debug for SentinelConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hidden = |p: &Option<String>| p.as_ref().map(|_| "…");
        f.debug_struct("SentinelConfig")
            .field("sentinels", &self.sentinels)
            .field("service_name", &self.service_name)
            .field("db", &self.db)
            .field("username", &self.username)
            .field("password", &hidden(&self.password))
            .field("sentinel_username", &self.sentinel_username)
            .field("sentinel_password", &hidden(&self.sentinel_password))
            .finish()
    }
}

/// Which Redis backend name the configuration gave.
#[derive(Clone, Copy, PartialEq)]
pub(super) enum Flavor {
    Plain,
    Cluster,
    Sentinel,
}

pub(super) fn redis_config(keys: &mut Keys, flavor: Flavor) -> Result<RedisConfig, Error> {
    // redis-py keyword arguments: a Python notion; every supported one is a key of its own.
    if keys.take("connection_kwargs").is_some() {
        return Err(Error::invalid_config(
            "config key 'cache_config.connection_kwargs' is not supported: give 'db', 'username', \
             'password', 'socket_timeout' and the ssl_* files as cache_config keys",
        ));
    }
    let cluster_error =
        |why: &str| Error::invalid_config(format!("config key 'cache_config.cluster' {why}"));
    let flavor = match (flavor, keys.boolean("cluster")?) {
        (Flavor::Plain, Some(true)) => Flavor::Cluster,
        (Flavor::Cluster, Some(false)) => {
            return Err(cluster_error("is false, but the backend is redis_cluster"))
        }
        (Flavor::Sentinel, Some(_)) => {
            return Err(cluster_error(
                "does not apply to the redis_sentinel backend",
            ))
        }
        (flavor, _) => flavor,
    };
    if flavor != Flavor::Sentinel {
        for key in ["sentinels", "service_name", "sentinel_kwargs"] {
            if keys.take(key).is_some() {
                return Err(Error::invalid_config(format!(
                    "config key 'cache_config.{key}' needs the backend \"redis_sentinel\" \
                     (or \"dogpile.cache.redis_sentinel\")"
                )));
            }
        }
    }
    let username = keys.string("username")?;
    let password = keys.string("password")?;
    let db = keys.integer("db", 0, 1 << 20)?;
    let (url, topology) = match flavor {
        Flavor::Plain => (
            single_url(keys, username, password, db)?,
            RedisTopology::Single,
        ),
        Flavor::Cluster => {
            let seeds = cluster_seeds(keys, username, password, db)?;
            (seeds[0].clone(), RedisTopology::Cluster { seeds })
        }
        Flavor::Sentinel => {
            let sentinel = sentinel_config(keys, username, password, db)?;
            let (host, port) = &sentinel.sentinels[0];
            (
                format!("redis://{}:{port}", bracketed(host)),
                RedisTopology::Sentinel(Box::new(sentinel)),
            )
        }
    };
    // dogpile's RedisBackend argument; locks here are per key and process-wide anyway.
    let _ = keys.boolean("thread_local_lock")?;
    // TLS files, with redis-py's names.
    let tls_ca_file = keys.string("ssl_ca_certs")?;
    let tls_client_cert = match (keys.string("ssl_certfile")?, keys.string("ssl_keyfile")?) {
        (Some(cert), Some(key)) => Some((cert, key)),
        (None, None) => None,
        _ => {
            return Err(Error::invalid_config(
                "cache_config: 'ssl_certfile' and 'ssl_keyfile' go together",
            ))
        }
    };
    if (tls_ca_file.is_some() || tls_client_cert.is_some())
        && matches!(topology, RedisTopology::Sentinel(_))
    {
        return Err(Error::invalid_config(
            "cache_config: 'ssl_ca_certs', 'ssl_certfile' and 'ssl_keyfile' are not supported \
             with the redis_sentinel backend",
        ));
    }
    if (tls_ca_file.is_some() || tls_client_cert.is_some()) && !url.starts_with("rediss://") {
        return Err(Error::invalid_config(
            "cache_config: 'ssl_ca_certs', 'ssl_certfile' and 'ssl_keyfile' need a rediss:// url",
        ));
    }
    Ok(RedisConfig {
        url,
        topology,
        socket_timeout: positive_seconds(keys, "socket_timeout", Duration::from_millis(250))?,
        distributed_lock: keys.boolean("distributed_lock")?.unwrap_or(true),
        lock_timeout: positive_seconds(keys, "lock_timeout", Duration::from_secs(10))?,
        expiration_time: positive_or_none(keys.seconds("redis_expiration_time")?),
        prefix: keys.string("prefix")?.unwrap_or_else(|| "tc:".into()),
        near_cache: near_cache(keys)?,
        lock_sleep: positive_seconds(keys, "lock_sleep", Duration::from_millis(5))?,
        breaker_failures: keys.integer("breaker_failures", 1, 1000)?.unwrap_or(3) as u32,
        breaker_cooldown: positive_seconds(keys, "breaker_cooldown", Duration::from_secs(2))?,
        tls_ca_file,
        tls_client_cert,
    })
}

/// One server: `url`, or a URL built from host/port/db/username/password.
fn single_url(
    keys: &mut Keys,
    username: Option<String>,
    password: Option<String>,
    db: Option<u64>,
) -> Result<String, Error> {
    let url = match keys.take("url") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Array(_)) => {
            return Err(Error::invalid_config(concat!(
                "config key 'cache_config.url' is a list: several seed URLs need ",
                "\"cluster\": true (a Redis Cluster); for Sentinel use the redis_sentinel ",
                "backend and 'sentinels'"
            )))
        }
        Some(_) => return Err(keys.wrong_type("url", "a string")),
    };
    if keys.take("startup_nodes").is_some() {
        return Err(Error::invalid_config(
            "config key 'cache_config.startup_nodes' needs \"cluster\": true (a Redis Cluster)",
        ));
    }
    let host = keys.string("host")?;
    let port = keys.integer("port", 1, 65535)?;
    match url {
        Some(url) => {
            if host.is_some()
                || port.is_some()
                || db.is_some()
                || password.is_some()
                || username.is_some()
            {
                return Err(Error::invalid_config(
                    "cache_config: give either 'url' or 'host'/'port'/'db'/'username'/'password', \
                     not both",
                ));
            }
            if !(url.starts_with("redis://")
                || url.starts_with("rediss://")
                || url.starts_with("redis+unix://")
                || url.starts_with("unix://"))
            {
                return Err(Error::invalid_config(
                    "cache_config.url must start with redis:// or rediss://",
                ));
            }
            Ok(url)
        }
        None => Ok(format!(
            "redis://{}{}:{}/{}",
            userinfo(username.as_deref(), password.as_deref()),
            bracketed(&host.unwrap_or_else(|| "localhost".into())),
            port.unwrap_or(6379),
            db.unwrap_or(0)
        )),
    }
}

/// A Redis Cluster's seeds: `url` (one or a list), `startup_nodes` (dogpile's
/// `redis_cluster` backend: `[host, port]` pairs or `"host:port"`), or `host`/`port`.
fn cluster_seeds(
    keys: &mut Keys,
    username: Option<String>,
    password: Option<String>,
    db: Option<u64>,
) -> Result<Vec<String>, Error> {
    if db.is_some_and(|db| db != 0) {
        return Err(Error::invalid_config(
            "config key 'cache_config.db' must be 0: a Redis Cluster has only database 0",
        ));
    }
    let url = match keys.take("url") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(vec![s.clone()]),
        Some(Value::Array(items)) => {
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                match item.as_str() {
                    Some(s) => out.push(s.to_string()),
                    None => return Err(keys.wrong_type("url", "a seed URL or a list of seed URLs")),
                }
            }
            Some(out)
        }
        Some(_) => return Err(keys.wrong_type("url", "a seed URL or a list of seed URLs")),
    };
    let nodes = match keys.take("startup_nodes") {
        None | Some(Value::Null) => None,
        Some(v) => Some(host_port_list(v, "cache_config.startup_nodes")?),
    };
    let host = keys.string("host")?;
    let port = keys.integer("port", 1, 65535)?;
    let host_port = host.is_some() || port.is_some();
    let seeds = match (url, nodes) {
        (Some(_), Some(_)) => {
            return Err(Error::invalid_config(
                "cache_config: give either 'url' or 'startup_nodes', not both",
            ))
        }
        (Some(urls), None) => {
            if host_port || password.is_some() || username.is_some() {
                return Err(Error::invalid_config(
                    "cache_config: give either 'url' or 'host'/'port'/'username'/'password', \
                     not both (a cluster's password goes in its seed URLs)",
                ));
            }
            urls
        }
        (None, Some(nodes)) => {
            if host_port {
                return Err(Error::invalid_config(
                    "cache_config: give either 'startup_nodes' or 'host'/'port', not both",
                ));
            }
            let auth = userinfo(username.as_deref(), password.as_deref());
            nodes
                .iter()
                .map(|(h, p)| format!("redis://{auth}{}:{p}", bracketed(h)))
                .collect()
        }
        (None, None) => vec![format!(
            "redis://{}{}:{}",
            userinfo(username.as_deref(), password.as_deref()),
            bracketed(&host.unwrap_or_else(|| "localhost".into())),
            port.unwrap_or(6379)
        )],
    };
    if seeds.is_empty() || seeds.len() > MAX_REDIS_SERVERS {
        return Err(Error::invalid_config(format!(
            "config key 'cache_config.url' must name at least one seed of the cluster and at \
             most {MAX_REDIS_SERVERS}"
        )));
    }
    let tls = seeds[0].starts_with("rediss://");
    for seed in &seeds {
        if !(seed.starts_with("redis://") || seed.starts_with("rediss://")) {
            return Err(Error::invalid_config(format!(
                "config key 'cache_config.url': a cluster seed must start with redis:// or \
                 rediss://, not {:?}",
                clip(seed)
            )));
        }
        if seed.starts_with("rediss://") != tls {
            return Err(Error::invalid_config(
                "config key 'cache_config.url': the cluster seeds must all be redis:// or all \
                 rediss://",
            ));
        }
    }
    Ok(seeds)
}

/// The redis_sentinel backend's own keys.
fn sentinel_config(
    keys: &mut Keys,
    username: Option<String>,
    password: Option<String>,
    db: Option<u64>,
) -> Result<SentinelConfig, Error> {
    for key in ["url", "host", "port", "startup_nodes"] {
        if keys.take(key).is_some() {
            return Err(Error::invalid_config(format!(
                "config key 'cache_config.{key}' does not apply to the redis_sentinel backend: \
                 the master is found through 'sentinels'"
            )));
        }
    }
    let sentinels = match keys.take("sentinels") {
        None | Some(Value::Null) => {
            return Err(Error::invalid_config(
                "config key 'cache_config.sentinels' is required by the redis_sentinel backend",
            ))
        }
        Some(v) => host_port_list(v, "cache_config.sentinels")?,
    };
    let service_name = keys
        .string("service_name")?
        .unwrap_or_else(|| "mymaster".into());
    if service_name.is_empty() || service_name.len() > 256 {
        return Err(keys.wrong_type("service_name", "a non-empty string (the master's name)"));
    }
    // As in dogpile: the sentinels get the master's username and password unless
    // `sentinel_kwargs` says otherwise (`null`: none).
    let (mut sentinel_username, mut sentinel_password) = (username.clone(), password.clone());
    match keys.take("sentinel_kwargs") {
        None | Some(Value::Null) => {}
        Some(Value::Object(kwargs)) => {
            for (key, value) in kwargs {
                let slot = match key.as_str() {
                    "username" => &mut sentinel_username,
                    "password" => &mut sentinel_password,
                    other => {
                        return Err(Error::invalid_config(format!(
                            "config key 'cache_config.sentinel_kwargs.{}' is not supported \
                             (only 'username' and 'password' are)",
                            clip(other)
                        )))
                    }
                };
                *slot = match value {
                    Value::Null => None,
                    Value::String(s) => Some(s.clone()),
                    _ => {
                        return Err(Error::invalid_config(format!(
                            "config key 'cache_config.sentinel_kwargs.{key}' must be a string \
                             or null"
                        )))
                    }
                };
            }
        }
        Some(_) => {
            return Err(keys.wrong_type(
                "sentinel_kwargs",
                "an object (with 'username' and/or 'password')",
            ))
        }
    }
    Ok(SentinelConfig {
        sentinels,
        service_name,
        db: db.unwrap_or(0),
        username,
        password,
        sentinel_username,
        sentinel_password,
    })
}

/// The most cluster seeds or sentinels a configuration may name.
const MAX_REDIS_SERVERS: usize = 100;

/// A non-empty list of servers, each `[host, port]` or `"host:port"`.
fn host_port_list(value: &Value, key: &str) -> Result<Vec<(String, u16)>, Error> {
    let bad = || {
        Error::invalid_config(format!(
            "config key '{key}' must be a list of [host, port] pairs or \"host:port\" strings"
        ))
    };
    let Value::Array(items) = value else {
        return Err(bad());
    };
    if items.is_empty() || items.len() > MAX_REDIS_SERVERS {
        return Err(Error::invalid_config(format!(
            "config key '{key}' must name at least one server and at most {MAX_REDIS_SERVERS}"
        )));
    }
    let sane_host = |h: &str| {
        !h.is_empty()
            && h.len() <= 255
            && !h
                .bytes()
                .any(|b| b.is_ascii_whitespace() || b.is_ascii_control() || b"/@?#".contains(&b))
    };
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let (host, port) = match item {
            Value::Array(pair) if pair.len() == 2 => match (&pair[0], pair[1].as_u64()) {
                (Value::String(h), Some(p)) => (h.clone(), p),
                _ => return Err(bad()),
            },
            Value::String(s) => match s.rsplit_once(':') {
                Some((h, p)) => (
                    h.trim_start_matches('[').trim_end_matches(']').to_string(),
                    p.parse::<u64>().map_err(|_| bad())?,
                ),
                None => return Err(bad()),
            },
            _ => return Err(bad()),
        };
        if !sane_host(&host) || !(1..=65535).contains(&port) {
            return Err(Error::invalid_config(format!(
                "config key '{key}': {:?} is not a host and a port from 1 to 65535",
                clip(&format!("{host}:{port}"))
            )));
        }
        out.push((host, port as u16));
    }
    Ok(out)
}

/// `user:password@` for a URL (either may be missing).
fn userinfo(username: Option<&str>, password: Option<&str>) -> String {
    match (username, password) {
        (None, None) => String::new(),
        (user, password) => format!(
            "{}{}@",
            urlencode(user.unwrap_or("")),
            password
                .map(|p| format!(":{}", urlencode(p)))
                .unwrap_or_default()
        ),
    }
}

/// An IPv6 address in brackets, for a URL.
fn bracketed(host: &str) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

fn urlencode(s: &str) -> String {
    urlencoding::encode(s).into_owned()
}
