//! Per-device publish quotas: messages and payload bytes per second, each
//! with a burst, so one device (or one stolen credential) cannot take the
//! log's write capacity from the others. Over quota, a publish is refused
//! and not stored; the device keeps its copy and sends it again later.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Mutex;

use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};
use serde::{Deserialize, Serialize};
use wenu_registry::DeviceQuota;

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
    config: QuotaConfig,
    publishes: DefaultKeyedRateLimiter<String>,
    bytes: DefaultKeyedRateLimiter<String>,
    /// Devices with a quota of their own in the registry.
    own: Mutex<HashMap<String, OwnQuota>>,
}

struct OwnQuota {
    quota: DeviceQuota,
    publishes: DefaultDirectRateLimiter,
    bytes: DefaultDirectRateLimiter,
}

/// A rate with its burst; a device's own rate keeps the default's ratio of
/// burst to rate.
fn gcra(per_second: u32, burst: u32) -> Quota {
    let per_second = NonZeroU32::new(per_second).unwrap_or(NonZeroU32::MIN);
    Quota::per_second(per_second).allow_burst(NonZeroU32::new(burst).unwrap_or(per_second))
}

fn scaled_burst(default_rate: u32, default_burst: u32, rate: u32) -> u32 {
    let ratio = f64::from(default_burst) / f64::from(default_rate.max(1));
    (f64::from(rate) * ratio).clamp(1.0, f64::from(u32::MAX)) as u32
}

impl PublishQuotas {
    pub fn new(config: QuotaConfig) -> Self {
        Self {
            config,
            publishes: RateLimiter::keyed(gcra(config.publishes_per_second, config.publish_burst)),
            bytes: RateLimiter::keyed(gcra(config.bytes_per_second, config.byte_burst)),
            own: Mutex::default(),
        }
    }

    /// Whether `device_id` may publish `payload_len` more bytes now, under
    /// its own quota where the registry gives it one; if so, they are
    /// counted against its quotas.
    pub fn admit(&self, device_id: &str, payload_len: usize, own: DeviceQuota) -> bool {
        let bytes = u32::try_from(payload_len).ok().and_then(NonZeroU32::new);
        if payload_len > 0 && bytes.is_none() {
            return false;
        }
        if own == DeviceQuota::default() {
            let key = device_id.to_owned();
            return self.publishes.check_key(&key).is_ok()
                && bytes.is_none_or(|n| matches!(self.bytes.check_key_n(&key, n), Ok(Ok(()))));
        }
        let mut devices = self.own.lock().expect("quotas poisoned");
        let limiters = devices.entry(device_id.to_owned()).or_insert_with(|| self.own_limiters(own));
        if limiters.quota != own {
            *limiters = self.own_limiters(own);
        }
        limiters.publishes.check().is_ok()
            && bytes.is_none_or(|n| matches!(limiters.bytes.check_n(n), Ok(Ok(()))))
    }

    fn own_limiters(&self, quota: DeviceQuota) -> OwnQuota {
        let c = self.config;
        let publishes = quota.publishes_per_second.unwrap_or(c.publishes_per_second);
        let bytes = quota.bytes_per_second.unwrap_or(c.bytes_per_second);
        OwnQuota {
            quota,
            publishes: RateLimiter::direct(gcra(
                publishes,
                scaled_burst(c.publishes_per_second, c.publish_burst, publishes),
            )),
            bytes: RateLimiter::direct(gcra(bytes, scaled_burst(c.bytes_per_second, c.byte_burst, bytes))),
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
        let default = DeviceQuota::default();
        assert!((0..3).all(|_| quotas.admit("d1", 10, default)));
        assert!(!quotas.admit("d1", 10, default), "the fourth message at once is over the burst");
        assert!(quotas.admit("d2", 10, default));
        assert!(!quotas.admit("d2", 1000, default), "over the byte burst left");
        assert!(!quotas.admit("d3", 1001, default), "larger than the byte burst");
    }

    #[test]
    fn a_device_with_its_own_quota_gets_that_one_with_the_defaults_burst_ratio() {
        let quotas = PublishQuotas::new(QuotaConfig {
            publishes_per_second: 1,
            publish_burst: 2,
            bytes_per_second: 1000,
            byte_burst: 1000,
        });
        let own = DeviceQuota { publishes_per_second: Some(5), bytes_per_second: None };
        assert_eq!((0..20).filter(|_| quotas.admit("big", 1, own)).count(), 10, "burst 2 × 5");
        let smaller = DeviceQuota { publishes_per_second: Some(2), bytes_per_second: None };
        assert_eq!(
            (0..20).filter(|_| quotas.admit("big", 1, smaller)).count(),
            4,
            "a changed quota applies at once"
        );
        assert_eq!((0..20).filter(|_| quotas.admit("small", 1, DeviceQuota::default())).count(), 2);
    }
}
