//! The conformance suites of the stream, queue and table store ports
//! against the AWS backends, on moto: the same checks the embedded backends pass
//! (`ports_local.rs`).

use std::sync::Arc;

use wenu_aws::{DynamoTable, KinesisStream, SqsQueue};
use wenu_tests::moto::{moto, unique_name};
use wenu_tests::{
    queue_conformance as queue_suite, stream_conformance as stream_suite, table_conformance as table_suite,
};

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

/// A stream of `shards` shards with its checkpoint table.
async fn stream(shards: u32) -> KinesisStream {
    let config = moto().sdk_config().await;
    let checkpoints = Arc::new(table().await);
    KinesisStream::create(
        aws_sdk_kinesis::Client::new(&config),
        &unique_name("readings"),
        shards,
        checkpoints,
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn kinesis_stream_passes_the_stream_suite() {
    for shards in [1, 4] {
        stream_suite::append_and_read_back(&stream(shards).await).await;
        stream_suite::start_positions(&stream(shards).await).await;
        stream_suite::checkpoints(&stream(shards).await).await;
    }
}

#[tokio::test]
async fn sns_notifications_reach_a_subscribed_queue_with_their_attributes() {
    use wenu_alarms::{Change, Notification, Notifier, Severity, Transition};
    let config = moto().sdk_config().await;
    let notifier = wenu_aws::SnsNotifier::create(aws_sdk_sns::Client::new(&config), &unique_name("alarms"))
        .await
        .unwrap();
    let sqs = aws_sdk_sqs::Client::new(&config);
    let queue_url =
        sqs.create_queue().queue_name(unique_name("operators")).send().await.unwrap().queue_url.unwrap();
    let queue_arn = sqs
        .get_queue_attributes()
        .queue_url(&queue_url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap()[&aws_sdk_sqs::types::QueueAttributeName::QueueArn]
        .clone();
    aws_sdk_sns::Client::new(&config)
        .subscribe()
        .topic_arn(notifier.topic_arn())
        .protocol("sqs")
        .endpoint(queue_arn)
        .send()
        .await
        .unwrap();

    let notification = Notification {
        id: "acme:rule-1:dev-1:temp:1000:raised".into(),
        alarm: "acme:rule-1:dev-1:temp".into(),
        transition: Transition {
            company: "acme".into(),
            rule: "rule-1".into(),
            rule_name: "too hot".into(),
            severity: Severity::Critical,
            condition: "above 80".into(),
            device: "dev-1".into(),
            sensor: Some("temp".into()),
            change: Change::Raised,
            ts: 1_000,
            raised_at: 1_000,
            value: Some(93.5),
            detail: "93.5 degC > 80".into(),
        },
        acknowledged: None,
    };
    let targets = notifier.targets(&notification).await.unwrap();
    assert_eq!(targets, [notifier.topic_arn().to_owned()]);
    notifier.send(&targets[0], &notification).await.unwrap();

    let received =
        sqs.receive_message().queue_url(&queue_url).max_number_of_messages(10).send().await.unwrap();
    let messages = received.messages();
    assert_eq!(messages.len(), 1);
    let envelope: serde_json::Value = serde_json::from_str(messages[0].body().unwrap()).unwrap();
    let delivered: Notification = serde_json::from_str(envelope["Message"].as_str().unwrap()).unwrap();
    assert_eq!(delivered, notification);
    assert_eq!(envelope["MessageAttributes"]["company"]["Value"], "acme");
    assert_eq!(envelope["MessageAttributes"]["severity"]["Value"], "critical");
    assert_eq!(envelope["MessageAttributes"]["change"]["Value"], "raised");
    assert!(envelope["Subject"].as_str().unwrap().starts_with("[critical] too hot on dev-1"));
}
