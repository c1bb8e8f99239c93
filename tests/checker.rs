//! The checker against a real HTTP fake of Globus Auth and Groups.
//!
//! Each test starts its own fake server; since the cache key is derived from the client
//! credentials *and* the auth server URL, tests never see each other's entries even though the
//! process-wide cache is shared.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use fake_globus::{fixtures, FakeGlobus};
use serde_json::json;
use tokenchecker::{tc_status, AuthorizeRequest, Groups};

#[test]
fn valid_token_then_served_from_cache() {
    let fake = FakeGlobus::start();
    let c = checker(&fake, json!({}));
    let state = c.check(fixtures::TOK_VALID).unwrap();
    let i = state.info.to_introspection();
    assert_eq!(i.sub.as_deref(), Some(fixtures::ALICE_ID));
    assert_eq!(
        state.info.identities(),
        &[
            fixtures::ALICE_ID.to_string(),
            fixtures::ALICE_ID2.to_string()
        ]
    );
    assert_eq!(i.username.as_deref(), Some(fixtures::ALICE_USERNAME));
    assert_eq!(state.groups, Groups::NotFetched);
    assert_eq!(state.source.name(), "network");
    let doc: serde_json::Value = serde_json::from_str(&state.to_json(None)).unwrap();
    assert_eq!(
        doc["effective_identity"],
        format!("urn:globus:auth:identity:{}", fixtures::ALICE_ID)
    );
    assert_eq!(doc["groups"], serde_json::Value::Null);
    assert_eq!(doc["principals"].as_array().unwrap().len(), 2);
    assert_eq!(
        doc["scopes"],
        json!(["urn:globus:auth:scope:test:all", "openid"])
    );

    let again = c.check(fixtures::TOK_VALID).unwrap();
    assert_eq!(again.source.name(), "memory");
    assert_eq!(fake.counters().introspect, 1);
}

#[test]
fn every_rule_in_order() {
    let fake = FakeGlobus::start();
    let c = checker(&fake, json!({}));
    assert_eq!(
        status(c.check(fixtures::TOK_INACTIVE)),
        tc_status::TC_INACTIVE_TOKEN
    );
    assert_eq!(
        status(c.check("never-issued")),
        tc_status::TC_INACTIVE_TOKEN
    );
    assert_eq!(
        status(c.check(fixtures::TOK_WRONG_SCOPE)),
        tc_status::TC_INSUFFICIENT_SCOPE
    );
    assert_eq!(
        status(c.check(fixtures::TOK_WRONG_AUD)),
        tc_status::TC_WRONG_AUDIENCE
    );
    assert_eq!(
        status(c.check(fixtures::TOK_EXPIRED)),
        tc_status::TC_TOKEN_EXPIRED
    );
    assert_eq!(
        status(c.check(fixtures::TOK_NOT_YET)),
        tc_status::TC_TOKEN_EXPIRED
    );
    // Active without an identity set: valid, and says so (no identities), not "inactive".
    let s = c.check(fixtures::TOK_NO_IDENTITIES).unwrap();
    assert!(s.info.identities().is_empty());
    let e = c
        .authorize(
            fixtures::TOK_NO_IDENTITIES,
            &request(json!({"allowed_principals":
                ["urn:globus:auth:identity:d0000000-0000-4000-8000-000000000000"]})),
        )
        .unwrap_err();
    assert_eq!(e.status, tc_status::TC_NOT_AUTHORIZED);
    assert!(e.message.contains("no identity_set"), "{e}");
    // Expired beats wrong scope: the original's order.
    let t = unique_token(&fake, "order", json!({"exp_in": -100, "scope": "urn:x"}));
    assert_eq!(status(c.check(&t)), tc_status::TC_TOKEN_EXPIRED);
}

#[test]
fn scope_match_all_and_expected_audience() {
    let fake = FakeGlobus::start();
    let t = unique_token(&fake, "scopes", json!({"scope": "a b", "aud": ["svc"]}));
    let any = checker(
        &fake,
        json!({"expected_scopes": ["a", "z"], "expected_audience": "svc"}),
    );
    assert!(any.check(&t).is_ok());
    let all = checker(
        &fake,
        json!({"expected_scopes": ["a", "z"], "expected_audience": "svc", "scope_match": "all"}),
    );
    assert_eq!(status(all.check(&t)), tc_status::TC_INSUFFICIENT_SCOPE);
    let both = checker(
        &fake,
        json!({"expected_scopes": ["a", "b"], "expected_audience": "svc", "scope_match": "all"}),
    );
    assert!(both.check(&t).is_ok());
}

#[test]
fn rules_apply_to_cache_hits_too() {
    let fake = FakeGlobus::start();
    let wide = checker(&fake, json!({}));
    assert!(wide.check(fixtures::TOK_VALID).is_ok());
    // Same credentials and server, so the same cache entry; other expectations.
    let narrow = checker(&fake, json!({"expected_scopes": ["urn:other"]}));
    assert_eq!(
        status(narrow.check(fixtures::TOK_VALID)),
        tc_status::TC_INSUFFICIENT_SCOPE
    );
    let other_aud = checker(&fake, json!({"expected_audience": "someone-else"}));
    assert_eq!(
        status(other_aud.check(fixtures::TOK_VALID)),
        tc_status::TC_WRONG_AUDIENCE
    );
    // Alternating, and with a configuration cloned and changed before its checker was made:
    // every checker's rules on every hit (a cached answer remembers only which rules it passed).
    assert!(wide.check(fixtures::TOK_VALID).is_ok());
    let mut changed = wide.config().clone();
    changed.expected_scopes = vec!["urn:other".into()];
    let changed = tokenchecker::Checker::new(changed).unwrap();
    for _ in 0..3 {
        assert!(wide.check(fixtures::TOK_VALID).is_ok());
        assert_eq!(
            status(changed.check(fixtures::TOK_VALID)),
            tc_status::TC_INSUFFICIENT_SCOPE
        );
        assert_eq!(
            status(narrow.check(fixtures::TOK_VALID)),
            tc_status::TC_INSUFFICIENT_SCOPE
        );
    }
    assert_eq!(
        fake.counters().introspect,
        1,
        "both answered from the cache"
    );
}

#[test]
fn inactive_tokens_are_cached_too() {
    let fake = FakeGlobus::start();
    let c = checker(&fake, json!({}));
    for _ in 0..5 {
        assert_eq!(
            status(c.check(fixtures::TOK_INACTIVE)),
            tc_status::TC_INACTIVE_TOKEN
        );
    }
    assert_eq!(fake.counters().introspect, 1);
}

#[test]
fn an_entry_never_outlives_its_token() {
    let fake = FakeGlobus::start();
    // exp in 2 s, cache timeout 30 s: the entry must be gone after 2 s.
    let t = unique_token(&fake, "short", json!({"exp": now() + 2}));
    let c = checker(&fake, json!({"leeway_s": 0}));
    assert!(c.check(&t).is_ok());
    assert!(c.check(&t).is_ok());
    assert_eq!(fake.counters().introspect, 1);
    std::thread::sleep(Duration::from_millis(3500));
    assert_eq!(status(c.check(&t)), tc_status::TC_TOKEN_EXPIRED);
    assert_eq!(
        fake.counters().introspect,
        2,
        "the expired entry was not served"
    );
}

#[test]
fn concurrent_misses_make_one_request() {
    let fake = FakeGlobus::start();
    let t = unique_token(&fake, "herd", json!({}));
    fake.set_fault(json!({"endpoint": "introspect", "latency_ms": 300}));
    let c = Arc::new(checker(&fake, json!({})));
    let threads: Vec<_> = (0..100)
        .map(|_| {
            let (c, t) = (c.clone(), t.clone());
            std::thread::spawn(move || c.check(&t).map(|s| s.source.name()))
        })
        .collect();
    let sources: Vec<_> = threads
        .into_iter()
        .map(|h| h.join().unwrap().unwrap())
        .collect();
    assert_eq!(fake.counters().introspect, 1);
    assert_eq!(sources.iter().filter(|s| **s == "network").count(), 1);
}

#[test]
fn one_waiters_timeout_never_fails_the_others() {
    let fake = FakeGlobus::start();
    let t = unique_token(&fake, "waiters", json!({}));
    fake.set_fault(json!({"endpoint": "introspect", "latency_ms": 1500}));
    let patient = Arc::new(checker(&fake, json!({})));
    let hasty = checker(
        &fake,
        json!({"connect_timeout_ms": 100, "request_timeout_ms": 100, "max_retries": 0}),
    );
    let others: Vec<_> = (0..10)
        .map(|_| {
            let (c, t) = (patient.clone(), t.clone());
            std::thread::spawn(move || c.check(&t).map(|_| ()))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(100));
    let started = Instant::now();
    assert_eq!(status(hasty.check(&t)), tc_status::TC_AUTH_UNAVAILABLE);
    assert!(
        started.elapsed() < Duration::from_millis(1200),
        "the hasty caller gave up early"
    );
    for h in others {
        h.join()
            .unwrap()
            .expect("the patient callers still get the answer");
    }
    assert_eq!(fake.counters().introspect, 1);
}

#[test]
fn groups_eager_lazy_never() {
    let fake = FakeGlobus::start();
    let eager = checker(&fake, json!({"fetch_groups": "eager"}));
    let s = eager.check(fixtures::TOK_VALID).unwrap();
    let Groups::Available(groups) = &s.groups else {
        panic!("groups: {:?}", s.groups)
    };
    let mut groups = groups.to_vec();
    groups.sort();
    assert_eq!(groups, vec![fixtures::GROUP_MEMBER, fixtures::GROUP_ADMIN]);
    let doc: serde_json::Value = serde_json::from_str(&s.to_json(None)).unwrap();
    assert_eq!(doc["groups_status"], "available");
    assert!(doc["principals"]
        .as_array()
        .unwrap()
        .contains(&json!(format!(
            "urn:globus:groups:id:{}",
            fixtures::GROUP_ADMIN
        ))));
    let c = fake.counters();
    assert_eq!((c.dependent_token, c.groups), (1, 1));
    // Cached: a second eager check is a pure hit, and the fast path answers it.
    let again = eager
        .try_check(fixtures::TOK_VALID)
        .unwrap()
        .expect("cached")
        .unwrap();
    assert!(matches!(again.groups, Groups::Available(_)));
    assert_eq!(fake.counters().groups, 1);

    let lazy = checker(&fake, json!({}));
    assert_eq!(
        lazy.check(fixtures::TOK_BOB).unwrap().groups,
        Groups::NotFetched
    );
    assert_eq!(fake.counters().dependent_token, 1);
}

#[test]
fn a_failed_groups_call_is_unavailable_and_not_cached() {
    let fake = FakeGlobus::start();
    let c = checker(&fake, json!({"fetch_groups": "eager"}));
    // 500 is retried once (max_retries 1): two failures in a row fail the call.
    fake.set_fault(json!({"endpoint": "groups", "status": 500, "count": 2}));
    let s = c.check(fixtures::TOK_VALID).unwrap();
    assert!(matches!(s.groups, Groups::Unavailable(_)), "{:?}", s.groups);
    let s = c.check(fixtures::TOK_VALID).unwrap();
    assert!(matches!(s.groups, Groups::Available(_)), "{:?}", s.groups);
    assert_eq!(fake.counters().groups, 3);
}

fn request(v: serde_json::Value) -> AuthorizeRequest {
    AuthorizeRequest::from_json(&v.to_string()).unwrap()
}

#[test]
fn authorization_semantics() {
    let fake = FakeGlobus::start();
    let c = checker(&fake, json!({}));
    let alice = format!("urn:globus:auth:identity:{}", fixtures::ALICE_ID2);
    let a = c
        .authorize(
            fixtures::TOK_VALID,
            &request(json!({"allowed_principals": [alice]})),
        )
        .unwrap();
    assert_eq!(a.matched, alice);
    assert_eq!(
        fake.counters().groups,
        0,
        "no groups needed for an identity match"
    );

    let public = request(json!({"allowed_principals": ["public"], "allow_public": true}));
    assert_eq!(
        c.authorize(fixtures::TOK_VALID, &public).unwrap().matched,
        "public"
    );
    let public_off = request(json!({"allowed_principals": ["public"]}));
    assert_eq!(
        status(c.authorize(fixtures::TOK_VALID, &public_off)),
        tc_status::TC_NOT_AUTHORIZED
    );
    let all = request(json!({"allowed_principals": ["all_authenticated_users"],
                             "allow_all_authenticated_users": true}));
    assert!(c.authorize(fixtures::TOK_VALID, &all).is_ok());

    let group = format!("urn:globus:groups:id:{}", fixtures::GROUP_MEMBER);
    let by_group =
        request(json!({"allowed_principals": ["urn:globus:auth:identity:nobody", group]}));
    let a = c.authorize(fixtures::TOK_VALID, &by_group).unwrap();
    assert_eq!(a.matched, group);
    assert!(matches!(a.state.groups, Groups::Available(_)));
    assert_eq!(fake.counters().groups, 1);

    let pending = format!("urn:globus:groups:id:{}", fixtures::GROUP_PENDING);
    let by_pending = request(json!({"allowed_principals": [pending]}));
    assert_eq!(
        status(c.authorize(fixtures::TOK_VALID, &by_pending)),
        tc_status::TC_NOT_AUTHORIZED
    );
    assert_eq!(fake.counters().groups, 1, "groups were cached");
    // An invalid token is refused before any authorization.
    assert_eq!(
        status(c.authorize(fixtures::TOK_INACTIVE, &by_group)),
        tc_status::TC_INACTIVE_TOKEN
    );

    let never = checker(&fake, json!({"fetch_groups": "never"}));
    assert_eq!(
        status(never.authorize(fixtures::TOK_BOB, &by_group)),
        tc_status::TC_NOT_AUTHORIZED
    );
}

#[test]
fn authorization_by_group_fails_closed_when_groups_are_unavailable() {
    let fake = FakeGlobus::start();
    let c = checker(&fake, json!({}));
    fake.set_fault(json!({"endpoint": "groups", "status": 502}));
    let group = format!("urn:globus:groups:id:{}", fixtures::GROUP_MEMBER);
    let req = request(json!({"allowed_principals": [group]}));
    assert_eq!(
        status(c.authorize(fixtures::TOK_VALID, &req)),
        tc_status::TC_AUTH_UNAVAILABLE
    );
}

#[test]
fn dependent_tokens() {
    let fake = FakeGlobus::start();
    let c = checker(&fake, json!({}));
    let t = c
        .dependent_token(fixtures::TOK_VALID, fixtures::TRANSFER_SCOPE)
        .unwrap();
    assert_eq!(t.resource_server, fixtures::TRANSFER_RESOURCE_SERVER);
    assert!(!t.access_token.is_empty());
    assert!(t.expires_at > now() + 3600);
    let by_server = c
        .dependent_token(fixtures::TOK_VALID, fixtures::TRANSFER_RESOURCE_SERVER)
        .unwrap();
    assert_eq!(by_server.access_token, t.access_token, "cached");
    assert_eq!(fake.counters().dependent_token, 1);
    // A scope the cached grant lacks: the grant is asked once more (the user may have
    // consented since), then not again within the cache lifetime.
    for _ in 0..3 {
        assert_eq!(
            status(c.dependent_token(fixtures::TOK_VALID, "urn:nothing")),
            tc_status::TC_NOT_AUTHORIZED
        );
    }
    assert_eq!(fake.counters().dependent_token, 2, "one more grant, once");
    assert_eq!(
        status(c.dependent_token(fixtures::TOK_INACTIVE, fixtures::TRANSFER_SCOPE)),
        tc_status::TC_INACTIVE_TOKEN
    );
    assert_eq!(
        fake.counters().dependent_token,
        2,
        "no grant for an invalid token"
    );
}

#[test]
fn purge_removes_one_tokens_entries() {
    let fake = FakeGlobus::start();
    let c = checker(&fake, json!({"fetch_groups": "eager"}));
    c.check(fixtures::TOK_VALID).unwrap();
    c.check(fixtures::TOK_BOB).unwrap();
    c.purge(fixtures::TOK_VALID).unwrap();
    assert!(c.try_check(fixtures::TOK_VALID).unwrap().is_none());
    assert!(c.try_check(fixtures::TOK_BOB).unwrap().is_some());
    c.check(fixtures::TOK_VALID).unwrap();
    let n = fake.counters();
    assert_eq!((n.introspect, n.dependent_token, n.groups), (3, 3, 3));

    c.purge_identity(fixtures::BOB_ID).unwrap();
    assert!(c.try_check(fixtures::TOK_BOB).unwrap().is_none());
    assert!(c.try_check(fixtures::TOK_VALID).unwrap().is_some());
}

#[test]
fn credentials_are_verified_at_creation() {
    let fake = FakeGlobus::start();
    let bad = config(
        &fake,
        json!({"client_secret": "wrong", "verify_credentials": true}),
    );
    let e = tokenchecker::Checker::from_json(&bad.to_string())
        .err()
        .unwrap();
    assert_eq!(e.status, tc_status::TC_CREDENTIALS_REJECTED);
    assert!(!e.message.contains("wrong"));
    let good = config(&fake, json!({"verify_credentials": true}));
    assert!(tokenchecker::Checker::from_json(&good.to_string()).is_ok());
    // Without verification the rejection shows on the first check.
    let unverified = checker(&fake, json!({"client_secret": "wrong"}));
    assert_eq!(
        status(unverified.check(fixtures::TOK_VALID)),
        tc_status::TC_CREDENTIALS_REJECTED
    );
    // An unreachable server does not stop a service from starting.
    let down = json!({"client_id": "c", "client_secret": "s", "expected_scopes": ["x"],
                      "auth_url": "http://127.0.0.1:9", "groups_url": "http://127.0.0.1:9",
                      "connect_timeout_ms": 200, "max_retries": 0});
    let c = tokenchecker::Checker::from_json(&down.to_string()).unwrap();
    assert_eq!(status(c.check("tok")), tc_status::TC_AUTH_UNAVAILABLE);
}

#[test]
fn bad_tokens_are_refused_before_any_request() {
    let fake = FakeGlobus::start();
    let c = checker(&fake, json!({}));
    for bad in ["", "has space", "tab\t", "naïve", &"x".repeat(1 << 20)] {
        let e = c.check(bad).unwrap_err();
        assert_eq!(e.status, tc_status::TC_INVALID_ARGUMENT);
        if !bad.is_empty() {
            assert!(!e.message.contains(bad));
        }
    }
    assert_eq!(fake.counters().introspect, 0);
}

/// A broken or hostile server: a clear status, bounded time, never "active", nothing cached.
#[test]
fn broken_servers_fail_closed() {
    let fake = FakeGlobus::start();
    let c = checker(
        &fake,
        json!({"request_timeout_ms": 700, "connect_timeout_ms": 500, "max_retries": 1,
               "max_response_bytes": 65536}),
    );
    let modes = [
        json!({"status": 500}),
        json!({"status": 503, "retry_after": 0}),
        json!({"status": 429, "retry_after": 0}),
        json!({"status": 404}),
        json!({"mode": "garbage"}),
        json!({"mode": "reset"}),
        json!({"mode": "close"}),
        json!({"mode": "hang"}),
        json!({"mode": "trickle"}),
        json!({"mode": "huge"}),
        json!({"mode": "wrong_types"}),
        json!({"mode": "active_string"}),
        json!({"mode": "missing_exp"}),
    ];
    for (n, mode) in modes.iter().enumerate() {
        let token = unique_token(&fake, &format!("broken{n}"), json!({}));
        let mut fault = mode.clone();
        fault["endpoint"] = "introspect".into();
        fake.clear_faults();
        fake.set_fault(fault);
        let started = Instant::now();
        let e = c.check(&token).unwrap_err();
        assert_eq!(e.status, tc_status::TC_AUTH_UNAVAILABLE, "{mode}: {e}");
        assert!(!e.message.contains(&token), "{mode}: the token leaked");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{mode}: took too long"
        );
        fake.clear_faults();
        assert!(c.check(&token).is_ok(), "{mode}: a failure was cached");
    }
    let retried = tokenchecker::internals::stats::stats().retries.get();
    assert!(retried >= 2, "503 and 429 were retried ({retried})");
}

#[test]
fn a_retry_after_503_recovers() {
    let fake = FakeGlobus::start();
    let t = unique_token(&fake, "retry", json!({}));
    let c = checker(&fake, json!({"max_retries": 2}));
    fake.set_fault(json!({"endpoint": "introspect", "status": 503, "retry_after": 0, "count": 1}));
    assert!(c.check(&t).is_ok());
    assert_eq!(fake.counters().introspect, 2);
}

#[test]
fn blocking_from_a_runtime_thread_is_refused() {
    let fake = FakeGlobus::start();
    let c = Arc::new(checker(&fake, json!({})));
    c.check(fixtures::TOK_VALID).unwrap();
    let inner = c.clone();
    let (hit, miss) = tokenchecker::internals::process::block_on(async move {
        tokenchecker::internals::process::spawn(async move {
            (
                inner.check(fixtures::TOK_VALID).map(|_| ()),
                inner.check(fixtures::TOK_BOB).map(|_| ()),
            )
        })
        .await
        .unwrap()
    })
    .unwrap();
    assert!(hit.is_ok(), "a cached answer needs no blocking");
    assert_eq!(miss.unwrap_err().status, tc_status::TC_WOULD_BLOCK);
}

#[test]
fn async_checks_run_on_the_runtime() {
    let fake = FakeGlobus::start();
    let t = unique_token(&fake, "async", json!({}));
    fake.set_fault(json!({"endpoint": "introspect", "latency_ms": 200}));
    let c = Arc::new(checker(&fake, json!({})));
    let handles: Vec<_> = (0..300)
        .map(|_| {
            let (c, t) = (c.clone(), t.clone());
            tokenchecker::internals::process::spawn(async move { c.check_async(&t).await.is_ok() })
        })
        .collect();
    let ok = tokenchecker::internals::process::block_on(async move {
        let mut ok = 0;
        for h in handles {
            ok += h.await.unwrap() as usize;
        }
        ok
    })
    .unwrap();
    assert_eq!(ok, 300);
    assert_eq!(fake.counters().introspect, 1);
}

#[test]
fn requests_in_flight_are_capped() {
    let fake = FakeGlobus::start();
    fake.set_fault(json!({"endpoint": "introspect", "latency_ms": 200}));
    let c = Arc::new(checker(&fake, json!({"max_concurrent_requests": 2})));
    let threads: Vec<_> = (0..8)
        .map(|n| {
            let c = c.clone();
            let t = unique_token(&fake, &format!("cap{n}"), json!({}));
            std::thread::spawn(move || c.check(&t).is_ok())
        })
        .collect();
    assert!(threads.into_iter().all(|h| h.join().unwrap()));
    let n = fake.counters();
    assert_eq!(n.introspect, 8);
    assert!(n.max_concurrent_introspect <= 2, "{n:?}");
}

#[test]
fn cached_authorizations_need_no_runtime() {
    let fake = FakeGlobus::start();
    let c = Arc::new(checker(&fake, json!({})));
    let group = format!("urn:globus:groups:id:{}", fixtures::GROUP_ADMIN);
    let by_group = request(json!({"allowed_principals": [group]}));
    let by_identity = request(json!({"allowed_principals": [format!(
        "urn:globus:auth:identity:{}",
        fixtures::ALICE_ID
    )]}));
    assert!(c
        .try_authorize(fixtures::TOK_VALID, &by_identity)
        .unwrap()
        .is_none());
    c.authorize(fixtures::TOK_VALID, &by_group).unwrap();
    // From a runtime thread, where blocking is refused, cached answers still come back.
    let inner = c.clone();
    let (a, b, d) = tokenchecker::internals::process::block_on(async move {
        tokenchecker::internals::process::spawn(async move {
            (
                inner
                    .authorize(fixtures::TOK_VALID, &by_identity)
                    .map(|a| a.matched),
                inner
                    .authorize(fixtures::TOK_VALID, &by_group)
                    .map(|a| a.matched),
                inner
                    .authorize(fixtures::TOK_BOB, &by_group)
                    .map(|a| a.matched),
            )
        })
        .await
        .unwrap()
    })
    .unwrap();
    assert!(a.is_ok() && b.is_ok(), "{a:?} {b:?}");
    assert_eq!(d.unwrap_err().status, tc_status::TC_WOULD_BLOCK);
    let n = fake.counters();
    assert_eq!((n.introspect, n.groups), (1, 1));
}

#[test]
fn tls_files_must_be_regular_files() {
    let fake = FakeGlobus::start();
    for path in ["/dev/zero", "/nonexistent/ca.pem", "/tmp"] {
        let started = Instant::now();
        let c = config(
            &fake,
            json!({"cache_config": {"backend": "redis", "url": "rediss://127.0.0.1:9",
                                     "ssl_ca_certs": path}}),
        );
        let e = tokenchecker::Checker::from_json(&c.to_string())
            .err()
            .unwrap();
        assert_eq!(e.status, tc_status::TC_INVALID_CONFIG, "{path}: {e}");
        assert!(e.message.contains("ssl_ca_certs"), "{e}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}

/// A cached authorization by group reads the groups kept beside the cached answer (one lookup
/// for both): they go when the answer goes, so a purge makes the next authorization ask Globus
/// again and see the memberships of now.
#[test]
fn groups_kept_beside_an_answer_go_with_it() {
    let fake = FakeGlobus::start();
    let group = "11111111-2222-4333-8444-555555555555";
    let token = "tok-groups-beside-the-answer";
    let identity = "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee";
    let spec = |groups: Vec<&str>| json!({token: {"identity_set": [identity], "groups": groups}});
    fake.add_tokens(spec(vec![group]));
    let c = checker(&fake, json!({}));
    let by_group = AuthorizeRequest::from_json(
        &json!({"allowed_principals": [format!("urn:globus:groups:id:{group}")]}).to_string(),
    )
    .unwrap();
    let authorized = |r: Option<Result<tokenchecker::Authorization, tokenchecker::Error>>| {
        r.expect("cached").is_ok()
    };
    c.authorize(token, &by_group).unwrap();
    for _ in 0..3 {
        assert!(authorized(c.try_authorize(token, &by_group).unwrap()));
    }
    assert_eq!(fake.counters().groups, 1);

    // The caller left the group; a purge of the token forgets its groups too.
    fake.add_tokens(spec(vec![]));
    c.purge(token).unwrap();
    assert!(c.try_authorize(token, &by_group).unwrap().is_none());
    assert_eq!(
        status(c.authorize(token, &by_group)),
        tc_status::TC_NOT_AUTHORIZED
    );
    assert_eq!(fake.counters().groups, 2);

    // Back in the group; a purge of the identity forgets them as well.
    fake.add_tokens(spec(vec![group]));
    assert!(!authorized(c.try_authorize(token, &by_group).unwrap()));
    c.purge_identity(identity).unwrap();
    assert!(c.try_authorize(token, &by_group).unwrap().is_none());
    c.authorize(token, &by_group).unwrap();
    assert!(authorized(c.try_authorize(token, &by_group).unwrap()));
    assert_eq!(fake.counters().groups, 3);
}

/// What the groups kept beside an answer remember (the last compiled policy they authorized)
/// answers that policy only, and only for checkers that may use groups.
#[test]
fn a_remembered_authorization_answers_its_own_policy_only() {
    let fake = FakeGlobus::start();
    let (member_of, other) = (
        "21111111-2222-4333-8444-555555555555",
        "31111111-2222-4333-8444-555555555555",
    );
    let token = "tok-remembered-authorization";
    fake.add_tokens(json!({token: {
        "identity_set": ["baaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee"], "groups": [member_of],
    }}));
    let policy = |groups: &[&str]| {
        let principals: Vec<String> = groups
            .iter()
            .map(|g| format!("urn:globus:groups:id:{g}"))
            .collect();
        tokenchecker::Policy::from_json(&json!({ "allowed_principals": principals }).to_string())
            .unwrap()
    };
    let (mine, theirs, both) = (
        policy(&[member_of]),
        policy(&[other]),
        policy(&[other, member_of]),
    );
    let c = checker(&fake, json!({}));
    let matched = |c: &tokenchecker::Checker, p: &tokenchecker::Policy| {
        c.try_authorize_answer_with(token, p)
            .unwrap()
            .expect("cached")
            .map(|(_, i)| i)
            .map_err(|e| e.status)
    };
    assert_eq!(c.authorize_with(token, &mine).unwrap().1, 0);
    for _ in 0..3 {
        assert_eq!(matched(&c, &mine), Ok(0));
        assert_eq!(matched(&c, &theirs), Err(tc_status::TC_NOT_AUTHORIZED));
        assert_eq!(matched(&c, &both), Ok(1));
        assert_eq!(
            c.try_authorize_with(token, &both)
                .unwrap()
                .unwrap()
                .unwrap()
                .1,
            1
        );
    }
    // A checker that never reads groups, over the same cache, is not authorized by them.
    let never = checker(&fake, json!({"fetch_groups": "never"}));
    assert_eq!(matched(&c, &mine), Ok(0));
    assert_eq!(matched(&never, &mine), Err(tc_status::TC_NOT_AUTHORIZED));
    assert_eq!(fake.counters().groups, 1);
}
