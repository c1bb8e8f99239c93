//! Process-wide counters, read by `tc_stats`.
//!
//! Plain relaxed atomics: counting must cost the hot path next to nothing. Each counter is split
//! into a few shards on their own cache lines, and each thread adds to its own shard, so threads
//! hitting the cache at once don't bounce one cache line between cores. Reading sums the shards.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};

use serde_json::json;

const SHARDS: usize = 8;

#[repr(align(64))]
#[derive(Default)]
struct Shard(AtomicU64);

#[derive(Default)]
pub struct Counter([Shard; SHARDS]);

static NEXT_SHARD: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static MY_SHARD: Cell<usize> = Cell::new(NEXT_SHARD.fetch_add(1, Relaxed) % SHARDS);
}

impl Counter {
    #[inline]
    pub fn inc(&self) {
        let shard = MY_SHARD.with(Cell::get);
        self.0[shard].0.fetch_add(1, Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.iter().map(|s| s.0.load(Relaxed)).sum()
    }
}

#[derive(Default)]
pub struct Stats {
    pub checks: Counter,
    pub hits: Counter,
    pub negative_hits: Counter,
    pub misses: Counter,
    pub coalesced_waits: Counter,
    pub requests_introspect: Counter,
    pub requests_dependent_token: Counter,
    pub requests_groups: Counter,
    pub errors_introspect: Counter,
    pub errors_dependent_token: Counter,
    pub errors_groups: Counter,
    pub retries: Counter,
    pub waiter_timeouts: Counter,
    pub purges: Counter,
    pub cache_resets: Counter,
    pub backend_errors: Counter,
    pub backend_hits: Counter,
    pub backend_misses: Counter,
    pub backend_rejected_entries: Counter,
    pub breaker_open_skips: Counter,
    /// Fetch locks this process took in a shared backend.
    pub backend_lock_acquired: Counter,
    /// Times this process waited for another one's fetch (it found the lock taken).
    pub backend_lock_waits: Counter,
    /// Answers served from the stale area while the authorization server was unavailable.
    pub stale_served: Counter,
    /// Requests refused because too many were in flight for too long (`max_concurrent_requests`).
    pub requests_shed: Counter,
    /// Latency of each request to Globus Auth and Groups (introspection, grant, my_groups).
    pub request_latency: Histogram,
    /// Latency of each shared-backend command.
    pub backend_latency: Histogram,
}

/// One exported counter: name, optional `(label, value)`, help text (empty: same as the line
/// before), value.
type MetricLine = (
    &'static str,
    Option<(&'static str, &'static str)>,
    &'static str,
    u64,
);

/// Upper bounds of the latency buckets, in seconds (Prometheus `le`).
pub const LATENCY_BOUNDS_S: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// A latency histogram with fixed buckets (cumulative when exported).
#[derive(Default)]
pub struct Histogram {
    buckets: [AtomicU64; LATENCY_BOUNDS_S.len() + 1],
    sum_ns: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, d: std::time::Duration) {
        let s = d.as_secs_f64();
        let i = LATENCY_BOUNDS_S
            .iter()
            .position(|b| s <= *b)
            .unwrap_or(LATENCY_BOUNDS_S.len());
        self.buckets[i].fetch_add(1, Relaxed);
        self.sum_ns.fetch_add(d.as_nanos() as u64, Relaxed);
    }

    /// Cumulative counts per bound (the last is +Inf, i.e. the total) and the sum in seconds.
    pub fn snapshot(&self) -> (Vec<u64>, f64) {
        let mut acc = 0;
        let cumulative = self
            .buckets
            .iter()
            .map(|b| {
                acc += b.load(Relaxed);
                acc
            })
            .collect();
        (cumulative, self.sum_ns.load(Relaxed) as f64 / 1e9)
    }

    fn to_json(&self) -> serde_json::Value {
        let (cumulative, sum) = self.snapshot();
        let count = *cumulative.last().unwrap_or(&0);
        let buckets: serde_json::Map<String, serde_json::Value> = LATENCY_BOUNDS_S
            .iter()
            .map(|b| b.to_string())
            .chain(std::iter::once("+Inf".to_string()))
            .zip(cumulative)
            .map(|(k, v)| (k, v.into()))
            .collect();
        json!({"count": count, "sum_s": sum, "le_s": buckets})
    }
}

pub static STATS: once_cell::sync::Lazy<Stats> = once_cell::sync::Lazy::new(Stats::default);

#[inline]
pub fn stats() -> &'static Stats {
    &STATS
}

impl Stats {
    pub fn to_json(&self, cache: serde_json::Value) -> String {
        json!({
            "checks": self.checks.get(),
            "hits": self.hits.get(),
            "negative_hits": self.negative_hits.get(),
            "misses": self.misses.get(),
            "coalesced_waits": self.coalesced_waits.get(),
            "waiter_timeouts": self.waiter_timeouts.get(),
            "purges": self.purges.get(),
            "cache_resets": self.cache_resets.get(),
            "requests": {
                "introspect": self.requests_introspect.get(),
                "dependent_token": self.requests_dependent_token.get(),
                "groups": self.requests_groups.get(),
                "retries": self.retries.get(),
            },
            "errors": {
                "introspect": self.errors_introspect.get(),
                "dependent_token": self.errors_dependent_token.get(),
                "groups": self.errors_groups.get(),
                "backend": self.backend_errors.get(),
            },
            "backend": {
                "hits": self.backend_hits.get(),
                "misses": self.backend_misses.get(),
                "rejected_entries": self.backend_rejected_entries.get(),
                "breaker_skips": self.breaker_open_skips.get(),
                "lock_acquired": self.backend_lock_acquired.get(),
                "lock_waits": self.backend_lock_waits.get(),
            },
            "stale_served": self.stale_served.get(),
            "requests_shed": self.requests_shed.get(),
            "latency": {
                "requests": self.request_latency.to_json(),
                "backend": self.backend_latency.to_json(),
            },
            "cache": cache,
        })
        .to_string()
    }

    /// Every counter with its Prometheus name, optional label and help text.
    fn counters(&self) -> Vec<MetricLine> {
        let ep = |v| Some(("endpoint", v));
        vec![
            (
                "tokenchecker_checks_total",
                None,
                "Checks started.",
                self.checks.get(),
            ),
            (
                "tokenchecker_cache_hits_total",
                None,
                "Checks answered from a cache (active tokens).",
                self.hits.get(),
            ),
            (
                "tokenchecker_cache_negative_hits_total",
                None,
                "Checks answered from a cache (inactive tokens).",
                self.negative_hits.get(),
            ),
            (
                "tokenchecker_cache_misses_total",
                None,
                "Checks that found no cached answer.",
                self.misses.get(),
            ),
            (
                "tokenchecker_coalesced_waits_total",
                None,
                "Callers that waited for another caller's fetch.",
                self.coalesced_waits.get(),
            ),
            (
                "tokenchecker_waiter_timeouts_total",
                None,
                "Callers that gave up waiting for a fetch.",
                self.waiter_timeouts.get(),
            ),
            (
                "tokenchecker_purges_total",
                None,
                "Purges.",
                self.purges.get(),
            ),
            (
                "tokenchecker_cache_resets_total",
                None,
                "Times a cache_config replaced the shared cache.",
                self.cache_resets.get(),
            ),
            (
                "tokenchecker_requests_total",
                ep("introspect"),
                "Requests to Globus Auth and Groups.",
                self.requests_introspect.get(),
            ),
            (
                "tokenchecker_requests_total",
                ep("dependent_token"),
                "",
                self.requests_dependent_token.get(),
            ),
            (
                "tokenchecker_requests_total",
                ep("groups"),
                "",
                self.requests_groups.get(),
            ),
            (
                "tokenchecker_request_retries_total",
                None,
                "Retried requests.",
                self.retries.get(),
            ),
            (
                "tokenchecker_request_errors_total",
                ep("introspect"),
                "Failed requests.",
                self.errors_introspect.get(),
            ),
            (
                "tokenchecker_request_errors_total",
                ep("dependent_token"),
                "",
                self.errors_dependent_token.get(),
            ),
            (
                "tokenchecker_request_errors_total",
                ep("groups"),
                "",
                self.errors_groups.get(),
            ),
            (
                "tokenchecker_requests_shed_total",
                None,
                "Requests refused by the in-flight cap.",
                self.requests_shed.get(),
            ),
            (
                "tokenchecker_stale_served_total",
                None,
                "Stale answers served during an auth server outage.",
                self.stale_served.get(),
            ),
            (
                "tokenchecker_backend_errors_total",
                None,
                "Shared-backend commands that failed.",
                self.backend_errors.get(),
            ),
            (
                "tokenchecker_backend_hits_total",
                None,
                "Shared-backend hits.",
                self.backend_hits.get(),
            ),
            (
                "tokenchecker_backend_misses_total",
                None,
                "Shared-backend misses.",
                self.backend_misses.get(),
            ),
            (
                "tokenchecker_backend_rejected_entries_total",
                None,
                "Shared-backend entries that failed to open (forged, altered, moved).",
                self.backend_rejected_entries.get(),
            ),
            (
                "tokenchecker_backend_breaker_skips_total",
                None,
                "Shared-backend calls skipped by the breaker.",
                self.breaker_open_skips.get(),
            ),
            (
                "tokenchecker_backend_locks_acquired_total",
                None,
                "Fleet fetch locks taken.",
                self.backend_lock_acquired.get(),
            ),
            (
                "tokenchecker_backend_lock_waits_total",
                None,
                "Waits for another process's fetch.",
                self.backend_lock_waits.get(),
            ),
        ]
    }

    /// The counters and latency histograms in the Prometheus text format (version 0.0.4).
    pub fn to_prometheus(&self, cache_entries: u64) -> String {
        use std::fmt::Write;
        let mut out = String::with_capacity(8192);
        let mut last = "";
        for (name, label, help, value) in self.counters() {
            if name != last {
                let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
                last = name;
            }
            match label {
                Some((k, v)) => {
                    let _ = writeln!(out, "{name}{{{k}=\"{v}\"}} {value}");
                }
                None => {
                    let _ = writeln!(out, "{name} {value}");
                }
            }
        }
        let _ = writeln!(
            out,
            "# HELP tokenchecker_cache_entries Entries in this process's cache layer.\n\
             # TYPE tokenchecker_cache_entries gauge\ntokenchecker_cache_entries {cache_entries}"
        );
        for (name, help, h) in [
            (
                "tokenchecker_request_duration_seconds",
                "Latency of requests to Globus Auth and Groups.",
                &self.request_latency,
            ),
            (
                "tokenchecker_backend_duration_seconds",
                "Latency of shared-backend commands.",
                &self.backend_latency,
            ),
        ] {
            let (cumulative, sum) = h.snapshot();
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
            for (bound, count) in LATENCY_BOUNDS_S.iter().zip(&cumulative) {
                let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {count}");
            }
            let total = *cumulative.last().unwrap_or(&0);
            let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {total}");
            let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {total}");
        }
        out
    }
}
