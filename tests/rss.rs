//! Memory stays flat under repetition (Linux; resident set size from /proc/self/statm):
//!
//! * one million cached checks of one token through the C ABI (`tc_check`, the result string
//!   freed with `tc_string_free`) grow RSS by less than 20 MiB after a warm-up;
//! * ten thousand `tc_new`/`tc_free` cycles (no credential probe, no `cache_config`) grow RSS by
//!   less than 16 MiB after a warm-up.
//!
//! The bounds are generous on purpose: a leak of even a few dozen bytes per call would show as
//! tens of MiB here, while allocator noise stays well below. Meant for release builds
//! (`cargo test --release --test rss`, ~15 s); in a debug build the counts are cut by 10 and the
//! bounds kept, which still catches a per-call leak of a few hundred bytes.
#![cfg(target_os = "linux")]

use std::ffi::{c_char, CStr, CString};
use std::ptr;
use std::sync::Mutex;
use std::time::Instant;

mod common;

use fake_globus::{fixtures, FakeGlobus};
use serde_json::{json, Value};
use tokenchecker::ffi::{tc_check, tc_free, tc_new, tc_string_free};
use tokenchecker::tc_status;

const MIB: i64 = 1024 * 1024;

/// RSS is process-wide: the two tests must not run at the same time.
static SERIAL: Mutex<()> = Mutex::new(());

fn scale(n: u64) -> u64 {
    if cfg!(debug_assertions) {
        n / 10
    } else {
        n
    }
}

/// Resident set size in bytes.
fn rss() -> i64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("read /proc/self/statm");
    let pages: i64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .expect("statm's second field");
    pages * unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as i64
}

fn config(fake: &FakeGlobus, extra: Value) -> CString {
    CString::new(common::config(fake, extra).to_string()).unwrap()
}

/// Prints what `n` calls of `what` took and did to RSS; the growth in bytes.
fn report(what: &str, n: u64, took: std::time::Duration, before: i64) -> i64 {
    let after = rss();
    eprintln!(
        "{n} {what} in {took:?} ({:.0} ns each): RSS {:.1} → {:.1} MiB ({:+.2} MiB)",
        took.as_nanos() as f64 / n as f64,
        before as f64 / MIB as f64,
        after as f64 / MIB as f64,
        (after - before) as f64 / MIB as f64
    );
    after - before
}

struct Checker(*mut tokenchecker::ffi::tc_checker);

impl Checker {
    fn new(config: &CString) -> Checker {
        let mut checker = ptr::null_mut();
        let mut err: *mut c_char = ptr::null_mut();
        let st = unsafe { tc_new(config.as_ptr(), &mut checker, &mut err) };
        if st != tc_status::TC_OK {
            let msg = unsafe { CStr::from_ptr(err) }
                .to_string_lossy()
                .into_owned();
            unsafe { tc_string_free(err) };
            panic!("tc_new: {msg}");
        }
        assert!(err.is_null());
        Checker(checker)
    }

    /// One `tc_check`; the document is returned only when asked for (always freed).
    fn check(&self, token: &CStr, want_doc: bool) -> (tc_status, Option<String>) {
        let mut out: *mut c_char = ptr::null_mut();
        let st = unsafe { tc_check(self.0, token.as_ptr(), &mut out) };
        assert!(!out.is_null(), "out_json is always set");
        let doc = want_doc.then(|| {
            unsafe { CStr::from_ptr(out) }
                .to_string_lossy()
                .into_owned()
        });
        unsafe { tc_string_free(out) };
        (st, doc)
    }
}

impl Drop for Checker {
    fn drop(&mut self) {
        unsafe { tc_free(self.0) };
    }
}

fn assert_alice(st: tc_status, doc: Option<String>) {
    assert_eq!(st, tc_status::TC_OK, "{doc:?}");
    if let Some(doc) = doc {
        let v: Value = serde_json::from_str(&doc).unwrap();
        assert_eq!(v["sub"], fixtures::ALICE_ID, "{doc}");
        assert_eq!(
            v["identities"],
            json!([fixtures::ALICE_ID, fixtures::ALICE_ID2])
        );
    }
}

#[test]
fn a_million_cached_checks_do_not_grow_rss() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let fake = FakeGlobus::start();
    // Its own cache, with entries that outlive the run.
    let checker = Checker::new(&config(
        &fake,
        json!({"cache_config": {"backend": "memory", "timeout": 600}}),
    ));
    let token = CString::new(fixtures::TOK_VALID).unwrap();

    let (st, doc) = checker.check(&token, true);
    assert_alice(st, doc);
    let (_, doc) = checker.check(&token, true);
    assert!(doc.unwrap().contains(r#""source":"memory""#));

    let warm_up = scale(100_000);
    for _ in 0..warm_up {
        let (st, _) = checker.check(&token, false);
        assert_eq!(st, tc_status::TC_OK);
    }
    let before = rss();
    let n = scale(1_000_000);
    let t = Instant::now();
    for i in 0..n {
        let (st, doc) = checker.check(&token, i % 100_000 == 0);
        assert_alice(st, doc);
    }
    let growth = report("cached tc_check calls", n, t.elapsed(), before);
    assert_eq!(
        fake.counters().introspect,
        1,
        "every check after the first was cached"
    );
    assert!(
        growth < 20 * MIB,
        "RSS grew by {:.1} MiB over {n} cached checks",
        growth as f64 / MIB as f64
    );
}

#[test]
fn ten_thousand_checker_lifecycles_do_not_grow_rss() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let fake = FakeGlobus::start();
    let config = config(&fake, json!({}));
    let token = CString::new(fixtures::TOK_BOB).unwrap();
    // A checker that uses the network once, so that the runtime and the HTTP machinery exist
    // before the measurement.
    {
        let c = Checker::new(&config);
        let (st, _) = c.check(&token, false);
        assert_eq!(st, tc_status::TC_OK);
    }
    let warm_up = scale(1_000);
    for _ in 0..warm_up {
        drop(Checker::new(&config));
    }
    let before = rss();
    let n = scale(10_000);
    let t = Instant::now();
    for i in 0..n {
        let c = Checker::new(&config);
        if i % 1_000 == 0 {
            // A cached answer through a fresh checker (same credentials, same keys).
            let (st, doc) = c.check(&token, true);
            assert_eq!(st, tc_status::TC_OK, "{doc:?}");
        }
    }
    let growth = report("tc_new/tc_free cycles", n, t.elapsed(), before);
    assert!(
        growth < 16 * MIB,
        "RSS grew by {:.1} MiB over {n} tc_new/tc_free cycles",
        growth as f64 / MIB as f64
    );
}
