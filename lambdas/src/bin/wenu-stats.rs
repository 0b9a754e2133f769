//! The stats function on the jobs queue (`wenu_lambdas::sqs`).
//! Environment: `WENU_STATS_TABLE`.

use std::sync::Arc;

use aws_lambda_events::event::sqs::SqsEvent;
use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use wenu_aws::DynamoTable;
use wenu_lambdas::settings;
use wenu_lambdas::sqs::handle_jobs;
use wenu_stats::worker::TableHandler;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let config = wenu_aws::config::load().await;
    let table =
        DynamoTable::new(aws_sdk_dynamodb::Client::new(&config), settings::required("WENU_STATS_TABLE")?);
    let handler = TableHandler { table: Arc::new(table) };
    run(service_fn(|event: LambdaEvent<SqsEvent>| async {
        Ok::<_, Error>(handle_jobs(&handler, event.payload).await)
    }))
    .await
}
