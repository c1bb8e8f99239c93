//! The backend failing or changing under load: killed and restarted, cut off during a purge,
//! never answering or answering garbage, and switched for another while threads keep checking.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::cache::{alice, bob, checker, key_of, new_token, PREFIX};
use crate::common::merge;
use crate::common::servers::{free_port, wait_until, Link};
use crate::server::{new_tokens, plain_checker, Backend, Server};
use fake_globus::{fixtures, FakeGlobus};
use serde_json::json;
use tokenchecker::internals::cache::Kind;
use tokenchecker::internals::stats::stats;
use tokenchecker::Checker;
use tokenchecker::Source;

/// Killing the backend mid-run loses no check; restarting it is picked up.
pub fn outage(fake: &FakeGlobus, backend: Backend) {
    let mut server = Server::start(backend);
    let cache = server.cache(json!({
        "socket_timeout": 0.2,
        "breaker_failures": 2,
        "breaker_cooldown": 0.3,
    }));
    let c = Arc::new(checker(fake, &cache));
    let tokens = new_tokens(fake, "outage", 5, alice());
    for t in &tokens {
        c.check(t).unwrap();
    }
    assert_eq!(c.check(&tokens[0]).unwrap().source, backend.source());

    let checking = Checking::start(&c, &tokens, 2, Duration::from_millis(2));

    std::thread::sleep(Duration::from_millis(300));
    let errors = stats().backend_errors.get();
    let introspections = fake.counters().introspect;
    server.kill();
    std::thread::sleep(Duration::from_millis(1500));
    assert!(stats().backend_errors.get() > errors, "the outage was seen");
    // The fallback layer kept caching: not one introspection per check.
    let during = fake.counters().introspect - introspections;
    assert!(
        during <= 2 * tokens.len() as u64,
        "{during} introspections during the outage"
    );
    let skips = stats().breaker_open_skips.get();
    assert!(skips > 0, "the breaker skipped the dead backend");

    server.spawn(); // same port
    let hits = stats().backend_hits.get();
    wait_until(
        "backend hits after the restart",
        Duration::from_secs(10),
        || stats().backend_hits.get() > hits + 5,
    );
    let (checks, failures) = checking.stop();
    assert_eq!(failures, 0, "no check lost");
    assert!(checks > 100);
    assert_eq!(c.check(&tokens[0]).unwrap().source, backend.source());
}

/// A purge while the backend cannot be reached (a partition: it keeps its data): when the link
/// heals, the purged entry is never served, and the backend gets the fresh answer.
pub fn purge_during_outage(fake: &FakeGlobus, server: &Server) {
    let link = Link::to(server.port);
    let url = match server.backend {
        Backend::Redis => format!("redis://127.0.0.1:{}/0", link.port),
        Backend::Memcached => format!("127.0.0.1:{}", link.port),
    };
    let cache = server.cache(json!({
        // The cut closes connections, so failures are immediate; the generous socket timeout
        // is for the reconnection after the heal on a busy machine (a timed-out store would
        // mean a second fetch).
        "url": url, "socket_timeout": 2.0, "breaker_cooldown": 0.2,
    }));
    let c = checker(fake, &cache);
    let t = new_token(fake, "purge-outage", alice());
    assert_eq!(c.check(&t).unwrap().source, Source::Network);
    assert_eq!(c.check(&t).unwrap().source, server.backend.source());
    let introspections = fake.counters().introspect;

    link.cut();
    c.purge(&t).unwrap();
    link.heal();
    let key = key_of(fake, PREFIX, Kind::Introspection, &t);
    assert!(
        server.raw_get(&key).is_some(),
        "the purged entry is still in the backend (the delete did not reach it)"
    );
    // Let the breaker's cool-down pass, so the next check goes to the backend again.
    std::thread::sleep(Duration::from_millis(300));
    let s = c.check(&t).unwrap();
    assert_eq!(s.source, Source::Network, "the purged entry was served");
    assert_eq!(fake.counters().introspect, introspections + 1);
    let fresh = s.info.to_introspection();
    // Replayed: the backend ends up holding the fresh answer. On a busy machine the first
    // operations after the heal may fail: failures that trip the breaker again let the fallback
    // layer answer meanwhile, and a store that failed while the breaker stayed closed leaves
    // the backend without the entry, so the next check fetches it once more (its times may
    // then differ by a second: the fake resolves them per request).
    let same_token = |i: tokenchecker::Introspection| tokenchecker::Introspection {
        exp: None,
        iat: None,
        nbf: None,
        ..i
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let again = c.check(&t).unwrap();
        assert_eq!(
            same_token(again.info.to_introspection()),
            same_token(fresh.clone())
        );
        if again.source == server.backend.source() {
            break;
        }
        assert!(
            matches!(again.source, Source::Memory | Source::Network),
            "only the fallback layer or a new fetch may answer meanwhile: {:?}",
            again.source
        );
        assert!(
            Instant::now() < deadline,
            "the backend never answered again"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A backend that accepts and never answers, or answers garbage, or isn't there: checks still
/// work, and after the first failures cost no extra latency.
pub fn broken_backends(fake: &FakeGlobus) {
    let hang = TcpListener::bind("127.0.0.1:0").unwrap();
    let hang_port = hang.local_addr().unwrap().port();
    let garbage = TcpListener::bind("127.0.0.1:0").unwrap();
    let garbage_port = garbage.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in hang.incoming().flatten() {
            held.push(s);
        }
    });
    std::thread::spawn(move || {
        for mut s in garbage.incoming().flatten() {
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 || s.write_all(b"HTTP/1.1 400 Bad\r\n\r\n\xff\xfe").is_err() {
                        break;
                    }
                }
            });
        }
    });
    let down = free_port();
    let cases = [
        json!({"backend": "redis", "url": format!("redis://127.0.0.1:{hang_port}/0")}),
        json!({"backend": "redis", "url": format!("redis://127.0.0.1:{garbage_port}/0")}),
        json!({"backend": "redis", "url": format!("redis://127.0.0.1:{down}/0")}),
        json!({"backend": "memcached", "url": format!("127.0.0.1:{hang_port}")}),
        json!({"backend": "memcached", "url": format!("127.0.0.1:{garbage_port}")}),
        json!({"backend": "memcached", "url": format!("127.0.0.1:{down}")}),
    ];
    for mut cache in cases {
        merge(
            &mut cache,
            json!({"socket_timeout": 0.2, "breaker_failures": 2, "breaker_cooldown": 30}),
        );
        let t0 = Instant::now();
        let c = checker(fake, &cache);
        assert!(
            t0.elapsed() < Duration::from_millis(500),
            "creating a checker doesn't wait for the backend"
        );
        let tokens = new_tokens(fake, "broken", 3, bob());
        for t in &tokens {
            let s = c.check(t).unwrap_or_else(|e| panic!("{cache}: {e:?}"));
            assert_eq!(s.info.sub().as_deref(), Some(fixtures::BOB_ID));
        }
        // The breaker is open now: no call waits for the backend.
        let before = fake.counters().introspect;
        for _ in 0..10 {
            for t in &tokens {
                let t0 = Instant::now();
                let s = c.check(t).unwrap();
                assert!(
                    t0.elapsed() < Duration::from_millis(100),
                    "{cache}: a check took {:?} with the breaker open",
                    t0.elapsed()
                );
                assert_eq!(
                    s.source,
                    Source::Memory,
                    "{cache}: the fallback layer answers"
                );
            }
        }
        assert_eq!(fake.counters().introspect, before, "{cache}");
    }
}

/// Switching the process-wide cache between backends while other threads keep checking.
pub fn switching(fake: &FakeGlobus, redis: &Server, memcached: &Server) {
    let user = Arc::new(plain_checker(fake));
    let tokens = new_tokens(fake, "switch", 4, alice());
    let checking = Checking::start(&user, &tokens, 3, Duration::ZERO);
    let configs = [
        redis.cache(json!({})),
        memcached.cache(json!({})),
        json!({"backend": "memory"}),
        redis.cache(json!({"near_cache_ttl": 0.5})),
        memcached.cache(json!({"near_cache_ttl": 0.5})),
        redis.cache(json!({"distributed_lock": false})),
    ];
    let mut seen = HashSet::new();
    for token in &tokens[..2] {
        for cache in &configs {
            let _ = checker(fake, cache);
            std::thread::sleep(Duration::from_millis(120));
            seen.insert(user.check(token).unwrap().source.name());
        }
    }
    let (checks, failures) = checking.stop();
    assert_eq!(failures, 0);
    assert!(checks > 50);
    for source in ["redis", "memcached", "memory"] {
        assert!(seen.contains(source), "{source} in {seen:?}");
    }
}

/// Threads that keep checking Alice's `tokens` until stopped, counting checks and failures.
struct Checking {
    stop: Arc<AtomicBool>,
    checks: Arc<AtomicU64>,
    failures: Arc<AtomicU64>,
    workers: Vec<std::thread::JoinHandle<()>>,
}

impl Checking {
    fn start(c: &Arc<Checker>, tokens: &[String], threads: usize, pause: Duration) -> Checking {
        let stop = Arc::new(AtomicBool::new(false));
        let checks = Arc::new(AtomicU64::new(0));
        let failures = Arc::new(AtomicU64::new(0));
        let workers = (0..threads)
            .map(|w| {
                let (c, tokens, stop, checks, failures) = (
                    c.clone(),
                    tokens.to_vec(),
                    stop.clone(),
                    checks.clone(),
                    failures.clone(),
                );
                std::thread::spawn(move || {
                    let mut i = w;
                    while !stop.load(Ordering::Relaxed) {
                        match c.check(&tokens[i % tokens.len()]) {
                            Ok(s) if s.info.sub().as_deref() == Some(fixtures::ALICE_ID) => {}
                            other => {
                                eprintln!("check failed: {other:?}");
                                failures.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        checks.fetch_add(1, Ordering::Relaxed);
                        i += 1;
                        std::thread::sleep(pause);
                    }
                })
            })
            .collect();
        Checking {
            stop,
            checks,
            failures,
            workers,
        }
    }

    /// Stops the threads: (checks, failures).
    fn stop(self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        for w in self.workers {
            w.join().unwrap();
        }
        (
            self.checks.load(Ordering::Relaxed),
            self.failures.load(Ordering::Relaxed),
        )
    }
}
