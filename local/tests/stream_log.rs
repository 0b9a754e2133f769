//! The embedded stream log against its contract: order, durability across
//! reopen, checkpoints, replay by time, retention and group commit.

use std::time::Duration;

use bytes::Bytes;
use wenu_core::stream::{NewRecord, Position, StartAt, Stream};
use wenu_local::{SqliteStream, StreamOptions};

fn record(device: &str, received_at: i64, payload: &[u8]) -> NewRecord {
    NewRecord {
        device_id: device.into(),
        topic: format!("wenu/{device}/telemetry"),
        received_at,
        payload: Bytes::copy_from_slice(payload),
    }
}

fn open(dir: &tempfile::TempDir) -> SqliteStream {
    SqliteStream::open(&dir.path().join("stream.db"), StreamOptions::default()).unwrap()
}

#[tokio::test]
async fn appends_are_ordered_and_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let stream = open(&dir);
    let first = stream.append(vec![record("a", 1, b"1"), record("b", 2, b"2")]).await.unwrap();
    let second = stream.append(vec![record("a", 3, b"3")]).await.unwrap();
    assert!(first[0] < first[1] && first[1] < second[0]);
    drop(stream);

    let stream = open(&dir);
    let all = stream.read(StartAt::Oldest, 10).await.unwrap();
    let payloads: Vec<_> = all.iter().map(|r| &r.payload[..]).collect();
    assert_eq!(payloads, [b"1", b"2", b"3"]);
    assert_eq!(all[1].device_id, "b");
    let from_second = stream.read(StartAt::Position(first[1]), 10).await.unwrap();
    assert_eq!(from_second.len(), 2);
    let info = stream.info().await.unwrap();
    assert_eq!((info.records, info.oldest, info.newest), (3, Some(first[0]), Some(second[0])));
}

#[tokio::test]
async fn replays_from_a_timestamp() {
    let dir = tempfile::tempdir().unwrap();
    let stream = open(&dir);
    stream.append((0..10).map(|i| record("a", i * 1000, &[i as u8])).collect()).await.unwrap();
    let from_5s = stream.read(StartAt::Timestamp(5000), 100).await.unwrap();
    assert_eq!(from_5s.first().unwrap().payload[..], [5]);
    assert_eq!(from_5s.len(), 5);
    assert!(stream.read(StartAt::Timestamp(99_000), 100).await.unwrap().is_empty());
}

#[tokio::test]
async fn checkpoints_are_named_and_durable() {
    let dir = tempfile::tempdir().unwrap();
    let stream = open(&dir);
    assert_eq!(stream.consumer_checkpoint("lake").await.unwrap(), None);
    stream.commit_consumer_checkpoint("lake", Position::new(7)).await.unwrap();
    stream.commit_consumer_checkpoint("alarms", Position::new(3)).await.unwrap();
    stream.commit_consumer_checkpoint("lake", Position::new(9)).await.unwrap();
    drop(stream);
    let stream = open(&dir);
    assert_eq!(stream.consumer_checkpoint("lake").await.unwrap(), Some(Position::new(9)));
    assert_eq!(
        stream.checkpoints().await.unwrap(),
        [("alarms".into(), Position::new(3)), ("lake".into(), Position::new(9))]
    );
}

#[tokio::test]
async fn retention_deletes_old_records_and_counts_unconsumed_ones() {
    let dir = tempfile::tempdir().unwrap();
    let options = StreamOptions { retention: Duration::from_secs(3600), ..Default::default() };
    let stream = SqliteStream::open(&dir.path().join("stream.db"), options).unwrap();
    let hour = 3_600_000;
    // Ten records an hour apart: received at 0h, 1h, … 9h.
    let positions = stream.append((0..10).map(|i| record("a", i * hour, b"x")).collect()).await.unwrap();
    // The slow consumer has processed the first three records only.
    stream.commit_consumer_checkpoint("slow", positions[2]).await.unwrap();
    stream.commit_consumer_checkpoint("fast", positions[9]).await.unwrap();

    // At 9h30 with 1 h retention, everything received before 8h30 goes: 0h…8h.
    let report = stream.sweep_retention(9 * hour + hour / 2).await.unwrap();
    assert_eq!(report.deleted, 9);
    // "slow" had not reached 3h…8h: six records forced out.
    assert_eq!(report.deleted_unconsumed, 6);
    let left = stream.read(StartAt::Oldest, 100).await.unwrap();
    assert_eq!(left.iter().map(|r| r.position).collect::<Vec<_>>(), [positions[9]]);

    // A second sweep at the same time finds nothing more, and totals persist.
    assert_eq!(stream.sweep_retention(9 * hour + hour / 2).await.unwrap().deleted, 0);
    let totals = SqliteStream::inspect(&dir.path().join("stream.db")).unwrap().retention_totals;
    assert_eq!((totals.deleted, totals.deleted_unconsumed), (9, 6));
}

#[tokio::test]
async fn positions_are_never_reused_after_everything_expires() {
    let dir = tempfile::tempdir().unwrap();
    let stream = open(&dir);
    let old = stream.append(vec![record("a", 0, b"x")]).await.unwrap();
    stream.sweep_retention(i64::MAX / 2).await.unwrap();
    let new = stream.append(vec![record("a", 1, b"y")]).await.unwrap();
    assert!(new[0] > old[0]);
}

#[tokio::test]
async fn concurrent_appends_share_commits() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stream.db");
    let stream = SqliteStream::open(&path, StreamOptions::default()).unwrap();
    stream.append(vec![record("warm-up", 0, b"x")]).await.unwrap();
    let before = stream.commits();

    // Hold SQLite's write lock from another connection so the writer stalls on
    // its next commit while 200 appends queue up behind it.
    let blocker = rusqlite::Connection::open(&path).unwrap();
    blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
    let polled = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let appends = futures::future::join_all((0..200).map(|i| {
        let (stream, polled) = (stream.clone(), polled.clone());
        async move {
            polled.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            stream.append(vec![record("a", i, b"x")]).await.unwrap()
        }
    }));
    // Poll until every append is queued for (or held by) the stalled writer.
    // An append's first poll queues it: `join_all` polls at most 32 futures
    // per poll, and tokio lets a task complete at most 128 channel sends per
    // turn of the runtime (its coop budget), so poll once per turn.
    let mut appends = std::pin::pin!(appends);
    while polled.load(std::sync::atomic::Ordering::SeqCst) < 200 {
        assert!(futures::poll!(&mut appends).is_pending());
        tokio::task::yield_now().await;
    }
    blocker.execute_batch("COMMIT").unwrap();
    appends.await;
    // The group the writer held while stalled, then everything queued behind
    // it: two commits, not 200. A send still in flight when the writer looks
    // can land in a group of its own, so a few more are allowed.
    let commits = stream.commits() - before;
    assert!(commits <= 5, "200 appends took {commits} commits");
    assert_eq!(stream.info().await.unwrap().records, 201);
}

#[tokio::test]
async fn a_full_log_refuses_appends_and_recovers_after_retention() {
    let dir = tempfile::tempdir().unwrap();
    let options = StreamOptions {
        max_bytes: Some(256 * 1024),
        retention: Duration::from_secs(1),
        ..Default::default()
    };
    let stream = SqliteStream::open(&dir.path().join("stream.db"), options).unwrap();
    let payload = vec![0u8; 4096];
    let mut stored = 0;
    let err = loop {
        match stream.append(vec![record("a", 0, &payload)]).await {
            Ok(_) => stored += 1,
            Err(err) => break err,
        }
        assert!(stored < 1000, "the size cap never applied");
    };
    assert!(matches!(err, wenu_core::Error::Stream { retryable: true, .. }), "{err}");
    // Nothing acknowledged was lost, and the refused append left no trace.
    assert_eq!(stream.info().await.unwrap().records, stored);

    // Retention frees pages inside the file; appends work again.
    assert_eq!(stream.sweep_retention(10_000).await.unwrap().deleted, stored);
    stream.append(vec![record("a", 10_000, &payload)]).await.unwrap();
}
