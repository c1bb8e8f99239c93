//! Real server processes for the cache-backend tests (`redis-server`, `memcached`): free
//! loopback ports, a child process killed when dropped, a scratch directory, and waiting for
//! a condition with the cache's stats in the failure message.

use std::ffi::OsStr;
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokenchecker::internals::stats::stats;

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

/// A TCP link to a server on loopback that can be cut (a network partition: the server keeps
/// its data, and nothing sent while the link is cut ever reaches it) and healed.
pub struct Link {
    pub port: u16,
    cut: Arc<AtomicBool>,
    open: Arc<Mutex<Vec<TcpStream>>>,
}

impl Link {
    pub fn to(server_port: u16) -> Link {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut = Arc::new(AtomicBool::new(false));
        let open = Arc::new(Mutex::new(Vec::new()));
        let (cut2, open2) = (cut.clone(), open.clone());
        // Lives as long as the test process (a blocked accept cannot be stopped portably).
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                if cut2.load(Ordering::SeqCst) {
                    continue; // dropped: the connection closes at once
                }
                let Ok(server) = TcpStream::connect(("127.0.0.1", server_port)) else {
                    continue;
                };
                let mut all = open2.lock().unwrap();
                for (from, to) in [(&client, &server), (&server, &client)] {
                    let (mut from, mut to) = (from.try_clone().unwrap(), to.try_clone().unwrap());
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                }
                all.extend([client, server]);
            }
        });
        Link { port, cut, open }
    }

    /// Closes every connection and refuses new ones until [`Self::heal`].
    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for s in self.open.lock().unwrap().drain(..) {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }

    pub fn heal(&self) {
        self.cut.store(false, Ordering::SeqCst);
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
            stats().to_json(tokenchecker::internals::process::cache().describe())
        );
        std::thread::sleep(every);
    }
}

/// [`wait_until_every`] 20 ms.
pub fn wait_until(what: &str, limit: Duration, done: impl FnMut() -> bool) {
    wait_until_every(what, limit, Duration::from_millis(20), done);
}
