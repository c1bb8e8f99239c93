//! Shared set-up for the integration tests: a fake Globus server per test and checker configs.
#![allow(dead_code)]

use fake_globus::{fixtures, FakeGlobus};
use serde_json::{json, Value};
use tokenchecker::{tc_status, Checker, Config};

pub mod cache;
pub mod servers;

pub const SCOPE: &str = "urn:globus:auth:scope:test:all";

/// A checker config for `fake`, with `extra` merged in.
pub fn config(fake: &FakeGlobus, extra: Value) -> Value {
    let mut c = json!({
        "client_id": fixtures::CLIENT_ID,
        "client_secret": fixtures::CLIENT_SECRET,
        "expected_scopes": [SCOPE],
        "auth_url": fake.url(),
        "groups_url": fake.url(),
        "verify_credentials": false,
    });
    merge(&mut c, extra);
    c
}

/// `extra`'s members set on `base` (replacing those of the same name).
pub fn merge(base: &mut Value, extra: Value) {
    if let Value::Object(extra) = extra {
        for (k, v) in extra {
            base[k] = v;
        }
    }
}

pub fn checker(fake: &FakeGlobus, extra: Value) -> Checker {
    Checker::new(Config::from_value(&config(fake, extra)).unwrap()).unwrap()
}

/// A checker; the first one a test binary makes installs an in-memory cache whose entries live
/// `timeout_s` seconds, for every test of the binary (the cache is process-wide).
#[allow(dead_code)] // not every test binary uses it
pub fn checker_with_short_cache(fake: &FakeGlobus, timeout_s: u64, extra: Value) -> Checker {
    static INSTALL: std::sync::Once = std::sync::Once::new();
    let mut installed = None;
    INSTALL.call_once(|| {
        let cache = json!({"cache_config": {"backend": "memory", "timeout": timeout_s}});
        installed = Some(Checker::new(
            Config::from_value(&config(fake, cache)).unwrap(),
        ));
    });
    if let Some(c) = installed {
        c.unwrap();
    }
    checker(fake, extra)
}

/// The status of a failed result.
pub fn status<T: std::fmt::Debug>(r: Result<T, tokenchecker::Error>) -> tc_status {
    r.expect_err("expected an error").status
}

/// A token that no other test uses, added to `fake` with `spec`.
pub fn unique_token(fake: &FakeGlobus, name: &str, spec: Value) -> String {
    let token = format!("tok-{name}-{}", std::process::id());
    fake.add_tokens(json!({ token.clone(): spec }));
    token
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}
