//! The process-wide state, in one place that a `fork()` resets.
//!
//! Everything the library keeps for the whole process and that threads drive or locks guard
//! lives in one [`Process`]: the tokio runtime (started lazily, on the first call that needs the
//! network), the current cache (its in-process layers, its Redis/Memcached connections, its
//! in-flight table) and the stale area. Each checker keeps its own HTTP client the same way
//! (see `checker::Net`).
//!
//! A forked child inherits all of that without the threads that drive it or that may hold its
//! locks: a runtime with no workers, pooled connections shared with the parent, a lock taken by a
//! thread that does not exist in the child. So the child never uses or drops it. A
//! `pthread_atfork` handler bumps a generation counter in the child (one atomic add, safe there);
//! the next call compares its [`Process`]'s generation with the counter (one relaxed load, no
//! syscall on the hit path) and, when they differ, builds a fresh [`Process`] from the same
//! cache configuration and abandons the inherited one (leaks it on purpose: dropping it would
//! touch what the parent's threads own). The child starts with an empty in-process cache and its
//! own runtime and connections; a shared backend's entries are still shared with the fleet.
//!
//! No lock the library uses keeps process-wide state of its own: std's locks are a word in the
//! object they guard, so abandoning the object abandons the lock. parking_lot keeps one table of
//! parked threads for the whole process, which a child inherits mid-update and with entries of
//! threads that no longer exist; so neither the library nor its dependencies' features may bring
//! it in (`scripts/test-all` checks the built library).

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::{ArcSwap, Guard};
use once_cell::sync::{Lazy, OnceCell};
use tokio::runtime::Runtime;

use crate::cache::CacheStore;
use crate::config::CacheConfig;
use crate::log::log_error;
use crate::runtime;
use crate::stale::StaleArea;
use crate::stats::stats;
use crate::status::Error;

/// What the process holds for every checker, for one generation (one process since its last
/// fork).
pub struct Process {
    generation: u64,
    /// Shared by the successors of this generation's state (a new cache keeps the runtime).
    runtime: Arc<OnceCell<Runtime>>,
    /// The cache every checker uses now (a checker with a `cache_config` replaces it).
    pub cache: Arc<CacheStore>,
    /// Recent positive answers kept for `stale_if_error_s`.
    pub stale: Arc<StaleArea>,
}

impl Process {
    fn new(generation: u64, cache: Arc<CacheStore>, stale: Arc<StaleArea>) -> Process {
        Process {
            generation,
            runtime: Arc::new(OnceCell::new()),
            cache,
            stale,
        }
    }

    /// The runtime, started on first use.
    fn runtime(&self) -> &Runtime {
        self.runtime.get_or_init(runtime::start)
    }
}

/// Forks this process has gone through (bumped in the child by the `pthread_atfork` handler).
static FORKS: AtomicU64 = AtomicU64::new(0);
/// Taken by the one thread that rebuilds the state after a fork. A spin flag rather than a lock,
/// so that the fork handler can clear it (a fork while a thread held it would otherwise leave
/// the child waiting forever).
static REBUILDING: AtomicBool = AtomicBool::new(false);

extern "C" fn forked_child() {
    // Only async-signal-safe work here: two atomic stores.
    FORKS.fetch_add(1, Ordering::SeqCst);
    REBUILDING.store(false, Ordering::SeqCst);
}

static STATE: Lazy<ArcSwap<Process>> = Lazy::new(|| {
    // SAFETY: registers a handler that only touches atomics; it runs in the child after fork.
    // (Miri has no fork, and no pthread_atfork.)
    #[cfg(not(miri))]
    {
        let rc = unsafe { libc::pthread_atfork(None, None, Some(forked_child)) };
        if rc != 0 {
            log_error!("pthread_atfork failed ({rc}): a forked child cannot use this library");
        }
    }
    // Values other statics compute lazily, computed now: a fork while another thread computes
    // one would leave the child waiting for it.
    crate::cache::warm_up();
    crate::clock::Moment::now();
    crate::log::enabled(crate::log::Level::TC_LOG_ERROR);
    let cache = CacheStore::new(&CacheConfig::default_memory()).expect("the default cache builds");
    ArcSwap::from_pointee(Process::new(
        FORKS.load(Ordering::SeqCst),
        Arc::new(cache),
        Arc::new(StaleArea::new()),
    ))
});

/// This process's generation: changes in a child after each fork.
#[inline]
pub fn generation() -> u64 {
    FORKS.load(Ordering::Relaxed)
}

/// The process's state for this generation (rebuilt first when this is the first call since a
/// fork). Hold the guard briefly; use `get_arc` for work that outlives a call.
#[inline]
pub fn get() -> Guard<Arc<Process>> {
    let state = STATE.load();
    if state.generation == generation() {
        return state;
    }
    drop(state);
    rebuild_after_fork();
    STATE.load()
}

/// [`get`], as an owned handle.
pub fn get_arc() -> Arc<Process> {
    Guard::into_inner(get())
}

/// The cache every checker uses now.
#[inline]
pub fn cache() -> Arc<CacheStore> {
    get().cache.clone()
}

#[cold]
fn rebuild_after_fork() {
    loop {
        let generation = generation();
        if STATE.load().generation == generation {
            return;
        }
        if REBUILDING
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            std::thread::yield_now();
            continue;
        }
        let inherited = STATE.load_full();
        if inherited.generation != generation {
            let cache = CacheStore::new(&inherited.cache.config).unwrap_or_else(|e| {
                log_error!("after a fork: cannot rebuild the cache ({e}); using the default");
                CacheStore::new(&CacheConfig::default_memory()).expect("the default cache builds")
            });
            let fresh = Process::new(generation, Arc::new(cache), Arc::new(StaleArea::new()));
            let old = STATE.swap(Arc::new(fresh));
            // Abandoned, never dropped: its runtime, connections and locks belong to threads
            // that exist only in the parent.
            std::mem::forget(old);
            std::mem::forget(inherited);
            stats().forks_seen.inc();
        }
        REBUILDING.store(false, Ordering::Release);
    }
}

/// Makes `store` the cache every checker uses (the previous one is dropped when its last user
/// lets go).
pub fn install_cache(store: CacheStore) {
    let store = Arc::new(store);
    drop(get()); // rebuilt first if this is the first call since a fork
    STATE.rcu(|p| {
        Arc::new(Process {
            generation: p.generation,
            runtime: p.runtime.clone(),
            cache: store.clone(),
            stale: p.stale.clone(),
        })
    });
    stats().cache_resets.inc();
}

/// Runs `fut` to completion on the calling thread, with the process's runtime driving sockets
/// and timers; refuses from inside any tokio runtime (see `runtime`).
pub fn block_on<F: Future>(fut: F) -> Result<F::Output, Error> {
    runtime::refuse_inside_runtime()?;
    let handle = get().runtime().handle().clone();
    Ok(handle.block_on(fut))
}

/// Runs `fut` on the process's runtime.
pub fn spawn<F>(fut: F) -> tokio::task::JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    get().runtime().spawn(fut)
}
