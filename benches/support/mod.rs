//! What the benchmarks that need real cache servers share: `redis-server` and `memcached`
//! processes on free loopback ports (killed on drop) and checker configs for the fake server.
#![allow(dead_code)]

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fake_globus::{fixtures, FakeGlobus};
use serde_json::{json, Value};

/// A cache server process, killed when dropped.
pub struct Server {
    child: Child,
    /// The `cache_config` that points a checker at it.
    pub cache: Value,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start(bin: &str, args: &[&str], port: u16, cache: Value) -> Server {
    let child = Command::new(bin)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot start `{bin}` ({e}): `apt-get install -y redis-server memcached`")
        });
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{bin} did not start");
        std::thread::sleep(Duration::from_millis(10));
    }
    Server { child, cache }
}

pub fn redis() -> Server {
    let port = free_port();
    let p = port.to_string();
    start(
        "redis-server",
        &[
            "--port",
            &p,
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        port,
        json!({"backend": "redis", "url": format!("redis://127.0.0.1:{port}/0")}),
    )
}

pub fn memcached() -> Server {
    let port = free_port();
    let p = port.to_string();
    let mut args = vec!["-p", &p, "-l", "127.0.0.1", "-U", "0"];
    if unsafe { libc::geteuid() } == 0 {
        args.extend(["-u", "root"]);
    }
    start(
        "memcached",
        &args,
        port,
        json!({"backend": "memcached", "url": format!("127.0.0.1:{port}")}),
    )
}

/// `base` with the keys of `extra` set.
pub fn with(base: &Value, extra: Value) -> Value {
    let mut v = base.clone();
    for (k, x) in extra.as_object().unwrap() {
        v[k] = x.clone();
    }
    v
}

/// A checker config for the fake server with this `cache_config`.
pub fn config(fake: &FakeGlobus, cache: &Value) -> Value {
    json!({
        "client_id": fixtures::CLIENT_ID,
        "client_secret": fixtures::CLIENT_SECRET,
        "expected_scopes": ["urn:globus:auth:scope:test:all"],
        "auth_url": fake.url(),
        "groups_url": fake.url(),
        "verify_credentials": false,
        "cache_config": cache,
    })
}
