//! At most one log line per interval for an error that can repeat thousands
//! of times a second (every publish while the disk is full): the first is
//! logged at once, the rest are counted and reported with the next line.

use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct LogThrottle {
    every: Duration,
    state: Mutex<(Option<Instant>, u64)>,
}

impl LogThrottle {
    pub const fn new(every: Duration) -> Self {
        LogThrottle { every, state: Mutex::new((None, 0)) }
    }

    /// `Some(n)` when a line should be logged now, `n` being how many were
    /// held back since the last one; `None` to stay quiet.
    pub fn allow(&self) -> Option<u64> {
        let mut state = self.state.lock().expect("log throttle poisoned");
        let (last, suppressed) = &mut *state;
        if last.is_some_and(|at| at.elapsed() < self.every) {
            *suppressed += 1;
            return None;
        }
        *last = Some(Instant::now());
        Some(std::mem::take(suppressed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_with_the_count_held_back() {
        let throttle = LogThrottle::new(Duration::from_secs(3600));
        assert_eq!(throttle.allow(), Some(0));
        assert_eq!(throttle.allow(), None);
        assert_eq!(throttle.allow(), None);
        let quick = LogThrottle::new(Duration::ZERO);
        assert_eq!(quick.allow(), Some(0));
        assert_eq!(quick.allow(), Some(0));
    }
}
