//! Checks through the C ABI, with the floor beside them, measured in the same run.
//!
//! - cached `tc_check` (result JSON included) vs the floor: the keyed hash of the same token plus
//!   one lookup in the same in-process map;
//! - uncached `tc_check` (introspection only) vs a bare keep-alive POST of the same request to
//!   the same fake server;
//! - `tc_try_check` (what event-loop hosts call first).
//!
//! Run: `cargo bench --bench c_abi`.

use std::ffi::{c_char, CString};
use std::ptr;

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use fake_globus::{fixtures, FakeGlobus};
use tokenchecker::ffi::*;
use tokenchecker::internals::cache::{KeyHasher, Kind, LocalKey};
use tokenchecker::internals::clock::Moment;
use tokenchecker::internals::process;
use tokenchecker::tc_status;

fn new_checker(fake: &FakeGlobus) -> *mut tc_checker {
    let config = serde_json::json!({
        "client_id": fixtures::CLIENT_ID, "client_secret": fixtures::CLIENT_SECRET,
        "expected_scopes": ["urn:globus:auth:scope:test:all"],
        "auth_url": fake.url(), "groups_url": fake.url(),
    });
    let config = CString::new(config.to_string()).unwrap();
    let mut checker = ptr::null_mut();
    let status = unsafe { tc_new(config.as_ptr(), &mut checker, ptr::null_mut()) };
    assert_eq!(status, tc_status::TC_OK);
    checker
}

fn check(checker: *const tc_checker, token: &CString) -> tc_status {
    let mut json: *mut c_char = ptr::null_mut();
    let status = unsafe { tc_check(checker, token.as_ptr(), &mut json) };
    unsafe { tc_string_free(json) };
    status
}

fn cached(c: &mut Criterion) {
    let fake = FakeGlobus::start();
    let checker = new_checker(&fake);
    let token = CString::new(fixtures::TOK_VALID).unwrap();
    assert_eq!(check(checker, &token), tc_status::TC_OK);

    let mut group = c.benchmark_group("cached");
    group.bench_function("tc_check", |b| b.iter(|| check(checker, black_box(&token))));
    group.bench_function("tc_try_check", |b| {
        b.iter(|| {
            let mut json: *mut c_char = ptr::null_mut();
            let s = unsafe { tc_try_check(checker, black_box(token.as_ptr()), &mut json) };
            unsafe { tc_string_free(json) };
            s
        })
    });
    let hasher = KeyHasher::new(fixtures::CLIENT_ID, fixtures::CLIENT_SECRET, &fake.url());
    group.bench_function("floor: keyed hash + map lookup", |b| {
        b.iter(|| {
            let id = hasher.local_id(black_box(fixtures::TOK_VALID));
            process::get()
                .cache
                .get_local_at(&LocalKey::new(Kind::Introspection, id), Moment::now())
                .is_some()
        })
    });
    group.finish();
    unsafe { tc_free(checker) };
}

fn uncached(c: &mut Criterion) {
    let fake = FakeGlobus::start();
    let checker = new_checker(&fake);
    let token = CString::new(fixtures::TOK_VALID).unwrap();
    let mut group = c.benchmark_group("uncached");
    group.sample_size(30);
    group.bench_function("tc_purge + tc_check (introspection)", |b| {
        b.iter(|| {
            unsafe { tc_purge(checker, token.as_ptr()) };
            check(checker, &token)
        })
    });
    // The same request, bare: one keep-alive client, no cache, no parsing beyond the body.
    let client = reqwest::Client::new();
    let url = format!("{}/v2/oauth2/token/introspect", fake.url());
    group.bench_function("bare keep-alive POST", |b| {
        b.iter(|| {
            tokenchecker::internals::process::block_on(async {
                client
                    .post(&url)
                    .basic_auth(fixtures::CLIENT_ID, Some(fixtures::CLIENT_SECRET))
                    .header("Content-Type", "application/x-www-form-urlencoded")
                    .body("token=tok-valid&include=identity_set")
                    .send()
                    .await
                    .unwrap()
                    .bytes()
                    .await
                    .unwrap()
            })
            .unwrap()
        })
    });
    group.finish();
    unsafe { tc_free(checker) };
}

criterion_group!(benches, cached, uncached);
criterion_main!(benches);
