//! Failed-login throttling, per source address and per device id.
//!
//! Each address and each device id has a budget of failed logins that
//! refills at a steady rate. Once an address has spent its budget, its
//! CONNECTs are refused before any credential is looked at; once a device id
//! has, CONNECTs claiming that id are refused from the addresses that failed
//! for it. Neither locks out a device that is only sharing an address or an
//! id with an attacker: a device keeps getting in from the address of its
//! last good login, and from any address that has not failed for its id
//! (the attacker's have). Pure bookkeeping: the caller passes the time in.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

use serde::{Deserialize, Serialize};

/// How many failed logins are tolerated, per minute and at once.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ThrottleConfig {
    /// Failed logins per minute from one source address (and the burst).
    pub failures_per_address_per_minute: u32,
    /// Failed logins per minute for one device id, from any address.
    pub failures_per_device_per_minute: u32,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        Self { failures_per_address_per_minute: 60, failures_per_device_per_minute: 10 }
    }
}

/// Entries per map at which full buckets are first forgotten; beyond four
/// times this, new keys are not tracked (memory stays bounded, to a few MiB,
/// under a flood of addresses or invented ids).
const TRACKED: usize = 16_384;

/// Addresses remembered per device id as having failed for it; beyond
/// these, an exhausted id is refused from every address but its device's.
const FAILED_FROM: usize = 32;

#[derive(Debug, Clone)]
struct Bucket {
    tokens: f64,
    at: Instant,
    /// Addresses that spent this budget (device ids only).
    failed_from: Vec<IpAddr>,
    crowded: bool,
}

impl Bucket {
    fn refilled(&self, now: Instant, capacity: f64) -> f64 {
        let per_second = capacity / 60.0;
        (self.tokens + now.saturating_duration_since(self.at).as_secs_f64() * per_second).min(capacity)
    }
}

/// The failure budgets of one key kind (addresses or device ids).
#[derive(Debug)]
struct Budgets<K> {
    capacity: f64,
    buckets: HashMap<K, Bucket>,
    /// Size at which full buckets are next swept out: doubles with what
    /// a sweep leaves, so sweeping stays amortised O(1) per failure; at the
    /// cap, at most one sweep a second.
    sweep_at: usize,
    swept: Option<Instant>,
}

impl<K: std::hash::Hash + Eq + Clone> Budgets<K> {
    fn new(per_minute: u32) -> Self {
        Self {
            capacity: f64::from(per_minute.max(1)),
            buckets: HashMap::new(),
            sweep_at: TRACKED,
            swept: None,
        }
    }

    fn exhausted(&self, key: &K, now: Instant) -> bool {
        self.buckets.get(key).is_some_and(|b| b.refilled(now, self.capacity) < 1.0)
    }

    /// Exhausted for logins from `address`: it failed for this key before.
    fn exhausted_for(&self, key: &K, address: IpAddr, now: Instant) -> bool {
        self.buckets.get(key).is_some_and(|b| {
            b.refilled(now, self.capacity) < 1.0 && (b.crowded || b.failed_from.contains(&address))
        })
    }

    /// Spends one failure; `address` is remembered against the key.
    fn spend(&mut self, key: &K, now: Instant, address: Option<IpAddr>) {
        let capacity = self.capacity;
        if !self.buckets.contains_key(key) {
            let recently = self.swept.is_some_and(|at| now.saturating_duration_since(at).as_secs() < 1);
            if self.buckets.len() >= self.sweep_at && !recently {
                self.buckets.retain(|_, b| b.refilled(now, capacity) < capacity);
                self.sweep_at = (2 * self.buckets.len()).clamp(TRACKED, 4 * TRACKED);
                self.swept = Some(now);
            }
            if self.buckets.len() >= 4 * TRACKED {
                return;
            }
        }
        let bucket = self.buckets.entry(key.clone()).or_insert(Bucket {
            tokens: capacity,
            at: now,
            failed_from: Vec::new(),
            crowded: false,
        });
        bucket.tokens = (bucket.refilled(now, capacity) - 1.0).max(0.0);
        bucket.at = now;
        if let Some(address) = address
            && !bucket.failed_from.contains(&address)
        {
            if bucket.failed_from.len() < FAILED_FROM {
                bucket.failed_from.push(address);
            } else {
                bucket.crowded = true;
            }
        }
    }
}

#[derive(Debug)]
struct State {
    addresses: Budgets<IpAddr>,
    devices: Budgets<String>,
    /// Where each device last logged in successfully.
    last_good: HashMap<String, IpAddr>,
}

/// Shared by all connections of an edge.
#[derive(Debug)]
pub struct LoginThrottle {
    state: Mutex<State>,
}

impl LoginThrottle {
    pub fn new(config: ThrottleConfig) -> Self {
        Self {
            state: Mutex::new(State {
                addresses: Budgets::new(config.failures_per_address_per_minute),
                devices: Budgets::new(config.failures_per_device_per_minute),
                last_good: HashMap::new(),
            }),
        }
    }

    /// Whether a login for `identity` (a device id, or a reader's username)
    /// from `address` may be checked at all. Failures are counted once
    /// checked, so logins checked at the same moment may overspend a budget
    /// by their number (bounded by the server's concurrent handshakes);
    /// spending in advance instead would refuse a fleet's honest logins
    /// from one address (a NAT) whenever more are in flight than the budget.
    pub fn admits(&self, address: IpAddr, identity: &str, now: Instant) -> bool {
        let state = self.state.lock().expect("throttle poisoned");
        if state.last_good.get(identity) == Some(&address) {
            return true;
        }
        !state.addresses.exhausted(&address, now)
            && !state.devices.exhausted_for(&identity.to_owned(), address, now)
    }

    /// Wrong credentials: spends from both budgets.
    pub fn failed(&self, address: IpAddr, identity: &str, now: Instant) {
        let mut state = self.state.lock().expect("throttle poisoned");
        state.addresses.spend(&address, now, None);
        state.devices.spend(&identity.to_owned(), now, Some(address));
    }

    /// Only identities the registry knows get here, so `last_good` is
    /// bounded by the fleet's size. (A certificate login names no identity
    /// before the handshake: nothing to remember.)
    pub fn succeeded(&self, address: IpAddr, identity: &str) {
        let mut state = self.state.lock().expect("throttle poisoned");
        if !identity.is_empty() && state.last_good.get(identity) != Some(&address) {
            state.last_good.insert(identity.to_owned(), address);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    fn throttle(per_address: u32, per_device: u32) -> LoginThrottle {
        LoginThrottle::new(ThrottleConfig {
            failures_per_address_per_minute: per_address,
            failures_per_device_per_minute: per_device,
        })
    }

    /// A login attempt that fails, if it is let through.
    fn fail(t: &LoginThrottle, address: IpAddr, identity: &str, now: Instant) -> bool {
        let admitted = t.admits(address, identity, now);
        if admitted {
            t.failed(address, identity, now);
        }
        admitted
    }

    fn succeed(t: &LoginThrottle, address: IpAddr, identity: &str, now: Instant) -> bool {
        let admitted = t.admits(address, identity, now);
        if admitted {
            t.succeeded(address, identity);
        }
        admitted
    }

    #[test]
    fn an_address_that_keeps_failing_is_refused_until_its_budget_refills() {
        let t = throttle(3, 1000);
        let now = Instant::now();
        for n in 0..3 {
            assert!(fail(&t, ip(2), &format!("guess-{n}"), now));
        }
        assert!(!fail(&t, ip(2), "guess-3", now));
        // Other addresses are not affected.
        assert!(fail(&t, ip(3), "guess-3", now));
        // 3 per minute: one more after 20 s.
        assert!(fail(&t, ip(2), "guess-3", now + Duration::from_secs(20)));
    }

    #[test]
    fn many_honest_logins_at_once_from_one_address_are_all_admitted() {
        let t = throttle(3, 3);
        let now = Instant::now();
        // A fleet behind one NAT reconnecting at once: none has failed.
        assert!((0..1000).all(|n| t.admits(ip(2), &format!("d{n}"), now)));
        for n in 0..1000 {
            t.succeeded(ip(2), &format!("d{n}"));
        }
        assert!(fail(&t, ip(2), "guess", now));
    }

    #[test]
    fn a_device_id_under_attack_still_admits_the_device_from_its_known_address() {
        let t = throttle(1000, 2);
        let now = Instant::now();
        assert!(succeed(&t, ip(1), "d1", now));
        for attacker in 10..12 {
            assert!(fail(&t, ip(attacker), "d1", now));
        }
        assert!(!fail(&t, ip(10), "d1", now), "an address that failed for d1 is throttled for it");
        assert!(succeed(&t, ip(1), "d1", now), "d1 itself is not locked out");
        assert!(succeed(&t, ip(20), "d2", now), "other devices are not affected");
    }

    #[test]
    fn a_device_never_seen_still_gets_in_from_an_address_that_did_not_fail_for_it() {
        let t = throttle(1000, 2);
        let now = Instant::now();
        for attacker in 10..15 {
            fail(&t, ip(attacker), "d1", now);
        }
        assert!(!fail(&t, ip(10), "d1", now));
        assert!(succeed(&t, ip(1), "d1", now), "the device's own first login");
        // Once more addresses failed than are remembered, only known ones get in.
        for attacker in 0..(FAILED_FROM as u8 + 1) {
            t.failed(IpAddr::from([10, 0, 1, attacker]), "d1", now);
        }
        assert!(!succeed(&t, ip(30), "d1", now));
        assert!(succeed(&t, ip(1), "d1", now));
    }

    #[test]
    fn a_device_behind_an_attacked_address_keeps_getting_in() {
        let t = throttle(2, 1000);
        let now = Instant::now();
        assert!(succeed(&t, ip(1), "d1", now));
        for n in 0..5 {
            fail(&t, ip(1), &format!("x{n}"), now);
        }
        assert!(!succeed(&t, ip(1), "d2", now));
        assert!(succeed(&t, ip(1), "d1", now));
    }

    #[test]
    fn memory_stays_bounded_under_a_flood_of_invented_ids() {
        let t = throttle(10, 10);
        let now = Instant::now();
        for n in 0..(5 * TRACKED) {
            // From many addresses, so the address budget does not stop them first.
            let address = IpAddr::from([10, (n >> 16) as u8, (n >> 8) as u8, n as u8]);
            fail(&t, address, &format!("invented-{n}"), now);
        }
        assert_eq!(t.state.lock().unwrap().devices.buckets.len(), 4 * TRACKED);
        // Once their budgets have refilled, the entries are swept out.
        fail(&t, ip(2), "later", now + Duration::from_secs(60));
        assert_eq!(t.state.lock().unwrap().devices.buckets.len(), 1);
    }
}
