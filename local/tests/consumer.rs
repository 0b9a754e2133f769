//! The consumer runtime over the real SQLite log: checkpoints with state,
//! redo of an interrupted flush over the same range, retries, flush on shutdown.

mod support;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use support::append;
use tokio::sync::{mpsc, watch};
use wenu_core::stream::{Position, Record};
use wenu_local::{ConsumerStore, SqliteStream, StreamOptions};
use wenu_runtime::{BatchLimits, Checkpoints, Consumer, ConsumerOptions};

/// Sends each batch's positions to the test; its state is the number of
/// records it has processed. It fails the first `fail_first` attempts after
/// having moved its state on, as a stage that crashed halfway would.
struct Recorder {
    processed: u64,
    fail_first: usize,
    batches: mpsc::UnboundedSender<Vec<u64>>,
}

#[derive(Debug, thiserror::Error)]
#[error("injected failure")]
struct Injected;

#[async_trait]
impl wenu_runtime::Stage for Recorder {
    type Error = Injected;

    fn restore(&mut self, state: Option<&[u8]>) -> Result<(), Injected> {
        self.processed = state.map_or(0, |s| u64::from_be_bytes(s.try_into().unwrap()));
        Ok(())
    }

    async fn process(&mut self, records: &[Record]) -> Result<Vec<u8>, Injected> {
        self.processed += records.len() as u64;
        if self.fail_first > 0 {
            self.fail_first -= 1;
            return Err(Injected);
        }
        self.batches.send(records.iter().map(|r| r.position.as_u64().unwrap()).collect()).unwrap();
        Ok(self.processed.to_be_bytes().to_vec())
    }
}

struct Setup {
    _dir: tempfile::TempDir,
    stream: Arc<SqliteStream>,
    store: ConsumerStore,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let stream =
        Arc::new(SqliteStream::open(&dir.path().join("stream.db"), StreamOptions::default()).unwrap());
    let store = ConsumerStore::open(&dir.path().join("consumers.db")).unwrap();
    Setup { _dir: dir, stream, store }
}

fn start(
    setup: &Setup,
    batch: BatchLimits,
    fail_first: usize,
) -> (watch::Sender<bool>, mpsc::UnboundedReceiver<Vec<u64>>, tokio::task::JoinHandle<Recorder>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let (stop, stopped) = watch::channel(false);
    let stage = Recorder { processed: 0, fail_first, batches: tx };
    let consumer = Consumer::new(
        setup.stream.clone(),
        Arc::new(setup.store.clone()),
        ConsumerOptions::new("test", batch),
        stage,
    );
    let task = tokio::spawn(async move { consumer.run(stopped).await.unwrap() });
    (stop, rx, task)
}

const EVERY_READ: BatchLimits = BatchLimits { max_bytes: usize::MAX, max_age: Duration::ZERO };

#[tokio::test]
async fn commits_position_and_state_and_resumes_after_them() {
    let s = setup();
    append(&s.stream, 10).await;
    let (stop, mut batches, task) = start(&s, EVERY_READ, 0);
    assert_eq!(batches.recv().await.unwrap(), (1..=10).collect::<Vec<_>>());
    stop.send(true).unwrap();
    assert_eq!(task.await.unwrap().processed, 10);
    let saved = s.store.load("test").await.unwrap();
    assert_eq!((saved.position, saved.pending), (Some(Position::new(10)), None));
    assert_eq!(
        s.stream.consumer_checkpoint("test").await.unwrap(),
        Some(Position::new(10)),
        "mirrored for retention"
    );

    append(&s.stream, 3).await;
    let (stop, mut batches, task) = start(&s, EVERY_READ, 0);
    assert_eq!(batches.recv().await.unwrap(), vec![11, 12, 13], "nothing before the checkpoint again");
    stop.send(true).unwrap();
    assert_eq!(task.await.unwrap().processed, 13, "state restored, then moved on");
}

#[tokio::test]
async fn an_interrupted_flush_is_redone_over_exactly_its_range() {
    let s = setup();
    append(&s.stream, 20).await;
    s.store.commit("test", Position::new(5), 5u64.to_be_bytes().to_vec()).await.unwrap();
    // The process died while flushing 6..=12; 13..=20 arrived meanwhile.
    s.store.begin_flush("test", Position::new(6), Position::new(12)).await.unwrap();
    let (stop, mut batches, task) = start(&s, EVERY_READ, 0);
    assert_eq!(batches.recv().await.unwrap(), (6..=12).collect::<Vec<_>>());
    assert_eq!(batches.recv().await.unwrap(), (13..=20).collect::<Vec<_>>());
    stop.send(true).unwrap();
    assert_eq!(task.await.unwrap().processed, 20);
}

#[tokio::test]
async fn a_failing_batch_is_retried_from_the_saved_state() {
    let s = setup();
    append(&s.stream, 4).await;
    let (stop, mut batches, task) = start(&s, EVERY_READ, 2);
    assert_eq!(batches.recv().await.unwrap(), vec![1, 2, 3, 4]);
    stop.send(true).unwrap();
    assert_eq!(task.await.unwrap().processed, 4, "the failed attempts' progress was rolled back");
}

#[tokio::test]
async fn shutdown_flushes_a_batch_that_is_not_due() {
    let s = setup();
    append(&s.stream, 3).await;
    let (stop, mut batches, task) = start(&s, BatchLimits::default(), 0);
    // The batch would be held for 60 s; the consumer reads once, sees the
    // shutdown, and flushes at once.
    stop.send(true).unwrap();
    let stage = task.await.unwrap();
    assert_eq!(batches.recv().await.unwrap(), vec![1, 2, 3]);
    assert_eq!(stage.processed, 3);
}
