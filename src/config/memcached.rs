//! The Memcached backend.

use std::time::Duration;

use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};

use super::cache::{positive, RawSharedSettings, SharedSettings, PREFIX};
use super::de::{keys_of, leaf, one_or_many, read, reject_unknown, OneOrMany, Seconds};
use crate::status::Error;

#[derive(Debug, Clone, PartialEq)]
pub struct MemcachedConfig {
    pub servers: Vec<String>,
    pub shared: SharedSettings,
}

/// Memcached's own keys, besides the [`RawSharedSettings`].
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMemcached {
    url: Option<Servers>,
    memcached_expire_time: Option<Seconds>,
    /// python-memcached's name for `breaker_cooldown`.
    dead_retry: Option<Seconds>,
}

/// Reads and validates a Memcached `cache_config` (`head`: the keys every backend reads).
pub(super) fn parse(obj: &Map<String, Value>, head: &[&str]) -> Result<MemcachedConfig, Error> {
    let raw: RawMemcached = read(obj, PREFIX)?;
    let shared: RawSharedSettings = read(obj, PREFIX)?;
    let config = validate(raw, shared)?;
    reject_unknown(
        obj,
        PREFIX,
        &[
            head,
            keys_of::<RawSharedSettings>(),
            keys_of::<RawMemcached>(),
        ],
    )?;
    Ok(config)
}

/// What the types do not say: the prefix is part of a Memcached key; `dead_retry` and
/// `breaker_cooldown` are the same setting.
fn validate(raw: RawMemcached, mut shared: RawSharedSettings) -> Result<MemcachedConfig, Error> {
    if let Some(dead_retry) = raw.dead_retry {
        if shared.breaker_cooldown.is_some() {
            return Err(Error::invalid_config(
                "cache_config: give either 'dead_retry' or 'breaker_cooldown', not both",
            ));
        }
        let cooldown = positive("dead_retry", Some(dead_retry), Duration::ZERO)?;
        shared.breaker_cooldown = Some(Seconds(cooldown));
    }
    let shared = shared.validate(raw.memcached_expire_time)?;
    if shared.prefix.len() > 160
        || shared
            .prefix
            .bytes()
            .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
    {
        return Err(Error::invalid_config(
            "config key 'cache_config.prefix' must be at most 160 characters without spaces or \
             control characters (a Memcached key)",
        ));
    }
    Ok(MemcachedConfig {
        servers: raw
            .url
            .map_or_else(|| vec!["127.0.0.1:11211".to_string()], |s| s.0),
        shared,
    })
}

/// Memcached's `url`: a server or a non-empty list of them, each `host:port` (or
/// `tcp://host:port`, `unix:///path`) without spaces or control characters.
struct Servers(Vec<String>);

impl<'de> Deserialize<'de> for Servers {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        const WHAT: &str = " must be a server or a list of servers (strings)";
        leaf(d, |v| {
            let servers = match one_or_many(v).ok_or(WHAT)? {
                OneOrMany::One(s) => vec![s],
                OneOrMany::Many(list) if list.iter().any(String::is_empty) => {
                    return Err(WHAT.into())
                }
                OneOrMany::Many(list) if list.is_empty() => {
                    return Err(" must name at least one server".into())
                }
                OneOrMany::Many(list) => list,
            };
            let bad = |s: &String| {
                s.is_empty()
                    || s.bytes()
                        .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
            };
            if servers.iter().any(bad) {
                return Err(
                    ": a Memcached server is \"host:port\" (or tcp://host:port, \
                            unix:///path)"
                        .into(),
                );
            }
            Ok(Servers(servers))
        })
    }
}
