//! `cache_config`: which backend, the in-memory cache, and the settings Redis and Memcached
//! share (near cache, timeouts, locks, breaker).

use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use super::de::{keys_of, read, reject_unknown, Choice, Choices, Flag, Seconds, Text, Whole};
use super::redis::Flavor;
use super::{memcached, redis, MemcachedConfig, RedisConfig};
use crate::status::Error;

/// What error messages put before a `cache_config` key.
pub(super) const PREFIX: &str = "cache_config.";

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

/// An in-process layer in front of a shared backend.
#[derive(Debug, Clone, PartialEq)]
pub struct NearCacheConfig {
    pub ttl: Duration,
    pub max_entries: u64,
}

impl CacheConfig {
    /// The default: the embedded in-memory cache, entries for at most 30 s.
    pub fn default_memory() -> CacheConfig {
        CacheConfig {
            timeout: Duration::from_secs(30),
            backend: BackendConfig::Memory(MemoryConfig::default()),
        }
    }

    /// Parses and validates a `cache_config` object.
    pub fn from_value(value: &Value) -> Result<CacheConfig, Error> {
        let obj = value.as_object().ok_or_else(|| {
            Error::invalid_config("config key 'cache_config' must be a JSON object")
        })?;
        let raw: RawCache = read(obj, PREFIX)?;
        let head = keys_of::<RawCache>();
        let backend = match raw.backend.map_or(Backend::Memory, |c| c.0) {
            Backend::Memory => {
                let memory: RawMemory = read(obj, PREFIX)?;
                reject_unknown(obj, PREFIX, &[head, keys_of::<RawMemory>()])?;
                BackendConfig::Memory(MemoryConfig {
                    max_entries: memory.max_entries.map_or(100_000, |w| w.0),
                })
            }
            Backend::Redis => BackendConfig::Redis(redis::parse(obj, Flavor::Plain, head)?),
            Backend::RedisCluster => {
                BackendConfig::Redis(redis::parse(obj, Flavor::Cluster, head)?)
            }
            Backend::RedisSentinel => {
                BackendConfig::Redis(redis::parse(obj, Flavor::Sentinel, head)?)
            }
            Backend::Memcached => BackendConfig::Memcached(memcached::parse(obj, head)?),
        };
        Ok(CacheConfig {
            timeout: raw.timeout.map_or(Duration::from_secs(30), |s| s.0),
            backend,
        })
    }
}

/// The keys every backend reads.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCache {
    backend: Option<Choice<Backend>>,
    timeout: Option<Seconds>,
}

/// `backend`: our names, and dogpile.cache's as aliases.
#[derive(Clone, Copy, Deserialize)]
enum Backend {
    #[serde(rename = "memory", alias = "dogpile.cache.memory")]
    Memory,
    #[serde(rename = "redis", alias = "dogpile.cache.redis")]
    Redis,
    #[serde(rename = "redis_cluster", alias = "dogpile.cache.redis_cluster")]
    RedisCluster,
    #[serde(rename = "redis_sentinel", alias = "dogpile.cache.redis_sentinel")]
    RedisSentinel,
    #[serde(
        rename = "memcached",
        alias = "dogpile.cache.memcached",
        alias = "dogpile.cache.pylibmc",
        alias = "dogpile.cache.bmemcached"
    )]
    Memcached,
}

impl Choices for Backend {
    const EXPECTED: &'static str = concat!(
        "\"memory\", \"redis\", \"redis_cluster\", \"redis_sentinel\" or \"memcached\" ",
        "(or their dogpile.cache.* names)"
    );
}

/// The memory backend's own key.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMemory {
    max_entries: Option<Whole<1, { 1 << 32 }>>,
}

/// The settings Redis and Memcached share, declared once: each backend reads them with
/// [`read`] beside its own keys (see `de.rs` for why not `#[serde(flatten)]`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSharedSettings {
    socket_timeout: Option<Seconds>,
    distributed_lock: Option<Flag>,
    lock_timeout: Option<Seconds>,
    prefix: Option<Text>,
    near_cache_ttl: Option<Seconds>,
    near_cache_max_entries: Option<Whole<1, { 1 << 32 }>>,
    lock_sleep: Option<Seconds>,
    breaker_failures: Option<Whole<1, 1000>>,
    /// Memcached also takes it as `dead_retry` (python-memcached's name).
    pub(super) breaker_cooldown: Option<Seconds>,
}

/// The settings every shared backend (Redis, Memcached) has, validated and with their defaults:
/// one list, held by [`RedisConfig`] and [`MemcachedConfig`] and taken as it is by the cache.
#[derive(Debug, Clone, PartialEq)]
pub struct SharedSettings {
    /// The bound of each backend operation (connecting included).
    pub socket_timeout: Duration,
    /// Whether processes take a fleet-wide lock so that one of them fetches a missing answer.
    pub distributed_lock: bool,
    pub lock_timeout: Duration,
    /// The longest pause between two looks of a process waiting for another one's fetch.
    pub lock_sleep: Duration,
    /// Server-side expiry cap (`redis_expiration_time`, `memcached_expire_time`); entries get
    /// min(this, their own TTL).
    pub expiration_time: Option<Duration>,
    /// Put in front of every key.
    pub prefix: String,
    pub near_cache: Option<NearCacheConfig>,
    /// Consecutive failures after which a breaker skips its server for `breaker_cooldown`
    /// (Redis: the whole backend; Memcached: per server).
    pub breaker_failures: u32,
    pub breaker_cooldown: Duration,
}

impl RawSharedSettings {
    /// Validates the settings; `expiration_time` is the backend's own key, read beside them.
    pub(super) fn validate(
        self,
        expiration_time: Option<Seconds>,
    ) -> Result<SharedSettings, Error> {
        let near_cache = match (self.near_cache_ttl, self.near_cache_max_entries) {
            (None, None) => None,
            (Some(t), _) if t.0.is_zero() => None,
            (ttl, max) => Some(NearCacheConfig {
                ttl: ttl.map_or(Duration::from_secs(2), |s| s.0),
                max_entries: max.map_or(10_000, |w| w.0),
            }),
        };
        Ok(SharedSettings {
            socket_timeout: positive(
                "socket_timeout",
                self.socket_timeout,
                Duration::from_millis(250),
            )?,
            distributed_lock: self.distributed_lock.map_or(true, |f| f.0),
            lock_timeout: positive("lock_timeout", self.lock_timeout, Duration::from_secs(10))?,
            lock_sleep: positive("lock_sleep", self.lock_sleep, Duration::from_millis(5))?,
            // 0 means none (as in dogpile).
            expiration_time: expiration_time.map(|s| s.0).filter(|d| !d.is_zero()),
            prefix: self.prefix.map_or_else(|| "tc:".into(), |t| t.0),
            near_cache,
            breaker_failures: self.breaker_failures.map_or(3, |w| w.0) as u32,
            breaker_cooldown: positive(
                "breaker_cooldown",
                self.breaker_cooldown,
                Duration::from_secs(2),
            )?,
        })
    }
}

/// A number of seconds that must be more than zero (`default` when not given).
pub(super) fn positive(
    key: &str,
    given: Option<Seconds>,
    default: Duration,
) -> Result<Duration, Error> {
    match given {
        None => Ok(default),
        Some(Seconds(d)) if d.is_zero() => Err(Error::invalid_config(format!(
            "config key '{PREFIX}{key}' must be a number of seconds more than 0"
        ))),
        Some(Seconds(d)) => Ok(d),
    }
}
