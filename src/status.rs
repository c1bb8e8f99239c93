//! Status codes shared by the Rust API and the C ABI, and the crate's error type.

use std::fmt;

/// The result of every fallible C function.
///
/// Values are part of the ABI: they are never renumbered, and a retired value stays reserved.
#[allow(non_camel_case_types)]
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum tc_status {
    /// Success.
    TC_OK = 0,
    /// A required pointer was NULL, a string was not UTF-8, a token was empty or too large,
    /// or a request document was malformed.
    TC_INVALID_ARGUMENT = 1,
    /// The configuration JSON was malformed or named an unknown key, a wrong type or a bad value.
    TC_INVALID_CONFIG = 2,
    /// The authorization server says the token is not active (unknown, revoked or expired there).
    TC_INACTIVE_TOKEN = 3,
    /// The token carries none (scope_match "any") or not all (scope_match "all") of the expected scopes.
    TC_INSUFFICIENT_SCOPE = 4,
    /// The expected audience is not among the token's audiences.
    TC_WRONG_AUDIENCE = 5,
    /// The token's `exp` has passed, or its `nbf` is still ahead (both with `leeway_s`).
    TC_TOKEN_EXPIRED = 6,
    /// The token is valid but none of the allowed principals matched.
    TC_NOT_AUTHORIZED = 7,
    /// The authorization server rejected the service's client credentials (HTTP 401).
    TC_CREDENTIALS_REJECTED = 8,
    /// The authorization server (or the Groups API) could not be reached, timed out, or answered
    /// with an error or a malformed document.
    TC_AUTH_UNAVAILABLE = 9,
    /// A bug: a panic was caught at the FFI boundary. The process is still safe to use.
    TC_PANIC = 10,
    /// The call would have to block but must not: a blocking function was called from one of the
    /// library's own runtime threads (for example from inside an async callback), or
    /// `tc_try_check` found no cached answer.
    TC_WOULD_BLOCK = 11,
}

/// The Rust name of [`tc_status`].
pub type Status = tc_status;

/// Every status's name, in value order: the one list (`tc_status::name`, `tc_status_name`).
const NAMES: [&std::ffi::CStr; 12] = [
    c"TC_OK",
    c"TC_INVALID_ARGUMENT",
    c"TC_INVALID_CONFIG",
    c"TC_INACTIVE_TOKEN",
    c"TC_INSUFFICIENT_SCOPE",
    c"TC_WRONG_AUDIENCE",
    c"TC_TOKEN_EXPIRED",
    c"TC_NOT_AUTHORIZED",
    c"TC_CREDENTIALS_REJECTED",
    c"TC_AUTH_UNAVAILABLE",
    c"TC_PANIC",
    c"TC_WOULD_BLOCK",
];

impl tc_status {
    /// Every status's name and value, in value order.
    pub fn all() -> impl Iterator<Item = (&'static str, u32)> {
        NAMES
            .iter()
            .enumerate()
            .map(|(i, n)| (n.to_str().unwrap_or("TC_UNKNOWN"), i as u32))
    }

    pub fn name(self) -> &'static str {
        // The names are ASCII.
        NAMES[self as usize].to_str().unwrap_or("TC_UNKNOWN")
    }

    /// The name of a status value, as a static C string ("TC_UNKNOWN" for a value this library
    /// doesn't know).
    pub fn c_name_of(value: u32) -> &'static std::ffi::CStr {
        NAMES.get(value as usize).copied().unwrap_or(c"TC_UNKNOWN")
    }
}

/// An error: a status code and a message for humans. Messages never contain a token or a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub status: Status,
    pub message: String,
    /// What the failure says about the servers, for the checker's policies.
    pub cause: Cause,
    /// `TC_INSUFFICIENT_SCOPE`: the token's scopes (the error document's `token_scopes`).
    pub token_scopes: Option<Vec<String>>,
}

/// Why a call failed, beyond its status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Cause {
    /// Anything else: bad input, load shedding, a caller's deadline, a malformed answer, a 4xx.
    #[default]
    Local,
    /// The authorization server (or the Groups API) itself failed: it could not be reached,
    /// timed out, or answered 5xx/429. Only such failures may serve a stale answer
    /// (`stale_if_error_s`).
    Upstream,
    /// The server refused the token it was shown: `invalid_grant` from the dependent-token
    /// grant (the caller's token was revoked), or 401 from the Groups API (the dependent token
    /// was revoked or expired).
    TokenRejected,
}

impl Error {
    pub fn new(status: Status, message: impl Into<String>) -> Self {
        Error {
            status,
            message: message.into(),
            cause: Cause::Local,
            token_scopes: None,
        }
    }
    /// The error with the token's scopes, for the error document's `token_scopes`.
    pub fn with_token_scopes(self, scopes: Vec<String>) -> Self {
        Error {
            token_scopes: Some(scopes),
            ..self
        }
    }
    /// `TC_AUTH_UNAVAILABLE` because the server itself failed (see [`Cause::Upstream`]).
    pub fn upstream_failure(message: impl Into<String>) -> Self {
        Self::unavailable(message).with_cause(Cause::Upstream)
    }
    pub fn with_cause(self, cause: Cause) -> Self {
        Error { cause, ..self }
    }
    pub fn invalid_argument(message: impl Into<String>) -> Self {
        Self::new(tc_status::TC_INVALID_ARGUMENT, message)
    }
    pub fn invalid_config(message: impl Into<String>) -> Self {
        Self::new(tc_status::TC_INVALID_CONFIG, message)
    }
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(tc_status::TC_AUTH_UNAVAILABLE, message)
    }

    /// `{"error": {"code": "TC_…", "message": "…"}}`, plus `"token_scopes": […]` (the token's
    /// scopes) for `TC_INSUFFICIENT_SCOPE`.
    pub fn to_json(&self) -> String {
        let mut error = serde_json::json!({"code": self.status.name(), "message": self.message});
        if let Some(scopes) = &self.token_scopes {
            error["token_scopes"] = scopes.clone().into();
        }
        serde_json::json!({ "error": error }).to_string()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.status.name(), self.message)
    }
}

impl std::error::Error for Error {}

/// At most 64 characters of something the caller wrote, for an error message: a hostile
/// configuration must not turn into a multi-megabyte message.
pub fn clip(s: &str) -> String {
    const MAX: usize = 64;
    match s.char_indices().nth(MAX) {
        None => s.to_string(),
        Some((cut, _)) => format!("{}…", &s[..cut]),
    }
}
