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

#[test]
fn the_shared_backend_settings_are_declared_once() {
    let shared = de::keys_of::<cache::RawSharedSettings>();
    assert_eq!(
        shared,
        [
            "socket_timeout",
            "distributed_lock",
            "lock_timeout",
            "prefix",
            "near_cache_ttl",
            "near_cache_max_entries",
            "lock_sleep",
            "breaker_failures",
            "breaker_cooldown"
        ]
    );
    // Both backends take them; the memory backend does not.
    for key in shared {
        let value = if *key == "distributed_lock" {
            Value::Bool(false)
        } else if *key == "prefix" {
            "p:".into()
        } else {
            1.into()
        };
        for backend in ["redis", "memcached"] {
            let mut v = base();
            v["cache_config"] = serde_json::json!({"backend": backend, *key: value});
            parse(v).unwrap_or_else(|e| panic!("{backend} {key}: {e}"));
        }
        let mut v = base();
        v["cache_config"] = serde_json::json!({"backend": "memory", *key: value});
        let e = parse(v).unwrap_err();
        assert_eq!(
            e.message,
            format!("unknown config key 'cache_config.{key}'"),
            "{key}"
        );
    }
}

#[test]
fn errors_name_the_key_path_and_what_was_expected() {
    let cases = [
        (
            serde_json::json!({"cache_config": {"backend": "redis", "port": "6379"}}),
            "config key 'cache_config.port' must be a whole number from 1 to 65535",
        ),
        (
            serde_json::json!({"cache_config": {"backend": "redis_sentinel", "sentinels": ["s:1"],
                                                "sentinel_kwargs": {"username": 1}}}),
            "config key 'cache_config.sentinel_kwargs.username' must be a string or null",
        ),
        (
            serde_json::json!({"client_id": ""}),
            "config key 'client_id' must be a non-empty string",
        ),
        (
            serde_json::json!({"client_secret": null}),
            "config key 'client_secret' is required",
        ),
        (
            serde_json::json!({"expected_scopes": ["a", 1]}),
            "config key 'expected_scopes' must be a list of non-empty strings",
        ),
        (
            serde_json::json!({"fetch_groups": "always"}),
            "config key 'fetch_groups' has an unknown value \"always\"; expected \"lazy\", \"eager\" or \"never\"",
        ),
        (
            serde_json::json!({"cache_config": {"backend": "memcached", "dead_retry": 0}}),
            "config key 'cache_config.dead_retry' must be a number of seconds more than 0",
        ),
        (
            serde_json::json!({"cache_config": {"backend": "memcached", "url": 5}}),
            "config key 'cache_config.url' must be a server or a list of servers (strings)",
        ),
        (
            serde_json::json!({"cache_config": {"backend": "redis", "cluster": true,
                                                "startup_nodes": ["h:70000"]}}),
            "config key 'cache_config.startup_nodes': \"h:70000\" is not a host and a port from 1 to 65535",
        ),
        (
            serde_json::json!({"cache_config": {"backend": "redis_sentinel", "sentinels": ["s:1"],
                                                "port": null}}),
            "config key 'cache_config.port' does not apply to the redis_sentinel backend: the master is found through 'sentinels'",
        ),
        (
            serde_json::json!({"cache_config": []}),
            "config key 'cache_config' must be a JSON object",
        ),
        (
            serde_json::json!({"zz": 1, "cache_config": {"backend": "redis", "yy": 2}, "aa": 3}),
            "unknown config key 'cache_config.yy'",
        ),
        (
            serde_json::json!({"zz": 1, "b": 2, "aa": 3}),
            "unknown config key 'aa', 'b', 'zz'",
        ),
    ];
    for (extra, message) in cases {
        let mut v = base();
        for (k, x) in extra.as_object().unwrap() {
            v[k] = x.clone();
        }
        let e = parse(v).unwrap_err();
        assert_eq!(e.status, tc_status::TC_INVALID_CONFIG);
        assert_eq!(e.message, message);
    }
}

#[test]
fn dogpile_backend_names_are_aliases() {
    for (name, redis) in [
        ("dogpile.cache.memory", false),
        ("dogpile.cache.redis", true),
        ("dogpile.cache.redis_cluster", true),
        ("dogpile.cache.pylibmc", false),
        ("dogpile.cache.bmemcached", false),
    ] {
        let mut v = base();
        v["cache_config"] = serde_json::json!({ "backend": name });
        let backend = parse(v).unwrap().cache.unwrap().backend;
        assert_eq!(matches!(backend, BackendConfig::Redis(_)), redis, "{name}");
    }
}

#[test]
fn secrets_and_long_values_stay_out_of_messages() {
    let secret = "s3cr3t-value-that-must-not-show";
    for (key, value) in [
        ("client_secret", serde_json::json!([secret])),
        ("client_id", serde_json::json!({ "x": secret })),
        ("leeway_s", serde_json::json!(secret)),
        ("max_retries", serde_json::json!(secret)),
        ("verify_credentials", serde_json::json!(secret)),
        ("expected_scopes", serde_json::json!([secret, 5])),
    ] {
        let mut v = base();
        v[key] = value;
        let e = parse(v).unwrap_err();
        assert!(!e.message.contains(secret), "{key}: {}", e.message);
        assert!(e.message.contains(key), "{key}: {}", e.message);
    }
    for cache in [
        serde_json::json!({"backend": "redis", "password": 5, "db": secret}),
        serde_json::json!({"backend": "redis_sentinel", "sentinels": ["s:1"],
                           "sentinel_kwargs": {"password": [secret]}}),
        serde_json::json!({"backend": "redis", "cluster": true, "url": [secret, 1]}),
    ] {
        let mut v = base();
        v["cache_config"] = cache.clone();
        let e = parse(v).unwrap_err();
        assert!(!e.message.contains(secret), "{cache}: {}", e.message);
    }
    // What is shown of the caller's text is clipped.
    let long = "x".repeat(10_000);
    for (key, value) in [
        ("scope_match", serde_json::json!(long)),
        ("auth_url", serde_json::json!(long)),
        ("cache_config", serde_json::json!({ "backend": long })),
        ("cache_config", serde_json::json!({ long.as_str(): 1 })),
        (
            "cache_config",
            serde_json::json!({"backend": "redis_sentinel", "sentinels": [format!("{long}:1")]}),
        ),
    ] {
        let mut v = base();
        v[key] = value;
        let e = parse(v).unwrap_err();
        assert!(e.message.len() < 400, "{key}: {}", e.message);
    }
}

#[test]
fn debug_prints_hide_secrets() {
    let mut v = base();
    v["client_secret"] = "sekrit-client-value".into();
    v["cache_config"] = serde_json::json!({
        "backend": "redis", "url": "redis://user:sekrit-redis-pass@127.0.0.1:6379/0"});
    let c = parse(v).unwrap();
    let shown = format!("{c:?}");
    assert!(!shown.contains("sekrit"), "{shown}");
    assert!(shown.contains("redis://user:…@127.0.0.1:6379/0"), "{shown}");
    assert_eq!(
        redis::redact_url("rediss://:p%40ss@h:1/2?x=1"),
        "rediss://:…@h:1/2?x=1"
    );
    assert_eq!(redis::redact_url("redis://h:1"), "redis://h:1");
    assert_eq!(redis::redact_url("redis://user@h:1"), "redis://user@h:1");
}

#[test]
fn a_custom_auth_url_needs_its_own_groups_url() {
    let mut v = base();
    v["auth_url"] = "https://auth.example.org".into();
    let e = parse(v.clone()).unwrap_err();
    assert!(e.message.contains("'groups_url' is required"), "{e}");
    v["fetch_groups"] = "never".into();
    parse(v.clone()).unwrap();
    v["fetch_groups"] = "lazy".into();
    v["groups_url"] = "https://groups.example.org".into();
    parse(v).unwrap();
}
