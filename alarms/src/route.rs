//! Which notifications go to which of a company's channels: a channel
//! takes alarms from a severity up, optionally of some rules only, and is
//! either told at once or only when a raised alarm has gone unacknowledged
//! for a while (escalation).
//!
//! An escalation is its own notification, sent to the channels of that
//! delay once per alarm; from then on the alarm's later transitions (its
//! acknowledgement, its clear) reach those channels too, so whoever was
//! paged also hears that it is over.

use serde::{Deserialize, Serialize};

use crate::lifecycle::Change;
use crate::rule::Severity;
use crate::store::Notification;

/// A channel's routing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    /// Only alarms of this severity or worse (all when `None`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_severity: Option<Severity>,
    /// Only alarms of these rules (all when empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<String>,
    /// Told only when a raised alarm is still unacknowledged this many
    /// seconds after it was raised.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub escalate_after_secs: Option<u32>,
}

impl Route {
    /// Whether a notification goes to a channel with this routing.
    pub fn wants(&self, notification: &Notification) -> bool {
        let transition = &notification.transition;
        if self.min_severity.is_some_and(|min| transition.severity < min) {
            return false;
        }
        if !self.rules.is_empty() && !self.rules.contains(&transition.rule) {
            return false;
        }
        match (self.escalate_after_secs, notification.escalation) {
            (None, None) => true,
            (None, Some(_)) => false,
            (Some(after), Some(escalation)) => after == escalation,
            // The alarm's later news, once it was escalated to this channel.
            (Some(after), None) => {
                transition.change != Change::Raised && notification.escalated.contains(&after)
            }
        }
    }

    /// Checks what an API caller asked for.
    pub fn validate(&self) -> Result<(), String> {
        match self.escalate_after_secs {
            Some(secs) if !(60..=7 * 24 * 3600).contains(&secs) => {
                Err(format!("escalate_after_secs must be between 60 and 604800, not {secs}"))
            }
            _ if self.rules.len() > 100 => Err("at most 100 rules per channel".into()),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Transition;

    fn notification(severity: Severity, change: Change) -> Notification {
        Notification {
            id: "n".into(),
            alarm: "a".into(),
            transition: Transition {
                company: "acme".into(),
                rule: "too-hot".into(),
                rule_name: "Too hot".into(),
                severity,
                condition: "threshold".into(),
                device: "d1".into(),
                sensor: None,
                change,
                ts: 0,
                raised_at: 0,
                value: None,
                detail: String::new(),
            },
            acknowledged: None,
            escalation: None,
            escalated: Vec::new(),
        }
    }

    #[test]
    fn severity_and_rules_filter() {
        let route = Route { min_severity: Some(Severity::Warning), ..Route::default() };
        assert!(!route.wants(&notification(Severity::Info, Change::Raised)));
        assert!(route.wants(&notification(Severity::Warning, Change::Raised)));
        assert!(route.wants(&notification(Severity::Critical, Change::Cleared)));
        let route = Route { rules: vec!["too-cold".into()], ..Route::default() };
        assert!(!route.wants(&notification(Severity::Critical, Change::Raised)));
        assert!(Route::default().wants(&notification(Severity::Info, Change::Raised)));
    }

    #[test]
    fn escalation_channels_hear_only_escalations_and_what_follows_them() {
        let on_call = Route { escalate_after_secs: Some(900), ..Route::default() };
        let raised = notification(Severity::Critical, Change::Raised);
        assert!(!on_call.wants(&raised));
        assert!(Route::default().wants(&raised));

        let escalation = Notification { escalation: Some(900), ..raised.clone() };
        assert!(on_call.wants(&escalation));
        assert!(!Route::default().wants(&escalation), "the first channels heard the raise already");
        assert!(!Route { escalate_after_secs: Some(3600), ..Route::default() }.wants(&escalation));

        let cleared = notification(Severity::Critical, Change::Cleared);
        assert!(!on_call.wants(&cleared), "never escalated: nothing to close");
        let cleared = Notification { escalated: vec![900], ..cleared };
        assert!(on_call.wants(&cleared));
    }

    #[test]
    fn validation_bounds_the_delay() {
        assert!(Route { escalate_after_secs: Some(59), ..Route::default() }.validate().is_err());
        assert!(Route { escalate_after_secs: Some(600), ..Route::default() }.validate().is_ok());
    }
}
