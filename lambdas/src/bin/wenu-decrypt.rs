//! The lake's Firehose transformation function (`wenu_lambdas::firehose`).
//! Environment: `WENU_REGISTRY_URL`, `WENU_REGISTRY_SECRET_ARN`, `WENU_KEYS_SECRET_PREFIX`.

use aws_lambda_events::firehose::KinesisFirehoseEvent;
use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use tokio::sync::Mutex;
use wenu_decrypt::DecodeLimits;
use wenu_lambdas::firehose::DecryptTransform;
use wenu_lambdas::settings;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let config = wenu_aws::config::load().await;
    let keys = settings::registry_keys(&config, &settings::registry(&config).await?)?;
    let transform = Mutex::new(DecryptTransform::new(Box::new(keys), DecodeLimits::default()));
    run(service_fn(|event: LambdaEvent<KinesisFirehoseEvent>| async {
        transform.lock().await.handle(event.payload).await.map_err(Error::from)
    }))
    .await
}
