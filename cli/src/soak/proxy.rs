//! A trap for requests that leak to a proxy: `--fleet` points `HTTP_PROXY`, `HTTPS_PROXY` and
//! `ALL_PROXY` (and their lowercase forms) at this listener. The library must never send a
//! request for a loopback authorization server through a proxy, so every connection it
//! accepts is counted (and answered 502, closed).

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

pub(super) struct ProxyTrap {
    url: String,
    connections: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ProxyTrap {
    pub(super) fn start() -> Result<ProxyTrap, String> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .map_err(|e| format!("cannot open the proxy trap: {e}"))?;
        let port = listener.local_addr().map_err(|e| e.to_string())?.port();
        listener
            .set_nonblocking(true)
            .map_err(|e| format!("cannot open the proxy trap: {e}"))?;
        let connections = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (connections, stop) = (connections.clone(), stop.clone());
            thread::Builder::new()
                .name("soak-proxy-trap".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        match listener.accept() {
                            Ok((mut s, _)) => {
                                connections.fetch_add(1, Ordering::Relaxed);
                                let _ = s.set_nonblocking(false);
                                let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
                                let mut buf = [0u8; 4096];
                                let _ = s.read(&mut buf);
                                let _ = s.write_all(
                                    b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\
                                      Connection: close\r\n\r\n",
                                );
                            }
                            Err(_) => thread::sleep(Duration::from_millis(20)),
                        }
                    }
                })
                .map_err(|e| format!("cannot start the proxy trap: {e}"))?
        };
        Ok(ProxyTrap {
            url: format!("http://127.0.0.1:{port}"),
            connections,
            stop,
            thread: Some(thread),
        })
    }

    /// Points the proxy variables of this process (and of the children it starts later) at the
    /// trap. Called before the soak starts any other thread (the environment is not thread-safe
    /// to change; the trap's own thread never reads it).
    pub(super) fn export(&self) {
        for name in [
            "HTTP_PROXY",
            "HTTPS_PROXY",
            "ALL_PROXY",
            "http_proxy",
            "https_proxy",
            "all_proxy",
        ] {
            std::env::set_var(name, &self.url);
        }
        // Exceptions for other hosts only: loopback must be exempt without being listed.
        std::env::set_var("NO_PROXY", "example.invalid,.example.org");
        std::env::remove_var("no_proxy");
        // Not a CGI process: HTTP_PROXY counts.
        std::env::remove_var("REQUEST_METHOD");
    }

    pub(super) fn url(&self) -> &str {
        &self.url
    }

    pub(super) fn connections(&self) -> u64 {
        self.connections.load(Ordering::Relaxed)
    }
}

impl Drop for ProxyTrap {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
