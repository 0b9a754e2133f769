//! The devices function: on AWS, what the embedded edge does for devices
//! besides taking their telemetry. IoT Core invokes it through topic rules
//! and lifecycle events, and EventBridge every minute:
//!
//! * `connected` / `disconnected` lifecycle events: the device's presence;
//! * `subscribed` lifecycle events: what waits for the device on the topic
//!   it subscribed to (its desired configuration, its pending commands) is
//!   published to it through IoT Core's data plane;
//! * the `reported` and `results` rules (`{"kind", "device_id", "payload"}`,
//!   the payload base64 so a device cannot add fields of its own): what
//!   the device reports about itself, and its commands' results (a
//!   confirmed `rotate_key` retires its older keys);
//! * the schedule: configurations changed and commands queued while their
//!   device is connected are published to it (within a minute; the
//!   embedded edge takes a second).
//!
//! A command counts as delivered once IoT Core accepted the publish.

use std::collections::HashSet;
use std::sync::Arc;

use base64::Engine;
use bytes::Bytes;
use serde_json::Value;
use wenu_core::downlink::DevicePublisher;
use wenu_core::topic::DeviceTopic;
use wenu_registry::{Command, CommandResult, DesiredConfig, Registry, Report};

pub struct DevicesFunction {
    registry: Registry,
    publisher: Arc<dyn DevicePublisher>,
    /// What comes before `wenu/…` on this stage (`dev`), if anything.
    topic_prefix: Option<String>,
}

impl DevicesFunction {
    pub fn new(
        registry: Registry,
        publisher: Arc<dyn DevicePublisher>,
        topic_prefix: Option<String>,
    ) -> Self {
        DevicesFunction { registry, publisher, topic_prefix }
    }

    /// One invocation. Malformed events are logged and dropped (invoking
    /// again would not mend them); failures of the registry or of IoT Core
    /// are errors, so Lambda tries the event again.
    pub async fn handle(&self, event: &Value) -> Result<(), String> {
        if event["detail-type"] == "Scheduled Event" {
            return self.deliver_changes().await;
        }
        let text = |key: &str| event[key].as_str().unwrap_or_default();
        // Lifecycle events are the whole account's: another stage's devices come too.
        if !text("eventType").is_empty() && !self.knows(text("clientId")).await? {
            tracing::debug!(
                client = text("clientId"),
                "a lifecycle event of a client this registry does not hold"
            );
            return Ok(());
        }
        match (text("eventType"), text("kind")) {
            ("connected" | "disconnected", _) => {
                let (device, online) = (text("clientId"), text("eventType") == "connected");
                let at = event["timestamp"].as_i64().unwrap_or_else(wenu_core::clock::now_ms);
                self.registry.record_presence(device, online, at).await.map_err(|e| e.to_string())
            }
            ("subscribed", _) => {
                let topics: HashSet<&str> =
                    event["topics"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
                self.on_subscribed(text("clientId"), &topics).await
            }
            (_, "reported" | "results") => self.on_report(event).await,
            _ => {
                tracing::warn!(%event, "not an event the devices function handles; dropped");
                Ok(())
            }
        }
    }

    async fn knows(&self, device: &str) -> Result<bool, String> {
        Ok(self.registry.device(device).await.map_err(|e| e.to_string())?.is_some())
    }

    fn topic(&self, kind: DeviceTopic, device: &str) -> String {
        match &self.topic_prefix {
            Some(prefix) => format!("{prefix}/{}", kind.of(device)),
            None => kind.of(device),
        }
    }

    async fn on_subscribed(&self, device: &str, topics: &HashSet<&str>) -> Result<(), String> {
        let wants = |kind| topics.contains(self.topic(kind, device).as_str());
        let (config, commands) = self.registry.pending_downlink(device).await.map_err(|e| e.to_string())?;
        if wants(DeviceTopic::Config) {
            // On every subscription: the device may have lost it.
            self.send(config.as_ref(), &[]).await?;
        }
        if wants(DeviceTopic::Commands) {
            self.send(None, &commands).await?;
        }
        Ok(())
    }

    async fn on_report(&self, event: &Value) -> Result<(), String> {
        let device = event["device_id"].as_str().unwrap_or_default();
        let payload =
            event["payload"].as_str().and_then(|p| base64::engine::general_purpose::STANDARD.decode(p).ok());
        let Some(payload) = payload else {
            tracing::warn!(device, "a report without a base64 payload; dropped");
            return Ok(());
        };
        let recorded = if event["kind"] == "reported" {
            match serde_json::from_slice::<Report>(&payload) {
                Ok(report) => self.registry.record_report(device, &report).await.map(|()| true),
                Err(err) => {
                    tracing::warn!(device, error = %err, "a malformed report; dropped");
                    return Ok(());
                }
            }
        } else {
            match serde_json::from_slice::<CommandResult>(&payload) {
                Ok(result) => self.registry.record_command_result(device, &result).await,
                Err(err) => {
                    tracing::warn!(device, error = %err, "a malformed command result; dropped");
                    return Ok(());
                }
            }
        };
        match recorded {
            Ok(true) => Ok(()),
            Ok(false) => {
                tracing::warn!(device, "a result for a command the device does not have; dropped");
                Ok(())
            }
            // A refusal of what the device sent is not worth a retry; the registry failing is.
            Err(wenu_registry::Error::Invalid(reason)) | Err(wenu_registry::Error::InvalidId(reason)) => {
                tracing::warn!(device, %reason, "a report the registry refused; dropped");
                Ok(())
            }
            Err(err) => Err(err.to_string()),
        }
    }

    /// The scheduled sweep: to every connected device, its configuration
    /// if it has not applied it, and its commands still pending.
    async fn deliver_changes(&self) -> Result<(), String> {
        let states = self.registry.device_states(None).await.map_err(|e| e.to_string())?;
        let online: HashSet<&str> =
            states.iter().filter(|s| s.online).map(|s| s.device_id.as_str()).collect();
        let stale: HashSet<&str> =
            states.iter().filter(|s| s.online && s.config_stale()).map(|s| s.device_id.as_str()).collect();
        let (configs, commands) = self.registry.downlink_since(0).await.map_err(|e| e.to_string())?;
        for config in configs.iter().filter(|c| stale.contains(c.device_id.as_str())) {
            self.send(Some(config), &[]).await?;
        }
        let waiting: Vec<Command> =
            commands.into_iter().filter(|c| online.contains(c.device_id.as_str())).collect();
        self.send(None, &waiting).await
    }

    async fn send(&self, config: Option<&DesiredConfig>, commands: &[Command]) -> Result<(), String> {
        if let Some(config) = config {
            let topic = self.topic(DeviceTopic::Config, &config.device_id);
            let message = Bytes::from(config.message().to_string());
            self.publisher.publish(&topic, message).await.map_err(|e| e.to_string())?;
        }
        for command in commands {
            let topic = self.topic(DeviceTopic::Commands, &command.device_id);
            let message = Bytes::from(command.message().to_string());
            self.publisher.publish(&topic, message).await.map_err(|e| e.to_string())?;
            self.registry.mark_delivered(&command.id).await.map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}
