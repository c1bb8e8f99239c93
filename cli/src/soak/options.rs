//! `tokenchecker soak` arguments.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::workers::{Op, OPS};

pub const USAGE: &str = "\
  tokenchecker soak [--duration SECS] [--backend memory|redis] [--report FILE] [--threads N]
                    [--max-rss-growth-mib N] [--seed N] [--redis-server PATH] [--ops OP,…]
      Runs a mixed load (cache hits, misses on fresh tokens, inactive and otherwise refused
      tokens, identity and group authorizations, purges, checks after a purge) from several
      threads against the bundled fake Globus for SECS seconds (default 60), injecting auth
      faults (503s, closed connections, malformed answers, latency spikes) and, with
      --backend redis, killing and restarting its own redis-server. Checks every answer;
      prints totals, per-status counts, p50/p99 latency and RSS; --report writes them as
      JSON. Exits 1 on any wrong answer, any failure Globus Auth could have answered, or RSS
      growth beyond the bound (default 64 MiB). --ops keeps only the named operations (as
      printed in the summary), to narrow down a problem.";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Backend {
    Memory,
    Redis,
}

pub(super) struct Options {
    pub(super) duration: Duration,
    pub(super) backend: Backend,
    pub(super) report: Option<String>,
    pub(super) threads: usize,
    pub(super) max_rss_growth_mib: f64,
    pub(super) seed: u64,
    pub(super) redis_server: String,
    /// Only these operations (by name), to narrow down a problem; all when empty.
    pub(super) ops: Vec<Op>,
}

pub(super) fn parse_args(args: &[String]) -> Result<Options, String> {
    let mut o = Options {
        duration: Duration::from_secs(60),
        backend: Backend::Memory,
        report: None,
        threads: 4,
        max_rss_growth_mib: 64.0,
        seed: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1),
        redis_server: "redis-server".into(),
        ops: Vec::new(),
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{a} needs a value"))
        };
        match a.as_str() {
            "--duration" => {
                let s: f64 = value()?.parse().map_err(|_| "--duration: seconds")?;
                if !(s > 0.0 && s.is_finite()) {
                    return Err("--duration must be more than 0".into());
                }
                o.duration = Duration::from_secs_f64(s);
            }
            "--backend" => {
                o.backend = match value()?.as_str() {
                    "memory" => Backend::Memory,
                    "redis" => Backend::Redis,
                    other => return Err(format!("--backend: memory or redis, not {other:?}")),
                }
            }
            "--report" => o.report = Some(value()?),
            "--threads" => {
                o.threads = value()?.parse().map_err(|_| "--threads: a number")?;
                if o.threads == 0 || o.threads > 256 {
                    return Err("--threads: 1 to 256".into());
                }
            }
            "--max-rss-growth-mib" => {
                o.max_rss_growth_mib = value()?.parse().map_err(|_| "--max-rss-growth-mib: MiB")?
            }
            "--seed" => o.seed = value()?.parse().map_err(|_| "--seed: a number")?,
            "--redis-server" => o.redis_server = value()?,
            "--ops" => {
                for name in value()?.split(',') {
                    let op = OPS
                        .iter()
                        .find(|op| op.name() == name.trim())
                        .ok_or_else(|| format!("--ops: unknown operation {name:?}"))?;
                    o.ops.push(*op);
                }
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(o)
}
