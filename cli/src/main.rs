//! `tokenchecker`: a demo of the library against the bundled fake Globus, and a command to check
//! a real token.

mod soak;

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand};
use fake_globus::{fixtures, FakeGlobus};
use serde_json::{json, Value};
use tokenchecker::{tc_status, AuthorizeRequest, Checker};

/// Checks Globus OAuth2 bearer tokens: the library at work against a bundled fake Globus Auth, one
/// real token checked, or a soak test.
#[derive(Parser)]
#[command(name = "tokenchecker", version = tokenchecker::VERSION)]
#[command(
    subcommand_required = true,
    arg_required_else_help = true,
    max_term_width = 100
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Shows the library at work against the bundled fake Globus Auth [--json] [--metrics]
    ///
    /// Starts the bundled fake Globus Auth on 127.0.0.1 and shows the library at work: one line
    /// per step, then a short summary. Exits 1 if a step did not behave as expected.
    Demo {
        /// Also print every result document the library returned, and the process-wide stats
        #[arg(long)]
        json: bool,
        /// Also print the Prometheus text export
        #[arg(long)]
        metrics: bool,
    },
    /// Checks one token, read from $TC_TOKEN or standard input (never the command line)
    /// [--config FILE] [--authorize PRINCIPAL,…] [--groups]
    ///
    /// Checks one token against a real (or any RFC 7662) authorization server. The token is read
    /// from $TC_TOKEN or, when unset, from the first line of standard input (never from the
    /// command line, where other users could see it). The configuration is the JSON file given
    /// with --config, or built from $TC_CLIENT_ID, $TC_CLIENT_SECRET, $TC_SCOPES (space
    /// separated) and optionally $TC_AUTH_URL and $TC_GROUPS_URL. Prints the result document;
    /// the exit status is the tc_status code (0 when the token passed).
    Check(CheckArgs),
    /// Soak test: a mixed load with injected faults, every answer judged [--duration SECS]
    /// [--backend memory|redis|memcached] [--fleet] [--report FILE] [--threads N] [--seed N] …
    ///
    /// Runs a mixed load (cache hits, misses on fresh tokens, inactive and otherwise refused
    /// tokens, identity and group authorizations, purges, checks after a purge) from several
    /// threads against the bundled fake Globus for SECS seconds, injecting auth faults (503s,
    /// closed connections, malformed answers, latency spikes) and, with --backend redis or
    /// memcached, killing and restarting its own server. Checks every answer; prints totals,
    /// per-status counts, p50/p99 latency and RSS; --report writes them as JSON. Exits 1 on any
    /// wrong answer, any lost request (no answer, or a failure Globus Auth could have answered),
    /// or RSS growth beyond the bound; 2 when the set-up failed. --ops keeps only the named
    /// operations (as printed in the summary), to narrow down a problem. --fleet (redis or
    /// memcached) adds stale_if_error_s, brownouts, tokens revoked at the fake and purged by
    /// another process on the same cache, and proxy variables pointed at a trap: it fails on any
    /// active answer for a revoked or purged token the library could know of, and on any
    /// connection to the proxy.
    Soak(soak::Options),
    /// The other process of a `soak --fleet`: purges when the soak asks (JSON lines on stdin)
    #[command(hide = true)]
    SoakPurger,
    /// Prints the version
    Version,
}

#[derive(Args)]
struct CheckArgs {
    /// The checker configuration, a JSON file (default: built from the environment)
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Authorize the caller: passes when it is one of these principals or in one of these
    /// groups (comma separated); without it, only checks the token
    #[arg(long, value_name = "PRINCIPAL[,PRINCIPAL…]")]
    authorize: Option<String>,
    /// Fetch the caller's groups eagerly, with the token
    #[arg(long)]
    groups: bool,
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Demo { json, metrics } => demo(json, metrics),
        Command::Check(args) => check(args),
        Command::Soak(options) => soak::run(&options),
        Command::SoakPurger => soak::run_purger(),
        Command::Version => {
            println!("tokenchecker {}", tokenchecker::VERSION);
            ExitCode::SUCCESS
        }
    }
}

// ---- demo ---------------------------------------------------------------------------------

struct Demo {
    failures: u32,
    json: bool,
}

impl Demo {
    /// One line per step: whether it behaved as expected, what was checked, the answer, how long
    /// it took and what it shows; with `--json`, the document the library returned under it.
    fn row(&mut self, ok: bool, what: &str, answer: &str, took: Duration, note: &str) {
        println!(
            "  {} {what:<22} {answer:<22} {:>9}  {note}",
            if ok { "✓" } else { "✗" },
            duration(took)
        );
        if !ok {
            self.failures += 1;
        }
    }

    fn document(&self, doc: impl FnOnce() -> String) {
        if self.json {
            println!("      {}", doc());
        }
    }
}

/// `1.2 ms`, `3.4 µs`, `186 ns`: short enough for a column.
fn duration(d: Duration) -> String {
    let ns = d.as_nanos() as f64;
    let (value, unit) = if ns < 1e3 {
        (ns, "ns")
    } else if ns < 1e6 {
        (ns / 1e3, "µs")
    } else if ns < 1e9 {
        (ns / 1e6, "ms")
    } else {
        (ns / 1e9, "s")
    };
    if value < 10.0 && unit != "ns" {
        format!("{value:.1} {unit}")
    } else {
        format!("{value:.0} {unit}")
    }
}

/// The answer column: `TC_OK` or the error's status name.
fn answer<T>(r: &Result<T, tokenchecker::Error>) -> &'static str {
    match r {
        Ok(_) => "TC_OK",
        Err(e) => e.status.name(),
    }
}

fn document(r: &Result<tokenchecker::AuthState, tokenchecker::Error>) -> String {
    match r {
        Ok(s) => s.to_json(None),
        Err(e) => e.to_json(),
    }
}

/// `n` with thousands separators.
fn count(n: u64) -> String {
    let digits = n.to_string();
    let head = match digits.len() % 3 {
        0 => 3.min(digits.len()),
        r => r,
    };
    let mut out = digits[..head].to_string();
    for group in digits.as_bytes()[head..].chunks(3) {
        out.push(',');
        out.push_str(std::str::from_utf8(group).unwrap_or_default());
    }
    out
}

/// `1 Groups call`, `2 Groups calls`.
fn plural(n: u64, what: &str) -> String {
    format!("{n} {what}{}", if n == 1 { "" } else { "s" })
}

/// `path` relative to the working directory when it is below it (`target/release/…`).
fn shown(path: &Path) -> String {
    std::env::current_dir()
        .ok()
        .and_then(|cwd| path.strip_prefix(cwd).ok().map(Path::to_path_buf))
        .unwrap_or_else(|| path.to_path_buf())
        .display()
        .to_string()
}

/// Where the build put the library and the fake: beside this program (`target/release`), when
/// they are there.
fn built_files() -> (Option<PathBuf>, Option<PathBuf>, Option<PathBuf>) {
    let dir = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_path_buf));
    let beside = |name: &str| dir.as_ref().map(|d| d.join(name)).filter(|p| p.exists());
    (
        beside("libtokenchecker.so"),
        beside("libtokenchecker.a"),
        beside("fake-globus"),
    )
}

fn demo(json_out: bool, metrics: bool) -> ExitCode {
    let mut d = Demo {
        failures: 0,
        json: json_out,
    };
    let fake = FakeGlobus::start();
    println!(
        "tokenchecker {} demo: the library against the bundled fake Globus Auth + Groups at {}",
        tokenchecker::VERSION,
        fake.url()
    );

    let config = json!({
        "client_id": fixtures::CLIENT_ID,
        "client_secret": fixtures::CLIENT_SECRET,
        "expected_scopes": ["urn:globus:auth:scope:test:all"],
        "auth_url": fake.url(),
        "groups_url": fake.url(),
        "cache_config": {"backend": "memory", "timeout": 30},
    });
    // Creating the checker verifies the client credentials with one introspection.
    let checker = match Checker::from_json(&config.to_string()) {
        Ok(c) => Arc::new(c),
        Err(e) => {
            eprintln!("cannot create the checker: {e}");
            return ExitCode::FAILURE;
        }
    };
    fake.reset();
    if json_out {
        println!("checker configuration: {config}");
    }
    println!(
        "\n  {:<24} {:<22} {:>9}  what it shows",
        "  token", "answer", "took"
    );

    let t = Instant::now();
    let r = checker.check(fixtures::TOK_VALID);
    let took = t.elapsed();
    d.row(
        matches!(&r, Ok(s) if s.source.name() == "network" && s.info.identity_count() == 2),
        fixtures::TOK_VALID,
        answer(&r),
        took,
        "Alice, 2 identities, asked Globus Auth",
    );
    d.document(|| document(&r));

    let t = Instant::now();
    let r = checker.check(fixtures::TOK_VALID);
    let took = t.elapsed();
    d.row(
        matches!(&r, Ok(s) if s.source.name() == "memory") && fake.counters().introspect == 1,
        "tok-valid again",
        answer(&r),
        took,
        "from the in-memory cache: no request",
    );
    d.document(|| document(&r));

    let t = Instant::now();
    let r = checker.check(fixtures::TOK_INACTIVE);
    let took = t.elapsed();
    d.row(
        matches!(&r, Err(e) if e.status == tc_status::TC_INACTIVE_TOKEN),
        fixtures::TOK_INACTIVE,
        answer(&r),
        took,
        "revoked or unknown",
    );
    d.document(|| document(&r));

    let t = Instant::now();
    let r = checker.check(fixtures::TOK_WRONG_SCOPE);
    let took = t.elapsed();
    d.row(
        matches!(&r, Err(e) if e.status == tc_status::TC_INSUFFICIENT_SCOPE),
        fixtures::TOK_WRONG_SCOPE,
        answer(&r),
        took,
        "issued for another scope",
    );
    d.document(|| document(&r));

    let group = format!("urn:globus:groups:id:{}", fixtures::GROUP_ADMIN);
    let request = AuthorizeRequest {
        allowed_principals: vec![
            "urn:globus:auth:identity:someone-else".into(),
            group.clone(),
        ],
        ..Default::default()
    };
    let t = Instant::now();
    let r = checker.authorize(fixtures::TOK_VALID, &request);
    let took = t.elapsed();
    let c = fake.counters();
    d.row(
        matches!(&r, Ok(a) if a.matched == group),
        "tok-valid, authorize",
        if r.is_ok() { "authorized" } else { answer(&r) },
        took,
        &format!(
            "in Admin Group ({} grant, {} Groups call)",
            c.dependent_token, c.groups
        ),
    );
    d.document(|| match &r {
        Ok(a) => a.state.to_json(Some(&a.matched)),
        Err(e) => e.to_json(),
    });

    fake.add_tokens(json!({"tok-herd": {"identity_set": [fixtures::BOB_ID]}}));
    fake.set_fault(json!({"endpoint": "introspect", "latency_ms": 100}));
    let before = fake.counters().introspect;
    let t = Instant::now();
    let threads: Vec<_> = (0..100)
        .map(|_| {
            let c = checker.clone();
            std::thread::spawn(move || c.check("tok-herd").is_ok())
        })
        .collect();
    let ok = threads
        .into_iter()
        .map(|h| h.join().unwrap_or(false))
        .filter(|ok| *ok)
        .count();
    let took = t.elapsed();
    let requests = fake.counters().introspect - before;
    d.row(
        ok == 100 && requests == 1,
        "tok-herd, 100 at once",
        &format!("TC_OK ×{ok}"),
        took,
        &format!("new token, 100 ms server: {requests} request for all"),
    );
    fake.clear_faults();

    let n: u32 = 100_000;
    let t = Instant::now();
    let mut passed = 0u32;
    for _ in 0..n {
        passed += u32::from(checker.check(fixtures::TOK_VALID).is_ok());
    }
    let per_check = t.elapsed() / n;
    d.row(
        passed == n,
        "tok-valid ×100,000",
        &format!("TC_OK ×{}", count(u64::from(passed))),
        per_check,
        "per cached check, one thread",
    );

    let stats_text = tokenchecker::stats_json();
    let stats: Value = serde_json::from_str(&stats_text).unwrap_or(Value::Null);
    let stat = |path: &str| {
        path.split('.')
            .try_fold(&stats, |v, k| v.get(k))
            .and_then(Value::as_u64)
            .unwrap_or(0)
    };
    let fake_counters = fake.counters();
    let tokens = [
        fixtures::TOK_VALID,
        fixtures::TOK_INACTIVE,
        fixtures::TOK_WRONG_SCOPE,
        "tok-herd",
    ];
    println!(
        "\nChecked {} tokens, {} times: {} answers came from the cache.",
        tokens.len(),
        count(stat("checks")),
        count(stat("hits")),
    );
    println!(
        "Requests: {} (+1 checking the credentials), {}, {}.",
        plural(fake_counters.introspect, "introspection"),
        plural(fake_counters.dependent_token, "dependent-token grant"),
        plural(fake_counters.groups, "Groups call"),
    );
    if d.failures == 0 {
        println!("Every step behaved as expected.");
    } else {
        println!("{} UNEXPECTED result(s): the lines marked ✗.", d.failures);
    }

    let (so, a, fake_bin) = built_files();
    let header = Path::new(env!("CARGO_MANIFEST_DIR")).join("../include/tokenchecker.h");
    let header = header.canonicalize().unwrap_or(header);
    match (so, a) {
        (Some(so), Some(a)) => println!(
            "The library: {}, {} (C header: {})",
            shown(&so),
            a.file_name().unwrap_or_default().to_string_lossy(),
            shown(&header)
        ),
        _ => println!("The library: not built yet: `cargo build --release` (scripts/demo does it)"),
    }
    match fake_bin {
        Some(f) => println!(
            "The fake:    {} (its test tokens, and how to run it: fake-globus/README.md)",
            shown(&f)
        ),
        None => println!(
            "The fake:    not built yet: `cargo build --release -p fake-globus` (scripts/demo does it)"
        ),
    }
    println!("Next:        \"Quick start\" in bindings/go/README.md, bindings/node/README.md or");
    println!(
        "             bindings/python/README.md (`scripts/demo --json`: every document, the stats)"
    );

    if json_out {
        println!("\nprocess-wide stats (tc_stats):");
        let pretty = serde_json::to_string_pretty(&stats).unwrap_or(stats_text);
        for line in pretty.lines() {
            println!("  {line}");
        }
    }

    if metrics {
        println!("\nthe same counters for Prometheus (tc_metrics):");
        print!("{}", tokenchecker::metrics_text());
    }

    if d.failures == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

// ---- check --------------------------------------------------------------------------------

fn check(args: CheckArgs) -> ExitCode {
    let CheckArgs {
        config: config_file,
        authorize,
        groups: eager_groups,
    } = args;
    let mut config: Value = match config_file {
        Some(path) => match std::fs::read_to_string(&path)
            .map_err(|e| e.to_string())
            .and_then(|t| serde_json::from_str(&t).map_err(|e| e.to_string()))
        {
            Ok(v) => v,
            Err(e) => {
                eprintln!("cannot read the config file {}: {e}", path.display());
                return ExitCode::from(2);
            }
        },
        None => {
            let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
            let (Some(id), Some(secret), Some(scopes)) = (
                var("TC_CLIENT_ID"),
                var("TC_CLIENT_SECRET"),
                var("TC_SCOPES"),
            ) else {
                eprintln!(
                    "set TC_CLIENT_ID, TC_CLIENT_SECRET and TC_SCOPES, or pass --config FILE"
                );
                return ExitCode::from(2);
            };
            let mut c = json!({"client_id": id, "client_secret": secret,
                               "expected_scopes": scopes.split_whitespace().collect::<Vec<_>>()});
            if let Some(u) = var("TC_AUTH_URL") {
                c["auth_url"] = u.into();
            }
            if let Some(u) = var("TC_GROUPS_URL") {
                c["groups_url"] = u.into();
            }
            c
        }
    };
    if eager_groups {
        config["fetch_groups"] = "eager".into();
    }
    let token = match std::env::var("TC_TOKEN").ok().filter(|t| !t.is_empty()) {
        Some(t) => t,
        None => {
            let mut line = String::new();
            if std::io::stdin().lock().read_line(&mut line).is_err() {
                eprintln!("cannot read the token from standard input");
                return ExitCode::from(2);
            }
            line.trim().to_string()
        }
    };
    let checker = match Checker::from_json(&config.to_string()) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let result = match authorize {
        Some(list) => {
            let request = AuthorizeRequest {
                allowed_principals: list.split(',').map(|s| s.trim().to_string()).collect(),
                allow_public: true,
                allow_all_authenticated_users: true,
            };
            checker
                .authorize(&token, &request)
                .map(|a| a.state.to_json(Some(&a.matched)))
        }
        None => checker.check(&token).map(|s| s.to_json(None)),
    };
    match result {
        Ok(doc) => {
            println!("{doc}");
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

fn fail(e: tokenchecker::Error) -> ExitCode {
    println!("{}", e.to_json());
    eprintln!("{e}");
    ExitCode::from(e.status as u8)
}

#[cfg(test)]
mod demo_tests {
    use super::*;

    #[test]
    fn counts_and_durations() {
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(1000), "1,000");
        assert_eq!(count(100_105), "100,105");
        assert_eq!(count(1_234_567), "1,234,567");
        assert_eq!(duration(Duration::from_nanos(92)), "92 ns");
        assert_eq!(duration(Duration::from_nanos(2_600)), "2.6 µs");
        assert_eq!(duration(Duration::from_micros(720)), "720 µs");
        assert_eq!(duration(Duration::from_millis(108)), "108 ms");
        assert_eq!(duration(Duration::from_millis(2_500)), "2.5 s");
        assert_eq!(plural(1, "Groups call"), "1 Groups call");
        assert_eq!(plural(4, "introspection"), "4 introspections");
    }
}
