//! The SDK configuration every adapter is built from: aws-config's standard
//! chain, so credentials, region and endpoint come from where AWS users
//! expect them (environment, `~/.aws/config` profiles, the ECS/EC2/Lambda
//! role) and `AWS_ENDPOINT_URL` (or `AWS_ENDPOINT_URL_<SERVICE>`) points
//! every client at an emulator.

use aws_config::{BehaviorVersion, SdkConfig};

/// Loads the configuration from the environment, as the AWS CLI would.
pub async fn load() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest()).load().await
}
