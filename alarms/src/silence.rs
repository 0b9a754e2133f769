//! Silences: for a time window, a device, a site or a rule of a company
//! (or any combination: all that are named must match) notifies nobody —
//! during maintenance, say. Transitions are still detected, recorded in the
//! history and shown live; only the company's channels stay quiet.

use serde::{Deserialize, Serialize};

use crate::engine::Transition;

/// One silence, as the registry keeps it (and audits).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Silence {
    pub id: String,
    pub company: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// Unix ms, inclusive.
    pub starts_at: i64,
    /// Unix ms, exclusive.
    pub ends_at: i64,
    pub reason: String,
    pub created_by: String,
}

impl Silence {
    /// Whether it covers `transition` of a device at `site`.
    pub fn covers(&self, transition: &Transition, site: Option<&str>) -> bool {
        let matches = |wanted: &Option<String>, actual: Option<&str>| {
            wanted.as_deref().is_none_or(|wanted| Some(wanted) == actual)
        };
        self.company == transition.company
            && (self.starts_at..self.ends_at).contains(&transition.ts)
            && matches(&self.device, Some(&transition.device))
            && matches(&self.rule, Some(&transition.rule))
            && matches(&self.site, site)
    }

    /// Whether it is in force at `now_ms`.
    pub fn is_active(&self, now_ms: i64) -> bool {
        (self.starts_at..self.ends_at).contains(&now_ms)
    }

    /// Checks what an API caller asked for: something to silence, a window
    /// that ends after it starts and lasts at most 90 days, a reason.
    pub fn validate(&self) -> Result<(), String> {
        if self.device.is_none() && self.site.is_none() && self.rule.is_none() {
            return Err("a silence names a device, a site or a rule".into());
        }
        if self.ends_at <= self.starts_at {
            return Err("a silence must end after it starts".into());
        }
        if self.ends_at - self.starts_at > 90 * 24 * 3600 * 1000 {
            return Err("a silence lasts at most 90 days".into());
        }
        if self.reason.trim().is_empty() || self.reason.len() > 500 {
            return Err("a silence needs a reason of at most 500 characters".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lifecycle::Change;
    use crate::rule::Severity;

    fn transition(device: &str, rule: &str, ts: i64) -> Transition {
        Transition {
            company: "acme".into(),
            rule: rule.into(),
            rule_name: rule.into(),
            severity: Severity::Warning,
            condition: "threshold".into(),
            device: device.into(),
            sensor: None,
            change: Change::Raised,
            ts,
            raised_at: ts,
            value: None,
            detail: String::new(),
        }
    }

    fn silence() -> Silence {
        Silence {
            id: "s1".into(),
            company: "acme".into(),
            device: None,
            site: None,
            rule: None,
            starts_at: 1_000,
            ends_at: 2_000,
            reason: "maintenance".into(),
            created_by: "ops".into(),
        }
    }

    #[test]
    fn a_silence_covers_its_window_and_everything_it_names() {
        let device = Silence { device: Some("d1".into()), ..silence() };
        assert!(device.covers(&transition("d1", "hot", 1_000), None));
        assert!(!device.covers(&transition("d1", "hot", 2_000), None), "the end is exclusive");
        assert!(!device.covers(&transition("d1", "hot", 999), None));
        assert!(!device.covers(&transition("d2", "hot", 1_500), None));

        let site_rule = Silence { site: Some("plant".into()), rule: Some("hot".into()), ..silence() };
        assert!(site_rule.covers(&transition("d9", "hot", 1_500), Some("plant")));
        assert!(!site_rule.covers(&transition("d9", "cold", 1_500), Some("plant")));
        assert!(!site_rule.covers(&transition("d9", "hot", 1_500), Some("depot")));
        assert!(!site_rule.covers(&transition("d9", "hot", 1_500), None));

        let other = Silence { company: "globex".into(), ..device };
        assert!(!other.covers(&transition("d1", "hot", 1_500), None), "another company's silence");
    }

    #[test]
    fn validation_wants_a_target_a_window_and_a_reason() {
        assert!(silence().validate().is_err());
        let ok = Silence { device: Some("d1".into()), ..silence() };
        assert!(ok.validate().is_ok());
        assert!(Silence { ends_at: 1_000, ..ok.clone() }.validate().is_err());
        assert!(Silence { reason: " ".into(), ..ok.clone() }.validate().is_err());
        assert!(Silence { ends_at: 91 * 24 * 3600 * 1000, ..ok }.validate().is_err());
    }
}
