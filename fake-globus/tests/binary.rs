//! Tests of the `fake-globus` binary.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn spawn(args: &[&str]) -> (Child, String) {
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
    assert!(url.starts_with("http://127.0.0.1:"));
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
fn bad_args_exit_2() {
    for args in [
        &["--bogus"][..],
        &["--port", "nope"],
        &["--tokens", "/no/such/file.json"],
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
