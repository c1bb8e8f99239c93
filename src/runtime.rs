//! The one tokio runtime of the process, started on first use.
//!
//! Blocking entry points (`tc_check` and friends) drive their future on the caller's thread with
//! `Runtime::block_on`, while sockets and timers are driven by the runtime's workers. Calling a
//! blocking entry point from a runtime worker (for example from inside an async completion
//! callback) would stall that worker, so it is refused with `TC_WOULD_BLOCK` instead.

use std::future::Future;

use once_cell::sync::Lazy;
use tokio::runtime::{Builder, Runtime};

use crate::status::{tc_status, Error};

static RUNTIME: Lazy<Runtime> = Lazy::new(|| {
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .clamp(2, 8);
    Builder::new_multi_thread()
        .worker_threads(workers)
        .thread_name("tokenchecker-rt")
        .enable_all()
        .build()
        .expect("tokenchecker: cannot start the tokio runtime")
});

/// Runs `fut` to completion on the calling thread; refuses from inside any tokio runtime.
pub fn block_on<F: Future>(fut: F) -> Result<F::Output, Error> {
    if tokio::runtime::Handle::try_current().is_ok() {
        return Err(Error::new(
            tc_status::TC_WOULD_BLOCK,
            "a blocking tokenchecker call was made from an async runtime thread; \
             use the async variant (tc_check_async) there",
        ));
    }
    Ok(RUNTIME.block_on(fut))
}

/// Runs `fut` on the runtime's workers.
pub fn spawn<F>(fut: F) -> tokio::task::JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    RUNTIME.spawn(fut)
}
