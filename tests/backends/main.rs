//! The shared cache backends against real `redis-server` and `memcached` processes, started by
//! the test on free loopback ports (never skipped: without the binaries the test fails and says
//! what to install).
//!
//! The cache is process-wide, so every scenario that installs a `cache_config` runs inside the
//! one `#[test] fn backends`, one after the other. `child_process` is not a test of its own: the
//! fleet scenarios run this test binary again as a second OS process with `TC_BACKENDS_CHILD`
//! set, and only then does it do anything.
//!
//! This file holds the tests and the order in which the scenarios run; the scenarios live in
//! files by concern:
//!
//! - `sealing`: the round trip of every entry kind, nothing readable in a raw dump, tampering
//! - `ttl`: the TTLs set on the servers, the near cache
//! - `connections`: Redis over TLS, memcached spread over two servers
//! - `fleet`: several OS processes on one backend (a dead lock holder, one introspection for
//!   the fleet, purging an identity), and the `child_process` side of it
//! - `outage`: a killed backend, a purge during a partition, broken backends, switching
//!   backends while checking
//! - `revocation`: purges that reach every token of an identity (Memcached items capped at
//!   1 KiB too), no per-token state beyond the entries, purges covering fetches in flight, fleet
//!   locks released when their fetch is dropped, stale answers honouring fleet purges
//! - `config`: the configuration keys (parsing only)
//!
//! and what they share: `server` (the server processes, the checkers that install them, tokens),
//! `raw` (an operator's raw access to a server: dump, get, set), and `tests/common/` (shared with
//! the other test binaries).
//!
//! Run: `cargo test --test backends -- --nocapture`

#[path = "../common/mod.rs"]
mod common;

mod config;
mod connections;
mod fleet;
mod outage;
mod raw;
mod revocation;
mod sealing;
mod server;
mod ttl;

use fake_globus::FakeGlobus;
use server::{Backend, Server};

/// The backends' configuration keys (parsing only: installs nothing).
#[test]
fn config_keys() {
    config::config_keys();
}

/// The other process of the fleet scenarios; does nothing unless started by them.
#[test]
fn child_process() {
    fleet::child_process();
}

/// Every scenario that installs a cache, one after the other, against one fake Globus, one
/// `redis-server` and one `memcached` (and the servers some scenarios start for themselves).
#[test]
fn backends() {
    if std::env::var(fleet::CHILD_ENV).is_ok() {
        return;
    }
    let fake = FakeGlobus::start();
    let redis = Server::start(Backend::Redis);
    let memcached = Server::start(Backend::Memcached);
    let step = |name: &str| eprintln!("--- {name}");

    let mut secrets = Vec::new();
    for server in [&redis, &memcached] {
        step(&format!("round trip, {:?}", server.backend));
        secrets.extend(sealing::round_trip(&fake, server));
    }
    for server in [&redis, &memcached] {
        step(&format!("tampering, {:?}", server.backend));
        sealing::tampering(&fake, server);
    }
    for server in [&redis, &memcached] {
        step(&format!("raw dump, {:?}", server.backend));
        sealing::nothing_readable(server, &secrets);
    }
    step("server TTLs");
    ttl::ttls(&fake, &redis, &memcached);
    for server in [&redis, &memcached] {
        step(&format!("near cache, {:?}", server.backend));
        ttl::near_cache(&fake, server);
    }
    for server in [&redis, &memcached] {
        step(&format!("dead lock holder, {:?}", server.backend));
        fleet::dead_lock_holder(&fake, server);
    }
    step("redis over TLS");
    connections::tls(&fake);
    step("memcached over two servers");
    connections::memcached_spread(&fake);
    for server in [&redis, &memcached] {
        step(&format!("fleet of two processes, {:?}", server.backend));
        fleet::fleet(&fake, server);
    }
    for server in [&redis, &memcached] {
        step(&format!(
            "purge of an identity across the fleet, {:?}",
            server.backend
        ));
        fleet::purge_identity_fleet(&fake, server);
    }
    let small_items = revocation::small_item_memcached();
    for server in [&redis, &small_items] {
        step(&format!("every token of an identity, {:?}", server.backend));
        revocation::every_token_of_an_identity(&fake, server);
    }
    for server in [&redis, &memcached] {
        step(&format!(
            "revocation across the fleet, {:?}",
            server.backend
        ));
        revocation::nothing_outlives_the_entries(&fake, server);
        revocation::a_purge_covers_a_fetch_in_flight(&fake, server);
        revocation::a_dropped_fetch_releases_its_lock(&fake, server);
        revocation::stale_answers_honour_fleet_purges(&fake, server);
    }
    for server in [&redis, &memcached] {
        step(&format!("purge during an outage, {:?}", server.backend));
        outage::purge_during_outage(&fake, server);
    }
    step("broken backends");
    outage::broken_backends(&fake);
    for backend in [Backend::Redis, Backend::Memcached] {
        step(&format!("outage, {backend:?}"));
        outage::outage(&fake, backend);
    }
    step("switching backends while checking");
    outage::switching(&fake, &redis, &memcached);
}
