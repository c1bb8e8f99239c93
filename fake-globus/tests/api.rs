//! End-to-end tests of the fake over real HTTP.

mod common;

use std::time::{Duration, Instant};

use common::*;
use fake_globus::{fixtures, Counters, FakeGlobus};
use serde_json::json;

#[test]
fn introspect_valid_token() {
    let fake = FakeGlobus::start();
    let r = introspect(&fake.url(), fixtures::TOK_VALID);
    assert_eq!(r.status, 200);
    assert!(r
        .header("content-type")
        .unwrap()
        .contains("application/json"));
    let v = r.json();
    assert_eq!(v["active"], true);
    assert_eq!(v["token_type"], "Bearer");
    assert_eq!(v["scope"], fixtures::DEFAULT_SCOPE);
    assert_eq!(v["sub"], fixtures::ALICE_ID);
    assert_eq!(v["username"], fixtures::ALICE_USERNAME);
    assert_eq!(v["aud"], json!(["test-client"]));
    assert_eq!(v["iss"], "https://auth.globus.org");
    assert_eq!(
        v["identity_set"],
        json!([fixtures::ALICE_ID, fixtures::ALICE_ID2])
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let exp = v["exp"].as_i64().unwrap();
    assert!((exp - now - 3600).abs() <= 5, "exp {exp} now {now}");
    assert!(v["nbf"].as_i64().unwrap() <= now);

    // identity_set only when asked for.
    let r = request(
        &fake.url(),
        "POST",
        "/v2/oauth2/token/introspect",
        &[("Authorization", BASIC_TEST_CLIENT)],
        b"token=tok-valid",
    )
    .unwrap();
    assert!(r.json().get("identity_set").is_none());

    let v = introspect(&fake.url(), fixtures::TOK_NO_IDENTITIES).json();
    assert_eq!(v["active"], true);
    assert!(v.get("identity_set").is_none());
    assert_eq!(
        introspect(&fake.url(), fixtures::TOK_EXPIRED).json()["active"],
        true
    );
}

#[test]
fn introspect_inactive_unknown_and_bad_credentials() {
    let fake = FakeGlobus::start();
    let url = fake.url();
    assert_eq!(
        introspect(&url, fixtures::TOK_INACTIVE).json(),
        json!({"active": false})
    );
    assert_eq!(
        introspect(&url, "no-such-token").json(),
        json!({"active": false})
    );

    for auth in [
        None,
        Some("Basic dGVzdC1jbGllbnQ6d3Jvbmc="),
        Some("Basic %%%"),
    ] {
        let headers: Vec<(&str, &str)> = auth.map(|a| ("Authorization", a)).into_iter().collect();
        let r = request(
            &url,
            "POST",
            "/v2/oauth2/token/introspect",
            &headers,
            b"token=tok-valid",
        )
        .unwrap();
        assert_eq!(r.status, 401);
        assert_eq!(r.json(), json!({"error": "invalid_client"}));
    }

    // A client added later works.
    fake.add_client("rs", "pw");
    let r = request(
        &url,
        "POST",
        "/v2/oauth2/token/introspect",
        &[("Authorization", "Basic cnM6cHc=")],
        b"token=tok-valid",
    )
    .unwrap();
    assert_eq!(r.status, 200);
}

#[test]
fn dependent_tokens_and_groups_round_trip() {
    let fake = FakeGlobus::start();
    let url = fake.url();
    let r = dependent(&url, fixtures::TOK_VALID);
    assert_eq!(r.status, 200);
    let list = r.json();
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["resource_server"], "groups.api.globus.org");
    assert_eq!(list[0]["scope"], fixtures::GROUPS_SCOPE);
    assert_eq!(list[0]["expires_in"], 172800);
    assert_eq!(list[1]["resource_server"], "transfer.api.globus.org");
    let groups_token = list[0]["access_token"].as_str().unwrap().to_string();
    let transfer_token = list[1]["access_token"].as_str().unwrap().to_string();

    // A second grant gives fresh tokens.
    let again = dependent(&url, fixtures::TOK_VALID).json();
    assert_ne!(again[0]["access_token"], groups_token.as_str());

    let r = my_groups(&url, &groups_token);
    assert_eq!(r.status, 200);
    let groups = r.json();
    let groups = groups.as_array().unwrap();
    // Only active memberships by default: GROUP_PENDING is left out.
    assert_eq!(groups.len(), 2);
    assert!(groups.iter().all(|g| g["id"] != fixtures::GROUP_PENDING));
    let find = |id: &str| groups.iter().find(|g| g["id"] == id).unwrap().clone();
    let member = find(fixtures::GROUP_MEMBER);
    assert_eq!(member["my_memberships"][0]["role"], "member");
    assert_eq!(member["my_memberships"][0]["status"], "active");
    assert_eq!(
        member["my_memberships"][0]["identity_id"],
        fixtures::ALICE_ID
    );
    assert_eq!(member["parent_id"], serde_json::Value::Null);
    assert_eq!(
        find(fixtures::GROUP_ADMIN)["my_memberships"][0]["role"],
        "admin"
    );
    let all = my_groups_query(&url, &groups_token, "statuses=active,pending").json();
    let pending = all
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["id"] == fixtures::GROUP_PENDING)
        .unwrap()
        .clone();
    assert_eq!(pending["my_memberships"][0]["status"], "pending");

    // Bob has no groups.
    let bob = dependent(&url, fixtures::TOK_BOB).json();
    let r = my_groups(&url, bob[0]["access_token"].as_str().unwrap());
    assert_eq!(r.json(), json!([]));

    // Errors.
    for bearer in ["nope", transfer_token.as_str()] {
        let r = my_groups(&url, bearer);
        assert_eq!(r.status, 401);
        assert_eq!(r.json(), json!({"code": "AUTHENTICATION_ERROR"}));
    }
    let r = dependent(&url, fixtures::TOK_INACTIVE);
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"], "invalid_grant");
    let r = request(
        &url,
        "POST",
        "/v2/oauth2/token",
        &[("Authorization", BASIC_TEST_CLIENT)],
        b"grant_type=client_credentials&token=tok-valid",
    )
    .unwrap();
    assert_eq!(r.status, 400);
    assert_eq!(r.json(), json!({"error": "unsupported_grant_type"}));

    // Removing the original token does not revoke its dependent tokens;
    // revoking them does.
    fake.remove_token(fixtures::TOK_VALID);
    assert_eq!(my_groups(&url, &groups_token).status, 200);
    assert!(fake.revoke_dependent_tokens(Some(fixtures::TOK_VALID)) >= 4);
    assert_eq!(my_groups(&url, &groups_token).status, 401);
}

#[test]
fn counters_and_reset() {
    let fake = FakeGlobus::start();
    let url = fake.url();
    introspect(&url, fixtures::TOK_VALID);
    introspect(&url, "unknown");
    let dep = dependent(&url, fixtures::TOK_VALID).json();
    my_groups(&url, dep[0]["access_token"].as_str().unwrap());
    let expected = Counters {
        introspect: 2,
        dependent_token: 1,
        groups: 1,
        max_concurrent_introspect: 1,
        max_concurrent_dependent_token: 1,
        max_concurrent_groups: 1,
    };
    assert_eq!(fake.counters(), expected);
    let v = control(&url, "GET", "/_control/counters", "").json();
    assert_eq!(v["introspect"], 2);
    assert_eq!(v["max_concurrent"]["groups"], 1);

    fake.reset();
    assert_eq!(fake.counters(), Counters::default());
    // Tokens survive a reset.
    assert_eq!(introspect(&url, fixtures::TOK_VALID).json()["active"], true);
}

#[test]
fn status_fault_with_count_and_retry_after() {
    let fake = FakeGlobus::start();
    let url = fake.url();
    fake.set_fault(json!({
        "endpoint": "introspect", "status": 503, "body": "{\"error\":\"busy\"}",
        "retry_after": 7, "count": 2
    }));
    for _ in 0..2 {
        let r = introspect(&url, fixtures::TOK_VALID);
        assert_eq!(r.status, 503);
        assert_eq!(r.header("retry-after"), Some("7"));
        assert_eq!(r.json(), json!({"error": "busy"}));
    }
    assert_eq!(introspect(&url, fixtures::TOK_VALID).status, 200);
    assert_eq!(fake.counters().introspect, 3);

    // "all" applies to every endpoint until cleared; a specific fault wins.
    fake.set_fault(json!({"endpoint": "all", "status": 500}));
    fake.set_fault(json!({"endpoint": "groups", "status": 502}));
    assert_eq!(introspect(&url, fixtures::TOK_VALID).status, 500);
    assert_eq!(dependent(&url, fixtures::TOK_VALID).status, 500);
    assert_eq!(my_groups(&url, "x").status, 502);
    fake.clear_faults();
    assert_eq!(introspect(&url, fixtures::TOK_VALID).status, 200);
}

#[test]
fn latency_is_applied_without_blocking_others() {
    let fake = FakeGlobus::start();
    let url = fake.url();
    fake.set_fault(json!({"endpoint": "introspect", "latency_ms": 1000}));
    let start = Instant::now();
    let handles: Vec<_> = (0..3)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || introspect(&url, fixtures::TOK_VALID).status)
        })
        .collect();
    // Other endpoints are not slowed down meanwhile.
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(my_groups(&url, "x").status, 401);
    assert!(start.elapsed() < Duration::from_millis(900));
    for h in handles {
        assert_eq!(h.join().unwrap(), 200);
    }
    let elapsed = start.elapsed();
    assert!(elapsed >= Duration::from_millis(1000), "{elapsed:?}");
    assert!(
        elapsed < Duration::from_millis(2500),
        "ran serially: {elapsed:?}"
    );
    assert_eq!(fake.counters().max_concurrent_introspect, 3);
    assert_eq!(fake.counters().max_concurrent_groups, 1);
}

#[test]
fn answer_mutating_modes() {
    let fake = FakeGlobus::start();
    let url = fake.url();
    fake.set_fault(json!({"endpoint": "introspect", "mode": "wrong_types", "count": 1}));
    let v = introspect(&url, fixtures::TOK_VALID).json();
    assert!(v["exp"].is_string());
    assert!(v["aud"].is_number());
    fake.set_fault(json!({"endpoint": "introspect", "mode": "active_string", "count": 1}));
    assert_eq!(
        introspect(&url, fixtures::TOK_VALID).json()["active"],
        "true"
    );
    fake.set_fault(json!({"endpoint": "introspect", "mode": "missing_exp", "count": 1}));
    let v = introspect(&url, fixtures::TOK_VALID).json();
    assert_eq!(v["active"], true);
    assert!(v.get("exp").is_none());
    fake.set_fault(json!({"endpoint": "introspect", "mode": "garbage", "count": 1}));
    let r = introspect(&url, fixtures::TOK_VALID);
    assert_eq!((r.status, r.body.as_slice()), (200, &b"<html>oops"[..]));
    assert_eq!(introspect(&url, fixtures::TOK_VALID).json()["active"], true);
}

#[test]
fn connection_breaking_modes() {
    let fake = FakeGlobus::start();
    let url = fake.url();

    fake.set_fault(json!({"endpoint": "introspect", "mode": "close", "count": 1}));
    let err = request(
        &url,
        "POST",
        "/v2/oauth2/token/introspect",
        &[("Authorization", BASIC_TEST_CLIENT)],
        b"token=tok-valid",
    )
    .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidData, "{err}");

    fake.set_fault(json!({"endpoint": "introspect", "mode": "reset", "count": 1}));
    let err = request(
        &url,
        "POST",
        "/v2/oauth2/token/introspect",
        &[("Authorization", BASIC_TEST_CLIENT)],
        b"token=tok-valid",
    )
    .unwrap_err();
    assert!(err.to_string().contains("cut short"), "{err}");

    fake.set_fault(json!({"endpoint": "groups", "mode": "hang"}));
    let start = Instant::now();
    let err = request_timeout(
        &url,
        "GET",
        "/v2/groups/my_groups",
        &[],
        b"",
        Duration::from_millis(300),
    )
    .unwrap_err();
    assert!(
        matches!(
            err.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
        "{err}"
    );
    assert!(start.elapsed() >= Duration::from_millis(300));

    // Leave one request hanging: dropping the fake must still be quick.
    let hostport = url.trim_start_matches("http://").to_string();
    let mut hung = std::net::TcpStream::connect(&hostport).unwrap();
    std::io::Write::write_all(
        &mut hung,
        b"GET /v2/groups/my_groups HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let start = Instant::now();
    drop(fake);
    assert!(start.elapsed() < Duration::from_secs(3));
}

#[test]
fn streaming_modes() {
    let fake = FakeGlobus::start();
    let url = fake.url();

    fake.set_fault(json!({"endpoint": "introspect", "mode": "trickle", "count": 1}));
    let start = Instant::now();
    let r = introspect(&url, "unknown"); // {"active":false}: 16 bytes
    assert_eq!(r.json(), json!({"active": false}));
    assert!(start.elapsed() >= Duration::from_millis(15 * 200));

    fake.set_fault(json!({"endpoint": "groups", "mode": "huge", "count": 1}));
    let r = my_groups(&url, "x");
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len(), 100 * 1024 * 1024);
    assert!(r.body.starts_with(b"{\"active\": true"));
    assert!(r.body.ends_with(b" \"}"));
}

#[test]
fn control_api_over_http() {
    let fake = FakeGlobus::start_unseeded();
    let url = fake.url();
    assert_eq!(
        introspect(&url, fixtures::TOK_VALID).json()["active"],
        false
    );

    let r = control(
        &url,
        "POST",
        "/_control/tokens",
        r#"{"t1": {"scope": "s", "groups": ["g1"], "exp": 123, "username": "u"}}"#,
    );
    assert_eq!(r.status, 200, "{:?}", String::from_utf8_lossy(&r.body));
    let v = introspect(&url, "t1").json();
    assert_eq!(
        (v["scope"].as_str(), v["exp"].as_i64()),
        (Some("s"), Some(123))
    );
    let dep = dependent(&url, "t1").json();
    assert_eq!(dep.as_array().unwrap().len(), 1);
    let groups = my_groups(&url, dep[0]["access_token"].as_str().unwrap()).json();
    assert_eq!(groups[0]["id"], "g1");
    assert_eq!(groups[0]["my_memberships"][0]["status"], "active");
    assert_eq!(groups[0]["my_memberships"][0]["username"], "u");

    for (path, body) in [
        ("/_control/tokens", "{not json"),
        ("/_control/tokens", r#"{"t": {"exp": "soon"}}"#),
        ("/_control/tokens", "[]"),
        ("/_control/clients", r#"{"client_id": "x"}"#),
        (
            "/_control/faults",
            r#"{"endpoint": "nowhere", "status": 500}"#,
        ),
        (
            "/_control/faults",
            r#"{"endpoint": "groups", "mode": "explode"}"#,
        ),
    ] {
        let r = control(&url, "POST", path, body);
        assert_eq!(r.status, 400, "{path} {body}");
        assert_eq!(r.json()["error"], "bad_request");
        assert!(r.json()["message"].is_string());
    }

    let r = control(
        &url,
        "POST",
        "/_control/clients",
        r#"{"client_id": "c2", "client_secret": "s2"}"#,
    );
    assert_eq!(r.status, 200);
    let r = request(
        &url,
        "POST",
        "/v2/oauth2/token/introspect",
        &[("Authorization", "Basic YzI6czI=")],
        b"token=t1",
    )
    .unwrap();
    assert_eq!(r.json()["active"], true);

    assert_eq!(
        control(&url, "DELETE", "/_control/tokens/t1", "").status,
        200
    );
    assert_eq!(introspect(&url, "t1").json()["active"], false);

    let r = control(
        &url,
        "POST",
        "/_control/faults",
        r#"{"endpoint": "introspect", "status": 429}"#,
    );
    assert_eq!(r.status, 200);
    assert_eq!(introspect(&url, "t1").status, 429);
    assert_eq!(control(&url, "DELETE", "/_control/faults", "").status, 200);
    assert_eq!(introspect(&url, "t1").status, 200);

    assert_eq!(control(&url, "POST", "/_control/reset", "").status, 200);
    let v = control(&url, "GET", "/_control/counters", "").json();
    assert_eq!(
        v,
        json!({"introspect": 0, "dependent_token": 0, "groups": 0,
               "max_concurrent": {"introspect": 0, "dependent_token": 0, "groups": 0}})
    );
    assert_eq!(control(&url, "GET", "/nope", "").status, 404);
}
