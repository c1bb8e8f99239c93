//! `AuthorizeRequest::from_json`, compiled into a `Policy`, then matching against a known caller.
//!
//! Never a panic; a request is accepted only when it is a JSON object with nothing but the three
//! known keys, of the right types; the principal that matches is always one the request allows,
//! `public` only with `allow_public`, `all_authenticated_users` only with
//! `allow_all_authenticated_users` and an identity, and a group only when the list names it.
#![no_main]

mod structured;

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use tokenchecker::internals::auth_state::{ALL_AUTHENTICATED_USERS, PUBLIC};
use tokenchecker::model::{GROUP_PREFIX, IDENTITY_PREFIX};
use tokenchecker::{AuthorizeRequest, GroupList, Introspection, Policy, TokenInfo};

const ALICE: &str = "a11ce000-0000-4000-8000-000000000001";
const ALICE2: &str = "a11ce000-0000-4000-8000-000000000002";
const GROUPS: [&str; 2] = [
    "11111111-1111-4111-8111-111111111111",
    "22222222-2222-4222-8222-222222222222",
];

fn caller(identities: Option<Vec<String>>) -> TokenInfo {
    TokenInfo::new(Introspection {
        active: true,
        scopes: vec!["urn:globus:auth:scope:test:all".into()],
        sub: identities.as_ref().and_then(|i| i.first().cloned()),
        aud: vec!["test-client".into()],
        exp: Some(i64::MAX),
        identity_set: identities.map(Into::into),
        ..Default::default()
    })
}

fuzz_target!(|data: &[u8]| {
    // JSON as it is; anything else seeds a generated request (see structured/mod.rs).
    let generated;
    let text = match std::str::from_utf8(data) {
        Ok(t) if serde_json::from_str::<Value>(t).is_ok() => t,
        _ => {
            let Some(doc) = structured::document(data) else {
                return;
            };
            generated = doc.to_string();
            &generated
        }
    };
    let req = match AuthorizeRequest::from_json(text) {
        Ok(r) => r,
        Err(e) => {
            assert_eq!(e.status, tokenchecker::tc_status::TC_INVALID_ARGUMENT);
            assert!(e.message.len() < 1024, "a {}-byte message", e.message.len());
            return;
        }
    };
    let doc: Value = serde_json::from_str(text).expect("accepted, so JSON");
    let obj = doc.as_object().expect("accepted, so an object");
    for (k, v) in obj {
        match k.as_str() {
            "allowed_principals" => assert_eq!(
                v.as_array().map(Vec::len),
                Some(req.allowed_principals.len())
            ),
            "allow_public" => assert_eq!(v.as_bool(), Some(req.allow_public)),
            "allow_all_authenticated_users" => {
                assert_eq!(v.as_bool(), Some(req.allow_all_authenticated_users))
            }
            other => panic!("accepted an unknown key {other:?}"),
        }
    }
    let policy = match Policy::new(&req) {
        Ok(p) => p,
        Err(e) => {
            // Only a principal a C string cannot hold is refused.
            assert_eq!(e.status, tokenchecker::tc_status::TC_INVALID_ARGUMENT);
            assert!(req.allowed_principals.iter().any(|p| p.contains('\0')));
            return;
        }
    };
    assert_eq!(policy.len(), req.allowed_principals.len());
    assert_eq!(
        policy.names_groups(),
        req.allowed_principals
            .iter()
            .any(|p| p.starts_with(GROUP_PREFIX))
    );
    let principal = |i: u32| policy.principal(i as usize).expect("an index of the list").to_owned();

    let allowed = |p: &str| req.allowed_principals.iter().any(|a| a == p);
    for info in [
        caller(Some(vec![ALICE.into(), ALICE2.into()])),
        caller(Some(vec![])),
        caller(None),
    ] {
        if let Some(m) = policy.match_without_groups(&info).map(principal) {
            assert!(allowed(&m), "matched {m:?}, which is not allowed");
            match m.as_str() {
                PUBLIC => assert!(req.allow_public),
                ALL_AUTHENTICATED_USERS => {
                    assert!(req.allow_all_authenticated_users && !info.identities().is_empty())
                }
                _ => {
                    let id = m
                        .strip_prefix(IDENTITY_PREFIX)
                        .expect("an identity principal");
                    assert!(
                        info.identities().iter().any(|i| i == id),
                        "not the caller's identity"
                    );
                }
            }
        } else {
            for id in info.identities() {
                assert!(
                    !allowed(&format!("{IDENTITY_PREFIX}{id}")),
                    "missed identity {id}"
                );
            }
        }
    }
    let groups: Vec<String> = GROUPS.iter().map(|g| g.to_string()).collect();
    match policy.match_groups(&GroupList::new(&groups)).map(principal) {
        Some(m) => {
            assert!(allowed(&m));
            let g = m.strip_prefix(GROUP_PREFIX).expect("a group principal");
            assert!(groups.iter().any(|x| x == g));
        }
        None => {
            for g in &groups {
                assert!(!allowed(&format!("{GROUP_PREFIX}{g}")), "missed group {g}");
            }
        }
    }
    assert_eq!(
        policy.match_groups(&GroupList::new(Vec::<String>::new())),
        None
    );
});
