//! Authorization on the handle path: a compiled policy (`tc_policy`) and the exports that
//! authorize with it and hand back the answer as a handle, so that a cached authorization
//! parses, renders and allocates nothing.
#![allow(clippy::missing_safety_doc)]

use std::ffi::c_char;
use std::panic::catch_unwind;
use std::ptr;

use super::answer::{deliver_answer, tc_answer, tc_answer_meta};
use super::boundary::{checker_arc, checker_ref, deliver_new, str_arg};
use super::tc_checker;
use crate::policy::Policy;
use crate::status::{tc_status, Error};

/// An authorization policy: the allowed principals of an authorization request, compiled once
/// and reused. Opaque: created by `tc_policy_new`, released by `tc_policy_free`; immutable, so
/// any number of threads may use one policy at once.
#[allow(non_camel_case_types)]
pub struct tc_policy {
    _private: [u8; 0],
}

/// What `tc_authorize_answer` reports as "no principal matched" in `*out_matched` (never, on
/// `TC_OK`).
pub const TC_NO_MATCH: usize = usize::MAX;

/// Compiles an authorization request (the document of `tc_authorize`: `{"allowed_principals":
/// […], "allow_public": false, "allow_all_authenticated_users": false}`) into a policy.
///
/// On `TC_OK`, `*out_policy` receives a new policy, owned by the caller (release it with
/// `tc_policy_free`); otherwise it is set to NULL and `*out_error`, when `out_error` is not
/// NULL, receives the error document (release it with `tc_string_free`). Errors:
/// `TC_INVALID_ARGUMENT` (NULL `request_json` or `out_policy`, not UTF-8, a malformed request,
/// a principal holding a NUL), `TC_PANIC`. Never blocks.
#[no_mangle]
pub unsafe extern "C" fn tc_policy_new(
    request_json: *const c_char,
    out_policy: *mut *mut tc_policy,
    out_error: *mut *mut c_char,
) -> tc_status {
    deliver_new(
        out_policy,
        "out_policy",
        out_error,
        "internal error (a panic was caught at the FFI boundary); please report it",
        || Policy::from_json(str_arg(request_json, "the request")?),
        |policy| Box::into_raw(Box::new(policy)) as *mut tc_policy,
    )
}

/// Releases a policy. NULL is ignored. No call using the policy may be running, and the
/// principals it lent (`tc_policy_principal`) are gone with it.
#[no_mangle]
pub unsafe extern "C" fn tc_policy_free(policy: *mut tc_policy) {
    if !policy.is_null() {
        let _ = catch_unwind(|| drop(Box::from_raw(policy as *mut Policy)));
    }
}

/// How many principals the policy's request listed (0 for NULL).
#[no_mangle]
pub unsafe extern "C" fn tc_policy_len(policy: *const tc_policy) -> usize {
    (policy as *const Policy).as_ref().map_or(0, Policy::len)
}

/// The allowed principal at `index` (the position in the request's list, as
/// `tc_authorize_answer` reports a match): NUL-terminated, borrowed from the policy (valid
/// while it lives; never free it). `*out_len`, when `out_len` is not NULL, gets its length.
/// NULL (and 0) for a NULL policy or an index out of range.
#[no_mangle]
pub unsafe extern "C" fn tc_policy_principal(
    policy: *const tc_policy,
    index: usize,
    out_len: *mut usize,
) -> *const c_char {
    let principal = (policy as *const Policy)
        .as_ref()
        .and_then(|p| p.principal_c(index));
    if !out_len.is_null() {
        *out_len = principal.map_or(0, |p| p.to_bytes().len());
    }
    principal.map_or(ptr::null(), |p| p.as_ptr())
}

/// The arguments of the authorization exports, borrowed for the call.
unsafe fn authorize_args<'a>(
    checker: *const tc_checker,
    token: *const c_char,
    policy: *const tc_policy,
) -> Result<(&'a crate::checker::Checker, &'a str, &'a Policy), Error> {
    let token = str_arg(token, "the token")?;
    let policy = (policy as *const Policy)
        .as_ref()
        .ok_or_else(|| Error::invalid_argument("the policy is NULL"))?;
    Ok((checker_ref(checker)?, token, policy))
}

/// Checks the token and authorizes the caller with a compiled policy (the rules of
/// `tc_authorize`; groups are fetched only when the policy names a group and nothing cheaper
/// matched), blocking on a miss, and hands back the answer as a handle.
///
/// On `TC_OK`: `*out_answer` is a new reference to the answer (release it with
/// `tc_answer_free`), `*out_meta` (when not NULL) its source and age, `*out_matched` (when not
/// NULL) the index of the allowed principal that matched (read it with
/// `tc_policy_principal`), `*out_error` (when not NULL) NULL. Otherwise `*out_answer` is NULL,
/// `*out_matched` is `TC_NO_MATCH` and `*out_error` the error document. Errors as
/// `tc_authorize`. Thread-safe; the policy may be shared by any number of calls.
#[no_mangle]
pub unsafe extern "C" fn tc_authorize_answer(
    checker: *const tc_checker,
    token: *const c_char,
    policy: *const tc_policy,
    out_answer: *mut *const tc_answer,
    out_meta: *mut tc_answer_meta,
    out_matched: *mut usize,
    out_error: *mut *mut c_char,
) -> tc_status {
    authorize_answer(out_answer, out_meta, out_matched, out_error, || {
        let (checker_ref, token, policy) = authorize_args(checker, token, policy)?;
        if let Some(result) = checker_ref.try_authorize_answer_with(token, policy)? {
            return result;
        }
        checker_arc(checker)?.authorize_with(token, policy)
    })
}

/// Like `tc_authorize_answer`, but answers only from the in-process cache and never blocks:
/// `TC_WOULD_BLOCK` (with an error document) when the answer needs the network (the token, or
/// the groups that alone can decide, are not cached). A cached authorization costs a keyed
/// hash, one lookup (the caller's groups are kept beside its cached answer, with the last
/// policy they authorized) and the rules: it parses, renders and allocates nothing.
#[no_mangle]
pub unsafe extern "C" fn tc_try_authorize_answer(
    checker: *const tc_checker,
    token: *const c_char,
    policy: *const tc_policy,
    out_answer: *mut *const tc_answer,
    out_meta: *mut tc_answer_meta,
    out_matched: *mut usize,
    out_error: *mut *mut c_char,
) -> tc_status {
    authorize_answer(out_answer, out_meta, out_matched, out_error, || {
        let (checker, token, policy) = authorize_args(checker, token, policy)?;
        match checker.try_authorize_answer_with(token, policy)? {
            Some(result) => result,
            None => Err(Error::new(
                tc_status::TC_WOULD_BLOCK,
                "the answer is not cached; use tc_authorize_answer or tc_authorize_async",
            )),
        }
    })
}

#[inline]
unsafe fn authorize_answer(
    out_answer: *mut *const tc_answer,
    out_meta: *mut tc_answer_meta,
    out_matched: *mut usize,
    out_error: *mut *mut c_char,
    f: impl FnOnce() -> Result<(crate::auth_state::AuthState, u32), Error>,
) -> tc_status {
    if !out_matched.is_null() {
        *out_matched = TC_NO_MATCH;
    }
    deliver_answer(out_answer, out_meta, out_error, || {
        let (state, index) = f()?;
        if !out_matched.is_null() {
            *out_matched = index as usize;
        }
        Ok(state)
    })
}
