//! Regression tests for what the fuzz targets (fuzz/, scripts/fuzz) found, one test per finding,
//! with the input (minimized) inline and the original under fuzz/regressions/.
//!
//! Every finding is fixed; a new one gets its test here with its fix.

mod common;

use fake_globus::FakeGlobus;
use serde_json::json;
use tokenchecker::internals::clock::now_unix;
use tokenchecker::internals::introspection::{parse_dependent_tokens, parse_introspection};
use tokenchecker::{tc_status, Config};

fn base() -> serde_json::Value {
    json!({"client_id": "c", "client_secret": "s", "expected_scopes": ["a"],
           "verify_credentials": false})
}

/// F1 (fuzz target `config`, fuzz/regressions/config/url-not-a-url): `auth_url` and
/// `groups_url` are only checked for an `http(s)://` prefix, then have their trailing slashes
/// trimmed. `"http://"` becomes `"http:"`, and `"http://127.\`0.0.1:8080"` or
/// `"https://exa mple.org"` are accepted: the checker is created, then every check fails with
/// TC_AUTH_UNAVAILABLE instead of creation failing with TC_INVALID_CONFIG naming the key.
#[test]
fn urls_that_are_not_urls_are_refused() {
    for key in ["auth_url", "groups_url"] {
        for bad in [
            "http://",
            "https:///",
            "http://127.`0.0.1:8080",
            "https://exa mple.org",
            "https://:443",
            "http://[::1",
            // F5 (fuzz/regressions/config/url-scheme-without-slashes): the URL parser reads
            // these as http://./… or http://host, but the text is not a usable base URL.
            "http:./127.0.0.1:8080",
            "http:127.0.0.1:8080",
            "HTTP://127.0.0.1:8080",
        ] {
            let mut c = base();
            c[key] = bad.into();
            match Config::from_value(&c) {
                Ok(cfg) => panic!(
                    "{key} = {bad:?} accepted as auth_url {:?}, groups_url {:?}",
                    cfg.auth_url, cfg.groups_url
                ),
                Err(e) => {
                    assert_eq!(e.status, tc_status::TC_INVALID_CONFIG);
                    assert!(e.message.contains(key), "{}", e.message);
                }
            }
        }
    }
    // What must stay accepted.
    for good in [
        "http://127.0.0.1:8080",
        "https://auth.globus.org/",
        "http://[::1]:9",
        "https://auth.example.org/prefix/",
    ] {
        // A custom auth_url needs its own groups_url; groups_url alone is fine.
        for keys in [&["auth_url", "groups_url"][..], &["groups_url"]] {
            let mut c = base();
            for key in keys {
                c[*key] = good.into();
            }
            assert!(Config::from_value(&c).is_ok(), "{keys:?} = {good}");
        }
    }
}

/// F2 (fuzz target `responses`, fuzz/regressions/responses/dependent-expires-in-max):
/// `parse_dependent_tokens` computes `now + expires_in` unchecked: an `expires_in` near
/// `i64::MAX` overflows (a panic with overflow checks, as in debug builds; in release the
/// token's `expires_at` wraps to the far past, and `tc_dependent_token` reports
/// `expires_in` ≈ i64::MAX for it). Expected: saturate (or refuse the answer).
#[test]
fn huge_dependent_token_lifetimes_do_not_overflow() {
    let now = now_unix();
    for expires_in in [i64::MAX, i64::MAX - 1, i64::MAX - now + 1] {
        let doc = json!([{"scope": "s", "access_token": "a", "expires_in": expires_in}]);
        let result = std::panic::catch_unwind(|| {
            parse_dependent_tokens(&serde_json::to_vec(&doc).unwrap(), now)
        });
        match result {
            Err(_) => panic!("parse_dependent_tokens panicked on expires_in {expires_in}"),
            Ok(Ok(tokens)) => assert!(
                tokens[0].expires_at >= now,
                "expires_in {expires_in} gave expires_at {} (before now)",
                tokens[0].expires_at
            ),
            Ok(Err(e)) => assert_eq!(e.status, tc_status::TC_AUTH_UNAVAILABLE),
        }
    }
}

/// F2 through the checker: a dependent token that lives "forever" is handed out, not reported as
/// long expired (nor cached past the cache's timeout, nor a TC_PANIC in debug builds).
#[test]
fn a_dependent_token_with_a_huge_lifetime_is_usable() {
    let fake = FakeGlobus::start();
    let token = common::unique_token(
        &fake,
        "dep-forever",
        json!({"identity_set": [fake_globus::fixtures::ALICE_ID],
               "dependent_tokens": [{"scope": "urn:example:forever:all",
                                     "resource_server": "forever.example.org",
                                     "expires_in": i64::MAX as u64}]}),
    );
    let checker = common::checker(&fake, json!({}));
    let t = checker
        .dependent_token(&token, "urn:example:forever:all")
        .expect("the dependent token");
    assert!(t.expires_at >= now_unix(), "expires_at {}", t.expires_at);
}

/// F3 (found reading the code behind F2; `responses` feeds `parse_introspection`, which accepts
/// it): an active token whose `exp` is `i64::MIN` (or a huge negative float, which saturates to
/// it) makes the checker compute `secs_until(exp)` = `exp - now` unchecked: TC_PANIC with
/// overflow checks (debug builds), a wrapped, huge cache lifetime in release (capped by the
/// cache's timeout, and the answer is still refused by `validate`). Expected: TC_TOKEN_EXPIRED.
#[test]
fn an_exp_at_the_bottom_of_i64_is_expired_not_a_panic() {
    let doc = json!({"active": true, "exp": -1e300, "scope": "s"});
    assert_eq!(
        parse_introspection(&serde_json::to_vec(&doc).unwrap())
            .unwrap()
            .exp,
        Some(i64::MIN)
    );

    let fake = FakeGlobus::start();
    let token = common::unique_token(
        &fake,
        "exp-min",
        json!({"exp": i64::MIN, "identity_set": [fake_globus::fixtures::ALICE_ID]}),
    );
    let checker = common::checker(&fake, json!({}));
    assert_eq!(
        common::status(checker.check(&token)),
        tc_status::TC_TOKEN_EXPIRED
    );
}

/// F4 (fuzz target `authorize_request`, fuzz/regressions/authorize_request/unknown-key-echoed):
/// an unknown key in an authorization request is echoed whole in the error message
/// ("unknown key '<key>' in the authorization request"): a 1 MiB key gives a 1 MiB message
/// (and error document). The configuration parser clips what it echoes to 64 characters;
/// expected: the same here.
#[test]
fn authorization_request_errors_stay_short() {
    use tokenchecker::AuthorizeRequest;
    let key = "x".repeat(1 << 20);
    let e = AuthorizeRequest::from_json(&json!({ key: 1 }).to_string()).unwrap_err();
    assert_eq!(e.status, tc_status::TC_INVALID_ARGUMENT);
    assert!(e.message.len() < 300, "a {}-byte message", e.message.len());
}
