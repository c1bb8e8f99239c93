//! The fleet herd: N processes × M threads check one new token at the same instant, sharing a
//! Redis or a Memcached cache with `distributed_lock`, against a fake Globus that takes 50 ms per
//! request. Reports the requests each endpoint saw (the target: one) and when the last check
//! finished (the target: within 50 ms + 25 ms of the start).
//!
//! Needs `redis-server` and `memcached` on the PATH (started here on free loopback ports).
//! Run: `cargo bench --bench fleet` (`FLEET_PROCESSES`, `FLEET_THREADS`, `FLEET_ROUNDS` change
//! the defaults 4, 8, 5). The processes are this program again, started with `FLEET_CHILD` set.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fake_globus::{fixtures, FakeGlobus};
use serde_json::{json, Value};
use tokenchecker::AuthorizeRequest;
use tokenchecker::{Checker, Config};

const CHILD_ENV: &str = "FLEET_CHILD";
const LATENCY_MS: u64 = 50;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn unix_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64
}

fn sleep_until_us(at: u64) {
    let now = unix_us();
    if at > now {
        std::thread::sleep(Duration::from_micros(at - now));
    }
}

/// One process of the fleet: builds its checker, warms its connections, says `READY`, then for
/// each line `<what> <token> <start_at_us>` on stdin runs M threads at that instant and prints
/// `DONE <json>` with each thread's finishing time (µs after the start) and answer source.
fn child(spec: &str) {
    let spec: Value = serde_json::from_str(spec).unwrap();
    let threads = spec["threads"].as_u64().unwrap() as usize;
    let checker = Arc::new(Checker::new(Config::from_value(&spec["config"]).unwrap()).unwrap());
    checker.check(fixtures::TOK_VALID).unwrap();
    println!("READY");
    let stdin = std::io::stdin();
    for line in stdin.lock().lines() {
        let line = line.unwrap();
        let mut parts = line.split(' ');
        let (what, token, start_at) = (
            parts.next().unwrap().to_string(),
            parts.next().unwrap().to_string(),
            parts.next().unwrap().parse::<u64>().unwrap(),
        );
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let (checker, token, what) = (checker.clone(), token.clone(), what.clone());
                std::thread::spawn(move || {
                    sleep_until_us(start_at);
                    let source = if what == "groups" {
                        let request = AuthorizeRequest {
                            allowed_principals: vec![format!(
                                "urn:globus:groups:id:{}",
                                fixtures::GROUP_MEMBER
                            )],
                            ..Default::default()
                        };
                        let a = checker.authorize(&token, &request).unwrap();
                        a.state.source.name()
                    } else {
                        checker.check(&token).unwrap().source.name()
                    };
                    (unix_us().saturating_sub(start_at), source)
                })
            })
            .collect();
        let results: Vec<(u64, &str)> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        println!("DONE {}", json!(results));
    }
}

struct Process {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Process {
    fn spawn(spec: &Value) -> Process {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .env(CHILD_ENV, spec.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Process {
            child,
            stdin,
            stdout,
        }
    }

    /// The next line that starts with `tag`, without it.
    fn expect(&mut self, tag: &str) -> String {
        let mut line = String::new();
        loop {
            line.clear();
            assert!(
                self.stdout.read_line(&mut line).unwrap() > 0,
                "a fleet process ended early"
            );
            if let Some(rest) = line.trim_end().strip_prefix(tag) {
                return rest.trim_start().to_string();
            }
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

struct Round {
    requests: [u64; 3],
    last_ms: f64,
    median_ms: f64,
    network: usize,
    checks: usize,
}

/// One herd: a new token, every process's threads at one instant.
fn herd(fake: &FakeGlobus, fleet: &mut [Process], what: &str, n: usize) -> Round {
    let token = format!("tok-fleet-{what}-{}-{n}", std::process::id());
    fake.add_tokens(json!({ token.clone(): {
        "sub": fixtures::ALICE_ID,
        "identity_set": [fixtures::ALICE_ID, fixtures::ALICE_ID2],
        "username": fixtures::ALICE_USERNAME,
        "groups": [fixtures::GROUP_MEMBER],
    }}));
    let before = fake.counters();
    let start_at = unix_us() + 200_000;
    for p in fleet.iter_mut() {
        writeln!(p.stdin, "{what} {token} {start_at}").unwrap();
    }
    let mut times = Vec::new();
    let mut network = 0;
    for p in fleet.iter_mut() {
        let done: Vec<(u64, String)> = serde_json::from_str(&p.expect("DONE")).unwrap();
        for (us, source) in done {
            times.push(us as f64 / 1000.0);
            network += usize::from(source == "network");
        }
    }
    let after = fake.counters();
    Round {
        requests: [
            after.introspect - before.introspect,
            after.dependent_token - before.dependent_token,
            after.groups - before.groups,
        ],
        last_ms: times.iter().cloned().fold(0.0, f64::max),
        median_ms: median(times.clone()),
        network,
        checks: times.len(),
    }
}

fn main() {
    if let Ok(spec) = std::env::var(CHILD_ENV) {
        child(&spec);
        return;
    }
    let processes = env_or("FLEET_PROCESSES", 4);
    let threads = env_or("FLEET_THREADS", 8);
    let rounds = env_or("FLEET_ROUNDS", 5);
    let fake = FakeGlobus::start();
    let servers = [
        ("redis", support::redis()),
        ("memcached", support::memcached()),
    ];
    println!(
        "fleet herd: {processes} processes × {threads} threads, one new token per round, \
         {LATENCY_MS} ms per request, median of {rounds} rounds"
    );
    println!("\n| backend | what | requests (introspect, dependent token, groups) | last check done (median of rounds) | target |");
    println!("| --- | --- | --- | --- | --- |");
    for (name, server) in &servers {
        let cache = support::with(&server.cache, json!({"distributed_lock": true}));
        let spec = json!({"config": support::config(&fake, &cache), "threads": threads});
        let mut fleet: Vec<Process> = (0..processes).map(|_| Process::spawn(&spec)).collect();
        for p in &mut fleet {
            p.expect("READY");
        }
        fake.set_fault(json!({"endpoint": "all", "latency_ms": LATENCY_MS}));
        for (what, label, endpoints, budget_ms) in [
            ("check", "checks", 1usize, LATENCY_MS + 25),
            ("groups", "group authorizations", 3, 3 * LATENCY_MS + 25),
        ] {
            let results: Vec<Round> = (0..rounds)
                .map(|n| herd(&fake, &mut fleet, what, n))
                .collect();
            let worst_requests = results
                .iter()
                .map(|r| r.requests)
                .max_by_key(|r| r.iter().sum::<u64>())
                .unwrap();
            let one_each = results
                .iter()
                .all(|r| r.requests[..endpoints].iter().all(|&c| c == 1) && r.network == 1);
            let last = median(results.iter().map(|r| r.last_ms).collect());
            let mid = median(results.iter().map(|r| r.median_ms).collect());
            let checks = results[0].checks;
            let ok = one_each && last <= budget_ms as f64;
            println!(
                "| {name} | {checks} {label} | {worst_requests:?} (worst round) | {last:.1} ms (p50 {mid:.1} ms) | 1 each, ≤ {budget_ms} ms {} |",
                if ok { "✓" } else { "✗" }
            );
        }
        fake.clear_faults();
    }
}
