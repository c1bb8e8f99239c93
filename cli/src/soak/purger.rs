//! The purger: another OS process of the fleet (this binary again, `tokenchecker soak-purger`)
//! with its own checker on the same `cache_config`, which purges tokens and identities when
//! the soak asks, and says when each purge started and ended (unix µs, the host's clock).
//!
//! Protocol, one JSON document per line: the soak writes the checker's configuration first;
//! the purger answers `{"ready": true}` (or `{"error": "…"}` and exits 2); then for each
//! `{"n": N, "purge": TOKEN}` or `{"n": N, "purge_identity": ID}` it answers
//! `{"n": N, "status": "TC_OK", "start_us": …, "end_us": …, "backend_errors": K}`, K being the
//! backend errors its library counted during the purge (more than 0: the purge may not have
//! reached the backend, so it may not hold for the fleet). It exits 0 at the end of its input.

use std::io::{BufRead, BufReader, BufWriter, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitCode, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use super::ffi::{library_stats, Checker};

/// Microseconds since the unix epoch (the clock the soak and the purger share).
pub(super) fn unix_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

fn backend_errors() -> u64 {
    library_stats()["errors"]["backend"].as_u64().unwrap_or(0)
}

/// The child's side: `tokenchecker soak-purger`.
pub fn run_child() -> ExitCode {
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    let mut out = BufWriter::new(std::io::stdout().lock());
    let mut say = |v: Value| -> bool { writeln!(out, "{v}").is_ok() && out.flush().is_ok() };
    let config = match lines.next() {
        Some(Ok(line)) => match serde_json::from_str::<Value>(&line) {
            Ok(v) => v,
            Err(e) => {
                say(json!({"error": format!("the configuration is not JSON: {e}")}));
                return ExitCode::from(2);
            }
        },
        _ => return ExitCode::from(2),
    };
    let checker = match Checker::new(&config) {
        Ok(c) => c,
        Err(e) => {
            say(json!({"error": e}));
            return ExitCode::from(2);
        }
    };
    if !say(json!({"ready": true, "pid": std::process::id()})) {
        return ExitCode::from(2);
    }
    for line in lines {
        let Ok(line) = line else { break };
        let Ok(ask) = serde_json::from_str::<Value>(&line) else {
            say(json!({"error": "not JSON"}));
            continue;
        };
        let errors_before = backend_errors();
        let start_us = unix_us();
        let status = if let Some(token) = ask["purge"].as_str() {
            checker.purge(token)
        } else if let Some(id) = ask["purge_identity"].as_str() {
            checker.purge_identity(id)
        } else {
            say(json!({"n": ask["n"], "error": "neither purge nor purge_identity"}));
            continue;
        };
        let end_us = unix_us();
        let answer = json!({"n": ask["n"], "status": status.name(), "start_us": start_us,
                            "end_us": end_us,
                            "backend_errors": backend_errors() - errors_before});
        if !say(answer) {
            break;
        }
    }
    ExitCode::SUCCESS
}

/// What the purger said about one purge.
#[derive(Clone, Debug)]
pub(super) struct Purged {
    pub(super) ok: bool,
    pub(super) start_us: u64,
    pub(super) end_us: u64,
    /// Whether its library met no backend error meanwhile (the purge reached the backend).
    pub(super) reached: bool,
}

/// The soak's side: the purger process and its pipes.
pub(super) struct Purger {
    child: Child,
    input: Option<ChildStdin>,
    output: BufReader<ChildStdout>,
    next: u64,
    pub(super) pid: u32,
}

impl Purger {
    /// Starts this binary as `soak-purger` with `config` (the soak's own checker
    /// configuration: the same cache).
    pub(super) fn start(config: &Value) -> Result<Purger, String> {
        let exe = std::env::current_exe().map_err(|e| format!("cannot find this binary: {e}"))?;
        let mut child = Command::new(exe)
            .arg("soak-purger")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start the purger: {e}"))?;
        let (Some(mut input), Some(output)) = (child.stdin.take(), child.stdout.take()) else {
            return Err("the purger has no pipes".into());
        };
        let pid = child.id();
        writeln!(input, "{config}").map_err(|e| format!("the purger: {e}"))?;
        let mut p = Purger {
            child,
            input: Some(input),
            output: BufReader::new(output),
            next: 0,
            pid,
        };
        let hello = p.read()?;
        if hello["ready"] != true {
            return Err(format!("the purger did not start: {hello}"));
        }
        Ok(p)
    }

    fn read(&mut self) -> Result<Value, String> {
        let mut line = String::new();
        match self.output.read_line(&mut line) {
            Ok(0) => Err("the purger exited".into()),
            Ok(_) => {
                serde_json::from_str(&line).map_err(|e| format!("the purger said {line:?}: {e}"))
            }
            Err(e) => Err(format!("the purger: {e}")),
        }
    }

    fn ask(&mut self, mut what: Value) -> Result<Purged, String> {
        self.next += 1;
        what["n"] = self.next.into();
        let input = self.input.as_mut().ok_or("the purger's input is closed")?;
        writeln!(input, "{what}")
            .and_then(|_| input.flush())
            .map_err(|e| format!("the purger: {e}"))?;
        let v = self.read()?;
        if v["n"] != self.next {
            return Err(format!("the purger answered out of turn: {v}"));
        }
        Ok(Purged {
            ok: v["status"] == "TC_OK",
            start_us: v["start_us"].as_u64().unwrap_or(0),
            end_us: v["end_us"].as_u64().unwrap_or(u64::MAX),
            reached: v["backend_errors"] == 0,
        })
    }

    /// `tc_purge(token)` in the purger.
    pub(super) fn purge(&mut self, token: &str) -> Result<Purged, String> {
        self.ask(json!({ "purge": token }))
    }

    /// `tc_purge_identity(id)` in the purger.
    pub(super) fn purge_identity(&mut self, id: &str) -> Result<Purged, String> {
        self.ask(json!({ "purge_identity": id }))
    }
}

impl Drop for Purger {
    fn drop(&mut self) {
        // End of input: the purger exits by itself.
        drop(self.input.take());
        for _ in 0..100 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
