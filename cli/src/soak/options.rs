//! `tokenchecker soak` arguments.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::builder::RangedU64ValueParser;
use clap::{Args, ValueEnum};

use super::workers::{Op, OPS};

#[derive(Clone, Copy, PartialEq, Eq, Debug, ValueEnum)]
pub(super) enum Backend {
    /// The in-process cache
    Memory,
    /// Our own redis-server, killed and restarted under the load (not with --fleet)
    Redis,
    /// Our own memcached, killed and restarted under the load (not with --fleet)
    Memcached,
}

#[derive(Args)]
pub struct Options {
    /// How long the load runs, in seconds
    #[arg(long, value_name = "SECS", default_value = "60", value_parser = seconds)]
    pub(super) duration: Duration,
    /// The cache backend
    #[arg(long, value_enum, default_value_t = Backend::Memory)]
    pub(super) backend: Backend,
    /// Also write the totals as JSON to FILE
    #[arg(long, value_name = "FILE")]
    pub(super) report: Option<String>,
    /// Worker threads, 1 to 256
    #[arg(long, value_name = "N", default_value_t = 4,
          value_parser = RangedU64ValueParser::<usize>::new().range(1..=256))]
    pub(super) threads: usize,
    /// Fail when RSS grows by more than N MiB after the warm-up
    #[arg(long, value_name = "N", default_value_t = 64.0)]
    pub(super) max_rss_growth_mib: f64,
    /// Seed of the operations' and faults' randomness (default: from the clock; printed at the
    /// start, to repeat a run)
    #[arg(long, value_name = "N", default_value_t = clock_seed(), hide_default_value = true)]
    pub(super) seed: u64,
    /// The redis-server binary for --backend redis
    #[arg(long, value_name = "PATH", default_value = "redis-server")]
    pub(super) redis_server: String,
    /// The memcached binary for --backend memcached
    #[arg(long, value_name = "PATH", default_value = "memcached")]
    pub(super) memcached_server: String,
    /// Revocations across a fleet (needs --backend redis or memcached): stale_if_error_s set,
    /// brownouts, tokens revoked at the fake and purged by another process on the same cache,
    /// the proxy variables pointed at a trap; fails on any active answer for a revoked or
    /// purged token the library could know of, any lost request, any connection to the proxy
    #[arg(long)]
    pub(super) fleet: bool,
    /// With --fleet: the checker's stale_if_error_s
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    pub(super) stale_if_error_s: u64,
    /// Only these operations (named as in the summary), to narrow down a problem; all when
    /// not given
    #[arg(long, value_name = "OP,…", value_delimiter = ',', value_parser = op_named)]
    pub(super) ops: Vec<Op>,
}

fn seconds(s: &str) -> Result<Duration, String> {
    let s: f64 = s.parse().map_err(|_| "a number of seconds")?;
    if !(s > 0.0 && s.is_finite()) {
        return Err("must be more than 0".into());
    }
    Ok(Duration::from_secs_f64(s))
}

fn clock_seed() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1)
}

fn op_named(name: &str) -> Result<Op, String> {
    OPS.iter()
        .copied()
        .find(|op| op.name() == name.trim())
        .ok_or_else(|| {
            let names: Vec<_> = OPS.iter().map(|op| op.name()).collect();
            format!("unknown operation (one of {})", names.join(", "))
        })
}
