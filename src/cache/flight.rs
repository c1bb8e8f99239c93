//! Coalescing of concurrent misses: one fetch per key, however many callers wait for it.
//!
//! The first caller to miss registers its fetch here as a shared future; later callers for the
//! same key wait on the same future. Whoever waits drives it: there is no extra task and no
//! thread hop, so a lone miss costs what the request costs. A caller that gives up (its own
//! deadline passes, its future is dropped) only drops its handle; the others keep driving the
//! fetch, so one waiter's timeout never fails the others. A fetch every caller abandoned stays
//! in the table, unpolled, until a caller finds it older than its deadline and replaces it. The
//! fetch stores its answer in the cache before it leaves the table, and a new fetch looks in the
//! cache first (see `CacheStore::get_or_fetch`), so a caller that missed just before the answer
//! was stored and arrives here after the fetch left makes no second request.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures::future::{BoxFuture, FutureExt, Shared};
use once_cell::sync::Lazy;

use super::{CacheKey, Entry, Source};
use crate::stats::stats;
use crate::status::{tc_status, Error};

type Flight = Shared<BoxFuture<'static, Result<(Entry, Source), Error>>>;

/// A fetch in progress: its shared future, a number telling it apart from a later fetch of the
/// same key, and when it started.
struct Running {
    flight: Flight,
    id: u64,
    started: Instant,
}

static IN_FLIGHT: Lazy<Mutex<HashMap<CacheKey, Running>>> = Lazy::new(Default::default);
static NEXT_ID: AtomicU64 = AtomicU64::new(0);

fn table() -> std::sync::MutexGuard<'static, HashMap<CacheKey, Running>> {
    IN_FLIGHT
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Waits (at most `deadline`) for the fetch of `key`, starting it with `fetch` if none runs.
/// Returns the entry and where it came from: the fetch's own answer for the caller that started
/// it, [`Source::Coalesced`] for the callers that waited for it.
pub async fn join<F>(key: CacheKey, deadline: Duration, fetch: F) -> Result<(Entry, Source), Error>
where
    F: FnOnce() -> BoxFuture<'static, Result<(Entry, Source), Error>>,
{
    let (flight, leader) = {
        let mut guard = table();
        match guard.get(&key) {
            // A fetch that outlived a whole deadline was abandoned by every caller (nobody drove
            // it since): don't join it, replace it.
            Some(running) if running.started.elapsed() < deadline => {
                stats().coalesced_waits.inc();
                (running.flight.clone(), false)
            }
            _ => {
                let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
                let work = AssertUnwindSafe(fetch()).catch_unwind();
                let flight: Flight = async move {
                    let result = work.await.unwrap_or_else(|_| {
                        Err(Error::new(
                            tc_status::TC_PANIC,
                            "internal error while fetching (a panic was caught)",
                        ))
                    });
                    let mut guard = table();
                    if guard.get(&key).is_some_and(|r| r.id == id) {
                        guard.remove(&key);
                    }
                    result
                }
                .boxed()
                .shared();
                guard.insert(
                    key,
                    Running {
                        flight: flight.clone(),
                        id,
                        started: Instant::now(),
                    },
                );
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

/// How many fetches are running (for tests and stats).
pub fn in_flight() -> usize {
    table().len()
}
