//! The response parsers, fed the input's bytes as they are, then the JSON document
//! `serde_json::from_slice` makes of the input (or, when it is not JSON, the document it
//! generates, see structured/mod.rs), written out: the introspection answer, the
//! dependent-token grant's answer and the Groups API's `my_groups`.
//!
//! Never a panic, and what they return is sane:
//! * `parse_introspection`: `active: true` only when the document says `"active": true` (the
//!   boolean) and carries an integer `exp`; an inactive answer carries nothing else; scopes are
//!   single non-empty words; `aud`/`identity_set` only strings. The result document rendered from
//!   it is JSON, and `validate` never passes a token without `exp`, or past `exp` (one without an
//!   identity set passes, with no identities: issue 21.4).
//! * `parse_dependent_tokens`: one token per item, never expiring before `now`, and secrets never
//!   reach `Debug`.
//! * `parse_groups`: no duplicates, and only groups with an active member/manager/admin
//!   membership.
#![no_main]

mod structured;

use std::sync::Arc;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use serde_json::{json, Value};
use tokenchecker::internals::auth_state::validate;
use tokenchecker::internals::introspection::{
    parse_dependent_tokens, parse_groups, parse_introspection,
};
use tokenchecker::{AuthState, Config, Groups, Introspection, Source, TokenInfo};

/// A fixed "now" (2026-01-01T00:00:00Z minus an hour, as in fake-globus/README.md) and the wall
/// clock: the parsers must be sane for both.
const NOW: i64 = 1_767_222_000;

fn config() -> Config {
    Config::from_value(&json!({
        "client_id": "test-client", "client_secret": "test-secret",
        "expected_scopes": ["urn:globus:auth:scope:test:all"],
        "auth_url": "http://127.0.0.1:9", "groups_url": "http://127.0.0.1:9",
        "verify_credentials": false,
    }))
    .unwrap()
}

fn introspection(doc: &Value, body: &[u8]) {
    let Ok(i) = parse_introspection(body) else {
        return;
    };
    let obj = doc.as_object().expect("only an object parses");
    if !i.active {
        assert_eq!(obj.get("active"), Some(&Value::Bool(false)));
        assert_eq!(
            i,
            Introspection::default(),
            "an inactive answer carries data"
        );
        return;
    }
    assert_eq!(
        obj.get("active"),
        Some(&Value::Bool(true)),
        "active without \"active\": true"
    );
    let exp = i.exp.expect("active=true without exp");
    // An integer, or a finite number truncated towards zero (RFC 7662's NumericDate may have a
    // fraction), saturating at the ends of i64.
    let want = obj
        .get("exp")
        .and_then(|v| v.as_i64().or_else(|| v.as_f64().map(|f| f as i64)));
    assert_eq!(want, Some(exp));
    for s in &i.scopes {
        assert!(
            !s.is_empty() && !s.chars().any(char::is_whitespace),
            "scope {s:?}"
        );
    }
    if let Some(set) = &i.identity_set {
        assert!(obj.get("identity_set").is_some_and(Value::is_array));
        assert_eq!(set.len(), obj["identity_set"].as_array().unwrap().len());
    }

    // What a check makes of it.
    let info = Arc::new(TokenInfo::new(i.clone()));
    assert_eq!(
        info.identities().len(),
        i.identity_set.as_ref().map_or(0, |s| s.len())
    );
    // The compact form (one rendered text) gives back exactly what it was built from.
    assert_eq!(info.to_introspection(), i);
    let state = AuthState {
        info: info.clone(),
        groups: Groups::NotFetched,
        source: Source::Network,
        age: Duration::ZERO,
    };
    let rendered = state.to_json(Some("public"));
    let back: Value = serde_json::from_str(&rendered)
        .unwrap_or_else(|e| panic!("the result document is not JSON ({e}): {rendered}"));
    assert_eq!(back["active"], true);
    assert_eq!(back["exp"], exp);
    assert_eq!(back["authorization"]["matched"], "public");

    let c = config();
    for now in [NOW, tokenchecker::internals::clock::now_unix()] {
        if validate(&c, &info, now).is_ok() {
            assert!(exp > now - c.leeway_s, "passed after exp");
            assert!(
                i.nbf.is_none_or(|nbf| nbf < now + c.leeway_s),
                "passed before nbf"
            );
            // Without an identity set it passes with no identities (issue 21.4).
            assert_eq!(
                info.identities().is_empty(),
                i.identity_set.as_ref().is_none_or(|s| s.is_empty())
            );
            assert!(i.aud.contains(&c.expected_audience));
            assert!(i.scopes.iter().any(|s| c.expected_scopes.contains(s)));
        }
    }
}

fn dependent_tokens(doc: &Value, body: &[u8]) {
    for now in [NOW, tokenchecker::internals::clock::now_unix()] {
        let Ok(tokens) = parse_dependent_tokens(body, now) else {
            continue;
        };
        let items = doc.as_array().expect("only a list parses");
        assert_eq!(tokens.len(), items.len());
        for (t, item) in tokens.iter().zip(items) {
            assert!(
                t.expires_at >= now,
                "a dependent token expiring before now: {t:?}"
            );
            assert_eq!(
                item.get("access_token").and_then(Value::as_str),
                Some(t.access_token.as_str())
            );
            // Secrets never show in Debug: the same token with other secrets debugs the same.
            let mut other = t.clone();
            other.access_token = "x".into();
            other.refresh_token = other.refresh_token.map(|_| "y".into());
            assert_eq!(format!("{t:?}"), format!("{other:?}"));
        }
    }
}

fn groups(doc: &Value, body: &[u8]) {
    let Ok(ids) = parse_groups(body) else {
        return;
    };
    let groups = doc.as_array().expect("only a list parses");
    for (n, id) in ids.iter().enumerate() {
        assert!(!ids[..n].contains(id), "group {id:?} twice");
        let counts = groups.iter().any(|g| {
            g.get("id").and_then(Value::as_str) == Some(id)
                && g.get("my_memberships")
                    .and_then(Value::as_array)
                    .is_some_and(|ms| {
                        ms.iter().any(|m| {
                            m.get("status").and_then(Value::as_str) == Some("active")
                                && matches!(
                                    m.get("role").and_then(Value::as_str),
                                    Some("member" | "manager" | "admin")
                                )
                        })
                    })
        });
        assert!(counts, "group {id:?} granted without an active membership");
    }
}

fuzz_target!(|data: &[u8]| {
    // The raw bytes: never a panic, whatever they are.
    let _ = parse_introspection(data);
    let _ = parse_dependent_tokens(data, NOW);
    let _ = parse_groups(data);
    let Some(doc) = structured::document(data) else {
        return;
    };
    let body = serde_json::to_vec(&doc).expect("a document writes out");
    introspection(&doc, &body);
    dependent_tokens(&doc, &body);
    groups(&doc, &body);
});
