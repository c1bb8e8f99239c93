//! Several OS processes sharing one backend: a lock left by a process that died, one
//! introspection for a fleet of two, and a purge of an identity by another process. The other
//! process is this test binary run again (its `child_process` test, with [`CHILD_ENV`] set).

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::common;
use crate::common::cache::{
    alice, assert_nothing_readable, bob, checker, group_request, key_of, new_token, redis_set_px,
    requests, PREFIX,
};
use crate::raw::mc_set;
use crate::server::{Backend, Server};
use fake_globus::{fixtures, FakeGlobus};
use serde_json::{json, Value};
use tokenchecker::internals::cache::Kind;
use tokenchecker::internals::stats::stats;
use tokenchecker::Source;
use tokenchecker::{Checker, Config};

/// Set, to the spec of what to do, in the child process.
pub const CHILD_ENV: &str = "TC_BACKENDS_CHILD";

/// A lock left by a process that died: the waiter takes over once it expires.
pub fn dead_lock_holder(fake: &FakeGlobus, server: &Server) {
    let c = checker(fake, &server.cache(json!({"lock_timeout": 3})));
    let tok = new_token(fake, "dead-holder", alice());
    let lock = format!("{}.lock", key_of(fake, PREFIX, Kind::Introspection, &tok));
    let held_for = match server.backend {
        Backend::Redis => {
            redis_set_px(&mut server.redis(), &lock, "a-process-that-died", 1000);
            Duration::from_millis(900)
        }
        // Memcached counts whole seconds: a 2 s lock goes within 1 to 2 s.
        Backend::Memcached => {
            mc_set(server.port, &lock, b"a-process-that-died", 2);
            Duration::from_millis(900)
        }
    };
    let waits = stats().backend_lock_waits.get();
    let before = fake.counters().introspect;
    let t0 = Instant::now();
    let s = c.check(&tok).unwrap();
    let took = t0.elapsed();
    assert_eq!(s.source, Source::Network);
    assert!(
        took >= held_for && took < Duration::from_secs(4),
        "waited {took:?} for the dead holder's lock"
    );
    assert!(stats().backend_lock_waits.get() > waits);
    assert_eq!(fake.counters().introspect, before + 1);
    assert!(server.raw_get(&lock).is_none(), "our own lock released");
    assert_eq!(c.check(&tok).unwrap().source, server.backend.source());
}

/// Two OS processes sharing one backend make one introspection for a token both check at once.
pub fn fleet(fake: &FakeGlobus, server: &Server) {
    fake.reset();
    fake.set_fault(json!({"endpoint": "introspect", "latency_ms": 400}));
    let tok = new_token(fake, "fleet", alice());
    let cache = server.cache(json!({}));
    let config = common::config(fake, json!({ "cache_config": cache.clone() }));
    let start_at = unix_ms() + 1500;
    let spec = json!({"config": config, "token": tok, "start_at": start_at, "threads": 3});
    let child = other_process(&spec).spawn().unwrap();

    let c = Arc::new(checker(fake, &cache));
    let waits = stats().backend_lock_waits.get();
    let here = run_at(&c, &tok, start_at, 3);
    let waits = stats().backend_lock_waits.get() - waits;

    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "the child process failed");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find_map(|l| l.split_once("CHILD_RESULT ").map(|(_, r)| r))
        .unwrap_or_else(|| panic!("no result from the child: {stdout}"));
    let there: Value = serde_json::from_str(line).unwrap();
    fake.clear_faults();

    let introspections = fake.counters().introspect;
    assert_eq!(
        introspections, 1,
        "one introspection for the fleet (here {here:?}, there {there})"
    );
    let mut sources: Vec<String> = here.iter().map(|s| s.name().to_string()).collect();
    sources.extend(
        there["sources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_string()),
    );
    assert_eq!(
        sources.iter().filter(|s| *s == "network").count(),
        1,
        "{sources:?}"
    );
    assert!(
        sources.iter().any(|s| s == server.backend.source().name()),
        "the other process got it from the backend: {sources:?}"
    );
    let total_waits = waits + there["lock_waits"].as_u64().unwrap();
    assert!(
        total_waits >= 1,
        "the processes overlapped and one waited for the other's lock"
    );
}

/// `tc_purge_identity` in one process removes the identity's entries from the backend for the
/// whole fleet: another process (this test binary run again) purges Alice; here, her tokens are
/// then fetched again while Bob's is still served from the backend.
pub fn purge_identity_fleet(fake: &FakeGlobus, server: &Server) {
    fake.reset();
    let cache = server.cache(json!({}));
    let c = checker(fake, &cache);
    let alice1 = new_token(fake, "purge-fleet-a1", alice());
    let alice2 = new_token(fake, "purge-fleet-a2", alice());
    let bob = new_token(fake, "purge-fleet-b", bob());
    for t in [&alice1, &alice2, &bob] {
        assert_eq!(c.check(t).unwrap().source, Source::Network);
        assert_eq!(c.check(t).unwrap().source, server.backend.source());
    }
    c.authorize(&alice1, &group_request(fixtures::GROUP_MEMBER))
        .unwrap();
    let config = common::config(fake, json!({ "cache_config": cache }));
    let identity = format!("urn:globus:auth:identity:{}", fixtures::ALICE_ID2);
    let spec = json!({"config": config, "purge_identity": identity});
    let out = other_process(&spec).output().unwrap();
    assert!(out.status.success(), "the child process failed");
    assert!(String::from_utf8_lossy(&out.stdout).contains("CHILD_RESULT"));
    let before = requests(fake);
    for t in [&alice1, &alice2] {
        assert_eq!(
            c.check(t).unwrap().source,
            Source::Network,
            "purged by the other process"
        );
    }
    assert_eq!(c.check(&bob).unwrap().source, server.backend.source());
    // Alice's groups went too: authorizing by group asks again.
    c.authorize(&alice1, &group_request(fixtures::GROUP_MEMBER))
        .unwrap();
    let after = requests(fake);
    assert_eq!(after.0 - before.0, 2, "two introspections, Alice's tokens");
    assert_eq!(after.2 - before.2, 1, "Alice's groups fetched again");
    // No identity in the backend's keys or values, the indexes included.
    assert_nothing_readable(server.dump(), PREFIX, &[], &[]);
}

/// This test binary again, as another process of the fleet: only its `child_process` test runs,
/// and does what `spec` says; its stdout has a `CHILD_RESULT` line.
pub fn other_process(spec: &Value) -> Command {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args([
            "--exact",
            "child_process",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, spec.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    command
}

/// The other process of [`fleet`] and [`purge_identity_fleet`] (the `child_process` test, run
/// with [`CHILD_ENV`] set); does nothing otherwise.
pub fn child_process() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let spec: Value = serde_json::from_str(&spec).unwrap();
    let c = Arc::new(Checker::new(Config::from_value(&spec["config"]).unwrap()).unwrap());
    if let Some(identity) = spec["purge_identity"].as_str() {
        c.purge_identity(identity).unwrap();
        println!("CHILD_RESULT {}", json!({"purged": identity}));
        return;
    }
    if let Some(token) = spec["purge"].as_str() {
        c.purge(token).unwrap();
        println!("CHILD_RESULT {}", json!({"purged": "a token"}));
        return;
    }
    let sources = run_at(
        &c,
        spec["token"].as_str().unwrap(),
        spec["start_at"].as_u64().unwrap(),
        spec["threads"].as_u64().unwrap() as usize,
    );
    let names: Vec<&str> = sources.iter().map(|s| s.name()).collect();
    println!(
        "CHILD_RESULT {}",
        json!({"sources": names, "lock_waits": stats().backend_lock_waits.get()})
    );
}

/// Checks `token` from `threads` threads at the unix instant `start_at` (ms); their sources.
fn run_at(c: &Arc<Checker>, token: &str, start_at: u64, threads: usize) -> Vec<Source> {
    let now = unix_ms();
    if start_at > now {
        std::thread::sleep(Duration::from_millis(start_at - now));
    }
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let c = c.clone();
            let token = token.to_string();
            std::thread::spawn(move || c.check(&token).unwrap().source)
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}
