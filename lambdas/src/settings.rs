//! What a function reads from its environment (set by the deployment
//! template), and the sources it builds from it.

use std::time::Duration;

use anyhow::Context;
use aws_config::SdkConfig;
use wenu_aws::SecretsKeyring;
use wenu_registry::{Registry, RegistryKeys};

/// A required environment variable.
pub fn required(name: &str) -> anyhow::Result<String> {
    std::env::var(name).with_context(|| format!("{name} is not set"))
}

/// The registry (RDS PostgreSQL) named by `WENU_REGISTRY_URL`.
pub async fn registry() -> anyhow::Result<Registry> {
    let url = required("WENU_REGISTRY_URL")?;
    Registry::connect(&url).await.context("connecting to the registry")
}

/// Device keys from Secrets Manager under `WENU_KEYS_SECRET_PREFIX`, looked
/// at again every `WENU_KEYS_REFRESH_SECS` (60 by default), with the devices
/// from the registry.
pub async fn registry_keys(config: &SdkConfig) -> anyhow::Result<RegistryKeys> {
    let prefix = required("WENU_KEYS_SECRET_PREFIX")?;
    let refresh = std::env::var("WENU_KEYS_REFRESH_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(60);
    let client = aws_sdk_secretsmanager::Client::new(config);
    let keyring = SecretsKeyring::new(client, prefix, Duration::from_secs(refresh));
    Ok(RegistryKeys::new(Box::new(keyring), registry().await?))
}
