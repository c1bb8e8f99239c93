//! The in-process layer: the embedded backend, or the near cache in front of a shared one.
//!
//! Two bounded moka caches: one for what a token is (positive entries, groups, dependent tokens)
//! and a smaller one for inactive tokens, so a flood of garbage tokens evicts garbage, not the
//! answers real callers need. Every entry expires at its own instant.

use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::sync::Cache;
use moka::Expiry;

use super::keys::{CacheKey, IdHash};
use super::Entry;

struct EntryExpiry;

impl Expiry<CacheKey, Arc<Entry>> for EntryExpiry {
    fn expire_after_create(
        &self,
        _key: &CacheKey,
        value: &Arc<Entry>,
        now: Instant,
    ) -> Option<Duration> {
        Some(value.expires_at.saturating_duration_since(now))
    }

    fn expire_after_update(
        &self,
        _key: &CacheKey,
        value: &Arc<Entry>,
        now: Instant,
        _current: Option<Duration>,
    ) -> Option<Duration> {
        Some(value.expires_at.saturating_duration_since(now))
    }
}

pub struct MemoryLayer {
    positive: Cache<CacheKey, Arc<Entry>, IdHash>,
    negative: Cache<CacheKey, Arc<Entry>, IdHash>,
    max_ttl: Duration,
}

impl MemoryLayer {
    /// `max_ttl` caps every entry (the near cache's short TTL; `timeout` for the embedded cache).
    pub fn new(max_entries: u64, max_ttl: Duration) -> Self {
        let build = |cap: u64| {
            Cache::builder()
                .max_capacity(cap)
                .expire_after(EntryExpiry)
                .support_invalidation_closures()
                .build_with_hasher(IdHash)
        };
        MemoryLayer {
            positive: build(max_entries),
            negative: build((max_entries / 4).max(16)),
            max_ttl,
        }
    }

    #[inline]
    pub fn get(&self, key: &CacheKey) -> Option<Arc<Entry>> {
        // moka checks each entry's own expiry (EntryExpiry) on read.
        self.positive.get(key).or_else(|| self.negative.get(key))
    }

    pub fn put(&self, key: CacheKey, entry: Arc<Entry>) {
        let entry = if entry.expires_at > Instant::now() + self.max_ttl {
            Arc::new(entry.with_expiry(Instant::now() + self.max_ttl))
        } else {
            entry
        };
        if entry.is_negative() {
            self.negative.insert(key, entry);
        } else {
            self.positive.insert(key, entry);
        }
    }

    pub fn remove(&self, key: &CacheKey) {
        self.positive.invalidate(key);
        self.negative.invalidate(key);
    }

    /// Drops every entry that belongs to a token of this identity.
    pub fn remove_identity(&self, identity: &str) {
        let id = identity.to_string();
        let _ = self
            .positive
            .invalidate_entries_if(move |_, e| e.identities.contains(&id));
    }

    pub fn entry_count(&self) -> u64 {
        self.positive.entry_count() + self.negative.entry_count()
    }

    pub fn run_pending_tasks(&self) {
        self.positive.run_pending_tasks();
        self.negative.run_pending_tasks();
    }
}
