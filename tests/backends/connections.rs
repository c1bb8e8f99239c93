//! How the backend is reached: Redis over TLS with a private CA, and memcached spread over two
//! servers.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::cache::{alice, bob, checker, new_token};
use crate::common::servers::{free_port, redis_server_args, ServerProcess, TempDir};
use crate::server::{new_tokens, Backend, Server};
use fake_globus::FakeGlobus;
use serde_json::json;
use tokenchecker::internals::stats::stats;
use tokenchecker::Source;

/// `rediss://` against a TLS-only redis-server, trusting a private CA (`ssl_ca_certs`).
pub fn tls(fake: &FakeGlobus) {
    let dir = TempDir::new("backends-tls");
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir.dir())
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| {
                panic!("cannot run openssl ({e}): install it (apt-get install -y openssl)")
            });
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    openssl(
        &[
            &["req", "-x509"][..],
            &ec,
            &[
                "-keyout",
                "ca.key",
                "-out",
                "ca.crt",
                "-days",
                "2",
                "-subj",
                "/CN=tokenchecker test CA",
            ],
        ]
        .concat(),
    );
    openssl(
        &[
            &["req"][..],
            &ec,
            &[
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
                "-subj",
                "/CN=localhost",
            ],
        ]
        .concat(),
    );
    std::fs::write(
        dir.path("ext.cnf"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]);
    let port = free_port();
    let mut args = redis_server_args(0); // no plain port: TLS only
    args.extend(
        [
            "--tls-port",
            &port.to_string(),
            "--tls-cert-file",
            &dir.path("server.crt"),
            "--tls-key-file",
            &dir.path("server.key"),
            "--tls-ca-cert-file",
            &dir.path("ca.crt"),
            "--tls-auth-clients",
            "no",
        ]
        .map(String::from),
    );
    let _server = ServerProcess::start("redis-server", &args, port, Duration::from_secs(10));

    let cache = json!({
        "backend": "redis",
        "url": format!("rediss://localhost:{port}/0"),
        "ssl_ca_certs": dir.path("ca.crt"),
    });
    let c = checker(fake, &cache);
    let tok = new_token(fake, "tls", alice());
    assert_eq!(c.check(&tok).unwrap().source, Source::Network);
    let s = checker(fake, &cache).check(&tok).unwrap();
    assert_eq!(s.source, Source::Redis, "over TLS");

    // Without the CA the server's certificate is not trusted: checks still work, uncached.
    let errors = stats().backend_errors.get();
    let c = checker(
        fake,
        &json!({"backend": "redis", "url": format!("rediss://localhost:{port}/0")}),
    );
    assert_eq!(c.check(&tok).unwrap().source, Source::Network);
    assert!(stats().backend_errors.get() > errors);
}

/// Two memcached servers: keys are spread over both, and each process finds them.
pub fn memcached_spread(fake: &FakeGlobus) {
    let one = Server::start(Backend::Memcached);
    let two = Server::start(Backend::Memcached);
    let cache = json!({"backend": "memcached", "url": [one.url(), two.url()]});
    let c = checker(fake, &cache);
    let tokens = new_tokens(fake, "spread", 24, bob());
    for t in &tokens {
        c.check(t).unwrap();
    }
    // Entries only (not the identity index, `tc:x:…`).
    let entries = |s: &Server| {
        s.dump()
            .iter()
            .filter(|(k, _)| !k.starts_with("tc:x:"))
            .count()
    };
    let (n1, n2) = (entries(&one), entries(&two));
    assert_eq!(n1 + n2, tokens.len());
    assert!(n1 > 0 && n2 > 0, "keys spread: {n1} + {n2}");
    let d = checker(fake, &cache);
    for t in &tokens {
        assert_eq!(d.check(t).unwrap().source, Source::Memcached);
    }
}
