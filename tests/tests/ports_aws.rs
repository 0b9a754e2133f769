//! The conformance suites of the queue and table store ports against the
//! AWS backends, on moto: the same checks the embedded backends pass
//! (`ports_local.rs`).

use wenu_aws::{DynamoTable, SqsQueue};
use wenu_tests::moto::{moto, unique_name};
use wenu_tests::{queue_conformance as queue_suite, table_conformance as table_suite};

async fn queue() -> SqsQueue {
    let client = aws_sdk_sqs::Client::new(&moto().sdk_config().await);
    SqsQueue::create(client, &unique_name("jobs"), queue_suite::MAX_RECEIVE_COUNT).await.unwrap()
}

async fn table() -> DynamoTable {
    let client = aws_sdk_dynamodb::Client::new(&moto().sdk_config().await);
    DynamoTable::create(client, &unique_name("stats")).await.unwrap()
}

#[tokio::test]
async fn sqs_queue_passes_the_queue_suite() {
    queue_suite::send_receive_delete(&queue().await).await;
    queue_suite::visibility_timeout(&queue().await).await;
    queue_suite::one_in_flight_per_group(&queue().await).await;
    queue_suite::large_batches_and_binary_bodies(&queue().await).await;
    queue_suite::dead_letters_and_redrive(&queue().await).await;
}

#[tokio::test]
async fn dynamodb_table_passes_the_table_suite() {
    table_suite::conditional_writes(&table().await).await;
    table_suite::range_queries_and_pages(&table().await).await;
    table_suite::expired_items_are_gone(&table().await).await;
    table_suite::transactions_are_all_or_nothing(&table().await).await;
}
