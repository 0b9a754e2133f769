//! What a simulated device does with its downlink, as docs/devices.md tells
//! firmware to: apply a newer desired configuration and report its version,
//! run each command once and answer it, take a new key sealed under the one
//! it holds. Pure logic: the device's MQTT session carries what it returns.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{Value, json};
use wenu_core::key_transfer::{ROTATE_KEY_COMMAND, open_key, parse_command_args};
use wenu_core::keyring::{Keyring, SecretKey};
use wenu_core::topic::DeviceTopic;

/// The firmware version simulated devices report until told of another.
pub(crate) const SIM_FIRMWARE: &str = concat!("wenu-sim/", env!("CARGO_PKG_VERSION"));

/// Something the device must do after a downlink message.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Effect {
    /// Publish on `reported`.
    Report(Value),
    /// Publish on `results`; with `after_keys_below`, only once every
    /// message sealed under an older key than that is acknowledged (a
    /// confirmed rotation retires those keys at once).
    Answer { result: Value, after_keys_below: Option<u32> },
    /// Measure and send a reading now.
    SampleNow,
    /// Send readings at this interval from now on.
    Interval(Duration),
    /// Seal from now on under this key.
    NewKey(u32, SecretKey),
}

/// The downlink state a device keeps: its keys, its applied configuration,
/// its boot counter and firmware, and the commands it has answered.
pub(crate) struct Downlink {
    device_id: String,
    keys: Keyring,
    pub boot: i64,
    pub firmware: String,
    pub config_version: i64,
    /// Results already given, by command id: a command delivered twice is
    /// answered again, not run again.
    answered: HashMap<String, Effect>,
}

impl Downlink {
    pub(crate) fn new(device_id: &str, key_id: u32, key: SecretKey) -> Self {
        let mut keys = Keyring::default();
        keys.import_key(device_id, key_id, key);
        Downlink {
            device_id: device_id.to_owned(),
            keys,
            boot: 1,
            firmware: SIM_FIRMWARE.to_owned(),
            config_version: 0,
            answered: HashMap::new(),
        }
    }

    /// What the device reports after it connects.
    pub(crate) fn report(&self) -> Value {
        // No configuration applied yet: nothing to say about it.
        let config_version = (self.config_version > 0).then_some(self.config_version);
        json!({ "firmware": self.firmware, "boot": self.boot, "config_version": config_version })
    }

    /// Handles one message the device received on one of its downlink topics.
    pub(crate) fn on_message(&mut self, topic: DeviceTopic, payload: &[u8]) -> Vec<Effect> {
        let message: Value = match serde_json::from_slice(payload) {
            Ok(message) => message,
            Err(err) => {
                tracing::warn!(device = %self.device_id, ?topic, error = %err, "downlink message is not JSON");
                return Vec::new();
            }
        };
        match topic {
            DeviceTopic::Config => self.on_config(&message),
            DeviceTopic::Commands => self.on_command(&message),
            _ => Vec::new(),
        }
    }

    fn on_config(&mut self, message: &Value) -> Vec<Effect> {
        let Some(version) = message["version"].as_i64() else { return Vec::new() };
        if version <= self.config_version {
            return Vec::new();
        }
        self.config_version = version;
        let mut effects = Vec::new();
        if let Some(seconds) = message["config"]["interval_s"].as_f64().filter(|s| *s > 0.0) {
            effects.push(Effect::Interval(Duration::from_secs_f64(seconds)));
        }
        effects.push(Effect::Report(json!({ "config_version": version })));
        effects
    }

    fn on_command(&mut self, command: &Value) -> Vec<Effect> {
        let Some(id) = command["id"].as_str() else { return Vec::new() };
        if let Some(answer) = self.answered.get(id) {
            return vec![answer.clone()];
        }
        let args = &command["args"];
        let mut effects = Vec::new();
        let mut after_keys_below = None;
        let (status, detail) = match command["name"].as_str().unwrap_or_default() {
            "reboot" => {
                self.boot += 1;
                effects.push(Effect::Report(self.report()));
                ("done", None)
            }
            "sample_now" => {
                effects.push(Effect::SampleNow);
                ("done", None)
            }
            "set_interval" => match args["s"].as_f64().filter(|s| *s > 0.0) {
                Some(seconds) => {
                    effects.push(Effect::Interval(Duration::from_secs_f64(seconds)));
                    ("done", None)
                }
                None => ("rejected", Some("set_interval needs {\"s\": seconds}".to_owned())),
            },
            "firmware_available" => match args["version"].as_str() {
                // A simulated device "installs" at once: it reboots into the new version.
                Some(version) => {
                    self.firmware = version.chars().take(64).collect();
                    self.boot += 1;
                    effects.push(Effect::Report(self.report()));
                    ("done", None)
                }
                None => ("rejected", Some("firmware_available needs a version".to_owned())),
            },
            ROTATE_KEY_COMMAND => match self.take_key(args) {
                Ok((key_id, key)) => {
                    effects.push(Effect::NewKey(key_id, key));
                    after_keys_below = Some(key_id);
                    ("done", None)
                }
                Err(why) => ("failed", Some(why)),
            },
            other => ("rejected", Some(format!("unknown command {other:?}"))),
        };
        let answer = Effect::Answer {
            result: json!({ "id": id, "status": status, "detail": detail }),
            after_keys_below,
        };
        self.answered.insert(id.to_owned(), answer.clone());
        effects.push(answer);
        effects
    }

    fn take_key(&mut self, args: &Value) -> Result<(u32, SecretKey), String> {
        let (announced, sealed) = parse_command_args(args).map_err(|e| e.to_string())?;
        let (key_id, key) = open_key(&self.device_id, &sealed, &self.keys).map_err(|e| e.to_string())?;
        if key_id != announced {
            return Err(format!("the sealed key is {key_id}, the command says {announced}"));
        }
        self.keys.import_key(&self.device_id, key_id, key.clone());
        Ok((key_id, key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wenu_core::key_transfer::{command_args, seal_key};

    fn device() -> (Downlink, SecretKey) {
        let key = SecretKey::generate();
        (Downlink::new("acme-00001", 1, key.clone()), key)
    }

    #[test]
    fn a_newer_configuration_is_applied_and_reported_once() {
        let (mut device, _) = device();
        let config = br#"{"version": 2, "config": {"interval_s": 30}}"#;
        assert_eq!(
            device.on_message(DeviceTopic::Config, config),
            [Effect::Interval(Duration::from_secs(30)), Effect::Report(json!({ "config_version": 2 }))]
        );
        assert!(device.on_message(DeviceTopic::Config, config).is_empty(), "the same version again");
        assert!(device.on_message(DeviceTopic::Config, br#"{"version": 1, "config": {}}"#).is_empty());
        assert_eq!(device.report()["config_version"], 2);
    }

    #[test]
    fn commands_run_once_and_are_answered_every_time() {
        let (mut device, _) = device();
        let reboot = br#"{"id": "c1", "name": "reboot", "args": {}, "expires_at": 0}"#;
        let first = device.on_message(DeviceTopic::Commands, reboot);
        let done = json!({ "id": "c1", "status": "done", "detail": null });
        assert_eq!(first.last(), Some(&Effect::Answer { result: done, after_keys_below: None }));
        assert_eq!(device.boot, 2);
        let again = device.on_message(DeviceTopic::Commands, reboot);
        assert_eq!(again, [first.last().unwrap().clone()]);
        assert_eq!(device.boot, 2, "a redelivered command is not run again");
        let unknown = device.on_message(DeviceTopic::Commands, br#"{"id": "c2", "name": "dance"}"#);
        let rejected = json!({ "id": "c2", "status": "rejected", "detail": "unknown command \"dance\"" });
        assert_eq!(unknown.last().unwrap(), &Effect::Answer { result: rejected, after_keys_below: None });
    }

    #[test]
    fn a_rotated_key_is_taken_and_a_forged_one_refused() {
        let (mut device, key) = device();
        let new_key = SecretKey::generate();
        let sealed = seal_key("acme-00001", (1, &key), (2, &new_key), [3; 12]);
        let command = json!({ "id": "k1", "name": "rotate_key", "args": command_args(2, &sealed) });
        let effects = device.on_message(DeviceTopic::Commands, command.to_string().as_bytes());
        assert!(matches!(&effects[0], Effect::NewKey(2, k) if k.as_bytes() == new_key.as_bytes()));
        assert!(
            matches!(&effects[1], Effect::Answer { result, after_keys_below: Some(2) } if result["status"] == "done"),
            "confirmed once what key 1 sealed is acknowledged"
        );

        let forged = seal_key("acme-00001", (1, &SecretKey::generate()), (3, &new_key), [4; 12]);
        let command = json!({ "id": "k2", "name": "rotate_key", "args": command_args(3, &forged) });
        let effects = device.on_message(DeviceTopic::Commands, command.to_string().as_bytes());
        assert!(
            matches!(&effects[..], [Effect::Answer { result, .. }] if result["status"] == "failed"),
            "{effects:?}"
        );
    }
}
