//! The lake's object store on S3: the `object_store` crate's own AWS
//! backend (the same trait the embedded lake writes through), configured
//! from aws-config so that credentials, region and endpoint come from the
//! same places as every other adapter's. Conditional puts (If-None-Match)
//! make a lake file written twice land once.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use object_store::CredentialProvider;
use object_store::aws::{AmazonS3, AmazonS3Builder, AwsCredential, S3ConditionalPut};

/// The bucket `bucket` as an object store.
pub fn s3_store(config: &SdkConfig, bucket: &str) -> object_store::Result<AmazonS3> {
    let mut builder =
        AmazonS3Builder::new().with_bucket_name(bucket).with_conditional_put(S3ConditionalPut::ETagMatch);
    if let Some(region) = config.region() {
        builder = builder.with_region(region.as_ref());
    }
    // AWS_ENDPOINT_URL_S3 overrides AWS_ENDPOINT_URL, as for the SDK's clients.
    let endpoint =
        std::env::var("AWS_ENDPOINT_URL_S3").ok().or_else(|| config.endpoint_url().map(str::to_owned));
    if let Some(endpoint) = endpoint {
        builder = builder.with_allow_http(endpoint.starts_with("http://")).with_endpoint(endpoint);
    }
    if let Some(credentials) = config.credentials_provider() {
        builder = builder.with_credentials(Arc::new(SdkCredentials::new(credentials)));
    }
    builder.build()
}

/// aws-config's credential chain (environment, profiles, SSO, the ECS, EC2
/// or Lambda role) as object_store's credential provider, cached until
/// five minutes before the credentials expire.
#[derive(Debug)]
struct SdkCredentials {
    provider: SharedCredentialsProvider,
    cached: Mutex<Option<(Arc<AwsCredential>, Option<SystemTime>)>>,
}

impl SdkCredentials {
    fn new(provider: SharedCredentialsProvider) -> Self {
        SdkCredentials { provider, cached: Mutex::new(None) }
    }
}

#[async_trait]
impl CredentialProvider for SdkCredentials {
    type Credential = AwsCredential;

    async fn get_credential(&self) -> object_store::Result<Arc<AwsCredential>> {
        let fresh_until = SystemTime::now() + Duration::from_secs(300);
        if let Some((credential, expiry)) = self.cached.lock().expect("credential cache poisoned").as_ref()
            && expiry.is_none_or(|at| at > fresh_until)
        {
            return Ok(credential.clone());
        }
        let credentials = self
            .provider
            .provide_credentials()
            .await
            .map_err(|e| object_store::Error::Generic { store: "S3", source: Box::new(e) })?;
        let credential = Arc::new(AwsCredential {
            key_id: credentials.access_key_id().to_owned(),
            secret_key: credentials.secret_access_key().to_owned(),
            token: credentials.session_token().map(str::to_owned),
        });
        *self.cached.lock().expect("credential cache poisoned") =
            Some((credential.clone(), credentials.expiry()));
        Ok(credential)
    }
}
