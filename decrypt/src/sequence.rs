//! Per-device sequence tracking.
//!
//! Devices number their messages and resend what was not acknowledged, so the
//! stream holds some messages twice and, when a device loses data, misses some.
//! For each device the tracker keeps the highest sequence number seen and a
//! window of the [`WINDOW`] numbers below it:
//!
//! * a number above the highest is new (the numbers skipped are a gap, for now);
//! * a number inside the window is new if its bit is clear (it fills a gap),
//!   a duplicate if set;
//! * a number below the window cannot be told apart from a replay of an old
//!   message, and is rejected as one.
//!
//! Completeness is `received / (highest − lowest + 1)`.
//!
//! A device whose counter goes back (factory reset, firmware that lost it)
//! would be rejected until it passed its old highest number; the registry
//! resets its window instead ([`SequenceTracker::observe_at`]): the first
//! record that arrives after the reset starts a fresh window. The reset is
//! keyed by arrival time, so replaying the stream decides the same way.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// How far below the highest sequence number a late message is still accepted.
pub const WINDOW: u64 = 256;
const WORDS: usize = (WINDOW / 64) as usize;

/// What the tracker says about one (device, seq).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeqVerdict {
    New,
    Duplicate,
    /// Older than the window.
    Replayed,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct DeviceSeqs {
    lowest: u64,
    highest: u64,
    /// Bit `i` is set when `highest - i` was received.
    window: [u64; WORDS],
    received: u64,
    duplicates: u64,
    replayed: u64,
    /// The registry reset (arrival time, unix ms) this window started at; 0 for none.
    #[serde(default)]
    reset_at: i64,
}

impl DeviceSeqs {
    fn first(seq: u64) -> Self {
        let mut seqs = DeviceSeqs { lowest: seq, highest: seq, received: 1, ..Default::default() };
        seqs.window[0] = 1;
        seqs
    }

    fn bit(&self, distance: u64) -> bool {
        self.window[(distance / 64) as usize] & (1 << (distance % 64)) != 0
    }

    fn set(&mut self, distance: u64) {
        self.window[(distance / 64) as usize] |= 1 << (distance % 64);
    }

    /// Moves the window up by `by` numbers.
    fn advance(&mut self, by: u64) {
        if by >= WINDOW {
            self.window = [0; WORDS];
            return;
        }
        let (words, bits) = ((by / 64) as usize, (by % 64) as u32);
        for i in (0..WORDS).rev() {
            let low = if i >= words { self.window[i - words] } else { 0 };
            let lower = if i > words { self.window[i - words - 1] } else { 0 };
            self.window[i] = if bits == 0 { low } else { (low << bits) | (lower >> (64 - bits)) };
        }
    }

    fn observe(&mut self, seq: u64) -> SeqVerdict {
        if seq > self.highest {
            self.advance(seq - self.highest);
            self.highest = seq;
            self.set(0);
            self.received += 1;
            return SeqVerdict::New;
        }
        let distance = self.highest - seq;
        if distance >= WINDOW {
            self.replayed += 1;
            return SeqVerdict::Replayed;
        }
        if self.bit(distance) {
            self.duplicates += 1;
            return SeqVerdict::Duplicate;
        }
        self.set(distance);
        self.received += 1;
        self.lowest = self.lowest.min(seq);
        SeqVerdict::New
    }
}

/// Completeness figures of one device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeviceCompleteness {
    pub device_id: String,
    pub received: u64,
    pub expected: u64,
    pub missing: u64,
    pub duplicates: u64,
    pub replayed: u64,
    pub highest_seq: u64,
}

impl DeviceCompleteness {
    /// Received over expected, 1.0 for a device with nothing missing.
    pub fn ratio(&self) -> f64 {
        if self.expected == 0 { 1.0 } else { self.received as f64 / self.expected as f64 }
    }
}

/// The sequence state of every device a consumer has seen.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SequenceTracker {
    devices: BTreeMap<String, DeviceSeqs>,
}

impl SequenceTracker {
    /// Records that `device_id` sent `seq` and says whether it is new.
    pub fn observe(&mut self, device_id: &str, seq: u64) -> SeqVerdict {
        match self.devices.get_mut(device_id) {
            Some(seqs) => seqs.observe(seq),
            None => {
                self.devices.insert(device_id.to_owned(), DeviceSeqs::first(seq));
                SeqVerdict::New
            }
        }
    }

    /// [`observe`](Self::observe) for a record that arrived at
    /// `received_at` from a device whose window the registry reset at
    /// `reset_at`: the first record arriving since the reset starts a fresh
    /// window (the duplicate and replay counts carry over).
    pub fn observe_at(
        &mut self,
        device_id: &str,
        seq: u64,
        received_at: i64,
        reset_at: Option<i64>,
    ) -> SeqVerdict {
        let Some(reset_at) = reset_at.filter(|&at| received_at >= at) else {
            return self.observe(device_id, seq);
        };
        match self.devices.get_mut(device_id) {
            Some(seqs) if seqs.reset_at >= reset_at => seqs.observe(seq),
            Some(seqs) => {
                *seqs = DeviceSeqs {
                    reset_at,
                    duplicates: seqs.duplicates,
                    replayed: seqs.replayed,
                    ..DeviceSeqs::first(seq)
                };
                SeqVerdict::New
            }
            None => {
                self.devices.insert(device_id.to_owned(), DeviceSeqs { reset_at, ..DeviceSeqs::first(seq) });
                SeqVerdict::New
            }
        }
    }

    /// Says what [`observe`](Self::observe) would, without recording anything.
    pub fn peek(&self, device_id: &str, seq: u64) -> SeqVerdict {
        match self.devices.get(device_id) {
            Some(seqs) => seqs.clone().observe(seq),
            None => SeqVerdict::New,
        }
    }

    pub fn completeness(&self, device_id: &str) -> Option<DeviceCompleteness> {
        self.devices.get(device_id).map(|s| {
            let expected = s.highest - s.lowest + 1;
            DeviceCompleteness {
                device_id: device_id.to_owned(),
                received: s.received,
                expected,
                missing: expected.saturating_sub(s.received),
                duplicates: s.duplicates,
                replayed: s.replayed,
                highest_seq: s.highest,
            }
        })
    }

    /// Every device, in id order.
    pub fn all(&self) -> impl Iterator<Item = DeviceCompleteness> + '_ {
        self.devices.keys().filter_map(|id| self.completeness(id))
    }

    pub fn device_count(&self) -> usize {
        self.devices.len()
    }

    /// The state of `devices` now, for [`restore`](Self::restore) if what
    /// observes them next is undone (a batch that failed and will come again).
    pub fn snapshot<'a>(&self, devices: impl IntoIterator<Item = &'a str>) -> SeqSnapshot {
        let mut ids: Vec<&str> = devices.into_iter().collect();
        ids.sort_unstable();
        ids.dedup();
        SeqSnapshot(ids.into_iter().map(|id| (id.to_owned(), self.devices.get(id).cloned())).collect())
    }

    /// Puts the devices of `snapshot` back as they were.
    pub fn restore(&mut self, snapshot: SeqSnapshot) {
        for (id, seqs) in snapshot.0 {
            match seqs {
                Some(seqs) => self.devices.insert(id, seqs),
                None => self.devices.remove(&id),
            };
        }
    }
}

/// Some devices' sequence state, from [`SequenceTracker::snapshot`].
#[derive(Debug, Clone)]
pub struct SeqSnapshot(Vec<(String, Option<DeviceSeqs>)>);

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    #[test]
    fn a_restored_snapshot_forgets_what_was_observed_since() {
        let mut t = super::SequenceTracker::default();
        t.observe("d1", 1);
        let snapshot = t.snapshot(["d1", "d2", "d1"]);
        t.observe("d1", 2);
        t.observe("d2", 7);
        t.restore(snapshot);
        assert_eq!(t.peek("d1", 1), super::SeqVerdict::Duplicate);
        assert_eq!(t.peek("d1", 2), super::SeqVerdict::New);
        assert_eq!(t.peek("d2", 7), super::SeqVerdict::New);
        assert_eq!(t.device_count(), 1);
    }

    use super::*;

    #[test]
    fn in_order_with_a_gap_then_late_fill() {
        let mut t = SequenceTracker::default();
        for seq in [10, 11, 12, 15, 16] {
            assert_eq!(t.observe("d", seq), SeqVerdict::New);
        }
        let c = t.completeness("d").unwrap();
        assert_eq!((c.received, c.expected, c.missing), (5, 7, 2));
        assert_eq!(t.observe("d", 13), SeqVerdict::New);
        assert_eq!(t.observe("d", 13), SeqVerdict::Duplicate);
        assert_eq!(t.observe("d", 16), SeqVerdict::Duplicate);
        let c = t.completeness("d").unwrap();
        assert_eq!((c.received, c.missing, c.duplicates), (6, 1, 2));
    }

    #[test]
    fn older_than_the_window_is_a_replay() {
        let mut t = SequenceTracker::default();
        t.observe("d", 1);
        t.observe("d", 1 + WINDOW);
        assert_eq!(t.observe("d", 1), SeqVerdict::Replayed);
        assert_eq!(t.observe("d", 2), SeqVerdict::New, "just inside the window");
        assert_eq!(t.completeness("d").unwrap().replayed, 1);
    }

    #[test]
    fn a_reset_starts_a_fresh_window_for_what_arrives_after_it() {
        let mut t = SequenceTracker::default();
        for seq in 1000..1010 {
            t.observe_at("d", seq, 100, None);
        }
        // The counter went back to 0 before the registry knew.
        assert_eq!(t.observe_at("d", 0, 200, None), SeqVerdict::Replayed);
        // Arrived before the reset at 300: still judged by the old window.
        assert_eq!(t.observe_at("d", 1, 250, Some(300)), SeqVerdict::Replayed);
        assert_eq!(t.observe_at("d", 1, 300, Some(300)), SeqVerdict::New, "a fresh window");
        assert_eq!(t.observe_at("d", 2, 310, Some(300)), SeqVerdict::New);
        assert_eq!(t.observe_at("d", 1, 320, Some(300)), SeqVerdict::Duplicate, "the reset happens once");
        assert_eq!(t.observe_at("d", 1005, 330, Some(300)), SeqVerdict::New, "old numbers are new again");
        let c = t.completeness("d").unwrap();
        assert_eq!((c.replayed, c.duplicates), (2, 1), "counts carry over the reset");
        // A second reset later starts another window.
        assert_eq!(t.observe_at("d", 0, 500, Some(400)), SeqVerdict::New);
        assert_eq!(t.observe_at("d", 1005, 510, Some(400)), SeqVerdict::New);
    }

    #[test]
    fn devices_are_independent() {
        let mut t = SequenceTracker::default();
        assert_eq!(t.observe("a", 5), SeqVerdict::New);
        assert_eq!(t.observe("b", 5), SeqVerdict::New);
        assert_eq!(t.peek("a", 5), SeqVerdict::Duplicate);
        assert_eq!(t.peek("c", 5), SeqVerdict::New);
    }

    proptest! {
        /// Against a plain set: inside the window the tracker answers exactly
        /// "seen before?", whatever the order of arrival.
        #[test]
        fn agrees_with_a_set_inside_the_window(seqs in proptest::collection::vec(0u64..600, 1..400)) {
            let mut t = SequenceTracker::default();
            let mut seen = std::collections::BTreeSet::new();
            let mut highest = 0;
            for seq in seqs {
                let verdict = t.observe("d", seq);
                if seen.is_empty() || seq > highest || highest - seq < WINDOW {
                    let expected = if seen.contains(&seq) { SeqVerdict::Duplicate } else { SeqVerdict::New };
                    prop_assert_eq!(verdict, expected);
                } else {
                    prop_assert_eq!(verdict, SeqVerdict::Replayed);
                }
                if verdict == SeqVerdict::New {
                    seen.insert(seq);
                    highest = highest.max(seq);
                }
            }
            let c = t.completeness("d").unwrap();
            prop_assert_eq!(c.received, seen.len() as u64);
            prop_assert_eq!(c.expected, seen.last().unwrap() - seen.first().unwrap() + 1);
        }
    }
}
