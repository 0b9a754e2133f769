//! The keyring on Secrets Manager: device keys in secrets named
//! `{prefix}/keys-0001`, `{prefix}/keys-0002`, …, each holding a keyring in
//! the embedded keyring file's JSON format, kept under 48 KiB (a secret
//! holds at most 64 KiB, some 500 devices). One secret per device would
//! cost $0.40 a month each; a few hundred devices per secret costs that per
//! few hundred devices.
//!
//! Readers (the decrypt and enrich stages) cache the whole keyring and look
//! for changed secrets at most every `refresh_every` (`ListSecrets` gives
//! each secret's current version), fetching only those, 20 at a time
//! (`BatchGetSecretValue`). Key material never reaches a log: `SecretKey`'s
//! `Debug` is redacted and errors name secrets, not their contents.
//!
//! Writers (provisioning, rotation, from the CLI or the API, from several
//! places at once) change a secret by compare-and-swap: the new value is
//! stored as a version that is not current yet, and `AWSCURRENT` is moved
//! to it only from the version the change was computed on
//! (`UpdateSecretVersionStage` refuses when another writer moved it first).
//! A writer that lost the race reloads and applies its change again.

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::types::Filter;
use tokio::time::Instant;
use wenu_core::keyring::{AddedKey, Keyring, KeyringStore};
use wenu_core::{Error, Result};

use crate::error::{classify, code};

/// Past this size a secret takes no new devices (the limit is 64 KiB).
const DEFAULT_FILL_BYTES: usize = 48 * 1024;
/// `BatchGetSecretValue` takes up to 20 secrets.
const MAX_BATCH_GET: usize = 20;
/// How often a writer that keeps losing races tries again before it gives up.
const MAX_WRITE_ATTEMPTS: u32 = 20;
/// The label of a version written but not yet made current.
const PENDING_STAGE: &str = "WENUPENDING";

/// The keyring in Secrets Manager, cached.
pub struct SecretsKeyring {
    client: Client,
    prefix: String,
    refresh_every: Duration,
    fill_bytes: usize,
    /// The KMS key new secrets are encrypted with (Secrets Manager's own if none).
    kms_key: Option<String>,
    /// Each secret's current version as listed, and its keyring.
    secrets: BTreeMap<String, (Option<String>, Keyring)>,
    listed_at: Option<Instant>,
}

impl SecretsKeyring {
    /// The keyring under `prefix` (for example `wenu/prod/device-keys`).
    pub fn new(client: Client, prefix: impl Into<String>, refresh_every: Duration) -> Self {
        SecretsKeyring {
            client,
            prefix: prefix.into().trim_end_matches('/').to_owned(),
            refresh_every,
            fill_bytes: DEFAULT_FILL_BYTES,
            kms_key: None,
            secrets: BTreeMap::new(),
            listed_at: None,
        }
    }

    /// Fills each secret only up to `bytes` (tests use a small size to spread
    /// a few devices over several secrets).
    pub fn with_fill_bytes(mut self, bytes: usize) -> Self {
        self.fill_bytes = bytes;
        self
    }

    /// Encrypts the secrets it creates with this KMS key (id, ARN or
    /// alias), whose key policy then says who may read the device keys.
    pub fn with_kms_key(mut self, key: Option<String>) -> Self {
        self.kms_key = key.filter(|key| !key.is_empty());
        self
    }

    /// Every secret's keyring as one.
    fn merged(&self) -> Keyring {
        let mut all = Keyring::default();
        for (_, keyring) in self.secrets.values() {
            all.merge(keyring.clone());
        }
        all
    }

    /// The last secret if it has room for another device, or the next one.
    fn secret_with_room(&self) -> String {
        let last = self.secrets.iter().next_back();
        match last {
            Some((name, (_, keyring)))
                if serde_json::to_vec(keyring).map_or(0, |v| v.len()) < self.fill_bytes =>
            {
                name.clone()
            }
            _ => format!("{}/keys-{:04}", self.prefix, self.secrets.len() + 1),
        }
    }

    /// The secrets under the prefix, with their current version: a new one
    /// each time a secret's value changes (its last-changed date is too
    /// coarse to tell two changes within a second apart).
    async fn list(&self) -> Result<BTreeMap<String, Option<String>>> {
        let filter = Filter::builder()
            .key(aws_sdk_secretsmanager::types::FilterNameStringType::Name)
            .values(format!("{}/keys-", self.prefix))
            .build();
        let mut listed = BTreeMap::new();
        let mut pages = self.client.list_secrets().filters(filter).into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| keys_error("ListSecrets", &e))?;
            for secret in page.secret_list() {
                let Some(name) = secret.name() else { continue };
                // The name filter matches prefixes of words; keep exact children.
                if name.starts_with(&format!("{}/keys-", self.prefix)) {
                    let current = secret.secret_versions_to_stages().and_then(|versions| {
                        versions
                            .iter()
                            .find(|(_, stages)| stages.iter().any(|s| s == "AWSCURRENT"))
                            .map(|(v, _)| v.clone())
                    });
                    listed.insert(name.to_owned(), current);
                }
            }
        }
        Ok(listed)
    }

    /// Each secret's current value, with the version it is. `listed` is the
    /// current version the listing named: a batch answer of another version
    /// (a write in between) is fetched again by stage.
    async fn fetch(
        &self,
        names: &[String],
        listed: &BTreeMap<String, Option<String>>,
    ) -> Result<Vec<(String, Option<String>, Keyring)>> {
        let mut out = Vec::new();
        for chunk in names.chunks(MAX_BATCH_GET) {
            let output = self
                .client
                .batch_get_secret_value()
                .set_secret_id_list(Some(chunk.to_vec()))
                .send()
                .await
                .map_err(|e| keys_error("BatchGetSecretValue", &e))?;
            if let Some(error) = output.errors().first() {
                return Err(Error::Keyring {
                    message: format!(
                        "secret {} could not be read: {}",
                        error.secret_id().unwrap_or_default(),
                        error.error_code().unwrap_or_default()
                    ),
                    retryable: error.error_code().is_some_and(crate::error::is_retryable_code),
                });
            }
            for secret in output.secret_values() {
                let name = secret.name().unwrap_or_default().to_owned();
                let version = secret.version_id().map(str::to_owned);
                if listed.get(&name).is_some_and(|current| *current != version) {
                    out.push(self.fetch_current(&name).await?);
                } else {
                    out.push((name.clone(), version, parse_keyring(&name, secret.secret_string())?));
                }
            }
        }
        Ok(out)
    }

    /// One secret's `AWSCURRENT` value and version.
    async fn fetch_current(&self, name: &str) -> Result<(String, Option<String>, Keyring)> {
        let secret = self
            .client
            .get_secret_value()
            .secret_id(name)
            .version_stage("AWSCURRENT")
            .send()
            .await
            .map_err(|e| keys_error("GetSecretValue", &e))?;
        let keyring = parse_keyring(name, secret.secret_string())?;
        Ok((name.to_owned(), secret.version_id().map(str::to_owned), keyring))
    }

    /// Stores `value` as secret `name` if its current version is still
    /// `expected` (`None`: the secret must not exist yet). `Ok(false)` when
    /// another writer changed it first.
    async fn swap(&self, name: &str, expected: Option<&str>, value: String) -> Result<bool> {
        let Some(expected) = expected else {
            let created = self
                .client
                .create_secret()
                .name(name)
                .description("Wenu device keys (AES-256, by device and key id)")
                .set_kms_key_id(self.kms_key.clone())
                .secret_string(value)
                .send()
                .await;
            return match created {
                Ok(_) => Ok(true),
                Err(e) if code(&e) == Some("ResourceExistsException") => Ok(false),
                Err(e) => Err(keys_error("CreateSecret", &e)),
            };
        };
        let written = self
            .client
            .put_secret_value()
            .secret_id(name)
            .secret_string(value)
            .version_stages(PENDING_STAGE)
            .send()
            .await
            .map_err(|e| keys_error("PutSecretValue", &e))?;
        let version = written.version_id().unwrap_or_default();
        let moved = self
            .client
            .update_secret_version_stage()
            .secret_id(name)
            .version_stage("AWSCURRENT")
            .move_to_version_id(version)
            .remove_from_version_id(expected)
            .send()
            .await;
        match moved {
            Ok(_) => Ok(true),
            Err(e) if code(&e) == Some("InvalidParameterException") => Ok(false),
            Err(e) => Err(keys_error("UpdateSecretVersionStage", &e)),
        }
    }

    /// Reloads, lets `change` pick a secret and change its keyring, and
    /// stores that by compare-and-swap; again from the reload when another
    /// writer got there first.
    async fn write<T>(&mut self, mut change: impl FnMut(&Self) -> Result<(String, Keyring, T)>) -> Result<T> {
        for _ in 0..MAX_WRITE_ATTEMPTS {
            self.listed_at = None;
            self.changed().await?;
            let (name, keyring, out) = change(self)?;
            let expected = self.secrets.get(&name).and_then(|(version, _)| version.clone());
            let value = serde_json::to_string(&keyring).expect("a keyring serializes");
            if self.swap(&name, expected.as_deref(), value).await? {
                // Cached as unseen, so the next reload fetches what is current.
                self.secrets.insert(name, (None, keyring));
                return Ok(out);
            }
            tracing::debug!(secret = %name, "another writer changed the device keys first; trying again");
        }
        Err(Error::Keyring {
            message: format!("device keys under {} kept changing under this writer", self.prefix),
            retryable: true,
        })
    }

    /// The secret holding `device`'s keys, or the one with room for it.
    fn secret_for(&self, device: &str) -> String {
        match self.secrets.iter().find(|(_, (_, keyring))| !keyring.key_ids(device).is_empty()) {
            Some((name, _)) => name.clone(),
            None => self.secret_with_room(),
        }
    }

    fn keyring_of(&self, name: &str) -> Keyring {
        self.secrets.get(name).map(|(_, keyring)| keyring.clone()).unwrap_or_default()
    }
}

/// Looks for changed secrets at most every `refresh_every`.
#[async_trait::async_trait]
impl KeyringStore for SecretsKeyring {
    async fn changed(&mut self) -> Result<Option<Keyring>> {
        if self.listed_at.is_some_and(|at| at.elapsed() < self.refresh_every) {
            return Ok(None);
        }
        let first = self.listed_at.is_none();
        self.listed_at = Some(Instant::now());
        let listed = self.list().await?;
        let changed: Vec<String> = listed
            .iter()
            .filter(|(name, changed)| self.secrets.get(*name).is_none_or(|(seen, _)| seen != *changed))
            .map(|(name, _)| name.clone())
            .collect();
        let gone = self.secrets.keys().any(|name| !listed.contains_key(name));
        if changed.is_empty() && !gone && !first {
            return Ok(None);
        }
        self.secrets.retain(|name, _| listed.contains_key(name));
        for (name, version, keyring) in self.fetch(&changed, &listed).await? {
            self.secrets.insert(name, (version, keyring));
        }
        tracing::debug!(
            secrets = self.secrets.len(),
            changed = changed.len(),
            "device keys reloaded from Secrets Manager"
        );
        Ok(Some(self.merged()))
    }

    async fn add_key(&mut self, device: &str) -> Result<AddedKey> {
        self.write(|this| {
            let name = this.secret_for(device);
            let mut keyring = this.keyring_of(&name);
            let added = keyring.rotate(device);
            Ok((name, keyring, added))
        })
        .await
    }

    /// One compare-and-swap per secret the devices go to.
    async fn import(&mut self, keys: Keyring) -> Result<()> {
        let mut remaining: Vec<(String, Keyring)> = keys.into_devices().collect();
        while !remaining.is_empty() {
            let written = self
                .write(|this| {
                    let name = this.secret_for(&remaining[0].0);
                    let mut keyring = this.keyring_of(&name);
                    let mut taken = Vec::new();
                    for (i, (device, single)) in remaining.iter().enumerate() {
                        if this.secret_for(device) == name
                            && (i == 0
                                || serde_json::to_vec(&keyring).map_or(0, |v| v.len()) < this.fill_bytes)
                        {
                            keyring.merge(single.clone());
                            taken.push(device.clone());
                        }
                    }
                    Ok((name, keyring, taken))
                })
                .await?;
            remaining.retain(|(device, _)| !written.contains(device));
        }
        Ok(())
    }
}

fn keys_error<E, R>(call: &str, err: &aws_sdk_secretsmanager::error::SdkError<E, R>) -> Error
where
    E: aws_sdk_secretsmanager::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let (message, retryable) = classify(err);
    Error::Keyring { message: format!("Secrets Manager {call}: {message}"), retryable }
}

fn parse_keyring(name: &str, text: Option<&str>) -> Result<Keyring> {
    serde_json::from_str(text.unwrap_or("{}"))
        .map_err(|e| permanent(format!("secret {name} is not a keyring: {e}")))
}

fn permanent(message: String) -> Error {
    Error::Keyring { message, retryable: false }
}
