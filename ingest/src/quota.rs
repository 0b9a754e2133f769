//! Per-device publish quotas: messages and payload bytes per second, each
//! with a burst, so one device (or one stolen credential) cannot take the
//! log's write capacity from the others. Over quota, a publish is refused
//! and not stored; the device keeps its copy and sends it again later.

use std::num::NonZeroU32;

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use serde::{Deserialize, Serialize};

/// Sized for catching up after an outage, well above a field sensor's
/// steady rate; tighten them to the fleet's needs.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct QuotaConfig {
    pub publishes_per_second: u32,
    pub publish_burst: u32,
    pub bytes_per_second: u32,
    pub byte_burst: u32,
}

impl Default for QuotaConfig {
    fn default() -> Self {
        Self {
            publishes_per_second: 1000,
            publish_burst: 2000,
            bytes_per_second: 1 << 20,
            byte_burst: 4 << 20,
        }
    }
}

/// The quotas of every device that has published; only authenticated
/// devices get here, so the maps are bounded by the fleet's size.
pub(crate) struct PublishQuotas {
    publishes: DefaultKeyedRateLimiter<String>,
    bytes: DefaultKeyedRateLimiter<String>,
}

impl PublishQuotas {
    pub fn new(config: QuotaConfig) -> Self {
        let quota = |per_second: u32, burst: u32| {
            let per_second = NonZeroU32::new(per_second).unwrap_or(NonZeroU32::MIN);
            Quota::per_second(per_second).allow_burst(NonZeroU32::new(burst).unwrap_or(per_second))
        };
        Self {
            publishes: RateLimiter::keyed(quota(config.publishes_per_second, config.publish_burst)),
            bytes: RateLimiter::keyed(quota(config.bytes_per_second, config.byte_burst)),
        }
    }

    /// Whether `device_id` may publish `payload_len` more bytes now; if so,
    /// they are counted against its quotas.
    pub fn admit(&self, device_id: &str, payload_len: usize) -> bool {
        let key = device_id.to_owned();
        if self.publishes.check_key(&key).is_err() {
            return false;
        }
        match u32::try_from(payload_len).ok().and_then(NonZeroU32::new) {
            None => payload_len == 0,
            Some(bytes) => matches!(self.bytes.check_key_n(&key, bytes), Ok(Ok(()))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_device_over_its_quota_is_refused_and_others_are_not() {
        let quotas = PublishQuotas::new(QuotaConfig {
            publishes_per_second: 1,
            publish_burst: 3,
            bytes_per_second: 1,
            byte_burst: 1000,
        });
        assert!((0..3).all(|_| quotas.admit("d1", 10)));
        assert!(!quotas.admit("d1", 10), "the fourth message at once is over the burst");
        assert!(quotas.admit("d2", 10));
        assert!(!quotas.admit("d2", 1000), "over the byte burst left");
        assert!(!quotas.admit("d3", 1001), "larger than the byte burst");
    }
}
