//! Wall-clock time, as one injectable source.
//!
//! Whatever decides by the date (the table store's expiry, the stream's
//! retention, "now" in an API query) takes a [`Clock`], so a test can pin the
//! instant it works at instead of depending on the day it runs. Production
//! code uses [`SystemClock`]; tests use [`ManualClock`].

use std::fmt::Debug;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// A source of wall-clock time in unix milliseconds.
pub trait Clock: Debug + Send + Sync + 'static {
    fn now_ms(&self) -> i64;

    /// Unix seconds (DynamoDB's TTL unit).
    fn now_secs(&self) -> i64 {
        self.now_ms().div_euclid(1000)
    }
}

/// A shared clock, as the adapters hold it.
pub type SharedClock = Arc<dyn Clock>;

/// The machine's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        now_ms()
    }
}

/// The machine's clock, shared.
pub fn system() -> SharedClock {
    Arc::new(SystemClock)
}

/// The machine's wall clock in unix milliseconds (0 before 1970).
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// A clock that stands still until it is set or advanced.
#[derive(Debug, Default)]
pub struct ManualClock {
    now_ms: AtomicI64,
}

impl ManualClock {
    pub fn at(now_ms: i64) -> Arc<Self> {
        Arc::new(ManualClock { now_ms: AtomicI64::new(now_ms) })
    }

    pub fn set(&self, now_ms: i64) {
        self.now_ms.store(now_ms, Ordering::SeqCst);
    }

    pub fn advance_ms(&self, by: i64) {
        self.now_ms.fetch_add(by, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.now_ms.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_told() {
        let clock = ManualClock::at(1_500);
        assert_eq!((clock.now_ms(), clock.now_secs()), (1_500, 1));
        clock.advance_ms(-2_000);
        assert_eq!((clock.now_ms(), clock.now_secs()), (-500, -1));
        clock.set(7_000);
        assert_eq!(clock.now_secs(), 7);
    }
}
