//! The AWS adapters' own retries, under throttling that moto cannot
//! produce: the throttling proxy fails a share of each batch call's entries
//! (and the first of every other call) for the first calls. Everything must
//! still arrive, and arrive once.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use wenu_aws::{DynamoTable, KinesisStream, SqsQueue};
use wenu_core::queue::{NewMessage, Queue};
use wenu_core::stream::{NewRecord, Stream};
use wenu_core::table::{Expect, ItemKey, TableStore};
use wenu_tests::moto::{moto, sdk_config_at, unique_name};
use wenu_tests::stream_conformance::read_everything;
use wenu_tests::throttling_proxy::ThrottlingProxy;

#[tokio::test]
async fn throttled_put_records_are_sent_again_and_land_once() {
    let proxy = ThrottlingProxy::start(&moto().endpoint, 3).await;
    let direct = moto().sdk_config().await;
    let throttled = sdk_config_at(&proxy.endpoint).await;
    let checkpoints = Arc::new(
        DynamoTable::create(aws_sdk_dynamodb::Client::new(&direct), &unique_name("cp")).await.unwrap(),
    );
    let name = unique_name("readings");
    let stream =
        KinesisStream::create(aws_sdk_kinesis::Client::new(&throttled), &name, 2, checkpoints.clone())
            .await
            .unwrap();
    let records: Vec<NewRecord> = (0..50)
        .map(|i| NewRecord {
            device_id: format!("dev-{}", i % 5),
            topic: String::new(),
            received_at: 0,
            payload: Bytes::from(format!("reading {i}")),
        })
        .collect();
    let positions = stream.append(records).await.unwrap();
    assert_eq!(positions.len(), 50);
    assert!(
        proxy.calls("PutRecords") >= 4,
        "refused records were sent again: {} calls",
        proxy.calls("PutRecords")
    );

    let unthrottled = KinesisStream::new(aws_sdk_kinesis::Client::new(&direct), &name, checkpoints);
    let mut counts: BTreeMap<Bytes, u32> = BTreeMap::new();
    for record in read_everything(&unthrottled, 1000).await.into_values().flatten() {
        *counts.entry(record.payload).or_default() += 1;
    }
    assert_eq!(counts.len(), 50, "every record arrived");
    assert!(counts.values().all(|&n| n == 1), "none twice");
}

#[tokio::test]
async fn throttled_message_batches_are_sent_again_and_land_once() {
    let proxy = ThrottlingProxy::start(&moto().endpoint, 3).await;
    let name = unique_name("jobs");
    let direct =
        SqsQueue::create(aws_sdk_sqs::Client::new(&moto().sdk_config().await), &name, 5).await.unwrap();
    let throttled = SqsQueue::new(
        aws_sdk_sqs::Client::new(&sdk_config_at(&proxy.endpoint).await),
        direct.queue_url(),
        direct.dead_letter_url(),
    );
    let messages: Vec<NewMessage> = (0..25)
        .map(|i| NewMessage { group: format!("g{}", i % 3), body: Bytes::from(format!("job {i}")) })
        .collect();
    throttled.send_batch(messages).await.unwrap();
    assert!(proxy.calls("SendMessageBatch") > 3, "failed entries were sent again");

    let mut counts: BTreeMap<Bytes, u32> = BTreeMap::new();
    loop {
        let batch = direct.receive(10, std::time::Duration::from_secs(300)).await.unwrap();
        if batch.is_empty() {
            break;
        }
        for message in batch {
            direct.delete(&message.receipt).await.unwrap();
            *counts.entry(message.body).or_default() += 1;
        }
    }
    assert_eq!(counts.len(), 25, "every message arrived");
    assert!(counts.values().all(|&n| n == 1), "none twice");
}

#[tokio::test]
async fn unprocessed_keys_are_asked_for_again() {
    let proxy = ThrottlingProxy::start(&moto().endpoint, 3).await;
    let name = unique_name("stats");
    let direct =
        DynamoTable::create(aws_sdk_dynamodb::Client::new(&moto().sdk_config().await), &name).await.unwrap();
    let keys: Vec<ItemKey> =
        (0..150).map(|i| ItemKey { partition: format!("p{}", i % 4), sort: i }).collect();
    for key in &keys {
        direct.put(key, Bytes::from(key.sort.to_string()), None, Expect::Absent).await.unwrap();
    }
    let throttled =
        DynamoTable::new(aws_sdk_dynamodb::Client::new(&sdk_config_at(&proxy.endpoint).await), &name);
    let got = throttled.get_many(&keys).await.unwrap();
    assert!(
        got.iter()
            .zip(&keys)
            .all(|(item, key)| item.as_ref().is_some_and(|i| i.value == key.sort.to_string()))
    );
    assert!(proxy.calls("BatchGetItem") > 2, "unprocessed keys were asked for again");
    // A whole call refused with ThrottlingException is the SDK's to retry.
    assert_eq!(throttled.get(&keys[0]).await.unwrap().unwrap().version, 1);
    assert!(proxy.calls("GetItem") >= 2);
}
