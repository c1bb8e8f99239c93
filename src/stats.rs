//! Process-wide counters, read by `tc_stats`.
//!
//! Plain relaxed atomics: counting must cost the hot path next to nothing. Each counter is split
//! into a few shards on their own cache lines, and each thread adds to its own shard, so threads
//! hitting the cache at once don't bounce one cache line between cores. Reading sums the shards.
//!
//! Each metric is declared once, in the `metrics!` list below: its field in [`Stats`], its key in
//! `tc_stats`'s JSON and its Prometheus name, labels, help text and type come from that one line.

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

/// Declares every metric once: its `Stats` field and type, where `tc_stats` puts it (a key, or
/// `group.key`), and its Prometheus name, labels and help text. The help text is empty for a
/// further series of the metric on the line before (another label value). The Prometheus type
/// comes from the field's type; counters are exported first, then the cache gauge, then the
/// histograms, each in the order declared.
macro_rules! metrics {
    ($(
        $(#[doc = $doc:literal])*
        $field:ident: $ty:ident => $json:literal, $name:literal
            $({ $($label:ident = $value:literal),+ })?, $help:literal;
    )*) => {
        #[derive(Default)]
        pub struct Stats {
            $(
                $(#[doc = $doc])*
                pub $field: $ty,
            )*
        }

        impl Stats {
            /// Every metric, in the order declared.
            fn metrics(&self) -> Vec<Metric<'_>> {
                vec![$(
                    Metric {
                        json: $json,
                        name: $name,
                        labels: &[$($((stringify!($label), $value)),+)?],
                        help: $help,
                        reading: (&self.$field).into(),
                    },
                )*]
            }
        }
    };
}

metrics! {
    checks: Counter => "checks", "tokenchecker_checks_total", "Checks started.";
    hits: Counter => "hits", "tokenchecker_cache_hits_total",
        "Checks answered from a cache (active tokens).";
    negative_hits: Counter => "negative_hits", "tokenchecker_cache_negative_hits_total",
        "Checks answered from a cache (inactive tokens).";
    misses: Counter => "misses", "tokenchecker_cache_misses_total",
        "Checks that found no cached answer.";
    coalesced_waits: Counter => "coalesced_waits", "tokenchecker_coalesced_waits_total",
        "Callers that waited for another caller's fetch.";
    waiter_timeouts: Counter => "waiter_timeouts", "tokenchecker_waiter_timeouts_total",
        "Callers that gave up waiting for a fetch.";
    purges: Counter => "purges", "tokenchecker_purges_total", "Purges.";
    refreshes: Counter => "refreshes", "tokenchecker_refreshes_total",
        "Background refreshes of answers about to expire (refresh_ahead_s).";
    cache_resets: Counter => "cache_resets", "tokenchecker_cache_resets_total",
        "Times a cache_config replaced the shared cache.";
    forks_seen: Counter => "forks", "tokenchecker_forks_total",
        "Forks after which this process (the child) rebuilt the library's state.";
    requests_introspect: Counter => "requests.introspect",
        "tokenchecker_requests_total" { endpoint = "introspect" },
        "Requests to Globus Auth and Groups.";
    requests_dependent_token: Counter => "requests.dependent_token",
        "tokenchecker_requests_total" { endpoint = "dependent_token" }, "";
    requests_groups: Counter => "requests.groups",
        "tokenchecker_requests_total" { endpoint = "groups" }, "";
    retries: Counter => "requests.retries", "tokenchecker_request_retries_total",
        "Retried requests.";
    errors_introspect: Counter => "errors.introspect",
        "tokenchecker_request_errors_total" { endpoint = "introspect" }, "Failed requests.";
    errors_dependent_token: Counter => "errors.dependent_token",
        "tokenchecker_request_errors_total" { endpoint = "dependent_token" }, "";
    errors_groups: Counter => "errors.groups",
        "tokenchecker_request_errors_total" { endpoint = "groups" }, "";
    /// Requests refused because too many were in flight for too long (`max_concurrent_requests`).
    requests_shed: Counter => "requests_shed", "tokenchecker_requests_shed_total",
        "Requests refused by the in-flight cap.";
    /// Answers served from the stale area while the authorization server was unavailable.
    stale_served: Counter => "stale_served", "tokenchecker_stale_served_total",
        "Stale answers served during an auth server outage.";
    backend_errors: Counter => "errors.backend", "tokenchecker_backend_errors_total",
        "Shared-backend commands that failed.";
    backend_hits: Counter => "backend.hits", "tokenchecker_backend_hits_total",
        "Shared-backend hits.";
    backend_misses: Counter => "backend.misses", "tokenchecker_backend_misses_total",
        "Shared-backend misses.";
    backend_rejected_entries: Counter => "backend.rejected_entries",
        "tokenchecker_backend_rejected_entries_total",
        "Shared-backend entries that failed to open (forged, altered, moved).";
    breaker_open_skips: Counter => "backend.breaker_skips",
        "tokenchecker_backend_breaker_skips_total", "Shared-backend calls skipped by the breaker.";
    /// Fetch locks this process took in a shared backend.
    backend_lock_acquired: Counter => "backend.lock_acquired",
        "tokenchecker_backend_locks_acquired_total", "Fleet fetch locks taken.";
    /// Fetch locks released by a task of their own after every caller of the fetch gave up.
    backend_lock_released_on_drop: Counter => "backend.locks_released_on_drop",
        "tokenchecker_backend_locks_released_on_drop_total",
        "Fleet fetch locks released after every caller of their fetch gave up.";
    /// Values read from a shared backend and refused because a fleet purge covers them.
    backend_purged: Counter => "backend.purged", "tokenchecker_backend_purged_total",
        "Shared-backend values refused because a fleet purge covers them.";
    /// Times this process waited for another one's fetch (it found the lock taken).
    backend_lock_waits: Counter => "backend.lock_waits", "tokenchecker_backend_lock_waits_total",
        "Waits for another process's fetch.";
    /// Latency of each request to Globus Auth and Groups (introspection, grant, my_groups).
    request_latency: Histogram => "latency.requests", "tokenchecker_request_duration_seconds",
        "Latency of requests to Globus Auth and Groups.";
    /// Latency of each shared-backend command.
    backend_latency: Histogram => "latency.backend", "tokenchecker_backend_duration_seconds",
        "Latency of shared-backend commands.";
}

/// One exported series: where it goes in each export, and its storage.
struct Metric<'a> {
    /// Its key in `tc_stats` (`group.key`: in the object `group`).
    json: &'static str,
    /// Its Prometheus name and labels.
    name: &'static str,
    labels: &'static [(&'static str, &'static str)],
    /// Empty: a further series of the metric before.
    help: &'static str,
    reading: Reading<'a>,
}

enum Reading<'a> {
    Counter(&'a Counter),
    Histogram(&'a Histogram),
}

impl<'a> From<&'a Counter> for Reading<'a> {
    fn from(c: &'a Counter) -> Self {
        Reading::Counter(c)
    }
}

impl<'a> From<&'a Histogram> for Reading<'a> {
    fn from(h: &'a Histogram) -> Self {
        Reading::Histogram(h)
    }
}

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
    /// The `tc_stats` document, `cache` being the cache's description. The keys come out
    /// sorted (`serde_json`'s map).
    pub fn to_json(&self, cache: serde_json::Value) -> String {
        let mut root = serde_json::Map::new();
        for m in self.metrics() {
            let value = match m.reading {
                Reading::Counter(c) => c.get().into(),
                Reading::Histogram(h) => h.to_json(),
            };
            match m.json.split_once('.') {
                Some((group, key)) => {
                    let group = root.entry(group).or_insert_with(|| json!({}));
                    group
                        .as_object_mut()
                        .expect("a group is an object")
                        .insert(key.to_string(), value);
                }
                None => {
                    root.insert(m.json.to_string(), value);
                }
            }
        }
        root.insert("cache".to_string(), cache);
        serde_json::Value::Object(root).to_string()
    }

    /// The counters and latency histograms in the Prometheus text format (version 0.0.4).
    pub fn to_prometheus(&self, cache_entries: u64) -> String {
        use std::fmt::Write;
        let metrics = self.metrics();
        let mut out = String::with_capacity(8192);
        let mut last = "";
        for m in &metrics {
            let Reading::Counter(c) = m.reading else {
                continue;
            };
            let name = m.name;
            if name != last {
                let _ = writeln!(out, "# HELP {name} {}\n# TYPE {name} counter", m.help);
                last = name;
            }
            let _ = write!(out, "{name}");
            for (i, (k, v)) in m.labels.iter().enumerate() {
                let open = if i == 0 { '{' } else { ',' };
                let _ = write!(out, "{open}{k}=\"{v}\"");
            }
            if !m.labels.is_empty() {
                out.push('}');
            }
            let _ = writeln!(out, " {}", c.get());
        }
        let _ = writeln!(
            out,
            "# HELP tokenchecker_cache_entries Entries in this process's cache layer.\n\
             # TYPE tokenchecker_cache_entries gauge\ntokenchecker_cache_entries {cache_entries}"
        );
        for m in &metrics {
            let Reading::Histogram(h) = m.reading else {
                continue;
            };
            let (name, help) = (m.name, m.help);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_are_declared_consistently() {
        let stats = Stats::default();
        let metrics = stats.metrics();
        let mut jsons = std::collections::HashSet::new();
        let mut series = std::collections::HashSet::new();
        for (i, m) in metrics.iter().enumerate() {
            assert!(jsons.insert(m.json), "{} twice in tc_stats", m.json);
            assert!(series.insert((m.name, m.labels)), "{} twice", m.name);
            // Help once per metric, on its first series; a metric's series are together.
            let first = i == 0 || metrics[i - 1].name != m.name;
            assert_eq!(
                m.help.is_empty(),
                !first,
                "{}: help on the first series only",
                m.name
            );
            assert!(!first || !metrics[..i].iter().any(|p| p.name == m.name));
            if let Reading::Histogram(_) = m.reading {
                assert!(m.labels.is_empty(), "{}: histograms have no labels", m.name);
            }
        }
        let text = stats.to_prometheus(0);
        let document: serde_json::Value =
            serde_json::from_str(&stats.to_json(json!(null))).unwrap();
        for m in &metrics {
            assert!(text.contains(&format!("# HELP {} ", m.name)), "{}", m.name);
            let found = match m.json.split_once('.') {
                Some((group, key)) => &document[group][key],
                None => &document[m.json],
            };
            assert!(!found.is_null(), "{} in tc_stats", m.json);
        }
    }
}
