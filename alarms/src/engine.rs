//! Rules applied to readings: which rules watch a reading, and what one
//! reading (or one message, or the passing of time) does to a (rule,
//! series).
//!
//! **Event time** drives every window and debounce: a reading counts at the
//! time the device took it, so a backlog replayed after an outage raises the
//! same alarms at the same times as live traffic would have. **Out of
//! order**: each (rule, series) keeps the newest event time it evaluated;
//! an older or equal reading (late, or a duplicate a device resent) is
//! skipped by value rules rather than re-ordered, because waiting for late
//! readings would delay every alarm by the wait. Late messages still fill
//! sequence gaps for missing-data rules. **Silence** is the one thing
//! measured in processing time: a device is silent when nothing arrived
//! from it for `silence_ms` of wall-clock time while the alarms were
//! watching; the alarm is keyed by the event time its data was due
//! (`last ts + silence_ms`), so noticing it again after a restart is the
//! same transition.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::detector::{DetectorState, observe};
use crate::lifecycle::{Change, Phase};
use crate::rule::{Condition, Rule, Severity};

/// What one (rule, series) remembers between readings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SeriesState {
    /// The rule version the detector state was built under.
    pub rule_version: i64,
    /// Newest event time evaluated.
    pub last_ts: Option<i64>,
    pub detector: DetectorState,
    pub phase: Phase,
    /// Missing-data rules: highest sequence number seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub highest_seq: Option<u64>,
    /// Missing-data rules: when the device's newest message arrived (unix ms, processing time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_arrival: Option<i64>,
    /// Missing-data rules: a gap keeps the alarm up until this event time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gap_until: Option<i64>,
}

impl SeriesState {
    /// Drops detector state built under another version of the rule; the
    /// phase stays, so an alarm raised under the old rule can still clear.
    fn align(&mut self, rule: &Rule) {
        if self.rule_version != rule.version {
            self.rule_version = rule.version;
            self.detector = DetectorState::default();
        }
    }
}

/// One change of one alarm, as notified.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transition {
    pub company: String,
    pub rule: String,
    pub rule_name: String,
    pub severity: Severity,
    pub condition: String,
    pub device: String,
    pub sensor: Option<String>,
    pub change: Change,
    /// Event time of the change, unix ms: part of its key.
    pub ts: i64,
    /// When the alarm this change belongs to was raised (event time).
    pub raised_at: i64,
    /// The reading that caused it, if one did.
    pub value: Option<f64>,
    /// For people: what happened.
    pub detail: String,
}

fn transition(
    rule: &Rule,
    device: &str,
    sensor: Option<&str>,
    change: Change,
    ts: i64,
    raised_at: i64,
) -> Transition {
    Transition {
        company: rule.company.clone(),
        rule: rule.id.clone(),
        rule_name: rule.name.clone(),
        severity: rule.severity,
        condition: rule.condition.kind().to_owned(),
        device: device.to_owned(),
        sensor: sensor.map(str::to_owned),
        change,
        ts,
        raised_at,
        value: None,
        detail: String::new(),
    }
}

/// Applies a reading of `device`/`sensor` at event time `ts` to a value rule.
pub fn apply_reading(
    rule: &Rule,
    state: &mut SeriesState,
    device: &str,
    sensor: &str,
    ts: i64,
    value: f64,
) -> Option<Transition> {
    state.align(rule);
    if state.last_ts.is_some_and(|last| ts <= last) {
        return None;
    }
    state.last_ts = Some(ts);
    let signal = observe(&rule.condition, &mut state.detector, ts, value);
    let raised_before = match state.phase {
        Phase::Raised { raised_at, .. } => Some(raised_at),
        _ => None,
    };
    let change = state.phase.step(signal, ts, rule.condition.debounce_ms())?;
    let raised_at = raised_before.unwrap_or(ts);
    let mut t = transition(rule, device, Some(sensor), change, ts, raised_at);
    t.value = Some(value);
    t.detail = describe(&rule.condition, change, value);
    Some(t)
}

/// For people: what happened. The exact value is in the transition.
fn describe(condition: &Condition, change: Change, value: f64) -> String {
    let back = change == Change::Cleared;
    // Three decimals are enough to read; 21.232693029753275 is not.
    let value = (value * 1000.0).round() / 1000.0;
    match *condition {
        Condition::Threshold { direction, limit, .. } => {
            let side = match (direction, back) {
                (crate::rule::Direction::Above, false) => "above",
                (crate::rule::Direction::Below, false) => "below",
                (_, true) => "back within",
            };
            format!("value {value} is {side} the limit {limit}")
        }
        Condition::RateOfChange { max_per_second, .. } if !back => {
            format!("value {value} changed faster than {max_per_second}/s")
        }
        Condition::RateOfChange { .. } => format!("value {value} changes at a normal rate again"),
        Condition::Flatline { window_ms, .. } if !back => {
            format!("value stuck at {value} for {} s", window_ms / 1000)
        }
        Condition::Flatline { .. } => format!("value moves again ({value})"),
        Condition::ZScore { threshold, .. } if !back => {
            format!("value {value} is more than {threshold} standard deviations from its recent mean")
        }
        Condition::ZScore { .. } => format!("value {value} is back near its recent mean"),
        Condition::MissingData { .. } => String::new(),
    }
}

/// Applies a message of `device` (sequence number, event time, arrival
/// time) to a missing-data rule.
pub fn apply_message(
    rule: &Rule,
    state: &mut SeriesState,
    device: &str,
    seq: u64,
    ts: i64,
    arrival: i64,
) -> Option<Transition> {
    let Condition::MissingData { silence_ms, max_gap } = rule.condition else { return None };
    state.align(rule);
    state.last_arrival = Some(state.last_arrival.map_or(arrival, |a| a.max(arrival)));
    let highest = state.highest_seq;
    if highest.is_some_and(|h| seq <= h) {
        return None; // late or resent: fills a gap, changes nothing here
    }
    state.highest_seq = Some(seq);
    let ts = state.last_ts.map_or(ts, |last| last.max(ts));
    state.last_ts = Some(ts);
    let missed = highest.map_or(0, |h| seq - h - 1);
    let gap = max_gap.is_some_and(|max| missed > max);
    if gap {
        state.gap_until = Some(ts + silence_ms);
    }
    match state.phase {
        Phase::Raised { .. } if gap => None,
        Phase::Raised { raised_at, .. } if state.gap_until.is_none_or(|until| ts >= until) => {
            state.phase = Phase::Normal;
            state.gap_until = None;
            let ts = ts.max(raised_at);
            let mut t = transition(rule, device, None, Change::Cleared, ts, raised_at);
            t.detail = format!("messages arrive again (seq {seq})");
            Some(t)
        }
        Phase::Raised { .. } => None,
        _ if gap => {
            state.phase = Phase::Raised { raised_at: ts, clearing_since: None };
            let mut t = transition(rule, device, None, Change::Raised, ts, ts);
            let first = highest.unwrap_or_default() + 1;
            t.detail = format!("{missed} messages missing (seq {first}..{})", seq - 1);
            Some(t)
        }
        _ => None,
    }
}

/// Checks a missing-data rule for silence at wall-clock `now`. Silence
/// counts from the device's last arrival, or from `watching_since` (when
/// the alarms started) if that is later, so a restart does not mistake its
/// own downtime for silent devices.
pub fn check_silence(
    rule: &Rule,
    state: &mut SeriesState,
    device: &str,
    now: i64,
    watching_since: i64,
) -> Option<Transition> {
    let Condition::MissingData { silence_ms, .. } = rule.condition else { return None };
    if state.phase.is_raised() {
        return None;
    }
    let silent_since = state.last_arrival.unwrap_or(watching_since).max(watching_since);
    if now - silent_since < silence_ms {
        return None;
    }
    // Keyed by when data was due, in event time: the same silence gives the same key.
    let due = state.last_ts.unwrap_or(rule.version) + silence_ms;
    state.phase = Phase::Raised { raised_at: due, clearing_since: None };
    state.gap_until = None;
    let mut t = transition(rule, device, None, Change::Raised, due, due);
    t.detail = format!("no message for {} s", silence_ms / 1000);
    Some(t)
}

/// The enabled rules, indexed by what they watch.
#[derive(Debug, Clone, Default)]
pub struct RuleSet {
    rules: Vec<Rule>,
    by_device_sensor: HashMap<(String, String), Vec<usize>>,
    by_company_sensor: HashMap<(String, String), Vec<usize>>,
    device_level_by_device: HashMap<String, Vec<usize>>,
    device_level_by_company: HashMap<String, Vec<usize>>,
}

impl RuleSet {
    pub fn new(rules: impl IntoIterator<Item = Rule>) -> Self {
        let mut set = RuleSet::default();
        for rule in rules.into_iter().filter(|r| r.enabled) {
            let index = set.rules.len();
            let (company, device, sensor) = (rule.company.clone(), rule.device.clone(), rule.sensor.clone());
            set.rules.push(rule);
            let slot = match (device, sensor) {
                (Some(d), Some(s)) => set.by_device_sensor.entry((d, s)),
                (None, Some(s)) => set.by_company_sensor.entry((company, s)),
                (Some(d), None) => {
                    set.device_level_by_device.entry(d).or_default().push(index);
                    continue;
                }
                (None, None) => {
                    set.device_level_by_company.entry(company).or_default().push(index);
                    continue;
                }
            };
            slot.or_default().push(index);
        }
        set
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Rule> {
        self.rules.iter()
    }

    /// The value rules that watch this sensor of this device.
    pub fn for_reading<'a>(
        &'a self,
        company: &str,
        device: &str,
        sensor: &str,
    ) -> impl Iterator<Item = &'a Rule> {
        let own = self.by_device_sensor.get(&(device.to_owned(), sensor.to_owned()));
        let all = self.by_company_sensor.get(&(company.to_owned(), sensor.to_owned()));
        self.pick(own, all).filter(move |r| r.company == company)
    }

    /// The device-level rules that watch this device.
    pub fn for_device<'a>(&'a self, company: &str, device: &str) -> impl Iterator<Item = &'a Rule> {
        let own = self.device_level_by_device.get(device);
        let all = self.device_level_by_company.get(company);
        self.pick(own, all).filter(move |r| r.company == company)
    }

    fn pick<'a>(
        &'a self,
        a: Option<&'a Vec<usize>>,
        b: Option<&'a Vec<usize>>,
    ) -> impl Iterator<Item = &'a Rule> {
        a.into_iter().chain(b).flatten().map(|&i| &self.rules[i])
    }

    /// Whether any rule watches a company's devices at all.
    pub fn watches_company(&self, company: &str) -> bool {
        self.rules.iter().any(|r| r.company == company)
    }
}
