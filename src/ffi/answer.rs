//! The answer handle: a check's answer handed to C as an immutable, reference-counted object
//! (the [`TokenInfo`] the cache holds), so that a cached check renders and allocates nothing.
#![allow(clippy::missing_safety_doc)]

use std::ffi::c_char;
use std::panic::catch_unwind;
use std::ptr;
use std::sync::Arc;

use super::boundary::{checker_arc, checker_ref, deliver_object, str_arg, to_c_string};
use super::tc_checker;
use crate::auth_state::AuthState;
use crate::model::{tc_fields, TokenInfo};
use crate::status::{tc_status, Error};

/// The answer of a check: the stable part of its result, immutable and reference-counted.
/// Opaque: from `tc_check_answer`/`tc_try_check_answer`, read with `tc_answer_text` and
/// `tc_answer_id`, kept with `tc_answer_retain`, released with `tc_answer_free`.
#[allow(non_camel_case_types)]
pub struct tc_answer {
    _private: [u8; 0],
}

/// The parts of a check's answer that change from call to call.
#[allow(non_camel_case_types)]
#[repr(C)]
pub struct tc_answer_meta {
    /// Where the answer came from: "network", "coalesced", "memory", "near", "redis",
    /// "memcached" or "stale" (a static string, never freed).
    pub source: *const c_char,
    /// How old the answer is, in milliseconds.
    pub age_ms: u64,
}

/// Runs a check behind the panic boundary and hands its answer out as a handle.
#[inline]
pub(super) unsafe fn deliver_answer(
    out_answer: *mut *const tc_answer,
    out_meta: *mut tc_answer_meta,
    out_error: *mut *mut c_char,
    f: impl FnOnce() -> Result<AuthState, Error>,
) -> tc_status {
    if !out_error.is_null() {
        *out_error = ptr::null_mut();
    }
    if out_answer.is_null() {
        if !out_error.is_null() {
            *out_error = to_c_string(Error::invalid_argument("out_answer is NULL").to_json());
        }
        return tc_status::TC_INVALID_ARGUMENT;
    }
    *out_answer = ptr::null();
    deliver_object(
        out_error,
        "internal error (a panic was caught at the FFI boundary); please report it",
        f,
        |state| {
            if !out_meta.is_null() {
                *out_meta = tc_answer_meta {
                    source: state.source.c_name().as_ptr(),
                    age_ms: state.age.as_millis() as u64,
                };
            }
            // The state's own reference to the answer becomes the caller's.
            *out_answer = Arc::into_raw(state.info) as *const tc_answer;
        },
    )
}

/// Checks a token like `tc_check` (blocking on a miss), but hands back the answer as a handle
/// instead of a rendered document: a cached check then renders and allocates nothing.
///
/// On `TC_OK`: `*out_answer` is a new reference to the answer (release it with
/// `tc_answer_free`); `*out_meta`, when `out_meta` is not NULL, gets the answer's source and
/// age; `*out_error`, when `out_error` is not NULL, is NULL. Otherwise `*out_answer` is NULL and
/// `*out_error` (when not NULL) is the error document (release it with `tc_string_free`).
/// `out_answer` is required (NULL: `TC_INVALID_ARGUMENT`). Errors as `tc_check`. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn tc_check_answer(
    checker: *const tc_checker,
    token: *const c_char,
    out_answer: *mut *const tc_answer,
    out_meta: *mut tc_answer_meta,
    out_error: *mut *mut c_char,
) -> tc_status {
    deliver_answer(out_answer, out_meta, out_error, || {
        let token = str_arg(token, "the token")?;
        if let Some(result) = checker_ref(checker)?.try_check(token)? {
            return result;
        }
        checker_arc(checker)?.check_uncached(token)
    })
}

/// Like `tc_check_answer`, but answers only from the in-process cache and never blocks:
/// `TC_WOULD_BLOCK` (with an error document) when the answer needs the network. The hot path
/// of bindings: a cached answer costs a keyed hash, one lookup and the rules.
#[no_mangle]
pub unsafe extern "C" fn tc_try_check_answer(
    checker: *const tc_checker,
    token: *const c_char,
    out_answer: *mut *const tc_answer,
    out_meta: *mut tc_answer_meta,
    out_error: *mut *mut c_char,
) -> tc_status {
    deliver_answer(out_answer, out_meta, out_error, || {
        let token = str_arg(token, "the token")?;
        match checker_ref(checker)?.try_check(token)? {
            Some(result) => result,
            None => Err(Error::new(
                tc_status::TC_WOULD_BLOCK,
                "the answer is not cached; use tc_check_answer or tc_check_async",
            )),
        }
    })
}

/// The stable part of an answer's result: a NUL-terminated JSON object, borrowed (valid while
/// the answer lives; never free it), the same bytes for every hit of the same cached answer:
/// `{"active":true,"sub":…,"identities":[…],"username":…,"name":…,"email":…,"client_id":…,
/// "scopes":[…],"aud":[…],"exp":…,"nbf":…,"iat":…}`. The result document's other members are
/// derived from it (`effective_identity` is `urn:globus:auth:identity:` + `sub`; `principals`
/// are the identities with that prefix, plus groups from `tc_groups`) or volatile
/// (`tc_answer_meta`). `*out_len`, when `out_len` is not NULL, gets its length in bytes (without
/// the NUL). NULL `answer`: NULL (and 0).
#[no_mangle]
pub unsafe extern "C" fn tc_answer_text(
    answer: *const tc_answer,
    out_len: *mut usize,
) -> *const c_char {
    let (text, len) = match (answer as *const TokenInfo).as_ref() {
        Some(info) => (info.stable_c_ptr(), info.stable_text().len()),
        None => (ptr::null(), 0),
    };
    if !out_len.is_null() {
        *out_len = len;
    }
    text
}

/// The answer's fields, decoded and laid out for reading without a JSON parser: every string a
/// pointer and a length (unescaped UTF-8, not NUL-terminated; NULL pointer for an absent
/// value), every list an array of them. Borrowed from the answer: valid while it lives, never
/// freed; the same pointer for every call on the same answer. Built on the first call for an
/// answer (a few hundred nanoseconds, once; kept with the answer, so it adds to the answer's
/// memory only for answers a binding reads this way), then a load. NULL `answer`: NULL.
/// Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn tc_answer_fields(answer: *const tc_answer) -> *const tc_fields {
    match (answer as *const TokenInfo).as_ref() {
        None => ptr::null(),
        Some(info) => match catch_unwind(|| info.fields_view() as *const tc_fields) {
            Ok(fields) => fields,
            Err(_) => ptr::null(),
        },
    }
}

/// The introspection answer as the authorization server gave it: every member it sent
/// (`active`, `scope` as one string, `client_id`, `sub`, `username`, `name`, `email`, `aud`,
/// `exp`, `nbf`, `iat`, `identity_set`, and the ones this library does not read, such as
/// `iss` or `token_type`, kept up to 8 KiB), for compatibility layers that hand it on whole.
/// Rendered on each call: not for the hot path. `*out_json` is owned by the caller
/// (`tc_string_free`). Errors: `TC_INVALID_ARGUMENT` (NULL `answer` or `out_json`), `TC_PANIC`.
#[no_mangle]
pub unsafe extern "C" fn tc_answer_introspection(
    answer: *const tc_answer,
    out_json: *mut *mut c_char,
) -> tc_status {
    super::boundary::deliver(out_json, || {
        let info = (answer as *const TokenInfo)
            .as_ref()
            .ok_or_else(|| Error::invalid_argument("the answer is NULL"))?;
        Ok(info.introspection_json())
    })
}

/// A number unique to this answer for the life of the process, never reused (1 and up; 0 for
/// NULL): bindings key what they built from an answer by it. A new fetch of the same token's
/// answer (after its entry expired, or from a shared backend) has a new id.
///
/// Bindings' memos (the one rule for all of them): a binding may keep the native object it
/// built from an answer (from `tc_answer_fields`), keyed by this id, in one memo per process
/// bounded by bytes, never by a count: `TOKENCHECKER_MEMO_BYTES` in the environment (read
/// once; default 16 MiB, 0 turns the memo off), the bytes counted as the strings' lengths plus
/// a fixed per-entry overhead each binding states in its memo's file. A memo miss costs one
/// `tc_answer_fields` read and the native strings, never a JSON parse, so the memo's bound
/// trades memory for a fraction of a microsecond, not for correctness.
#[no_mangle]
pub unsafe extern "C" fn tc_answer_id(answer: *const tc_answer) -> u64 {
    (answer as *const TokenInfo)
        .as_ref()
        .map_or(0, TokenInfo::answer_id)
}

/// Another reference to `answer` (returned; release each with `tc_answer_free`). NULL: NULL.
/// Thread-safe: answers are immutable and may be shared between threads.
#[no_mangle]
pub unsafe extern "C" fn tc_answer_retain(answer: *const tc_answer) -> *const tc_answer {
    if !answer.is_null() {
        Arc::increment_strong_count(answer as *const TokenInfo);
    }
    answer
}

/// Releases one reference to an answer. NULL is ignored; each reference is released once.
#[no_mangle]
pub unsafe extern "C" fn tc_answer_free(answer: *const tc_answer) {
    if answer.is_null() {
        return;
    }
    let _ = catch_unwind(|| drop(Arc::from_raw(answer as *const TokenInfo)));
}
