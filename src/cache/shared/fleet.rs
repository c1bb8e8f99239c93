//! The purge log and the tombstones of a shared backend (see `purges`): reading the log with
//! every value, recording purges for the fleet, and asking whether a stale answer was purged.

use std::sync::Arc;

use super::Shared;
use crate::cache::backend::LogUpdate;
use crate::cache::purges::{self, PurgeLog};
use crate::cache::{CacheKey, Entry};
use crate::clock::unix_ms;

impl Shared {
    /// Keeps the purge log just read, unless one with a higher sequence number was read
    /// meanwhile (a value's number must never be older than a purge this process has seen).
    pub(super) fn note_log(&self, bytes: Option<&[u8]>) {
        let bytes = bytes.unwrap_or_default();
        let current = self.last_log.load();
        if current.seq == 0 && bytes.is_empty() {
            return;
        }
        let log = PurgeLog::parse(bytes);
        if log.seq > current.seq {
            self.last_log.store(Arc::new(log));
        }
    }

    /// The purge log's sequence number as last read (what a value fetched now is sealed with).
    pub(super) fn purge_seq(&self) -> u64 {
        self.last_log.load().seq
    }

    /// Records a purge (`head`) in the purge log and writes the tombstone `tombstone` (both
    /// tried even while the breaker is open). False when either did not reach the backend.
    async fn record_purge(&self, head: &str, tombstone: &str) -> bool {
        let margin = purges::CLOCK_MARGIN;
        let now_ms = unix_ms();
        let update = LogUpdate {
            head,
            cutoff_ms: now_ms.saturating_sub((self.timeout + margin).as_millis() as u64),
            max_bytes: purges::MAX_LOG_BYTES,
            now_ms,
            ttl: purges::LOG_LIFETIME,
        };
        let value = now_ms.to_string();
        let keep = self.timeout + purges::TOMBSTONE_EXTRA + margin;
        let (logged, marked) = futures::join!(
            self.forced(&self.log_text, self.backend.log_add(&self.log_text, update)),
            self.forced(
                tombstone,
                self.backend.set(tombstone, value.as_bytes(), keep)
            )
        );
        logged.is_ok() && marked.is_ok()
    }

    /// Records a purge of the token of `key` for the fleet (its values are removed one by one
    /// with [`Self::remove`]). False when it did not reach the backend.
    pub async fn purge_token(&self, key: &CacheKey) -> bool {
        let id = key.public_id();
        let tombstone = format!("{}purged:t:{id}", self.settings.prefix);
        self.record_purge(&purges::token_head(&id), &tombstone)
            .await
    }

    /// Records a purge of every token of `identity` for the fleet; `tombstone` is its tombstone
    /// key. False when it did not reach the backend.
    pub async fn purge_identity(&self, identity: &str, tombstone: &str) -> bool {
        self.record_purge(&purges::identity_head(identity), tombstone)
            .await
    }

    /// Whether a purge newer than `fetched_ms` (less the clock margin) left one of these
    /// tombstones; `Err` when the backend could not tell (then assume it did).
    pub async fn purged_since(&self, tombstones: &[String], fetched_ms: u64) -> Result<bool, ()> {
        let reads = tombstones
            .iter()
            .map(|t| self.guarded(t, self.backend.get(t)));
        let margin = purges::CLOCK_MARGIN.as_millis() as u64;
        for value in futures::future::join_all(reads).await {
            let Ok(value) = value else { return Err(()) };
            let at = value
                .and_then(|v| String::from_utf8(v).ok())
                .and_then(|v| v.parse::<u64>().ok());
            if at.is_some_and(|at| fetched_ms < at.saturating_add(margin)) {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

/// When an entry was fetched, in unix milliseconds.
pub fn fetched_ms(entry: &Entry) -> u64 {
    unix_ms().saturating_sub(entry.fetched_at.elapsed().as_millis() as u64)
}
