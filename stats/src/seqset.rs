//! A set of sequence numbers stored as sorted, disjoint ranges: a device's
//! numbers are mostly consecutive, so a day of one reading per second is
//! one range, not 86 400 numbers.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SeqSet {
    /// Inclusive `(first, last)` ranges, sorted, never touching.
    ranges: Vec<(u64, u64)>,
}

impl SeqSet {
    pub fn contains(&self, seq: u64) -> bool {
        let i = self.ranges.partition_point(|&(_, last)| last < seq);
        self.ranges.get(i).is_some_and(|&(first, _)| first <= seq)
    }

    /// Adds `seq`; false if it was already there.
    pub fn insert(&mut self, seq: u64) -> bool {
        // The first range that ends at or after seq - 1 is the only one seq can join.
        let i = self.ranges.partition_point(|&(_, last)| last.saturating_add(1) < seq);
        match self.ranges.get(i).copied() {
            Some((first, last)) if first <= seq && seq <= last => return false,
            Some((first, last)) if last.checked_add(1) == Some(seq) => {
                self.ranges[i] = (first, seq);
                // Bridging the gap to the next range merges the two.
                if let Some(&(next_first, next_last)) = self.ranges.get(i + 1)
                    && next_first == seq + 1
                {
                    self.ranges[i] = (first, next_last);
                    self.ranges.remove(i + 1);
                }
            }
            Some((first, last)) if seq.checked_add(1) == Some(first) => self.ranges[i] = (seq, last),
            _ => self.ranges.insert(i, (seq, seq)),
        }
        true
    }

    pub fn len(&self) -> u64 {
        self.ranges.iter().map(|&(first, last)| last - first + 1).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// The inclusive `(first, last)` ranges, in order.
    pub fn spans(&self) -> &[(u64, u64)] {
        &self.ranges
    }

    /// The smallest and largest numbers in the set.
    pub fn bounds(&self) -> Option<(u64, u64)> {
        Some((self.ranges.first()?.0, self.ranges.last()?.1))
    }

    /// Adds every number of `other`.
    pub fn extend(&mut self, other: &SeqSet) {
        let mut merged: Vec<(u64, u64)> = Vec::with_capacity(self.ranges.len() + other.ranges.len());
        let mut all: Vec<(u64, u64)> = self.ranges.iter().chain(&other.ranges).copied().collect();
        all.sort_unstable();
        for (first, last) in all {
            match merged.last_mut() {
                Some(prev) if first <= prev.1.saturating_add(1) => prev.1 = prev.1.max(last),
                _ => merged.push((first, last)),
            }
        }
        self.ranges = merged;
    }

    /// How many ranges it takes (what it costs to store).
    pub fn ranges(&self) -> usize {
        self.ranges.len()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Behaves as a set, and keeps ranges sorted, disjoint and not touching.
        #[test]
        fn behaves_like_a_set(seqs in proptest::collection::vec(0u64..200, 0..300)) {
            let (mut set, mut model) = (SeqSet::default(), BTreeSet::new());
            for seq in seqs {
                prop_assert_eq!(set.insert(seq), model.insert(seq));
            }
            prop_assert_eq!(set.len(), model.len() as u64);
            for seq in 0..200 {
                prop_assert_eq!(set.contains(seq), model.contains(&seq));
            }
            for pair in set.ranges.windows(2) {
                prop_assert!(pair[0].1 + 1 < pair[1].0);
            }
        }

        /// The union of two sets is the set of both's numbers, in canonical ranges.
        #[test]
        fn extend_is_union(a in proptest::collection::vec(0u64..200, 0..100), b in proptest::collection::vec(0u64..200, 0..100)) {
            let (mut left, mut right, mut both) = (SeqSet::default(), SeqSet::default(), SeqSet::default());
            a.iter().for_each(|&s| { left.insert(s); both.insert(s); });
            b.iter().for_each(|&s| { right.insert(s); both.insert(s); });
            left.extend(&right);
            prop_assert_eq!(&left, &both);
            let model: BTreeSet<u64> = a.iter().chain(&b).copied().collect();
            prop_assert_eq!(left.bounds(), model.first().zip(model.last()).map(|(f, l)| (*f, *l)));
        }
    }

    #[test]
    fn consecutive_numbers_are_one_range() {
        let mut set = SeqSet::default();
        for seq in (1..=1000).rev().chain(1001..=2000) {
            set.insert(seq);
        }
        assert_eq!((set.len(), set.ranges()), (2000, 1));
        assert!(set.insert(u64::MAX) && !set.insert(u64::MAX) && set.insert(u64::MAX - 1));
        assert_eq!(set.ranges(), 2);
    }
}
