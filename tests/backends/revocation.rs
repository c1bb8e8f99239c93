//! Revocation across the fleet (issue 22): a purge of an identity reaches every token of it
//! however many (with Memcached items capped at 1 KiB too), the backend holds nothing per token
//! beyond its entries, a purge covers a fetch that was in flight during it, a dropped fetch
//! releases its fleet lock, and stale answers honour purges made by another process.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common;
use crate::common::cache::{alice, checker, new_token, requests, PREFIX};
use crate::fleet::other_process;
use crate::server::{new_tokens, Backend, Server};
use fake_globus::{fixtures, FakeGlobus};
use serde_json::{json, Value};
use tokenchecker::{tc_status, Source};

/// Runs `what` (`{"purge": token}` or `{"purge_identity": id}`) in another process of the fleet.
fn in_other_process(fake: &FakeGlobus, cache: &Value, what: Value) {
    let mut spec = json!({"config": common::config(fake, json!({ "cache_config": cache }))});
    common::merge(&mut spec, what);
    let out = other_process(&spec).output().unwrap();
    assert!(out.status.success(), "the other process failed");
    assert!(String::from_utf8_lossy(&out.stdout).contains("CHILD_RESULT"));
}

/// What kind of key a backend key under `prefix` is: a token's entry, the purge log, a
/// tombstone, or other (`None`: not under `prefix`).
fn kind_of(prefix: &str, key: &str) -> Option<&'static str> {
    let rest = key.strip_prefix(prefix)?;
    Some(if rest == "purges" {
        "log"
    } else if rest.starts_with("purged:") {
        "tombstone"
    } else if rest.len() == 66 && rest.as_bytes()[1] == b':' {
        "entry"
    } else {
        "other"
    })
}

/// The keys under `prefix`: entries, logs, tombstones, and any other.
fn counts_under(server: &Server, prefix: &str) -> (usize, usize, usize, Vec<String>) {
    let (mut entries, mut logs, mut tombstones, mut other) = (0, 0, 0, Vec::new());
    // The log read by its key: memcached's key listing (lru_crawler) may miss an item that is
    // being bumped in its LRU at that moment.
    logs += usize::from(server.raw_get(&format!("{prefix}purges")).is_some());
    for (key, _) in server.dump() {
        match kind_of(prefix, &key) {
            None => {}
            Some("entry") => entries += 1,
            Some("log") => {}
            Some("tombstone") => tombstones += 1,
            Some(_) => other.push(key),
        }
    }
    (entries, logs, tombstones, other)
}

fn counts(server: &Server) -> (usize, usize, usize, Vec<String>) {
    counts_under(server, PREFIX)
}

/// 200 tokens of one identity, all cached in the backend; another process purges the identity:
/// every one of them is fetched again. Before, with Memcached items capped at 1 KiB, 187 of the
/// 200 escaped (the index's appends failed once the item was full). The backend holds the
/// entries, one purge log and one tombstone: nothing per token besides its entry.
pub fn every_token_of_an_identity(fake: &FakeGlobus, server: &Server) {
    fake.reset();
    let cache = server.cache(json!({}));
    let c = checker(fake, &cache);
    let tokens = new_tokens(fake, "many-of-one-", 200, alice());
    for t in &tokens {
        assert_eq!(c.check(t).unwrap().source, Source::Network);
    }
    let (entries, _, tombstones_before, other) = counts(server);
    assert!(entries >= 200, "{entries} entries");
    assert!(other.is_empty(), "keys of no known kind: {other:?}");
    let identity = format!("urn:globus:auth:identity:{}", fixtures::ALICE_ID2);
    in_other_process(fake, &cache, json!({ "purge_identity": identity }));
    let before = requests(fake).0;
    for t in &tokens {
        assert_eq!(
            c.check(t).unwrap().source,
            Source::Network,
            "escaped the purge"
        );
    }
    assert_eq!(requests(fake).0 - before, 200);
    let (_, logs, tombstones, other) = counts(server);
    // One tombstone per purged identity (an earlier scenario may have purged this one).
    assert_eq!(logs, 1);
    assert!(
        tombstones <= tombstones_before + 1,
        "{tombstones} tombstones"
    );
    assert!(other.is_empty(), "keys of no known kind: {other:?}");
    // Many purges in a row: each one is one bounded write, and a log too large for the
    // server's items collapses instead of failing (every entry is then fetched again).
    for i in 0..60 {
        c.purge_identity(&format!("d0000000-0000-4000-8000-{i:012}"))
            .unwrap();
    }
    // Redis keeps every record (Alice's entries stay); the 1 KiB Memcached items cannot, so its
    // log collapsed into "everything before now" (Alice's entries are fetched again).
    let t = &tokens[0];
    let expected = match server.backend {
        Backend::Redis => Source::Redis,
        Backend::Memcached => Source::Network,
    };
    assert_eq!(c.check(t).unwrap().source, expected);
    assert_eq!(c.check(t).unwrap().source, server.backend.source());
    let (_, logs, _, other) = counts(server);
    assert_eq!(logs, 1);
    assert!(other.is_empty(), "keys of no known kind: {other:?}");
}

/// With a 1 s cache, tokens come and go: the backend keeps no per-token state past the
/// entries' lifetime (before: an identity index that grew with every token and was never
/// pruned, its TTL re-armed by each new token).
pub fn nothing_outlives_the_entries(fake: &FakeGlobus, server: &Server) {
    fake.reset();
    const SHORT: &str = "tc-short-lived:";
    let cache = server.cache(json!({"timeout": 1, "prefix": SHORT}));
    let c = checker(fake, &cache);
    for round in 0..3 {
        for t in new_tokens(fake, &format!("short-lived-{round}-"), 20, alice()) {
            c.check(&t).unwrap();
        }
        std::thread::sleep(Duration::from_millis(1100));
    }
    std::thread::sleep(Duration::from_millis(1100));
    let (entries, logs, _, other) = counts_under(server, SHORT);
    assert_eq!(entries, 0, "expired entries are gone");
    assert!(other.is_empty(), "keys of no known kind: {other:?}");
    assert!(logs <= 1, "{logs} logs");
}

/// A purge while a fetch of the identity's token is in flight: the answer that fetch stores
/// afterwards is covered by the purge (before: the index was written after the entry, so a
/// purge in between missed it and the entry was served for its whole lifetime).
pub fn a_purge_covers_a_fetch_in_flight(fake: &FakeGlobus, server: &Server) {
    fake.reset();
    let cache = server.cache(json!({}));
    let c = Arc::new(checker(fake, &cache));
    let t = new_token(fake, "in-flight-purge", alice());
    fake.set_fault(json!({"endpoint": "introspect", "latency_ms": 1500, "count": 1}));
    let slow = {
        let (c, t) = (c.clone(), t.clone());
        std::thread::spawn(move || c.check(&t).unwrap().source)
    };
    std::thread::sleep(Duration::from_millis(300));
    let identity = format!("urn:globus:auth:identity:{}", fixtures::ALICE_ID);
    in_other_process(fake, &cache, json!({ "purge_identity": identity }));
    assert_eq!(slow.join().unwrap(), Source::Network);
    let before = requests(fake).0;
    assert_eq!(
        c.check(&t).unwrap().source,
        Source::Network,
        "the answer stored after the purge came from before it"
    );
    assert_eq!(requests(fake).0 - before, 1);
    assert_eq!(c.check(&t).unwrap().source, server.backend.source());
}

/// A fetch that every caller gave up on releases its fleet lock at once: the next check of the
/// token does not wait for the lock (before: held for `lock_timeout`, here 20 s).
pub fn a_dropped_fetch_releases_its_lock(fake: &FakeGlobus, server: &Server) {
    fake.reset();
    let cache = server.cache(json!({"lock_timeout": 20}));
    let patient = checker(fake, &cache);
    // The same cache (no cache_config: it stays the one just installed).
    let c = common::config(fake, json!({"call_timeout_ms": 400}));
    let impatient =
        tokenchecker::Checker::new(tokenchecker::Config::from_value(&c).unwrap()).unwrap();
    let t = new_token(fake, "dropped-lock", alice());
    fake.set_fault(json!({"endpoint": "introspect", "latency_ms": 3000, "count": 1}));
    let e = impatient.check(&t).unwrap_err();
    assert_eq!(e.status, tc_status::TC_AUTH_UNAVAILABLE, "{e}");
    let started = Instant::now();
    assert_eq!(patient.check(&t).unwrap().source, Source::Network);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "waited {:?} for a lock nobody holds",
        started.elapsed()
    );
}

/// Stale answers (`stale_if_error_s`) honour purges made in another process of the fleet: a
/// purged token, and a token of a purged identity, are not served stale during an outage; a
/// token nobody purged still is.
pub fn stale_answers_honour_fleet_purges(fake: &FakeGlobus, server: &Server) {
    fake.reset();
    let cache = server.cache(json!({"timeout": 1}));
    let config = common::config(
        fake,
        json!({"stale_if_error_s": 600, "max_retries": 0, "cache_config": cache}),
    );
    let c = tokenchecker::Checker::new(tokenchecker::Config::from_value(&config).unwrap()).unwrap();
    let purged = new_token(fake, "stale-purged", json!({}));
    let of_identity = new_token(fake, "stale-identity", alice());
    let kept = new_token(fake, "stale-kept", json!({}));
    for t in [&purged, &of_identity, &kept] {
        assert_eq!(c.check(t).unwrap().source, Source::Network);
    }
    in_other_process(fake, &cache, json!({ "purge": purged }));
    let identity = format!("urn:globus:auth:identity:{}", fixtures::ALICE_ID);
    in_other_process(fake, &cache, json!({ "purge_identity": identity }));
    std::thread::sleep(Duration::from_millis(1300)); // every entry has expired
    fake.set_fault(json!({"endpoint": "introspect", "status": 503}));
    for t in [&purged, &of_identity] {
        let e = c.check(t).unwrap_err();
        assert_eq!(e.status, tc_status::TC_AUTH_UNAVAILABLE, "{e}");
    }
    assert_eq!(c.check(&kept).unwrap().source, Source::Stale);
    fake.clear_faults();
}

/// Memcached with items capped at 1 KiB, for [`every_token_of_an_identity`].
pub fn small_item_memcached() -> Server {
    Server::start_with(
        Backend::Memcached,
        &["-I", "1k", "-o", "slab_chunk_max=512"],
    )
}
