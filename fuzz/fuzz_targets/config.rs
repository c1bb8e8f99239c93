//! The configuration parser, directly and through the C ABI.
//!
//! * `Config::from_json` on the raw input: never panics; an accepted configuration is sane (the
//!   invariants below); a refusal is `TC_INVALID_CONFIG` with a short message.
//! * When the input is a JSON object: `tc_new` on it with `verify_credentials: false` and both
//!   URLs pointed at `http://127.0.0.1:9` (so nothing is ever sent anywhere), the client secret
//!   and any Redis password replaced by sentinels, TLS file paths by a path that does not exist.
//!   Its status must agree with `Config::from_value` on the same document, never be `TC_PANIC`;
//!   its error document must be JSON naming that status, short, and must not hold the
//!   sentinels; a created checker answers `tc_try_check` (in-process only) and is freed.
//! * Input that is not JSON also seeds a generated configuration (see structured/mod.rs).
#![no_main]

mod structured;

use std::ffi::{CStr, CString};
use std::ptr;

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use tokenchecker::internals::config::BackendConfig;
use tokenchecker::Config;
use tokenchecker::ffi::{tc_free, tc_new, tc_string_free, tc_try_check};
use tokenchecker::tc_status;

const SECRET: &str = "fuzz-sentinel-client-secret-8c1f0e";
const PASSWORD: &str = "fuzz-sentinel-redis-password-3b7d9a";
const NOWHERE: &str = "http://127.0.0.1:9";

fn url_is_sane(key: &str, u: &str) {
    assert!(
        u.starts_with("http://") || u.starts_with("https://"),
        "{key} accepted without http(s)://: {u:?}"
    );
    assert!(!u.ends_with('/'), "{key} keeps a trailing slash: {u:?}");
    let parsed =
        url::Url::parse(u).unwrap_or_else(|e| panic!("{key} accepted but unusable ({e}): {u:?}"));
    assert!(
        parsed.host_str().is_some_and(|h| !h.is_empty()),
        "{key} without a host: {u:?}"
    );
}

fn check_config(c: &Config) {
    assert!(!c.client_id.is_empty() && !c.client_secret.is_empty());
    assert!(!c.expected_scopes.is_empty());
    for s in &c.expected_scopes {
        assert!(!s.is_empty() && s.trim() == s, "scope {s:?}");
    }
    url_is_sane("auth_url", &c.auth_url);
    url_is_sane("groups_url", &c.groups_url);
    assert!((0..=3600).contains(&c.leeway_s));
    assert!(c.connect_timeout.as_millis() >= 1 && c.connect_timeout.as_millis() <= 600_000);
    assert!(c.request_timeout.as_millis() >= 1 && c.request_timeout.as_millis() <= 600_000);
    assert!(c.max_retries <= 10);
    assert!((16..=1 << 20).contains(&c.max_token_bytes));
    assert!((1024..=64 << 20).contains(&c.max_response_bytes));
    assert!((1..=100_000).contains(&c.max_concurrent_requests));
    assert!(c.stale_if_error.as_secs() <= 86_400);
    if let Some(cache) = &c.cache {
        assert!(cache.timeout.as_secs() <= 2_592_000);
        match &cache.backend {
            BackendConfig::Memory(m) => assert!(m.max_entries >= 1),
            BackendConfig::Redis(r) => {
                assert!(!r.shared.socket_timeout.is_zero() && !r.shared.lock_timeout.is_zero());
                assert!(!r.shared.lock_sleep.is_zero() && !r.shared.breaker_cooldown.is_zero());
                assert!(r.shared.breaker_failures >= 1);
                assert!(
                    ["redis://", "rediss://", "redis+unix://", "unix://"]
                        .iter()
                        .any(|p| r.url.starts_with(p)),
                    "redis url {:?}",
                    r.url
                );
            }
            BackendConfig::Memcached(m) => {
                assert!(!m.servers.is_empty());
                for s in &m.servers {
                    assert!(
                        !s.is_empty()
                            && !s
                                .bytes()
                                .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
                    );
                }
                assert!(m.shared.prefix.len() <= 160);
                assert!(!m.shared.breaker_cooldown.is_zero() && m.shared.breaker_failures >= 1);
            }
        }
    }
}

fn check_error(e: &tokenchecker::Error) {
    assert_eq!(e.status, tc_status::TC_INVALID_CONFIG, "{e}");
    assert!(e.message.len() < 1024, "a {}-byte message", e.message.len());
}

/// The C string behind `p` as a Rust string (freed), or None for NULL.
unsafe fn take(p: *mut std::ffi::c_char) -> Option<String> {
    if p.is_null() {
        return None;
    }
    let s = CStr::from_ptr(p)
        .to_str()
        .expect("the library returns UTF-8")
        .to_owned();
    tc_string_free(p);
    Some(s)
}

fn through_c_abi(mut doc: serde_json::Map<String, Value>) {
    doc.insert("verify_credentials".into(), Value::Bool(false));
    doc.insert("auth_url".into(), NOWHERE.into());
    doc.insert("groups_url".into(), NOWHERE.into());
    if doc.get("client_secret").is_some_and(Value::is_string) {
        doc.insert("client_secret".into(), SECRET.into());
    }
    if let Some(Value::Object(cache)) = doc.get_mut("cache_config") {
        if cache.get("password").is_some_and(Value::is_string) {
            cache.insert("password".into(), PASSWORD.into());
        }
        // Building a rediss:// backend reads these files: never a real (or special) one.
        for key in ["ssl_ca_certs", "ssl_certfile", "ssl_keyfile"] {
            if cache.get(key).is_some_and(Value::is_string) {
                cache.insert(key.into(), "/nonexistent/tokenchecker-fuzz.pem".into());
            }
        }
    }
    let doc = Value::Object(doc);
    let expected = Config::from_value(&doc);
    let text = doc.to_string();
    let Ok(c_text) = CString::new(text) else {
        return; // JSON escapes NUL: unreachable
    };
    let mut checker = ptr::null_mut();
    let mut err = ptr::null_mut();
    let status = unsafe { tc_new(c_text.as_ptr(), &mut checker, &mut err) };
    let err = unsafe { take(err) };
    assert_ne!(status, tc_status::TC_PANIC, "tc_new panicked: {err:?}");
    match &expected {
        Err(e) => assert_eq!(
            status, e.status,
            "tc_new disagrees with Config: {err:?} vs {e}"
        ),
        // Building the cache store may still refuse what the parser let through (a Redis URL
        // the redis crate cannot use), but only as a configuration error.
        Ok(_) => assert!(
            status == tc_status::TC_OK || status == tc_status::TC_INVALID_CONFIG,
            "tc_new on an accepted config: {} {err:?}",
            status.name()
        ),
    }
    if status == tc_status::TC_OK {
        assert!(!checker.is_null() && err.is_none());
        let mut out = ptr::null_mut();
        let st = unsafe { tc_try_check(checker, c"fuzz-token".as_ptr(), &mut out) };
        let out = unsafe { take(out) }.expect("out_json is always set");
        assert!(
            st == tc_status::TC_WOULD_BLOCK || st == tc_status::TC_INVALID_ARGUMENT,
            "tc_try_check of an unseen token: {} {out}",
            st.name()
        );
        unsafe { tc_free(checker) };
    } else {
        assert!(checker.is_null());
        let err = err.expect("an error document on failure");
        let parsed: Value = serde_json::from_str(&err).expect("the error document is JSON");
        assert_eq!(parsed["error"]["code"], status.name(), "{err}");
        assert!(
            !err.contains(SECRET) && !err.contains(PASSWORD),
            "a secret in {err}"
        );
        assert!(err.len() < 2048, "a {}-byte error document", err.len());
    }
}

/// Everything above, for one configuration text.
fn run(text: &str) {
    let direct = Config::from_json(text);
    match &direct {
        Ok(c) => check_config(c),
        Err(e) => check_error(e),
    }
    let Ok(value) = serde_json::from_str::<Value>(text) else {
        assert!(direct.is_err());
        return;
    };
    // The same document through from_value must give the same answer.
    let again = Config::from_value(&value);
    assert_eq!(direct.is_ok(), again.is_ok());
    if let (Err(a), Err(b)) = (&direct, &again) {
        assert_eq!(a.message, b.message);
    }
    if let Value::Object(doc) = value {
        through_c_abi(doc);
    }
}

fuzz_target!(|data: &[u8]| {
    // JSON as it is; anything else is both a malformed configuration and the seed of a
    // generated one (see structured/mod.rs).
    if let Ok(text) = std::str::from_utf8(data) {
        if serde_json::from_str::<Value>(text).is_ok() {
            return run(text);
        }
        check_error(&Config::from_json(text).expect_err("not JSON, yet accepted"));
    }
    if let Some(doc) = structured::document(data) {
        run(&doc.to_string());
    }
});
