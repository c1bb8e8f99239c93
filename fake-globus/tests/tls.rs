//! The HTTPS listener, with clients that trust only the test CA.

use std::time::Duration;

use fake_globus::{fixtures, Counters, FakeGlobus};
use reqwest::blocking::Client;
use serde_json::{json, Value};

const DEPENDENT_GRANT: &str = "urn:globus:auth:grant_type:dependent_token";

/// A client that trusts only `ca_pem` (no built-in roots).
fn client_trusting(ca_pem: &str) -> Client {
    Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap())
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

fn introspect(client: &Client, base: &str, token: &str) -> reqwest::Result<Value> {
    client
        .post(format!("{base}/v2/oauth2/token/introspect"))
        .basic_auth(fixtures::CLIENT_ID, Some(fixtures::CLIENT_SECRET))
        .form(&[("token", token), ("include", "identity_set")])
        .send()?
        .error_for_status()?
        .json()
}

/// The whole chain of the error, for messages.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[test]
fn serves_https_with_a_test_ca() {
    let fake = FakeGlobus::start_tls();
    assert!(fake.is_tls());
    let url = fake.url();
    assert_eq!(url, format!("https://localhost:{}", fake.addr().port()));
    assert!(fake.addr().ip().is_loopback());
    let ca = fake.ca_pem();
    assert!(ca.starts_with("-----BEGIN CERTIFICATE-----"), "{ca}");
    assert_eq!(std::fs::read_to_string(fake.ca_pem_path()).unwrap(), ca);

    let client = client_trusting(&ca);
    let v = introspect(&client, &url, fixtures::TOK_VALID).unwrap();
    assert_eq!(v["active"], true);
    assert_eq!(v["sub"], fixtures::ALICE_ID);

    // Grant + my_groups over TLS.
    let grant: Value = client
        .post(format!("{url}/v2/oauth2/token"))
        .basic_auth(fixtures::CLIENT_ID, Some(fixtures::CLIENT_SECRET))
        .form(&[
            ("grant_type", DEPENDENT_GRANT),
            ("token", fixtures::TOK_VALID),
        ])
        .send()
        .unwrap()
        .json()
        .unwrap();
    let groups_token = grant[0]["access_token"].as_str().unwrap();
    let groups: Value = client
        .get(format!("{url}/v2/groups/my_groups"))
        .bearer_auth(groups_token)
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(groups.as_array().unwrap().len(), 2);

    // The certificate is also valid for the IP address.
    let by_ip = format!("https://127.0.0.1:{}", fake.addr().port());
    assert_eq!(
        introspect(&client, &by_ip, fixtures::TOK_BOB).unwrap()["sub"],
        fixtures::BOB_ID
    );

    // Counters and the control API work the same.
    let counters: Value = client
        .get(format!("{url}/_control/counters"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(counters["introspect"], 2);
    assert_eq!(counters["dependent_token"], 1);
    assert_eq!(counters["groups"], 1);
    assert_eq!(
        fake.counters(),
        Counters {
            introspect: 2,
            dependent_token: 1,
            groups: 1,
            max_concurrent_introspect: 1,
            max_concurrent_dependent_token: 1,
            max_concurrent_groups: 1,
        }
    );
    let r = client
        .post(format!("{url}/_control/tokens"))
        .json(&json!({"tls-tok": {"scope": "tls"}}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        introspect(&client, &url, "tls-tok").unwrap()["scope"],
        "tls"
    );
    let r = client
        .post(format!("{url}/_control/faults"))
        .json(&json!({"endpoint": "introspect", "status": 503, "retry_after": 2, "count": 1}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = client
        .post(format!("{url}/v2/oauth2/token/introspect"))
        .basic_auth(fixtures::CLIENT_ID, Some(fixtures::CLIENT_SECRET))
        .form(&[("token", "tok-valid")])
        .send()
        .unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "2");
}

#[test]
fn clients_without_the_ca_are_refused() {
    let fake = FakeGlobus::start_tls();
    let url = fake.url();

    // Default roots (webpki) only.
    let plain = Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let err = introspect(&plain, &url, fixtures::TOK_VALID).unwrap_err();
    let msg = chain(&err);
    assert!(msg.contains("UnknownIssuer"), "{msg}");

    // Trusting another server's CA.
    let other = FakeGlobus::start_tls();
    assert_ne!(other.ca_pem(), fake.ca_pem());
    let wrong = client_trusting(&other.ca_pem());
    let err = introspect(&wrong, &url, fixtures::TOK_VALID).unwrap_err();
    let msg = chain(&err);
    assert!(msg.contains("UnknownIssuer"), "{msg}");
    // ... which works against its own server.
    assert_eq!(
        introspect(&wrong, &other.url(), fixtures::TOK_VALID).unwrap()["active"],
        true
    );

    // The right CA but a name the certificate does not cover.
    let misnamed = Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(fake.ca_pem().as_bytes()).unwrap())
        .resolve("globus.invalid", fake.addr())
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let port = fake.addr().port();
    let err = introspect(&misnamed, &format!("https://globus.invalid:{port}"), "x").unwrap_err();
    let msg = chain(&err);
    assert!(msg.contains("not valid for name"), "{msg}");

    // Plain HTTP to the TLS port gets no HTTP answer.
    let err = reqwest::blocking::get(format!("http://127.0.0.1:{port}/_control/health"));
    assert!(err.is_err(), "{err:?}");

    // The server still serves trusting clients after all that.
    let good = client_trusting(&fake.ca_pem());
    assert_eq!(
        introspect(&good, &url, fixtures::TOK_VALID).unwrap()["active"],
        true
    );
}

#[test]
fn close_and_chunked_modes_over_tls() {
    let fake = FakeGlobus::start_tls();
    let url = fake.url();
    let client = client_trusting(&fake.ca_pem());
    fake.set_fault(json!({"endpoint": "introspect", "mode": "close", "count": 1}));
    assert!(introspect(&client, &url, fixtures::TOK_VALID).is_err());
    fake.set_fault(json!({"endpoint": "introspect", "mode": "chunked", "count": 1}));
    let r = client
        .post(format!("{url}/v2/oauth2/token/introspect"))
        .basic_auth(fixtures::CLIENT_ID, Some(fixtures::CLIENT_SECRET))
        .form(&[("token", "tok-valid")])
        .send()
        .unwrap();
    assert!(r.content_length().is_none());
    assert_eq!(r.headers()["transfer-encoding"], "chunked");
    assert_eq!(r.json::<Value>().unwrap()["active"], true);
}

#[test]
fn ca_file_is_removed_on_drop() {
    let fake = FakeGlobus::try_start_tls(fake_globus::Config {
        port: 0,
        seed: false,
    })
    .unwrap();
    let path = fake.ca_pem_path();
    assert!(path.exists());
    let client = client_trusting(&fake.ca_pem());
    assert_eq!(
        introspect(&client, &fake.url(), fixtures::TOK_VALID).unwrap()["active"],
        false
    );
    drop(fake);
    assert!(!path.exists());
    assert!(!path.parent().unwrap().exists());
}

#[test]
#[should_panic(expected = "not a TLS server")]
fn ca_pem_of_a_plain_server_panics() {
    let fake = FakeGlobus::start();
    assert!(!fake.is_tls());
    let _ = fake.ca_pem();
}
