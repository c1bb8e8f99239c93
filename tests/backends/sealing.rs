//! What goes to the backend is sealed: every entry kind makes the round trip to another process
//! view, a raw dump says nothing about anybody, and tampered values are rejected.

use std::time::Duration;

use crate::common::cache::{
    alice, assert_nothing_readable, bob, checker, group_request, key_of, new_token, requests,
    PREFIX,
};
use crate::server::Server;
use fake_globus::{fixtures, FakeGlobus};
use serde_json::{json, Value};
use tokenchecker::internals::cache::Kind;
use tokenchecker::internals::stats::stats;
use tokenchecker::Source;

/// Every entry kind goes to the backend and comes back to another process view, sealed.
pub fn round_trip(fake: &FakeGlobus, server: &Server) -> Vec<String> {
    let cache = server.cache(json!({"timeout": 60}));
    let a = checker(fake, &cache);
    let tok = new_token(fake, "rt", alice());
    fake.reset();

    let first = a.check(&tok).unwrap();
    assert_eq!(first.source, Source::Network);
    std::thread::sleep(Duration::from_millis(60));

    // Another process's view: a new store, nothing in memory.
    let b = checker(fake, &cache);
    let second = b.check(&tok).unwrap();
    assert_eq!(second.source, server.backend.source());
    assert_eq!(*second.info, *first.info);
    assert!(
        second.age >= Duration::from_millis(50),
        "the age survives the trip: {:?}",
        second.age
    );
    assert_eq!(fake.counters().introspect, 1);

    // Groups and dependent tokens.
    let admin = group_request(fixtures::GROUP_ADMIN);
    let auth = a.authorize(&tok, &admin).unwrap();
    assert_eq!(
        auth.matched,
        format!("urn:globus:groups:id:{}", fixtures::GROUP_ADMIN)
    );
    let transfer = a.dependent_token(&tok, fixtures::TRANSFER_SCOPE).unwrap();
    let groups_token = a.dependent_token(&tok, fixtures::GROUPS_SCOPE).unwrap();
    assert_eq!(requests(fake), (1, 1, 1));
    for kind in Kind::ALL {
        assert!(
            server.raw_get(&key_of(fake, PREFIX, kind, &tok)).is_some(),
            "{kind:?} entry in {:?}",
            server.backend
        );
        let lock = format!("{}.lock", key_of(fake, PREFIX, kind, &tok));
        assert!(server.raw_get(&lock).is_none(), "lock released");
    }

    let c = checker(fake, &cache);
    let auth = c.authorize(&tok, &admin).unwrap();
    assert_eq!(auth.state.source, server.backend.source());
    assert!(c
        .authorize(&tok, &group_request(fixtures::GROUP_PENDING))
        .is_err());
    let again = c.dependent_token(&tok, fixtures::TRANSFER_SCOPE).unwrap();
    assert_eq!(again.access_token, transfer.access_token);
    assert_eq!(
        requests(fake),
        (1, 1, 1),
        "everything came from {:?}",
        server.backend
    );

    // Purge removes every kind from the backend.
    let other = new_token(fake, "purge", alice());
    c.authorize(&other, &admin).unwrap();
    assert!(server
        .raw_get(&key_of(fake, PREFIX, Kind::Groups, &other))
        .is_some());
    c.purge(&other).unwrap();
    for kind in Kind::ALL {
        assert!(server
            .raw_get(&key_of(fake, PREFIX, kind, &other))
            .is_none());
    }
    assert_eq!(c.check(&other).unwrap().source, Source::Network);

    vec![tok, other, transfer.access_token, groups_token.access_token]
}

/// Nothing in a raw dump of the backend says who anybody is.
pub fn nothing_readable(server: &Server, secrets: &[String]) {
    let dump = server.dump();
    assert!(dump.len() >= 3, "{:?} holds the entries", server.backend);
    assert_nothing_readable(
        dump,
        PREFIX,
        secrets,
        &[fixtures::BOB_ID, fixtures::BOB_USERNAME],
    );
}

/// Altered values and values copied to another key are rejected, and the check stays right.
pub fn tampering(fake: &FakeGlobus, server: &Server) {
    let cache = server.cache(json!({}));
    let c = checker(fake, &cache);
    let a = new_token(fake, "tamper-a", alice());
    let b = new_token(fake, "tamper-b", bob());
    c.check(&a).unwrap();
    c.check(&b).unwrap();
    let ka = key_of(fake, PREFIX, Kind::Introspection, &a);
    let kb = key_of(fake, PREFIX, Kind::Introspection, &b);

    // Altered.
    let mut v = server.raw_get(&ka).unwrap();
    let mid = v.len() / 2;
    v[mid] ^= 0x20;
    server.raw_set(&ka, &v);
    let before = fake.counters().introspect;
    rejected_and_refetched(fake, &cache, &a, fixtures::ALICE_ID);
    assert_eq!(fake.counters().introspect, before + 1);

    // Garbage.
    server.raw_set(&ka, b"{\"active\": true, \"sub\": \"mallory\"}");
    rejected_and_refetched(fake, &cache, &a, fixtures::ALICE_ID);

    // Alice's (valid) entry copied over Bob's key: Bob must not become Alice.
    let alice_entry = server.raw_get(&ka).unwrap();
    server.raw_set(&kb, &alice_entry);
    rejected_and_refetched(fake, &cache, &b, fixtures::BOB_ID);

    // Alice's introspection copied to her own groups key: rejected too.
    let kg = key_of(fake, PREFIX, Kind::Groups, &a);
    server.raw_set(&kg, &alice_entry);
    let rejected = stats().backend_rejected_entries.get();
    let c = checker(fake, &cache);
    c.authorize(&a, &group_request(fixtures::GROUP_MEMBER))
        .unwrap();
    assert!(stats().backend_rejected_entries.get() > rejected);
    // And the refetched values are good again.
    assert_eq!(c.check(&a).unwrap().source, server.backend.source());
}

/// Another process view checks `token`, whose entry in the backend was tampered with: the entry
/// is rejected, and the token is introspected again and is `sub`'s.
#[track_caller]
fn rejected_and_refetched(fake: &FakeGlobus, cache: &Value, token: &str, sub: &str) {
    let rejected = stats().backend_rejected_entries.get();
    let s = checker(fake, cache).check(token).unwrap();
    assert_eq!(s.source, Source::Network);
    assert_eq!(s.info.sub().as_deref(), Some(sub));
    assert!(stats().backend_rejected_entries.get() > rejected);
}
