//! A shared backend (Redis or Memcached) as one layer of the cache: sealed entries, bounded
//! operations, a circuit breaker, a fallback in-process layer, and the fleet-wide fetch lock.
//! The backend itself is a [`SharedBackend`]: its operations only; everything described here is
//! the same for every backend.
//!
//! Nothing here ever fails a check: a backend that errs, times out, is skipped by its breaker or
//! answers garbage is a miss, and the answer comes from the authorization server instead.
//!
//! **Fetch lock** (`distributed_lock`, on by default). Inside the per-process flight (one fetch
//! per key per process), the leader takes a lock in the backend before fetching: Redis
//! `SET <key>.lock <owner> NX PX lock_timeout`, Memcached `add <key>.lock <owner> <secs>`, with a
//! random owner value. The winner looks once more for the value (another process may have stored
//! it meanwhile), fetches, stores the sealed value, and releases the lock by compare-and-delete
//! (a Lua script on Redis, a CAS delete on Memcached), so it never drops a lock another process
//! took after its own expired. A loser polls the value and the lock together (one round trip) with
//! a backoff from 1 ms doubling up to `lock_sleep`: the value appears → it is the answer; the lock
//! is gone without a value (the holder failed, or its answer was not cacheable) → it tries to
//! take the lock itself. A holder that died leaves a lock that expires after `lock_timeout`, and a
//! waiter takes over. Waiting is bounded (twice `lock_timeout`); past that, or as soon as the
//! backend fails, the process fetches by itself.
//!
//! **Fallback layer.** While the backend is unavailable, answers are kept in a bounded
//! in-process layer (consulted only then), so the process keeps caching through an outage.
//!
//! **Purges for the fleet** (see `purges`): `tc_purge` deletes the token's values and, like
//! `tc_purge_identity`, adds one record to the purge log (read with every value: a value a
//! record covers is a miss) and writes a tombstone (read before a stale answer is served). Each
//! is one bounded write, whatever the number of tokens; a failure is reported, never ignored.
//!
//! **Fetch locks are released** when the fetch ends, and when its future is dropped (every
//! caller gave up): the release then runs on its own. A lock never outlives the fetch's deadline.
//!
//! **Purges during an outage.** A removal (`tc_purge`) that cannot reach the backend is
//! remembered for the cache's `timeout` (no entry stored before it outlives that). Until it has
//! been replayed — tried again before each later use of the backend — the key is a miss in this
//! process, so a backend that comes back with the purged entry never serves it here; other
//! processes stop seeing it once the replay lands.

mod fleet;
mod lock;

pub use fleet::fetched_ms;

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

use super::backend::SharedBackend;
use super::breaker::Breaker;
use super::memcached::MemcachedBackend;
use super::memory::MemoryLayer;
use super::purges::PurgeLog;
use super::redis::RedisBackend;
use super::sealing;
use super::{CacheKey, Entry, LocalKey};
use crate::clock::Moment;
use crate::config::{MemcachedConfig, RedisConfig, SharedSettings};
use crate::log::{log_debug, log_info, log_warn};
use crate::model::Source;
use crate::stats::stats;
use crate::status::Error;

/// Entries kept by the fallback layer while the backend is down.
const FALLBACK_MAX_ENTRIES: u64 = 10_000;
/// Removals remembered while the backend is down (beyond that, the oldest are forgotten).
const PENDING_REMOVALS_MAX: usize = 10_000;
/// Removals replayed by one caller at a time.
const REPLAY_BATCH: usize = 64;

pub struct Shared {
    backend: Arc<dyn SharedBackend>,
    /// The backend's breakers, one per shard (see [`SharedBackend::shard`]).
    breakers: Box<[Breaker]>,
    /// The backend's source (read on every hit).
    source: Source,
    /// The configuration's settings: prefix, operation timeout, fetch lock, expiry cap.
    settings: SharedSettings,
    /// The cache's `timeout`: no entry is stored for longer.
    timeout: Duration,
    fallback: MemoryLayer,
    /// The last backend error, for `describe` (it names commands and servers, never values).
    last_error: Mutex<Option<String>>,
    /// Removals that did not reach the backend, by key text, with when they stop mattering.
    pending_removals: Mutex<HashMap<String, Moment>>,
    /// Whether `pending_removals` may be non-empty (read before every backend use).
    has_pending_removals: AtomicBool,
    /// Whether a caller is replaying removals now.
    replaying: AtomicBool,
    /// The purge log's backend key.
    log_text: String,
    /// The purge log as last read (what a poll during a lock wait is checked against).
    last_log: ArcSwap<PurgeLog>,
}

/// Why an operation did not reach the backend or got no usable answer.
struct Unavailable;

impl Shared {
    pub fn redis(config: &RedisConfig, timeout: Duration) -> Result<Shared, Error> {
        Ok(Shared::new(
            RedisBackend::new(config)?,
            &config.shared,
            timeout,
        ))
    }

    pub fn memcached(config: &MemcachedConfig, timeout: Duration) -> Result<Shared, Error> {
        Ok(Shared::new(
            MemcachedBackend::new(config),
            &config.shared,
            timeout,
        ))
    }

    /// A layer over `backend`; `timeout` is the cache's (no entry is stored for longer).
    pub fn new(
        backend: impl SharedBackend + 'static,
        settings: &SharedSettings,
        timeout: Duration,
    ) -> Shared {
        let breakers = (0..backend.shards())
            .map(|_| Breaker::new(settings.breaker_failures, settings.breaker_cooldown))
            .collect();
        Shared {
            source: backend.source(),
            backend: Arc::new(backend),
            breakers,
            settings: settings.clone(),
            timeout,
            fallback: MemoryLayer::new(FALLBACK_MAX_ENTRIES, timeout),
            last_error: Mutex::new(None),
            pending_removals: Mutex::new(HashMap::new()),
            has_pending_removals: AtomicBool::new(false),
            replaying: AtomicBool::new(false),
            log_text: format!("{}purges", settings.prefix),
            last_log: ArcSwap::from_pointee(PurgeLog::default()),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.settings.prefix
    }

    pub fn source(&self) -> Source {
        self.source
    }

    /// The breaker covering `key`.
    fn breaker(&self, key: &str) -> &Breaker {
        &self.breakers[self.backend.shard(key)]
    }

    /// Whether some breaker is open (the backend, or one of its servers, is considered down).
    #[inline]
    fn tripped(&self) -> bool {
        self.breakers.iter().any(Breaker::tripped)
    }

    /// The fallback layer's entry, consulted only while a breaker skips its server (once the
    /// cool-down has passed, the caller goes to the backend, as the probe). The hot path has only
    /// the token's local id, not its backend key: with several Memcached servers, any skipping
    /// one lets the fallback answer (its entries were written while their own server failed).
    #[inline]
    pub fn get_fallback(&self, key: &LocalKey) -> Option<(Entry, Source)> {
        if !self.tripped() {
            return None;
        }
        if !self.breakers.iter().any(Breaker::skipping) {
            return None;
        }
        self.fallback.get(key).map(|e| (e, Source::Memory))
    }

    /// Runs one backend operation for `key` through its breaker and the operation timeout.
    async fn guarded<T>(
        &self,
        key: &str,
        op: impl Future<Output = Result<T, String>>,
    ) -> Result<T, Unavailable> {
        let breaker = self.breaker(key);
        if !breaker.allow() {
            stats().breaker_open_skips.inc();
            return Err(Unavailable);
        }
        self.bounded(breaker, op).await
    }

    /// Like [`guarded`](Self::guarded), but goes to the backend even while the breaker is open
    /// (purges: they must reach the backend if it answers at all).
    async fn forced<T>(
        &self,
        key: &str,
        op: impl Future<Output = Result<T, String>>,
    ) -> Result<T, Unavailable> {
        self.bounded(self.breaker(key), op).await
    }

    async fn bounded<T>(
        &self,
        breaker: &Breaker,
        op: impl Future<Output = Result<T, String>>,
    ) -> Result<T, Unavailable> {
        let started = Instant::now();
        let result = tokio::time::timeout(self.settings.socket_timeout, op).await;
        stats().backend_latency.observe(started.elapsed());
        match result {
            Ok(Ok(v)) => {
                if breaker.success() {
                    log_info!("{}: the cache backend answers again", self.source.name());
                }
                Ok(v)
            }
            Ok(Err(e)) => {
                self.failed(breaker, e);
                Err(Unavailable)
            }
            Err(_) => {
                self.failed(
                    breaker,
                    format!("no answer within {:?}", self.settings.socket_timeout),
                );
                Err(Unavailable)
            }
        }
    }

    fn failed(&self, breaker: &Breaker, error: String) {
        stats().backend_errors.inc();
        if breaker.failure() {
            log_warn!(
                "{}: the cache backend is unavailable ({error}); skipping it for a while, \
                 checks go to the in-process layer and the authorization server",
                self.source.name()
            );
        } else {
            log_debug!("{}: cache backend error: {error}", self.source.name());
        }
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(error);
    }

    /// Opens a stored value; a rejected one is counted and is a miss, and so is one a purge in
    /// the log (as last read) covers.
    fn open(&self, key: &CacheKey, text: &str, bytes: &[u8]) -> Option<Entry> {
        match sealing::open_with_seq(key, text, bytes) {
            Ok(Some((entry, seq))) => {
                let log = self.last_log.load();
                if !log.is_empty() && log.covers(entry.identities, &key.public_id(), seq) {
                    stats().backend_purged.inc();
                    return None;
                }
                stats().backend_hits.inc();
                Some(entry)
            }
            Ok(None) => {
                stats().backend_misses.inc();
                None
            }
            Err(why) => {
                stats().backend_rejected_entries.inc();
                log_warn!(
                    "{}: rejected a cache entry that does not open ({why:?}): \
                     altered, forged or copied from another key; treated as a miss",
                    self.source.name()
                );
                None
            }
        }
    }

    /// A lookup in the backend (or, when it is unavailable, in the fallback layer).
    pub async fn get(&self, key: &CacheKey) -> Option<(Entry, Source)> {
        let text = key.to_text(&self.settings.prefix);
        self.get_text(key, &text).await
    }

    async fn get_text(&self, key: &CacheKey, text: &str) -> Option<(Entry, Source)> {
        if self.removal_pending(text).await {
            return None;
        }
        match self
            .guarded(text, self.backend.get_pair(text, &self.log_text))
            .await
        {
            Ok((value, log)) => {
                self.note_log(log.as_deref());
                match value {
                    Some(bytes) => self.open(key, text, &bytes).map(|e| (e, self.source)),
                    None => {
                        stats().backend_misses.inc();
                        None
                    }
                }
            }
            Err(Unavailable) => self.fallback.get(&key.local()).map(|e| (e, Source::Memory)),
        }
    }

    /// Stores `entry` in the backend for what is left of its lifetime (capped by the backend's
    /// expiration setting), or in the fallback layer when the backend is unavailable.
    pub async fn put(&self, key: CacheKey, entry: &Entry) {
        let text = key.to_text(&self.settings.prefix);
        self.put_text(key, &text, entry, self.purge_seq()).await
    }

    /// `seq`: the purge log's sequence number when the entry's fetch started.
    async fn put_text(&self, key: CacheKey, text: &str, entry: &Entry, seq: u64) {
        let mut ttl = entry
            .expires_at
            .saturating_duration_since(Moment::now())
            .min(self.timeout);
        if let Some(cap) = self.settings.expiration_time {
            ttl = ttl.min(cap);
        }
        if ttl < Duration::from_millis(1) {
            return;
        }
        let sealed = sealing::seal_after(&key, text, entry, ttl, seq);
        match self
            .guarded(text, self.backend.set(text, &sealed, ttl))
            .await
        {
            // A newer answer replaced whatever a pending removal was for.
            Ok(()) => self.forget_removal(text),
            Err(Unavailable) => self.fallback.put(key.local(), entry.clone()),
        }
    }

    /// Removes the entry from the backend (tried even while the breaker is open) and the
    /// fallback layer. If the backend cannot be reached, the removal is replayed later (see the
    /// module documentation).
    pub async fn remove(&self, key: &CacheKey) {
        self.fallback.remove(&key.local());
        self.remove_text(key.to_text(&self.settings.prefix)).await;
    }

    async fn remove_text(&self, text: String) {
        match self.forced(&text, self.backend.delete(&text)).await {
            Ok(()) => self.forget_removal(&text),
            Err(Unavailable) => self.remember_removal(text),
        }
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, HashMap<String, Moment>> {
        self.pending_removals
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    fn remember_removal(&self, text: String) {
        let now = Moment::now();
        let mut pending = self.pending();
        pending.retain(|_, until| *until > now);
        if pending.len() >= PENDING_REMOVALS_MAX {
            if let Some(oldest) = pending
                .iter()
                .min_by_key(|(_, u)| **u)
                .map(|(k, _)| k.clone())
            {
                pending.remove(&oldest);
            }
        }
        pending.insert(text, now + self.timeout);
        self.has_pending_removals.store(true, Ordering::Release);
        log_warn!(
            "{}: a purge did not reach the cache backend; it is replayed when the backend answers again ({} pending)",
            self.source.name(),
            pending.len()
        );
    }

    fn forget_removal(&self, text: &str) {
        if self.has_pending_removals.load(Ordering::Acquire) {
            let mut pending = self.pending();
            pending.remove(text);
            if pending.is_empty() {
                self.has_pending_removals.store(false, Ordering::Release);
            }
        }
    }

    /// Replays the pending removals (if any) and tells whether the one of `text` is still
    /// pending: then the backend's entry for it must not be used.
    async fn removal_pending(&self, text: &str) -> bool {
        if !self.has_pending_removals.load(Ordering::Acquire) {
            return false;
        }
        let now = Moment::now();
        // One caller at a time replays a batch, and only to servers not being skipped: during
        // an outage a check costs one map lookup here, however many purges wait.
        if !self.replaying.swap(true, Ordering::AcqRel) {
            // Cleared even if this caller's future is dropped mid-replay.
            let _turn = ReplayTurn(&self.replaying);
            let due: Vec<String> = {
                let mut pending = self.pending();
                pending.retain(|_, until| *until > now);
                pending
                    .keys()
                    .filter(|k| !self.breaker(k).skipping())
                    .take(REPLAY_BATCH)
                    .cloned()
                    .collect()
            };
            for key in &due {
                if self.guarded(key, self.backend.delete(key)).await.is_err() {
                    break;
                }
                self.forget_removal(key);
            }
        }
        let pending = self.pending();
        if pending.is_empty() {
            self.has_pending_removals.store(false, Ordering::Release);
        }
        pending.get(text).is_some_and(|until| *until > now)
    }

    pub fn remove_identity(&self, identity: &str) {
        self.fallback.remove_identity(identity);
    }

    /// A bare GET of the key's backend entry (no opening, no breaker), for benchmarks: the
    /// baseline a cached check through this backend is measured against. The size read.
    #[doc(hidden)]
    pub async fn raw_get_len(&self, key: &CacheKey) -> Option<usize> {
        let text = key.to_text(&self.settings.prefix);
        tokio::time::timeout(self.settings.socket_timeout, self.backend.get(&text))
            .await
            .ok()?
            .ok()?
            .map(|v| v.len())
    }

    pub fn describe(&self) -> serde_json::Value {
        self.fallback.sweep();
        let breakers: Vec<&'static str> = self.breakers.iter().map(Breaker::state).collect();
        serde_json::json!({
            "prefix": self.settings.prefix,
            "distributed_lock": self.settings.distributed_lock,
            "breaker": breakers,
            "fallback_entries": self.fallback.entry_count(),
            "last_error": *self.last_error.lock().unwrap_or_else(|p| p.into_inner()),
        })
    }
}

/// The replaying caller's turn; ends when dropped.
struct ReplayTurn<'a>(&'a AtomicBool);

impl Drop for ReplayTurn<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}
