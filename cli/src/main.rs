//! `tokenchecker`: a demo of the library against the bundled fake Globus, and a command to check
//! a real token.

mod soak;

use std::io::BufRead;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

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
    /// Shows the library at work against the bundled fake Globus Auth [--metrics]
    ///
    /// Starts the bundled fake Globus Auth on 127.0.0.1 and shows the library at work.
    Demo {
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
        Command::Demo { metrics } => demo(metrics),
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
}

impl Demo {
    fn expect(&mut self, what: &str, ok: bool) {
        println!("    {} {what}", if ok { "✓" } else { "✗" });
        if !ok {
            self.failures += 1;
        }
    }
}

fn step(title: &str) {
    println!("\n▶ {title}");
}

fn show(result: &Result<tokenchecker::AuthState, tokenchecker::Error>, took: std::time::Duration) {
    match result {
        Ok(s) => {
            let answer = s.info.to_introspection();
            println!(
                "    TC_OK in {:?}: user {} ({} identities), scopes {:?}, from {} (age {} ms)",
                took,
                answer.username.as_deref().unwrap_or("?"),
                s.info.identity_count(),
                answer.scopes,
                s.source.name(),
                s.age.as_millis()
            )
        }
        Err(e) => println!("    {} in {:?}: {}", e.status.name(), took, e.message),
    }
}

fn demo(metrics: bool) -> ExitCode {
    let mut d = Demo { failures: 0 };
    let fake = FakeGlobus::start();
    println!("tokenchecker {} demo", tokenchecker::VERSION);
    println!("fake Globus Auth + Groups listening on {}", fake.url());

    let config = json!({
        "client_id": fixtures::CLIENT_ID,
        "client_secret": fixtures::CLIENT_SECRET,
        "expected_scopes": ["urn:globus:auth:scope:test:all"],
        "auth_url": fake.url(),
        "groups_url": fake.url(),
        "cache_config": {"backend": "memory", "timeout": 30},
    });
    step("create a checker (the client credentials are verified with one introspection)");
    let checker = match Checker::from_json(&config.to_string()) {
        Ok(c) => Arc::new(c),
        Err(e) => {
            eprintln!("cannot create the checker: {e}");
            return ExitCode::FAILURE;
        }
    };
    fake.reset();

    step("a valid token");
    let t = Instant::now();
    let r = checker.check(fixtures::TOK_VALID);
    show(&r, t.elapsed());
    d.expect(
        "active, Alice's identities, fetched from the network",
        matches!(&r, Ok(s) if s.source.name() == "network" && s.info.identity_count() == 2),
    );

    step("the same token again");
    let t = Instant::now();
    let r = checker.check(fixtures::TOK_VALID);
    show(&r, t.elapsed());
    d.expect(
        "served from the in-memory cache, no new request",
        matches!(&r, Ok(s) if s.source.name() == "memory") && fake.counters().introspect == 1,
    );
    if let Ok(s) = &r {
        println!("    result JSON: {}", s.to_json(None));
    }

    step("an inactive (revoked or unknown) token");
    let t = Instant::now();
    let r = checker.check(fixtures::TOK_INACTIVE);
    show(&r, t.elapsed());
    d.expect(
        "TC_INACTIVE_TOKEN",
        matches!(&r, Err(e) if e.status == tc_status::TC_INACTIVE_TOKEN),
    );

    step("a token issued for another scope");
    let t = Instant::now();
    let r = checker.check(fixtures::TOK_WRONG_SCOPE);
    show(&r, t.elapsed());
    d.expect(
        "TC_INSUFFICIENT_SCOPE",
        matches!(&r, Err(e) if e.status == tc_status::TC_INSUFFICIENT_SCOPE),
    );

    step("authorize through a group membership");
    let group = format!("urn:globus:groups:id:{}", fixtures::GROUP_ADMIN);
    let request = AuthorizeRequest {
        allowed_principals: vec![
            "urn:globus:auth:identity:someone-else".into(),
            group.clone(),
        ],
        ..Default::default()
    };
    let t = Instant::now();
    match checker.authorize(fixtures::TOK_VALID, &request) {
        Ok(a) => {
            println!("    authorized in {:?}: matched {}", t.elapsed(), a.matched);
            let c = fake.counters();
            println!(
                "    groups came from a dependent token ({} grant) and the Groups API ({} call)",
                c.dependent_token, c.groups
            );
            d.expect("matched the admin group", a.matched == group);
        }
        Err(e) => {
            println!("    {e}");
            d.expect("authorized", false);
        }
    }

    step("100 concurrent checks of a token nobody has seen (the server takes 100 ms)");
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
    let requests = fake.counters().introspect - before;
    println!(
        "    {ok}/100 passed in {:?} with {requests} introspection request(s)",
        t.elapsed()
    );
    d.expect(
        "one request for 100 concurrent checks",
        ok == 100 && requests == 1,
    );
    fake.clear_faults();

    step("what a cached check costs");
    let n = 100_000;
    let t = Instant::now();
    for _ in 0..n {
        let _ = checker.check(fixtures::TOK_VALID);
    }
    println!(
        "    {n} cached checks: {:.0} ns per check (one thread)",
        t.elapsed().as_nanos() as f64 / n as f64
    );

    step("process-wide stats");
    let stats = tokenchecker::stats_json();
    let pretty = serde_json::from_str::<Value>(&stats)
        .and_then(|v| serde_json::to_string_pretty(&v))
        .unwrap_or(stats);
    for line in pretty.lines() {
        println!("    {line}");
    }

    if metrics {
        step("the same counters for Prometheus (tc_metrics)");
        print!("{}", tokenchecker::metrics_text());
    }

    println!();
    if d.failures == 0 {
        println!("demo finished: every step behaved as expected");
        ExitCode::SUCCESS
    } else {
        println!("demo finished with {} unexpected result(s)", d.failures);
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
