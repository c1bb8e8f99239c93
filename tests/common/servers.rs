//! Real server processes for the cache-backend tests (`redis-server`, `memcached`): free
//! loopback ports, a child process killed when dropped, a scratch directory, and waiting for
//! a condition with the cache's stats in the failure message.

use std::ffi::OsStr;
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokenchecker::stats::stats;

/// `n` distinct free loopback ports (all held while choosing, so they differ).
pub fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

/// A free loopback port: nothing listens on it until a server is started there.
pub fn free_port() -> u16 {
    free_ports(1)[0]
}

/// The arguments of a throwaway `redis-server` on loopback `port`: nothing is persisted.
pub fn redis_server_args(port: u16) -> Vec<String> {
    [
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
    ]
    .map(String::from)
    .to_vec()
}

/// A server child process, killed (and reaped) when dropped.
pub struct ServerProcess(Child);

impl ServerProcess {
    /// Starts `bin` with `args` and waits up to `ready_within` until it accepts connections on
    /// `port`. Never skipped: without the binary the test fails and says what to install.
    pub fn start<S: AsRef<OsStr>>(
        bin: &str,
        args: &[S],
        port: u16,
        ready_within: Duration,
    ) -> ServerProcess {
        let child = Command::new(bin)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start `{bin}` ({e}). These tests need real servers and are never \
                     skipped: install it, e.g. `apt-get install -y {bin}`"
                )
            });
        // Owned before waiting, so that a server that never comes up is killed all the same.
        let process = ServerProcess(child);
        let deadline = Instant::now() + ready_within;
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "{bin} did not start on port {port}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        process
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A fresh directory under the system's temp directory, removed when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        static N: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "tc-{name}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    /// The directory itself.
    pub fn dir(&self) -> &std::path::Path {
        &self.0
    }

    /// `file` in the directory, as a string (`""`: the directory itself).
    pub fn path(&self, file: &str) -> String {
        self.0.join(file).to_str().unwrap().to_string()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Polls `done` every `every` until it holds; fails after `limit`, naming `what` and showing
/// the cache's stats.
pub fn wait_until_every(
    what: &str,
    limit: Duration,
    every: Duration,
    mut done: impl FnMut() -> bool,
) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}; stats {}",
            stats().to_json(tokenchecker::cache::current().describe())
        );
        std::thread::sleep(every);
    }
}

/// [`wait_until_every`] 20 ms.
pub fn wait_until(what: &str, limit: Duration, done: impl FnMut() -> bool) {
    wait_until_every(what, limit, Duration::from_millis(20), done);
}
