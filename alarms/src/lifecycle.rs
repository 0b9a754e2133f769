//! The lifecycle of one (rule, series): normal → raised → cleared, with the
//! rule's debounce, driven by event time.
//!
//! A raise needs the condition to hold for `debounce_ms` of event time (from
//! the first bad reading to a later one); a clear needs it to be gone as
//! long. Acknowledging is an operator's act on a raised alarm and does not
//! change what the detectors see, so it lives with the stored alarm, not here.

use serde::{Deserialize, Serialize};

use crate::detector::Signal;

/// Where a (rule, series) stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "snake_case")]
pub enum Phase {
    #[default]
    Normal,
    /// Bad since `since`, not yet for long enough.
    Pending { since: i64 },
    /// Raised at `raised_at`; good since `clearing_since`, if it is.
    Raised { raised_at: i64, clearing_since: Option<i64> },
}

/// A change of an alarm's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    Raised,
    Acknowledged,
    Cleared,
}

impl Change {
    pub fn as_str(self) -> &'static str {
        match self {
            Change::Raised => "raised",
            Change::Acknowledged => "acknowledged",
            Change::Cleared => "cleared",
        }
    }

    /// Small and stable: part of a transition's key.
    pub fn code(self) -> u8 {
        match self {
            Change::Raised => 0,
            Change::Acknowledged => 1,
            Change::Cleared => 2,
        }
    }
}

impl Phase {
    pub fn is_raised(&self) -> bool {
        matches!(self, Phase::Raised { .. })
    }

    /// Moves on with a detector's verdict at `ts`; returns the change it makes.
    pub fn step(&mut self, signal: Signal, ts: i64, debounce_ms: i64) -> Option<Change> {
        match (*self, signal) {
            (_, Signal::Hold) => None,
            (Phase::Normal, Signal::Bad) => {
                *self = Phase::Pending { since: ts };
                self.step(signal, ts, debounce_ms)
            }
            (Phase::Pending { since }, Signal::Bad) if ts - since >= debounce_ms => {
                *self = Phase::Raised { raised_at: ts, clearing_since: None };
                Some(Change::Raised)
            }
            (Phase::Pending { .. }, Signal::Bad) | (Phase::Normal, Signal::Good) => None,
            (Phase::Pending { .. }, Signal::Good) => {
                *self = Phase::Normal;
                None
            }
            (Phase::Raised { raised_at, .. }, Signal::Bad) => {
                *self = Phase::Raised { raised_at, clearing_since: None };
                None
            }
            (Phase::Raised { raised_at, clearing_since }, Signal::Good) => {
                let since = clearing_since.unwrap_or(ts);
                if ts - since >= debounce_ms {
                    *self = Phase::Normal;
                    Some(Change::Cleared)
                } else {
                    *self = Phase::Raised { raised_at, clearing_since: Some(since) };
                    None
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Signal::*;

    fn changes(debounce_ms: i64, signals: &[(i64, Signal)]) -> Vec<(i64, Change)> {
        let mut phase = Phase::default();
        signals.iter().filter_map(|&(ts, s)| phase.step(s, ts, debounce_ms).map(|c| (ts, c))).collect()
    }

    #[test]
    fn without_debounce_every_edge_is_a_change() {
        assert_eq!(
            changes(0, &[(0, Good), (1, Bad), (2, Bad), (3, Hold), (4, Good), (5, Bad)]),
            [(1, Change::Raised), (4, Change::Cleared), (5, Change::Raised)]
        );
    }

    #[test]
    fn debounce_holds_back_raises_and_clears() {
        // Bad for 4 s only: nothing. Bad for 5 s: raised at the reading that completes it.
        assert_eq!(changes(5_000, &[(0, Bad), (4_000, Bad), (4_500, Good), (6_000, Bad), (10_999, Bad)]), []);
        assert_eq!(
            changes(
                5_000,
                &[
                    (0, Bad),
                    (4_999, Bad),
                    (5_000, Bad),
                    (7_000, Good),
                    (8_000, Bad),
                    (9_000, Good),
                    (14_000, Good)
                ]
            ),
            [(5_000, Change::Raised), (14_000, Change::Cleared)]
        );
    }
}
