//! The tokens the fake Globus knows during a soak: a pool of valid ones, each a member of one
//! group and a pending member of another, and one refused token per refusal reason.

use serde_json::{json, Value};
use tokenchecker::tc_status;

pub(super) const SCOPE: &str = "urn:globus:auth:scope:test:all";
/// Valid tokens whose answers are cached and re-read (hits).
pub(super) const POOL: usize = 64;
pub(super) const GROUPS: [&str; 4] = [
    "6a000000-0000-4000-8000-000000000000",
    "6a000000-0000-4000-8000-000000000001",
    "6a000000-0000-4000-8000-000000000002",
    "6a000000-0000-4000-8000-000000000003",
];
/// Every pool token is a *pending* member of this group: it must never authorize.
pub(super) const GROUP_PENDING: &str = "6b000000-0000-4000-8000-000000000000";
/// Nobody's group.
pub(super) const GROUP_OTHER: &str = "6c000000-0000-4000-8000-000000000000";
pub(super) const IDENTITY: &str = "urn:globus:auth:identity:";
pub(super) const GROUP: &str = "urn:globus:groups:id:";

pub(super) fn identity_of(i: usize) -> String {
    format!("50a50000-0000-4000-8000-{i:012}")
}

/// Tokens refused for one reason each, and the status that reason gets.
pub(super) fn refused_kinds() -> Vec<(&'static str, Value, tc_status)> {
    use tc_status::*;
    vec![
        ("inactive", json!({"active": false}), TC_INACTIVE_TOKEN),
        (
            "expired",
            json!({"exp_in": -100, "identity_set": [identity_of(9001)]}),
            TC_TOKEN_EXPIRED,
        ),
        (
            "not-yet",
            json!({"nbf_in": 600, "identity_set": [identity_of(9002)]}),
            TC_TOKEN_EXPIRED,
        ),
        (
            "wrong-scope",
            json!({"scope": "urn:globus:auth:scope:other:all", "identity_set": [identity_of(9003)]}),
            TC_INSUFFICIENT_SCOPE,
        ),
        (
            "wrong-aud",
            json!({"aud": ["other-client"], "identity_set": [identity_of(9004)]}),
            TC_WRONG_AUDIENCE,
        ),
    ]
}

pub(super) fn pool_token(i: usize) -> String {
    format!("soak-valid-{i}")
}

pub(super) fn valid_spec(id: &str, group: &str) -> Value {
    json!({"identity_set": [id], "sub": id, "username": format!("{id}@example.org"),
           "groups": [group, {"id": GROUP_PENDING, "status": "pending"}]})
}
