//! MQTT topic layout shared by devices, the edge and IoT Core rules.

use crate::{Error, Result};

/// The one topic a device publishes its readings to.
pub fn telemetry_topic(device_id: &str) -> String {
    format!("wenu/{device_id}/telemetry")
}

/// Returns the device id named by a telemetry topic.
pub fn device_of_telemetry_topic(topic: &str) -> Result<&str> {
    let mut parts = topic.split('/');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some("wenu"), Some(device), Some("telemetry"), None) if is_valid_device_id(device) => Ok(device),
        _ => Err(Error::InvalidTopic(topic.to_owned())),
    }
}

/// A device's own topics besides telemetry: what Wenu sends it (downlink)
/// and what it reports back, outside the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeviceTopic {
    /// Uplink: the sealed readings, into the log.
    Telemetry,
    /// Downlink: the desired configuration, `{"version": n, "config": {…}}`.
    Config,
    /// Downlink: commands, `{"id": …, "name": …, "args": {…}, "expires_at": ms}`.
    Commands,
    /// Uplink: what the device says of itself (firmware, boot, applied configuration).
    Reported,
    /// Uplink: a command's result, `{"id": …, "status": "done" | "failed" | "rejected"}`.
    Results,
}

impl DeviceTopic {
    const ALL: [DeviceTopic; 5] =
        [Self::Telemetry, Self::Config, Self::Commands, Self::Reported, Self::Results];

    fn suffix(self) -> &'static str {
        match self {
            DeviceTopic::Telemetry => "telemetry",
            DeviceTopic::Config => "config",
            DeviceTopic::Commands => "commands",
            DeviceTopic::Reported => "reported",
            DeviceTopic::Results => "results",
        }
    }

    /// `wenu/{device_id}/{suffix}`.
    pub fn of(self, device_id: &str) -> String {
        format!("wenu/{device_id}/{}", self.suffix())
    }

    /// The device and the kind a topic names, if it is one of a device's.
    pub fn parse(topic: &str) -> Option<(&str, DeviceTopic)> {
        let mut parts = topic.split('/');
        match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some("wenu"), Some(device), Some(suffix), None) if is_valid_device_id(device) => {
                Self::ALL.into_iter().find(|t| t.suffix() == suffix).map(|t| (device, t))
            }
            _ => None,
        }
    }

    /// Whether the server publishes to it (the device subscribes).
    pub fn is_downlink(self) -> bool {
        matches!(self, DeviceTopic::Config | DeviceTopic::Commands)
    }
}

/// Where a company's alarm notifications are published on the embedded
/// MQTT server; only that company's subscribers may read it.
pub fn alarm_topic(company: &str) -> String {
    format!("wenu/{ALARMS}/{company}")
}

/// The second level of the alarm topics, never a device id (or
/// `wenu/alarms/telemetry` would be both).
const ALARMS: &str = "alarms";

/// Device ids are short, printable and safe in topics, file names and SQL:
/// ASCII letters, digits, `-` and `_`, 1 to 64 characters; `alarms` is taken.
pub fn is_valid_device_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        && id != ALARMS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_topics_round_trip_and_nothing_else_parses() {
        for kind in DeviceTopic::ALL {
            assert_eq!(DeviceTopic::parse(&kind.of("d-1")), Some(("d-1", kind)));
        }
        for bad in
            ["wenu/d-1/config/x", "wenu/+/config", "wenu/d-1/#", "wenu/alarms/config", "wenu/d-1/shadow"]
        {
            assert_eq!(DeviceTopic::parse(bad), None, "{bad}");
        }
        assert!(DeviceTopic::Config.is_downlink() && !DeviceTopic::Reported.is_downlink());
    }

    #[test]
    fn parses_own_topic_and_rejects_others() {
        assert_eq!(device_of_telemetry_topic("wenu/dev-1/telemetry").unwrap(), "dev-1");
        for bad in [
            "wenu/dev-1",
            "wenu/dev-1/telemetry/x",
            "other/dev-1/telemetry",
            "wenu/+/telemetry",
            "wenu//telemetry",
            "wenu/#",
            "wenu/alarms/telemetry",
        ] {
            assert!(device_of_telemetry_topic(bad).is_err(), "{bad} accepted");
        }
    }
}
