//! The checker through the C ABI (what the bindings use), with library strings taken into owned
//! Rust strings.

use std::ffi::{c_char, CStr, CString};
use std::ptr;

use serde_json::{json, Value};
use tokenchecker::ffi::{
    tc_authorize, tc_check, tc_checker, tc_free, tc_new, tc_purge, tc_purge_identity, tc_stats,
    tc_string_free, tc_try_check,
};
use tokenchecker::tc_status;

pub(super) struct Checker(*mut tc_checker);
// The C ABI documents checkers as thread-safe.
unsafe impl Send for Checker {}
unsafe impl Sync for Checker {}

impl Drop for Checker {
    fn drop(&mut self) {
        unsafe { tc_free(self.0) }
    }
}

fn cstr(s: &str) -> CString {
    CString::new(s).expect("no NUL in soak strings")
}

/// Takes ownership of a library string.
unsafe fn take(p: *mut c_char) -> String {
    if p.is_null() {
        return String::new();
    }
    let s = CStr::from_ptr(p).to_string_lossy().into_owned();
    tc_string_free(p);
    s
}

impl Checker {
    pub(super) fn new(config: &Value) -> Result<Checker, String> {
        let text = cstr(&config.to_string());
        let mut c = ptr::null_mut();
        let mut err = ptr::null_mut();
        let st = unsafe { tc_new(text.as_ptr(), &mut c, &mut err) };
        let err = unsafe { take(err) };
        if st != tc_status::TC_OK {
            return Err(format!("tc_new: {} {err}", st.name()));
        }
        Ok(Checker(c))
    }
    pub(super) fn check(&self, token: &str) -> (tc_status, String) {
        let t = cstr(token);
        let mut out = ptr::null_mut();
        let st = unsafe { tc_check(self.0, t.as_ptr(), &mut out) };
        (st, unsafe { take(out) })
    }
    pub(super) fn try_check(&self, token: &str) -> (tc_status, String) {
        let t = cstr(token);
        let mut out = ptr::null_mut();
        let st = unsafe { tc_try_check(self.0, t.as_ptr(), &mut out) };
        (st, unsafe { take(out) })
    }
    pub(super) fn authorize(&self, token: &str, allowed: &[String]) -> (tc_status, String) {
        let t = cstr(token);
        let req = cstr(&json!({"allowed_principals": allowed}).to_string());
        let mut out = ptr::null_mut();
        let st = unsafe { tc_authorize(self.0, t.as_ptr(), req.as_ptr(), &mut out) };
        (st, unsafe { take(out) })
    }
    pub(super) fn purge(&self, token: &str) -> tc_status {
        let t = cstr(token);
        unsafe { tc_purge(self.0, t.as_ptr()) }
    }
    pub(super) fn purge_identity(&self, id: &str) -> tc_status {
        let t = cstr(id);
        unsafe { tc_purge_identity(self.0, t.as_ptr()) }
    }
}

pub(super) fn library_stats() -> Value {
    let mut out = ptr::null_mut();
    let st = unsafe { tc_stats(&mut out) };
    let s = unsafe { take(out) };
    if st != tc_status::TC_OK {
        return Value::Null;
    }
    serde_json::from_str(&s).unwrap_or(Value::Null)
}
