//! Hostile or odd answers from a real HTTP fake of Globus Auth and Groups: `Retry-After` values
//! no server should send, a dependent-token grant that fails once, a user in thousands of
//! groups, and one deadline for a whole call.

mod common;

use std::time::{Duration, Instant};

use common::*;
use fake_globus::FakeGlobus;
use serde_json::json;
use tokenchecker::{tc_status, AuthorizeRequest};

/// Every odd `Retry-After` a 503 may carry: the check never panics and never waits past its
/// deadline. A huge number (u64::MAX seconds: once a panic on every request) and an HTTP-date
/// far ahead are cut short by the deadline; a negative number, garbage and a past date get the
/// usual short backoff, so the retry happens and the check passes.
#[test]
fn odd_retry_after_values_never_panic_nor_outlive_the_call() {
    let fake = FakeGlobus::start();
    let c = checker(
        &fake,
        json!({"max_retries": 1, "request_timeout_ms": 2000, "call_timeout_ms": 4000}),
    );
    let long: [serde_json::Value; 3] = [
        json!(u64::MAX),
        json!("99999999999999999999999999"),
        json!("Fri, 31 Dec 9999 23:59:59 GMT"),
    ];
    for (i, value) in long.into_iter().enumerate() {
        let t = unique_token(&fake, &format!("retry-after-long-{i}"), json!({}));
        fake.set_fault(
            json!({"endpoint": "introspect", "status": 503, "retry_after": value, "count": 1}),
        );
        let started = Instant::now();
        let result = c.check(&t);
        assert_eq!(status(result), tc_status::TC_AUTH_UNAVAILABLE, "{value}");
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{value}: {:?}",
            started.elapsed()
        );
    }
    let short = ["-5", "soon", "1.5", "Wed, 21 Oct 2015 07:28:00 GMT"];
    for (i, value) in short.into_iter().enumerate() {
        let t = unique_token(&fake, &format!("retry-after-short-{i}"), json!({}));
        fake.set_fault(
            json!({"endpoint": "introspect", "status": 503, "retry_after": value, "count": 1}),
        );
        let before = fake.counters().introspect;
        let started = Instant::now();
        c.check(&t).unwrap_or_else(|e| panic!("{value}: {e}"));
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{value}: {:?}",
            started.elapsed()
        );
        assert_eq!(fake.counters().introspect, before + 2, "{value}: one retry");
    }
}

fn group_request(group: &str) -> AuthorizeRequest {
    AuthorizeRequest::from_json(
        &json!({"allowed_principals": [format!("urn:globus:groups:id:{group}")]}).to_string(),
    )
    .unwrap()
}

/// The dependent-token grant is retried once on a 5xx and once on a timeout (as
/// globus-action-provider-tools does), not more.
#[test]
fn the_grant_is_retried_once_on_5xx_and_on_a_timeout() {
    let fake = FakeGlobus::start();
    let c = checker(
        &fake,
        json!({"max_retries": 3, "request_timeout_ms": 700, "call_timeout_ms": 10000}),
    );
    let group = "4a000000-0000-4000-8000-000000000001";
    for (i, fault) in [
        json!({"endpoint": "dependent_token", "status": 502, "count": 1}),
        json!({"endpoint": "dependent_token", "latency_ms": 1500, "count": 1}),
    ]
    .into_iter()
    .enumerate()
    {
        let t = unique_token(
            &fake,
            &format!("grant-retry-{i}"),
            json!({"groups": [group]}),
        );
        c.check(&t).unwrap();
        fake.set_fault(fault.clone());
        let before = fake.counters().dependent_token;
        c.authorize(&t, &group_request(group))
            .unwrap_or_else(|e| panic!("{fault}: {e}"));
        assert_eq!(fake.counters().dependent_token, before + 2, "{fault}");
    }
    // Twice in a row: no third try, whatever max_retries says.
    let t = unique_token(&fake, "grant-retry-twice", json!({"groups": [group]}));
    c.check(&t).unwrap();
    fake.set_fault(json!({"endpoint": "dependent_token", "status": 503, "count": 5}));
    let before = fake.counters().dependent_token;
    let e = c.authorize(&t, &group_request(group)).unwrap_err();
    assert_eq!(e.status, tc_status::TC_AUTH_UNAVAILABLE, "{e}");
    assert_eq!(fake.counters().dependent_token, before + 2);
}

/// A user in 5,000 groups: the `my_groups` answer is several MiB, well past the 1 MiB cap of
/// the other answers; group rules still decide, for the last group as for the first.
#[test]
fn a_user_in_thousands_of_groups_is_authorized() {
    let fake = FakeGlobus::start();
    let c = checker(&fake, json!({}));
    let groups: Vec<String> = (0..5000)
        .map(|i| format!("6b000000-0000-4000-8000-{i:012}"))
        .collect();
    let specs: Vec<_> = groups
        .iter()
        .map(|g| {
            json!({"id": g, "name": format!("A group with a long enough name {g}"),
                        "description": "x".repeat(200)})
        })
        .collect();
    let t = unique_token(&fake, "many-groups", json!({"groups": specs}));
    for g in [&groups[0], &groups[4999]] {
        let a = c.authorize(&t, &group_request(g)).expect("a member");
        assert_eq!(a.matched, format!("urn:globus:groups:id:{g}"));
    }
    assert_eq!(c.groups_of(&t).unwrap().len(), 5000);
}

/// One deadline per call: with every endpoint slow, an authorization by group ends at
/// `call_timeout_ms` rather than after a full wait per stage.
#[test]
fn one_deadline_bounds_a_whole_authorization() {
    let fake = FakeGlobus::start();
    let c = checker(
        &fake,
        json!({"max_retries": 2, "request_timeout_ms": 3000, "call_timeout_ms": 1500}),
    );
    let group = "4a000000-0000-4000-8000-000000000002";
    let t = unique_token(&fake, "call-deadline", json!({"groups": [group]}));
    fake.set_fault(json!({"endpoint": "all", "latency_ms": 1000}));
    let started = Instant::now();
    let e = c.authorize(&t, &group_request(group)).unwrap_err();
    let took = started.elapsed();
    assert_eq!(e.status, tc_status::TC_AUTH_UNAVAILABLE, "{e}");
    assert!(took < Duration::from_millis(2900), "{took:?}");
    assert!(took >= Duration::from_millis(1000), "{took:?}");
}
