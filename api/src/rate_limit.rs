//! Per-token rate limits, like API Gateway's usage plans: a token bucket per
//! API token (governor's GCRA), so one busy client gets 429s while the others
//! are served.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

pub struct RateLimits {
    default_rate: u32,
    burst: u32,
    /// By token id and rate, so a changed rate gets a fresh bucket.
    limiters: Mutex<HashMap<(String, u32), Arc<DefaultDirectRateLimiter>>>,
}

impl RateLimits {
    pub fn new(default_rate: u32, burst: u32) -> Self {
        RateLimits { default_rate, burst, limiters: Mutex::default() }
    }

    /// Takes one request from the token's bucket; `Err(seconds)` to wait
    /// when it is empty.
    pub fn check(&self, token_id: &str, rate_per_second: Option<u32>) -> Result<(), u64> {
        let rate = rate_per_second.unwrap_or(self.default_rate).max(1);
        let limiter = {
            let mut limiters = self.limiters.lock().expect("rate limiter map poisoned");
            limiters
                .entry((token_id.to_owned(), rate))
                .or_insert_with(|| {
                    let rate = NonZeroU32::new(rate).expect("at least 1");
                    let burst = NonZeroU32::new(self.burst.max(rate.get())).expect("at least 1");
                    Arc::new(RateLimiter::direct(Quota::per_second(rate).allow_burst(burst)))
                })
                .clone()
        };
        limiter.check().map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            // Retry-After is whole seconds; round up so a client that obeys it succeeds.
            wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_past_its_burst_waits_and_others_do_not() {
        let limits = RateLimits::new(1, 3);
        for _ in 0..3 {
            assert_eq!(limits.check("busy", None), Ok(()));
        }
        assert_eq!(limits.check("busy", None), Err(1), "empty bucket: retry after a second");
        assert_eq!(limits.check("quiet", None), Ok(()), "another token has its own bucket");
        // A token with its own, higher rate gets a bigger burst.
        for _ in 0..10 {
            assert_eq!(limits.check("fast", Some(10)), Ok(()));
        }
        assert!(limits.check("fast", Some(10)).is_err());
    }
}
