//! The stream port's conformance suite, written once and run against every
//! backend (the embedded log, Kinesis on moto). Each check takes a fresh,
//! empty stream; the checks hold for one shard or many.

use std::collections::BTreeMap;

use bytes::Bytes;
use wenu_core::stream::{NewRecord, Position, Record, ShardId, StartAt, Stream};
use wenu_core::topic::telemetry_topic;

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

fn record(device: &str, n: u32) -> NewRecord {
    NewRecord {
        device_id: device.into(),
        topic: telemetry_topic(device),
        received_at: now_ms(),
        payload: Bytes::from(format!("{device}:{n}").into_bytes()),
    }
}

/// Every record of every shard, reading `chunk` at a time from the oldest.
pub async fn read_everything(stream: &dyn Stream, chunk: usize) -> BTreeMap<ShardId, Vec<Record>> {
    let mut all = BTreeMap::new();
    for shard in stream.shards().await.unwrap() {
        let mut records: Vec<Record> = Vec::new();
        let mut start = StartAt::Oldest;
        loop {
            let page = stream.read_shard(&shard.id, start, chunk).await.unwrap();
            assert!(page.len() <= chunk, "at most the records asked for");
            let Some(last) = page.last() else { break };
            start = StartAt::After(last.position);
            records.extend(page);
        }
        all.insert(shard.id, records);
    }
    all
}

/// Appended records come back once each, whole, in order per device and
/// per shard, at the positions the append returned.
pub async fn append_and_read_back(stream: &dyn Stream) {
    let before = now_ms();
    let sent: Vec<NewRecord> = (0..30).map(|n| record(&format!("dev-{}", n % 4), n)).collect();
    let positions = stream.append(sent.clone()).await.unwrap();
    assert_eq!(positions.len(), sent.len());
    let shards = read_everything(stream, 7).await;
    let mut seen = Vec::new();
    for records in shards.values() {
        assert!(records.windows(2).all(|w| w[0].position < w[1].position), "a shard reads in position order");
        seen.extend(records.iter().cloned());
    }
    assert_eq!(seen.len(), sent.len(), "each record once");
    let by_payload: BTreeMap<Bytes, &Record> = seen.iter().map(|r| (r.payload.clone(), r)).collect();
    for (sent, position) in sent.iter().zip(&positions) {
        let got = by_payload[&sent.payload];
        assert_eq!((&got.device_id, &got.topic, got.position), (&sent.device_id, &sent.topic, *position));
        assert!(
            (before - 60_000..now_ms() + 60_000).contains(&got.received_at),
            "received_at is the time of receipt"
        );
    }
    // A device's records share a shard, in the order they were sent.
    for device in ["dev-0", "dev-1", "dev-2", "dev-3"] {
        let shards_with_device: Vec<_> =
            shards.iter().filter(|(_, records)| records.iter().any(|r| r.device_id == device)).collect();
        assert_eq!(shards_with_device.len(), 1, "{device} is on one shard");
        let payloads: Vec<_> = shards_with_device[0]
            .1
            .iter()
            .filter(|r| r.device_id == device)
            .map(|r| r.payload.clone())
            .collect();
        let want: Vec<_> = sent.iter().filter(|r| r.device_id == device).map(|r| r.payload.clone()).collect();
        assert_eq!(payloads, want);
    }
}

/// A read starts at a position, right after one, or at a point in time.
pub async fn start_positions(stream: &dyn Stream) {
    stream.append((0..6).map(|n| record("dev-start", n)).collect()).await.unwrap();
    let shards = read_everything(stream, 100).await;
    let (shard, records) = shards.iter().find(|(_, r)| !r.is_empty()).expect("a shard holds the records");
    let third = &records[2];
    let at = stream.read_shard(shard, StartAt::Position(third.position), 100).await.unwrap();
    assert_eq!(at.first().map(|r| r.position), Some(third.position));
    assert_eq!(at.len(), records.len() - 2);
    let after = stream.read_shard(shard, StartAt::After(third.position), 100).await.unwrap();
    assert_eq!(after.first().map(|r| &r.payload), Some(&records[3].payload));
    let after_last =
        stream.read_shard(shard, StartAt::After(records.last().unwrap().position), 100).await.unwrap();
    assert!(after_last.is_empty(), "nothing after the newest record");
    let since_start = stream.read_shard(shard, StartAt::Timestamp(0), 100).await.unwrap();
    assert_eq!(since_start.len(), records.len());
    let future = stream.read_shard(shard, StartAt::Timestamp(now_ms() + 3_600_000), 100).await.unwrap();
    assert!(future.is_empty(), "nothing received in the future");
}

/// Checkpoints are kept per consumer and shard, and move when committed.
pub async fn checkpoints(stream: &dyn Stream) {
    let positions = stream.append((0..3).map(|n| record("dev-cp", n)).collect()).await.unwrap();
    let shards = read_everything(stream, 100).await;
    let (shard, records) = shards
        .iter()
        .find(|(_, r)| r.iter().any(|r| r.device_id == "dev-cp"))
        .expect("a shard holds the records");
    assert_eq!(stream.checkpoint("lake", shard).await.unwrap(), None);
    stream.commit_checkpoint("lake", shard, positions[0]).await.unwrap();
    stream.commit_checkpoint("alarms", shard, positions[2]).await.unwrap();
    stream.commit_checkpoint("lake", shard, positions[1]).await.unwrap();
    assert_eq!(stream.checkpoint("lake", shard).await.unwrap(), Some(positions[1]));
    assert_eq!(stream.checkpoint("alarms", shard).await.unwrap(), Some(positions[2]));
    assert_eq!(stream.checkpoint("stats", shard).await.unwrap(), None);
    // Resuming right after a checkpoint reads the rest of the shard.
    let rest = stream.read_shard(shard, StartAt::After(positions[1]), 100).await.unwrap();
    let want: Vec<Position> = records.iter().map(|r| r.position).filter(|p| *p > positions[1]).collect();
    assert_eq!(rest.iter().map(|r| r.position).collect::<Vec<_>>(), want);
}
