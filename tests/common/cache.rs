//! Tokens, cache keys and raw-dump checks shared by the cache-backend tests.

use std::sync::atomic::{AtomicU64, Ordering};

use fake_globus::{fixtures, FakeGlobus};
use serde_json::{json, Value};
use tokenchecker::internals::cache::{CacheKey, KeyHasher, Kind};
use tokenchecker::internals::config::CacheConfig;
use tokenchecker::{AuthorizeRequest, Checker, Config};

/// The backends' default key prefix.
pub const PREFIX: &str = "tc:";

static SERIAL: AtomicU64 = AtomicU64::new(0);

/// A token no other check of the test run uses (per process and call), added to `fake` with
/// `spec`.
pub fn new_token(fake: &FakeGlobus, name: &str, spec: Value) -> String {
    let token = format!(
        "tok-{name}-{}-{}",
        std::process::id(),
        SERIAL.fetch_add(1, Ordering::Relaxed)
    );
    fake.add_tokens(json!({ token.clone(): spec }));
    token
}

/// Alice: two identities, a member and an admin group, a dependent token for Transfer.
pub fn alice() -> Value {
    json!({
        "sub": fixtures::ALICE_ID,
        "identity_set": [fixtures::ALICE_ID, fixtures::ALICE_ID2],
        "username": fixtures::ALICE_USERNAME,
        "name": fixtures::ALICE_NAME,
        "email": fixtures::ALICE_EMAIL,
        "groups": [fixtures::GROUP_MEMBER, {"id": fixtures::GROUP_ADMIN, "role": "admin"}],
        "dependent_tokens": [{
            "scope": fixtures::TRANSFER_SCOPE,
            "resource_server": fixtures::TRANSFER_RESOURCE_SERVER,
        }],
    })
}

/// Bob: one identity, nothing else.
pub fn bob() -> Value {
    json!({
        "sub": fixtures::BOB_ID,
        "identity_set": [fixtures::BOB_ID],
        "username": fixtures::BOB_USERNAME,
    })
}

/// A request that the members of `group` pass.
pub fn group_request(group: &str) -> AuthorizeRequest {
    AuthorizeRequest {
        allowed_principals: vec![format!("urn:globus:groups:id:{group}")],
        ..Default::default()
    }
}

/// The backend key of `token`'s entry of `kind` under `prefix`, as every process of the fleet
/// computes it.
pub fn key_of(fake: &FakeGlobus, prefix: &str, kind: Kind, token: &str) -> String {
    let hasher = KeyHasher::new(fixtures::CLIENT_ID, fixtures::CLIENT_SECRET, &fake.url());
    CacheKey::new(kind, hasher.token_id(token)).to_text(prefix)
}

/// A checker that installs `cache` as the process-wide cache: a fresh store, nothing in its
/// in-process layers (what another process of the fleet sees).
pub fn checker(fake: &FakeGlobus, cache: &Value) -> Checker {
    super::checker(fake, json!({ "cache_config": cache }))
}

/// What `fake` was asked for since its last reset: (introspections, dependent-token grants,
/// group lookups).
pub fn requests(fake: &FakeGlobus) -> (u64, u64, u64) {
    let c = fake.counters();
    (c.introspect, c.dependent_token, c.groups)
}

/// `SET key value PX ms` on a Redis connection (a node's or a cluster's), as an operator's tool
/// would write it.
pub fn redis_set_px(
    conn: &mut impl redis::ConnectionLike,
    key: &str,
    value: impl redis::ToRedisArgs,
    ms: u64,
) {
    redis::cmd("SET")
        .arg(key)
        .arg(value)
        .arg("PX")
        .arg(ms)
        .query::<()>(conn)
        .unwrap();
}

/// What says who Alice is (and what she may do): never in a backend's keys or values.
const ALICE_READABLE: [&str; 9] = [
    fixtures::ALICE_ID,
    fixtures::ALICE_ID2,
    fixtures::ALICE_USERNAME,
    fixtures::ALICE_NAME,
    fixtures::GROUP_MEMBER,
    fixtures::GROUP_ADMIN,
    fixtures::TRANSFER_SCOPE,
    "urn:globus",
    "alice",
];

/// Every key of `entries` (a raw dump of a backend) has `prefix`, and no key or value shows
/// any of `secrets`, Alice's identity, or `also`.
pub fn assert_nothing_readable<K: AsRef<str>, V: AsRef<[u8]>>(
    entries: impl IntoIterator<Item = (K, V)>,
    prefix: &str,
    secrets: &[String],
    also: &[&str],
) {
    let mut forbidden: Vec<String> = secrets.to_vec();
    forbidden.extend(ALICE_READABLE.iter().chain(also).map(|s| s.to_string()));
    for (key, value) in entries {
        let key = key.as_ref();
        assert!(key.starts_with(prefix), "{key} has the prefix {prefix}");
        let value = String::from_utf8_lossy(value.as_ref());
        for secret in &forbidden {
            assert!(!key.contains(secret.as_str()), "key {key} shows {secret}");
            assert!(
                !value.contains(secret.as_str()),
                "value of {key} shows {secret}"
            );
        }
    }
}

/// `cache` parsed as the `cache_config` of a checker config (parsing only: installs nothing).
pub fn parse_cache_config(cache: Value) -> Result<CacheConfig, tokenchecker::Error> {
    let mut c = json!({
        "client_id": "c", "client_secret": "s", "expected_scopes": ["x"],
        "auth_url": "http://127.0.0.1:9", "groups_url": "http://127.0.0.1:9",
        "verify_credentials": false,
    });
    c["cache_config"] = cache;
    Config::from_value(&c).map(|c| c.cache.unwrap())
}
