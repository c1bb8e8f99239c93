//! Proxies: with `HTTP_PROXY`/`HTTPS_PROXY` set, requests to a loopback auth server never go
//! through the proxy (the credentials and tokens stay on the host); remote hosts go through the
//! proxy the environment names, except those `NO_PROXY` lists.
//!
//! One test in its own binary: it sets the process's environment.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use common::*;
use fake_globus::{fixtures, FakeGlobus};
use serde_json::json;
use tokenchecker::{tc_status, Checker, Config};

/// A proxy that records the first line of every request it gets and answers 502.
fn start_proxy() -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut first = String::new();
            let _ = BufReader::new(&stream).read_line(&mut first);
            log.lock().unwrap().push(first.trim().to_string());
            let _ = stream.write_all(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n");
        }
    });
    (url, seen)
}

fn remote_checker(extra: serde_json::Value) -> Checker {
    let mut c = json!({
        "client_id": fixtures::CLIENT_ID, "client_secret": fixtures::CLIENT_SECRET,
        "expected_scopes": [SCOPE],
        "auth_url": "https://auth.proxied.invalid", "groups_url": "https://groups.proxied.invalid",
        "verify_credentials": false, "max_retries": 0, "call_timeout_ms": 3000,
    });
    merge(&mut c, extra);
    Checker::new(Config::from_value(&c).unwrap()).unwrap()
}

#[test]
fn loopback_is_never_proxied_and_remote_hosts_honour_the_environment() {
    let (proxy, seen) = start_proxy();
    for (name, value) in [
        ("HTTP_PROXY", proxy.as_str()),
        ("http_proxy", proxy.as_str()),
        ("HTTPS_PROXY", proxy.as_str()),
        ("ALL_PROXY", proxy.as_str()),
    ] {
        // SAFETY: the only test of this binary; no other thread reads the environment now.
        unsafe { std::env::set_var(name, value) };
    }
    unsafe { std::env::remove_var("NO_PROXY") };
    unsafe { std::env::remove_var("no_proxy") };

    // Plain http to the loopback fake: straight there, the credentials never reach the proxy.
    let fake = FakeGlobus::start();
    let local = checker(&fake, json!({"verify_credentials": true}));
    local.check(fixtures::TOK_VALID).expect("checked directly");
    let localhost = checker(
        &fake,
        json!({"auth_url": fake.url().replace("127.0.0.1", "localhost"),
               "groups_url": fake.url().replace("127.0.0.1", "localhost")}),
    );
    localhost
        .check(fixtures::TOK_BOB)
        .expect("localhost is loopback too");
    let lines = seen.lock().unwrap().clone();
    assert!(lines.is_empty(), "{lines:?}");
    assert!(fake.counters().introspect >= 3);

    // A remote server: through the proxy, with CONNECT (the proxy refuses: unavailable).
    let remote = remote_checker(json!({}));
    let e = remote.check("some-token").unwrap_err();
    assert_eq!(e.status, tc_status::TC_AUTH_UNAVAILABLE, "{e}");
    let lines = seen.lock().unwrap().clone();
    assert_eq!(
        lines,
        vec!["CONNECT auth.proxied.invalid:443 HTTP/1.1".to_string()]
    );

    // NO_PROXY: the same server directly (it does not exist: unavailable, and the proxy sees
    // nothing more).
    unsafe { std::env::set_var("NO_PROXY", "localhost, .proxied.invalid") };
    let direct = remote_checker(json!({}));
    let e = direct.check("some-token").unwrap_err();
    assert_eq!(e.status, tc_status::TC_AUTH_UNAVAILABLE, "{e}");
    let lines = seen.lock().unwrap().clone();
    assert_eq!(lines.len(), 1, "{lines:?}");
}
