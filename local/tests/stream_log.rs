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
async fn retention_deletes_old_records_every_consumer_has_read_and_keeps_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let options = StreamOptions {
        retention: Duration::from_secs(3600),
        consumers: vec!["slow".into(), "fast".into()],
        ..Default::default()
    };
    let stream = SqliteStream::open(&dir.path().join("stream.db"), options).unwrap();
    let hour = 3_600_000;
    // Ten records an hour apart: received at 0h, 1h, … 9h.
    let positions = stream.append((0..10).map(|i| record("a", i * hour, b"x")).collect()).await.unwrap();
    // "fast" has processed everything, "slow" the first three records only.
    stream.commit_consumer_checkpoint("slow", positions[2]).await.unwrap();
    stream.commit_consumer_checkpoint("fast", positions[9]).await.unwrap();

    // At 9h30 with 1 h retention, 0h…8h are past retention; only 0h…2h were read by both.
    let report = stream.sweep_retention(9 * hour + hour / 2).await.unwrap();
    assert_eq!((report.deleted, report.deleted_unconsumed), (3, 0));
    let left = stream.read(StartAt::Oldest, 100).await.unwrap();
    assert_eq!(left.iter().map(|r| r.position).collect::<Vec<_>>(), positions[3..]);

    // Even a year later, what "slow" has not read stays until it reads it.
    assert_eq!(stream.sweep_retention(9 * hour + 365 * 24 * hour).await.unwrap().deleted, 0);
    stream.commit_consumer_checkpoint("slow", positions[6]).await.unwrap();
    assert_eq!(stream.sweep_retention(9 * hour + hour / 2).await.unwrap().deleted, 4);
    let totals = SqliteStream::inspect(&dir.path().join("stream.db")).unwrap().retention_totals;
    assert_eq!((totals.deleted, totals.deleted_unconsumed), (7, 0));
}

#[tokio::test]
async fn a_listed_consumer_that_never_checkpointed_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let options = StreamOptions {
        retention: Duration::from_secs(1),
        consumers: vec!["lake".into(), "alarms".into()],
        ..Default::default()
    };
    let stream = SqliteStream::open(&dir.path().join("stream.db"), options).unwrap();
    let positions = stream.append((0..5).map(|i| record("a", i, b"x")).collect()).await.unwrap();
    stream.commit_consumer_checkpoint("alarms", positions[4]).await.unwrap();
    // A forward clock jump of ten years deletes nothing the lake has not read.
    assert_eq!(stream.sweep_retention(10 * 365 * 86_400_000).await.unwrap().deleted, 0);
    assert_eq!(stream.info().await.unwrap().records, 5);
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
        consumers: vec!["lake".into()],
        ..Default::default()
    };
    let stream = SqliteStream::open(&dir.path().join("stream.db"), options).unwrap();
    let stored = fill(&stream).await;
    // Nothing acknowledged was lost, and the refused append left no trace.
    assert_eq!(stream.info().await.unwrap().records, stored);

    // The lake has read nothing: retention keeps it all, appends stay refused.
    assert_eq!(stream.sweep_retention(10_000).await.unwrap().deleted, 0);
    assert!(stream.append(vec![record("a", 10_000, &[0; 4096])]).await.is_err());

    // Once the lake has read it, retention frees pages inside the file; appends work again.
    stream.commit_consumer_checkpoint("lake", stream.info().await.unwrap().newest.unwrap()).await.unwrap();
    assert_eq!(stream.sweep_retention(10_000).await.unwrap().deleted, stored);
    stream.append(vec![record("a", 10_000, &[0; 4096])]).await.unwrap();
}

#[tokio::test]
async fn at_its_cap_a_log_told_to_delete_the_oldest_unread_records_and_counts_them() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stream.db");
    let options = StreamOptions {
        max_bytes: Some(256 * 1024),
        consumers: vec!["lake".into()],
        delete_unread_at_cap: true,
        ..Default::default()
    };
    let stream = SqliteStream::open(&path, options).unwrap();
    let stored = fill(&stream).await;
    // Well within retention, and unread: only the cap forces them out.
    let report = stream.sweep_retention(0).await.unwrap();
    assert!(report.deleted > 0 && report.deleted < stored, "{report:?} of {stored}");
    assert_eq!(report.deleted_unconsumed, report.deleted, "every one of them unread");
    let left = stream.read(StartAt::Oldest, 1000).await.unwrap();
    assert_eq!(left.len() as u64, stored - report.deleted);
    assert_eq!(left[0].position, Position::new(report.deleted + 1), "the oldest went first");
    stream.append(vec![record("a", 1, &[0; 4096])]).await.unwrap();
    let totals = SqliteStream::inspect(&path).unwrap().retention_totals;
    assert_eq!(totals.deleted_unconsumed, report.deleted);
}

/// Appends 4 KiB records until the log refuses one as full; returns how many it took.
async fn fill(stream: &SqliteStream) -> u64 {
    let payload = vec![0u8; 4096];
    let mut stored = 0;
    loop {
        match stream.append(vec![record("a", 0, &payload)]).await {
            Ok(_) => stored += 1,
            Err(err) => {
                assert!(matches!(err, wenu_core::Error::Stream { retryable: true, .. }), "{err}");
                return stored;
            }
        }
        assert!(stored < 1000, "the size cap never applied");
    }
}
