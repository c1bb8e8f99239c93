//! The plumbing every export shares: the panic boundary, documents handed to C, borrowed
//! arguments, and the start of asynchronous work.

use std::ffi::{c_char, c_void, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;
use std::sync::Arc;

use futures::FutureExt;

use super::{tc_callback, tc_checker};
use crate::checker::Checker;
use crate::process;
use crate::status::{tc_status, Error};

/// Hands a document to C. Every document is JSON written by serde_json or by our renderer from
/// serde_json pieces, where a NUL can only appear escaped (`\u0000`); so instead of scanning
/// the whole document for one (a `CString::new` on every check), this checks it only in debug
/// builds.
#[inline]
pub(super) fn to_c_string(s: String) -> *mut c_char {
    CDoc::from(s).into_raw()
}

/// A document ready for C: its bytes and the terminating NUL, best allocated at its exact size
/// (`into_raw` otherwise shrinks it, a `realloc` on every call).
pub(super) struct CDoc(pub(super) Vec<u8>);

impl CDoc {
    #[inline]
    fn into_raw(self) -> *mut c_char {
        debug_assert_eq!(
            self.0.iter().position(|&b| b == 0),
            Some(self.0.len() - 1),
            "a document with a raw NUL byte, or none at the end"
        );
        // SAFETY: exactly one NUL, at the end (see above).
        unsafe { CString::from_vec_with_nul_unchecked(self.0) }.into_raw()
    }
}

impl From<String> for CDoc {
    #[inline]
    fn from(s: String) -> CDoc {
        let mut bytes = s.into_bytes();
        bytes.reserve_exact(1);
        bytes.push(0);
        CDoc(bytes)
    }
}

pub(super) fn panic_json() -> String {
    Error::new(
        tc_status::TC_PANIC,
        "internal error (a panic was caught at the FFI boundary); please report it",
    )
    .to_json()
}

/// Runs `f` behind the panic boundary and delivers its document through `out`.
#[inline]
pub(super) unsafe fn deliver<D: Into<CDoc>>(
    out: *mut *mut c_char,
    f: impl FnOnce() -> Result<D, Error>,
) -> tc_status {
    if out.is_null() {
        return tc_status::TC_INVALID_ARGUMENT;
    }
    *out = ptr::null_mut();
    let (status, doc) = match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(doc)) => (tc_status::TC_OK, doc.into()),
        Ok(Err(e)) => (e.status, e.to_json().into()),
        Err(_) => (tc_status::TC_PANIC, panic_json().into()),
    };
    *out = CDoc::into_raw(doc);
    status
}

/// Runs `f` behind the panic boundary for the exports that hand out an object: `keep` stores a
/// success; a failure (or a caught panic, reported with `panic_message`) goes to `*out_error` as
/// an error document when `out_error` is not NULL. The caller has cleared `*out_error`.
#[inline]
pub(super) unsafe fn deliver_object<T>(
    out_error: *mut *mut c_char,
    panic_message: &str,
    f: impl FnOnce() -> Result<T, Error>,
    keep: impl FnOnce(T),
) -> tc_status {
    let error = match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(value)) => {
            keep(value);
            return tc_status::TC_OK;
        }
        Ok(Err(e)) => e,
        Err(_) => Error::new(tc_status::TC_PANIC, panic_message),
    };
    if !out_error.is_null() {
        *out_error = to_c_string(error.to_json());
    }
    error.status
}

/// The shared body of the exports that create an object (`tc_new`, `tc_derive`,
/// `tc_policy_new`): clears `*out_error`, refuses a NULL `out` (naming `out_name`), sets `*out`
/// to NULL, then runs `f` behind the panic boundary and stores its object with `into_raw`.
#[inline]
pub(super) unsafe fn deliver_new<T, H>(
    out: *mut *mut H,
    out_name: &str,
    out_error: *mut *mut c_char,
    panic_message: &str,
    f: impl FnOnce() -> Result<T, Error>,
    into_raw: impl FnOnce(T) -> *mut H,
) -> tc_status {
    if !out_error.is_null() {
        *out_error = ptr::null_mut();
    }
    if out.is_null() {
        if !out_error.is_null() {
            *out_error =
                to_c_string(Error::invalid_argument(format!("{out_name} is NULL")).to_json());
        }
        return tc_status::TC_INVALID_ARGUMENT;
    }
    *out = ptr::null_mut();
    deliver_object(out_error, panic_message, f, |value| *out = into_raw(value))
}

/// Runs `f` behind the panic boundary when there is no document to deliver.
#[inline]
pub(super) fn guard(f: impl FnOnce() -> Result<(), Error>) -> tc_status {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => tc_status::TC_OK,
        Ok(Err(e)) => e.status,
        Err(_) => tc_status::TC_PANIC,
    }
}

#[inline]
pub(super) unsafe fn str_arg<'a>(p: *const c_char, what: &str) -> Result<&'a str, Error> {
    if p.is_null() {
        return Err(Error::invalid_argument(format!("{what} is NULL")));
    }
    CStr::from_ptr(p)
        .to_str()
        .map_err(|_| Error::invalid_argument(format!("{what} is not valid UTF-8")))
}

/// Borrows the checker behind a handle.
#[inline]
pub(super) unsafe fn checker_ref<'a>(p: *const tc_checker) -> Result<&'a Checker, Error> {
    if p.is_null() {
        return Err(Error::invalid_argument("the checker is NULL"));
    }
    Ok(&*(p as *const Checker))
}

/// A new strong reference to the checker behind a handle, for work that outlives the call.
#[inline]
pub(super) unsafe fn checker_arc(p: *const tc_checker) -> Result<Arc<Checker>, Error> {
    if p.is_null() {
        return Err(Error::invalid_argument("the checker is NULL"));
    }
    let raw = p as *const Checker;
    Arc::increment_strong_count(raw);
    Ok(Arc::from_raw(raw))
}

/// `user_data` crosses to a runtime thread; the caller promised (by using the async API) that
/// this is fine.
struct UserData(*mut c_void);
unsafe impl Send for UserData {}

/// The shared body of the `*_async` exports: checks the callback, takes a reference to the
/// checker, lets `make` copy the inputs and build the work, and starts it on the runtime; the
/// work's outcome goes to `callback`, exactly once. Any error before the start is returned, and
/// then the callback is never called.
pub(super) unsafe fn start_async<F, W>(
    checker: *const tc_checker,
    callback: tc_callback,
    user_data: *mut c_void,
    make: F,
) -> tc_status
where
    F: FnOnce(Arc<Checker>) -> Result<W, Error>,
    W: std::future::Future<Output = Result<String, Error>> + Send + 'static,
{
    guard(|| {
        let Some(callback) = callback else {
            return Err(Error::invalid_argument("the callback is NULL"));
        };
        let work = make(checker_arc(checker)?)?;
        let user_data = UserData(user_data);
        process::spawn(async move {
            let user_data = user_data;
            let (status, doc) = match AssertUnwindSafe(work).catch_unwind().await {
                Ok(Ok(doc)) => (tc_status::TC_OK, doc),
                Ok(Err(e)) => (e.status, e.to_json()),
                Err(_) => (tc_status::TC_PANIC, panic_json()),
            };
            callback(user_data.0, status, to_c_string(doc));
        });
        Ok(())
    })
}
