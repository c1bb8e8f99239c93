//! A circuit breaker in front of a shared backend.
//!
//! Closed: every operation goes to the backend. After `threshold` consecutive failures (errors or
//! timeouts) it opens: operations are skipped (the caller falls back to the in-process layer and
//! to the authorization server) for `cooldown`. When the cool-down has passed, one caller is let
//! through as a probe and the window is pushed out by another cool-down for everybody else: a
//! success closes the breaker, a failure keeps it open. A probe that is abandoned (its caller gave
//! up) simply lets another probe through one cool-down later, so the breaker never sticks.
//!
//! Lock-free: two atomics, read on every operation, written only on state changes.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::*};
use std::time::{Duration, Instant};

pub struct Breaker {
    threshold: u32,
    cooldown_ms: u64,
    failures: AtomicU32,
    /// Milliseconds since `base` until which the backend is skipped; 0 when closed.
    open_until: AtomicU64,
    base: Instant,
}

impl Breaker {
    pub fn new(threshold: u32, cooldown: Duration) -> Breaker {
        Breaker {
            threshold: threshold.max(1),
            cooldown_ms: (cooldown.as_millis() as u64).max(1),
            failures: AtomicU32::new(0),
            open_until: AtomicU64::new(0),
            base: Instant::now(),
        }
    }

    fn now_ms(&self) -> u64 {
        self.base.elapsed().as_millis() as u64 + 1
    }

    /// Whether an operation may go to the backend now.
    #[inline]
    pub fn allow(&self) -> bool {
        let until = self.open_until.load(Acquire);
        if until == 0 {
            return true;
        }
        let now = self.now_ms();
        if now < until {
            return false;
        }
        // Half-open: exactly one caller wins the probe for this window.
        self.open_until
            .compare_exchange(until, now + self.cooldown_ms, AcqRel, Relaxed)
            .is_ok()
    }

    /// Whether operations are being skipped now (open, and the cool-down has not passed).
    #[inline]
    pub fn skipping(&self) -> bool {
        let until = self.open_until.load(Relaxed);
        until != 0 && self.now_ms() < until
    }

    /// Whether the backend is considered down (open or probing).
    #[inline]
    pub fn tripped(&self) -> bool {
        self.open_until.load(Relaxed) != 0
    }

    /// Records a success; true if it closed the breaker.
    #[inline]
    pub fn success(&self) -> bool {
        if self.failures.load(Relaxed) != 0 {
            self.failures.store(0, Relaxed);
        }
        self.open_until.load(Relaxed) != 0 && self.open_until.swap(0, AcqRel) != 0
    }

    /// Records a failure; true if it opened the breaker (from closed).
    pub fn failure(&self) -> bool {
        let n = self.failures.fetch_add(1, AcqRel).saturating_add(1);
        if n >= self.threshold {
            let was = self
                .open_until
                .swap(self.now_ms() + self.cooldown_ms, AcqRel);
            return was == 0;
        }
        false
    }

    pub fn state(&self) -> &'static str {
        let until = self.open_until.load(Relaxed);
        if until == 0 {
            "closed"
        } else if self.now_ms() < until {
            "open"
        } else {
            "half_open"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_threshold_and_probes_after_cooldown() {
        let b = Breaker::new(2, Duration::from_millis(30));
        assert!(b.allow());
        assert!(!b.failure());
        assert!(b.allow() && !b.tripped());
        assert!(b.failure(), "opened");
        assert!(b.tripped());
        assert!(!b.allow());
        std::thread::sleep(Duration::from_millis(40));
        assert!(b.allow(), "one probe after the cool-down");
        assert!(!b.allow(), "only one");
        assert!(!b.failure(), "already open");
        assert!(!b.allow());
        std::thread::sleep(Duration::from_millis(40));
        assert!(b.allow());
        assert!(b.success(), "closed");
        assert!(!b.success());
        assert!(!b.tripped());
        assert!(b.allow() && b.allow());
        assert_eq!(b.state(), "closed");
    }
}
