//! The configuration parser's unit tests.

use super::*;
use crate::status::tc_status;

fn parse(v: Value) -> Result<Config, Error> {
    Config::from_value(&v)
}

fn base() -> Value {
    serde_json::json!({"client_id": "c", "client_secret": "s", "expected_scopes": ["a"]})
}

#[test]
fn defaults() {
    let c = parse(base()).unwrap();
    assert_eq!(c.expected_audience, "c");
    assert_eq!(c.auth_url, DEFAULT_AUTH_URL);
    assert_eq!(c.scope_match, ScopeMatch::Any);
    assert_eq!(c.fetch_groups, FetchGroups::Lazy);
    assert_eq!(c.leeway_s, 3);
    assert!(c.verify_credentials);
    assert!(c.cache.is_none());
}

#[test]
fn unknown_keys_are_named() {
    let mut v = base();
    v["expected_scope"] = "x".into();
    let e = parse(v).unwrap_err();
    assert_eq!(e.status, tc_status::TC_INVALID_CONFIG);
    assert!(e.message.contains("'expected_scope'"), "{}", e.message);

    let mut v = base();
    v["cache_config"] = serde_json::json!({"backend": "memory", "max_entires": 3});
    let e = parse(v).unwrap_err();
    assert!(
        e.message.contains("'cache_config.max_entires'"),
        "{}",
        e.message
    );
}

#[test]
fn wrong_types_are_named() {
    let mut v = base();
    v["cache_config"] = serde_json::json!({"timeout": "60"});
    let e = parse(v).unwrap_err();
    assert!(e.message.contains("cache_config.timeout"), "{}", e.message);
    let mut v = base();
    v["leeway_s"] = (-1).into();
    assert!(parse(v).unwrap_err().message.contains("leeway_s"));
    let mut v = base();
    v["expected_scopes"] = serde_json::json!([]);
    assert!(parse(v).unwrap_err().message.contains("expected_scopes"));
    let mut v = base();
    v["scope_match"] = "some".into();
    assert!(parse(v).unwrap_err().message.contains("scope_match"));
}

#[test]
fn hostile_input_gives_short_messages() {
    let mut v = base();
    v["x".repeat(1 << 20)] = 1.into();
    assert!(parse(v).unwrap_err().message.len() < 200);
    let mut v = base();
    v["scope_match"] = "y".repeat(1 << 20).into();
    assert!(parse(v).unwrap_err().message.len() < 300);
}

#[test]
fn backends() {
    let mut v = base();
    v["cache_config"] = serde_json::json!({"backend": "dogpile.cache.redis", "host": "h", "port": 7, "db": 2, "timeout": 60});
    let c = parse(v).unwrap().cache.unwrap();
    assert_eq!(c.timeout, Duration::from_secs(60));
    match c.backend {
        BackendConfig::Redis(r) => assert_eq!(r.url, "redis://h:7/2"),
        other => panic!("{other:?}"),
    }
    let mut v = base();
    v["cache_config"] =
        serde_json::json!({"backend": "dogpile.cache.memcached", "url": ["a:1", "b:2"]});
    match parse(v).unwrap().cache.unwrap().backend {
        BackendConfig::Memcached(m) => assert_eq!(m.servers, vec!["a:1", "b:2"]),
        other => panic!("{other:?}"),
    }
}
