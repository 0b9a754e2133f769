//! The enrich function on the stream (`wenu_lambdas::kinesis`): readings
//! normalised with the registry, one stats job per series on the jobs queue.
//! Environment: `WENU_REGISTRY_URL`, `WENU_REGISTRY_SECRET_ARN`, `WENU_KEYS_SECRET_PREFIX`,
//! `WENU_JOBS_QUEUE_URL`, `WENU_JOBS_DLQ_URL`, `WENU_LAKE_BUCKET`.

use std::sync::Arc;

use aws_lambda_events::event::kinesis::KinesisEvent;
use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use tokio::sync::Mutex;
use wenu_decrypt::DecodeLimits;
use wenu_enrich::EnrichStage;
use wenu_lambdas::kinesis::StageFunction;
use wenu_lambdas::settings;
use wenu_registry::RegistryCatalog;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let config = wenu_aws::config::load().await;
    let registry = settings::registry(&config).await?;
    let stage = EnrichStage::new(
        Box::new(settings::registry_keys(&config, &registry)?),
        Box::new(RegistryCatalog::new(registry)),
        Arc::new(settings::jobs_queue(&config)?),
        settings::lake_store(&config)?,
        DecodeLimits::default(),
    );
    let function = &Mutex::new(StageFunction::new("enrich", stage)?);
    run(service_fn(move |event: LambdaEvent<KinesisEvent>| async move {
        Ok::<_, Error>(function.lock().await.handle(&event.payload).await)
    }))
    .await
}
