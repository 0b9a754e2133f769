//! Detectors: what each condition concludes from one reading, given what it
//! remembers of the series. Pure functions of (state, reading); the
//! lifecycle ([`crate::lifecycle`]) turns their verdicts into transitions.

use serde::{Deserialize, Serialize};

use crate::rule::{Condition, Direction};

/// A detector's verdict on one reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// The condition holds.
    Bad,
    /// The condition does not hold.
    Good,
    /// Not enough to say (inside the hysteresis band, or still warming up):
    /// whatever was true stays true.
    Hold,
}

/// What a value detector remembers of its series.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DetectorState {
    /// Thresholds remember nothing.
    #[default]
    Stateless,
    /// The previous reading, for rates of change.
    Previous { ts: i64, value: f64 },
    /// The current flat run: where it started and the value it stays near.
    FlatRun { since: i64, anchor: f64 },
    /// The exponentially weighted mean and variance, over `n` readings.
    Ewma { n: u32, mean: f64, variance: f64 },
}

/// Evaluates `value` at `ts` under `condition` and updates `state`.
/// Readings reach it in event-time order, each once (the caller drops late
/// and duplicate readings).
pub fn observe(condition: &Condition, state: &mut DetectorState, ts: i64, value: f64) -> Signal {
    match *condition {
        Condition::Threshold { direction, limit, hysteresis, .. } => {
            threshold(direction, limit, hysteresis, value)
        }
        Condition::RateOfChange { max_per_second, .. } => {
            let signal = match *state {
                DetectorState::Previous { ts: before, value: then } if ts > before => {
                    let per_second = (value - then).abs() / ((ts - before) as f64 / 1000.0);
                    if per_second > max_per_second { Signal::Bad } else { Signal::Good }
                }
                _ => Signal::Hold,
            };
            *state = DetectorState::Previous { ts, value };
            signal
        }
        Condition::Flatline { window_ms, tolerance } => match *state {
            DetectorState::FlatRun { since, anchor } if (value - anchor).abs() <= tolerance => {
                if ts - since >= window_ms { Signal::Bad } else { Signal::Good }
            }
            _ => {
                *state = DetectorState::FlatRun { since: ts, anchor: value };
                Signal::Good
            }
        },
        Condition::ZScore { threshold, alpha, warmup, .. } => {
            let DetectorState::Ewma { n, mean, variance } = *state else {
                *state = DetectorState::Ewma { n: 1, mean: value, variance: 0.0 };
                return Signal::Hold;
            };
            let deviation = variance.sqrt().max(1e-9 * mean.abs().max(1.0));
            let z = (value - mean) / deviation;
            let signal = if n < warmup {
                Signal::Hold
            } else if z.abs() > threshold {
                Signal::Bad
            } else {
                Signal::Good
            };
            // An outlier moves the baseline only as far as the threshold, so
            // one spike does not blind the detector to the next one, while a
            // lasting change of level still becomes the new normal.
            let bounded = if n < warmup { value } else { mean + z.clamp(-threshold, threshold) * deviation };
            let diff = bounded - mean;
            let step = alpha * diff;
            *state = DetectorState::Ewma {
                n: n.saturating_add(1),
                mean: mean + step,
                variance: (1.0 - alpha) * (variance + diff * step),
            };
            signal
        }
        // Device-level: see `lifecycle::MissingData`.
        Condition::MissingData { .. } => Signal::Hold,
    }
}

fn threshold(direction: Direction, limit: f64, hysteresis: f64, value: f64) -> Signal {
    let (beyond, back) = match direction {
        Direction::Above => (value > limit, value <= limit - hysteresis),
        Direction::Below => (value < limit, value >= limit + hysteresis),
    };
    if beyond {
        Signal::Bad
    } else if back {
        Signal::Good
    } else {
        Signal::Hold
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(condition: &Condition, points: &[(i64, f64)]) -> Vec<Signal> {
        let mut state = DetectorState::default();
        points.iter().map(|&(ts, v)| observe(condition, &mut state, ts, v)).collect()
    }

    #[test]
    fn threshold_has_a_hysteresis_band() {
        let above =
            Condition::Threshold { direction: Direction::Above, limit: 30.0, hysteresis: 2.0, for_ms: 0 };
        use Signal::*;
        assert_eq!(
            run(&above, &[(0, 29.0), (1, 30.5), (2, 29.0), (3, 28.0), (4, 30.0)]),
            [Hold, Bad, Hold, Good, Hold]
        );
        let below =
            Condition::Threshold { direction: Direction::Below, limit: 0.0, hysteresis: 1.0, for_ms: 0 };
        assert_eq!(run(&below, &[(0, -0.1), (1, 0.5), (2, 1.0)]), [Bad, Hold, Good]);
    }

    #[test]
    fn rate_of_change_is_per_second_between_readings() {
        let rate = Condition::RateOfChange { max_per_second: 1.0, for_ms: 0 };
        use Signal::*;
        // +1 in 2 s is fine; +5 in 1 s is not; -3 in 2 s is 1.5/s.
        assert_eq!(run(&rate, &[(0, 0.0), (2000, 1.0), (3000, 6.0), (5000, 3.0)]), [Hold, Good, Bad, Bad]);
    }

    #[test]
    fn flatline_needs_the_whole_window() {
        let flat = Condition::Flatline { window_ms: 10_000, tolerance: 0.1 };
        use Signal::*;
        assert_eq!(
            run(
                &flat,
                &[(0, 5.0), (5_000, 5.05), (9_999, 4.95), (10_000, 5.0), (11_000, 5.2), (21_000, 5.2)]
            ),
            [Good, Good, Good, Bad, Good, Bad]
        );
    }

    #[test]
    fn z_score_warms_up_then_flags_outliers_and_adapts_to_a_new_level() {
        let z = Condition::ZScore { threshold: 4.0, alpha: 0.1, warmup: 20, for_ms: 0 };
        let mut state = DetectorState::default();
        let noise = |i: i64| [0.3, -0.2, 0.1, -0.4, 0.2][(i % 5) as usize];
        for i in 0..20 {
            assert_eq!(observe(&z, &mut state, i, 10.0 + noise(i)), Signal::Hold, "warm-up at {i}");
        }
        assert_eq!(observe(&z, &mut state, 20, 10.1), Signal::Good);
        assert_eq!(observe(&z, &mut state, 21, 1000.0), Signal::Bad);
        // One spike does not hide the next.
        assert_eq!(observe(&z, &mut state, 22, 10.0), Signal::Good);
        assert_eq!(observe(&z, &mut state, 23, 1000.0), Signal::Bad);
        // A lasting change of level becomes normal after a while.
        let mut last = Signal::Bad;
        for i in 24..400 {
            last = observe(&z, &mut state, i, 50.0 + noise(i));
        }
        assert_eq!(last, Signal::Good);
    }
}
