//! What a shared backend does for [`Shared`](super::shared::Shared): a few operations on keys,
//! each one round trip or close to it, that answer or fail with a message.
//!
//! Everything around the operations is `Shared`'s, the same for every backend: sealing, the
//! circuit breakers, the operation timeout, the fallback layer, the protocol of the fleet fetch
//! lock and the replay of purges. A backend stores bytes under keys with a lifetime, updates the
//! purge log atomically, and takes, releases and polls a lock; it tells how many breakers it wants
//! (one per server it spreads keys over) and which one covers a key, and which
//! [`Source`] its answers come from.
//!
//! Error texts go to the logs and to `describe`: they may name commands and servers, never
//! values. A new backend is one file implementing [`SharedBackend`], and one constructor in
//! `shared` that gives it the configuration's [`SharedSettings`](crate::config::SharedSettings).

use std::time::Duration;

use futures::future::BoxFuture;

use super::Source;

/// An update of the purge log (see [`SharedBackend::log_add`]).
#[derive(Clone, Copy)]
pub struct LogUpdate<'a> {
    /// The new record's head (see `purges::identity_head`).
    pub head: &'a str,
    pub cutoff_ms: u64,
    pub max_bytes: usize,
    pub now_ms: u64,
    pub ttl: Duration,
}

/// Two values read together (either may be missing).
pub type Pair = (Option<Vec<u8>>, Option<Vec<u8>>);

/// One backend operation: its answer, or why there is none.
pub type Op<'a, T> = BoxFuture<'a, Result<T, String>>;

/// A shared backend's operations. `key` is always a backend key (prefixed); an operation is
/// bounded by the caller, and may be dropped mid-way.
pub trait SharedBackend: Send + Sync {
    /// Where its answers come from (`Source::Redis`, `Source::Memcached`); names the backend
    /// in logs too.
    fn source(&self) -> Source;

    /// How many circuit breakers the backend wants: one per server it spreads keys over, or
    /// one for the whole backend.
    fn shards(&self) -> usize {
        1
    }

    /// The breaker (in `0..shards()`) covering `key`: the server holding it.
    fn shard(&self, _key: &str) -> usize {
        0
    }

    /// The value of `key` (`None`: there is none).
    fn get<'a>(&'a self, key: &'a str) -> Op<'a, Option<Vec<u8>>>;

    /// Stores `value` under `key` for `ttl` (at least 1 ms). A backend whose expiry is coarser
    /// than `ttl` stores nothing rather than keep the value longer.
    fn set<'a>(&'a self, key: &'a str, value: &'a [u8], ttl: Duration) -> Op<'a, ()>;

    /// Removes `key`; a key that does not exist is not an error.
    fn delete<'a>(&'a self, key: &'a str) -> Op<'a, ()>;

    /// The values of `key` and `other`, in one round trip where the backend can (a value and
    /// the purge log, see `purges`).
    fn get_pair<'a>(&'a self, key: &'a str, other: &'a str) -> Op<'a, Pair>;

    /// Records a purge in the purge log `key` atomically (see `purges::updated`: the next
    /// sequence number, records before `cutoff_ms` dropped, collapsed when over `max_bytes` or
    /// when the backend refuses a value that large), and makes the log live `ttl` from now.
    fn log_add<'a>(&'a self, key: &'a str, update: LogUpdate<'a>) -> Op<'a, ()>;

    /// Takes `lock` (the fetch lock of the value `key`) with the value `owner` for `ttl`,
    /// unless it is held: whether we now hold it. The backend may keep the lock next to `key`,
    /// so that [`poll`](Self::poll) reads both at once.
    fn try_lock<'a>(
        &'a self,
        key: &'a str,
        lock: &'a str,
        owner: &'a str,
        ttl: Duration,
    ) -> Op<'a, bool>;

    /// Releases `lock` only if it still holds `owner` (compare-and-delete: it may have expired
    /// and been taken by another process).
    fn unlock<'a>(&'a self, key: &'a str, lock: &'a str, owner: &'a str) -> Op<'a, ()>;

    /// The value of `key` and whether `lock` is held, in one round trip.
    fn poll<'a>(&'a self, key: &'a str, lock: &'a str) -> Op<'a, (Option<Vec<u8>>, bool)>;
}
