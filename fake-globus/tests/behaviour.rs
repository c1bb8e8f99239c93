//! Real-Globus behaviours of the fake, over real HTTP: clients without the
//! Groups dependency, dependent tokens that outlive their original token,
//! `invalid_grant` documents, `my_groups` statuses, chunked answers and
//! Retry-After.

mod common;

use std::time::{Duration, Instant};

use common::*;
use fake_globus::{fixtures, FakeGlobus};
use serde_json::{json, Value};

fn resource_servers(grant: &Value) -> Vec<String> {
    grant
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["resource_server"].as_str().unwrap().to_string())
        .collect()
}

fn groups_token(grant: &Value) -> String {
    grant
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["resource_server"] == fixtures::GROUPS_RESOURCE_SERVER)
        .unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_string()
}

fn group_ids(answer: &Value) -> Vec<String> {
    answer
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn client_without_groups_dependency_gets_no_groups_token() {
    let fake = FakeGlobus::start();
    let url = fake.url();

    // Control API: groups_dependency false.
    let r = control(
        &url,
        "POST",
        "/_control/clients",
        r#"{"client_id": "no-groups", "client_secret": "pw", "groups_dependency": false}"#,
    );
    assert_eq!(r.status, 200);
    let auth = basic("no-groups", "pw");
    let r = dependent_as(&url, &auth, fixtures::TOK_VALID);
    assert_eq!(r.status, 200);
    assert_eq!(
        resource_servers(&r.json()),
        [fixtures::TRANSFER_RESOURCE_SERVER]
    );
    // A token without extra dependent tokens: an empty array.
    let r = dependent_as(&url, &auth, fixtures::TOK_WRONG_SCOPE);
    assert_eq!((r.status, r.json()), (200, json!([])));
    // It still authenticates for introspection.
    let r = request(
        &url,
        "POST",
        "/v2/oauth2/token/introspect",
        &[("Authorization", &auth)],
        b"token=tok-valid",
    )
    .unwrap();
    assert_eq!(r.json()["active"], true);
    // ... and inactive tokens are still refused.
    assert_eq!(
        dependent_as(&url, &auth, fixtures::TOK_INACTIVE).status,
        400
    );

    // Rust API.
    fake.add_client_without_groups("rust-no-groups", "s");
    let auth2 = basic("rust-no-groups", "s");
    let grant = dependent_as(&url, &auth2, fixtures::TOK_BOB).json();
    assert_eq!(
        resource_servers(&grant),
        [fixtures::TRANSFER_RESOURCE_SERVER]
    );
    // The transfer token is not a groups token.
    let transfer = grant[0]["access_token"].as_str().unwrap();
    assert_eq!(my_groups(&url, transfer).status, 401);

    // Re-registering with add_client restores the dependency; the control
    // API defaults to it too.
    fake.add_client("rust-no-groups", "s");
    let grant = dependent_as(&url, &auth2, fixtures::TOK_BOB).json();
    assert_eq!(
        resource_servers(&grant),
        [
            fixtures::GROUPS_RESOURCE_SERVER,
            fixtures::TRANSFER_RESOURCE_SERVER
        ]
    );
    control(
        &url,
        "POST",
        "/_control/clients",
        r#"{"client_id": "with-groups", "client_secret": "pw"}"#,
    );
    let grant = dependent_as(&url, &basic("with-groups", "pw"), fixtures::TOK_VALID).json();
    assert_eq!(
        grant[0]["resource_server"],
        fixtures::GROUPS_RESOURCE_SERVER
    );
    // test-client keeps it.
    let grant = dependent(&url, fixtures::TOK_VALID).json();
    assert_eq!(
        grant[0]["resource_server"],
        fixtures::GROUPS_RESOURCE_SERVER
    );

    let r = control(
        &url,
        "POST",
        "/_control/clients",
        r#"{"client_id": "x", "client_secret": "y", "groups_dependency": "no"}"#,
    );
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"], "bad_request");
}

#[test]
fn dependent_tokens_outlive_their_original_token() {
    let fake = FakeGlobus::start_unseeded();
    let url = fake.url();
    fake.add_tokens(
        json!({"orig": {"sub": "s1", "groups": ["g1", {"id": "g2", "status": "pending"}]}}),
    );
    let grant = dependent(&url, "orig").json();
    let gt = groups_token(&grant);
    assert_eq!(group_ids(&my_groups(&url, &gt).json()), ["g1"]);

    // While the original exists, spec changes show.
    fake.add_tokens(json!({"orig": {"sub": "s1", "groups": ["g3"]}}));
    assert_eq!(group_ids(&my_groups(&url, &gt).json()), ["g3"]);

    // Removed: introspection says inactive, a new grant fails, but the
    // dependent token still answers, with the spec as it was at grant time.
    fake.remove_token("orig");
    assert_eq!(introspect(&url, "orig").json(), json!({"active": false}));
    assert_eq!(dependent(&url, "orig").status, 400);
    let r = my_groups(&url, &gt);
    assert_eq!(r.status, 200);
    let groups = r.json();
    assert_eq!(group_ids(&groups), ["g1"]);
    assert_eq!(groups[0]["my_memberships"][0]["identity_id"], "s1");
    // The statuses filter applies to the snapshot too.
    let all = my_groups_query(&url, &gt, "statuses=active,pending").json();
    assert_eq!(group_ids(&all), ["g1", "g2"]);

    // Made inactive (replaced): the dependent token keeps working.
    fake.add_tokens(json!({"orig2": {"groups": ["g4"]}}));
    let gt2 = groups_token(&dependent(&url, "orig2").json());
    fake.add_tokens(json!({"orig2": {"active": false, "groups": ["g4"]}}));
    assert_eq!(dependent(&url, "orig2").status, 400);
    assert_eq!(group_ids(&my_groups(&url, &gt2).json()), ["g4"]);
}

#[test]
fn dependent_token_expiry_is_honoured() {
    let fake = FakeGlobus::start_unseeded();
    let url = fake.url();
    fake.add_tokens(json!({
        "expired-at-once": {"groups": ["g1"], "groups_expires_in": 0},
        "one-second": {"groups": ["g1"], "groups_expires_in": 1,
                       "dependent_tokens": [{"scope": "s", "resource_server": "rs", "expires_in": 7}]},
    }));
    let grant = dependent(&url, "expired-at-once").json();
    assert_eq!(grant[0]["expires_in"], 0);
    let r = my_groups(&url, &groups_token(&grant));
    assert_eq!(r.status, 401);
    assert_eq!(r.json(), json!({"code": "AUTHENTICATION_ERROR"}));

    let grant = dependent(&url, "one-second").json();
    assert_eq!(grant[0]["expires_in"], 1);
    assert_eq!(grant[1]["expires_in"], 7);
    let gt = groups_token(&grant);
    let start = Instant::now();
    assert_eq!(my_groups(&url, &gt).status, 200);
    std::thread::sleep(Duration::from_millis(1100).saturating_sub(start.elapsed()));
    assert_eq!(my_groups(&url, &gt).status, 401);
    // A new grant gives a fresh, live token.
    assert_eq!(
        my_groups(&url, &groups_token(&dependent(&url, "one-second").json())).status,
        200
    );

    // Fixture tokens keep the 48 h default.
    let fake = FakeGlobus::start();
    let grant = dependent(&fake.url(), fixtures::TOK_VALID).json();
    assert_eq!(grant[0]["expires_in"], fixtures::DEPENDENT_EXPIRES_IN);
}

#[test]
fn revoking_dependent_tokens() {
    let fake = FakeGlobus::start();
    let url = fake.url();
    let valid1 = groups_token(&dependent(&url, fixtures::TOK_VALID).json());
    let valid2 = groups_token(&dependent(&url, fixtures::TOK_VALID).json());
    let bob = groups_token(&dependent(&url, fixtures::TOK_BOB).json());

    // By original token: two grants x (groups + transfer).
    let r = control(
        &url,
        "DELETE",
        "/_control/dependent_tokens",
        r#"{"token": "tok-valid"}"#,
    );
    assert_eq!(
        (r.status, r.json()),
        (200, json!({"ok": true, "revoked": 4}))
    );
    assert_eq!(my_groups(&url, &valid1).status, 401);
    assert_eq!(my_groups(&url, &valid2).status, 401);
    assert_eq!(my_groups(&url, &bob).status, 200);
    // The original itself is untouched: a new grant works.
    let valid3 = groups_token(&dependent(&url, fixtures::TOK_VALID).json());
    assert_eq!(my_groups(&url, &valid3).status, 200);

    // One dependent token.
    let body = json!({"access_token": bob}).to_string();
    let r = control(&url, "DELETE", "/_control/dependent_tokens", &body);
    assert_eq!(r.json(), json!({"ok": true, "revoked": 1}));
    assert_eq!(my_groups(&url, &bob).status, 401);
    let r = control(&url, "DELETE", "/_control/dependent_tokens", &body);
    assert_eq!(r.json(), json!({"ok": true, "revoked": 0}));

    // All (no body, or {}).
    let r = control(&url, "DELETE", "/_control/dependent_tokens", "");
    assert_eq!(r.json(), json!({"ok": true, "revoked": 3}));
    assert_eq!(my_groups(&url, &valid3).status, 401);
    let r = control(&url, "DELETE", "/_control/dependent_tokens", "{}");
    assert_eq!(r.json(), json!({"ok": true, "revoked": 0}));

    for bad in [
        "{nope",
        r#"{"tok": "x"}"#,
        r#"{"token": "a", "access_token": "b"}"#,
    ] {
        let r = control(&url, "DELETE", "/_control/dependent_tokens", bad);
        assert_eq!(r.status, 400, "{bad}");
        assert_eq!(r.json()["error"], "bad_request");
    }

    // Rust API.
    let a = groups_token(&dependent(&url, fixtures::TOK_VALID).json());
    let b = groups_token(&dependent(&url, fixtures::TOK_BOB).json());
    assert!(fake.revoke_dependent_token(&a));
    assert!(!fake.revoke_dependent_token(&a));
    assert_eq!(my_groups(&url, &a).status, 401);
    assert_eq!(my_groups(&url, &b).status, 200);
    assert_eq!(fake.revoke_dependent_tokens(Some(fixtures::TOK_BOB)), 2);
    assert_eq!(my_groups(&url, &b).status, 401);
    dependent(&url, fixtures::TOK_VALID);
    assert_eq!(fake.revoke_dependent_tokens(None), 3); // 1 transfer left + 2 new
    assert_eq!(fake.revoke_dependent_tokens(None), 0);
}

#[test]
fn grants_are_counted_per_original_token() {
    let fake = FakeGlobus::start();
    let url = fake.url();
    dependent(&url, fixtures::TOK_VALID);
    dependent(&url, fixtures::TOK_VALID);
    dependent(&url, fixtures::TOK_INACTIVE); // refused, but asked for
    dependent(&url, "never-heard-of");
    // Bad credentials: not counted.
    dependent_as(&url, &basic("test-client", "wrong"), fixtures::TOK_BOB);
    // Replaced by a fault: not counted.
    fake.set_fault(json!({"endpoint": "dependent_token", "status": 500, "count": 1}));
    assert_eq!(dependent(&url, fixtures::TOK_BOB).status, 500);

    assert_eq!(fake.grant_count(fixtures::TOK_VALID), 2);
    assert_eq!(fake.grant_count(fixtures::TOK_INACTIVE), 1);
    assert_eq!(fake.grant_count("never-heard-of"), 1);
    assert_eq!(fake.grant_count(fixtures::TOK_BOB), 0);
    assert_eq!(fake.counters().dependent_token, 6);
    let r = control(&url, "GET", "/_control/grants", "");
    assert_eq!(
        r.json(),
        json!({"tok-valid": 2, "tok-inactive": 1, "never-heard-of": 1})
    );

    fake.reset();
    assert_eq!(fake.grant_count(fixtures::TOK_VALID), 0);
    assert_eq!(
        control(&url, "GET", "/_control/grants", "").json(),
        json!({})
    );
}

#[test]
fn invalid_grant_has_the_globus_error_shape() {
    let fake = FakeGlobus::start();
    let url = fake.url();
    let unknown = dependent(&url, "no-such-token");
    let inactive = dependent(&url, fixtures::TOK_INACTIVE);
    fake.remove_token(fixtures::TOK_BOB);
    let removed = dependent(&url, fixtures::TOK_BOB);
    let missing = dependent(&url, "");
    for r in [unknown, inactive, removed, missing] {
        assert_eq!(r.status, 400);
        assert!(r
            .header("content-type")
            .unwrap()
            .contains("application/json"));
        let v = r.json();
        assert_eq!(v["error"], "invalid_grant");
        assert!(v["error_description"].is_string());
        let errors = v["errors"].as_array().unwrap();
        assert_eq!(errors.len(), 1);
        let e = &errors[0];
        assert_eq!(e["status"], "400");
        assert_eq!(e["code"], "INVALID_GRANT");
        assert!(e["title"].is_string() && e["detail"].is_string());
        let id = e["id"].as_str().unwrap();
        assert_eq!(id.len(), 36, "{id}");
        assert_eq!(id.matches('-').count(), 4, "{id}");
    }
    // Other errors keep their documented bodies.
    let r = dependent_as(&url, &basic("test-client", "wrong"), fixtures::TOK_VALID);
    assert_eq!(
        (r.status, r.json()),
        (401, json!({"error": "invalid_client"}))
    );
}

#[test]
fn my_groups_statuses_parameter() {
    let fake = FakeGlobus::start();
    let url = fake.url();
    let gt = groups_token(&dependent(&url, fixtures::TOK_VALID).json());
    let ids = |query: &str| group_ids(&my_groups_query(&url, &gt, query).json());
    let active = [fixtures::GROUP_MEMBER, fixtures::GROUP_ADMIN];
    let all = [
        fixtures::GROUP_MEMBER,
        fixtures::GROUP_ADMIN,
        fixtures::GROUP_PENDING,
    ];
    assert_eq!(ids(""), active);
    assert_eq!(ids("statuses=active"), active);
    assert_eq!(ids("statuses="), active);
    assert_eq!(ids("statuses=pending"), [fixtures::GROUP_PENDING]);
    assert_eq!(ids("statuses=active,pending"), all);
    assert_eq!(ids("statuses=active%2Cpending"), all);
    assert_eq!(ids("statuses=active&statuses=pending"), all);
    assert!(ids("statuses=invited").is_empty());

    // Several memberships in one group: only the matching ones are listed.
    fake.add_tokens(json!({"multi": {"sub": "me", "groups": [
        {"id": "g", "status": "pending"},
        {"id": "g", "identity_id": "other", "status": "active"},
        {"id": "h", "status": "invited"},
    ]}}));
    let gt = groups_token(&dependent(&url, "multi").json());
    let v = my_groups(&url, &gt).json();
    assert_eq!(group_ids(&v), ["g"]);
    let memberships = v[0]["my_memberships"].as_array().unwrap();
    assert_eq!(memberships.len(), 1);
    assert_eq!(memberships[0]["identity_id"], "other");
    let v = my_groups_query(&url, &gt, "statuses=pending,invited,active").json();
    assert_eq!(group_ids(&v), ["g", "h"]);
    assert_eq!(v[0]["my_memberships"].as_array().unwrap().len(), 2);
}

#[test]
fn chunked_answers() {
    let fake = FakeGlobus::start();
    let url = fake.url();
    let raw = |method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]| {
        raw_request(&url, method, path, headers, body, Duration::from_secs(20)).unwrap()
    };
    let introspect_req = || {
        raw(
            "POST",
            "/v2/oauth2/token/introspect",
            &[("Authorization", BASIC_TEST_CLIENT)],
            b"token=tok-valid",
        )
    };

    // Normal answers: introspection has a Content-Length ...
    let r = parse_response(&introspect_req()).unwrap();
    assert!(r.header("content-length").is_some());
    assert!(r.header("transfer-encoding").is_none());

    // ... my_groups lists are chunked.
    let gt = groups_token(&dependent(&url, fixtures::TOK_VALID).json());
    let auth = format!("Bearer {gt}");
    let bytes = raw(
        "GET",
        "/v2/groups/my_groups",
        &[("Authorization", &auth)],
        b"",
    );
    let r = parse_response(&bytes).unwrap();
    assert_eq!(r.header("transfer-encoding"), Some("chunked"));
    assert!(r.header("content-length").is_none());
    assert!(chunk_count(&bytes) >= 1);
    assert_eq!(group_ids(&r.json()).len(), 2);
    // (its 401 is not)
    let r = my_groups(&url, "nope");
    assert_eq!(r.status, 401);
    assert!(r.header("content-length").is_some());

    // The `chunked` mode: the normal answer in several chunks.
    fake.set_fault(json!({"endpoint": "introspect", "mode": "chunked", "count": 1}));
    let start = Instant::now();
    let bytes = introspect_req();
    assert!(start.elapsed() >= Duration::from_millis(40));
    let r = parse_response(&bytes).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("transfer-encoding"), Some("chunked"));
    assert!(r.header("content-length").is_none());
    assert_eq!(chunk_count(&bytes), 3);
    assert_eq!(r.json()["sub"], fixtures::ALICE_ID);
    // count 1: back to Content-Length.
    assert!(parse_response(&introspect_req())
        .unwrap()
        .header("content-length")
        .is_some());

    // Error answers and other endpoints too.
    fake.set_fault(json!({"endpoint": "all", "mode": "chunked"}));
    let bytes = raw(
        "POST",
        "/v2/oauth2/token",
        &[("Authorization", BASIC_TEST_CLIENT)],
        b"grant_type=urn%3Aglobus%3Aauth%3Agrant_type%3Adependent_token&token=tok-inactive",
    );
    let r = parse_response(&bytes).unwrap();
    assert_eq!(r.status, 400);
    assert_eq!(r.header("transfer-encoding"), Some("chunked"));
    assert_eq!(r.json()["error"], "invalid_grant");
    assert_eq!(chunk_count(&bytes), 3);
    let r = dependent(&url, fixtures::TOK_VALID);
    assert_eq!(r.header("transfer-encoding"), Some("chunked"));
    assert_eq!(r.json().as_array().unwrap().len(), 2);
    let bytes = raw(
        "GET",
        "/v2/groups/my_groups",
        &[("Authorization", &auth)],
        b"",
    );
    assert_eq!(chunk_count(&bytes), 3);
    assert_eq!(group_ids(&parse_response(&bytes).unwrap().json()).len(), 2);
}

#[test]
fn retry_after_with_any_status() {
    let fake = FakeGlobus::start();
    let url = fake.url();
    for (endpoint, status, retry_after) in [
        ("introspect", 500, 30),
        ("introspect", 503, 0),
        ("dependent_token", 502, 1),
        ("dependent_token", 429, 17),
        ("groups", 500, 30),
        ("groups", 404, 3),
        ("all", 200, 5),
    ] {
        fake.set_fault(json!({"endpoint": endpoint, "status": status,
                              "retry_after": retry_after, "count": 1}));
        let r = match endpoint {
            "groups" => my_groups(&url, "x"),
            "dependent_token" => dependent(&url, fixtures::TOK_VALID),
            _ => introspect(&url, fixtures::TOK_VALID),
        };
        assert_eq!(r.status, status, "{endpoint}");
        let expected = retry_after.to_string();
        assert_eq!(
            r.header("retry-after"),
            Some(expected.as_str()),
            "{endpoint}"
        );
        assert!(r.body.is_empty());
    }
    // With a body and latency.
    fake.set_fault(
        json!({"endpoint": "introspect", "status": 500, "retry_after": 30,
                          "body": "{\"error\":\"internal\"}", "latency_ms": 100, "count": 1}),
    );
    let start = Instant::now();
    let r = introspect(&url, fixtures::TOK_VALID);
    assert!(start.elapsed() >= Duration::from_millis(100));
    assert_eq!(
        (r.status, r.header("retry-after"), r.json()),
        (500, Some("30"), json!({"error": "internal"}))
    );
    // Faults gone: normal answers have no Retry-After.
    let r = introspect(&url, fixtures::TOK_VALID);
    assert_eq!((r.status, r.header("retry-after")), (200, None));
}
