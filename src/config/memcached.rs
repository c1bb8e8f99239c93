//! The Memcached backend.

use std::time::Duration;

use serde_json::Value;

use super::cache::{near_cache, positive_or_none, positive_seconds, NearCacheConfig};
use super::Keys;
use crate::status::Error;

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

pub(super) fn memcached_config(keys: &mut Keys) -> Result<MemcachedConfig, Error> {
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
