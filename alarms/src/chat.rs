//! What a webhook's body looks like: Wenu's own notification JSON, or a
//! message chat tools take on their incoming webhooks, so an alarm reaches
//! the people in a channel without a bridge in between.
//!
//! * Slack: `{"text": …}` with Slack's mrkdwn (incoming webhooks);
//! * Microsoft Teams: a message with one Adaptive Card (Workflows'
//!   "post to a channel when a webhook request is received").
//!
//! Every format goes out with the same signature headers.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::lifecycle::Change;
use crate::store::Notification;

/// The body a webhook receives.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WebhookFormat {
    /// The notification as Wenu's JSON (signed; for machines).
    #[default]
    Wenu,
    Slack,
    Teams,
}

impl WebhookFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookFormat::Wenu => "wenu",
            WebhookFormat::Slack => "slack",
            WebhookFormat::Teams => "teams",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "wenu" => Some(WebhookFormat::Wenu),
            "slack" => Some(WebhookFormat::Slack),
            "teams" => Some(WebhookFormat::Teams),
            _ => None,
        }
    }

    /// The body for `notification` in this format.
    pub fn body(self, notification: &Notification) -> Value {
        match self {
            WebhookFormat::Wenu => serde_json::to_value(notification).expect("a notification serializes"),
            WebhookFormat::Slack => {
                json!({ "text": format!("*{}*\n{}", headline(notification), details(notification)) })
            }
            WebhookFormat::Teams => json!({
                "type": "message",
                "attachments": [{
                    "contentType": "application/vnd.microsoft.card.adaptive",
                    "content": {
                        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                        "type": "AdaptiveCard",
                        "version": "1.4",
                        "body": [
                            { "type": "TextBlock", "text": headline(notification), "weight": "Bolder", "wrap": true },
                            { "type": "TextBlock", "text": details(notification), "wrap": true },
                        ],
                    },
                }],
            }),
        }
    }
}

/// `CRITICAL raised: Boiler too hot on acme-00001 · temp-1`; an escalation
/// says `CRITICAL unacknowledged for 15 min: …`.
pub(crate) fn headline(n: &Notification) -> String {
    let t = &n.transition;
    let at = match &t.sensor {
        Some(sensor) => format!("{} · {sensor}", t.device),
        None => t.device.clone(),
    };
    let what = match n.escalation {
        Some(secs) => format!("unacknowledged for {}", duration(secs)),
        None => t.change.as_str().to_owned(),
    };
    format!("{} {what}: {} on {at}", t.severity.as_str().to_uppercase(), t.rule_name)
}

/// `90 s`, `15 min`, `2 h`, `1 h 30 min`.
fn duration(secs: u32) -> String {
    let (hours, minutes) = (secs / 3600, secs % 3600 / 60);
    match (hours, minutes, secs % 60) {
        (0, 0, s) => format!("{s} s"),
        (0, m, 0) => format!("{m} min"),
        (h, 0, 0) => format!("{h} h"),
        (h, m, 0) => format!("{h} h {m} min"),
        _ => format!("{secs} s"),
    }
}

/// What happened, the value, when, and who acknowledged it.
pub(crate) fn details(n: &Notification) -> String {
    let t = &n.transition;
    let mut lines = vec![t.detail.clone()];
    if let Some(value) = t.value {
        lines.push(format!("Value: {value}"));
    }
    let when = utc(t.ts);
    lines.push(format!("At: {when} (company {}, alarm {})", t.company, n.alarm));
    if t.change == Change::Acknowledged
        && let Some(ack) = &n.acknowledged
    {
        let comment = if ack.comment.is_empty() { String::new() } else { format!(": {}", ack.comment) };
        lines.push(format!("Acknowledged by {}{comment}", ack.by));
    }
    lines.join("\n")
}

/// Unix ms as `2026-12-07T21:04:05Z`.
fn utc(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map_or_else(|| ms.to_string(), |t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Transition;
    use crate::rule::Severity;
    use crate::store::Acknowledgement;

    fn notification(change: Change) -> Notification {
        Notification {
            id: "n1".into(),
            alarm: "acme-1".into(),
            transition: Transition {
                company: "acme".into(),
                rule: "hot".into(),
                rule_name: "Boiler too hot".into(),
                severity: Severity::Critical,
                condition: "above 90".into(),
                device: "acme-00001".into(),
                sensor: Some("temp-1".into()),
                change,
                ts: 1_765_000_000_000,
                raised_at: 1_765_000_000_000,
                value: Some(95.5),
                detail: "95.5 above 90 for 10 s".into(),
            },
            acknowledged: (change == Change::Acknowledged).then(|| Acknowledgement {
                at: 1_765_000_060_000,
                by: "token abc (ops)".into(),
                comment: "on it".into(),
            }),
            escalation: None,
            escalated: Vec::new(),
        }
    }

    #[test]
    fn slack_gets_a_text_message() {
        let body = WebhookFormat::Slack.body(&notification(Change::Raised));
        assert_eq!(body.as_object().unwrap().keys().collect::<Vec<_>>(), ["text"]);
        assert_eq!(
            body["text"],
            "*CRITICAL raised: Boiler too hot on acme-00001 · temp-1*\n95.5 above 90 for 10 s\nValue: 95.5\n\
             At: 2025-12-06T05:46:40Z (company acme, alarm acme-1)"
        );
        let acked = WebhookFormat::Slack.body(&notification(Change::Acknowledged));
        assert!(acked["text"].as_str().unwrap().ends_with("Acknowledged by token abc (ops): on it"));
    }

    #[test]
    fn an_escalation_says_how_long_it_went_unacknowledged() {
        let n = Notification { escalation: Some(900), ..notification(Change::Raised) };
        assert_eq!(headline(&n), "CRITICAL unacknowledged for 15 min: Boiler too hot on acme-00001 · temp-1");
        assert_eq!(duration(5400), "1 h 30 min");
        assert_eq!(duration(7200), "2 h");
        assert_eq!(duration(61), "61 s");
    }

    #[test]
    fn teams_gets_an_adaptive_card() {
        let body = WebhookFormat::Teams.body(&notification(Change::Cleared));
        assert_eq!(body["type"], "message");
        let card = &body["attachments"][0];
        assert_eq!(card["contentType"], "application/vnd.microsoft.card.adaptive");
        assert_eq!(card["content"]["type"], "AdaptiveCard");
        assert_eq!(
            card["content"]["body"][0]["text"],
            "CRITICAL cleared: Boiler too hot on acme-00001 · temp-1"
        );
    }

    #[test]
    fn wenus_own_format_is_the_notification() {
        let n = notification(Change::Raised);
        assert_eq!(WebhookFormat::Wenu.body(&n), serde_json::to_value(&n).unwrap());
        for format in [WebhookFormat::Wenu, WebhookFormat::Slack, WebhookFormat::Teams] {
            assert_eq!(WebhookFormat::parse(format.as_str()), Some(format));
        }
        assert_eq!(WebhookFormat::parse("email"), None);
    }
}
