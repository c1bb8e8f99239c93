//! Behaviour that needs entries to expire within a test: the outage policy (`stale_if_error_s`)
//! serves stale answers only when Globus Auth itself failed, and never for a token it has since
//! said is inactive. This binary installs a cache whose
//! entries live 1 s, once, for all its tests.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use fake_globus::FakeGlobus;
use serde_json::{json, Value};
use tokenchecker::{tc_status, Checker};

const LIFETIME: Duration = Duration::from_secs(1);

fn short_checker(fake: &FakeGlobus, extra: Value) -> Checker {
    checker_with_short_cache(fake, 1, extra)
}

fn past_lifetime() {
    std::thread::sleep(LIFETIME + Duration::from_millis(300));
}

#[test]
fn stale_answers_only_when_globus_auth_itself_failed() {
    let fake = FakeGlobus::start();
    let c = Arc::new(short_checker(
        &fake,
        json!({"stale_if_error_s": 600, "max_retries": 0, "request_timeout_ms": 1500,
               "connect_timeout_ms": 2000, "max_concurrent_requests": 1}),
    ));
    let t = unique_token(&fake, "stale", json!({}));
    assert_eq!(c.check(&t).unwrap().source.name(), "network");

    // Local failures: never stale.
    for (fault, what) in [
        (
            json!({"endpoint": "introspect", "status": 400, "body": "{\"error\":\"invalid_request\"}"}),
            "a 400",
        ),
        (json!({"endpoint": "introspect", "status": 403}), "a 403"),
        // Rate limiting: most likely our own flood of new tokens, which must not switch stale
        // answers on for everyone.
        (
            json!({"endpoint": "introspect", "status": 429, "retry_after": 1}),
            "a 429",
        ),
        (
            json!({"endpoint": "introspect", "mode": "garbage"}),
            "malformed JSON",
        ),
        (
            json!({"endpoint": "introspect", "mode": "wrong_types"}),
            "a malformed answer",
        ),
    ] {
        past_lifetime();
        fake.set_fault(fault);
        let e = c.check(&t).unwrap_err();
        assert_eq!(e.status, tc_status::TC_AUTH_UNAVAILABLE, "{what}: {e}");
        fake.clear_faults();
    }
    // Load shedding here: two other tokens' requests hold and then queue for the only slot
    // (slots are handed out in order), so this check's wait for one ends first.
    past_lifetime();
    fake.set_fault(json!({"endpoint": "introspect", "latency_ms": 3000, "count": 2}));
    let holders: Vec<_> = (0..2)
        .map(|i| {
            let other = unique_token(&fake, &format!("stale-slot-holder-{i}"), json!({}));
            let c = c.clone();
            let h = std::thread::spawn(move || c.check(&other).map(|_| ()));
            // Each in the queue before the next (generous: the order decides the test).
            std::thread::sleep(Duration::from_millis(300));
            h
        })
        .collect();
    let e = c.check(&t).unwrap_err();
    assert_eq!(e.status, tc_status::TC_AUTH_UNAVAILABLE, "{e}");
    assert!(e.message.contains("max_concurrent_requests"), "shed: {e}");
    for h in holders {
        h.join().unwrap().unwrap_err();
    }
    fake.clear_faults();

    // Upstream failures: stale, and said so.
    for (fault, what) in [
        (json!({"endpoint": "introspect", "status": 503}), "a 503"),
        (json!({"endpoint": "introspect", "status": 500}), "a 500"),
        (
            json!({"endpoint": "introspect", "mode": "close"}),
            "a dropped connection",
        ),
        (
            json!({"endpoint": "introspect", "mode": "hang"}),
            "a timeout",
        ),
    ] {
        past_lifetime();
        fake.set_fault(fault);
        let s = c
            .check(&t)
            .unwrap_or_else(|e| panic!("{what} must serve the stale answer: {e}"));
        assert_eq!(s.source.name(), "stale", "{what}");
        fake.clear_faults();
    }
}

/// A token seen active, then reported inactive: once that negative answer has expired too, an
/// outage must not bring the old positive answer back (before: `source: "stale"`, active).
#[test]
fn a_revoked_token_is_never_served_stale() {
    let fake = FakeGlobus::start();
    let c = short_checker(
        &fake,
        json!({"stale_if_error_s": 600, "max_retries": 0, "request_timeout_ms": 1500}),
    );
    let t = unique_token(&fake, "revoked-then-outage", json!({}));
    let kept = unique_token(&fake, "kept-then-outage", json!({}));
    assert_eq!(c.check(&t).unwrap().source.name(), "network");
    assert_eq!(c.check(&kept).unwrap().source.name(), "network");
    past_lifetime();
    fake.add_tokens(json!({ t.clone(): {"active": false} }));
    assert_eq!(status(c.check(&t)), tc_status::TC_INACTIVE_TOKEN);
    past_lifetime(); // the negative answer has expired too
    fake.set_fault(json!({"endpoint": "introspect", "status": 503}));
    let e = c.check(&t).unwrap_err();
    assert_eq!(e.status, tc_status::TC_AUTH_UNAVAILABLE, "{e}");
    // A token still active is served stale as before.
    assert_eq!(c.check(&kept).unwrap().source.name(), "stale");
    fake.clear_faults();
}
