//! What an answer holds besides the fields checks read, and checkers derived for other rules:
//! the server's other members (kept, bounded, never the token), the token's scopes on a scope
//! failure, and derived checkers sharing one client and one cap on requests.

mod common;

use std::sync::Arc;

use common::{checker, status, SCOPE};
use fake_globus::FakeGlobus;
use serde_json::{json, Value};
use tokenchecker::tc_status;

const OTHER: &str = "urn:globus:auth:scope:other:all";

fn whole(c: &tokenchecker::Checker, token: &str) -> Value {
    let state = c.check(token).expect("the token passes");
    serde_json::from_str(&state.info.introspection_json()).unwrap()
}

#[test]
fn the_servers_other_members_are_kept_and_handed_on_whole() {
    let fake = FakeGlobus::start();
    let c = checker(&fake, json!({}));
    let session = json!({"session_id": "s-1", "authentications": {"a": {"idp": "x"}}});
    fake.add_tokens(json!({"tok-extra": {"extra": {"session_info": session.clone()}}}));
    let doc = whole(&c, "tok-extra");
    assert_eq!(doc["session_info"], session);
    assert_eq!(doc["token_type"], "Bearer");
    assert!(doc["iss"].is_string());
    assert_eq!(doc["scope"], format!("{SCOPE} openid"));
    assert!(doc["identity_set"].is_array());
    // A hit hands on the same members.
    assert_eq!(whole(&c, "tok-extra"), doc);
}

#[test]
fn a_server_echoing_the_token_has_its_other_members_dropped() {
    let fake = FakeGlobus::start();
    let c = checker(&fake, json!({}));
    let token = "tok-echoed-SECRETq7";
    fake.add_tokens(json!({ token: {"extra": {"echo": format!("you sent {token}")}} }));
    let doc = whole(&c, token);
    assert!(doc.get("echo").is_none() && doc.get("iss").is_none());
    assert!(!doc.to_string().contains("SECRETq7"));
    // Huge members are not kept either (the answer itself is within max_response_bytes).
    fake.add_tokens(json!({"tok-big-extra": {"extra": {"blob": "x".repeat(20_000)}}}));
    let doc = whole(&c, "tok-big-extra");
    assert!(doc.get("blob").is_none());
    assert_eq!(doc["active"], true);
}

#[test]
fn a_scope_failure_names_the_tokens_scopes() {
    let fake = FakeGlobus::start();
    let c = checker(&fake, json!({}));
    fake.add_tokens(json!({"tok-other": {"scope": format!("{OTHER} email")}}));
    let e = c.check("tok-other").unwrap_err();
    assert_eq!(e.status, tc_status::TC_INSUFFICIENT_SCOPE);
    assert_eq!(
        e.token_scopes,
        Some(vec![OTHER.to_string(), "email".into()])
    );
    let doc: Value = serde_json::from_str(&e.to_json()).unwrap();
    assert_eq!(doc["error"]["token_scopes"], json!([OTHER, "email"]));
    // Other failures carry none.
    let e = c.check("tok-inactive").unwrap_err();
    assert!(e.token_scopes.is_none() && !e.to_json().contains("token_scopes"));
}

#[test]
fn derived_checkers_share_the_cache_and_one_cap_on_requests() {
    let fake = FakeGlobus::start();
    let parent = checker(&fake, json!({"max_concurrent_requests": 1}));
    fake.add_tokens(json!({"tok-d-0": {"scope": OTHER}}));
    assert_eq!(
        status(parent.check("tok-d-0")),
        tc_status::TC_INSUFFICIENT_SCOPE
    );
    let derived = Arc::new(
        parent
            .derive(&json!({"expected_scopes": [OTHER]}).to_string())
            .unwrap(),
    );
    let before = fake.counters().introspect;
    assert!(
        derived.check("tok-d-0").is_ok(),
        "the shared cache's answer, other rules"
    );
    assert_eq!(fake.counters().introspect, before, "no new introspection");
    assert_eq!(
        status(parent.check("tok-d-0")),
        tc_status::TC_INSUFFICIENT_SCOPE
    );
    // Misses through several derived checkers at once: one request at a time, as the parent's
    // max_concurrent_requests says (independent checkers would each have had their own slot).
    let many: Vec<_> = (0..4)
        .map(|i| {
            let rules = json!({"expected_scopes": [OTHER], "leeway_s": i});
            Arc::new(parent.derive(&rules.to_string()).unwrap())
        })
        .collect();
    for i in 1..=8 {
        fake.add_tokens(json!({ format!("tok-d-{i}"): {"scope": OTHER} }));
    }
    fake.reset();
    fake.set_fault(json!({"endpoint": "introspect", "latency_ms": 100}));
    std::thread::scope(|s| {
        for i in 1..=8 {
            let c = many[i % many.len()].clone();
            s.spawn(move || assert!(c.check(&format!("tok-d-{i}")).is_ok()));
        }
    });
    let counters = fake.counters();
    assert_eq!(counters.introspect, 8);
    assert_eq!(counters.max_concurrent_introspect, 1);
    // Only the rules may change.
    for bad in [
        json!({"auth_url": "http://127.0.0.1:1"}),
        json!({"cache_config": {}}),
        json!({"expected_scopes": []}),
        json!({"scope_match": "most"}),
    ] {
        match parent.derive(&bad.to_string()) {
            Ok(_) => panic!("{bad} was accepted"),
            Err(e) => assert_eq!(e.status, tc_status::TC_INVALID_CONFIG, "{bad}: {e}"),
        }
    }
}
