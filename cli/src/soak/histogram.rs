//! Latency histograms: log-spaced buckets, mergeable across threads.

use std::time::Duration;

use serde_json::{json, Value};

/// Latencies in nanoseconds, 8 log-spaced buckets per power of two (about 9% wide).
#[derive(Clone)]
pub(super) struct Histogram {
    buckets: Vec<u64>,
    pub(super) count: u64,
    max: u64,
}

impl Histogram {
    pub(super) fn new() -> Histogram {
        Histogram {
            buckets: vec![0; 512],
            count: 0,
            max: 0,
        }
    }
    fn index(v: u64) -> usize {
        if v < 8 {
            return v as usize;
        }
        let e = 63 - v.leading_zeros() as u64;
        (8 + (e - 3) * 8 + ((v >> (e - 3)) & 7)) as usize
    }
    fn lower(i: usize) -> u64 {
        if i < 8 {
            return i as u64;
        }
        let e = (i as u64 - 8) / 8 + 3;
        let m = (i as u64 - 8) % 8;
        (8 + m) << (e - 3)
    }
    pub(super) fn record(&mut self, d: Duration) {
        let v = d.as_nanos().min(u64::MAX as u128) as u64;
        self.buckets[Self::index(v)] += 1;
        self.count += 1;
        self.max = self.max.max(v);
    }
    pub(super) fn merge(&mut self, o: &Histogram) {
        for (a, b) in self.buckets.iter_mut().zip(&o.buckets) {
            *a += b;
        }
        self.count += o.count;
        self.max = self.max.max(o.max);
    }
    /// The q-quantile, nanoseconds (the middle of its bucket).
    fn quantile(&self, q: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let want = ((self.count as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= want {
                let (lo, hi) = (Self::lower(i), Self::lower(i + 1));
                return ((lo + hi) / 2).min(self.max);
            }
        }
        self.max
    }
    pub(super) fn summary(&self) -> Value {
        let us = |ns: u64| (ns as f64 / 100.0).round() / 10.0;
        json!({"count": self.count, "p50_us": us(self.quantile(0.5)),
               "p99_us": us(self.quantile(0.99)), "p999_us": us(self.quantile(0.999)),
               "max_us": us(self.max)})
    }
}
