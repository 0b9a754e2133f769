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
