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
//! [`FakeGlobus::start_tls`] serves the same app over HTTPS with a
//! certificate from a fresh test CA ([`FakeGlobus::ca_pem`]).
//!
//! See `README.md` for the HTTP endpoints, control API and fault modes.

mod conn;
mod faults;
pub mod fixtures;
mod model;
mod server;
mod state;
mod tls;

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
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
    tls: Option<TlsFiles>,
}

/// The CA of a TLS server, in memory and in a file of a private temp dir.
struct TlsFiles {
    ca_pem: String,
    dir: PathBuf,
    ca_path: PathBuf,
}

impl TlsFiles {
    fn write(ca_pem: String) -> io::Result<TlsFiles> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let dir = std::env::temp_dir().join(format!(
            "fake-globus-tls-{}-{n}-{nanos:08x}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir)?;
        let ca_path = dir.join("ca.pem");
        if let Err(e) = std::fs::write(&ca_path, &ca_pem) {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(e);
        }
        Ok(TlsFiles {
            ca_pem,
            dir,
            ca_path,
        })
    }
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
        Self::launch(config, None)
    }

    /// Starts an HTTPS server with the fixtures seeded, on 127.0.0.1 and a
    /// free port, with a certificate for `localhost` and `127.0.0.1` issued by
    /// a fresh test CA (see [`FakeGlobus::ca_pem`]). Every server has its
    /// own CA. Panics if the server cannot start.
    pub fn start_tls() -> FakeGlobus {
        Self::try_start_tls(Config::default()).expect("fake-globus: failed to start (TLS)")
    }

    /// Like [`FakeGlobus::start_tls`] with `config`; reports bind, runtime,
    /// certificate and temp-file errors.
    pub fn try_start_tls(config: Config) -> io::Result<FakeGlobus> {
        let material = tls::generate()?;
        let files = TlsFiles::write(material.ca_pem)?;
        match Self::launch(config, Some(material.server_config)) {
            Ok(mut fake) => {
                fake.tls = Some(files);
                Ok(fake)
            }
            Err(e) => {
                let _ = std::fs::remove_dir_all(&files.dir);
                Err(e)
            }
        }
    }

    fn launch(
        config: Config,
        tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
    ) -> io::Result<FakeGlobus> {
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
                        Ok(l) => l,
                        Err(e) => {
                            eprintln!("fake-globus: cannot register listener: {e}");
                            return;
                        }
                    };
                    match tls {
                        None => {
                            let listener = conn::KillableListener(listener);
                            tokio::select! {
                                _ = axum::serve(listener, app) => {}
                                _ = shutdown_rx => {}
                            }
                        }
                        Some(config) => {
                            let listener = tls::TlsListener::spawn(listener, config);
                            tokio::select! {
                                _ = axum::serve(listener, app) => {}
                                _ = shutdown_rx => {}
                            }
                        }
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
            tls: None,
        })
    }

    /// Base URL (no trailing slash). Serves both the Auth and the Groups
    /// paths. Plain: `http://127.0.0.1:PORT`; TLS: `https://localhost:PORT`
    /// (a host name, so clients verify it against the certificate).
    pub fn url(&self) -> String {
        match self.tls {
            Some(_) => format!("https://localhost:{}", self.addr.port()),
            None => format!("http://{}", self.addr),
        }
    }

    /// The bound address (always 127.0.0.1).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Whether this server speaks HTTPS ([`FakeGlobus::start_tls`]).
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// PEM of the test CA that issued the TLS server's certificate.
    /// Panics for a plain-HTTP server.
    pub fn ca_pem(&self) -> String {
        self.tls_files().ca_pem.clone()
    }

    /// A file holding [`FakeGlobus::ca_pem`], in a temp dir removed when the
    /// server is dropped. Panics for a plain-HTTP server.
    pub fn ca_pem_path(&self) -> PathBuf {
        self.tls_files().ca_path.clone()
    }

    fn tls_files(&self) -> &TlsFiles {
        self.tls
            .as_ref()
            .expect("fake-globus: not a TLS server (use FakeGlobus::start_tls)")
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

    /// Removes one token: introspection says inactive and grants fail with
    /// `invalid_grant`, but dependent tokens already granted from it keep
    /// working until they expire or are revoked
    /// ([`FakeGlobus::revoke_dependent_tokens`]).
    pub fn remove_token(&self, token: &str) {
        self.state.remove_token(token);
    }

    /// Registers (or replaces) a client whose scope depends on the Groups
    /// scope: its grants include a groups token.
    pub fn add_client(&self, id: &str, secret: &str) {
        self.state.add_client(id, secret, true);
    }

    /// Registers (or replaces) a client whose scope lacks the Groups
    /// dependency: its grants have no groups.api.globus.org token (possibly
    /// an empty array).
    pub fn add_client_without_groups(&self, id: &str, secret: &str) {
        self.state.add_client(id, secret, false);
    }

    /// Revokes the dependent tokens granted from `original` (`None`: every
    /// dependent token); they then answer 401 at `my_groups`. Returns how
    /// many were revoked.
    pub fn revoke_dependent_tokens(&self, original: Option<&str>) -> usize {
        self.state.revoke_grants(original)
    }

    /// Revokes one dependent token (an `access_token` of a grant); returns
    /// whether it existed.
    pub fn revoke_dependent_token(&self, access_token: &str) -> bool {
        self.state.revoke_grant(access_token)
    }

    /// Dependent-token grant requests naming `original` since start / the
    /// last [`FakeGlobus::reset`], successful or not (requests rejected for
    /// bad client credentials or grant type, or replaced by a fault, are
    /// not counted).
    pub fn grant_count(&self, original: &str) -> u64 {
        self.state.grant_count(original)
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

    /// Zeroes counters (and [`FakeGlobus::grant_count`]s) and clears faults;
    /// tokens, clients and dependent tokens are kept.
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
        if let Some(tls) = self.tls.take() {
            let _ = std::fs::remove_dir_all(&tls.dir);
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
