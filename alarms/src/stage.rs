//! Alarms as a stream consumer with its own checkpoint: decrypt each batch,
//! normalise its readings like enrich does, run the rules, record the
//! transitions and wake the dispatcher. Nothing here waits on the lake,
//! enrich or stats, and they never wait on it.
//!
//! Detector state lives in the table store (the alarms Lambda has no memory
//! between invocations); this stage caches it and writes what a batch
//! changed together with the batch's transitions. A batch redone after a
//! crash finds its readings already applied (each (rule, series) skips
//! readings not newer than the last it evaluated) and its transitions
//! already recorded, so it adds nothing. The checkpoint carries no state.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use tokio::sync::Notify;
use wenu_core::failpoint;
use wenu_core::keyring::Keyring;
use wenu_core::stream::Record;
use wenu_decrypt::{DecodeLimits, DecodedMessage, Decoder, Directory, KeySource, Outcome, SequenceTracker};
use wenu_enrich::{Catalog, CatalogSource, normalise};

use crate::clock::Clock;
use crate::engine::{RuleSet, SeriesState, Transition, apply_message, apply_reading, check_silence};
use crate::lifecycle::{Change, Phase};
use crate::rule::Rule;
use crate::store::{AlarmStore, StateKey};
use crate::{Error, Result};

/// Where the stage gets the rules from, and learns that they changed.
#[async_trait]
pub trait RuleSource: Send + Sync + 'static {
    /// The rules when something changed since the last call (always on the
    /// first call), `None` when nothing did.
    async fn refresh(&mut self) -> Result<Option<Vec<Rule>>, String>;
}

/// Rules that never change: for tests and benchmarks.
pub struct FixedRules(Option<Vec<Rule>>);

impl FixedRules {
    pub fn new(rules: Vec<Rule>) -> Self {
        FixedRules(Some(rules))
    }
}

#[async_trait]
impl RuleSource for FixedRules {
    async fn refresh(&mut self) -> Result<Option<Vec<Rule>>, String> {
        Ok(self.0.take())
    }
}

/// Running totals, for progress views and tests.
#[derive(Debug, Default)]
pub struct AlarmTotals {
    pub readings: AtomicU64,
    pub transitions: AtomicU64,
    pub raised: AtomicU64,
}

#[derive(Clone)]
struct Cached {
    state: SeriesState,
    /// The stored item's version; `None` if not stored yet.
    version: Option<u64>,
    dirty: bool,
}

/// One input to a (rule, series).
enum Event {
    Reading { sensor: String, ts: i64, value: f64 },
    Message { seq: u64, ts: i64, arrival: i64 },
}

pub struct AlarmStage {
    keys: Box<dyn KeySource>,
    catalogs: Box<dyn CatalogSource>,
    rule_source: Box<dyn RuleSource>,
    /// `None` only while a batch is being decoded on a blocking thread.
    decoder: Option<Decoder>,
    directory: Directory,
    catalog: Arc<Catalog>,
    rules: Arc<RuleSet>,
    store: AlarmStore,
    states: HashMap<StateKey, Cached>,
    wake: Arc<Notify>,
    clock: Clock,
    /// When this process began watching: silence counts from here at the earliest.
    watching_since: i64,
    totals: Arc<AlarmTotals>,
    refreshed_at: Option<tokio::time::Instant>,
}

/// Batches up to this many records are decoded on the stage's own thread.
const INLINE_DECODE: usize = 64;

/// How long a change of rules, devices or keys may take to reach the alarms.
pub const REFRESH_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

impl AlarmStage {
    /// `wake` is the dispatcher's: notified whenever transitions were recorded.
    pub fn new(
        keys: Box<dyn KeySource>,
        catalogs: Box<dyn CatalogSource>,
        rule_source: Box<dyn RuleSource>,
        store: AlarmStore,
        wake: Arc<Notify>,
        limits: DecodeLimits,
    ) -> Self {
        let decoder =
            Decoder::new(Keyring::default(), Directory::default(), limits, SequenceTracker::default());
        let clock = Clock::start();
        AlarmStage {
            keys,
            catalogs,
            rule_source,
            decoder: Some(decoder),
            directory: Directory::default(),
            catalog: Arc::default(),
            rules: Arc::default(),
            store,
            states: HashMap::new(),
            wake,
            clock,
            watching_since: clock.now_ms(),
            totals: Arc::default(),
            refreshed_at: None,
        }
    }

    /// Counts into `totals`: a stage built again after a failure keeps
    /// counting where the one before it stopped.
    pub fn with_totals(mut self, totals: Arc<AlarmTotals>) -> Self {
        self.totals = totals;
        self
    }

    pub fn totals(&self) -> Arc<AlarmTotals> {
        self.totals.clone()
    }

    /// Takes in newer registry snapshots (looking at most every
    /// [`REFRESH_EVERY`]: three registry queries per batch would be most of
    /// a batch's time); with new rules or devices, makes sure every device a
    /// missing-data rule watches has a state to time.
    async fn refresh(&mut self) -> Result<()> {
        let now = tokio::time::Instant::now();
        if self.refreshed_at.is_some_and(|at| now - at < REFRESH_EVERY) {
            return Ok(());
        }
        let reloaded = self.reload().await;
        // A failed look is tried again at the next batch.
        self.refreshed_at = reloaded.is_ok().then_some(now);
        reloaded
    }

    async fn reload(&mut self) -> Result<()> {
        let mut watch_list_changed = false;
        if let Some((keyring, directory)) = self.keys.refresh().await.map_err(Error::Registry)? {
            self.directory = directory.clone();
            self.decoder.as_mut().expect("decoder present between batches").refresh(keyring, directory);
            watch_list_changed = true;
        }
        if let Some(catalog) = self.catalogs.refresh().await.map_err(Error::Registry)? {
            self.catalog = Arc::new(catalog);
        }
        if let Some(rules) = self.rule_source.refresh().await.map_err(Error::Registry)? {
            let rules = RuleSet::new(rules);
            tracing::info!(rules = rules.len(), "alarm rules loaded");
            self.rules = Arc::new(rules);
            watch_list_changed = true;
        }
        if watch_list_changed {
            self.watch_devices().await?;
            self.clear_orphans().await?;
        }
        Ok(())
    }

    /// Clears the alarms whose rule was deleted or disabled (also while the
    /// alarms were down): nothing would ever clear them otherwise.
    async fn clear_orphans(&mut self) -> Result<()> {
        let rules = self.rules.clone();
        let live: HashSet<(&str, &str)> = rules.iter().map(|r| (r.company.as_str(), r.id.as_str())).collect();
        let companies: BTreeSet<String> = self.directory.iter().map(|(_, d)| d.company.clone()).collect();
        let now = self.clock.now_ms();
        let (mut transitions, mut undo) = (Vec::new(), HashMap::new());
        for company in companies {
            for alarm in self.store.active(&company).await? {
                if live.contains(&(alarm.company.as_str(), alarm.rule.as_str())) {
                    continue;
                }
                let key = StateKey {
                    company: alarm.company.clone(),
                    rule: alarm.rule.clone(),
                    device: alarm.device.clone(),
                    sensor: alarm.sensor.clone(),
                };
                self.load(std::iter::once(&key)).await?;
                let cached = self.states.get_mut(&key).expect("loaded above");
                undo.insert(key.clone(), cached.clone());
                cached.state.phase = Phase::Normal;
                cached.dirty = true;
                transitions.push(Transition {
                    company: alarm.company,
                    rule: alarm.rule,
                    rule_name: alarm.rule_name,
                    severity: alarm.severity,
                    condition: alarm.condition,
                    device: alarm.device,
                    sensor: alarm.sensor,
                    change: Change::Cleared,
                    ts: now.max(alarm.raised_at),
                    raised_at: alarm.raised_at,
                    value: None,
                    detail: "the rule was deleted or disabled".into(),
                });
            }
        }
        self.commit(transitions, undo, false).await.map(drop)
    }

    async fn watch_devices(&mut self) -> Result<()> {
        let rules = self.rules.clone();
        for rule in rules.iter().filter(|r| r.condition.is_device_level()) {
            for (key, state, version) in self.store.states_of_rule(&rule.company, &rule.id).await? {
                self.states.entry(key).or_insert(Cached { state, version: Some(version), dirty: false });
            }
            let devices = self.directory.iter().filter(|(id, entry)| {
                entry.enabled
                    && entry.company == rule.company
                    && rule.device.as_deref().is_none_or(|d| d == *id)
            });
            for (device, _) in devices {
                let key = StateKey {
                    company: rule.company.clone(),
                    rule: rule.id.clone(),
                    device: device.to_owned(),
                    sensor: None,
                };
                self.states.entry(key).or_insert(Cached {
                    state: SeriesState::default(),
                    version: None,
                    dirty: false,
                });
            }
        }
        Ok(())
    }

    /// Runs one batch; its transitions are recorded when it returns. A
    /// batch that fails leaves nothing behind, so that it can come again:
    /// not its states (undone in [`commit`](Self::commit)), nor its
    /// sequence numbers (which would make its messages duplicates).
    pub async fn evaluate(&mut self, records: &[Record]) -> Result<Vec<Transition>> {
        let decoder = self.decoder.as_ref().expect("decoder present between batches");
        let sequences = decoder.sequences().snapshot(records.iter().map(|r| r.device_id.as_str()));
        let result = self.evaluate_once(records).await;
        if result.is_err()
            && let Some(decoder) = self.decoder.as_mut()
        {
            decoder.sequences_mut().restore(sequences);
        }
        result
    }

    async fn evaluate_once(&mut self, records: &[Record]) -> Result<Vec<Transition>> {
        failpoint::hit("alarms.evaluate").await;
        self.refresh().await?;
        if self.rules.is_empty() || records.is_empty() {
            return Ok(Vec::new());
        }
        let messages = self.decode(records).await?;
        let rules = self.rules.clone();
        let mut events: Vec<(&Rule, StateKey, Event)> = Vec::new();
        for message in &messages {
            let key = |rule: &Rule, sensor: Option<&str>| StateKey {
                company: rule.company.clone(),
                rule: rule.id.clone(),
                device: message.device_id.to_string(),
                sensor: sensor.map(str::to_owned),
            };
            for rule in rules.for_device(&message.company, &message.device_id) {
                let event = Event::Message { seq: message.seq, ts: message.ts, arrival: message.received_at };
                events.push((rule, key(rule, None), event));
            }
            for reading in &message.readings {
                // Out-of-range values are kept out of the stats but are
                // exactly what an alarm is for; only non-numbers are skipped.
                let Ok(normal) = normalise(message, reading, &self.catalog) else { continue };
                if !normal.value.is_finite() {
                    continue;
                }
                for rule in rules.for_reading(&message.company, &message.device_id, &reading.sensor) {
                    let event = Event::Reading {
                        sensor: reading.sensor.to_string(),
                        ts: normal.ts,
                        value: normal.value,
                    };
                    events.push((rule, key(rule, Some(&reading.sensor)), event));
                }
            }
        }
        self.load(events.iter().map(|(_, key, _)| key)).await?;
        let mut transitions = Vec::new();
        let mut undo = HashMap::new();
        for (rule, key, event) in events {
            let cached = self.states.get_mut(&key).expect("loaded above");
            let before = cached.state.clone();
            undo.entry(key.clone()).or_insert_with(|| cached.clone());
            let transition = match event {
                Event::Reading { sensor, ts, value } => {
                    self.totals.readings.fetch_add(1, Ordering::Relaxed);
                    apply_reading(rule, &mut cached.state, &key.device, &sensor, ts, value)
                }
                Event::Message { seq, ts, arrival } => {
                    apply_message(rule, &mut cached.state, &key.device, seq, ts, arrival)
                }
            };
            cached.dirty |= cached.state != before;
            transitions.extend(transition);
        }
        self.commit(transitions, undo, false).await
    }

    /// Fires missing-data rules for devices that went silent.
    pub async fn check_timers(&mut self) -> Result<Vec<Transition>> {
        self.refresh().await?;
        let now = self.clock.now_ms();
        let rules = self.rules.clone();
        let by_id: HashMap<(&str, &str), &Rule> = rules
            .iter()
            .filter(|r| r.condition.is_device_level())
            .map(|r| ((r.company.as_str(), r.id.as_str()), r))
            .collect();
        if by_id.is_empty() {
            return Ok(Vec::new());
        }
        let (mut transitions, mut undo) = (Vec::new(), HashMap::new());
        for (key, cached) in self.states.iter_mut() {
            let Some(rule) = by_id.get(&(key.company.as_str(), key.rule.as_str())) else { continue };
            let before = cached.clone();
            if let Some(t) = check_silence(rule, &mut cached.state, &key.device, now, self.watching_since) {
                undo.insert(key.clone(), before);
                cached.dirty = true;
                transitions.push(t);
            }
        }
        transitions.sort_by_key(|t| t.ts);
        self.commit(transitions, undo, false).await
    }

    async fn decode(&mut self, records: &[Record]) -> Result<Vec<DecodedMessage>> {
        let accepted = |outcomes: Vec<Outcome>| {
            outcomes
                .into_iter()
                .filter_map(|outcome| match outcome {
                    Outcome::Accepted(message) => Some(message),
                    // The lake counts and quarantines these.
                    Outcome::Duplicate { .. } | Outcome::Rejected(_) => None,
                })
                .collect::<Vec<_>>()
        };
        let decoder = self.decoder.as_mut().expect("decoder present between batches");
        // A live trickle is decoded right here (a few microseconds a record):
        // handing it to the thread pool the lake's big batches keep busy would
        // be most of an alarm's latency. A backlog goes to all cores.
        if records.len() <= INLINE_DECODE {
            return Ok(accepted(decoder.decode_here(records)));
        }
        let mut decoder = self.decoder.take().expect("decoder present between batches");
        let owned = records.to_vec();
        let (decoder, outcomes) = tokio::task::spawn_blocking(move || {
            let outcomes = decoder.decode_all(&owned);
            (decoder, outcomes)
        })
        .await
        .map_err(|e| Error::Task(e.to_string()))?;
        self.decoder = Some(decoder);
        Ok(accepted(outcomes))
    }

    /// Brings the states of `keys` into the cache.
    async fn load<'a>(&mut self, keys: impl Iterator<Item = &'a StateKey>) -> Result<()> {
        let missing: Vec<StateKey> = keys
            .filter(|k| !self.states.contains_key(*k))
            .cloned()
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let loaded = self.store.load_states(&missing).await?;
        for (key, stored) in missing.into_iter().zip(loaded) {
            let cached = match stored {
                Some((state, version)) => Cached { state, version: Some(version), dirty: false },
                None => Cached { state: SeriesState::default(), version: None, dirty: false },
            };
            self.states.insert(key, cached);
        }
        Ok(())
    }

    /// Writes the transitions with every changed state in one transaction.
    /// Changed states alone wait (`force` writes them: before a checkpoint),
    /// so a live trickle of readings that change nothing costs no write:
    /// the records after the checkpoint are redone after a crash anyway. On
    /// failure, `undo` puts back the states as they were before the batch,
    /// so a retry of the batch starts from there.
    async fn commit(
        &mut self,
        transitions: Vec<Transition>,
        undo: HashMap<StateKey, Cached>,
        force: bool,
    ) -> Result<Vec<Transition>> {
        if transitions.is_empty() && !force {
            return Ok(transitions);
        }
        let dirty: BTreeMap<StateKey, (SeriesState, Option<u64>)> = self
            .states
            .iter()
            .filter(|(_, c)| c.dirty)
            .map(|(k, c)| (k.clone(), (c.state.clone(), c.version)))
            .collect();
        if dirty.is_empty() && transitions.is_empty() {
            return Ok(transitions);
        }
        let states: Vec<_> = dirty.into_iter().map(|(k, (s, v))| (k, s, v)).collect();
        match self.store.record(&transitions, &states, self.clock.now_ms()).await {
            Ok(fresh) => {
                // Recorded, not yet notified: where the crash test kills the process.
                failpoint::hit("alarms.after_record").await;
                for (key, _, version) in &states {
                    let cached = self.states.get_mut(key).expect("cached");
                    cached.version = Some(version.map_or(1, |v| v + 1));
                    cached.dirty = false;
                }
                if !fresh.is_empty() {
                    self.wake.notify_one();
                }
                let raised = transitions.iter().filter(|t| t.change == Change::Raised).count();
                self.totals.transitions.fetch_add(transitions.len() as u64, Ordering::Relaxed);
                self.totals.raised.fetch_add(raised as u64, Ordering::Relaxed);
                for t in &transitions {
                    metrics::counter!("wenu_alarm_transitions_total", "change" => t.change.as_str(), "condition" => t.condition.clone())
                        .increment(1);
                }
                Ok(transitions)
            }
            Err(Error::Store(wenu_core::Error::ConditionFailed(why))) => {
                // Another instance wrote these states since they were cached
                // (on AWS each shard's function instance caches, and any
                // instance's timers look at every watched device): forget them,
                // so the retry works from what is stored.
                for key in undo.keys().chain(states.iter().map(|(key, _, _)| key)) {
                    self.states.remove(key);
                }
                Err(Error::Store(wenu_core::Error::ConditionFailed(why)))
            }
            Err(err) => {
                self.states.extend(undo);
                Err(err)
            }
        }
    }
}

#[async_trait]
impl wenu_runtime::Stage for AlarmStage {
    type Error = Error;

    /// The table store holds the state, loaded as needed; a failed batch
    /// has already undone itself.
    fn restore(&mut self, _state: Option<&[u8]>) -> Result<()> {
        Ok(())
    }

    async fn process(&mut self, records: &[Record]) -> Result<Vec<u8>> {
        self.evaluate(records).await?;
        Ok(Vec::new())
    }

    async fn tick(&mut self) -> Result<()> {
        self.check_timers().await.map(drop)
    }

    /// Detector states must be stored before the checkpoint passes the
    /// readings that changed them.
    async fn before_checkpoint(&mut self) -> Result<()> {
        self.commit(Vec::new(), HashMap::new(), true).await.map(drop)
    }
}
