//! The stats function, fed the event SQS sends from the FIFO jobs queue
//! (`fixtures/sqs-jobs-event.json`, its bodies replaced by real jobs).

use std::sync::Arc;

use aws_lambda_events::event::sqs::SqsEvent;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::Value;
use wenu_core::clock::ManualClock;
use wenu_lambdas::sqs::handle_jobs;
use wenu_stats::worker::TableHandler;
use wenu_stats::{Job, Point, Resolution, SeriesKey, read_series};

/// 2027-01-15T08:00:00Z, which the stats table takes for now: the minute
/// buckets expire after their retention, whatever today is.
const TS: i64 = 1_800_000_000_000;

fn job(device: &str, seq: u64) -> Job {
    Job {
        series: SeriesKey { company: "acme".into(), device: device.into(), sensor: "temp-1".into() },
        points: vec![Point { seq, ts: TS, value: 20.0 + seq as f64 }],
        retention: Default::default(),
    }
}

fn event() -> SqsEvent {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/sqs-jobs-event.json"))
            .unwrap();
    let mut json: Value = serde_json::from_str(&text).unwrap();
    let records = json["Records"].as_array_mut().unwrap();
    records[0]["body"] = Value::String(String::from_utf8(job("dev-1", 1).to_bytes()).unwrap());
    // records[1] keeps its malformed body.
    records[2]["body"] = Value::String(String::from_utf8(job("dev-2", 2).to_bytes()).unwrap());
    records[3]["body"] = Value::String(BASE64.encode(job("dev-3", 1).to_bytes()));
    serde_json::from_value(json).unwrap()
}

async fn count(table: &dyn wenu_core::table::TableStore, device: &str) -> u64 {
    let series = SeriesKey { company: "acme".into(), device: device.into(), sensor: "temp-1".into() };
    read_series(table, &series, Resolution::Minute, 0, i64::MAX)
        .await
        .unwrap()
        .iter()
        .map(|(_, r)| r.count)
        .sum()
}

#[tokio::test]
async fn failed_jobs_and_the_rest_of_their_group_are_reported_for_redelivery() {
    let dir = tempfile::tempdir().unwrap();
    let table = Arc::new(
        wenu_local::SqliteTable::open(&dir.path().join("stats.db")).unwrap().with_clock(ManualClock::at(TS)),
    );
    let handler = TableHandler { table: table.clone() };
    let input = event();
    let ids: Vec<String> = input.records.iter().map(|r| r.message_id.clone().unwrap()).collect();

    let response = handle_jobs(&handler, input).await;
    let failed: Vec<&str> = response.batch_item_failures.iter().map(|f| f.item_identifier.as_str()).collect();
    assert_eq!(failed, [ids[1].as_str(), ids[2].as_str()], "the bad job, and the later job of its series");
    assert_eq!(count(table.as_ref(), "dev-1").await, 1);
    assert_eq!(count(table.as_ref(), "dev-3").await, 1, "a base64 body is decoded");

    // SQS delivers the failed ones again; nothing is counted twice.
    let mut again = event();
    again.records.retain(|r| r.message_id.as_deref() == Some(ids[2].as_str()));
    assert!(handle_jobs(&handler, again).await.batch_item_failures.is_empty());
    assert_eq!(count(table.as_ref(), "dev-2").await, 1);
    let mut all_again = event();
    all_again.records.remove(1);
    assert!(handle_jobs(&handler, all_again).await.batch_item_failures.is_empty());
    for device in ["dev-1", "dev-2", "dev-3"] {
        assert_eq!(count(table.as_ref(), device).await, 1, "{device} once");
    }
    let json = serde_json::to_value(handle_jobs(&handler, event()).await).unwrap();
    assert_eq!(json["batchItemFailures"][0]["itemIdentifier"], ids[1].as_str());
}
