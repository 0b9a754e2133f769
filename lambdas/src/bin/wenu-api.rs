//! The API function behind API Gateway's HTTP API: the same router as on
//! one machine (`wenu_api::router`).
//! Environment: `WENU_REGISTRY_URL`, `WENU_REGISTRY_SECRET_ARN`, `WENU_STATS_TABLE`, `WENU_ALARMS_TABLE`,
//! `WENU_KEYS_SECRET_PREFIX`.

use lambda_http::{Error, run};
use wenu_lambdas::settings;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_http::tracing::init_default_subscriber();
    let config = wenu_aws::config::load().await;
    let state = settings::api_state(&config).await?;
    run(wenu_api::router(state)).await
}
