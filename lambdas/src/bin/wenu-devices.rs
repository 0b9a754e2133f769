//! The devices function (`wenu_lambdas::devices`): presence, reports and
//! command results from IoT Core's rules and lifecycle events, and the
//! downlink to devices through IoT Core's data plane.
//! Environment: `WENU_REGISTRY_URL`, `WENU_REGISTRY_SECRET_ARN`, `WENU_TOPIC_PREFIX`.

use std::sync::Arc;

use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use wenu_aws::IotDataPublisher;
use wenu_lambdas::devices::DevicesFunction;
use wenu_lambdas::settings;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let config = wenu_aws::config::load().await;
    let registry = settings::registry(&config).await?;
    let publisher = Arc::new(IotDataPublisher::discover(&config).await?);
    let prefix = std::env::var("WENU_TOPIC_PREFIX").ok().filter(|p| !p.is_empty());
    let function = &DevicesFunction::new(registry, publisher, prefix);
    run(service_fn(move |event: LambdaEvent<serde_json::Value>| async move {
        function.handle(&event.payload).await.map_err(Error::from)
    }))
    .await
}
