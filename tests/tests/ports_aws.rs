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
    queue_suite::batch_delete(&queue().await).await;
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
        escalation: None,
        escalated: Vec::new(),
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

/// After a reshard the parent shard is closed and listed with its children,
/// and every record, before and after, is read once.
#[tokio::test]
async fn a_resharded_stream_lists_parents_and_loses_nothing() {
    use bytes::Bytes;
    use wenu_core::stream::{NewRecord, Stream};
    let stream = stream(1).await;
    let batch = |from: u32| -> Vec<NewRecord> {
        (from..from + 20)
            .map(|i| NewRecord {
                device_id: format!("dev-{}", i % 6),
                topic: String::new(),
                received_at: 0,
                payload: Bytes::from(format!("r{i}")),
            })
            .collect()
    };
    stream.append(batch(0)).await.unwrap();
    let client = aws_sdk_kinesis::Client::new(&moto().sdk_config().await);
    client
        .update_shard_count()
        .stream_name(stream.name())
        .target_shard_count(2)
        .scaling_type(aws_sdk_kinesis::types::ScalingType::UniformScaling)
        .send()
        .await
        .unwrap();
    stream.wait_until_active().await.unwrap();
    stream.append(batch(20)).await.unwrap();

    let shards = stream.shards().await.unwrap();
    let closed: Vec<_> = shards.iter().filter(|s| s.closed).collect();
    assert_eq!(closed.len(), 1, "the parent is closed: {shards:?}");
    let children: Vec<_> = shards.iter().filter(|s| s.parents.contains(&closed[0].id)).collect();
    assert!(!children.is_empty(), "its children name it: {shards:?}");
    let mut payloads: Vec<Bytes> = stream_suite::read_everything(&stream, 1000)
        .await
        .into_values()
        .flatten()
        .map(|r| r.payload)
        .collect();
    payloads.sort();
    let mut want: Vec<Bytes> = (0..40).map(|i| Bytes::from(format!("r{i}"))).collect();
    want.sort();
    assert_eq!(payloads, want);
}

/// The lake's object store on S3 passes object_store's own integration
/// suite, the one every object_store backend passes (and the embedded
/// lake's local directory does too, in `ports_local.rs`).
#[tokio::test]
async fn s3_passes_object_stores_own_suite() {
    use object_store::integration;
    let bucket = unique_name("lake");
    wenu_tests::moto::create_bucket(&bucket).await;
    let store = wenu_aws::s3_store(&moto().sdk_config().await, &bucket).unwrap();
    integration::put_get_delete_list(&store).await;
    integration::get_opts(&store).await;
    integration::put_opts(&store, true).await;
    integration::list_uses_directories_correctly(&store).await;
    integration::list_with_delimiter(&store).await;
    integration::rename_and_copy(&store).await;
    // Not `copy_if_not_exists`: S3 has no conditional copy (object_store
    // would need a DynamoDB lock for it), and the lake never copies.
    integration::stream_get(&store).await;
}

#[tokio::test]
async fn secrets_manager_passes_the_keyring_suite() {
    use std::time::Duration;
    use wenu_aws::SecretsKeyring;
    let client = aws_sdk_secretsmanager::Client::new(&moto().sdk_config().await);
    let prefix = format!("wenu/{}/device-keys", unique_name("suite"));
    let mut writer = SecretsKeyring::new(client.clone(), &prefix, Duration::ZERO);
    let mut reader = SecretsKeyring::new(client.clone(), &prefix, Duration::ZERO);
    wenu_tests::keyring_conformance::provisioned_and_rotated_keys_reach_a_reader(&mut writer, &mut reader)
        .await;
    // 300 devices do not fit one secret of 16 KiB: the import spreads them.
    let prefix = format!("wenu/{}/device-keys", unique_name("import"));
    let mut writer = SecretsKeyring::new(client.clone(), &prefix, Duration::ZERO).with_fill_bytes(16 << 10);
    let mut reader = SecretsKeyring::new(client.clone(), &prefix, Duration::ZERO);
    wenu_tests::keyring_conformance::an_imported_fleet_reaches_a_reader(&mut writer, &mut reader).await;
    let prefix = format!("wenu/{}/device-keys", unique_name("concurrent"));
    let handle = || SecretsKeyring::new(client.clone(), &prefix, Duration::ZERO).with_fill_bytes(2 << 10);
    let (mut first, mut second, mut reader) = (handle(), handle(), handle());
    wenu_tests::keyring_conformance::concurrent_writers_lose_no_key(&mut first, &mut second, &mut reader)
        .await;
}

/// With a KMS key, the secrets the keyring creates are encrypted with it,
/// so the key's policy decides who may read device keys. (moto records the
/// key; it does not enforce key policies.)
#[tokio::test]
async fn device_key_secrets_are_encrypted_with_the_given_kms_key() {
    use std::time::Duration;
    use wenu_aws::SecretsKeyring;
    use wenu_core::keyring::KeyringStore;
    let client = aws_sdk_secretsmanager::Client::new(&moto().sdk_config().await);
    let prefix = format!("wenu/{}/device-keys", unique_name("kms"));
    let mut writer = SecretsKeyring::new(client.clone(), &prefix, Duration::ZERO)
        .with_kms_key(Some("alias/wenu-test-device-keys".into()));
    writer.add_key("dev-1").await.unwrap();
    let secrets = client.list_secrets().send().await.unwrap();
    let ours: Vec<_> =
        secrets.secret_list().iter().filter(|s| s.name().is_some_and(|n| n.starts_with(&prefix))).collect();
    assert_eq!(ours.len(), 1);
    let described = client.describe_secret().secret_id(ours[0].arn().unwrap()).send().await.unwrap();
    assert_eq!(described.kms_key_id(), Some("alias/wenu-test-device-keys"));

    // An empty setting means Secrets Manager's own key.
    let prefix = format!("wenu/{}/device-keys", unique_name("default-key"));
    let mut writer =
        SecretsKeyring::new(client.clone(), &prefix, Duration::ZERO).with_kms_key(Some(String::new()));
    writer.add_key("dev-1").await.unwrap();
    let secrets = client.list_secrets().send().await.unwrap();
    let ours =
        secrets.secret_list().iter().find(|s| s.name().is_some_and(|n| n.starts_with(&prefix))).unwrap();
    assert_eq!(ours.kms_key_id(), None);
}

/// Device keys spread over secrets of bounded size, and a reader fetches
/// again only the secrets that changed, no more often than asked.
#[tokio::test]
async fn device_keys_spread_over_secrets_and_are_fetched_when_changed() {
    use std::time::Duration;
    use wenu_aws::SecretsKeyring;
    use wenu_core::keyring::KeyringStore;
    let client = aws_sdk_secretsmanager::Client::new(&moto().sdk_config().await);
    let prefix = format!("wenu/{}/device-keys", unique_name("test"));
    let mut writer = SecretsKeyring::new(client.clone(), &prefix, Duration::ZERO).with_fill_bytes(1024);
    let mut keys = Vec::new();
    for i in 0..30 {
        keys.push(writer.add_key(&format!("dev-{i}")).await.unwrap());
    }
    let secrets = client.list_secrets().send().await.unwrap();
    let ours =
        secrets.secret_list().iter().filter(|s| s.name().is_some_and(|n| n.starts_with(&prefix))).count();
    assert!(ours >= 3, "30 devices over 1 KiB secrets take several: {ours}");

    let mut reader = SecretsKeyring::new(client.clone(), &prefix, Duration::from_secs(3600));
    let keyring = reader.changed().await.unwrap().expect("the first call loads everything");
    assert_eq!(keyring.device_count(), 30);
    for (i, added) in keys.iter().enumerate() {
        assert_eq!(keyring.decryption_key(&format!("dev-{i}"), added.id).unwrap(), &added.key);
    }
    writer.add_key("dev-3").await.unwrap();
    assert!(reader.changed().await.unwrap().is_none(), "nothing is listed again before refresh_every");
}
