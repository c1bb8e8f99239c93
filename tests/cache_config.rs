//! The process-wide cache: shared by every checker, replaced by a `cache_config` (last wins),
//! kept by a failed creation. One test, run in steps, since every step changes process state.

mod common;

use common::*;
use fake_globus::{fixtures, FakeGlobus};
use serde_json::json;
use tokenchecker::{tc_status, Checker};

fn from(v: serde_json::Value) -> Result<Checker, tokenchecker::Error> {
    Checker::from_json(&v.to_string())
}

#[test]
fn the_cache_is_shared_and_the_last_configuration_wins() {
    let fake = FakeGlobus::start();
    let first = from(config(
        &fake,
        json!({"cache_config": {"backend": "memory", "timeout": 60}}),
    ))
    .unwrap();
    first.check(fixtures::TOK_VALID).unwrap();
    assert_eq!(fake.counters().introspect, 1);

    // A second checker without cache_config shares the same cache.
    let second = checker(&fake, json!({}));
    assert_eq!(
        second.check(fixtures::TOK_VALID).unwrap().source.name(),
        "memory"
    );
    assert_eq!(fake.counters().introspect, 1);

    // A failed creation leaves the cache as it was: bad config, rejected credentials.
    assert_eq!(
        from(config(
            &fake,
            json!({"cache_config": {"backend": "memory", "max_entries": "x"}})
        ))
        .err()
        .unwrap()
        .status,
        tc_status::TC_INVALID_CONFIG
    );
    assert_eq!(
        from(config(
            &fake,
            json!({"client_secret": "wrong", "verify_credentials": true,
                   "cache_config": {"backend": "memory"}})
        ))
        .err()
        .unwrap()
        .status,
        tc_status::TC_CREDENTIALS_REJECTED
    );
    assert_eq!(
        first.check(fixtures::TOK_VALID).unwrap().source.name(),
        "memory"
    );
    assert_eq!(
        fake.counters().introspect,
        2,
        "one more for the credential probe"
    );

    // A new cache_config drops the cache, for every checker.
    let _third = from(config(
        &fake,
        json!({"cache_config": {"backend": "dogpile.cache.memory", "timeout": 30}}),
    ))
    .unwrap();
    assert_eq!(
        first.check(fixtures::TOK_VALID).unwrap().source.name(),
        "network"
    );
    assert_eq!(fake.counters().introspect, 3);
    let stats: serde_json::Value = serde_json::from_str(&tokenchecker::stats_json()).unwrap();
    assert_eq!(stats["cache_resets"], 2);
    assert_eq!(stats["cache"]["backend"], "memory");

    // The timeout bounds every entry.
    let _short = from(config(&fake, json!({"cache_config": {"timeout": 1}}))).unwrap();
    first.check(fixtures::TOK_BOB).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    assert_eq!(
        first.check(fixtures::TOK_BOB).unwrap().source.name(),
        "network"
    );

    // The outage policy: with stale_if_error_s, a recent answer outlives its cache entry while
    // the server is down; without it, the same situation fails closed.
    let stale = checker(&fake, json!({"stale_if_error_s": 60, "max_retries": 0}));
    let strict = checker(&fake, json!({"max_retries": 0}));
    let t = unique_token(&fake, "stale", json!({}));
    assert_eq!(stale.check(&t).unwrap().source.name(), "network");
    std::thread::sleep(std::time::Duration::from_millis(1500));
    fake.set_fault(json!({"endpoint": "introspect", "status": 503}));
    let served = stale.check(&t).unwrap();
    assert_eq!(served.source.name(), "stale");
    assert!(served.to_json(None).contains("\"source\":\"stale\""));
    assert_eq!(
        tokenchecker::internals::stats::stats().stale_served.get(),
        1
    );
    assert_eq!(status(strict.check(&t)), tc_status::TC_AUTH_UNAVAILABLE);
    stale.purge(&t).unwrap();
    assert_eq!(
        status(stale.check(&t)),
        tc_status::TC_AUTH_UNAVAILABLE,
        "purged everywhere"
    );
    fake.clear_faults();

    // The capacity bound holds.
    let _small = from(config(&fake, json!({"cache_config": {"max_entries": 50}}))).unwrap();
    for n in 0..300 {
        let t = unique_token(&fake, &format!("cap{n}"), json!({}));
        first.check(&t).unwrap();
    }
    let cache = tokenchecker::internals::process::cache().describe();
    let entries = cache["local_entries"].as_u64().unwrap();
    assert!(entries <= 50 + 16, "{entries} entries in a cache of 50");
}
