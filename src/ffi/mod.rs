//! The C ABI: the exports here, the answer handle in `answer.rs`, the panic boundary and the
//! other plumbing they share in `boundary.rs`.
//!
//! Conventions, the same for every function:
//! - Every export runs inside a panic boundary: a panic becomes `TC_PANIC` (never an unwind into
//!   C). Every pointer argument may be NULL: NULL where a value is required is
//!   `TC_INVALID_ARGUMENT`.
//! - Strings in are NUL-terminated UTF-8, borrowed for the call only (the library copies what it
//!   keeps). Strings out (`char **out_json`, callback `json`) are owned by the caller and must be
//!   released with `tc_string_free`, exactly once.
//! - `*out_json` is set on every return where `out_json` is not NULL: the result document on
//!   `TC_OK`, otherwise `{"error": {"code": "TC_…", "message": "…"}}`. There is no thread-local
//!   "last error": the error travels with the call.
//! - A `tc_checker` is thread-safe: any number of threads may use one checker at once.
//!
//! Safety, for every `unsafe extern "C"` function here: each pointer argument is NULL or points
//! to what its C type says (a NUL-terminated string, a writable `char *` slot, a live
//! `tc_checker` from `tc_new`). That contract is stated once here and in the header instead of a
//! `# Safety` section per function.
#![allow(clippy::missing_safety_doc)]

mod answer;
mod boundary;
mod policy;

use std::ffi::{c_char, c_void, CString};
use std::panic::catch_unwind;

use std::sync::Arc;

use boundary::{checker_arc, checker_ref, deliver, deliver_new, guard, start_async, str_arg, CDoc};

use crate::auth_state::AuthorizeRequest;
use crate::checker::Checker;
use crate::model::DependentToken;
use crate::status::{tc_status, Error};

pub use crate::log::{tc_log_callback, tc_log_level};
pub use answer::{
    tc_answer, tc_answer_fields, tc_answer_free, tc_answer_id, tc_answer_introspection,
    tc_answer_meta, tc_answer_retain, tc_answer_text, tc_check_answer, tc_try_check_answer,
};
pub use policy::{
    tc_authorize_answer, tc_policy, tc_policy_free, tc_policy_len, tc_policy_new,
    tc_policy_principal, tc_try_authorize_answer, TC_NO_MATCH,
};

/// A token checker. Opaque: created by `tc_new`, released by `tc_free`.
#[allow(non_camel_case_types)]
pub struct tc_checker {
    _private: [u8; 0],
}

/// Completion callback of the `*_async` functions.
///
/// Called exactly once, on one of the library's runtime threads (never on the thread that
/// started the call), with the caller's `user_data`, the status and the result or error document.
/// `json` is owned by the callee: release it with `tc_string_free`. The callback must not block
/// for long, and must not call the blocking functions (`tc_check`, …: they return
/// `TC_WOULD_BLOCK` there); it may call the `*_async` ones.
#[allow(non_camel_case_types)]
pub type tc_callback =
    Option<unsafe extern "C" fn(user_data: *mut c_void, status: tc_status, json: *mut c_char)>;

// ---- lifecycle ------------------------------------------------------------------------------

/// Creates a checker from a JSON configuration (see the README for every key).
///
/// On `TC_OK`, `*out_checker` receives a new checker, owned by the caller and released with
/// `tc_free`. On failure `*out_checker` is set to NULL. `out_error` may be NULL; when it is not,
/// `*out_error` receives NULL on success or an error document on failure (release it with
/// `tc_string_free`).
///
/// With `cache_config` in the configuration, the process-wide cache is dropped and rebuilt with
/// it (every checker then uses the new one); without it the current cache is reused. A failed
/// creation leaves the cache as it was. With `verify_credentials` (the default) this blocks for
/// one introspection: `TC_CREDENTIALS_REJECTED` when the server refuses the credentials. The
/// caller's string is never modified. Creation starts no thread that outlives it (the probe has
/// a runtime of its own), and a checker created before `fork()` works in the child: the child
/// rebuilds the library's process-wide state and the checker's HTTP client on first use, and
/// starts with an empty in-process cache.
///
/// Errors: `TC_INVALID_ARGUMENT` (NULL `config_json` or `out_checker`, not UTF-8),
/// `TC_INVALID_CONFIG`, `TC_CREDENTIALS_REJECTED`, `TC_WOULD_BLOCK` (called from a runtime
/// thread), `TC_PANIC`.
#[no_mangle]
pub unsafe extern "C" fn tc_new(
    config_json: *const c_char,
    out_checker: *mut *mut tc_checker,
    out_error: *mut *mut c_char,
) -> tc_status {
    deliver_new(
        out_checker,
        "out_checker",
        out_error,
        "internal error while creating the checker",
        || Checker::from_json(str_arg(config_json, "the configuration")?),
        |checker| Arc::into_raw(Arc::new(checker)) as *mut tc_checker,
    )
}

/// Releases a checker. NULL is ignored. Must not be called twice for one checker. Calls already
/// under way keep their own reference and complete normally, with the answer they would have
/// given anyway: async calls, and blocking calls that are waiting for the network (`tc_check`
/// on a miss, `tc_authorize`, `tc_dependent_token`, `tc_purge`, `tc_purge_identity`). No call
/// may *start* with the checker once `tc_free` has begun (that would be a use after free: the
/// handle is gone). The shared cache lives on for other checkers.
#[no_mangle]
pub unsafe extern "C" fn tc_free(checker: *mut tc_checker) {
    if checker.is_null() {
        return;
    }
    let _ = catch_unwind(|| drop(Arc::from_raw(checker as *const Checker)));
}

/// Creates a checker with other rules that shares `checker`'s HTTP client, connection pool
/// and request slots (so `max_concurrent_requests` stays one cap for both) and, like every
/// checker, the process's cache: for per-call expected scopes without one more client per
/// scope set. `rules_json` may set `expected_scopes`, `scope_match`, `expected_audience` and
/// `leeway_s` (every other key is `TC_INVALID_CONFIG`); the rest of the configuration is
/// `checker`'s. Never blocks, never contacts a server, never replaces the cache.
///
/// On `TC_OK`, `*out_checker` receives a new checker, owned by the caller and released with
/// `tc_free` (independently of `checker`: either may be freed first). Otherwise it is NULL and
/// `*out_error` (when `out_error` is not NULL) the error document. Errors:
/// `TC_INVALID_ARGUMENT` (NULL `checker`, `rules_json` or `out_checker`, not UTF-8),
/// `TC_INVALID_CONFIG`, `TC_PANIC`. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn tc_derive(
    checker: *const tc_checker,
    rules_json: *const c_char,
    out_checker: *mut *mut tc_checker,
    out_error: *mut *mut c_char,
) -> tc_status {
    deliver_new(
        out_checker,
        "out_checker",
        out_error,
        "internal error while deriving the checker",
        || checker_ref(checker)?.derive(str_arg(rules_json, "the rules")?),
        |derived| Arc::into_raw(Arc::new(derived)) as *mut tc_checker,
    )
}

/// What a checker was configured with, as bindings need it, without secrets: `{"client_id",
/// "expected_scopes": […], "expected_audience", "scope_match", "leeway_s", "fetch_groups",
/// "auth_url", "groups_url", "call_timeout_ms", "max_token_bytes", "max_concurrent_requests",
/// "stale_if_error_s", "refresh_ahead_s"}` (defaults filled in), so that no binding parses
/// the configuration itself. `*out_json` is owned by the caller (`tc_string_free`); on an
/// error, the error document. Errors: `TC_INVALID_ARGUMENT` (NULL `checker` or `out_json`),
/// `TC_PANIC`.
#[no_mangle]
pub unsafe extern "C" fn tc_checker_info(
    checker: *const tc_checker,
    out_json: *mut *mut c_char,
) -> tc_status {
    deliver(out_json, || {
        Ok(checker_ref(checker)?.config().info().to_string())
    })
}

/// The facts bindings share, from the library itself: `{"version", "abi_version", "statuses":
/// {"TC_OK": 0, …}, "sources": ["network", …], "config_keys": [...], "rule_keys": [...],
/// "log_levels": {"off": 0, "error": 1, …}}` (`rule_keys`: what `tc_derive` may change;
/// `log_levels`: the levels' names, as `TOKENCHECKER_LOG` takes them, and their values).
/// `*out_json` is owned by the caller (`tc_string_free`). Errors: `TC_INVALID_ARGUMENT` (NULL
/// `out_json`), `TC_PANIC`.
#[no_mangle]
pub unsafe extern "C" fn tc_library_info(out_json: *mut *mut c_char) -> tc_status {
    deliver(out_json, || Ok(crate::library_info().to_string()))
}

// ---- checking -------------------------------------------------------------------------------

/// Checks a token: active, within its validity window, carrying the expected scopes and
/// audience, with an identity set; every rule on every call, cached answer or not.
///
/// Blocks the calling thread on a cache miss (never longer than the configured timeouts). On
/// `TC_OK` `*out_json` receives the result document (identities, effective_identity, username,
/// scopes, exp, groups — null unless fetched — principals, cache {source, age_ms}); otherwise an
/// error document. Release it with `tc_string_free`. Thread-safe.
///
/// Errors: `TC_INVALID_ARGUMENT` (NULL, not UTF-8, empty, too long or malformed token; NULL
/// `out_json` — then nothing is written), `TC_INACTIVE_TOKEN`, `TC_TOKEN_EXPIRED`,
/// `TC_INSUFFICIENT_SCOPE`, `TC_WRONG_AUDIENCE`, `TC_CREDENTIALS_REJECTED`,
/// `TC_AUTH_UNAVAILABLE`, `TC_WOULD_BLOCK` (a miss on a runtime thread), `TC_PANIC`.
#[no_mangle]
pub unsafe extern "C" fn tc_check(
    checker: *const tc_checker,
    token: *const c_char,
    out_json: *mut *mut c_char,
) -> tc_status {
    deliver(out_json, || {
        let token = str_arg(token, "the token")?;
        // A hit borrows the checker for a few hundred nanoseconds; a miss holds its own
        // reference while it blocks, so a tc_free meanwhile cannot pull the checker away.
        if let Some(result) = checker_ref(checker)?.try_check(token)? {
            return Ok(CDoc(result?.to_c_doc(None)));
        }
        let checker = checker_arc(checker)?;
        Ok(CDoc(checker.check_uncached(token)?.to_c_doc(None)))
    })
}

/// Like `tc_check`, but answers only from the in-process cache and never blocks: returns
/// `TC_WOULD_BLOCK` (with an error document) when the answer needs the network. For event-loop
/// hosts: try this first, then `tc_check_async`.
#[no_mangle]
pub unsafe extern "C" fn tc_try_check(
    checker: *const tc_checker,
    token: *const c_char,
    out_json: *mut *mut c_char,
) -> tc_status {
    deliver(out_json, || {
        let checker = checker_ref(checker)?;
        let token = str_arg(token, "the token")?;
        match checker.try_check(token)? {
            Some(result) => Ok(CDoc(result?.to_c_doc(None))),
            None => Err(Error::new(
                tc_status::TC_WOULD_BLOCK,
                "the answer is not cached; use tc_check_async",
            )),
        }
    })
}

/// Starts a check without blocking; `callback` reports its outcome (see `tc_callback`).
///
/// The token is copied before this returns; the checker may be freed while the check runs (the
/// check keeps its own reference). Returns `TC_OK` when the check was started: the callback is
/// then called exactly once. Any other status (NULL checker, token or callback; invalid UTF-8)
/// means it was not started and the callback will never be called.
#[no_mangle]
pub unsafe extern "C" fn tc_check_async(
    checker: *const tc_checker,
    token: *const c_char,
    callback: tc_callback,
    user_data: *mut c_void,
) -> tc_status {
    start_async(checker, callback, user_data, |checker| {
        let token = str_arg(token, "the token")?.to_owned();
        Ok(async move { Ok(checker.check_async(&token).await?.to_json(None)) })
    })
}

/// The group memberships of the token's caller, after the token passed every check: on `TC_OK`
/// `*out_json` is `{"groups": ["<group id>", …]}` (fetched through a dependent token and the
/// Groups API, cached; only active memberships count); otherwise an error document:
/// `TC_AUTH_UNAVAILABLE` when the grant or the Groups API failed, `TC_NOT_AUTHORIZED` when this
/// service's scope lacks the Groups dependency (or `fetch_groups` is `"never"`), and the errors
/// of `tc_check`. Blocking; thread-safe; release `*out_json` with `tc_string_free`.
#[no_mangle]
pub unsafe extern "C" fn tc_groups(
    checker: *const tc_checker,
    token: *const c_char,
    out_json: *mut *mut c_char,
) -> tc_status {
    deliver(out_json, || {
        let checker = checker_arc(checker)?;
        let token = str_arg(token, "the token")?;
        let groups = checker.groups_of(token)?;
        Ok(format!("{{\"groups\":[{}]}}", groups.list().as_str()))
    })
}

// ---- authorization --------------------------------------------------------------------------

/// Checks the token as `tc_check` does, then whether the caller is one of the allowed principals,
/// with the original `check_authorization` semantics. `request_json`:
/// `{"allowed_principals": ["urn:globus:auth:identity:…", "urn:globus:groups:id:…", "public",
/// "all_authenticated_users"], "allow_public": false, "allow_all_authenticated_users": false}`.
/// Groups are fetched only when the list names a group and nothing cheaper matched.
///
/// On `TC_OK` `*out_json` is the check result plus `"authorization": {"authorized": true,
/// "matched": "<principal>"}`. Errors: as `tc_check`, plus `TC_NOT_AUTHORIZED`, and
/// `TC_AUTH_UNAVAILABLE` when only groups could decide and they are unavailable;
/// `TC_INVALID_ARGUMENT` for a malformed request. Blocking; thread-safe.
#[no_mangle]
pub unsafe extern "C" fn tc_authorize(
    checker: *const tc_checker,
    token: *const c_char,
    request_json: *const c_char,
    out_json: *mut *mut c_char,
) -> tc_status {
    deliver(out_json, || {
        let checker = checker_arc(checker)?;
        let token = str_arg(token, "the token")?;
        let request = AuthorizeRequest::from_json(str_arg(request_json, "the request")?)?;
        let a = checker.authorize(token, &request)?;
        Ok(CDoc(a.state.to_c_doc(Some(&a.matched))))
    })
}

/// Like `tc_authorize`, but answers only from the in-process cache and never blocks: returns
/// `TC_WOULD_BLOCK` (with an error document) when the answer needs the network (the token, or
/// the groups that alone can decide, are not cached). For event-loop hosts.
#[no_mangle]
pub unsafe extern "C" fn tc_try_authorize(
    checker: *const tc_checker,
    token: *const c_char,
    request_json: *const c_char,
    out_json: *mut *mut c_char,
) -> tc_status {
    deliver(out_json, || {
        let checker = checker_ref(checker)?;
        let token = str_arg(token, "the token")?;
        let request = AuthorizeRequest::from_json(str_arg(request_json, "the request")?)?;
        match checker.try_authorize(token, &request)? {
            Some(result) => {
                let a = result?;
                Ok(CDoc(a.state.to_c_doc(Some(&a.matched))))
            }
            None => Err(Error::new(
                tc_status::TC_WOULD_BLOCK,
                "the answer is not cached; use tc_authorize_async",
            )),
        }
    })
}

/// The non-blocking `tc_authorize`; inputs are copied before it returns. Same contract as
/// `tc_check_async`. A malformed request is reported through the callback.
#[no_mangle]
pub unsafe extern "C" fn tc_authorize_async(
    checker: *const tc_checker,
    token: *const c_char,
    request_json: *const c_char,
    callback: tc_callback,
    user_data: *mut c_void,
) -> tc_status {
    start_async(checker, callback, user_data, |checker| {
        let token = str_arg(token, "the token")?.to_owned();
        let request = str_arg(request_json, "the request")?.to_owned();
        Ok(async move {
            let request = AuthorizeRequest::from_json(&request)?;
            let a = checker.authorize_async(&token, &request).await?;
            Ok(a.state.to_json(Some(&a.matched)))
        })
    })
}

// ---- dependent tokens -----------------------------------------------------------------------

/// Checks the token, then gives a dependent token (Globus Auth's dependent-token grant) for
/// `scope` — a scope string or a resource server name — so the service can call another service
/// on the caller's behalf. Dependent tokens are cached for their lifetime less a margin.
///
/// On `TC_OK` `*out_json` is `{"access_token", "scope", "resource_server", "token_type",
/// "expires_at", "expires_in"}`: it holds a secret; release it with `tc_string_free` promptly.
/// `TC_NOT_AUTHORIZED` when the grant has no token for that scope. Blocking; thread-safe.
#[no_mangle]
pub unsafe extern "C" fn tc_dependent_token(
    checker: *const tc_checker,
    token: *const c_char,
    scope: *const c_char,
    out_json: *mut *mut c_char,
) -> tc_status {
    deliver(out_json, || {
        let checker = checker_arc(checker)?;
        let token = str_arg(token, "the token")?;
        let scope = str_arg(scope, "the scope")?;
        Ok(dependent_json(&checker.dependent_token(token, scope)?))
    })
}

/// The non-blocking `tc_dependent_token`. Same contract as `tc_check_async`.
#[no_mangle]
pub unsafe extern "C" fn tc_dependent_token_async(
    checker: *const tc_checker,
    token: *const c_char,
    scope: *const c_char,
    callback: tc_callback,
    user_data: *mut c_void,
) -> tc_status {
    start_async(checker, callback, user_data, |checker| {
        let token = str_arg(token, "the token")?.to_owned();
        let scope = str_arg(scope, "the scope")?.to_owned();
        Ok(async move {
            let t = checker.dependent_token_async(&token, &scope).await?;
            Ok(dependent_json(&t))
        })
    })
}

fn dependent_json(t: &DependentToken) -> String {
    serde_json::json!({
        "access_token": t.access_token,
        "scope": t.scope,
        "resource_server": t.resource_server,
        "token_type": t.token_type,
        "expires_at": t.expires_at,
        "expires_in": (t.expires_at - crate::clock::now_unix()).max(0),
    })
    .to_string()
}

// ---- revocation -----------------------------------------------------------------------------

/// Removes everything cached for one token (its introspection, groups and dependent tokens)
/// from every cache layer. The token need not be valid. Blocking; thread-safe.
/// Errors: `TC_INVALID_ARGUMENT`, `TC_WOULD_BLOCK`, `TC_PANIC`.
#[no_mangle]
pub unsafe extern "C" fn tc_purge(checker: *const tc_checker, token: *const c_char) -> tc_status {
    guard(|| {
        let checker = checker_arc(checker)?;
        checker.purge(str_arg(token, "the token")?)
    })
}

/// Removes everything cached for tokens of one identity (an identity id, or its
/// `urn:globus:auth:identity:` principal) from this process's cache. Blocking; thread-safe.
/// Entries record their token's identities in an 8-byte filter: a purge never misses one of the
/// identity's entries, and may rarely (≈0.1% of tokens) drop another token's too, which is then
/// fetched again on its next check.
#[no_mangle]
pub unsafe extern "C" fn tc_purge_identity(
    checker: *const tc_checker,
    identity_id: *const c_char,
) -> tc_status {
    guard(|| {
        let checker = checker_arc(checker)?;
        checker.purge_identity(str_arg(identity_id, "the identity id")?)
    })
}

// ---- process-wide ---------------------------------------------------------------------------

/// Process-wide counters: checks, hits, negative_hits, misses, coalesced_waits, waiter_timeouts,
/// purges, cache_resets, requests per endpoint (and retries), errors per endpoint, backend
/// counters, and the current cache (backend, timeout, entries). `*out_json` is owned by the
/// caller (`tc_string_free`). Errors: `TC_INVALID_ARGUMENT` (NULL `out_json`), `TC_PANIC`.
#[no_mangle]
pub unsafe extern "C" fn tc_stats(out_json: *mut *mut c_char) -> tc_status {
    deliver(out_json, || Ok(crate::stats_json()))
}

/// The same counters as `tc_stats`, plus the latency histograms, in the Prometheus text
/// exposition format, ready to serve on a `/metrics` endpoint. `*out_text` is owned by the
/// caller (`tc_string_free`). Errors: `TC_INVALID_ARGUMENT` (NULL `out_text`), `TC_PANIC`.
#[no_mangle]
pub unsafe extern "C" fn tc_metrics(out_text: *mut *mut c_char) -> tc_status {
    deliver(out_text, || Ok(crate::metrics_text()))
}

/// Sends the library's log messages at `level` and more severe to `callback` (NULL removes it).
/// One callback per process; a new call replaces the previous one: once `tc_set_logger` returns,
/// the previous callback is not running and will not be called again (so its `user_data` may be
/// released); called from inside a callback, it cannot wait for calls in progress (its own among
/// them), so the previous callback may still be finishing when it returns. The library holds
/// no lock while it calls the callback: the callback may call any tokenchecker function
/// (blocking ones answer `TC_WOULD_BLOCK` where they would block a runtime thread, as always),
/// and `tc_set_logger` on another thread never waits on a lock the callback holds. The callback may be called
/// from any thread, including the library's runtime threads, with `user_data` as given;
/// `message` is valid during the call only. Messages never contain a token or a secret.
/// Independently, the environment variable `TOKENCHECKER_LOG` (`error`, `warn`, `info`,
/// `debug`), read once at first use, sends messages to stderr.
/// Errors: `TC_INVALID_ARGUMENT` for an unknown level, `TC_PANIC`.
#[no_mangle]
pub unsafe extern "C" fn tc_set_logger(
    callback: tc_log_callback,
    user_data: *mut c_void,
    level: u32,
) -> tc_status {
    guard(|| {
        let level = tc_log_level::from_u32(level)
            .ok_or_else(|| Error::invalid_argument("unknown log level"))?;
        crate::log::set_c_logger(callback, user_data, level);
        Ok(())
    })
}

/// Releases a string the library returned. NULL is ignored; must not be called twice for one
/// string, nor on a string the library did not return.
#[no_mangle]
pub unsafe extern "C" fn tc_string_free(s: *mut c_char) {
    if s.is_null() {
        return;
    }
    let _ = catch_unwind(|| drop(CString::from_raw(s)));
}

/// The library's version ("MAJOR.MINOR.PATCH"): a static string, never freed.
#[no_mangle]
pub extern "C" fn tc_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr() as *const c_char
}

/// The ABI generation of this library. It changes only when a function, type or value of the C
/// ABI changes incompatibly; bindings compare it with `TOKENCHECKER_ABI_VERSION` from the header
/// they were built with and refuse to run against a different one.
#[no_mangle]
pub extern "C" fn tc_abi_version() -> u32 {
    crate::ABI_VERSION
}

/// The name of a status ("TC_OK", …, "TC_UNKNOWN" for a value this library doesn't know): a
/// static string, never freed.
#[no_mangle]
pub extern "C" fn tc_status_name(status: u32) -> *const c_char {
    tc_status::c_name_of(status).as_ptr()
}
