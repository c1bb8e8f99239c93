//! The C ABI's pointer plumbing, in tests that need neither the network nor the tokio runtime,
//! so that Miri can run them (scripts/miri): NULL and bad arguments, strings handed out and
//! freed, checkers created, used from the in-process cache only, and freed. Under Miri every
//! out-pointer write, every `CString::into_raw`/`from_raw` pair and every `Arc` round trip behind
//! a `tc_checker *` is checked for undefined behaviour and leaks.
//!
//! Plain `cargo test` runs them too.

use std::ffi::{c_char, CStr};
use std::ptr;

use tokenchecker::ffi::*;
use tokenchecker::tc_status;

/// The document behind `p`, freed.
unsafe fn take(p: *mut c_char) -> String {
    assert!(!p.is_null(), "a document was expected");
    let s = CStr::from_ptr(p).to_str().unwrap().to_owned();
    tc_string_free(p);
    s
}

fn code(doc: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(doc).unwrap();
    v["error"]["code"].as_str().unwrap().to_owned()
}

const CONFIG: &CStr = c"{\"client_id\":\"c\",\"client_secret\":\"s\",\"expected_scopes\":[\"a\"],\"auth_url\":\"http://127.0.0.1:9\",\"groups_url\":\"http://127.0.0.1:9\",\"verify_credentials\":false}";

#[test]
fn statics_and_free_of_null() {
    unsafe {
        tc_string_free(ptr::null_mut());
        tc_free(ptr::null_mut());
        let v = CStr::from_ptr(tc_version()).to_str().unwrap();
        assert_eq!(v, tokenchecker::VERSION);
        assert_eq!(tc_abi_version(), tokenchecker::ABI_VERSION);
        for n in 0..12u32 {
            let name = CStr::from_ptr(tc_status_name(n)).to_str().unwrap();
            assert!(name.starts_with("TC_"), "{name}");
        }
        let unknown = tc_status_name(9999);
        assert!(!unknown.is_null());
    }
}

#[test]
fn tc_new_refusals_deliver_an_owned_error() {
    unsafe {
        let mut checker = ptr::null_mut();
        let mut err = ptr::null_mut();
        // NULL config.
        let st = tc_new(ptr::null(), &mut checker, &mut err);
        assert_eq!(st, tc_status::TC_INVALID_ARGUMENT);
        assert!(checker.is_null());
        assert_eq!(code(&take(err)), "TC_INVALID_ARGUMENT");
        // NULL out_checker.
        let st = tc_new(CONFIG.as_ptr(), ptr::null_mut(), &mut err);
        assert_eq!(st, tc_status::TC_INVALID_ARGUMENT);
        assert_eq!(code(&take(err)), "TC_INVALID_ARGUMENT");
        // Not UTF-8, not JSON, an unknown key; and NULL out_error is fine.
        for bad in [
            &b"{\"client_id\":\"\xff\"}\0"[..],
            b"not json\0",
            b"{\"client_id\":\"c\",\"client_secret\":\"s\",\"expected_scopes\":[\"a\"],\"typo\":1}\0",
        ] {
            let st = tc_new(bad.as_ptr().cast(), &mut checker, &mut err);
            assert_ne!(st, tc_status::TC_OK);
            assert!(checker.is_null());
            let doc = take(err);
            assert_eq!(code(&doc), st.name(), "{doc}");
            let st2 = tc_new(bad.as_ptr().cast(), &mut checker, ptr::null_mut());
            assert_eq!(st, st2);
        }
    }
}

#[test]
fn calls_with_null_arguments() {
    unsafe {
        let mut out = ptr::null_mut();
        let st = tc_check(ptr::null(), c"tok".as_ptr(), &mut out);
        assert_eq!(st, tc_status::TC_INVALID_ARGUMENT);
        assert_eq!(code(&take(out)), "TC_INVALID_ARGUMENT");
        // NULL out_json: nothing written, still an answer.
        let st = tc_check(ptr::null(), c"tok".as_ptr(), ptr::null_mut());
        assert_eq!(st, tc_status::TC_INVALID_ARGUMENT);
        let st = tc_try_check(ptr::null(), ptr::null(), &mut out);
        assert_eq!(st, tc_status::TC_INVALID_ARGUMENT);
        take(out);
        let st = tc_authorize(ptr::null(), c"tok".as_ptr(), c"{}".as_ptr(), &mut out);
        assert_eq!(st, tc_status::TC_INVALID_ARGUMENT);
        take(out);
        assert_eq!(
            tc_purge(ptr::null(), c"tok".as_ptr()),
            tc_status::TC_INVALID_ARGUMENT
        );
        assert_eq!(
            tc_purge_identity(ptr::null(), c"id".as_ptr()),
            tc_status::TC_INVALID_ARGUMENT
        );
        assert_eq!(
            tc_check_async(ptr::null(), c"tok".as_ptr(), None, ptr::null_mut()),
            tc_status::TC_INVALID_ARGUMENT
        );
    }
}

#[test]
fn a_checker_round_trip_without_the_network() {
    unsafe {
        let mut checker = ptr::null_mut();
        let mut err = ptr::null_mut();
        let st = tc_new(CONFIG.as_ptr(), &mut checker, &mut err);
        assert_eq!(st, tc_status::TC_OK);
        assert!(!checker.is_null() && err.is_null());

        let mut out = ptr::null_mut();
        // Never seen: would need the network.
        let st = tc_try_check(checker, c"never-seen-token".as_ptr(), &mut out);
        assert_eq!(st, tc_status::TC_WOULD_BLOCK);
        assert_eq!(code(&take(out)), "TC_WOULD_BLOCK");
        // Refused before any lookup: empty, not a bearer token, not UTF-8.
        for bad in [&b"\0"[..], b"has space\0", b"\xff\xfe\0"] {
            let st = tc_try_check(checker, bad.as_ptr().cast(), &mut out);
            assert_eq!(st, tc_status::TC_INVALID_ARGUMENT);
            take(out);
        }
        // A malformed authorization request is refused before the token is looked at.
        let st = tc_try_authorize(checker, c"tok".as_ptr(), c"[1]".as_ptr(), &mut out);
        assert_eq!(st, tc_status::TC_INVALID_ARGUMENT);
        take(out);
        tc_free(checker);
    }
}

#[test]
fn policies_and_answer_fields_without_the_network() {
    use std::sync::Arc;
    use tokenchecker::{Introspection, TokenInfo};
    unsafe {
        let mut p = ptr::null_mut();
        let mut err = ptr::null_mut();
        let request = c"{\"allowed_principals\":[\"public\",\"urn:globus:groups:id:g\"]}";
        assert_eq!(
            tc_policy_new(request.as_ptr(), &mut p, &mut err),
            tc_status::TC_OK
        );
        assert!(!p.is_null() && err.is_null());
        assert_eq!(tc_policy_len(p), 2);
        let mut len = 0;
        let g = tc_policy_principal(p, 1, &mut len);
        assert_eq!(
            CStr::from_ptr(g).to_str().unwrap(),
            "urn:globus:groups:id:g"
        );
        assert_eq!(len, 22);
        assert!(tc_policy_principal(p, 2, &mut len).is_null() && len == 0);
        tc_policy_free(p);
        let mut q = ptr::null_mut();
        assert_eq!(
            tc_policy_new(c"[1]".as_ptr(), &mut q, &mut err),
            tc_status::TC_INVALID_ARGUMENT
        );
        assert!(q.is_null());
        assert_eq!(code(&take(err)), "TC_INVALID_ARGUMENT");
        // An answer as the cache holds it, behind the handle's pointer.
        let info = TokenInfo::new(Introspection {
            active: true,
            sub: Some("s".into()),
            name: Some("n\"q".into()),
            scopes: vec!["a".into()],
            exp: Some(1),
            identity_set: Some(vec!["s".into()].into()),
            extra: Some("{\"iss\":\"x\"}".into()),
            ..Default::default()
        });
        let answer = Arc::into_raw(Arc::new(info)) as *const tc_answer;
        let f = tc_answer_fields(answer);
        assert!(!f.is_null());
        let f = &*f;
        assert_eq!(f.name.as_str(), Some("n\"q"));
        assert_eq!(f.identities.to_vec(), ["s"]);
        assert_eq!(tc_answer_fields(answer), f as *const _);
        let mut json = ptr::null_mut();
        assert_eq!(tc_answer_introspection(answer, &mut json), tc_status::TC_OK);
        let doc: serde_json::Value = serde_json::from_str(&take(json)).unwrap();
        assert_eq!(doc["iss"], "x");
        assert_eq!(doc["scope"], "a");
        let again = tc_answer_retain(answer);
        tc_answer_free(answer);
        assert_eq!((*tc_answer_fields(again)).sub.as_str(), Some("s"));
        tc_answer_free(again);
        assert!(tc_answer_fields(ptr::null()).is_null());
    }
}
