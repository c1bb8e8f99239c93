//! The checker's configuration: one JSON document, parsed strictly.
//!
//! Every key is known: an unknown key, a wrong type or a bad value is an error naming the key
//! (the original silently ignored typos and crashed on `"timeout": "60"`). The caller's document
//! is only read, never changed.

use std::time::Duration;

use serde_json::{Map, Value};

use crate::status::Error;

pub const DEFAULT_AUTH_URL: &str = "https://auth.globus.org";
pub const DEFAULT_GROUPS_URL: &str = "https://groups.api.globus.org";

/// How the token's scopes must match `expected_scopes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScopeMatch {
    /// At least one expected scope (the original behaviour).
    Any,
    /// Every expected scope.
    All,
}

/// When group memberships are fetched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchGroups {
    /// Only when an authorization needs them (the default).
    Lazy,
    /// On every check.
    Eager,
    /// Never; group principals never match.
    Never,
}

/// A validated checker configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub client_id: String,
    pub client_secret: String,
    pub expected_scopes: Vec<String>,
    pub expected_audience: String,
    pub auth_url: String,
    pub groups_url: String,
    pub scope_match: ScopeMatch,
    pub leeway_s: i64,
    pub fetch_groups: FetchGroups,
    pub verify_credentials: bool,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    pub max_retries: u32,
    pub max_token_bytes: usize,
    pub max_response_bytes: usize,
    /// At most this many requests to Globus Auth/Groups in flight per checker; more wait (within
    /// their deadline) for a slot.
    pub max_concurrent_requests: usize,
    /// Serve a recent positive answer for up to this long past its cache lifetime when the
    /// authorization server is unavailable (never past the token's `exp`). Zero: fail closed.
    pub stale_if_error: Duration,
    /// `http://` to a host other than loopback was explicitly allowed (`allow_insecure_http`):
    /// credentials and tokens then travel in clear; creation logs a warning.
    pub allow_insecure_http: bool,
    /// Extra CA certificates (PEM, one bundle per file of `ca_certs`) trusted for
    /// `auth_url`/`groups_url` besides the built-in roots: for on-premises servers and tests.
    pub ca_certs: Vec<reqwest::Certificate>,
    /// `None`: reuse the process-wide cache as it is.
    pub cache: Option<CacheConfig>,
    /// Tells a checker's rules apart from every other checker's in the process, so that a cached
    /// answer can remember the last rules it passed. Given by `Checker::new` (the fields are
    /// public and may change before); 0, as parsed: never remembered.
    pub rules_id: u64,
}

/// `cache_config`: which backend, how long entries live, and the backend's own arguments.
#[derive(Debug, Clone, PartialEq)]
pub struct CacheConfig {
    /// Upper bound of every entry's lifetime (entries never outlive their token either).
    pub timeout: Duration,
    pub backend: BackendConfig,
}

#[derive(Debug, Clone, PartialEq)]
pub enum BackendConfig {
    Memory(MemoryConfig),
    Redis(RedisConfig),
    Memcached(MemcachedConfig),
}

#[derive(Debug, Clone, PartialEq)]
pub struct MemoryConfig {
    pub max_entries: u64,
}

impl Default for MemoryConfig {
    fn default() -> Self {
        MemoryConfig {
            max_entries: 100_000,
        }
    }
}

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

#[derive(Debug, Clone, PartialEq)]
pub struct MemcachedConfig {
    pub servers: Vec<String>,
    pub socket_timeout: Duration,
    pub distributed_lock: bool,
    pub lock_timeout: Duration,
    pub expiration_time: Option<Duration>,
    pub prefix: String,
    pub near_cache: Option<NearCacheConfig>,
    pub lock_sleep: Duration,
    /// Per server: consecutive failures after which it is skipped for `breaker_cooldown`.
    pub breaker_failures: u32,
    pub breaker_cooldown: Duration,
}

/// An in-process layer in front of a shared backend.
#[derive(Debug, Clone, PartialEq)]
pub struct NearCacheConfig {
    pub ttl: Duration,
    pub max_entries: u64,
}

impl Config {
    /// Parses and validates a configuration document.
    pub fn from_json(text: &str) -> Result<Config, Error> {
        let value: Value = serde_json::from_str(text)
            .map_err(|e| Error::invalid_config(format!("config is not valid JSON: {e}")))?;
        Config::from_value(&value)
    }

    pub fn from_value(value: &Value) -> Result<Config, Error> {
        let obj = value
            .as_object()
            .ok_or_else(|| Error::invalid_config("config must be a JSON object"))?;
        let mut keys = Keys::new(obj, "");
        let client_id = keys.required_string("client_id")?;
        let client_secret = keys.required_string("client_secret")?;
        let expected_scopes = keys.string_list("expected_scopes")?.ok_or_else(|| {
            Error::invalid_config("config key 'expected_scopes' is required (a list of scopes)")
        })?;
        if expected_scopes.is_empty() {
            return Err(Error::invalid_config(
                "config key 'expected_scopes' must name at least one scope",
            ));
        }
        let expected_audience = keys
            .string("expected_audience")?
            .unwrap_or_else(|| client_id.clone());
        let auth_url = keys.url("auth_url")?.unwrap_or(DEFAULT_AUTH_URL.into());
        let groups_url = keys.url("groups_url")?.unwrap_or(DEFAULT_GROUPS_URL.into());
        let scope_match = match keys.string("scope_match")?.as_deref() {
            None | Some("any") => ScopeMatch::Any,
            Some("all") => ScopeMatch::All,
            Some(other) => return Err(bad_value("scope_match", other, "\"any\" or \"all\"")),
        };
        let leeway_s = keys.integer("leeway_s", 0, 3600)?.unwrap_or(3) as i64;
        let fetch_groups = match keys.string("fetch_groups")?.as_deref() {
            None | Some("lazy") => FetchGroups::Lazy,
            Some("eager") => FetchGroups::Eager,
            Some("never") => FetchGroups::Never,
            Some(other) => {
                return Err(bad_value(
                    "fetch_groups",
                    other,
                    "\"lazy\", \"eager\" or \"never\"",
                ))
            }
        };
        let verify_credentials = keys.boolean("verify_credentials")?.unwrap_or(true);
        let connect_timeout = keys
            .millis("connect_timeout_ms", 1, 600_000)?
            .unwrap_or(2_000);
        let request_timeout = keys
            .millis("request_timeout_ms", 1, 600_000)?
            .unwrap_or(10_000);
        let max_retries = keys.integer("max_retries", 0, 10)?.unwrap_or(1) as u32;
        let max_token_bytes = keys
            .integer("max_token_bytes", 16, 1 << 20)?
            .unwrap_or(16 * 1024) as usize;
        let max_response_bytes = keys
            .integer("max_response_bytes", 1024, 64 << 20)?
            .unwrap_or(1 << 20) as usize;
        let max_concurrent_requests = keys
            .integer("max_concurrent_requests", 1, 100_000)?
            .unwrap_or(256) as usize;
        let stale_if_error = keys.integer("stale_if_error_s", 0, 86_400)?.unwrap_or(0);
        let allow_insecure_http = keys.boolean("allow_insecure_http")?.unwrap_or(false);
        for (key, url) in [("auth_url", &auth_url), ("groups_url", &groups_url)] {
            if !allow_insecure_http && url.starts_with("http://") && !is_loopback(url) {
                return Err(Error::invalid_config(format!(
                    "config key '{key}' is plain http:// to a host that is not loopback: the \
                     client secret and users' tokens would travel in clear; use https://, or set \
                     allow_insecure_http to true if you really mean it"
                )));
            }
        }
        let mut ca_certs = Vec::new();
        for path in keys.string_list("ca_certs")?.unwrap_or_default() {
            let pem = read_pem_file("ca_certs", &path)?;
            let bundle = reqwest::Certificate::from_pem_bundle(&pem)
                .ok()
                .filter(|b| !b.is_empty())
                .ok_or_else(|| {
                    Error::invalid_config(format!(
                        "config key 'ca_certs': {:?} holds no PEM certificate",
                        clip(&path)
                    ))
                })?;
            ca_certs.extend(bundle);
        }
        let cache = match keys.take("cache_config") {
            None | Some(Value::Null) => None,
            Some(v) => Some(CacheConfig::from_value(v)?),
        };
        keys.finish()?;
        Ok(Config {
            client_id,
            client_secret,
            expected_scopes,
            expected_audience,
            auth_url,
            groups_url,
            scope_match,
            leeway_s,
            fetch_groups,
            verify_credentials,
            connect_timeout: Duration::from_millis(connect_timeout),
            request_timeout: Duration::from_millis(request_timeout),
            max_retries,
            max_token_bytes,
            max_response_bytes,
            max_concurrent_requests,
            stale_if_error: Duration::from_secs(stale_if_error),
            allow_insecure_http,
            ca_certs,
            cache,
            rules_id: 0,
        })
    }
}

/// Whether a URL (already validated as http(s) with a host) names this machine: `localhost`,
/// 127.0.0.0/8 or `[::1]`.
fn is_loopback(url: &str) -> bool {
    let Some(host) = reqwest::Url::parse(url).ok().and_then(|u| {
        u.host_str()
            .map(|h| h.trim_matches(['[', ']']).to_ascii_lowercase())
    }) else {
        return false;
    };
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Reads a PEM file named by config key `key`: a regular file of at most 1 MiB (not a pipe or a
/// device that never ends). Errors name the key and the (clipped) path.
pub fn read_pem_file(key: &str, path: &str) -> Result<Vec<u8>, Error> {
    const MAX_PEM_BYTES: u64 = 1 << 20;
    let shown = clip(path);
    let fail = |why: String| {
        Error::invalid_config(format!("config key '{key}': cannot read {shown:?}: {why}"))
    };
    let meta = std::fs::metadata(path).map_err(|e| fail(e.to_string()))?;
    if !meta.is_file() || meta.len() > MAX_PEM_BYTES {
        return Err(fail(format!(
            "not a regular file of at most {MAX_PEM_BYTES} bytes"
        )));
    }
    std::fs::read(path).map_err(|e| fail(e.to_string()))
}

impl CacheConfig {
    /// The default: the embedded in-memory cache, entries for at most 30 s.
    pub fn default_memory() -> CacheConfig {
        CacheConfig {
            timeout: Duration::from_secs(30),
            backend: BackendConfig::Memory(MemoryConfig::default()),
        }
    }

    pub fn from_value(value: &Value) -> Result<CacheConfig, Error> {
        let obj = value.as_object().ok_or_else(|| {
            Error::invalid_config("config key 'cache_config' must be a JSON object")
        })?;
        let mut keys = Keys::new(obj, "cache_config.");
        let backend = keys.string("backend")?.unwrap_or("memory".into());
        let timeout = keys.seconds("timeout")?.unwrap_or(Duration::from_secs(30));
        let backend = match backend.as_str() {
            "memory" | "dogpile.cache.memory" => BackendConfig::Memory(MemoryConfig {
                max_entries: keys.integer("max_entries", 1, 1 << 32)?.unwrap_or(100_000),
            }),
            "redis" | "dogpile.cache.redis" => {
                BackendConfig::Redis(redis_config(&mut keys, Flavor::Plain)?)
            }
            "redis_cluster" | "dogpile.cache.redis_cluster" => {
                BackendConfig::Redis(redis_config(&mut keys, Flavor::Cluster)?)
            }
            "redis_sentinel" | "dogpile.cache.redis_sentinel" => {
                BackendConfig::Redis(redis_config(&mut keys, Flavor::Sentinel)?)
            }
            "memcached"
            | "dogpile.cache.memcached"
            | "dogpile.cache.pylibmc"
            | "dogpile.cache.bmemcached" => BackendConfig::Memcached(memcached_config(&mut keys)?),
            other => return Err(bad_value("cache_config.backend", other, BACKEND_NAMES)),
        };
        keys.finish()?;
        Ok(CacheConfig { timeout, backend })
    }
}

/// Which Redis backend name the configuration gave.
#[derive(Clone, Copy, PartialEq)]
enum Flavor {
    Plain,
    Cluster,
    Sentinel,
}

/// The `backend` names, for the message when it is none of them.
const BACKEND_NAMES: &str = concat!(
    "\"memory\", \"redis\", \"redis_cluster\", \"redis_sentinel\" or \"memcached\" ",
    "(or their dogpile.cache.* names)"
);

fn redis_config(keys: &mut Keys, flavor: Flavor) -> Result<RedisConfig, Error> {
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

/// A number of seconds that must be more than zero.
fn positive_seconds(
    keys: &mut Keys,
    key: &'static str,
    default: Duration,
) -> Result<Duration, Error> {
    match keys.seconds(key)? {
        None => Ok(default),
        Some(d) if d.is_zero() => Err(keys.wrong_type(key, "a number of seconds more than 0")),
        Some(d) => Ok(d),
    }
}

/// An expiration cap: 0 means none (as in dogpile).
fn positive_or_none(d: Option<Duration>) -> Option<Duration> {
    d.filter(|d| !d.is_zero())
}

fn memcached_config(keys: &mut Keys) -> Result<MemcachedConfig, Error> {
    let servers = match keys.take("url") {
        None | Some(Value::Null) => vec!["127.0.0.1:11211".to_string()],
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => {
            let mut out = Vec::new();
            for item in items {
                match item.as_str() {
                    Some(s) if !s.is_empty() => out.push(s.to_string()),
                    _ => {
                        return Err(Error::invalid_config(
                            "cache_config.url must be a server or a list of servers (strings)",
                        ))
                    }
                }
            }
            if out.is_empty() {
                return Err(Error::invalid_config(
                    "cache_config.url must name at least one server",
                ));
            }
            out
        }
        Some(_) => {
            return Err(Error::invalid_config(
                "cache_config.url must be a server or a list of servers (strings)",
            ))
        }
    };
    for server in &servers {
        if server.is_empty()
            || server
                .bytes()
                .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
        {
            return Err(Error::invalid_config(
                "cache_config.url: a Memcached server is \"host:port\" (or tcp://host:port, unix:///path)",
            ));
        }
    }
    let prefix = keys.string("prefix")?.unwrap_or_else(|| "tc:".into());
    if prefix.len() > 160
        || prefix
            .bytes()
            .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
    {
        return Err(keys.wrong_type(
            "prefix",
            "at most 160 characters without spaces or control characters (a Memcached key)",
        ));
    }
    // `dead_retry` (python-memcached's name) and `breaker_cooldown` are the same setting.
    let dead_retry = keys.seconds("dead_retry")?;
    let cooldown = keys.seconds("breaker_cooldown")?;
    let breaker_cooldown = match (dead_retry, cooldown) {
        (Some(_), Some(_)) => {
            return Err(Error::invalid_config(
                "cache_config: give either 'dead_retry' or 'breaker_cooldown', not both",
            ))
        }
        (Some(d), None) if d.is_zero() => {
            return Err(keys.wrong_type("dead_retry", "a number of seconds more than 0"))
        }
        (None, Some(d)) if d.is_zero() => {
            return Err(keys.wrong_type("breaker_cooldown", "a number of seconds more than 0"))
        }
        (Some(d), None) | (None, Some(d)) => d,
        (None, None) => Duration::from_secs(2),
    };
    Ok(MemcachedConfig {
        servers,
        socket_timeout: positive_seconds(keys, "socket_timeout", Duration::from_millis(250))?,
        distributed_lock: keys.boolean("distributed_lock")?.unwrap_or(true),
        lock_timeout: positive_seconds(keys, "lock_timeout", Duration::from_secs(10))?,
        expiration_time: positive_or_none(keys.seconds("memcached_expire_time")?),
        prefix,
        near_cache: near_cache(keys)?,
        lock_sleep: positive_seconds(keys, "lock_sleep", Duration::from_millis(5))?,
        breaker_failures: keys.integer("breaker_failures", 1, 1000)?.unwrap_or(3) as u32,
        breaker_cooldown,
    })
}

fn near_cache(keys: &mut Keys) -> Result<Option<NearCacheConfig>, Error> {
    let ttl = keys.seconds("near_cache_ttl")?;
    let max = keys.integer("near_cache_max_entries", 1, 1 << 32)?;
    Ok(match (ttl, max) {
        (None, None) => None,
        (Some(t), _) if t.is_zero() => None,
        (ttl, max) => Some(NearCacheConfig {
            ttl: ttl.unwrap_or(Duration::from_secs(2)),
            max_entries: max.unwrap_or(10_000),
        }),
    })
}

fn urlencode(s: &str) -> String {
    urlencoding::encode(s).into_owned()
}

fn bad_value(key: &str, got: &str, expected: &str) -> Error {
    Error::invalid_config(format!(
        "config key '{key}' has an unknown value {:?}; expected {expected}",
        clip(got)
    ))
}

/// At most 64 characters of something the caller wrote, for an error message: a hostile
/// configuration must not turn into a multi-megabyte message.
pub(crate) fn clip(s: &str) -> String {
    const MAX: usize = 64;
    match s.char_indices().nth(MAX) {
        None => s.to_string(),
        Some((cut, _)) => format!("{}…", &s[..cut]),
    }
}

/// Reads keys out of one JSON object and reports what was left unread.
struct Keys<'a> {
    obj: &'a Map<String, Value>,
    prefix: &'static str,
    seen: Vec<&'a str>,
}

impl<'a> Keys<'a> {
    fn new(obj: &'a Map<String, Value>, prefix: &'static str) -> Self {
        Keys {
            obj,
            prefix,
            seen: Vec::new(),
        }
    }

    fn take(&mut self, key: &'static str) -> Option<&'a Value> {
        let (k, v) = self.obj.get_key_value(key)?;
        self.seen.push(k.as_str());
        Some(v)
    }

    fn wrong_type(&self, key: &str, expected: &str) -> Error {
        Error::invalid_config(format!(
            "config key '{}{key}' must be {expected}",
            self.prefix
        ))
    }

    fn string(&mut self, key: &'static str) -> Result<Option<String>, Error> {
        match self.take(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(self.wrong_type(key, "a string")),
        }
    }

    fn required_string(&mut self, key: &'static str) -> Result<String, Error> {
        match self.string(key)? {
            Some(s) if !s.is_empty() => Ok(s),
            Some(_) => Err(self.wrong_type(key, "a non-empty string")),
            None => Err(Error::invalid_config(format!(
                "config key '{}{key}' is required",
                self.prefix
            ))),
        }
    }

    fn url(&mut self, key: &'static str) -> Result<Option<String>, Error> {
        let Some(text) = self.string(key)? else {
            return Ok(None);
        };
        let parsed = reqwest::Url::parse(&text)
            .map_err(|e| self.wrong_type(key, &format!("an http:// or https:// URL ({e})")))?;
        let host_ok = parsed.host_str().is_some_and(|h| !h.is_empty());
        // The text itself is what requests are built from: it must say `http://` or `https://`
        // (the URL parser forgives `http:host`, `http:./host`, `HTTP://`, …).
        let prefix_ok = text.starts_with("http://") || text.starts_with("https://");
        if !prefix_ok
            || !matches!(parsed.scheme(), "http" | "https")
            || !host_ok
            || parsed.query().is_some()
            || parsed.fragment().is_some()
            || !parsed.username().is_empty()
            || parsed.password().is_some()
        {
            return Err(self.wrong_type(
                key,
                "an http:// or https:// URL with a host and no user, query or fragment",
            ));
        }
        Ok(Some(text.trim_end_matches('/').to_string()))
    }

    /// A list of non-empty strings; a single space-separated string is accepted too.
    fn string_list(&mut self, key: &'static str) -> Result<Option<Vec<String>>, Error> {
        match self.take(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.split_whitespace().map(String::from).collect())),
            Some(Value::Array(items)) => {
                let mut out = Vec::with_capacity(items.len());
                for item in items {
                    match item.as_str() {
                        Some(s) if !s.trim().is_empty() => out.push(s.trim().to_string()),
                        _ => return Err(self.wrong_type(key, "a list of non-empty strings")),
                    }
                }
                Ok(Some(out))
            }
            Some(_) => Err(self.wrong_type(key, "a list of strings")),
        }
    }

    fn boolean(&mut self, key: &'static str) -> Result<Option<bool>, Error> {
        match self.take(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(self.wrong_type(key, "true or false")),
        }
    }

    fn integer(&mut self, key: &'static str, min: u64, max: u64) -> Result<Option<u64>, Error> {
        match self.take(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => match n.as_u64() {
                Some(v) if (min..=max).contains(&v) => Ok(Some(v)),
                _ => Err(self.wrong_type(key, &format!("a whole number from {min} to {max}"))),
            },
            Some(_) => Err(self.wrong_type(key, &format!("a whole number from {min} to {max}"))),
        }
    }

    fn millis(&mut self, key: &'static str, min: u64, max: u64) -> Result<Option<u64>, Error> {
        self.integer(key, min, max)
    }

    /// Seconds as a number (fractions allowed), 0 to 30 days.
    fn seconds(&mut self, key: &'static str) -> Result<Option<Duration>, Error> {
        match self.take(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => match n.as_f64() {
                Some(v) if v.is_finite() && (0.0..=2_592_000.0).contains(&v) => {
                    Ok(Some(Duration::from_secs_f64(v)))
                }
                _ => Err(self.wrong_type(key, "a number of seconds from 0 to 2592000")),
            },
            Some(_) => Err(self.wrong_type(key, "a number of seconds (not a string)")),
        }
    }

    fn finish(self) -> Result<(), Error> {
        let mut unknown: Vec<&str> = self
            .obj
            .keys()
            .map(String::as_str)
            .filter(|k| !self.seen.contains(k))
            .collect();
        if unknown.is_empty() {
            return Ok(());
        }
        unknown.sort_unstable();
        let list = unknown
            .iter()
            .take(5)
            .map(|k| format!("'{}{}'", self.prefix, clip(k)))
            .collect::<Vec<_>>()
            .join(", ");
        Err(Error::invalid_config(format!("unknown config key {list}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::tc_status;

    fn parse(v: Value) -> Result<Config, Error> {
        Config::from_value(&v)
    }

    fn base() -> Value {
        serde_json::json!({"client_id": "c", "client_secret": "s", "expected_scopes": ["a"]})
    }

    #[test]
    fn defaults() {
        let c = parse(base()).unwrap();
        assert_eq!(c.expected_audience, "c");
        assert_eq!(c.auth_url, DEFAULT_AUTH_URL);
        assert_eq!(c.scope_match, ScopeMatch::Any);
        assert_eq!(c.fetch_groups, FetchGroups::Lazy);
        assert_eq!(c.leeway_s, 3);
        assert!(c.verify_credentials);
        assert!(c.cache.is_none());
    }

    #[test]
    fn unknown_keys_are_named() {
        let mut v = base();
        v["expected_scope"] = "x".into();
        let e = parse(v).unwrap_err();
        assert_eq!(e.status, tc_status::TC_INVALID_CONFIG);
        assert!(e.message.contains("'expected_scope'"), "{}", e.message);

        let mut v = base();
        v["cache_config"] = serde_json::json!({"backend": "memory", "max_entires": 3});
        let e = parse(v).unwrap_err();
        assert!(
            e.message.contains("'cache_config.max_entires'"),
            "{}",
            e.message
        );
    }

    #[test]
    fn wrong_types_are_named() {
        let mut v = base();
        v["cache_config"] = serde_json::json!({"timeout": "60"});
        let e = parse(v).unwrap_err();
        assert!(e.message.contains("cache_config.timeout"), "{}", e.message);
        let mut v = base();
        v["leeway_s"] = (-1).into();
        assert!(parse(v).unwrap_err().message.contains("leeway_s"));
        let mut v = base();
        v["expected_scopes"] = serde_json::json!([]);
        assert!(parse(v).unwrap_err().message.contains("expected_scopes"));
        let mut v = base();
        v["scope_match"] = "some".into();
        assert!(parse(v).unwrap_err().message.contains("scope_match"));
    }

    #[test]
    fn hostile_input_gives_short_messages() {
        let mut v = base();
        v["x".repeat(1 << 20)] = 1.into();
        assert!(parse(v).unwrap_err().message.len() < 200);
        let mut v = base();
        v["scope_match"] = "y".repeat(1 << 20).into();
        assert!(parse(v).unwrap_err().message.len() < 300);
    }

    #[test]
    fn backends() {
        let mut v = base();
        v["cache_config"] = serde_json::json!({"backend": "dogpile.cache.redis", "host": "h", "port": 7, "db": 2, "timeout": 60});
        let c = parse(v).unwrap().cache.unwrap();
        assert_eq!(c.timeout, Duration::from_secs(60));
        match c.backend {
            BackendConfig::Redis(r) => assert_eq!(r.url, "redis://h:7/2"),
            other => panic!("{other:?}"),
        }
        let mut v = base();
        v["cache_config"] =
            serde_json::json!({"backend": "dogpile.cache.memcached", "url": ["a:1", "b:2"]});
        match parse(v).unwrap().cache.unwrap().backend {
            BackendConfig::Memcached(m) => assert_eq!(m.servers, vec!["a:1", "b:2"]),
            other => panic!("{other:?}"),
        }
    }
}
