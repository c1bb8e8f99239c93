//! The outage policy: recent positive answers kept a while past their cache lifetime, served
//! only when the authorization server is unavailable and only with `stale_if_error_s` set.
//!
//! Off by default (fail closed). An answer is never served past its token's `exp`, and every
//! stale answer says so in its result (`cache.source` is `"stale"`) and in the stats. The area
//! is part of the process's state (see `process`): a forked child starts with an empty one.

use std::time::Duration;

use crate::cache::memory::MemoryLayer;
use crate::cache::{CacheKey, Entry, Value};
use crate::clock::{now_unix, Moment};

/// Bounded: the stale area never holds more than this many answers.
const MAX_ENTRIES: u64 = 50_000;

/// Where the remembered answers are kept.
pub struct StaleArea {
    layer: MemoryLayer,
}

impl Default for StaleArea {
    fn default() -> Self {
        Self::new()
    }
}

impl StaleArea {
    pub fn new() -> StaleArea {
        StaleArea {
            layer: MemoryLayer::new(MAX_ENTRIES, Duration::from_secs(86_400)),
        }
    }

    /// Keeps a fresh positive answer for `cache_ttl + stale_for`, never past the token's `exp`.
    pub fn remember(&self, key: CacheKey, entry: &Entry, cache_ttl: Duration, stale_for: Duration) {
        let Value::Introspection(info) = &entry.value else {
            return;
        };
        let (true, Some(exp)) = (info.active(), info.exp()) else {
            return;
        };
        let until_exp = Duration::from_secs(exp.saturating_sub(now_unix()).max(0) as u64);
        let keep = (cache_ttl + stale_for).min(until_exp);
        if keep.is_zero() {
            return;
        }
        self.layer.put(
            key.local(),
            Entry {
                expires_at: Moment::now() + keep,
                ..entry.clone()
            },
        );
    }

    /// A remembered answer for `key` whose token has not expired.
    pub fn recall(&self, key: &CacheKey) -> Option<Entry> {
        let entry = self.layer.get(&key.local())?;
        match &entry.value {
            Value::Introspection(info) if info.exp().is_some_and(|e| e > now_unix()) => Some(entry),
            _ => None,
        }
    }

    pub fn forget(&self, key: &CacheKey) {
        self.layer.remove(&key.local());
    }

    pub fn forget_identity(&self, identity: &str) {
        self.layer.remove_identity(identity);
    }
}
