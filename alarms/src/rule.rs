//! Alarm rules as the registry stores them: what to watch, the condition,
//! how severe it is. Conditions are plain data (JSON in the registry and the
//! API) and validated before they are stored.

use serde::{Deserialize, Serialize};

/// How urgent an alarm is; carried on every notification (an SNS message
/// attribute on AWS) so receivers can route by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }

    pub fn parse(text: &str) -> Option<Severity> {
        match text {
            "info" => Some(Severity::Info),
            "warning" => Some(Severity::Warning),
            "critical" => Some(Severity::Critical),
            _ => None,
        }
    }
}

/// Which side of a threshold is bad.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Above,
    Below,
}

/// What makes a series anomalous. Durations are event time, in milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Condition {
    /// The value is beyond `limit`; it clears only once back past `limit`
    /// by `hysteresis`, so a noisy signal around the limit does not flap.
    Threshold {
        direction: Direction,
        limit: f64,
        #[serde(default)]
        hysteresis: f64,
        /// How long the condition must hold (and be gone) before the alarm
        /// is raised (cleared).
        #[serde(default)]
        for_ms: i64,
    },
    /// The value moves faster than `max_per_second` (either way) between
    /// two consecutive readings.
    RateOfChange {
        max_per_second: f64,
        #[serde(default)]
        for_ms: i64,
    },
    /// The value stays within `tolerance` of where it was for `window_ms`:
    /// a stuck sensor.
    Flatline {
        window_ms: i64,
        #[serde(default)]
        tolerance: f64,
    },
    /// The device sends nothing for `silence_ms` (a timer fires even though
    /// no reading arrives), or its sequence numbers skip more than
    /// `max_gap` messages (the alarm then clears after `silence_ms` without
    /// another gap).
    MissingData {
        silence_ms: i64,
        #[serde(default)]
        max_gap: Option<u64>,
    },
    /// The value is more than `threshold` standard deviations from its
    /// exponentially weighted moving average (weight `alpha` per reading),
    /// once `warmup` readings have set the baseline.
    ZScore {
        threshold: f64,
        #[serde(default = "default_alpha")]
        alpha: f64,
        #[serde(default = "default_warmup")]
        warmup: u32,
        #[serde(default)]
        for_ms: i64,
    },
}

fn default_alpha() -> f64 {
    0.05
}

fn default_warmup() -> u32 {
    30
}

/// A day: no debounce or window may be longer (state would outlive the
/// stream's 24 h replay).
pub const MAX_DURATION_MS: i64 = 24 * 60 * 60 * 1000;

impl Condition {
    /// The label used in the API, the registry and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Condition::Threshold { .. } => "threshold",
            Condition::RateOfChange { .. } => "rate_of_change",
            Condition::Flatline { .. } => "flatline",
            Condition::MissingData { .. } => "missing_data",
            Condition::ZScore { .. } => "z_score",
        }
    }

    /// Whether the rule watches a device's messages rather than one sensor's values.
    pub fn is_device_level(&self) -> bool {
        matches!(self, Condition::MissingData { .. })
    }

    /// How long a raise (and a clear) is held back.
    pub fn debounce_ms(&self) -> i64 {
        match *self {
            Condition::Threshold { for_ms, .. }
            | Condition::RateOfChange { for_ms, .. }
            | Condition::ZScore { for_ms, .. } => for_ms,
            Condition::Flatline { .. } | Condition::MissingData { .. } => 0,
        }
    }

    /// Says what is wrong with the parameters, if anything.
    pub fn validate(&self) -> Result<(), String> {
        let duration = |name: &str, ms: i64, positive: bool| {
            if ms < 0 || (positive && ms == 0) || ms > MAX_DURATION_MS {
                let low = if positive { "above 0" } else { "0 or more" };
                Err(format!("{name} must be {low} and at most {MAX_DURATION_MS} ms, not {ms}"))
            } else {
                Ok(())
            }
        };
        let finite = |name: &str, value: f64| {
            if value.is_finite() { Ok(()) } else { Err(format!("{name} must be a finite number")) }
        };
        match *self {
            Condition::Threshold { limit, hysteresis, for_ms, .. } => {
                finite("limit", limit)?;
                finite("hysteresis", hysteresis)?;
                if hysteresis < 0.0 {
                    return Err("hysteresis must be 0 or more".into());
                }
                duration("for_ms", for_ms, false)
            }
            Condition::RateOfChange { max_per_second, for_ms } => {
                finite("max_per_second", max_per_second)?;
                if max_per_second <= 0.0 {
                    return Err("max_per_second must be above 0".into());
                }
                duration("for_ms", for_ms, false)
            }
            Condition::Flatline { window_ms, tolerance } => {
                finite("tolerance", tolerance)?;
                if tolerance < 0.0 {
                    return Err("tolerance must be 0 or more".into());
                }
                duration("window_ms", window_ms, true)
            }
            Condition::MissingData { silence_ms, max_gap } => {
                if max_gap == Some(0) {
                    return Err("max_gap must be 1 or more (messages allowed to go missing)".into());
                }
                duration("silence_ms", silence_ms, true)
            }
            Condition::ZScore { threshold, alpha, warmup, for_ms } => {
                finite("threshold", threshold)?;
                if threshold <= 0.0 {
                    return Err("threshold must be above 0".into());
                }
                if !(alpha > 0.0 && alpha < 1.0) {
                    return Err("alpha must be between 0 and 1 (exclusive)".into());
                }
                if warmup < 2 {
                    return Err("warmup must be at least 2 readings".into());
                }
                duration("for_ms", for_ms, false)
            }
        }
    }
}

/// One alarm rule of a company.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rule {
    pub company: String,
    /// Unique within the company (`[a-z0-9-]`).
    pub id: String,
    pub name: String,
    /// One device, or every device of the company.
    pub device: Option<String>,
    /// The sensor name the devices use (`temp-1`); `None` only for
    /// device-level conditions (missing data).
    pub sensor: Option<String>,
    pub condition: Condition,
    pub severity: Severity,
    pub enabled: bool,
    /// Changes whenever the rule does (registry revision of its last
    /// change): detector state built under an older version is reset.
    pub version: i64,
}

impl Rule {
    /// Says what is wrong with the rule, if anything.
    pub fn validate(&self) -> Result<(), String> {
        let valid_id = !self.id.is_empty()
            && self.id.len() <= 64
            && self.id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !valid_id {
            return Err(format!("rule id {:?} must be 1–64 characters of a-z, 0-9 and -", self.id));
        }
        if self.name.trim().is_empty() || self.name.len() > 200 {
            return Err("name must be 1–200 characters".into());
        }
        match (&self.sensor, self.condition.is_device_level()) {
            (None, false) => return Err(format!("a {} rule needs a sensor", self.condition.kind())),
            (Some(_), true) => {
                return Err(format!("a {} rule watches a device, not a sensor", self.condition.kind()));
            }
            _ => {}
        }
        self.condition.validate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_read_from_json_with_defaults() {
        let c: Condition =
            serde_json::from_str(r#"{"kind":"threshold","direction":"above","limit":30}"#).unwrap();
        assert_eq!(
            c,
            Condition::Threshold { direction: Direction::Above, limit: 30.0, hysteresis: 0.0, for_ms: 0 }
        );
        let z: Condition = serde_json::from_str(r#"{"kind":"z_score","threshold":4}"#).unwrap();
        assert_eq!(z, Condition::ZScore { threshold: 4.0, alpha: 0.05, warmup: 30, for_ms: 0 });
        assert!(serde_json::from_str::<Condition>(r#"{"kind":"threshold","limit":1}"#).is_err());
        assert!(serde_json::from_str::<Condition>(r#"{"kind":"flatline","window_ms":1,"x":1}"#).is_err());
    }

    #[test]
    fn validation_names_the_problem() {
        let bad = [
            (
                Condition::Threshold {
                    direction: Direction::Above,
                    limit: f64::NAN,
                    hysteresis: 0.0,
                    for_ms: 0,
                },
                "limit",
            ),
            (
                Condition::Threshold { direction: Direction::Below, limit: 1.0, hysteresis: -1.0, for_ms: 0 },
                "hysteresis",
            ),
            (
                Condition::Threshold { direction: Direction::Below, limit: 1.0, hysteresis: 0.0, for_ms: -5 },
                "for_ms",
            ),
            (Condition::RateOfChange { max_per_second: 0.0, for_ms: 0 }, "max_per_second"),
            (Condition::Flatline { window_ms: 0, tolerance: 0.0 }, "window_ms"),
            (Condition::MissingData { silence_ms: MAX_DURATION_MS + 1, max_gap: None }, "silence_ms"),
            (Condition::MissingData { silence_ms: 1000, max_gap: Some(0) }, "max_gap"),
            (Condition::ZScore { threshold: 3.0, alpha: 1.0, warmup: 10, for_ms: 0 }, "alpha"),
            (Condition::ZScore { threshold: 3.0, alpha: 0.1, warmup: 1, for_ms: 0 }, "warmup"),
        ];
        for (condition, field) in bad {
            let error = condition.validate().unwrap_err();
            assert!(error.contains(field), "{error} should name {field}");
        }
        let rule = |sensor: Option<&str>, condition| Rule {
            company: "acme".into(),
            id: "hot".into(),
            name: "Too hot".into(),
            device: None,
            sensor: sensor.map(Into::into),
            condition,
            severity: Severity::Warning,
            enabled: true,
            version: 1,
        };
        let flat = Condition::Flatline { window_ms: 60_000, tolerance: 0.0 };
        let silent = Condition::MissingData { silence_ms: 60_000, max_gap: None };
        assert!(rule(Some("temp-1"), flat.clone()).validate().is_ok());
        assert!(rule(None, flat).validate().unwrap_err().contains("needs a sensor"));
        assert!(rule(Some("temp-1"), silent.clone()).validate().unwrap_err().contains("device"));
        assert!(rule(None, silent.clone()).validate().is_ok());
        let mut bad_id = rule(None, silent);
        bad_id.id = "Hot Rule".into();
        assert!(bad_id.validate().unwrap_err().contains("rule id"));
    }
}
