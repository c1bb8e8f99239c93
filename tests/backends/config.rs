//! The backends' configuration keys: what parses and what is refused, with the key named.

use crate::common::cache::parse_cache_config;
use serde_json::json;

/// The backends' configuration keys (parsing only: installs nothing).
pub fn config_keys() {
    let ok = [
        json!({"backend": "dogpile.cache.redis", "url": "redis://h:1/2", "socket_timeout": 0.5,
               "distributed_lock": false, "lock_timeout": 3, "redis_expiration_time": 60,
               "prefix": "app:", "near_cache_ttl": 1, "near_cache_max_entries": 10,
               "lock_sleep": 0.01, "breaker_failures": 5, "breaker_cooldown": 1,
               "thread_local_lock": false}),
        json!({"backend": "redis", "host": "h", "port": 1, "db": 3, "password": "p w"}),
        json!({"backend": "redis", "url": "rediss://h:1/0", "ssl_ca_certs": "/ca.pem",
               "ssl_certfile": "/c.pem", "ssl_keyfile": "/k.pem"}),
        json!({"backend": "dogpile.cache.memcached", "url": ["a:1", "b:2"], "distributed_lock": true,
               "memcached_expire_time": 30, "prefix": "p:", "timeout": 10, "dead_retry": 5,
               "lock_timeout": 2, "socket_timeout": 0.1, "near_cache_ttl": 0.5}),
        json!({"backend": "memcached", "url": "a:1"}),
    ];
    for c in ok {
        parse_cache_config(c.clone()).unwrap_or_else(|e| panic!("{c}: {}", e.message));
    }
    let bad = [
        (
            json!({"backend": "redis", "lock_timout": 3}),
            "'cache_config.lock_timout'",
        ),
        (json!({"backend": "redis", "url": "http://h"}), "redis://"),
        (
            json!({"backend": "redis", "url": "redis://h", "host": "h"}),
            "not both",
        ),
        (
            json!({"backend": "redis", "socket_timeout": 0}),
            "socket_timeout",
        ),
        (
            json!({"backend": "redis", "url": "redis://h", "ssl_ca_certs": "/x"}),
            "rediss://",
        ),
        (
            json!({"backend": "redis", "url": "rediss://h", "ssl_certfile": "/x"}),
            "go together",
        ),
        (json!({"backend": "memcached", "url": []}), "at least one"),
        (json!({"backend": "memcached", "url": "a b:1"}), "host:port"),
        (json!({"backend": "memcached", "prefix": "a b"}), "prefix"),
        (
            json!({"backend": "memcached", "dead_retry": 1, "breaker_cooldown": 1}),
            "dead_retry",
        ),
        (
            json!({"backend": "memcached", "redis_expiration_time": 1}),
            "redis_expiration_time",
        ),
        (
            json!({"backend": "redis", "near_cache_max_entries": 0}),
            "near_cache_max_entries",
        ),
    ];
    for (c, needle) in bad {
        let e = parse_cache_config(c.clone()).expect_err(&c.to_string());
        assert!(e.message.contains(needle), "{c}: {}", e.message);
    }
    // Unreadable TLS files are named when the store is built (the checker is created).
    let c = parse_cache_config(
        json!({"backend": "redis", "url": "rediss://h:1", "ssl_ca_certs": "/nonexistent/ca.pem"}),
    )
    .unwrap();
    let e = tokenchecker::internals::cache::CacheStore::new(&c)
        .err()
        .expect("unreadable CA file");
    assert!(e.message.contains("ssl_ca_certs"), "{}", e.message);
    // A store for a backend that isn't there builds at once.
    let c =
        parse_cache_config(json!({"backend": "redis", "url": "redis://127.0.0.1:9/0"})).unwrap();
    tokenchecker::internals::cache::CacheStore::new(&c).unwrap();
    let c = parse_cache_config(json!({"backend": "memcached", "url": "127.0.0.1:9"})).unwrap();
    tokenchecker::internals::cache::CacheStore::new(&c).unwrap();
}
