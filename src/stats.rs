//! Process-wide counters, read by `tc_stats`.
//!
//! Plain relaxed atomics: counting must cost the hot path next to nothing. Each counter sits on
//! its own cache line so two threads hitting the cache don't fight over one line.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use serde_json::json;

#[repr(align(64))]
#[derive(Default)]
pub struct Counter(AtomicU64);

impl Counter {
    #[inline]
    pub fn inc(&self) {
        self.0.fetch_add(1, Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
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
            },
            "cache": cache,
        })
        .to_string()
    }
}
