//! The Redis backends: one server, a Redis Cluster, or a master found through Redis Sentinel.

use serde::Deserialize;
use serde_json::{Map, Value};

use super::cache::{RawSharedSettings, SharedSettings, PREFIX};
use super::de::{
    keys_of, read, reject_unknown, Flag, HostPorts, Nullable, Seconds, SeedUrls, SingleUrl, Text,
    Whole, MAX_REDIS_SERVERS,
};
use crate::status::clip;
use crate::status::Error;

#[derive(Clone, PartialEq)]
pub struct RedisConfig {
    /// `redis://…` or `rediss://…`; built from host/port/db/username/password when not given.
    /// A cluster: its first seed. Sentinel: `redis://host:port` of the first sentinel (for
    /// messages only; the master is found through the sentinels).
    pub url: String,
    /// One server, a Redis Cluster, or a master found through Redis Sentinel.
    pub topology: RedisTopology,
    pub shared: SharedSettings,
    /// `rediss://` only: a PEM file of the CAs to trust instead of the system's (`ssl_ca_certs`).
    pub tls_ca_file: Option<String>,
    /// `rediss://` only: a client certificate and its key, PEM (`ssl_certfile`, `ssl_keyfile`).
    pub tls_client_cert: Option<(String, String)>,
}

impl std::fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConfig")
            .field("url", &redact_url(&self.url))
            .field("topology", &self.topology)
            .field("shared", &self.shared)
            .field("tls_ca_file", &self.tls_ca_file)
            .field("tls_client_cert", &self.tls_client_cert)
            .finish()
    }
}

/// A URL with the password of its user information replaced by `…` (for debug prints: a
/// `redis://user:password@host` URL carries a secret).
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            let hidden = if userinfo.contains(':') { ":…" } else { "" };
            format!("{scheme}://{user}{hidden}@{host}{path}")
        }
        None => url.to_string(),
    }
}

/// How the Redis backend reaches its data.
#[derive(Clone, PartialEq)]
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

impl std::fmt::Debug for RedisTopology {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RedisTopology::Single => f.write_str("Single"),
            RedisTopology::Cluster { seeds } => f
                .debug_struct("Cluster")
                .field(
                    "seeds",
                    &seeds.iter().map(|s| redact_url(s)).collect::<Vec<_>>(),
                )
                .finish(),
            RedisTopology::Sentinel(s) => f.debug_tuple("Sentinel").field(s).finish(),
        }
    }
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

/// The keys every Redis flavor reads, besides the [`RawSharedSettings`].
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRedis {
    cluster: Option<Flag>,
    username: Option<Text>,
    password: Option<Text>,
    db: Option<Whole<0, { 1 << 20 }>>,
    /// dogpile's RedisBackend argument, accepted (true or false) and ignored: locks here are per
    /// key and process-wide anyway.
    #[allow(dead_code)]
    thread_local_lock: Option<Flag>,
    // TLS files, with redis-py's names.
    ssl_ca_certs: Option<Text>,
    ssl_certfile: Option<Text>,
    ssl_keyfile: Option<Text>,
    redis_expiration_time: Option<Seconds>,
}

/// One server: `url`, or a URL built from host/port/db/username/password.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSingle {
    url: Option<SingleUrl>,
    host: Option<Text>,
    port: Option<Whole<1, 65535>>,
}

/// A Redis Cluster's seeds: `url` (one or a list), `startup_nodes` (dogpile's `redis_cluster`
/// backend: `[host, port]` pairs or `"host:port"`), or `host`/`port`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCluster {
    url: Option<SeedUrls>,
    host: Option<Text>,
    port: Option<Whole<1, 65535>>,
    startup_nodes: Option<HostPorts>,
}

/// The redis_sentinel backend's own keys (and `sentinel_kwargs`, an object read on its own).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSentinel {
    sentinels: Option<HostPorts>,
    service_name: Option<Text>,
}

/// `sentinel_kwargs`: the sentinels' own username and password (`null`: none).
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSentinelKwargs {
    #[serde(default)]
    username: Nullable,
    #[serde(default)]
    password: Nullable,
}

/// The flavor's own keys, as read.
enum RawTopology {
    Single(RawSingle),
    Cluster(RawCluster),
    Sentinel(RawSentinel, RawSentinelKwargs),
}

/// Reads and validates a Redis `cache_config` (`head`: the keys every backend reads).
pub(super) fn parse(
    obj: &Map<String, Value>,
    flavor: Flavor,
    head: &[&str],
) -> Result<RedisConfig, Error> {
    use RawTopology::{Cluster, Sentinel, Single};
    // redis-py keyword arguments: a Python notion; every supported one is a key of its own.
    if obj.contains_key("connection_kwargs") {
        return Err(Error::invalid_config(
            "config key 'cache_config.connection_kwargs' is not supported: give 'db', 'username', \
             'password', 'socket_timeout' and the ssl_* files as cache_config keys",
        ));
    }
    let common: RawRedis = read(obj, PREFIX)?;
    let shared: RawSharedSettings = read(obj, PREFIX)?;
    let cluster_error =
        |why: &str| Error::invalid_config(format!("config key 'cache_config.cluster' {why}"));
    let flavor = match (flavor, common.cluster.as_ref().map(|f| f.0)) {
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
    // Another flavor's keys are named with what they need.
    let sentinel_keys = [keys_of::<RawSentinel>(), &["sentinel_kwargs"]].concat();
    let (others, why): (&[&str], _) = match flavor {
        Flavor::Sentinel => (
            keys_of::<RawCluster>(),
            "does not apply to the redis_sentinel backend: the master is found through 'sentinels'",
        ),
        Flavor::Plain if obj.contains_key("startup_nodes") => (
            &["startup_nodes"],
            "needs \"cluster\": true (a Redis Cluster)",
        ),
        _ => (
            &sentinel_keys,
            "needs the backend \"redis_sentinel\" (or \"dogpile.cache.redis_sentinel\")",
        ),
    };
    if let Some(k) = others.iter().find(|k| obj.contains_key(**k)) {
        return Err(Error::invalid_config(format!(
            "config key '{PREFIX}{k}' {why}"
        )));
    }
    let (own, raw) = match flavor {
        Flavor::Plain => (keys_of::<RawSingle>(), Single(read(obj, PREFIX)?)),
        Flavor::Cluster => (keys_of::<RawCluster>(), Cluster(read(obj, PREFIX)?)),
        Flavor::Sentinel => (
            &sentinel_keys[..],
            Sentinel(read(obj, PREFIX)?, sentinel_kwargs(obj)?),
        ),
    };
    let config = validate(common, raw, shared)?;
    let shared = keys_of::<RawSharedSettings>();
    reject_unknown(obj, PREFIX, &[head, shared, keys_of::<RawRedis>(), own])?;
    Ok(config)
}

/// `sentinel_kwargs`, when given: an object with `username` and/or `password`.
fn sentinel_kwargs(obj: &Map<String, Value>) -> Result<RawSentinelKwargs, Error> {
    const KEY: &str = "cache_config.sentinel_kwargs";
    match obj.get("sentinel_kwargs") {
        None | Some(Value::Null) => Ok(RawSentinelKwargs::default()),
        Some(Value::Object(kwargs)) => {
            let known = keys_of::<RawSentinelKwargs>();
            if let Some(other) = kwargs.keys().find(|k| !known.contains(&k.as_str())) {
                return Err(Error::invalid_config(format!(
                    "config key '{KEY}.{}' is not supported (only 'username' and 'password' are)",
                    clip(other)
                )));
            }
            read(kwargs, &format!("{KEY}."))
        }
        Some(_) => Err(Error::invalid_config(format!(
            "config key '{KEY}' must be an object (with 'username' and/or 'password')"
        ))),
    }
}

/// What the types do not say: which keys go together, the URLs, TLS, the shared settings.
fn validate(
    common: RawRedis,
    raw: RawTopology,
    shared: RawSharedSettings,
) -> Result<RedisConfig, Error> {
    use RawTopology::{Cluster, Sentinel, Single};
    let RawRedis {
        cluster: _,
        username,
        password,
        db,
        thread_local_lock: _,
        ssl_ca_certs,
        ssl_certfile,
        ssl_keyfile,
        redis_expiration_time,
    } = common;
    let username = username.map(|t| t.0);
    let password = password.map(|t| t.0);
    let db = db.map(|w| w.0);
    let (url, topology) = match raw {
        Single(raw) => (
            single_url(raw, username, password, db)?,
            RedisTopology::Single,
        ),
        Cluster(raw) => {
            let seeds = cluster_seeds(raw, username, password, db)?;
            (seeds[0].clone(), RedisTopology::Cluster { seeds })
        }
        Sentinel(raw, kwargs) => {
            let sentinel = sentinel_config(raw, kwargs, username, password, db)?;
            let (host, port) = &sentinel.sentinels[0];
            (
                format!("redis://{}:{port}", bracketed(host)),
                RedisTopology::Sentinel(Box::new(sentinel)),
            )
        }
    };
    let tls_ca_file = ssl_ca_certs.map(|t| t.0);
    let tls_client_cert = match (ssl_certfile, ssl_keyfile) {
        (Some(cert), Some(key)) => Some((cert.0, key.0)),
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
        shared: shared.validate(redis_expiration_time)?,
        tls_ca_file,
        tls_client_cert,
    })
}

/// One server: `url`, or a URL built from host/port/db/username/password.
fn single_url(
    raw: RawSingle,
    username: Option<String>,
    password: Option<String>,
    db: Option<u64>,
) -> Result<String, Error> {
    let host = raw.host.map(|t| t.0);
    let port = raw.port.map(|w| w.0);
    match raw.url {
        Some(SingleUrl(url)) => {
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

/// A Redis Cluster's seeds.
fn cluster_seeds(
    raw: RawCluster,
    username: Option<String>,
    password: Option<String>,
    db: Option<u64>,
) -> Result<Vec<String>, Error> {
    if db.is_some_and(|db| db != 0) {
        return Err(Error::invalid_config(
            "config key 'cache_config.db' must be 0: a Redis Cluster has only database 0",
        ));
    }
    let host = raw.host.map(|t| t.0);
    let port = raw.port.map(|w| w.0);
    let host_port = host.is_some() || port.is_some();
    let seeds = match (raw.url, raw.startup_nodes) {
        (Some(_), Some(_)) => {
            return Err(Error::invalid_config(
                "cache_config: give either 'url' or 'startup_nodes', not both",
            ))
        }
        (Some(SeedUrls(urls)), None) => {
            if host_port || password.is_some() || username.is_some() {
                return Err(Error::invalid_config(
                    "cache_config: give either 'url' or 'host'/'port'/'username'/'password', \
                     not both (a cluster's password goes in its seed URLs)",
                ));
            }
            urls
        }
        (None, Some(HostPorts(nodes))) => {
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

/// The redis_sentinel backend's arguments.
fn sentinel_config(
    raw: RawSentinel,
    kwargs: RawSentinelKwargs,
    username: Option<String>,
    password: Option<String>,
    db: Option<u64>,
) -> Result<SentinelConfig, Error> {
    let Some(HostPorts(sentinels)) = raw.sentinels else {
        return Err(Error::invalid_config(
            "config key 'cache_config.sentinels' is required by the redis_sentinel backend",
        ));
    };
    let service_name = raw.service_name.map_or_else(|| "mymaster".into(), |t| t.0);
    if service_name.is_empty() || service_name.len() > 256 {
        return Err(Error::invalid_config(
            "config key 'cache_config.service_name' must be a non-empty string (the master's \
             name)",
        ));
    }
    // As in dogpile: the sentinels get the master's username and password unless
    // `sentinel_kwargs` says otherwise (`null`: none).
    let or_master = |given: Nullable, master: &Option<String>| match given {
        Nullable::Absent => master.clone(),
        Nullable::Null => None,
        Nullable::Text(s) => Some(s),
    };
    Ok(SentinelConfig {
        sentinels,
        service_name,
        db: db.unwrap_or(0),
        sentinel_username: or_master(kwargs.username, &username),
        sentinel_password: or_master(kwargs.password, &password),
        username,
        password,
    })
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
