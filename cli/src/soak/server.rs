//! Our own cache server for `--backend redis` or `--backend memcached`: started on a free
//! loopback port, and (outside `--fleet`) killed with SIGKILL and restarted under the load.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Kind {
    Redis,
    Memcached,
}

pub(super) struct CacheServer {
    kind: Kind,
    binary: String,
    port: u16,
    child: Option<Child>,
}

pub(super) fn free_port() -> Result<u16, String> {
    let l =
        TcpListener::bind("127.0.0.1:0").map_err(|e| format!("cannot find a free port: {e}"))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| format!("cannot find a free port: {e}"))
}

impl CacheServer {
    pub(super) fn start(kind: Kind, binary: &str) -> Result<CacheServer, String> {
        let mut r = CacheServer {
            kind,
            binary: binary.into(),
            port: free_port()?,
            child: None,
        };
        r.spawn()?;
        Ok(r)
    }

    pub(super) fn name(&self) -> &'static str {
        match self.kind {
            Kind::Redis => "redis-server",
            Kind::Memcached => "memcached",
        }
    }

    /// The `cache_config` for this server, entries living `timeout_s`.
    pub(super) fn cache_config(&self, timeout_s: u64) -> serde_json::Value {
        match self.kind {
            Kind::Redis => serde_json::json!({"backend": "redis", "url": self.url(),
                                              "timeout": timeout_s}),
            Kind::Memcached => serde_json::json!({"backend": "memcached", "url": self.url(),
                                                  "timeout": timeout_s}),
        }
    }

    pub(super) fn url(&self) -> String {
        match self.kind {
            Kind::Redis => format!("redis://127.0.0.1:{}", self.port),
            Kind::Memcached => format!("127.0.0.1:{}", self.port),
        }
    }

    pub(super) fn spawn(&mut self) -> Result<(), String> {
        let port = self.port.to_string();
        let mut command = Command::new(&self.binary);
        match self.kind {
            Kind::Redis => {
                command
                    .args(["--port", &port, "--bind", "127.0.0.1"])
                    .args(["--save", "", "--appendonly", "no"]);
            }
            Kind::Memcached => {
                command.args(["-p", &port, "-l", "127.0.0.1", "-U", "0"]);
                // memcached refuses to run as root unless told which user to be.
                if is_root() {
                    command.args(["-u", "root"]);
                }
            }
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", self.binary))?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.ping() {
                return Ok(());
            }
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    return Err(format!("{} exited at start ({status})", self.name()));
                }
            }
            thread::sleep(Duration::from_millis(20));
        }
        Err(format!(
            "{} did not answer on port {}",
            self.name(),
            self.port
        ))
    }

    fn ping(&self) -> bool {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
        match self.kind {
            Kind::Redis => {
                let mut buf = [0u8; 7];
                s.write_all(b"PING\r\n").is_ok()
                    && s.read_exact(&mut buf).is_ok()
                    && &buf == b"+PONG\r\n"
            }
            Kind::Memcached => {
                let mut buf = [0u8; 8];
                s.write_all(b"version\r\n").is_ok()
                    && s.read_exact(&mut buf).is_ok()
                    && &buf == b"VERSION "
            }
        }
    }

    /// SIGKILL: no goodbye to the clients.
    pub(super) fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub(super) fn alive(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }
}

/// Whether this process runs as root (memcached then needs `-u root`).
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|v| v.split_whitespace().nth(1).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

impl Drop for CacheServer {
    fn drop(&mut self) {
        self.kill();
    }
}
