//! Each rule kind through the engine: it fires exactly when it should and
//! not before, clears once, and does not flap.

use proptest::prelude::*;
use wenu_alarms::{
    Change, Condition, Direction, Rule, RuleSet, SeriesState, Severity, apply_message, apply_reading,
    check_silence,
};

fn rule(sensor: Option<&str>, condition: Condition) -> Rule {
    Rule {
        company: "acme".into(),
        id: "r1".into(),
        name: "rule".into(),
        device: None,
        sensor: sensor.map(Into::into),
        condition,
        severity: Severity::Critical,
        enabled: true,
        version: 7,
    }
}

/// Feeds readings `(ts, value)` and returns the changes with their times.
fn feed(rule: &Rule, readings: &[(i64, f64)]) -> Vec<(i64, Change)> {
    let mut state = SeriesState::default();
    readings
        .iter()
        .filter_map(|&(ts, v)| apply_reading(rule, &mut state, "d1", "temp-1", ts, v))
        .map(|t| (t.ts, t.change))
        .collect()
}

#[test]
fn threshold_fires_after_its_minimum_duration_not_before() {
    let hot = rule(
        Some("temp-1"),
        Condition::Threshold { direction: Direction::Above, limit: 30.0, hysteresis: 1.0, for_ms: 10_000 },
    );
    let readings: Vec<(i64, f64)> =
        (0..30).map(|i| (i * 1000, if (5..20).contains(&i) { 31.0 } else { 25.0 })).collect();
    // Above from 5 s; 10 s later (15 s) it is raised; back at 20 s, cleared 10 s later.
    assert_eq!(feed(&hot, &readings), [(15_000, Change::Raised)]);
    let longer: Vec<(i64, f64)> =
        (0..40).map(|i| (i * 1000, if (5..20).contains(&i) { 31.0 } else { 25.0 })).collect();
    assert_eq!(feed(&hot, &longer), [(15_000, Change::Raised), (30_000, Change::Cleared)]);
}

proptest! {
    /// A noisy signal around the limit, within the hysteresis band, raises
    /// once and never clears; the same signal without hysteresis flaps.
    #[test]
    fn hysteresis_prevents_flapping(noise in proptest::collection::vec(-0.9f64..0.9, 50..200)) {
        let condition = |hysteresis| Condition::Threshold { direction: Direction::Above, limit: 30.0, hysteresis, for_ms: 0 };
        let mut readings = vec![(0, 31.0)];
        readings.extend(noise.iter().enumerate().map(|(i, n)| ((i as i64 + 1) * 1000, 30.0 + n)));
        let steady = feed(&rule(Some("temp-1"), condition(1.0)), &readings);
        prop_assert_eq!(steady, vec![(0, Change::Raised)]);
    }
}

#[test]
fn without_hysteresis_the_same_signal_flaps() {
    let readings: Vec<(i64, f64)> =
        (0..20).map(|i| (i * 1000, if i % 2 == 0 { 30.5 } else { 29.5 })).collect();
    let flappy = rule(
        Some("temp-1"),
        Condition::Threshold { direction: Direction::Above, limit: 30.0, hysteresis: 0.0, for_ms: 0 },
    );
    assert_eq!(feed(&flappy, &readings).len(), 20);
    let steady = rule(
        Some("temp-1"),
        Condition::Threshold { direction: Direction::Above, limit: 30.0, hysteresis: 1.0, for_ms: 0 },
    );
    assert_eq!(feed(&steady, &readings), [(0, Change::Raised)]);
}

#[test]
fn rate_of_change_and_z_score_catch_a_spike() {
    let mut readings: Vec<(i64, f64)> = (0..60).map(|i| (i * 1000, 21.0 + 0.1 * ((i % 3) as f64))).collect();
    readings[45].1 = 2100.0;
    let rate = rule(Some("temp-1"), Condition::RateOfChange { max_per_second: 5.0, for_ms: 0 });
    // Up at 45 s, down at 46 s (also fast), normal at 47 s.
    assert_eq!(feed(&rate, &readings), [(45_000, Change::Raised), (47_000, Change::Cleared)]);
    let z = rule(Some("temp-1"), Condition::ZScore { threshold: 6.0, alpha: 0.1, warmup: 20, for_ms: 0 });
    assert_eq!(feed(&z, &readings), [(45_000, Change::Raised), (46_000, Change::Cleared)]);
}

#[test]
fn flatline_fires_for_a_stuck_sensor_once_the_window_is_full() {
    let flat = rule(Some("temp-1"), Condition::Flatline { window_ms: 30_000, tolerance: 0.0 });
    let mut readings: Vec<(i64, f64)> = (0..10).map(|i| (i * 1000, 20.0 + i as f64 * 0.1)).collect();
    readings.extend((10..50).map(|i| (i * 1000, 42.0)));
    readings.push((50_000, 42.5));
    assert_eq!(feed(&flat, &readings), [(40_000, Change::Raised), (50_000, Change::Cleared)]);
}

#[test]
fn late_and_duplicate_readings_are_skipped() {
    let hot = rule(
        Some("temp-1"),
        Condition::Threshold { direction: Direction::Above, limit: 30.0, hysteresis: 0.0, for_ms: 0 },
    );
    // The late reading at 1.5 s (hot) arrives after the one at 2 s: skipped.
    assert_eq!(
        feed(&hot, &[(1_000, 20.0), (2_000, 20.0), (1_500, 50.0), (2_000, 50.0), (3_000, 50.0)]),
        [(3_000, Change::Raised)]
    );
}

#[test]
fn missing_data_fires_on_silence_without_a_reading_and_clears_on_the_next_message() {
    let silent = rule(None, Condition::MissingData { silence_ms: 60_000, max_gap: None });
    let mut state = SeriesState::default();
    let started = 1_000_000;
    assert!(apply_message(&silent, &mut state, "d1", 1, 500_000, started + 1_000).is_none());
    // 59.999 s of silence: nothing. 60 s: raised, keyed by when data was due.
    assert!(check_silence(&silent, &mut state, "d1", started + 60_999, started).is_none());
    let raised = check_silence(&silent, &mut state, "d1", started + 61_000, started).unwrap();
    assert_eq!((raised.change, raised.ts), (Change::Raised, 560_000));
    assert!(check_silence(&silent, &mut state, "d1", started + 120_000, started).is_none(), "raised once");
    let cleared = apply_message(&silent, &mut state, "d1", 2, 700_000, started + 130_000).unwrap();
    assert_eq!((cleared.change, cleared.ts, cleared.raised_at), (Change::Cleared, 700_000, 560_000));

    // After a restart, silence counts from when the alarms started watching again.
    let mut fresh = state.clone();
    assert!(check_silence(&silent, &mut fresh, "d1", started + 400_000, started + 390_000).is_none());
}

#[test]
fn missing_data_fires_on_a_sequence_gap_and_clears_after_a_quiet_period() {
    let gaps = rule(None, Condition::MissingData { silence_ms: 30_000, max_gap: Some(2) });
    let mut state = SeriesState::default();
    let mut changes = Vec::new();
    // seq 1..=5, then 6..=7 lost (2: tolerated), 10 after 8 (9 missing is 1: fine),
    // then 11..=13 lost (3 > 2): raised; 30 s later without gaps: cleared.
    for (seq, ts) in [
        (1, 0),
        (2, 1),
        (3, 2),
        (4, 3),
        (5, 4),
        (8, 5),
        (10, 6),
        (14, 10_000),
        (15, 20_000),
        (16, 40_000),
        (17, 41_000),
    ] {
        if let Some(t) = apply_message(&gaps, &mut state, "d1", seq, ts, ts) {
            changes.push((t.ts, t.change, t.detail));
        }
    }
    assert_eq!(
        changes,
        [
            (10_000, Change::Raised, "3 messages missing (seq 11..13)".to_owned()),
            (40_000, Change::Cleared, "messages arrive again (seq 16)".to_owned())
        ]
    );
    // A late message filling the gap changes nothing.
    assert!(apply_message(&gaps, &mut state, "d1", 12, 9_000, 50_000).is_none());
}

#[test]
fn a_changed_rule_resets_its_detector_but_lets_a_raised_alarm_clear() {
    let mut z = rule(Some("temp-1"), Condition::ZScore { threshold: 3.0, alpha: 0.1, warmup: 5, for_ms: 0 });
    let mut state = SeriesState::default();
    for i in 0..5 {
        apply_reading(&z, &mut state, "d1", "temp-1", i, 10.0 + (i % 2) as f64 * 0.1);
    }
    assert!(
        apply_reading(&z, &mut state, "d1", "temp-1", 10, 100.0).is_some_and(|t| t.change == Change::Raised)
    );
    z.version += 1;
    z.condition =
        Condition::Threshold { direction: Direction::Above, limit: 50.0, hysteresis: 0.0, for_ms: 0 };
    let cleared = apply_reading(&z, &mut state, "d1", "temp-1", 11, 20.0).unwrap();
    assert_eq!((cleared.change, cleared.raised_at), (Change::Cleared, 10));
}

#[test]
fn rule_sets_index_rules_by_what_they_watch() {
    let mut one = rule(Some("temp-1"), Condition::Flatline { window_ms: 1000, tolerance: 0.0 });
    one.device = Some("d1".into());
    let all = rule(Some("temp-1"), Condition::Flatline { window_ms: 1000, tolerance: 0.0 });
    let mut other = all.clone();
    other.company = "globex".into();
    let silent = rule(None, Condition::MissingData { silence_ms: 1000, max_gap: None });
    let mut disabled = silent.clone();
    disabled.enabled = false;
    let set = RuleSet::new([one, all, other, silent, disabled]);
    assert_eq!(set.len(), 4);
    assert_eq!(set.for_reading("acme", "d1", "temp-1").count(), 2);
    assert_eq!(set.for_reading("acme", "d2", "temp-1").count(), 1);
    assert_eq!(set.for_reading("acme", "d2", "hum-1").count(), 0);
    assert_eq!(set.for_reading("globex", "d9", "temp-1").count(), 1);
    assert_eq!(set.for_device("acme", "d2").count(), 1);
    assert_eq!(set.for_device("globex", "d9").count(), 0);
}
