//! The in-process layer: the embedded backend, or the near cache in front of a shared one.
//!
//! Two bounded caches: one for what a token is (positive entries, groups, dependent tokens) and a
//! smaller one for inactive tokens, so a flood of garbage tokens evicts garbage, not the answers
//! real callers need. Every entry expires at its own instant.
//!
//! Built on `quick_cache` (sharded, a read lock per shard on a hit, S3-FIFO-style eviction): it
//! costs ≈155 bytes per entry where moka cost ≈500 (measured with 1 M entries), which is what lets
//! a cached token (two entries) fit in 1 KiB. An entry past its expiry is never returned; expired
//! entries are dropped when read, swept every so often by writes, and evicted by capacity.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use quick_cache::sync::Cache;
use quick_cache::{OptionsBuilder, UnitWeighter};

use super::keys::{IdHash, LocalKey};
use super::Entry;
use crate::clock::Moment;

type Map = Cache<LocalKey, Entry, UnitWeighter, IdHash>;

/// Hash tables start at most this large and grow with use (a checker configured for a million
/// entries should not reserve them up front).
const INITIAL_ITEMS: u64 = 4096;

/// Shards per map (quick_cache's default is 4 per CPU; it halves them for small maps, so that
/// each holds at least 32 entries). A hit takes its shard's read lock, whose counter threads
/// hitting the same shard bounce between their cores: on the 2-CPU VM, 2 threads went from
/// 11.6–12.1 M cached checks/s with 8 shards to 13.8–14.8 M/s with 128, one thread unchanged
/// (`cargo bench --bench suite`, 2026-12-07).
const SHARDS: usize = 128;

pub struct MemoryLayer {
    positive: Map,
    negative: Map,
    max_ttl: Duration,
    /// Writes since the last sweep of expired entries, and how many trigger one.
    writes: AtomicU64,
    sweep_every: u64,
}

fn expired(entry: &Entry, now: Moment) -> bool {
    entry.expires_at <= now
}

impl MemoryLayer {
    /// `max_ttl` caps every entry (the near cache's short TTL; `timeout` for the embedded cache).
    pub fn new(max_entries: u64, max_ttl: Duration) -> Self {
        let build = |cap: u64| {
            let cap = cap.max(1);
            let options = OptionsBuilder::new()
                .estimated_items_capacity(cap.min(INITIAL_ITEMS) as usize)
                .weight_capacity(cap)
                .shards(SHARDS)
                .build()
                .expect("both capacities are set");
            Map::with_options(options, UnitWeighter, IdHash, Default::default())
        };
        MemoryLayer {
            positive: build(max_entries),
            negative: build((max_entries / 4).max(16)),
            max_ttl,
            writes: AtomicU64::new(0),
            sweep_every: (max_entries / 2).max(1024),
        }
    }

    #[inline]
    fn get_from(map: &Map, key: &LocalKey, now: Moment) -> Option<Entry> {
        let entry = map.get(key)?;
        if !expired(&entry, now) {
            return Some(entry);
        }
        map.remove_if(key, |e| expired(e, now));
        None
    }

    #[inline]
    pub fn get(&self, key: &LocalKey) -> Option<Entry> {
        self.get_at(key, Moment::now())
    }

    /// [`Self::get`] with the current instant already read.
    #[inline]
    pub fn get_at(&self, key: &LocalKey, now: Moment) -> Option<Entry> {
        Self::get_from(&self.positive, key, now)
            .or_else(|| Self::get_from(&self.negative, key, now))
    }

    pub fn put(&self, key: LocalKey, mut entry: Entry) {
        let now = Moment::now();
        entry.expires_at = entry.expires_at.min(now + self.max_ttl);
        if entry.is_negative() {
            // An answer can change kind (a token revoked since): never keep both.
            self.positive.remove(&key);
            self.negative.insert(key, entry);
        } else {
            self.negative.remove(&key);
            self.positive.insert(key, entry);
        }
        if self.writes.fetch_add(1, Ordering::Relaxed) + 1 >= self.sweep_every {
            self.writes.store(0, Ordering::Relaxed);
            self.sweep();
        }
    }

    pub fn remove(&self, key: &LocalKey) {
        self.positive.remove(key);
        self.negative.remove(key);
    }

    /// Drops every entry that belongs to a token of this identity.
    pub fn remove_identity(&self, identity: &str) {
        self.positive
            .retain(|_, e| !e.identities.may_contain(identity));
    }

    /// Entries held, expired ones included until the next sweep (see [`Self::sweep`]).
    pub fn entry_count(&self) -> u64 {
        (self.positive.len() + self.negative.len()) as u64
    }

    /// Drops every expired entry now.
    pub fn sweep(&self) {
        let now = Moment::now();
        self.positive.retain(|_, e| !expired(e, now));
        self.negative.retain(|_, e| !expired(e, now));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::{Kind, Value};
    use crate::model::IdentityFilter;
    use crate::model::Introspection;
    use crate::model::TokenInfo;
    use std::sync::Arc;

    fn key(i: u32) -> LocalKey {
        let mut id = [0u8; 16];
        id[..4].copy_from_slice(&i.to_le_bytes());
        // Spread the ids like the keyed hash does (the first 8 bytes are the map's hash).
        id[4..8].copy_from_slice(&i.wrapping_mul(0x9e37_79b9).to_le_bytes());
        LocalKey::new(Kind::Introspection, id)
    }

    fn entry(active: bool, ttl: Duration, identities: &[&str]) -> Entry {
        let info = TokenInfo::new(Introspection {
            active,
            ..Default::default()
        });
        let ids = IdentityFilter::of(identities);
        Entry::new(Value::Introspection(Arc::new(info)), ttl, ids)
    }

    #[test]
    fn expired_entries_are_never_returned_and_are_swept() {
        let layer = MemoryLayer::new(100, Duration::from_secs(60));
        layer.put(key(1), entry(true, Duration::ZERO, &[]));
        layer.put(key(2), entry(true, Duration::from_secs(60), &[]));
        assert!(layer.get(&key(1)).is_none());
        assert!(layer.get(&key(2)).is_some());
        layer.put(key(3), entry(false, Duration::ZERO, &[]));
        layer.sweep();
        assert_eq!(layer.entry_count(), 1);
    }

    #[test]
    fn ttl_is_capped_and_kinds_do_not_coexist() {
        let layer = MemoryLayer::new(100, Duration::from_millis(1));
        layer.put(key(1), entry(true, Duration::from_secs(3600), &[]));
        std::thread::sleep(Duration::from_millis(20));
        assert!(layer.get(&key(1)).is_none(), "capped at max_ttl");

        let layer = MemoryLayer::new(100, Duration::from_secs(60));
        layer.put(key(1), entry(true, Duration::from_secs(60), &[]));
        layer.put(key(1), entry(false, Duration::from_secs(60), &[]));
        assert!(!match &layer.get(&key(1)).unwrap().value {
            Value::Introspection(i) => i.active(),
            _ => unreachable!(),
        });
        assert_eq!(layer.entry_count(), 1);
    }

    #[test]
    fn capacity_bounds_the_layer_and_purge_by_identity_works() {
        let layer = MemoryLayer::new(100, Duration::from_secs(60));
        let alice = entry(true, Duration::from_secs(60), &["alice"]);
        for i in 0..2_000 {
            layer.put(key(i), alice.clone());
        }
        assert!(layer.entry_count() <= 100, "{}", layer.entry_count());
        layer.put(
            key(1_000_000),
            entry(true, Duration::from_secs(60), &["bob"]),
        );
        layer.remove_identity("alice");
        assert_eq!(layer.entry_count(), 1);
        assert!(layer.get(&key(1_000_000)).is_some());
        layer.remove(&key(1_000_000));
        assert_eq!(layer.entry_count(), 0);
    }
}
