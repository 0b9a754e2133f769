//! Supervised consumers over the real SQLite log: a stage that panics is
//! built again and resumes from its checkpoint, one that keeps failing is
//! reported as failing until it recovers, and lag is measured while a stage
//! is stuck.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use support::append;
use tokio::sync::watch;
use wenu_core::stream::Record;
use wenu_local::{ConsumerStore, SqliteStream, StreamOptions};
use wenu_runtime::{BatchLimits, ConsumerOptions, ConsumerState, Health, Stage, Supervisor, starting_with};

/// What the scripted stage does on its next calls, and what it produced.
#[derive(Default)]
struct Script {
    panics: usize,
    failures: usize,
    stuck: bool,
    /// Positions of the records of every batch that succeeded, in order.
    outputs: Vec<u64>,
}

struct Scripted(Arc<Mutex<Script>>);

#[derive(Debug, thiserror::Error)]
#[error("injected failure")]
struct Injected;

#[async_trait]
impl Stage for Scripted {
    type Error = Injected;

    fn restore(&mut self, _state: Option<&[u8]>) -> Result<(), Injected> {
        Ok(())
    }

    async fn process(&mut self, records: &[Record]) -> Result<Vec<u8>, Injected> {
        let stuck = {
            let mut script = self.0.lock().unwrap();
            if script.panics > 0 {
                script.panics -= 1;
                drop(script);
                panic!("injected panic");
            }
            if script.failures > 0 {
                script.failures -= 1;
                return Err(Injected);
            }
            script.stuck
        };
        if stuck {
            std::future::pending::<()>().await;
        }
        self.0.lock().unwrap().outputs.extend(records.iter().map(|r| r.position.as_u64().unwrap()));
        Ok(Vec::new())
    }
}

struct Setup {
    _dir: tempfile::TempDir,
    stream: SqliteStream,
    supervisor: Supervisor,
    script: Arc<Mutex<Script>>,
}

fn setup(script: Script) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let stream = SqliteStream::open(&dir.path().join("stream.db"), StreamOptions::default()).unwrap();
    let store = ConsumerStore::open(&dir.path().join("consumers.db")).unwrap();
    let mut supervisor = Supervisor::new(Arc::new(stream.clone()), Arc::new(store));
    supervisor.lag_every = Duration::from_millis(10);
    supervisor.first_backoff = Duration::from_millis(10);
    Setup { _dir: dir, stream, supervisor, script: Arc::new(Mutex::new(script)) }
}

/// Starts the consumer "test"; its stage is built by `build`.
fn run(
    setup: &Setup,
    build: impl FnMut() -> Result<Scripted, String> + Send + 'static,
) -> (watch::Sender<bool>, tokio::task::JoinHandle<()>) {
    let (stop, stopped) = watch::channel(false);
    let mut options =
        ConsumerOptions::new("test", BatchLimits { max_bytes: usize::MAX, max_age: Duration::ZERO });
    options.max_backoff = Duration::from_millis(20);
    (stop, tokio::spawn(setup.supervisor.clone().run(options, stopped, build)))
}

/// Waits until `check` holds; a test that never gets there fails after a minute.
async fn until(what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..6_000 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("never happened: {what}");
}

fn health_of(health: &Health) -> wenu_runtime::ConsumerHealth {
    health.snapshot().get("test").cloned().unwrap_or_default()
}

#[tokio::test]
async fn a_stage_that_panics_is_built_again_and_resumes_from_its_checkpoint() {
    let s = setup(Script { panics: 1, ..Script::default() });
    append(&s.stream, 10).await;
    let (script, mut builds) = (s.script.clone(), 0);
    let (stop, task) = run(&s, move || {
        builds += 1;
        // The second build fails too, as a stage whose registry is away would.
        if builds == 2 { Err("registry unreachable".into()) } else { Ok(Scripted(script.clone())) }
    });
    until("every record processed", || s.script.lock().unwrap().outputs.len() == 10).await;
    assert_eq!(s.script.lock().unwrap().outputs, (1..=10).collect::<Vec<_>>(), "each record once, in order");
    let health = s.supervisor.health();
    let status = health_of(&health);
    assert_eq!(status.restarts, 2, "after the panic and after the failed build");
    assert_eq!(status.state, ConsumerState::Running);
    assert!(status.last_error.unwrap().contains("registry unreachable"));

    stop.send(true).unwrap();
    task.await.unwrap();
    assert_eq!(health_of(&health).state, ConsumerState::Stopped);
    assert_eq!(s.stream.consumer_checkpoint("test").await.unwrap().and_then(|p| p.as_u64()), Some(10));
}

#[tokio::test]
async fn a_stage_that_keeps_failing_is_reported_until_it_recovers() {
    let s = setup(Script { failures: 6, ..Script::default() });
    append(&s.stream, 5).await;
    let script = s.script.clone();
    let health = s.supervisor.health();
    let (stop, task) = run(&s, move || Ok(Scripted(script.clone())));
    until("reported failing", || health_of(&health).state == ConsumerState::Failing).await;
    assert!(!health.is_ok());
    until("recovered", || health_of(&health).state == ConsumerState::Running).await;
    assert!(health.is_ok());
    assert_eq!(s.script.lock().unwrap().outputs, (1..=5).collect::<Vec<_>>());
    assert_eq!(health_of(&health).restarts, 0, "retried in place; the stage was never rebuilt");
    stop.send(true).unwrap();
    task.await.unwrap();
}

#[tokio::test]
async fn lag_is_measured_on_a_timer_while_a_stage_is_stuck() {
    let s = setup(Script { stuck: true, ..Script::default() });
    append(&s.stream, 7).await;
    let script = s.script.clone();
    let health = s.supervisor.health();
    let first = Scripted(script.clone());
    let (_stop, task) = run(&s, starting_with(first, move || Ok(Scripted(script.clone()))));
    until("lag measured", || health_of(&health).lag == Some(7)).await;
    append(&s.stream, 3).await;
    until("lag follows the stream", || health_of(&health).lag == Some(10)).await;
    task.abort();
}
