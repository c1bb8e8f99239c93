//! Real-world faults against a real HTTP fake of Globus Auth and Groups: brownouts that must not
//! leak request slots, plain HTTP and TLS, a service without the Groups dependency, revoked
//! tokens and dependent tokens, retries as the real services need them.
//!
//! Every test starts its own fake server (cache keys include the auth server URL, so tests never
//! share entries); none installs a `cache_config` (the process-wide cache stays the default).

mod common;

use std::ffi::{c_char, CStr, CString};
use std::ptr;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use common::*;
use fake_globus::{fixtures, FakeGlobus};
use serde_json::{json, Value};
use tokenchecker::ffi::{tc_check, tc_checker, tc_free, tc_new, tc_string_free};
use tokenchecker::internals::process;
use tokenchecker::{tc_status, AuthorizeRequest, Checker, Config, Groups};

/// A checker through the C ABI.
struct CChecker(*mut tc_checker);
unsafe impl Send for CChecker {}
unsafe impl Sync for CChecker {}

impl CChecker {
    fn new(config: &Value) -> CChecker {
        let text = CString::new(config.to_string()).unwrap();
        let mut checker = ptr::null_mut();
        let mut error = ptr::null_mut();
        let status = unsafe { tc_new(text.as_ptr(), &mut checker, &mut error) };
        assert_eq!(status, tc_status::TC_OK, "{}", unsafe { take(error) });
        CChecker(checker)
    }

    /// `tc_check`: the status and the document.
    fn check(&self, token: &str) -> (tc_status, Value) {
        let token = CString::new(token).unwrap();
        let mut json = ptr::null_mut();
        let status = unsafe { tc_check(self.0, token.as_ptr(), &mut json) };
        (
            status,
            serde_json::from_str(&unsafe { take(json) }).unwrap(),
        )
    }
}

impl Drop for CChecker {
    fn drop(&mut self) {
        unsafe { tc_free(self.0) };
    }
}

unsafe fn take(s: *mut c_char) -> String {
    if s.is_null() {
        return String::new();
    }
    let text = CStr::from_ptr(s).to_string_lossy().into_owned();
    tc_string_free(s);
    text
}

fn wait_for_no_flight(limit: Duration) {
    let start = Instant::now();
    while process::cache().in_flight() > 0 && start.elapsed() < limit {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The brownout of the issue, through the C ABI: one request slot, no retries; the server hangs;
/// caller A checks token a, 0.5 s later caller B checks token b. B's fetch gets the slot as A's
/// request times out, and B gives up while its request runs. Before the fix, that abandoned
/// fetch kept the slot forever and every new token failed after the server recovered.
#[test]
fn a_brownout_leaves_no_request_slot_behind() {
    let fake = FakeGlobus::start();
    let a = unique_token(&fake, "brownout-a", json!({}));
    let b = unique_token(&fake, "brownout-b", json!({}));
    let after = unique_token(&fake, "brownout-after", json!({}));
    let checker = Arc::new(CChecker::new(&config(
        &fake,
        json!({"max_concurrent_requests": 1, "max_retries": 0,
               "request_timeout_ms": 1500, "connect_timeout_ms": 500}),
    )));
    fake.set_fault(json!({"endpoint": "introspect", "latency_ms": 4000, "count": 2}));
    let ca = checker.clone();
    let first = std::thread::spawn(move || ca.check(&a));
    std::thread::sleep(Duration::from_millis(500));
    let cb = checker.clone();
    let second = std::thread::spawn(move || cb.check(&b));
    let (sa, da) = first.join().unwrap();
    let (sb, db) = second.join().unwrap();
    assert_eq!(sa, tc_status::TC_AUTH_UNAVAILABLE, "{da}");
    assert_eq!(sb, tc_status::TC_AUTH_UNAVAILABLE, "{db}");
    // The server has recovered (the fault was for two requests): a new token passes (with the
    // slot leaked, it would wait for one and fail).
    let (status, doc) = checker.check(&after);
    assert_eq!(status, tc_status::TC_OK, "{doc}");
}

/// More abandoned fetches than request slots — blocking callers that time out and async
/// futures that are dropped — and then a new token still passes, and nothing is left in flight.
#[test]
fn more_abandoned_fetches_than_slots_then_a_new_token_passes() {
    let fake = FakeGlobus::start();
    let c = Arc::new(checker(
        &fake,
        json!({"max_concurrent_requests": 2, "max_retries": 0,
               "request_timeout_ms": 1000, "connect_timeout_ms": 300}),
    ));
    let tokens: Vec<String> = (0..8)
        .map(|i| unique_token(&fake, &format!("abandoned-{i}"), json!({})))
        .collect();
    fake.set_fault(json!({"endpoint": "introspect", "mode": "hang"}));
    // Dropped async futures: each one's fetch starts, then its caller walks away.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        for t in &tokens[..4] {
            let r = tokio::time::timeout(Duration::from_millis(50), c.check_async(t)).await;
            assert!(
                r.is_err(),
                "the server hangs: the future must still be pending"
            );
        }
    });
    // Blocking callers that time out, four at once (twice the slots).
    let barrier = Arc::new(Barrier::new(4));
    let threads: Vec<_> = tokens[4..]
        .iter()
        .cloned()
        .map(|t| {
            let (c, barrier) = (c.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                c.check(&t).map(|_| ()).unwrap_err().status
            })
        })
        .collect();
    for t in threads {
        assert_eq!(t.join().unwrap(), tc_status::TC_AUTH_UNAVAILABLE);
    }
    fake.clear_faults();
    wait_for_no_flight(Duration::from_secs(5));
    let fresh = unique_token(&fake, "abandoned-after", json!({}));
    c.check(&fresh)
        .expect("a new token passes once the server answers");
    // Every abandoned token can be checked again too.
    for t in &tokens {
        c.check(t).unwrap();
    }
}

#[test]
fn retry_after_is_honoured_beyond_two_seconds_within_the_deadline() {
    let fake = FakeGlobus::start();
    let c = checker(&fake, json!({"max_retries": 1, "request_timeout_ms": 5000}));
    let t = unique_token(&fake, "retry-after", json!({}));
    fake.set_fault(json!({"endpoint": "introspect", "status": 503, "retry_after": 3, "count": 1}));
    let started = Instant::now();
    c.check(&t).expect("the retry after 3 s succeeds");
    assert!(
        started.elapsed() >= Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(fake.counters().introspect, 2);
    // A Retry-After longer than the deadline leaves ends the call now, without a retry.
    let t2 = unique_token(&fake, "retry-after-long", json!({}));
    fake.set_fault(
        json!({"endpoint": "introspect", "status": 503, "retry_after": 600, "count": 1}),
    );
    let started = Instant::now();
    assert_eq!(status(c.check(&t2)), tc_status::TC_AUTH_UNAVAILABLE);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(fake.counters().introspect, 3);
}

#[test]
fn http_500_is_retried() {
    let fake = FakeGlobus::start();
    let c = checker(&fake, json!({"max_retries": 1}));
    fake.set_fault(json!({"endpoint": "introspect", "status": 500, "count": 1}));
    c.check(fixtures::TOK_VALID).expect("retried after the 500");
    assert_eq!(fake.counters().introspect, 2);
}

// ---- plain HTTP and TLS -----------------------------------------------------------------------

fn config_error(v: Value) -> String {
    let e = Config::from_value(&v).expect_err("the config must be refused");
    assert_eq!(e.status, tc_status::TC_INVALID_CONFIG, "{e}");
    e.message
}

#[test]
fn plain_http_is_refused_except_to_loopback_or_when_allowed() {
    let base = json!({"client_id": "c", "client_secret": "s", "expected_scopes": ["x"],
                      "verify_credentials": false});
    let with = |extra: Value| {
        let mut c = base.clone();
        merge(&mut c, extra);
        c
    };
    let m = config_error(with(json!({"auth_url": "http://auth.example.com"})));
    assert!(
        m.contains("'auth_url'") && m.contains("allow_insecure_http"),
        "{m}"
    );
    let m = config_error(with(json!({"groups_url": "http://groups.example.com/"})));
    assert!(m.contains("'groups_url'"), "{m}");
    // Not fooled by a loopback-looking name.
    config_error(with(json!({"auth_url": "http://127.0.0.1.example.com"})));
    config_error(with(json!({"auth_url": "http://localhost.example.com"})));
    for ok in [
        "http://127.0.0.1:8080",
        "http://127.3.4.5",
        "http://localhost:9000",
        "http://LOCALHOST",
        "http://[::1]:8080",
        "https://auth.example.com",
    ] {
        Config::from_value(&with(json!({"auth_url": ok, "groups_url": ok})))
            .unwrap_or_else(|e| panic!("{ok}: {e}"));
    }
    let allowed = Config::from_value(&with(
        json!({"auth_url": "http://auth.example.com", "groups_url": "http://auth.example.com",
               "allow_insecure_http": true}),
    ))
    .unwrap();
    assert!(allowed.allow_insecure_http);
    let m = config_error(with(json!({"allow_insecure_http": "yes"})));
    assert!(m.contains("allow_insecure_http"), "{m}");
}

#[test]
fn tls_to_the_auth_server_with_an_extra_ca() {
    let fake = FakeGlobus::start_tls();
    assert!(fake.url().starts_with("https://"), "{}", fake.url());
    let ca = fake.ca_pem_path();
    let c = checker(
        &fake,
        json!({"ca_certs": [ca.to_str().unwrap()], "verify_credentials": true}),
    );
    c.check(fixtures::TOK_VALID).expect("checked over TLS");
    let a = c
        .authorize(
            fixtures::TOK_VALID,
            &request(json!({"allowed_principals": [format!("urn:globus:groups:id:{}", fixtures::GROUP_MEMBER)]})),
        )
        .expect("groups over TLS");
    assert!(a.matched.ends_with(fixtures::GROUP_MEMBER));
    // A string is a list of one.
    checker(&fake, json!({"ca_certs": ca.to_str().unwrap()}))
        .check(fixtures::TOK_VALID)
        .unwrap();
    // Without the test CA the server is not trusted: unavailable, never active.
    let untrusted = checker(&fake, json!({}));
    let t = unique_token(&fake, "tls-untrusted", json!({}));
    assert_eq!(status(untrusted.check(&t)), tc_status::TC_AUTH_UNAVAILABLE);
    // Another server's CA does not do either.
    let other = FakeGlobus::start_tls();
    let wrong = checker(
        &fake,
        json!({"ca_certs": [other.ca_pem_path().to_str().unwrap()]}),
    );
    assert_eq!(status(wrong.check(&t)), tc_status::TC_AUTH_UNAVAILABLE);
}

#[test]
fn ca_certs_errors_name_the_key() {
    let fake = FakeGlobus::start();
    let dir = std::env::temp_dir().join(format!("tc-ca-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let not_pem = dir.join("not.pem");
    std::fs::write(&not_pem, "hello").unwrap();
    for (value, what) in [
        (json!(["/nonexistent/ca.pem"]), "cannot read"),
        (json!([dir.to_str().unwrap()]), "regular file"),
        (json!([not_pem.to_str().unwrap()]), "no PEM certificate"),
        (json!(["/dev/zero"]), "regular file"),
        (json!(7), "ca_certs"),
    ] {
        let m = config_error(config(&fake, json!({ "ca_certs": value })));
        assert!(m.contains("ca_certs") && m.contains(what), "{value}: {m}");
    }
    std::fs::remove_dir_all(&dir).ok();
}

// ---- groups ----------------------------------------------------------------------------------

fn request(v: Value) -> AuthorizeRequest {
    AuthorizeRequest::from_json(&v.to_string()).unwrap()
}

fn group(id: &str) -> String {
    format!("urn:globus:groups:id:{id}")
}

fn identity(id: &str) -> String {
    format!("urn:globus:auth:identity:{id}")
}

#[test]
fn a_service_without_the_groups_dependency_gets_a_clear_cached_answer() {
    let fake = FakeGlobus::start();
    fake.add_client_without_groups("no-groups-client", "no-groups-secret");
    let c = Checker::new(
        Config::from_value(&config(
            &fake,
            json!({"client_id": "no-groups-client", "client_secret": "no-groups-secret",
                   "expected_audience": "test-client"}),
        ))
        .unwrap(),
    )
    .unwrap();
    let by_group = request(json!({"allowed_principals": [group(fixtures::GROUP_MEMBER)]}));
    for _ in 0..3 {
        let e = c.authorize(fixtures::TOK_VALID, &by_group).unwrap_err();
        assert_eq!(e.status, tc_status::TC_NOT_AUTHORIZED, "{e}");
        assert!(
            e.message.contains("view_my_groups_and_memberships"),
            "the message names the missing dependency: {e}"
        );
    }
    assert_eq!(
        fake.counters().dependent_token,
        1,
        "one grant, not one per request"
    );
    // Another token: its own grant (consents are per user), then cached with it.
    for _ in 0..2 {
        let e = c.authorize(fixtures::TOK_BOB, &by_group).unwrap_err();
        assert_eq!(e.status, tc_status::TC_NOT_AUTHORIZED);
    }
    assert_eq!(fake.counters().dependent_token, 2, "one grant per token");
    assert_eq!(fake.counters().groups, 0);
    // Identity and public rules still work.
    let mixed = request(
        json!({"allowed_principals": [group(fixtures::GROUP_MEMBER), identity(fixtures::ALICE_ID)]}),
    );
    assert_eq!(
        c.authorize(fixtures::TOK_VALID, &mixed).unwrap().matched,
        identity(fixtures::ALICE_ID)
    );
    let public = request(json!({"allowed_principals": ["public"], "allow_public": true}));
    assert_eq!(
        c.authorize(fixtures::TOK_VALID, &public).unwrap().matched,
        "public"
    );
    // Eager groups say why.
    let eager = Checker::new(
        Config::from_value(&config(
            &fake,
            json!({"client_id": "no-groups-client", "client_secret": "no-groups-secret",
                   "expected_audience": "test-client", "fetch_groups": "eager"}),
        ))
        .unwrap(),
    )
    .unwrap();
    let s = eager.check(fixtures::TOK_VALID).unwrap();
    assert!(matches!(s.groups, Groups::NotGranted(_)), "{:?}", s.groups);
    let doc: Value = serde_json::from_str(&s.to_json(None)).unwrap();
    assert_eq!(doc["groups_status"], "not_granted");
    assert!(doc["groups_error"]
        .as_str()
        .unwrap()
        .contains("view_my_groups_and_memberships"));
}

/// Consents are per user: a user who consented before the Groups dependency was added gets no
/// Groups token, and that says nothing about other users (before: one such grant denied group
/// rules to every user of the checker for the cache lifetime).
#[test]
fn groups_consent_is_per_token() {
    let fake = FakeGlobus::start();
    let c = checker(&fake, json!({}));
    let member = fixtures::GROUP_MEMBER;
    let old_consent = unique_token(
        &fake,
        "old-consent",
        json!({"groups": [member], "no_groups_consent": true}),
    );
    let consented = unique_token(&fake, "consented", json!({"groups": [member]}));
    let by_group = request(json!({"allowed_principals": [group(member)]}));
    let e = c.authorize(&old_consent, &by_group).unwrap_err();
    assert_eq!(e.status, tc_status::TC_NOT_AUTHORIZED, "{e}");
    assert!(e.message.contains("consented"), "{e}");
    let a = c
        .authorize(&consented, &by_group)
        .expect("another user's grant has it");
    assert_eq!(a.matched, group(member));
    // The first user's answer is cached with their token: no new grant for them.
    let grants = fake.counters().dependent_token;
    c.authorize(&old_consent, &by_group).unwrap_err();
    assert_eq!(fake.counters().dependent_token, grants);
}

#[test]
fn a_revoked_token_is_inactive_when_the_grant_says_invalid_grant() {
    let fake = FakeGlobus::start();
    let c = checker(&fake, json!({}));
    let t = unique_token(
        &fake,
        "revoked",
        json!({"identity_set": [fixtures::ALICE_ID], "groups": [fixtures::GROUP_MEMBER]}),
    );
    c.check(&t).expect("active, and now cached");
    fake.remove_token(&t); // revoked at Globus Auth
    let by_group = request(json!({"allowed_principals": [group(fixtures::GROUP_MEMBER)]}));
    let e = c.authorize(&t, &by_group).unwrap_err();
    assert_eq!(e.status, tc_status::TC_INACTIVE_TOKEN, "{e}");
    assert!(e.message.contains("invalid_grant"), "{e}");
    // Its entries were purged: the next check asks again, and learns it is inactive.
    let before = fake.counters().introspect;
    assert_eq!(status(c.check(&t)), tc_status::TC_INACTIVE_TOKEN);
    assert_eq!(fake.counters().introspect, before + 1);
    // Dependent tokens too.
    let t2 = unique_token(&fake, "revoked-dep", json!({}));
    c.check(&t2).unwrap();
    fake.remove_token(&t2);
    assert_eq!(
        status(c.dependent_token(&t2, fixtures::TRANSFER_SCOPE)),
        tc_status::TC_INACTIVE_TOKEN
    );
}

#[test]
fn a_scope_consented_since_the_cached_grant_is_granted_again_once() {
    let fake = FakeGlobus::start();
    let c = checker(&fake, json!({}));
    let t = unique_token(&fake, "consent", json!({}));
    // The first grant is fresh: its answer stands.
    assert_eq!(
        status(c.dependent_token(&t, fixtures::TRANSFER_SCOPE)),
        tc_status::TC_NOT_AUTHORIZED
    );
    assert_eq!(fake.grant_count(&t), 1);
    // The user consents to transfer; the cached grant lacks it: asked once more.
    fake.add_tokens(json!({ t.clone(): {"dependent_tokens": [{"scope": fixtures::TRANSFER_SCOPE, "resource_server": fixtures::TRANSFER_RESOURCE_SERVER}]} }));
    let d = c.dependent_token(&t, fixtures::TRANSFER_SCOPE).unwrap();
    assert_eq!(d.resource_server, fixtures::TRANSFER_RESOURCE_SERVER);
    assert_eq!(fake.grant_count(&t), 2);
    // Still lacking another scope: at most one more grant per cache lifetime.
    for _ in 0..3 {
        assert_eq!(
            status(c.dependent_token(&t, "urn:globus:auth:scope:other:all")),
            tc_status::TC_NOT_AUTHORIZED
        );
    }
    assert_eq!(
        fake.grant_count(&t),
        2,
        "not asked again within the cache lifetime"
    );
}

#[test]
fn a_groups_401_for_a_cached_dependent_token_gets_one_new_grant() {
    let fake = FakeGlobus::start();
    let c = checker(&fake, json!({}));
    let spec = json!({"identity_set": [fixtures::ALICE_ID], "groups": [fixtures::GROUP_MEMBER],
                      "dependent_tokens": [{"scope": fixtures::TRANSFER_SCOPE, "resource_server": fixtures::TRANSFER_RESOURCE_SERVER}]});
    let t = unique_token(&fake, "groups-401", spec.clone());
    let by_group = request(json!({"allowed_principals": [group(fixtures::GROUP_MEMBER)]}));
    // The grant is cached (for a transfer token), then its tokens are revoked at Globus Auth.
    c.dependent_token(&t, fixtures::TRANSFER_SCOPE).unwrap();
    assert!(fake.revoke_dependent_tokens(Some(&t)) > 0);
    c.authorize(&t, &by_group)
        .expect("a new grant, and the groups with it");
    assert_eq!(fake.grant_count(&t), 2, "one new grant");
    assert_eq!(fake.counters().groups, 2, "the 401, then the answer");
    // When the new grant's token is refused too: unavailable, no loop.
    let t2 = unique_token(&fake, "groups-401-again", spec);
    c.dependent_token(&t2, fixtures::TRANSFER_SCOPE).unwrap();
    fake.set_fault(json!({"endpoint": "groups", "status": 401, "count": 5}));
    let e = c.authorize(&t2, &by_group).unwrap_err();
    assert_eq!(e.status, tc_status::TC_AUTH_UNAVAILABLE, "{e}");
    assert_eq!(fake.grant_count(&t2), 2, "one new grant per call at most");
    assert_eq!(fake.counters().groups, 4);
}
