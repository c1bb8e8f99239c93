//! `tokenchecker soak`: a long mixed load through the C ABI against the bundled fake Globus, with
//! injected Globus Auth faults and (with `--backend redis`) a Redis server that is killed and
//! restarted under the load. Every answer is compared with what it must be for that token.
//!
//! Verdicts, per call:
//! * **correct**: the expected status (and on success the right identity, or the right matched
//!   principal);
//! * **excused**: `TC_AUTH_UNAVAILABLE` from a call that overlapped an injected auth fault (a 503,
//!   a closed connection, a garbage or malformed answer): Globus Auth really could not answer;
//!   or that started less than 2 s after one ended (concurrent misses share one fetch, and a
//!   call may join a fetch that met the fault);
//! * **avoidable failure**: `TC_AUTH_UNAVAILABLE` from a call that overlapped no auth fault (Redis
//!   restarts, latency spikes and load must never cost an answer Globus Auth could give);
//! * **wrong**: anything else, in particular a success where a refusal was due (a wrong
//!   positive), a success naming another identity, or a refusal with the wrong status.
//!
//! The run fails (exit 1) on any wrong answer, any avoidable failure, or RSS growth beyond the
//! bound after the warm-up. Exit 2: bad arguments or the set-up failed.
//!
//! The load, per thread, in proportions: checks of 64 cached valid tokens (47%), of fresh valid
//! tokens (8%) and of unknown ones (6%), of tokens refused for one reason each (inactive,
//! expired, not yet valid, wrong scope, wrong audience, no identity set: 8%), `tc_try_check`
//! (4%), authorizations by identity (11%, half of them for somebody else) and by group (12%:
//! the caller's group, a group where its membership is only pending, other groups), purges of
//! pool tokens (0.5%) and of identities (1%), and check → purge → check of fresh tokens that
//! Globus Auth forgets after the purge (2.5%: the second check must not come from any cache).
//! Every pool token is a pending member of one group and an active member of another.
//!
//! Only the library's answers are judged; the fake runs in-process, so its own memory (it keeps
//! every dependent token it ever issued) counts in the RSS figures: the pool-token purges are
//! rare for that reason.

mod chaos;
mod ffi;
mod histogram;
mod judge;
mod options;
mod redis;
mod report;
mod rng;
mod rss;
mod tally;
mod tokens;
mod workers;

use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use fake_globus::{fixtures, FakeGlobus};
use serde_json::{json, Value};

use chaos::{chaos, redis_killer};
use ffi::Checker;
use judge::{clip, judge, Expect, Verdict};
use options::Backend;
pub use options::Options;
use redis::Redis;
use report::{Outcome, RssFigures};
use rss::{mib, rss};
use tally::{Run, Tally};
use tokens::{identity_of, pool_token, refused_kinds, valid_spec, GROUPS, POOL, SCOPE};
use workers::worker;

/// Runs the soak: exit 0 when it passed, 1 when it failed, 2 when the set-up failed.
pub fn run(o: &Options) -> ExitCode {
    match soak(o) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("tokenchecker soak: {e}");
            ExitCode::from(2)
        }
    }
}

fn soak(o: &Options) -> Result<bool, String> {
    let rss_at_start = rss();
    let fake = Arc::new(FakeGlobus::start());
    let redis = match o.backend {
        Backend::Redis => Some(Arc::new(Mutex::new(Redis::start(&o.redis_server)?))),
        Backend::Memory => None,
    };
    let cache_config = match &redis {
        Some(r) => json!({"backend": "redis", "url": r.lock().unwrap().url(), "timeout": 10}),
        None => json!({"backend": "memory", "timeout": 10, "max_entries": 20000}),
    };
    let config = json!({
        "client_id": fixtures::CLIENT_ID,
        "client_secret": fixtures::CLIENT_SECRET,
        "expected_scopes": [SCOPE],
        "auth_url": fake.url(),
        "groups_url": fake.url(),
        "connect_timeout_ms": 2000,
        "request_timeout_ms": 5000,
        "max_retries": 1,
        "cache_config": cache_config,
    });

    let mut tokens = serde_json::Map::new();
    for i in 0..POOL {
        tokens.insert(
            pool_token(i),
            valid_spec(&identity_of(i), GROUPS[i % GROUPS.len()]),
        );
    }
    for (name, spec, _) in refused_kinds() {
        tokens.insert(format!("soak-refused-{name}"), spec);
    }
    fake.add_tokens(Value::Object(tokens));
    let checker = Arc::new(Checker::new(&config)?);

    println!(
        "tokenchecker {} soak: {:?}, backend {:?}{}, {} threads, seed {}",
        tokenchecker::VERSION,
        o.duration,
        o.backend,
        redis
            .as_ref()
            .map(|r| format!(" ({})", r.lock().unwrap().url()))
            .unwrap_or_default(),
        o.threads,
        o.seed
    );

    let run = Arc::new(Run::default());
    let started = Instant::now();
    let workers: Vec<_> = (0..o.threads)
        .map(|n| {
            let (c, f, r) = (checker.clone(), fake.clone(), run.clone());
            let (seed, ops) = (o.seed, o.ops.clone());
            thread::Builder::new()
                .name(format!("soak-{n}"))
                .spawn(move || worker(n, seed, ops, c, f, r))
                .expect("spawn a worker")
        })
        .collect();
    let chaos_thread = {
        let (f, r, seed) = (fake.clone(), run.clone(), o.seed);
        thread::spawn(move || chaos(f, r, seed))
    };
    let killer = redis.as_ref().map(|redis| {
        let (rd, r, seed) = (redis.clone(), run.clone(), o.seed);
        // Every 10 to 30 s in a long run; a short one (CI) still sees a few restarts.
        let every = (o.duration / 8).clamp(Duration::from_secs(3), Duration::from_secs(10));
        thread::spawn(move || redis_killer(rd, r, seed, every))
    });

    // Monitor: RSS every 200 ms, progress every 10 s. The warm-up (until the caches hold what a
    // steady load keeps in them: entries live 10 s) is a fifth of the run, 10 to 60 s, at most
    // half the run.
    let warm_up = (o.duration / 5)
        .clamp(Duration::from_secs(10), Duration::from_secs(60))
        .min(o.duration / 2);
    let mut rss_after_warm_up = None;
    let mut rss_max = rss();
    let mut last_report = Instant::now();
    let mut last_calls = 0;
    while started.elapsed() < o.duration {
        thread::sleep(Duration::from_millis(200).min(o.duration.saturating_sub(started.elapsed())));
        let now_rss = rss();
        rss_max = rss_max.max(now_rss);
        if rss_after_warm_up.is_none() && started.elapsed() >= warm_up {
            rss_after_warm_up = Some(now_rss);
        }
        if last_report.elapsed() >= Duration::from_secs(10) {
            let calls = run.calls.load(Ordering::Relaxed);
            eprintln!(
                "soak: {:>5.0}s {:>10} calls ({:>6.0}/s) wrong {} avoidable {} excused {} faults {} spikes {} redis restarts {} RSS {:.1} MiB",
                started.elapsed().as_secs_f64(),
                calls,
                (calls - last_calls) as f64 / last_report.elapsed().as_secs_f64(),
                run.wrong.load(Ordering::Relaxed),
                run.avoidable.load(Ordering::Relaxed),
                run.excused.load(Ordering::Relaxed),
                run.fault_windows.load(Ordering::Relaxed),
                run.latency_spikes.load(Ordering::Relaxed),
                run.redis_restarts.load(Ordering::Relaxed),
                mib(now_rss)
            );
            last_calls = calls;
            last_report = Instant::now();
        }
    }
    run.stop.store(true, Ordering::Relaxed);
    let mut total = Tally::new();
    for w in workers {
        match w.join() {
            Ok(t) => total.merge(&t),
            Err(_) => return Err("a worker panicked".into()),
        }
    }
    let _ = chaos_thread.join();
    if let Some(k) = killer {
        let _ = k.join();
    }
    let load_time = started.elapsed();
    let rss_end = rss();
    rss_max = rss_max.max(rss_end);
    let rss_base = rss_after_warm_up.unwrap_or(rss_at_start);

    // Final pass, faults cleared and Redis up: every pool token must check correctly now.
    fake.clear_faults();
    let mut final_wrong = Vec::new();
    for i in 0..POOL {
        let (st, doc) = checker.check(&pool_token(i));
        if !matches!(
            judge(&Expect::ok(identity_of(i)), st, &doc),
            Verdict::Correct
        ) {
            final_wrong.push(format!("pool token #{i}: {} {}", st.name(), clip(&doc)));
        }
    }

    let passed = Outcome {
        options: o,
        run: &run,
        total,
        load_time,
        final_wrong,
        rss: RssFigures {
            start: rss_at_start,
            after_warm_up: rss_base,
            end: rss_end,
            max: rss_max,
        },
        fake: fake.counters(),
    }
    .report()?;
    drop(checker);
    drop(redis);
    Ok(passed)
}
