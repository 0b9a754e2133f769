//! The downlink on IoT Core: messages for devices published through its
//! data plane (`Publish`, QoS 1) to the devices' own topics, which the
//! device policy lets each device subscribe to.

use aws_config::SdkConfig;
use aws_sdk_iotdataplane::Client;
use aws_sdk_iotdataplane::primitives::Blob;
use bytes::Bytes;
use wenu_core::downlink::DevicePublisher;
use wenu_core::{Error, Result};

use crate::error::classify;

/// Publishes to devices through IoT Core's data plane.
pub struct IotDataPublisher {
    client: Client,
}

impl IotDataPublisher {
    pub fn new(client: Client) -> Self {
        IotDataPublisher { client }
    }

    /// A publisher at the account's data endpoint, which IoT Core names
    /// (`DescribeEndpoint`, `iot:Data-ATS`); where the configuration sets an
    /// endpoint (`AWS_ENDPOINT_URL`, an emulator) that one is used.
    pub async fn discover(config: &SdkConfig) -> Result<Self> {
        if config.endpoint_url().is_some() {
            return Ok(Self::new(Client::new(config)));
        }
        let described = aws_sdk_iot::Client::new(config)
            .describe_endpoint()
            .endpoint_type("iot:Data-ATS")
            .send()
            .await
            .map_err(|e| {
                let (message, retryable) = classify(&e);
                Error::Downlink { message: format!("DescribeEndpoint: {message}"), retryable }
            })?;
        let address = described.endpoint_address().ok_or_else(|| Error::Downlink {
            message: "DescribeEndpoint named no data endpoint".into(),
            retryable: false,
        })?;
        let data =
            aws_sdk_iotdataplane::config::Builder::from(config).endpoint_url(format!("https://{address}"));
        Ok(Self::new(Client::from_conf(data.build())))
    }
}

#[async_trait::async_trait]
impl DevicePublisher for IotDataPublisher {
    async fn publish(&self, topic: &str, payload: Bytes) -> Result<()> {
        self.client.publish().topic(topic).qos(1).payload(Blob::new(payload.to_vec())).send().await.map_err(
            |e| {
                let (message, retryable) = classify(&e);
                Error::Downlink { message: format!("Publish to {topic}: {message}"), retryable }
            },
        )?;
        Ok(())
    }
}
