//! Logs, stats and metrics: what operators see, and that none of it carries a secret.

mod common;

use std::sync::{Arc, Mutex};

use common::*;
use fake_globus::{fixtures, FakeGlobus};
use serde_json::json;
use tokenchecker::ffi::tc_log_level;
use tokenchecker::set_rust_logger;
use tokenchecker::{AuthorizeRequest, Checker};

#[test]
fn nothing_the_library_emits_carries_a_secret() {
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let sink = lines.clone();
    set_rust_logger(
        Some(Box::new(move |level, msg| {
            sink.lock()
                .unwrap()
                .push(format!("{}: {msg}", level.name()))
        })),
        tc_log_level::TC_LOG_DEBUG,
    );

    let fake = FakeGlobus::start();
    let secret = "client-SECRET-7f3a9c";
    fake.add_client("secret-client", secret);
    let token = "tok-LEAKCHECK-0123456789abcdef";
    let bad_token = "tok-LEAKCHECK-unknown-fedcba9876543210";
    fake.add_tokens(json!({ token: {
        "aud": ["secret-client"],
        "identity_set": [fixtures::ALICE_ID],
        "groups": [fixtures::GROUP_MEMBER],
        "dependent_tokens": [{"scope": fixtures::TRANSFER_SCOPE,
                              "resource_server": fixtures::TRANSFER_RESOURCE_SERVER,
                              "expires_in": 3600}]
    }}));
    let config = |extra: serde_json::Value| {
        let mut c = config(
            &fake,
            json!({"client_id": "secret-client", "client_secret": secret,
                   "verify_credentials": true, "fetch_groups": "eager",
                   "request_timeout_ms": 300, "max_retries": 1}),
        );
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        c.to_string()
    };
    let mut emitted: Vec<String> = Vec::new();
    let c = Checker::from_json(&config(json!({}))).unwrap();
    emitted.push(c.check(token).unwrap().to_json(None));
    let dependent = c.dependent_token(token, fixtures::TRANSFER_SCOPE).unwrap();
    let group = format!("urn:globus:groups:id:{}", fixtures::GROUP_MEMBER);
    let req =
        AuthorizeRequest::from_json(&json!({"allowed_principals": [group]}).to_string()).unwrap();
    let a = c.authorize(token, &req).unwrap();
    emitted.push(a.state.to_json(Some(&a.matched)));
    emitted.push(c.check(bad_token).unwrap_err().to_string());
    for mode in [
        json!({"status": 500}),
        json!({"mode": "garbage"}),
        json!({"mode": "hang"}),
    ] {
        let mut fault = mode.clone();
        fault["endpoint"] = "introspect".into();
        fake.set_fault(fault);
        c.purge(token).unwrap();
        emitted.push(c.check(token).unwrap_err().to_string());
        fake.clear_faults();
    }
    fake.set_fault(json!({"endpoint": "groups", "status": 500}));
    c.purge(token).unwrap();
    emitted.push(c.check(token).unwrap().to_json(None));
    fake.clear_faults();
    let wrong = config(json!({"client_secret": "wrong-SECRET-b41d"}));
    emitted.push(Checker::from_json(&wrong).err().unwrap().to_string());
    // A client whose scope lacks the Groups dependency: warned once per checker, however often.
    fake.add_client_without_groups("no-groups-client", secret);
    let no_groups = Checker::from_json(&config(
        json!({"client_id": "no-groups-client", "expected_audience": "secret-client",
               "fetch_groups": "lazy"}),
    ))
    .unwrap();
    for _ in 0..3 {
        emitted.push(no_groups.authorize(token, &req).unwrap_err().to_string());
    }
    // Plain HTTP to a non-loopback host, allowed explicitly: warned at creation.
    let insecure = json!({"client_id": "c", "client_secret": secret, "expected_scopes": ["s"],
                          "auth_url": "http://auth.invalid", "groups_url": fake.url(),
                          "allow_insecure_http": true, "verify_credentials": false});
    Checker::from_json(&insecure.to_string()).unwrap();
    emitted.push(tokenchecker::stats_json());
    emitted.push(tokenchecker::internals::stats::stats().to_prometheus(0));
    set_rust_logger(None, tc_log_level::TC_LOG_OFF);
    emitted.extend(lines.lock().unwrap().iter().cloned());

    assert!(
        emitted.iter().any(|l| l.starts_with("warn:")),
        "the failures were logged: {emitted:#?}"
    );
    let lines = lines.lock().unwrap();
    let no_dependency = lines
        .iter()
        .filter(|l| l.starts_with("warn:") && l.contains("view_my_groups_and_memberships"))
        .count();
    assert_eq!(no_dependency, 1, "warned once per checker: {lines:#?}");
    assert!(
        lines.iter().any(|l| l.starts_with("warn:")
            && l.contains("allow_insecure_http")
            && l.contains("http://auth.invalid")),
        "plain HTTP was warned about: {lines:#?}"
    );
    for secret_text in [
        token,
        bad_token,
        secret,
        "wrong-SECRET-b41d",
        &dependent.access_token,
    ] {
        for line in &emitted {
            assert!(
                !line.contains(secret_text),
                "{secret_text:?} leaked in {line:?}"
            );
        }
    }
}

#[test]
fn metrics_are_prometheus_text() {
    let text = tokenchecker::internals::stats::stats().to_prometheus(7);
    for needle in [
        "# TYPE tokenchecker_checks_total counter",
        "tokenchecker_requests_total{endpoint=\"introspect\"}",
        "tokenchecker_cache_entries 7",
        "# TYPE tokenchecker_request_duration_seconds histogram",
        "tokenchecker_request_duration_seconds_bucket{le=\"+Inf\"}",
        "tokenchecker_request_duration_seconds_count",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in\n{text}");
    }
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (name, value) = line.rsplit_once(' ').unwrap();
        assert!(
            !name.is_empty() && value.parse::<f64>().is_ok(),
            "bad line {line:?}"
        );
    }
}
