//! Building the tokio runtimes, and the rule about blocking calls.
//!
//! The process's runtime (held by `process`, started on the first call that needs it) is
//! multi-threaded: blocking entry points (`tc_check` and friends) drive their future on the
//! caller's thread with `block_on`, while sockets and timers are driven by the runtime's
//! workers. Calling a blocking entry point from a runtime worker (for example from inside an
//! async completion callback) would stall that worker, so it is refused with `TC_WOULD_BLOCK`.
//!
//! Creating a checker probes the credentials on a runtime of its own that ends with the probe
//! ([`block_on_temporary`]), so a process that creates checkers and then forks (gunicorn
//! `--preload`) has no runtime threads at the fork.

use std::future::Future;

use tokio::runtime::{Builder, Runtime};

use crate::status::{tc_status, Error};

/// The process's multi-thread runtime.
pub fn start() -> Runtime {
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
}

/// `TC_WOULD_BLOCK` when called from inside any tokio runtime.
pub fn refuse_inside_runtime() -> Result<(), Error> {
    if tokio::runtime::Handle::try_current().is_ok() {
        return Err(Error::new(
            tc_status::TC_WOULD_BLOCK,
            "a blocking tokenchecker call was made from an async runtime thread; \
             use the async variant (tc_check_async) there",
        ));
    }
    Ok(())
}

/// Runs `fut` to completion on a runtime of the calling thread's own, gone when this returns
/// (with any thread it started): for work done once, such as a new checker's credential probe.
pub fn block_on_temporary<F: Future>(fut: F) -> Result<F::Output, Error> {
    refuse_inside_runtime()?;
    let rt = Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::unavailable(format!("cannot start a runtime: {e}")))?;
    Ok(rt.block_on(fut))
}
