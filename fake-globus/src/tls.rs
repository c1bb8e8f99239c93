//! The HTTPS listener: a fresh test CA, a server certificate for
//! `localhost` and `127.0.0.1` issued by it, and a listener doing the TLS
//! handshakes off the accept loop.

use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use axum::serve::Listener;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::rustls::{self, ServerConfig};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::conn::{Conn, KillableStream};

/// Everything a TLS server needs: its rustls config and the CA to trust.
pub(crate) struct TlsMaterial {
    /// PEM of the test CA that issued the server certificate.
    pub ca_pem: String,
    pub server_config: Arc<ServerConfig>,
}

fn tls_error(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(format!("fake-globus TLS setup: {e}"))
}

/// Generates a new CA and a server certificate for `localhost` (DNS SAN) and
/// `127.0.0.1` (IP SAN) signed by it (ECDSA P-256, ring provider).
pub(crate) fn generate() -> io::Result<TlsMaterial> {
    let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(tls_error)?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    // A name of its own, so a client trusting another server's CA does not
    // even find an issuer candidate.
    let ca_key = KeyPair::generate().map_err(tls_error)?;
    let tag: String = ca_key.public_key_raw()[1..9]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    ca.distinguished_name
        .push(DnType::CommonName, format!("fake-globus test CA {tag}"));
    ca.distinguished_name
        .push(DnType::OrganizationName, "fake-globus");
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca.self_signed(&ca_key).map_err(tls_error)?;
    let issuer = Issuer::new(ca, ca_key);

    let mut leaf = CertificateParams::new(vec!["localhost".to_string()]).map_err(tls_error)?;
    leaf.subject_alt_names
        .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
    leaf.distinguished_name
        .push(DnType::CommonName, "localhost");
    leaf.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf.use_authority_key_identifier_extension = true;
    let leaf_key = KeyPair::generate().map_err(tls_error)?;
    let leaf_cert = leaf.signed_by(&leaf_key, &issuer).map_err(tls_error)?;

    let chain: Vec<CertificateDer<'static>> = vec![leaf_cert.der().clone()];
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(tls_error)?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(tls_error)?;
    // The app is served over HTTP/1.1 only.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsMaterial {
        ca_pem: ca_cert.pem(),
        server_config: Arc::new(config),
    })
}

/// How long a client may take to complete its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepts TCP connections and hands out the ones whose TLS handshake
/// succeeded. Handshakes run in their own tasks, so a slow or broken client
/// does not hold up the others.
pub(crate) struct TlsListener {
    ready: mpsc::Receiver<TlsStream<TcpStream>>,
}

impl TlsListener {
    /// Starts accepting on `listener`; must be called inside the runtime.
    pub fn spawn(listener: TcpListener, config: Arc<ServerConfig>) -> TlsListener {
        let (tx, ready) = mpsc::channel(64);
        let acceptor = TlsAcceptor::from(config);
        tokio::spawn(async move {
            while !tx.is_closed() {
                let stream = match listener.accept().await {
                    Ok((stream, _peer)) => stream,
                    // e.g. EMFILE: back off a little instead of spinning.
                    Err(_) => {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let acceptor = acceptor.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    if let Ok(Ok(tls)) =
                        tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await
                    {
                        let _ = tx.send(tls).await;
                    }
                });
            }
        });
        TlsListener { ready }
    }
}

impl Listener for TlsListener {
    type Io = KillableStream<TlsStream<TcpStream>>;
    type Addr = Conn;

    async fn accept(&mut self) -> (Self::Io, Conn) {
        match self.ready.recv().await {
            Some(stream) => Conn::wrap(stream),
            // The acceptor task is gone (runtime shutting down).
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Conn> {
        Ok(Conn::detached())
    }
}
