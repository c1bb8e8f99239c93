//! Time, in one place: the wall clock in Unix seconds and milliseconds, and the cache's clock.
//!
//! The cache's clock is an instant in 8 bytes (`std::time::Instant` takes 16 on Linux, and every
//! cache entry holds two), read in one call (this is on every check's path).
//!
//! A [`Moment`] counts nanoseconds of the monotonic clock (`CLOCK_MONOTONIC`, the clock of
//! `Instant`; elsewhere than Unix, from the first reading). It never goes back; differences
//! saturate at zero.

use std::ops::Add;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The wall clock, in whole Unix seconds (token `exp`/`nbf`, dependent-token expiry).
pub fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// The wall clock, in Unix milliseconds (sealed entries' expiry).
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// An instant of the monotonic clock, in nanoseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Moment(u64);

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(unix)]
#[inline]
fn monotonic_nanos() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes the timespec it is given; CLOCK_MONOTONIC exists on
    // every Unix this builds for.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}

#[cfg(not(unix))]
fn monotonic_nanos() -> u64 {
    use once_cell::sync::Lazy;
    use std::time::Instant;
    static BASE: Lazy<Instant> = Lazy::new(Instant::now);
    nanos(BASE.elapsed())
}

/// The same clock at the kernel's tick (a few milliseconds), read without the time-stamp
/// counter: several times cheaper. For the hot path, where a few milliseconds never matter.
#[cfg(target_os = "linux")]
#[inline]
fn coarse_nanos(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes the timespec it is given; the coarse clocks exist on
    // every Linux this builds for.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}

/// Now in unix seconds, from the wall clock at tick precision (the hot path's `exp`/`nbf`
/// rules count whole seconds).
#[inline]
pub fn unix_now_coarse() -> i64 {
    #[cfg(target_os = "linux")]
    {
        (coarse_nanos(libc::CLOCK_REALTIME_COARSE) / 1_000_000_000) as i64
    }
    #[cfg(not(target_os = "linux"))]
    {
        now_unix()
    }
}

impl Moment {
    #[inline]
    pub fn now() -> Moment {
        Moment(monotonic_nanos())
    }

    /// [`Moment::now`] at the kernel's tick: at most a few milliseconds behind, never ahead.
    #[inline]
    pub fn now_coarse() -> Moment {
        #[cfg(target_os = "linux")]
        {
            Moment(coarse_nanos(libc::CLOCK_MONOTONIC_COARSE))
        }
        #[cfg(not(target_os = "linux"))]
        {
            Moment::now()
        }
    }

    /// The time from `earlier` to `self`; zero if `earlier` is later.
    #[inline]
    pub fn saturating_duration_since(self, earlier: Moment) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }

    /// The time from `self` to now; zero if `self` is in the future.
    pub fn elapsed(self) -> Duration {
        Moment::now().saturating_duration_since(self)
    }

    /// The clock's reading in nanoseconds (to keep a moment in an atomic).
    pub fn as_nanos(self) -> u64 {
        self.0
    }

    /// A moment from [`Moment::as_nanos`].
    pub fn from_nanos(n: u64) -> Moment {
        Moment(n)
    }

    /// `d` earlier, if that is not before the clock's start.
    pub fn checked_sub(self, d: Duration) -> Option<Moment> {
        self.0.checked_sub(nanos(d)).map(Moment)
    }
}

/// Saturates (at ≈584 years from the base) instead of overflowing.
impl Add<Duration> for Moment {
    type Output = Moment;

    #[inline]
    fn add(self, d: Duration) -> Moment {
        Moment(self.0.saturating_add(nanos(d)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behaves_like_an_instant() {
        let a = Moment::now();
        let b = a + Duration::from_millis(1500);
        assert!(b > a);
        assert_eq!(b.saturating_duration_since(a), Duration::from_millis(1500));
        assert_eq!(a.saturating_duration_since(b), Duration::ZERO);
        assert_eq!(b.checked_sub(Duration::from_millis(1500)), Some(a));
        assert_eq!(a + Duration::MAX, Moment(u64::MAX));
        assert!(Moment(0).checked_sub(Duration::from_nanos(1)).is_none());
        assert!(Moment::now() >= a);
        assert!(b.elapsed().is_zero());
        std::thread::sleep(Duration::from_millis(2));
        assert!(a.elapsed() >= Duration::from_millis(2));
        assert_eq!(std::mem::size_of::<Moment>(), 8);
    }
}
