//! A real HTTP fake of Globus Auth (token introspection, dependent tokens)
//! and Globus Groups (`my_groups`), with fault injection and request counters.
//!
//! ```no_run
//! use fake_globus::{fixtures, FakeGlobus};
//!
//! let fake = FakeGlobus::start(); // own thread + own tokio runtime
//! let base = fake.url();          // e.g. "http://127.0.0.1:40123"
//! // ... point the code under test at `base`, use fixtures::TOK_VALID ...
//! fake.set_fault(serde_json::json!({"endpoint": "introspect", "status": 503, "count": 1}));
//! assert_eq!(fake.counters().introspect, 0);
//! ```
//!
//! See `README.md` for the HTTP endpoints, control API and fault modes.

mod conn;
mod faults;
pub mod fixtures;
mod model;
mod server;
mod state;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::oneshot;

use crate::state::AppState;

/// Request counters since start or the last [`FakeGlobus::reset`].
///
/// `max_concurrent_*` is the highest number of requests in flight at once on
/// that endpoint (a streamed fault body counts until it ends).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub introspect: u64,
    pub dependent_token: u64,
    pub groups: u64,
    pub max_concurrent_introspect: u64,
    pub max_concurrent_dependent_token: u64,
    pub max_concurrent_groups: u64,
}

/// How to start a [`FakeGlobus`].
#[derive(Debug, Clone)]
pub struct Config {
    /// Port on 127.0.0.1; 0 picks a free one.
    pub port: u16,
    /// Seed the [`fixtures`] tokens.
    pub seed: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            port: 0,
            seed: true,
        }
    }
}

/// A running fake Globus server on its own OS thread and tokio runtime.
///
/// All methods are synchronous; dropping it shuts the server down (cutting
/// any open connections, including hung ones).
pub struct FakeGlobus {
    addr: SocketAddr,
    state: Arc<AppState>,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl FakeGlobus {
    /// Starts a server with the fixtures seeded, on 127.0.0.1 and a free port.
    ///
    /// Panics if the server cannot start (tests want a loud failure).
    pub fn start() -> FakeGlobus {
        Self::try_start(Config::default()).expect("fake-globus: failed to start")
    }

    /// Starts a server with no tokens (the `test-client` client still exists).
    pub fn start_unseeded() -> FakeGlobus {
        Self::try_start(Config {
            seed: false,
            ..Config::default()
        })
        .expect("fake-globus: failed to start")
    }

    /// Starts a server with `config`; reports bind / runtime errors.
    pub fn try_start(config: Config) -> io::Result<FakeGlobus> {
        let listener = std::net::TcpListener::bind(("127.0.0.1", config.port))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("fake-globus-worker")
            .enable_all()
            .build()?;
        let state = AppState::new(config.seed);
        let app =
            server::router(Arc::clone(&state)).into_make_service_with_connect_info::<conn::Conn>();
        let (shutdown, shutdown_rx) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("fake-globus".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(listener) {
                        Ok(l) => conn::KillableListener(l),
                        Err(e) => {
                            eprintln!("fake-globus: cannot register listener: {e}");
                            return;
                        }
                    };
                    tokio::select! {
                        _ = axum::serve(listener, app) => {}
                        _ = shutdown_rx => {}
                    }
                });
                // Drops every connection task, hung or streaming.
                runtime.shutdown_timeout(Duration::from_secs(1));
            })?;
        Ok(FakeGlobus {
            addr,
            state,
            shutdown: Some(shutdown),
            thread: Some(thread),
        })
    }

    /// Base URL, e.g. `http://127.0.0.1:40123` (no trailing slash). Serves
    /// both the Auth and the Groups paths.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Adds or replaces tokens: `{"<token>": <spec>, ...}` (see README).
    /// Panics on an invalid spec; see [`FakeGlobus::try_add_tokens`].
    pub fn add_tokens(&self, tokens: Value) {
        if let Err(e) = self.try_add_tokens(tokens) {
            panic!("fake-globus: add_tokens: {e}");
        }
    }

    /// Like [`FakeGlobus::add_tokens`] but returns the validation error.
    pub fn try_add_tokens(&self, tokens: Value) -> Result<(), String> {
        self.state.add_tokens(tokens).map(|_| ())
    }

    /// Removes one token (dependent tokens derived from it stop working).
    pub fn remove_token(&self, token: &str) {
        self.state.remove_token(token);
    }

    /// Registers (or changes the secret of) a client.
    pub fn add_client(&self, id: &str, secret: &str) {
        self.state.add_client(id, secret);
    }

    /// Current counters.
    pub fn counters(&self) -> Counters {
        self.state.counters()
    }

    /// Sets the fault for its endpoint (replacing that endpoint's previous
    /// one). Panics on an invalid spec; see [`FakeGlobus::try_set_fault`].
    pub fn set_fault(&self, fault: Value) {
        if let Err(e) = self.try_set_fault(fault) {
            panic!("fake-globus: set_fault: {e}");
        }
    }

    /// Like [`FakeGlobus::set_fault`] but returns the validation error.
    pub fn try_set_fault(&self, fault: Value) -> Result<(), String> {
        self.state.set_fault(faults::Fault::parse(fault)?);
        Ok(())
    }

    /// Clears all faults.
    pub fn clear_faults(&self) {
        self.state.clear_faults();
    }

    /// Zeroes counters and clears faults; tokens and clients are kept.
    pub fn reset(&self) {
        self.state.reset();
    }
}

impl Drop for FakeGlobus {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl std::fmt::Debug for FakeGlobus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeGlobus")
            .field("url", &self.url())
            .finish()
    }
}
