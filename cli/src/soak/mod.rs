//! `tokenchecker soak`: a long mixed load through the C ABI against the bundled fake Globus, with
//! injected Globus Auth faults and (with `--backend redis` or `memcached`) a cache server that is
//! killed and restarted under the load. Every answer is compared with what it must be for that
//! token.
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
//! The run fails (exit 1) on any wrong answer, any lost request (a call that got no answer, a
//! panic or a document that is not JSON, an avoidable failure), or RSS growth beyond the bound
//! after the warm-up. Exit 2: bad arguments or the set-up failed.
//!
//! **`--fleet`** (a shared backend; the cache server is then not killed): the checker has
//! `stale_if_error_s`, the chaos adds brownouts (introspection answering 503 for seconds) and
//! 429s, and a stale answer to a call that overlapped no server failure is wrong (a 429 must not
//! turn stale answers on). Victim tokens are revoked at the fake and purged by another OS process
//! on the same cache (see `fleet` and `purger`), and judged at the end against the revocations
//! and the purger's reports. `HTTP_PROXY`, `HTTPS_PROXY` and `ALL_PROXY` point at a trap that
//! counts connections (`proxy`): the fake is on loopback, so any is a leak. The run fails on any
//! wrong victim answer, any connection to the trap, any purger failure.
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
mod fleet;
mod histogram;
mod judge;
mod options;
mod proxy;
mod purger;
mod report;
mod rng;
mod rss;
mod server;
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

use chaos::{chaos, server_killer};
use ffi::Checker;
use fleet::{final_pass, judge_victims, revoker, Fleet};
use judge::{clip, judge, Expect, Verdict};
use options::Backend;
pub use options::Options;
use proxy::ProxyTrap;
pub use purger::run_child as run_purger;
use purger::Purger;
use report::{FleetFigures, Outcome, RssFigures};
use rss::{mib, rss};
use server::{CacheServer, Kind};
use tally::{Run, Tally};
use tokens::{identity_of, pool_token, refused_kinds, valid_spec, GROUPS, POOL, SCOPE};
use workers::{worker, Op};

/// The cache's `timeout`: how long an entry lives.
const CACHE_TIMEOUT_S: u64 = 10;
/// How long the workers may take to come back once the load stops: a call's longest wait
/// (connect + request, twice, and the pause between) with a margin. A call still running past
/// that never got an answer: a lost request.
const UNANSWERED_AFTER: Duration = Duration::from_secs(20);

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
    if o.fleet && o.backend == Backend::Memory {
        return Err("--fleet needs a shared backend: --backend redis or memcached".into());
    }
    if !o.fleet && o.ops.contains(&Op::Victim) {
        return Err("check_victim needs --fleet".into());
    }
    // First, before any other thread starts (the environment is not thread-safe to change):
    // every proxy variable points at the trap.
    let proxy = if o.fleet {
        let p = ProxyTrap::start()?;
        p.export();
        Some(p)
    } else {
        None
    };
    let rss_at_start = rss();
    let fake = Arc::new(FakeGlobus::start());
    let server = match o.backend {
        Backend::Redis => Some(CacheServer::start(Kind::Redis, &o.redis_server)?),
        Backend::Memcached => Some(CacheServer::start(Kind::Memcached, &o.memcached_server)?),
        Backend::Memory => None,
    }
    .map(|s| Arc::new(Mutex::new(s)));
    let cache_config = match &server {
        Some(s) => s.lock().unwrap().cache_config(CACHE_TIMEOUT_S),
        None => json!({"backend": "memory", "timeout": CACHE_TIMEOUT_S, "max_entries": 20000}),
    };
    let mut config = json!({
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
    if o.fleet {
        config["stale_if_error_s"] = o.stale_if_error_s.into();
    }

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
    // The other process of the fleet: same configuration, same cache.
    let purger = if o.fleet {
        Some(Purger::start(&config)?)
    } else {
        None
    };

    println!(
        "tokenchecker {} soak: {:?}, backend {:?}{}, {} threads, seed {}",
        tokenchecker::VERSION,
        o.duration,
        o.backend,
        server
            .as_ref()
            .map(|r| format!(" ({})", r.lock().unwrap().url()))
            .unwrap_or_default(),
        o.threads,
        o.seed
    );
    if let (Some(p), Some(purger)) = (&proxy, &purger) {
        println!(
            "fleet: stale_if_error_s {}, purger pid {}, HTTP(S)_PROXY and ALL_PROXY = {} (a trap)",
            o.stale_if_error_s,
            purger.pid,
            p.url()
        );
    }

    let run = Arc::new(Run::default());
    let fleet = o.fleet.then(|| Arc::new(Fleet::default()));
    let started = Instant::now();
    let workers: Vec<_> = (0..o.threads)
        .map(|n| {
            let (c, f, r) = (checker.clone(), fake.clone(), run.clone());
            let (seed, ops, fl) = (o.seed, o.ops.clone(), fleet.clone());
            thread::Builder::new()
                .name(format!("soak-{n}"))
                .spawn(move || worker(n, seed, ops, c, f, r, fl))
                .expect("spawn a worker")
        })
        .collect();
    let chaos_thread = {
        let (f, r, seed, fl) = (fake.clone(), run.clone(), o.seed, o.fleet);
        thread::spawn(move || chaos(f, r, seed, fl))
    };
    // Not with --fleet: a purge cannot reach a process that cannot reach the backend (the
    // library says so, and keeps that process's entries in its fallback layer meanwhile).
    let killer = server.as_ref().filter(|_| !o.fleet).map(|server| {
        let (rd, r, seed) = (server.clone(), run.clone(), o.seed);
        // Every 10 to 30 s in a long run; a short one (CI) still sees a few restarts.
        let every = (o.duration / 8).clamp(Duration::from_secs(3), Duration::from_secs(10));
        thread::spawn(move || server_killer(rd, r, seed, every))
    });
    let revoker_thread = match (&fleet, purger) {
        (Some(fl), Some(purger)) => {
            let (fl, f, r, seed) = (fl.clone(), fake.clone(), run.clone(), o.seed);
            // Checked from creation until well past the cache's lifetime after the revocation
            // (1 to 4 s after creation).
            let live_for = Duration::from_secs(CACHE_TIMEOUT_S + 10);
            Some(thread::spawn(move || {
                revoker(fl, f, purger, r, seed, live_for)
            }))
        }
        _ => None,
    };

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
                "soak: {:>5.0}s {:>10} calls ({:>6.0}/s) wrong {} avoidable {} excused {} faults {} spikes {} server restarts {} RSS {:.1} MiB",
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
    // Every worker finishes its call and comes back; one that does not within
    // UNANSWERED_AFTER is stuck in a call that never got an answer.
    let stopped = Instant::now();
    while stopped.elapsed() < UNANSWERED_AFTER && workers.iter().any(|w| !w.is_finished()) {
        thread::sleep(Duration::from_millis(20));
    }
    let mut total = Tally::new();
    let mut unanswered = 0;
    for w in workers {
        if !w.is_finished() {
            unanswered += 1;
            run.example("a call got no answer within 20 s after the load stopped".into());
            continue; // left running: the process ends with the report
        }
        match w.join() {
            Ok(t) => total.merge(t),
            Err(_) => return Err("a worker panicked".into()),
        }
    }
    let _ = chaos_thread.join();
    if let Some(k) = killer {
        let _ = k.join();
    }
    if let Some(r) = revoker_thread {
        // Ends the purger too (the end of its input).
        let _ = r.join();
    }
    let load_time = started.elapsed();
    let rss_end = rss();
    rss_max = rss_max.max(rss_end);
    let rss_base = rss_after_warm_up.unwrap_or(rss_at_start);

    // Final pass, faults cleared and the cache server up: every pool token must check
    // correctly now.
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
    let fleet_figures = fleet.map(|fl| {
        let timeout = Duration::from_secs(CACHE_TIMEOUT_S);
        let mut verdict = judge_victims(&fl, &mut total.victim_calls, timeout);
        final_pass(&fl, &checker, timeout, &mut verdict);
        FleetFigures {
            verdict,
            proxy_connections: proxy.as_ref().map_or(0, ProxyTrap::connections),
        }
    });

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
        unanswered,
        fleet: fleet_figures,
    }
    .report()?;
    drop(checker);
    drop(server);
    drop(proxy);
    Ok(passed)
}
