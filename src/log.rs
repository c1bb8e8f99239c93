//! Logging: to a callback the host installs (`tc_set_logger`), or to stderr when the
//! `TOKENCHECKER_LOG` environment variable names a level (`error`, `warn`, `info`, `debug`).
//!
//! A disabled level costs one relaxed atomic load. Messages are built only when some sink wants
//! them, and they never carry a token, a secret or a dependent token: callers log what happened
//! (status, endpoint, durations), never what they were given.

use std::cell::Cell;
use std::ffi::{c_char, c_void, CString};
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
use std::sync::Arc;

use arc_swap::ArcSwapOption;
use once_cell::sync::Lazy;

/// Severity of a log message; a sink receives its level and every more severe one.
#[allow(non_camel_case_types)]
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum tc_log_level {
    TC_LOG_OFF = 0,
    TC_LOG_ERROR = 1,
    TC_LOG_WARN = 2,
    TC_LOG_INFO = 3,
    TC_LOG_DEBUG = 4,
}

pub type Level = tc_log_level;

/// Every level, from none to the most verbose (for `tc_library_info`).
pub(crate) const LEVELS: [tc_log_level; 5] = [
    tc_log_level::TC_LOG_OFF,
    tc_log_level::TC_LOG_ERROR,
    tc_log_level::TC_LOG_WARN,
    tc_log_level::TC_LOG_INFO,
    tc_log_level::TC_LOG_DEBUG,
];

impl tc_log_level {
    pub fn name(self) -> &'static str {
        match self {
            tc_log_level::TC_LOG_OFF => "off",
            tc_log_level::TC_LOG_ERROR => "error",
            tc_log_level::TC_LOG_WARN => "warn",
            tc_log_level::TC_LOG_INFO => "info",
            tc_log_level::TC_LOG_DEBUG => "debug",
        }
    }

    fn parse(s: &str) -> Option<Level> {
        Some(match s.trim().to_ascii_lowercase().as_str() {
            "off" | "none" | "0" => tc_log_level::TC_LOG_OFF,
            "error" | "1" => tc_log_level::TC_LOG_ERROR,
            "warn" | "warning" | "2" => tc_log_level::TC_LOG_WARN,
            "info" | "3" => tc_log_level::TC_LOG_INFO,
            "debug" | "trace" | "4" => tc_log_level::TC_LOG_DEBUG,
            _ => return None,
        })
    }

    pub fn from_u32(v: u32) -> Option<Level> {
        Some(match v {
            0 => tc_log_level::TC_LOG_OFF,
            1 => tc_log_level::TC_LOG_ERROR,
            2 => tc_log_level::TC_LOG_WARN,
            3 => tc_log_level::TC_LOG_INFO,
            4 => tc_log_level::TC_LOG_DEBUG,
            _ => return None,
        })
    }
}

/// A host's log callback: `message` is valid only during the call (copy it to keep it). It may be
/// called from any thread, including the library's runtime threads; it must not block for long.
#[allow(non_camel_case_types)]
pub type tc_log_callback = Option<
    unsafe extern "C" fn(user_data: *mut c_void, level: tc_log_level, message: *const c_char),
>;

/// A Rust log sink (tests and the CLI use one).
pub type RustSink = Box<dyn Fn(Level, &str) + Send + Sync>;

enum Sink {
    C {
        callback: unsafe extern "C" fn(*mut c_void, tc_log_level, *const c_char),
        user_data: *mut c_void,
        level: Level,
    },
    Rust(RustSink, Level),
}

// The host promised that its user_data may be used from any thread (documented on
// tc_set_logger).
unsafe impl Send for Sink {}
unsafe impl Sync for Sink {}

/// The current sink is read without a lock (an `ArcSwap` snapshot), so a sink runs while the
/// library holds no lock of its own: it may call back into the library, `tc_set_logger`
/// included, and a concurrent `tc_set_logger` never waits for a lock a sink holds.
struct Logger {
    stderr_level: Level,
    sink: ArcSwapOption<Sink>,
    /// The most verbose level any sink wants: the fast "is anyone listening" check.
    max_level: AtomicU32,
}

static LOGGER: Lazy<Logger> = Lazy::new(|| {
    let stderr_level = std::env::var("TOKENCHECKER_LOG")
        .ok()
        .and_then(|v| Level::parse(&v))
        .unwrap_or(tc_log_level::TC_LOG_OFF);
    Logger {
        stderr_level,
        sink: ArcSwapOption::empty(),
        max_level: AtomicU32::new(stderr_level as u32),
    }
});

#[inline]
pub fn enabled(level: Level) -> bool {
    level as u32 <= LOGGER.max_level.load(Relaxed)
}

/// Logs a message built by `message` (only called when some sink wants this level).
pub fn log(level: Level, message: impl FnOnce() -> String) {
    if !enabled(level) {
        return;
    }
    let text = message();
    let logger = &*LOGGER;
    if level <= logger.stderr_level && level != tc_log_level::TC_LOG_OFF {
        // Straight to the file descriptor: std's stderr lock may be held by a thread that does
        // not exist in a forked child.
        let line = format!("tokenchecker {}: {text}\n", level.name());
        // SAFETY: writes `line`'s bytes, which outlive the call, to fd 2.
        let _ = unsafe { libc::write(2, line.as_ptr().cast(), line.len()) };
    }
    let sink = logger.sink.load_full();
    let _running = InSink::enter();
    match sink.as_deref() {
        Some(Sink::C {
            callback,
            user_data,
            level: wanted,
        }) if level <= *wanted => {
            if let Ok(c) = CString::new(text) {
                // SAFETY: the host gave us this callback and promised it is callable from any
                // thread with this user_data until it is replaced (and `set_sink` waits for
                // calls in progress before it returns).
                unsafe { callback(*user_data, level, c.as_ptr()) };
            }
        }
        Some(Sink::Rust(f, wanted)) if level <= *wanted => f(level, &text),
        _ => {}
    }
}

thread_local! {
    /// How deep this thread is inside sinks (a sink may log through the library again).
    static IN_SINK: Cell<u32> = const { Cell::new(0) };
}

/// Marks this thread as running a sink while it lives.
struct InSink;

impl InSink {
    fn enter() -> InSink {
        IN_SINK.with(|d| d.set(d.get() + 1));
        InSink
    }
    fn active() -> bool {
        IN_SINK.with(|d| d.get() > 0)
    }
}

impl Drop for InSink {
    fn drop(&mut self) {
        IN_SINK.with(|d| d.set(d.get().saturating_sub(1)));
    }
}

fn set_sink(sink: Option<Sink>) {
    let logger = &*LOGGER;
    let wanted = match &sink {
        Some(Sink::C { level, .. }) | Some(Sink::Rust(_, level)) => *level,
        None => tc_log_level::TC_LOG_OFF,
    };
    logger
        .max_level
        .store(wanted.max(logger.stderr_level) as u32, Relaxed);
    let old = logger.sink.swap(sink.map(Arc::new));
    // Once this returns, the old sink is not running and never runs again (so the host may
    // free its user_data): wait for the calls in progress on other threads, which hold their
    // own reference. From inside a sink that cannot be (this thread is one of them): then the
    // old sink may still be finishing on this thread and others when this returns.
    if let Some(mut old) = old {
        if !InSink::active() {
            while Arc::get_mut(&mut old).is_none() {
                std::thread::yield_now();
            }
        }
    }
}

/// Installs (or, with `None`, removes) the C log callback.
pub fn set_c_logger(callback: tc_log_callback, user_data: *mut c_void, level: Level) {
    set_sink(callback.map(|callback| Sink::C {
        callback,
        user_data,
        level,
    }));
}

/// Installs (or removes) a Rust log sink; replaces any C callback.
pub fn set_rust_logger(sink: Option<RustSink>, level: Level) {
    set_sink(sink.map(|f| Sink::Rust(f, level)));
}

macro_rules! log_error { ($($t:tt)*) => { $crate::log::log($crate::log::tc_log_level::TC_LOG_ERROR, || format!($($t)*)) } }
macro_rules! log_warn { ($($t:tt)*) => { $crate::log::log($crate::log::tc_log_level::TC_LOG_WARN, || format!($($t)*)) } }
macro_rules! log_info { ($($t:tt)*) => { $crate::log::log($crate::log::tc_log_level::TC_LOG_INFO, || format!($($t)*)) } }
macro_rules! log_debug { ($($t:tt)*) => { $crate::log::log($crate::log::tc_log_level::TC_LOG_DEBUG, || format!($($t)*)) } }
#[allow(unused_imports)]
pub(crate) use {log_debug, log_error, log_info, log_warn};
