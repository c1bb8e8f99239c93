//! The trouble makers: injected Globus Auth faults and latency spikes, and Redis kills.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use fake_globus::FakeGlobus;
use serde_json::json;

use super::redis::Redis;
use super::rng::Rng;
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

/// Injects auth faults for a few hundred milliseconds at a time, and latency spikes.
pub(super) fn chaos(fake: Arc<FakeGlobus>, run: Arc<Run>, seed: u64) {
    let mut rng = Rng::new(seed ^ 0xC4A0_5C4A_05C4_A05C);
    let faults = [
        json!({"endpoint": "all", "status": 503, "body": "{\"error\":\"unavailable\"}"}),
        json!({"endpoint": "introspect", "status": 503, "retry_after": 1}),
        json!({"endpoint": "introspect", "status": 500, "body": "oops"}),
        json!({"endpoint": "all", "mode": "close"}),
        json!({"endpoint": "introspect", "mode": "garbage"}),
        json!({"endpoint": "introspect", "mode": "active_string"}),
        json!({"endpoint": "introspect", "mode": "missing_exp"}),
        json!({"endpoint": "all", "mode": "wrong_types"}),
        json!({"endpoint": "groups", "status": 503}),
        json!({"endpoint": "dependent_token", "mode": "reset"}),
    ];
    nap(Duration::from_secs(2), &run.stop);
    while !run.stop.load(Ordering::Relaxed) {
        nap(rng.range_ms(1500, 5000), &run.stop);
        if run.stop.load(Ordering::Relaxed) {
            break;
        }
        if rng.below(4) == 0 {
            // A latency spike: slower answers, but every one of them still an answer.
            let ms = 100 + rng.below(300);
            fake.set_fault(json!({"endpoint": "all", "latency_ms": ms}));
            run.latency_spikes.fetch_add(1, Ordering::Relaxed);
            nap(rng.range_ms(500, 2000), &run.stop);
            fake.clear_faults();
        } else {
            let fault = faults[rng.below(faults.len() as u64) as usize].clone();
            let index = {
                let mut log = run.faults.lock().unwrap();
                log.windows.push((Instant::now(), None));
                // Calls never last a minute: forget windows older than that.
                let horizon = Instant::now() - Duration::from_secs(60);
                log.windows.retain(|(_, e)| e.is_none_or(|e| e > horizon));
                log.windows.len() - 1
            };
            fake.set_fault(fault);
            run.fault_windows.fetch_add(1, Ordering::Relaxed);
            nap(rng.range_ms(200, 600), &run.stop);
            fake.clear_faults();
            run.faults.lock().unwrap().windows[index].1 = Some(Instant::now());
        }
    }
    fake.clear_faults();
}

/// Kills Redis (SIGKILL) every `every` to 3 × `every` and starts it again after 0.3 to 3 s.
pub(super) fn redis_killer(redis: Arc<Mutex<Redis>>, run: Arc<Run>, seed: u64, every: Duration) {
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
            run.example(format!("redis-server would not restart: {e}"));
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
