//! `cache_config`: which backend, the in-memory cache, and the settings Redis and Memcached
//! share (near cache, timeouts, locks, breaker).

use std::time::Duration;

use serde_json::Value;

use super::memcached::memcached_config;
use super::redis::{redis_config, Flavor};
use super::{bad_value, Keys, MemcachedConfig, RedisConfig};
use crate::status::Error;

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

/// The `backend` names, for the message when it is none of them.
const BACKEND_NAMES: &str = concat!(
    "\"memory\", \"redis\", \"redis_cluster\", \"redis_sentinel\" or \"memcached\" ",
    "(or their dogpile.cache.* names)"
);

/// A number of seconds that must be more than zero.
pub(super) fn positive_seconds(
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
pub(super) fn positive_or_none(d: Option<Duration>) -> Option<Duration> {
    d.filter(|d| !d.is_zero())
}

pub(super) fn near_cache(keys: &mut Keys) -> Result<Option<NearCacheConfig>, Error> {
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
