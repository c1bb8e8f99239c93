//! Refresh ahead (`refresh_ahead_s`): a hit on an answer about to expire starts one background
//! refresh, so a steady user never waits for an expiry, and a token found inactive by the
//! refresh is refused at once. This binary installs a cache whose entries live 3 s, once.

mod common;

use std::time::{Duration, Instant};

use common::servers::wait_until;
use common::*;
use fake_globus::FakeGlobus;
use serde_json::{json, Value};
use tokenchecker::{tc_status, Checker, Source};

const LIFETIME: Duration = Duration::from_secs(3);

fn refreshing_checker(fake: &FakeGlobus, extra: Value) -> Checker {
    checker_with_short_cache(fake, 3, extra)
}

/// A steady user checks every 50 ms for three cache lifetimes, with every introspection taking
/// 300 ms: with refresh ahead, only the first check waits for Globus; without, one check per
/// expiry does. The p99 of each is printed (the speed figure; the test asserts behaviour).
#[test]
fn steady_users_never_wait_and_revocations_apply_at_once() {
    let fake = FakeGlobus::start();
    let on = refreshing_checker(&fake, json!({"refresh_ahead_s": 1}));
    let off = refreshing_checker(&fake, json!({}));
    fake.set_fault(json!({"endpoint": "introspect", "latency_ms": 300}));
    let mut figures = Vec::new();
    for (name, c) in [("refresh ahead", &on), ("no refresh", &off)] {
        let t = unique_token(
            &fake,
            &format!("steady-{}", name.replace(' ', "-")),
            json!({}),
        );
        let started = Instant::now();
        let (mut waits, mut took) = (0, Vec::new());
        while started.elapsed() < LIFETIME * 3 {
            let t0 = Instant::now();
            let s = c.check(&t).unwrap();
            took.push(t0.elapsed());
            if s.source == Source::Network {
                waits += 1;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        took.sort();
        let p99 = took[took.len() * 99 / 100];
        eprintln!(
            "{name}: {waits} checks waited for Globus of {}; p99 {p99:?}",
            took.len()
        );
        figures.push((waits, p99));
    }
    assert_eq!(
        figures[0].0, 1,
        "with refresh ahead only the first check waits"
    );
    assert!(
        figures[1].0 >= 3,
        "without, one per expiry: {}",
        figures[1].0
    );

    // Many hits in the last second of an answer's life: one refresh, not one per hit.
    let t = unique_token(&fake, "single-refresh", json!({}));
    on.check(&t).unwrap();
    let before = fake.counters().introspect;
    std::thread::sleep(LIFETIME - Duration::from_millis(700));
    for _ in 0..50 {
        assert_ne!(on.check(&t).unwrap().source, Source::Network);
    }
    wait_until("the refresh", Duration::from_secs(5), || {
        fake.counters().introspect > before
    });
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(fake.counters().introspect, before + 1, "one refresh");

    // A refresh that finds the token inactive applies at once, before the old answer expires.
    fake.clear_faults();
    let t = unique_token(&fake, "revoked-refresh", json!({}));
    let fetched = Instant::now();
    on.check(&t).unwrap();
    fake.add_tokens(json!({ t.clone(): {"active": false} }));
    std::thread::sleep(LIFETIME - Duration::from_millis(800));
    on.check(&t).unwrap(); // a hit, which starts the refresh
    wait_until(
        "the refresh saw the revocation",
        Duration::from_secs(2),
        || {
            on.check(&t)
                .is_err_and(|e| e.status == tc_status::TC_INACTIVE_TOKEN)
        },
    );
    assert!(
        fetched.elapsed() < LIFETIME,
        "refused before the old answer expired"
    );
}
