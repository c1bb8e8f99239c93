//! What the benchmarks that need real cache servers share: `redis-server` and `memcached`
//! processes on free loopback ports (killed on drop) and checker configs for the fake server.
#![allow(dead_code)]

use std::time::Duration;

use fake_globus::{fixtures, FakeGlobus};
use serde_json::{json, Value};

/// The integration tests' server processes, shared rather than copied.
#[path = "../../tests/common/servers.rs"]
mod servers;
use servers::{free_port, redis_server_args, ServerProcess};

/// A cache server process, killed when dropped.
pub struct Server {
    _process: ServerProcess,
    /// The `cache_config` that points a checker at it.
    pub cache: Value,
}

pub fn redis() -> Server {
    let port = free_port();
    Server {
        _process: ServerProcess::start(
            "redis-server",
            &redis_server_args(port),
            port,
            Duration::from_secs(10),
        ),
        cache: json!({"backend": "redis", "url": format!("redis://127.0.0.1:{port}/0")}),
    }
}

pub fn memcached() -> Server {
    let port = free_port();
    let p = port.to_string();
    let mut args = vec!["-p", &p, "-l", "127.0.0.1", "-U", "0"];
    if unsafe { libc::geteuid() } == 0 {
        args.extend(["-u", "root"]);
    }
    Server {
        _process: ServerProcess::start("memcached", &args, port, Duration::from_secs(10)),
        cache: json!({"backend": "memcached", "url": format!("127.0.0.1:{port}")}),
    }
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
