//! A cached check through each cache backend, against a bare GET of the same key with the same
//! client (the floor a shared backend cannot go under).
//!
//! Needs `redis-server` and `memcached` on the PATH (started here on free loopback ports).
//! Run: `cargo bench --bench backends` (add `-- --quick` for a fast pass).

mod support;

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use fake_globus::{fixtures, FakeGlobus};
use serde_json::{json, Value};
use tokenchecker::internals::cache::{sealing, CacheKey, Entry, KeyHasher, Kind};
use tokenchecker::internals::process;
use tokenchecker::Source;
use tokenchecker::{Checker, Config};

fn checker(fake: &FakeGlobus, cache: Value) -> Checker {
    Checker::new(Config::from_value(&support::config(fake, &cache)).unwrap()).unwrap()
}

fn bench(c: &mut Criterion) {
    let fake = FakeGlobus::start();
    let (redis_server, memcached_server) = (support::redis(), support::memcached());
    let redis = redis_server.cache.clone();
    let memcached = memcached_server.cache.clone();
    let near = json!({"near_cache_ttl": 60});
    let with = |base: &Value, extra: &Value| support::with(base, extra.clone());
    let cases = [
        ("memory", json!({"backend": "memory"}), Source::Memory),
        ("redis", redis.clone(), Source::Redis),
        ("redis+near", with(&redis, &near), Source::Near),
        ("memcached", memcached.clone(), Source::Memcached),
        ("memcached+near", with(&memcached, &near), Source::Near),
    ];
    let token = fixtures::TOK_VALID;
    let key = CacheKey::new(
        Kind::Introspection,
        KeyHasher::new(fixtures::CLIENT_ID, fixtures::CLIENT_SECRET, &fake.url()).token_id(token),
    );

    let mut group = c.benchmark_group("cached_check");
    group
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1));
    for (name, cache, source) in &cases {
        let checker = checker(&fake, cache.clone());
        checker.check(token).unwrap();
        assert_eq!(checker.check(token).unwrap().source, *source, "{name}");
        group.bench_function(*name, |b| b.iter(|| checker.check(token).unwrap()));
        if matches!(source, Source::Redis | Source::Memcached) {
            let store = process::cache();
            let get = || process::block_on(store.backend_raw_get_len(&key)).unwrap();
            assert!(get().is_some(), "{name}: the entry is in the backend");
            group.bench_function(format!("{name} bare GET"), |b| b.iter(|| get().unwrap()));
        }
    }
    group.finish();

    // The CPU part of a backend hit: opening (decrypting, parsing) one sealed introspection.
    let checker = checker(&fake, json!({"backend": "memory"}));
    checker.check(token).unwrap();
    let cached = process::cache().get_local(&key).unwrap().0;
    let entry = Entry::new(
        cached.value.clone(),
        Duration::from_secs(3600),
        cached.identities,
    );
    let text = key.to_text("tc:");
    let sealed = sealing::seal(&key, &text, &entry, Duration::from_secs(30));
    c.bench_function("seal introspection", |b| {
        b.iter(|| sealing::seal(&key, &text, &entry, Duration::from_secs(30)))
    });
    c.bench_function("open introspection", |b| {
        b.iter(|| sealing::open(&key, &text, &sealed).unwrap().unwrap())
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
