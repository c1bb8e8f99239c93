//! The trouble makers: injected Globus Auth faults, brownouts and latency spikes, and cache
//! server kills.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use fake_globus::FakeGlobus;
use serde_json::json;

use super::judge::FaultLog;
use super::rng::Rng;
use super::server::CacheServer;
use super::tally::Run;

/// Sleeps up to `d`, in small steps, returning early when `stop` is set.
pub(super) fn nap(d: Duration, stop: &AtomicBool) {
    let end = Instant::now() + d;
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        if now >= end {
            return;
        }
        thread::sleep((end - now).min(Duration::from_millis(50)));
    }
}

/// Injects auth faults for a few hundred milliseconds at a time, and latency spikes. With
/// `fleet`, also brownouts (the introspection endpoint answering 503 for 1.5 to 3.5 s, long enough
/// for cached answers to expire in them and stale ones to be served) and rate limiting (429:
/// never a reason to serve a stale answer).
pub(super) fn chaos(fake: Arc<FakeGlobus>, run: Arc<Run>, seed: u64, fleet: bool) {
    let mut rng = Rng::new(seed ^ 0xC4A0_5C4A_05C4_A05C);
    // (fault, whether the server itself fails: the only faults that may serve stale answers)
    let mut faults = vec![
        (
            json!({"endpoint": "all", "status": 503, "body": "{\"error\":\"unavailable\"}"}),
            true,
        ),
        (
            json!({"endpoint": "introspect", "status": 503, "retry_after": 1}),
            true,
        ),
        (
            json!({"endpoint": "introspect", "status": 500, "body": "oops"}),
            true,
        ),
        (json!({"endpoint": "all", "mode": "close"}), true),
        (json!({"endpoint": "introspect", "mode": "garbage"}), false),
        (
            json!({"endpoint": "introspect", "mode": "active_string"}),
            false,
        ),
        (
            json!({"endpoint": "introspect", "mode": "missing_exp"}),
            false,
        ),
        (json!({"endpoint": "all", "mode": "wrong_types"}), false),
        (json!({"endpoint": "groups", "status": 503}), false),
        (
            json!({"endpoint": "dependent_token", "mode": "reset"}),
            false,
        ),
    ];
    let brownout = json!({"endpoint": "introspect", "status": 503,
                          "body": "{\"error\":\"brownout\"}"});
    let rate_limit = json!({"endpoint": "introspect", "status": 429, "retry_after": 0,
                            "body": "{\"error\":\"slow down\"}"});
    if fleet {
        faults.push((rate_limit.clone(), false));
    }
    // With --fleet, denser: a short run must still see several brownouts.
    let pause = if fleet { (300, 1500) } else { (1500, 5000) };
    let mut round = 0u64;
    nap(Duration::from_secs(2), &run.stop);
    while !run.stop.load(Ordering::Relaxed) {
        round += 1;
        nap(rng.range_ms(pause.0, pause.1), &run.stop);
        if run.stop.load(Ordering::Relaxed) {
            break;
        }
        // With --fleet, every other round is a brownout.
        let brownout_now = fleet && round % 2 == 1;
        if !brownout_now && rng.below(4) == 0 {
            // A latency spike: slower answers, but every one of them still an answer.
            let ms = 100 + rng.below(300);
            fake.set_fault(json!({"endpoint": "all", "latency_ms": ms}));
            run.latency_spikes.fetch_add(1, Ordering::Relaxed);
            nap(rng.range_ms(500, 2000), &run.stop);
            fake.clear_faults();
        } else {
            let (fault, upstream, length) = if brownout_now {
                run.brownouts.fetch_add(1, Ordering::Relaxed);
                (brownout.clone(), true, rng.range_ms(1500, 3500))
            } else {
                let (f, upstream) = faults[rng.below(faults.len() as u64) as usize].clone();
                if f == rate_limit {
                    run.rate_limits.fetch_add(1, Ordering::Relaxed);
                }
                (f, upstream, rng.range_ms(200, 600))
            };
            let open = |log: &std::sync::Mutex<FaultLog>| {
                let mut log = log.lock().unwrap();
                log.windows.push((Instant::now(), None));
                // Calls never last a minute: forget windows older than that.
                let horizon = Instant::now() - Duration::from_secs(60);
                log.windows.retain(|(_, e)| e.is_none_or(|e| e > horizon));
                log.windows.len() - 1
            };
            let index = open(&run.faults);
            let upstream_index = upstream.then(|| open(&run.upstream_faults));
            fake.set_fault(fault);
            run.fault_windows.fetch_add(1, Ordering::Relaxed);
            nap(length, &run.stop);
            fake.clear_faults();
            let ended = Instant::now();
            run.faults.lock().unwrap().windows[index].1 = Some(ended);
            if let Some(i) = upstream_index {
                run.upstream_faults.lock().unwrap().windows[i].1 = Some(ended);
            }
        }
    }
    fake.clear_faults();
}

/// Kills the cache server (SIGKILL) every `every` to 3 × `every` and starts it again after 0.3 to 3 s.
pub(super) fn server_killer(
    redis: Arc<Mutex<CacheServer>>,
    run: Arc<Run>,
    seed: u64,
    every: Duration,
) {
    let mut rng = Rng::new(seed ^ 0x5ED1_5ED1_5ED1_5ED1);
    let lo = every.as_millis() as u64;
    while !run.stop.load(Ordering::Relaxed) {
        nap(rng.range_ms(lo, 3 * lo), &run.stop);
        if run.stop.load(Ordering::Relaxed) {
            break;
        }
        let down_for = rng.range_ms(300, 3000);
        let t = Instant::now();
        let index = {
            let mut log = run.redis_outages.lock().unwrap();
            log.windows.push((t, None));
            log.windows.len() - 1
        };
        redis.lock().unwrap().kill();
        nap(down_for, &run.stop);
        let mut r = redis.lock().unwrap();
        if let Err(e) = r.spawn() {
            run.example(format!("{} would not restart: {e}", r.name()));
            // Try again on the next round.
        }
        run.redis_outages.lock().unwrap().windows[index].1 = Some(Instant::now());
        run.redis_down_ms
            .fetch_add(t.elapsed().as_millis() as u64, Ordering::Relaxed);
        run.redis_restarts.fetch_add(1, Ordering::Relaxed);
    }
    // Leave it running for the final pass.
    let mut r = redis.lock().unwrap();
    if !r.alive() {
        let _ = r.spawn();
    }
}
