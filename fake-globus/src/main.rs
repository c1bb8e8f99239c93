//! `fake-globus` binary: serves the fake on 127.0.0.1 for non-Rust tests.
//!
//! Prints `FAKE_GLOBUS_URL=http://127.0.0.1:PORT` (with `--tls-ca-out FILE`:
//! `FAKE_GLOBUS_URL=https://localhost:PORT`, after writing the test CA to
//! FILE) as its first stdout line, then serves until SIGTERM/SIGINT (exit 0)
//! or, with `--exit-on-stdin-eof`, until stdin closes.

use std::io::{Read, Write};
use std::process::ExitCode;

use fake_globus::{Config, FakeGlobus};

const USAGE: &str = "usage: fake-globus [--port N] [--tokens FILE.json] [--client ID:SECRET]... \
[--client-no-groups ID:SECRET]... [--tls-ca-out FILE] [--no-seed] [--exit-on-stdin-eof]";

struct Args {
    config: Config,
    token_files: Vec<String>,
    /// (id, secret, groups dependency)
    clients: Vec<(String, String, bool)>,
    tls_ca_out: Option<String>,
    exit_on_stdin_eof: bool,
}

fn client_arg(flag: &str, v: &str) -> Result<(String, String), String> {
    v.split_once(':')
        .filter(|(id, _)| !id.is_empty())
        .map(|(id, secret)| (id.to_string(), secret.to_string()))
        .ok_or_else(|| format!("{flag} wants ID:SECRET, got {v:?}"))
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut out = Args {
        config: Config::default(),
        token_files: Vec::new(),
        clients: Vec::new(),
        tls_ca_out: None,
        exit_on_stdin_eof: false,
    };
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let mut value = |name: &str| {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match flag.as_str() {
            "--port" => {
                let v = value("--port")?;
                out.config.port = v.parse().map_err(|_| format!("bad port {v:?}"))?;
            }
            "--tokens" => out.token_files.push(value("--tokens")?),
            "--client" => {
                let (id, secret) = client_arg("--client", &value("--client")?)?;
                out.clients.push((id, secret, true));
            }
            "--client-no-groups" => {
                let (id, secret) = client_arg("--client-no-groups", &value("--client-no-groups")?)?;
                out.clients.push((id, secret, false));
            }
            "--tls-ca-out" => {
                let v = value("--tls-ca-out")?;
                if v.is_empty() {
                    return Err("--tls-ca-out needs a file name".into());
                }
                out.tls_ca_out = Some(v);
            }
            "--no-seed" => out.config.seed = false,
            "--exit-on-stdin-eof" => out.exit_on_stdin_eof = true,
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(out)
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(msg) => {
            if !msg.is_empty() {
                eprintln!("fake-globus: {msg}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };

    let started = match args.tls_ca_out {
        Some(_) => FakeGlobus::try_start_tls(args.config.clone()),
        None => FakeGlobus::try_start(args.config.clone()),
    };
    let fake = match started {
        Ok(f) => f,
        Err(e) => {
            eprintln!("fake-globus: cannot start: {e}");
            return ExitCode::from(1);
        }
    };
    for (id, secret, groups) in &args.clients {
        if *groups {
            fake.add_client(id, secret);
        } else {
            fake.add_client_without_groups(id, secret);
        }
    }
    for file in &args.token_files {
        let loaded = std::fs::read_to_string(file)
            .map_err(|e| e.to_string())
            .and_then(|text| serde_json::from_str(&text).map_err(|e| e.to_string()))
            .and_then(|v| fake.try_add_tokens(v));
        if let Err(e) = loaded {
            eprintln!("fake-globus: --tokens {file}: {e}");
            return ExitCode::from(2);
        }
    }

    if let Some(file) = &args.tls_ca_out {
        if let Err(e) = std::fs::write(file, fake.ca_pem()) {
            eprintln!("fake-globus: --tls-ca-out {file}: {e}");
            return ExitCode::from(2);
        }
    }

    let exit = exit_trigger(args.exit_on_stdin_eof);
    let mut stdout = std::io::stdout();
    let _ = writeln!(stdout, "FAKE_GLOBUS_URL={}", fake.url());
    let _ = stdout.flush();

    let _ = exit.recv();
    drop(fake);
    ExitCode::SUCCESS
}

/// Installs the exit triggers (SIGTERM/SIGINT, and stdin EOF when asked);
/// the receiver yields once one fires. Done before the URL is printed, so a
/// signal sent right after reading it is always handled.
fn exit_trigger(exit_on_stdin_eof: bool) -> std::sync::mpsc::Receiver<()> {
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    if exit_on_stdin_eof {
        let tx = tx.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            let mut stdin = std::io::stdin();
            while matches!(stdin.read(&mut buf), Ok(n) if n > 0) {}
            let _ = tx.send(());
        });
    }
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("fake-globus: no signal handling: {e}");
            std::mem::forget(tx);
            return rx;
        }
    };
    let signals = {
        let _guard = rt.enter();
        signals()
    };
    std::thread::spawn(move || {
        rt.block_on(signals);
        let _ = tx.send(());
    });
    rx
}

#[cfg(unix)]
fn signals() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{signal, SignalKind};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    async move {
        match (term, int) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            }
            _ => std::future::pending().await,
        }
    }
}

#[cfg(not(unix))]
fn signals() -> impl std::future::Future<Output = ()> {
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Args, String> {
        parse_args(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn args() {
        let a = parse(&[
            "--port",
            "8080",
            "--client=a:b",
            "--no-seed",
            "--tokens",
            "t.json",
        ])
        .unwrap();
        assert_eq!(a.config.port, 8080);
        assert!(!a.config.seed);
        assert_eq!(a.clients, vec![("a".to_string(), "b".to_string(), true)]);
        assert_eq!(a.token_files, vec!["t.json".to_string()]);
        assert!(a.tls_ca_out.is_none());
        let a = parse(&["--client-no-groups", "c:d", "--tls-ca-out=ca.pem"]).unwrap();
        assert_eq!(a.clients, vec![("c".to_string(), "d".to_string(), false)]);
        assert_eq!(a.tls_ca_out.as_deref(), Some("ca.pem"));
        assert!(parse(&["--port"]).is_err());
        assert!(parse(&["--port", "x"]).is_err());
        assert!(parse(&["--client", "nocolon"]).is_err());
        assert!(parse(&["--client-no-groups", ":x"]).is_err());
        assert!(parse(&["--tls-ca-out"]).is_err());
        assert!(parse(&["--tls-ca-out="]).is_err());
        assert!(parse(&["--bogus"]).is_err());
    }
}
