//! The downlink: each device's desired configuration and its commands, from
//! the registry to the device's own topics (`wenu/{id}/config`,
//! `wenu/{id}/commands`).
//!
//! A device gets what is waiting for it when it subscribes, and what an
//! operator sets while it is connected within [`REVISION_CHECK`] (the edge
//! watches the registry's revision). Delivery is at least once: QoS 1, sent
//! again at every subscription until a command is acknowledged; devices
//! drop a configuration version or a command id they already have.

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::mpsc;
use wenu_core::topic::DeviceTopic;
use wenu_registry::{Command, DesiredConfig, Registry};

use crate::device_cache::REVISION_CHECK;
use crate::links::Links;

/// Subscriptions waiting for their first delivery, at most; past that a
/// subscription is delivered at the next change instead (counted).
pub(crate) const SUBSCRIPTION_QUEUE: usize = 10_000;

/// A device subscribed to one of its downlink topics.
#[derive(Debug)]
pub(crate) struct Subscribed {
    pub device_id: String,
    pub topic: DeviceTopic,
}

/// Sends a configuration or commands to a device, if it is subscribed.
fn deliver(registry: &Registry, links: &Links, config: Option<&DesiredConfig>, commands: &[Command]) {
    if let Some(config) = config {
        let topic = DeviceTopic::Config.of(&config.device_id);
        links.deliver_to(&config.device_id, &topic, Bytes::from(config.message().to_string()));
    }
    for command in commands {
        let topic = DeviceTopic::Commands.of(&command.device_id);
        let message = Bytes::from(command.message().to_string());
        if let Some(acknowledged) = links.deliver_to(&command.device_id, &topic, message) {
            let (registry, id) = (registry.clone(), command.id.clone());
            tokio::spawn(async move {
                if acknowledged.await.is_ok()
                    && let Err(err) = registry.mark_delivered(&id).await
                {
                    tracing::warn!(error = %err, command = %id, "could not record a command's delivery");
                }
            });
        }
    }
}

/// Runs the downlink until the edge stops.
pub(crate) async fn run(registry: Registry, links: Arc<Links>, mut subscribed: mpsc::Receiver<Subscribed>) {
    let mut every_check = tokio::time::interval(REVISION_CHECK);
    every_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seen = registry.revision().await.ok();
    loop {
        tokio::select! {
            Some(Subscribed { device_id, topic }) = subscribed.recv() => {
                // Only what the subscribed topic carries is read.
                let read = match topic {
                    DeviceTopic::Config => registry
                        .desired_config(&device_id)
                        .await
                        .map(|config| deliver(&registry, &links, config.as_ref(), &[])),
                    _ => registry
                        .pending_commands_of(&device_id)
                        .await
                        .map(|commands| deliver(&registry, &links, None, &commands)),
                };
                if let Err(err) = read {
                    tracing::warn!(error = %err, device = %device_id, "could not read a device's downlink");
                }
            }
            _ = every_check.tick() => {
                let changed = async {
                    let revision = registry.revision().await?;
                    let Some(since) = seen.filter(|&s| s != revision) else {
                        seen = Some(revision);
                        return Ok(());
                    };
                    let (configs, commands) = registry.downlink_since(since).await?;
                    for config in &configs {
                        deliver(&registry, &links, Some(config), &[]);
                    }
                    deliver(&registry, &links, None, &commands);
                    seen = Some(revision);
                    Ok::<_, wenu_registry::Error>(())
                };
                if let Err(err) = changed.await {
                    tracing::warn!(error = %err, "could not read the registry's downlink changes");
                }
            }
        }
    }
}
