//! Coalescing of concurrent misses: one fetch per key, however many callers wait for it.
//!
//! The first caller to miss registers its fetch here as a shared future; later callers for the
//! same key wait on the same future. Whoever waits drives it: there is no extra task and no
//! thread hop, so a lone miss costs what the request costs. A caller that gives up (its own
//! deadline passes, its future is dropped) only drops its handle; the others keep driving the
//! fetch, so one waiter's timeout never fails the others.
//!
//! The table holds only a weak handle: when every caller has given up, the fetch itself is
//! dropped at once — its request is cancelled, its request slot released, its copy of the token
//! freed — and it leaves the table. So a brownout in which every caller times out leaves
//! nothing behind, however many distinct tokens it saw: the table holds no more fetches than
//! there are callers waiting, and no fetch runs past its own deadline (the first caller's).
//!
//! The fetch stores its answer in the cache before it leaves the table, and a new fetch looks in
//! the cache first (see `CacheStore::get_or_fetch`), so a caller that missed just before the
//! answer was stored and arrives here after the fetch left makes no second request.
//!
//! Each cache store has its own table (a forked child rebuilds its store, and with it a table
//! that no thread of the parent's holds locked).

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::{BoxFuture, FutureExt, Shared, WeakShared};

use super::{CacheKey, Entry};
use crate::model::Source;
use crate::stats::stats;
use crate::status::{tc_status, Error};

type FetchFuture = BoxFuture<'static, Result<(Entry, Source), Error>>;

/// A fetch in progress: a weak handle on its shared future (the callers hold the strong ones),
/// and a number telling it apart from a later fetch of the same key.
struct Running {
    flight: WeakShared<FetchFuture>,
    id: u64,
}

/// The fetches in progress, by key.
#[derive(Default)]
pub struct Flights {
    table: Mutex<HashMap<CacheKey, Running>>,
    next_id: AtomicU64,
}

impl Flights {
    fn table(&self) -> std::sync::MutexGuard<'_, HashMap<CacheKey, Running>> {
        self.table
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// How many fetches are running (for tests and stats).
    pub fn len(&self) -> usize {
        self.table().len()
    }

    /// Whether a fetch of `key` is running.
    pub fn contains(&self, key: &CacheKey) -> bool {
        self.table()
            .get(key)
            .is_some_and(|r| r.flight.upgrade().is_some())
    }
}

/// Takes a fetch out of the table when it ends, finished or dropped (never while this module
/// holds the table's lock: a shared future is never dropped there).
struct Leave {
    flights: Arc<Flights>,
    key: CacheKey,
    id: u64,
}

impl Drop for Leave {
    fn drop(&mut self) {
        let mut guard = self.flights.table();
        if guard.get(&self.key).is_some_and(|r| r.id == self.id) {
            guard.remove(&self.key);
        }
    }
}

/// Waits (at most `deadline`) for the fetch of `key`, starting it with `fetch` if none runs;
/// a fetch this call starts is given `deadline` too, and ends with it.
/// Returns the entry and where it came from: the fetch's own answer for the caller that started
/// it, [`Source::Coalesced`] for the callers that waited for it.
pub async fn join<F>(
    flights: &Arc<Flights>,
    key: CacheKey,
    deadline: Duration,
    fetch: F,
) -> Result<(Entry, Source), Error>
where
    F: FnOnce() -> FetchFuture,
{
    let (flight, leader) = {
        let mut guard = flights.table();
        match guard.get(&key).and_then(|r| r.flight.upgrade()) {
            Some(flight) => {
                stats().coalesced_waits.inc();
                (flight, false)
            }
            None => {
                let id = flights.next_id.fetch_add(1, Ordering::Relaxed);
                let work = AssertUnwindSafe(fetch()).catch_unwind();
                let leave = Leave {
                    flights: flights.clone(),
                    key,
                    id,
                };
                let flight: Shared<FetchFuture> = async move {
                    let _leave = leave;
                    match tokio::time::timeout(deadline, work).await {
                        Ok(Ok(result)) => result,
                        Ok(Err(_)) => Err(Error::new(
                            tc_status::TC_PANIC,
                            "internal error while fetching (a panic was caught)",
                        )),
                        Err(_) => Err(Error::unavailable(format!(
                            "no answer from the authorization server within {} ms",
                            deadline.as_millis()
                        ))),
                    }
                }
                .boxed()
                .shared();
                let weak = flight.downgrade().expect("a shared future not yet polled");
                // Replaces a dead handle, if any (a weak handle: dropping it drops no fetch).
                guard.insert(key, Running { flight: weak, id });
                (flight, true)
            }
        }
    };
    match tokio::time::timeout(deadline, flight).await {
        Ok(result) => {
            result.map(|(entry, source)| (entry, if leader { source } else { Source::Coalesced }))
        }
        Err(_) => {
            stats().waiter_timeouts.inc();
            Err(Error::unavailable(format!(
                "no answer from the authorization server within {} ms",
                deadline.as_millis()
            )))
        }
    }
}
