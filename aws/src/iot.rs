//! Devices on AWS IoT Core: each device is a thing with an X.509
//! certificate IoT Core issues, and every certificate carries the one
//! device policy, whose policy variables let a device connect only as its
//! own thing, publish only to its own telemetry topic
//! (`wenu/{thing name}/telemetry`, where the topic rule picks it up for
//! Kinesis) and report topics, and subscribe only to its own downlink. The device's payload key goes to Secrets Manager beside it
//! (`SecretsKeyring`): the certificate authenticates the connection, the
//! key seals the readings end to end.

use aws_sdk_iot::Client;
use wenu_core::{Error, Result};

use crate::error::{classify, code};

/// The policy attached to every device certificate.
pub const DEVICE_POLICY: &str = "wenu-device";

/// What a device needs to connect to IoT Core; the private key exists only
/// here (IoT Core keeps the certificate, not the key).
pub struct DeviceCertificate {
    pub certificate_arn: String,
    pub certificate_pem: String,
    pub private_key_pem: String,
}

impl std::fmt::Debug for DeviceCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceCertificate")
            .field("certificate_arn", &self.certificate_arn)
            .finish_non_exhaustive()
    }
}

/// Registers devices with IoT Core.
pub struct IotDevices {
    client: Client,
    policy: String,
}

/// The device policy: connect as the thing the certificate is attached to,
/// publish to that thing's telemetry, `reported` and `results` topics,
/// subscribe to and receive its own `config` and `commands`, nothing else.
/// (The deployment template holds the same policy, with the stage's prefix.)
pub fn device_policy_document(region: &str, account: &str) -> String {
    let arn = |kind: &str, rest: &str| format!("arn:aws:iot:{region}:{account}:{kind}/{rest}");
    let own = |kind: &str, topics: &[&str]| -> Vec<String> {
        topics.iter().map(|t| arn(kind, &format!("wenu/${{iot:Connection.Thing.ThingName}}/{t}"))).collect()
    };
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": "iot:Connect",
                "Resource": arn("client", "${iot:Connection.Thing.ThingName}"),
                "Condition": { "Bool": { "iot:Connection.Thing.IsAttached": "true" } }
            },
            {
                "Effect": "Allow",
                "Action": "iot:Publish",
                "Resource": own("topic", &["telemetry", "reported", "results"])
            },
            {
                "Effect": "Allow",
                "Action": "iot:Subscribe",
                "Resource": own("topicfilter", &["config", "commands"])
            },
            {
                "Effect": "Allow",
                "Action": "iot:Receive",
                "Resource": own("topic", &["config", "commands"])
            }
        ]
    })
    .to_string()
}

impl IotDevices {
    pub fn new(client: Client, policy: impl Into<String>) -> Self {
        IotDevices { client, policy: policy.into() }
    }

    /// Creates the device policy unless it exists (the deployment template
    /// normally does). `account` may be `*` where it is not known.
    pub async fn ensure_policy(&self, region: &str, account: &str) -> Result<()> {
        let document = device_policy_document(region, account);
        match self.client.create_policy().policy_name(&self.policy).policy_document(document).send().await {
            Ok(_) => Ok(()),
            Err(e) if code(&e) == Some("ResourceAlreadyExistsException") => Ok(()),
            Err(e) => Err(iot_error("CreatePolicy", &e)),
        }
    }

    /// Creates the thing `device_id` and an active certificate for it,
    /// with the device policy attached.
    pub async fn register(&self, device_id: &str) -> Result<DeviceCertificate> {
        self.client
            .create_thing()
            .thing_name(device_id)
            .send()
            .await
            .map_err(|e| iot_error("CreateThing", &e))?;
        let created = self
            .client
            .create_keys_and_certificate()
            .set_as_active(true)
            .send()
            .await
            .map_err(|e| iot_error("CreateKeysAndCertificate", &e))?;
        let missing = |what: &str| Error::Provisioning {
            message: format!("CreateKeysAndCertificate returned no {what}"),
            retryable: false,
        };
        let certificate_arn = created.certificate_arn().ok_or_else(|| missing("certificate ARN"))?.to_owned();
        let certificate_pem = created.certificate_pem().ok_or_else(|| missing("certificate"))?.to_owned();
        let private_key_pem = created
            .key_pair()
            .and_then(|pair| pair.private_key())
            .ok_or_else(|| missing("private key"))?
            .to_owned();
        self.client
            .attach_policy()
            .policy_name(&self.policy)
            .target(&certificate_arn)
            .send()
            .await
            .map_err(|e| iot_error("AttachPolicy", &e))?;
        self.client
            .attach_thing_principal()
            .thing_name(device_id)
            .principal(&certificate_arn)
            .send()
            .await
            .map_err(|e| iot_error("AttachThingPrincipal", &e))?;
        Ok(DeviceCertificate { certificate_arn, certificate_pem, private_key_pem })
    }

    /// The account's MQTT endpoint for devices (`…-ats.iot.{region}.amazonaws.com`, port 8883).
    pub async fn data_endpoint(&self) -> Result<String> {
        let output = self
            .client
            .describe_endpoint()
            .endpoint_type("iot:Data-ATS")
            .send()
            .await
            .map_err(|e| iot_error("DescribeEndpoint", &e))?;
        output.endpoint_address().map(str::to_owned).ok_or_else(|| Error::Provisioning {
            message: "DescribeEndpoint returned no address".into(),
            retryable: true,
        })
    }
}

fn iot_error<E, R>(call: &str, err: &aws_sdk_iot::error::SdkError<E, R>) -> Error
where
    E: aws_sdk_iot::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let (message, retryable) = classify(err);
    Error::Provisioning { message: format!("IoT {call}: {message}"), retryable }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_device_may_connect_and_publish_only_as_its_own_thing() {
        let policy: serde_json::Value =
            serde_json::from_str(&device_policy_document("eu-west-1", "123456789012")).unwrap();
        let statements = policy["Statement"].as_array().unwrap();
        let actions: Vec<&str> = statements.iter().map(|s| s["Action"].as_str().unwrap()).collect();
        assert_eq!(actions, ["iot:Connect", "iot:Publish", "iot:Subscribe", "iot:Receive"]);
        assert_eq!(
            statements[0]["Resource"],
            "arn:aws:iot:eu-west-1:123456789012:client/${iot:Connection.Thing.ThingName}"
        );
        assert_eq!(statements[0]["Condition"]["Bool"]["iot:Connection.Thing.IsAttached"], "true");
        let own = |kind: &str, topic: &str| {
            format!(
                "arn:aws:iot:eu-west-1:123456789012:{kind}/wenu/${{iot:Connection.Thing.ThingName}}/{topic}"
            )
        };
        let resources = |i: usize| statements[i]["Resource"].clone();
        let expected = |kind: &str, topics: &[&str]| {
            serde_json::json!(topics.iter().map(|t| own(kind, t)).collect::<Vec<_>>())
        };
        assert_eq!(resources(1), expected("topic", &["telemetry", "reported", "results"]));
        assert_eq!(resources(2), expected("topicfilter", &["config", "commands"]), "its own downlink only");
        assert_eq!(resources(3), expected("topic", &["config", "commands"]));
        assert!(!policy.to_string().contains('+') && !policy.to_string().contains('#'), "no wildcard");
    }
}
