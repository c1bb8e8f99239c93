//! Tests of the `fake-globus` binary.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn spawn(args: &[&str]) -> (Child, String) {
    let (child, url) = spawn_any(args);
    assert!(url.starts_with("http://127.0.0.1:"));
    (child, url)
}

/// Spawns the binary and reads the URL from its first stdout line.
fn spawn_any(args: &[&str]) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_fake-globus"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn fake-globus");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .trim_end()
        .strip_prefix("FAKE_GLOBUS_URL=")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    (child, url)
}

fn wait(child: &mut Child) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if start.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            panic!("fake-globus did not exit");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn exits_on_stdin_eof_and_loads_tokens_and_clients() {
    let dir = std::env::temp_dir().join(format!("fake-globus-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("tokens.json");
    std::fs::write(&file, r#"{"custom": {"scope": "x"}}"#).unwrap();
    let (mut child, url) = spawn(&[
        "--tokens",
        file.to_str().unwrap(),
        "--client",
        "c:s",
        "--exit-on-stdin-eof",
    ]);
    let r = common::introspect(&url, "custom");
    assert_eq!(r.json()["scope"], "x");
    assert_eq!(common::introspect(&url, "tok-valid").json()["active"], true);
    let r = common::request(
        &url,
        "POST",
        "/v2/oauth2/token/introspect",
        &[("Authorization", "Basic Yzpz")], // c:s
        b"token=custom",
    );
    assert_eq!(r.unwrap().status, 200);

    drop(child.stdin.take());
    assert_eq!(wait(&mut child).code(), Some(0));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn sigterm_exits_zero_and_no_seed() {
    let (mut child, url) = spawn(&["--no-seed"]);
    assert_eq!(
        common::introspect(&url, "tok-valid").json()["active"],
        false
    );
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(wait(&mut child).code(), Some(0));
}

#[test]
fn client_without_groups_dependency() {
    let (mut child, url) = spawn(&["--client-no-groups", "ng:pw", "--exit-on-stdin-eof"]);
    let r = common::dependent_as(&url, &common::basic("ng", "pw"), "tok-valid");
    assert_eq!(r.status, 200);
    let grant = r.json();
    let servers: Vec<&str> = grant
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["resource_server"].as_str().unwrap())
        .collect();
    assert_eq!(servers, ["transfer.api.globus.org"]);
    drop(child.stdin.take());
    assert_eq!(wait(&mut child).code(), Some(0));
}

#[test]
fn tls_ca_out_serves_https() {
    let dir = std::env::temp_dir().join(format!("fake-globus-tls-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca_file = dir.join("ca.pem");
    let (mut child, url) = spawn_any(&[
        "--tls-ca-out",
        ca_file.to_str().unwrap(),
        "--exit-on-stdin-eof",
    ]);
    assert!(url.starts_with("https://localhost:"), "{url}");
    // Written before the URL was printed.
    let ca = std::fs::read_to_string(&ca_file).unwrap();
    assert!(ca.starts_with("-----BEGIN CERTIFICATE-----"));

    let client = reqwest::blocking::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca.as_bytes()).unwrap())
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let v: serde_json::Value = client
        .post(format!("{url}/v2/oauth2/token/introspect"))
        .basic_auth("test-client", Some("test-secret"))
        .form(&[("token", "tok-valid")])
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(v["active"], true);
    let counters: serde_json::Value = client
        .get(format!("{url}/_control/counters"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(counters["introspect"], 1);
    // Without the CA: refused.
    let plain = reqwest::blocking::Client::new();
    assert!(plain.get(format!("{url}/_control/health")).send().is_err());

    drop(child.stdin.take());
    assert_eq!(wait(&mut child).code(), Some(0));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn bad_args_exit_2() {
    for args in [
        &["--bogus"][..],
        &["--port", "nope"],
        &["--tokens", "/no/such/file.json"],
        &["--client-no-groups", "nocolon"],
        &["--tls-ca-out", "/no/such/dir/ca.pem"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_fake-globus"))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(!out.stderr.is_empty());
        assert!(out.stdout.is_empty());
    }
}
