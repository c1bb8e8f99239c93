//! Coalescing of concurrent misses: one fetch per key, however many callers wait for it.
//!
//! The first caller to miss starts the fetch as a task of its own on the runtime and registers
//! it here; later callers for the same key wait on the same result. Because the fetch is a task
//! and not part of any caller's future, a caller that gives up (its own deadline passes, its
//! future is dropped) never cancels it, so one waiter's timeout never fails the others. The task
//! stores its answer in the cache before it leaves the table, so a caller arriving after it left
//! finds the answer in the cache.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::{BoxFuture, FutureExt, Shared};
use once_cell::sync::Lazy;

use super::{CacheKey, Entry, Source};
use crate::runtime;
use crate::stats::stats;
use crate::status::{tc_status, Error};

type Flight = Shared<BoxFuture<'static, Result<(Arc<Entry>, Source), Error>>>;

static IN_FLIGHT: Lazy<Mutex<HashMap<CacheKey, Flight>>> = Lazy::new(Default::default);

fn table() -> std::sync::MutexGuard<'static, HashMap<CacheKey, Flight>> {
    IN_FLIGHT
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Waits (at most `deadline`) for the fetch of `key`, starting it with `fetch` if none runs.
/// Returns the entry and where it came from: the fetch's own answer for the caller that started
/// it, [`Source::Coalesced`] for the callers that waited for it.
pub async fn join<F>(
    key: CacheKey,
    deadline: Duration,
    fetch: F,
) -> Result<(Arc<Entry>, Source), Error>
where
    F: FnOnce() -> BoxFuture<'static, Result<(Arc<Entry>, Source), Error>>,
{
    let (flight, leader) = {
        let mut guard = table();
        match guard.get(&key) {
            Some(flight) => {
                stats().coalesced_waits.inc();
                (flight.clone(), false)
            }
            None => {
                let work = fetch();
                let task = runtime::spawn(async move {
                    let result = work.await;
                    table().remove(&key);
                    result
                });
                let flight: Flight = async move {
                    task.await.unwrap_or_else(|_| {
                        table().remove(&key);
                        Err(Error::new(
                            tc_status::TC_PANIC,
                            "the fetch task failed unexpectedly",
                        ))
                    })
                }
                .boxed()
                .shared();
                guard.insert(key, flight.clone());
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
