//! How long entries live: the TTLs set on the servers, and the near cache in front of them.

use std::time::Duration;

use crate::common::cache::{alice, checker, group_request, key_of, new_token, PREFIX};
use crate::server::Server;
use fake_globus::{fixtures, FakeGlobus};
use serde_json::json;
use tokenchecker::internals::cache::Kind;
use tokenchecker::Source;

/// The TTL set on the server never exceeds the entry's own, nor the configured caps.
pub fn ttls(fake: &FakeGlobus, redis: &Server, memcached: &Server) {
    // Redis: an entry's own TTL (the token expires in 20 s) and the timeout (30 s).
    let c = checker(fake, &redis.cache(json!({"timeout": 30})));
    let short = new_token(fake, "ttl-short", json!({"exp_in": 20}));
    let long = new_token(fake, "ttl-long", alice());
    c.check(&short).unwrap();
    c.authorize(&long, &group_request(fixtures::GROUP_ADMIN))
        .unwrap();
    let pttl = |token: &str, kind: Kind| -> i64 {
        redis::cmd("PTTL")
            .arg(key_of(fake, PREFIX, kind, token))
            .query(&mut redis.redis())
            .unwrap()
    };
    let p = pttl(&short, Kind::Introspection);
    assert!(p > 0 && p <= 20_000, "PTTL {p}");
    for kind in Kind::ALL {
        // Dependent tokens live two days, but no entry outlives `timeout`.
        let p = pttl(&long, kind);
        assert!(p > 20_000 && p <= 30_000, "{kind:?} PTTL {p}");
    }
    // redis_expiration_time caps it further.
    let c = checker(
        fake,
        &redis.cache(json!({"timeout": 30, "redis_expiration_time": 5})),
    );
    let capped = new_token(fake, "ttl-capped", alice());
    c.check(&capped).unwrap();
    let p = pttl(&capped, Kind::Introspection);
    assert!(p > 0 && p <= 5_000, "PTTL {p}");

    // Memcached: gone from the server once the entry's TTL has passed.
    let c = checker(fake, &memcached.cache(json!({"timeout": 2})));
    let tok = new_token(fake, "ttl-mc", alice());
    c.check(&tok).unwrap();
    let key = key_of(fake, PREFIX, Kind::Introspection, &tok);
    assert!(memcached.raw_get(&key).is_some());
    assert_eq!(c.check(&tok).unwrap().source, Source::Memcached);
    std::thread::sleep(Duration::from_millis(3200));
    assert!(memcached.raw_get(&key).is_none(), "expired on the server");
    assert_eq!(c.check(&tok).unwrap().source, Source::Network);
    // memcached_expire_time caps it.
    let c = checker(
        fake,
        &memcached.cache(json!({"timeout": 60, "memcached_expire_time": 1})),
    );
    let tok = new_token(fake, "ttl-mc2", alice());
    c.check(&tok).unwrap();
    std::thread::sleep(Duration::from_millis(2200));
    assert_eq!(c.check(&tok).unwrap().source, Source::Network);
}

/// The near cache answers a hot token without a round trip; purge clears both layers.
pub fn near_cache(fake: &FakeGlobus, server: &Server) {
    let cache = server.cache(json!({"near_cache_ttl": 1, "near_cache_max_entries": 100}));
    let c = checker(fake, &cache);
    let tok = new_token(fake, "near", alice());
    assert_eq!(c.check(&tok).unwrap().source, Source::Network);
    assert_eq!(c.check(&tok).unwrap().source, Source::Near);
    assert_eq!(
        c.try_check(&tok).unwrap().unwrap().unwrap().source,
        Source::Near
    );

    let d = checker(fake, &cache);
    assert_eq!(d.check(&tok).unwrap().source, server.backend.source());
    assert_eq!(d.check(&tok).unwrap().source, Source::Near);
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(
        d.check(&tok).unwrap().source,
        server.backend.source(),
        "the near entry expired after near_cache_ttl"
    );

    d.purge(&tok).unwrap();
    assert!(server
        .raw_get(&key_of(fake, PREFIX, Kind::Introspection, &tok))
        .is_none());
    assert_eq!(d.check(&tok).unwrap().source, Source::Network);
}
