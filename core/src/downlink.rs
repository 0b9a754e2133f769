//! The downlink port: where messages for devices are published when another
//! service is their MQTT server (IoT Core on AWS, through its data plane).
//! The embedded edge is the server itself and writes to its own sessions.

use bytes::Bytes;

use crate::Result;

#[async_trait::async_trait]
pub trait DevicePublisher: Send + Sync + 'static {
    /// Publishes `payload` at QoS 1 on `topic`, one of a device's downlink
    /// topics with the deployment's prefix.
    async fn publish(&self, topic: &str, payload: Bytes) -> Result<()>;
}
