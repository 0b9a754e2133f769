//! Alarm state in the table store (DynamoDB on AWS, the embedded table on
//! one machine): detector state per (rule, series), the alarms themselves,
//! their history, and the outbox of notifications still to deliver.
//!
//! | item | partition | sort key |
//! |---|---|---|
//! | detector state | `alarm-state#{company}#{rule}` | hash of (device, sensor) |
//! | alarm (current status) | `alarm-active#{company}` | alarm id = hash of (rule, device, sensor) |
//! | transition (history) | `alarm-history#{company}` | `ts << 20 \| hash of (rule, series, change)` |
//! | notification to deliver | `alarm-outbox` | the transition's key |
//! | notification given up on | `alarm-dead#{company}` | the transition's key |
//!
//! A transition's key is a function of (rule, series, change, event time),
//! so recording the same transition twice — a batch redone after a crash,
//! a record delivered again — finds it already there and adds nothing: no
//! second outbox entry, no second notification. Transitions, the alarms
//! they change and the detector states are written in one transaction.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use wenu_core::table::{Expect, Item, ItemKey, TableStore, Write, query_all};

use crate::engine::{SeriesState, Transition};
use crate::lifecycle::Change;
use crate::rule::Severity;
use crate::{Error, Result};

pub const OUTBOX: &str = "alarm-outbox";
const DAY_SECS: i64 = 24 * 3600;

/// Which (rule, series) a detector state belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StateKey {
    pub company: String,
    pub rule: String,
    pub device: String,
    /// `None` for device-level rules.
    pub sensor: Option<String>,
}

impl StateKey {
    fn item_key(&self) -> ItemKey {
        ItemKey {
            partition: format!("alarm-state#{}#{}", self.company, self.rule),
            sort: hash63(&[&self.device, self.sensor.as_deref().unwrap_or("")]),
        }
    }

    /// The key of the alarm this (rule, series) raises.
    pub fn alarm_key(&self) -> ItemKey {
        ItemKey {
            partition: format!("alarm-active#{}", self.company),
            sort: hash63(&[&self.rule, &self.device, self.sensor.as_deref().unwrap_or("")]),
        }
    }
}

/// A stable 63-bit hash (the first bytes of SHA-256): sort keys must be
/// the same on every machine and release.
fn hash63(parts: &[&str]) -> i64 {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part.as_bytes());
        hasher.update([0]);
    }
    let digest = hasher.finalize();
    (u64::from_be_bytes(digest[..8].try_into().expect("8 bytes")) >> 1) as i64
}

/// An operator's acknowledgement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Acknowledgement {
    pub at: i64,
    pub by: String,
    pub comment: String,
}

/// An alarm as operators see it: raised, acknowledged or (recently) cleared.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alarm {
    /// Stable for a (rule, series): the path segment of the API.
    pub id: String,
    pub company: String,
    pub rule: String,
    pub rule_name: String,
    pub severity: Severity,
    pub condition: String,
    pub device: String,
    pub sensor: Option<String>,
    /// `raised`, `acknowledged` or `cleared`.
    pub status: Change,
    pub raised_at: i64,
    pub cleared_at: Option<i64>,
    pub value: Option<f64>,
    pub detail: String,
    pub acknowledged: Option<Acknowledgement>,
    /// Escalation delays (seconds) it went through while raised.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub escalated: Vec<u32>,
}

/// One transition as notified and kept in the history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    /// Unique per transition: receivers deduplicate on it.
    pub id: String,
    /// The alarm it changes.
    pub alarm: String,
    #[serde(flatten)]
    pub transition: Transition,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub acknowledged: Option<Acknowledgement>,
    /// Set on an escalation: the raised alarm went unacknowledged this many
    /// seconds, and goes to the channels that escalate after that long.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub escalation: Option<u32>,
    /// The escalations the alarm went through before this transition (their
    /// channels hear how it ends).
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub escalated: Vec<u32>,
}

impl Notification {
    /// A channel's test message: an info-level raise of no rule, sent to
    /// that channel only.
    pub fn test(company: &str, actor: &str, now_ms: i64) -> Notification {
        Notification {
            id: format!("{company}-test-{now_ms:x}"),
            alarm: "test".into(),
            transition: Transition {
                company: company.to_owned(),
                rule: "test".into(),
                rule_name: "Test message".into(),
                severity: Severity::Info,
                condition: "test".into(),
                device: "-".into(),
                sensor: None,
                change: Change::Raised,
                ts: now_ms,
                raised_at: now_ms,
                value: None,
                detail: format!("A test message from Wenu, sent by {actor}: this channel works."),
            },
            acknowledged: None,
            escalation: None,
            escalated: Vec::new(),
        }
    }
}

/// Where one notification stands on one channel.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelProgress {
    pub attempts: u32,
    /// Unix ms before which it is not tried again.
    pub next_at: i64,
    pub delivered: bool,
    /// Given up on after too many attempts (a dead-letter record exists).
    pub dead: bool,
    pub last_error: Option<String>,
}

impl ChannelProgress {
    pub fn is_done(&self) -> bool {
        self.delivered || self.dead
    }
}

/// A notification waiting in the outbox, with its progress per channel
/// (`None` until the dispatcher resolved the channels it goes to).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutboxEntry {
    pub notification: Notification,
    pub channels: Option<BTreeMap<String, ChannelProgress>>,
}

/// A notification a channel never accepted, kept for inspection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    pub notification: Notification,
    pub channel: String,
    pub attempts: u32,
    pub error: String,
}

/// What became of an acknowledgement.
#[derive(Debug, Clone, PartialEq)]
pub enum AckOutcome {
    Acknowledged(Notification),
    AlreadyAcknowledged(Alarm),
    /// It cleared first.
    NotRaised(Alarm),
    Unknown,
}

/// The alarms' items in a table store.
#[derive(Clone)]
pub struct AlarmStore {
    table: Arc<dyn TableStore>,
    /// How long transitions (and dead letters) are kept.
    history_days: i64,
}

fn to_bytes<T: Serialize>(value: &T) -> Bytes {
    serde_json::to_vec(value).expect("alarm items serialize").into()
}

fn from_item<T: for<'de> Deserialize<'de>>(item: &Item) -> Result<T> {
    serde_json::from_slice(&item.value)
        .map_err(|e| Error::Corrupt(format!("{}#{}: {e}", item.key.partition, item.key.sort)))
}

/// Sort keys of transitions: event time in the high bits, so a range of
/// keys is a range of time.
fn time_key(ms: i64) -> i64 {
    ms.clamp(0, i64::MAX >> 20) << 20
}

fn transition_key(partition: String, t: &Transition, probe: i64) -> ItemKey {
    let hash =
        hash63(&[&t.company, &t.rule, &t.device, t.sensor.as_deref().unwrap_or(""), t.change.as_str()]);
    ItemKey { partition, sort: (time_key(t.ts) | (hash & 0xF_FFFF)) + probe }
}

fn same_transition(a: &Transition, b: &Transition) -> bool {
    (&a.company, &a.rule, &a.device, &a.sensor, a.change, a.ts)
        == (&b.company, &b.rule, &b.device, &b.sensor, b.change, b.ts)
}

impl AlarmStore {
    pub fn new(table: Arc<dyn TableStore>, history_days: u32) -> Self {
        AlarmStore { table, history_days: i64::from(history_days.max(1)) }
    }

    /// Detector states, in the order of `keys`, with their item versions.
    pub async fn load_states(&self, keys: &[StateKey]) -> Result<Vec<Option<(SeriesState, u64)>>> {
        let item_keys: Vec<ItemKey> = keys.iter().map(StateKey::item_key).collect();
        let items = self.table.get_many(&item_keys).await?;
        items
            .iter()
            .map(|item| {
                item.as_ref().map(|i| Ok((from_item::<StoredState>(i)?.state, i.version))).transpose()
            })
            .collect()
    }

    /// Every state of one rule: missing-data rules watch the devices they
    /// saw before a restart from the start.
    pub async fn states_of_rule(
        &self,
        company: &str,
        rule: &str,
    ) -> Result<Vec<(StateKey, SeriesState, u64)>> {
        let partition = format!("alarm-state#{company}#{rule}");
        let items = query_all(self.table.as_ref(), &partition, i64::MIN..i64::MAX).await?;
        items
            .iter()
            .map(|item| {
                let stored: StoredState = from_item(item)?;
                let key = StateKey {
                    company: company.to_owned(),
                    rule: rule.to_owned(),
                    device: stored.device,
                    sensor: stored.sensor,
                };
                Ok((key, stored.state, item.version))
            })
            .collect()
    }

    /// Records a batch's transitions and detector states in one
    /// transaction; returns the notifications of the transitions that were
    /// new (already recorded ones are skipped). `states` carry the version
    /// they were loaded at (`None`: new), so a concurrent writer makes the
    /// whole batch fail with `ConditionFailed` rather than be overwritten.
    pub async fn record(
        &self,
        transitions: &[Transition],
        states: &[(StateKey, SeriesState, Option<u64>)],
        now_ms: i64,
    ) -> Result<Vec<Notification>> {
        let mut writes = Vec::new();
        let mut fresh = Vec::new();
        if !transitions.is_empty() {
            let keys = self.history_keys(transitions).await?;
            let alarm_keys: Vec<ItemKey> = transitions.iter().map(|t| series_of(t).alarm_key()).collect();
            let mut alarms: HashMap<ItemKey, (Option<Alarm>, Option<u64>)> = HashMap::new();
            let current = self.table.get_many(&alarm_keys).await?;
            for (key, item) in alarm_keys.iter().zip(current) {
                let alarm = item.as_ref().map(from_item::<Alarm>).transpose()?;
                alarms.insert(key.clone(), (alarm, item.map(|i| i.version)));
            }
            let expires = Some(now_ms / 1000 + self.history_days * DAY_SECS);
            for ((transition, key), alarm_key) in transitions.iter().zip(keys).zip(&alarm_keys) {
                let Some(key) = key else { continue };
                let (alarm, _) = alarms.get_mut(alarm_key).expect("loaded above");
                let next = apply_to_alarm(alarm.take(), transition, alarm_key);
                let notification = Notification {
                    id: format!("{}-{:x}", transition.company, key.sort),
                    alarm: next.id.clone(),
                    transition: transition.clone(),
                    acknowledged: next.acknowledged.clone(),
                    escalation: None,
                    escalated: next.escalated.clone(),
                };
                *alarm = Some(next);
                writes.push(Write {
                    key: key.clone(),
                    value: to_bytes(&notification),
                    expires_at: expires,
                    expect: Expect::Absent,
                });
                writes.push(outbox_write(key.sort, &notification));
                fresh.push(notification);
            }
            for (key, (alarm, version)) in alarms {
                let Some(alarm) = alarm else { continue };
                // A cleared alarm stays visible for a day, then expires.
                let expires_at = alarm.cleared_at.map(|_| now_ms / 1000 + DAY_SECS);
                let expect = version.map_or(Expect::Absent, Expect::Version);
                writes.push(Write { key, value: to_bytes(&alarm), expires_at, expect });
            }
        }
        // States last: if a backend has to split the transaction, a partial
        // write leaves transitions recorded and states behind, and redoing
        // the batch recreates the same transitions, which are then skipped.
        for (key, state, version) in states {
            let stored =
                StoredState { device: key.device.clone(), sensor: key.sensor.clone(), state: state.clone() };
            let expect = version.map_or(Expect::Absent, Expect::Version);
            writes.push(Write { key: key.item_key(), value: to_bytes(&stored), expires_at: None, expect });
        }
        if !writes.is_empty() {
            self.table.transact(writes).await?;
        }
        Ok(fresh)
    }

    /// The key each transition's history item gets, or `None` when it is
    /// already recorded. Two different transitions with the same key (same
    /// millisecond, same 20-bit hash) are told apart by probing the next key.
    async fn history_keys(&self, transitions: &[Transition]) -> Result<Vec<Option<ItemKey>>> {
        let mut out = Vec::with_capacity(transitions.len());
        for t in transitions {
            let partition = format!("alarm-history#{}", t.company);
            let mut probe = 0;
            let key = loop {
                let key = transition_key(partition.clone(), t, probe);
                match self.table.get(&key).await? {
                    None => break Some(key),
                    Some(item) if same_transition(&from_item::<Notification>(&item)?.transition, t) => {
                        break None;
                    }
                    Some(_) => probe += 1,
                }
            };
            out.push(key);
        }
        Ok(out)
    }

    /// A company's alarms that are raised or acknowledged.
    pub async fn active(&self, company: &str) -> Result<Vec<Alarm>> {
        let items =
            query_all(self.table.as_ref(), &format!("alarm-active#{company}"), i64::MIN..i64::MAX).await?;
        let mut alarms: Vec<Alarm> = items.iter().map(from_item).collect::<Result<_>>()?;
        alarms.retain(|a| a.status != Change::Cleared);
        alarms.sort_by_key(|a| std::cmp::Reverse((a.severity, a.raised_at)));
        Ok(alarms)
    }

    pub async fn alarm(&self, company: &str, id: &str) -> Result<Option<Alarm>> {
        let Some(key) = alarm_item_key(company, id) else { return Ok(None) };
        self.table.get(&key).await?.as_ref().map(from_item).transpose()
    }

    /// Acknowledges a raised alarm, recording the transition and queueing
    /// its notification like any other.
    pub async fn acknowledge(
        &self,
        company: &str,
        id: &str,
        by: &str,
        comment: &str,
        now_ms: i64,
    ) -> Result<AckOutcome> {
        let Some(key) = alarm_item_key(company, id) else { return Ok(AckOutcome::Unknown) };
        loop {
            let Some(item) = self.table.get(&key).await? else { return Ok(AckOutcome::Unknown) };
            let mut alarm: Alarm = from_item(&item)?;
            match alarm.status {
                Change::Cleared => return Ok(AckOutcome::NotRaised(alarm)),
                Change::Acknowledged => return Ok(AckOutcome::AlreadyAcknowledged(alarm)),
                Change::Raised => {}
            }
            let ack = Acknowledgement { at: now_ms, by: by.to_owned(), comment: comment.to_owned() };
            alarm.status = Change::Acknowledged;
            alarm.acknowledged = Some(ack.clone());
            let transition = alarm.transition(Change::Acknowledged, now_ms, comment);
            let Some(history) = self.history_keys(std::slice::from_ref(&transition)).await?.pop().flatten()
            else {
                continue;
            };
            let notification = Notification {
                id: format!("{company}-{:x}", history.sort),
                alarm: alarm.id.clone(),
                transition,
                acknowledged: Some(ack),
                escalation: None,
                escalated: alarm.escalated.clone(),
            };
            let expires_at = Some(now_ms / 1000 + self.history_days * DAY_SECS);
            let writes = vec![
                Write {
                    key: history.clone(),
                    value: to_bytes(&notification),
                    expires_at,
                    expect: Expect::Absent,
                },
                outbox_write(history.sort, &notification),
                alarm_write(&key, &alarm, item.version),
            ];
            match self.table.transact(writes).await {
                Ok(()) => return Ok(AckOutcome::Acknowledged(notification)),
                // The alarm changed under us (cleared, or acknowledged by someone else): look again.
                Err(wenu_core::Error::ConditionFailed(_)) => continue,
                Err(err) => return Err(err.into()),
            }
        }
    }

    /// Queues the escalation of a raised, unacknowledged alarm to the
    /// channels that wait `after_secs`: once per alarm and delay, however
    /// often it is asked (the alarm records it in the same transaction), and
    /// never once the alarm is acknowledged or cleared.
    pub async fn escalate(
        &self,
        company: &str,
        id: &str,
        after_secs: u32,
        now_ms: i64,
    ) -> Result<Option<Notification>> {
        let Some(key) = alarm_item_key(company, id) else { return Ok(None) };
        let mut probe = 0;
        loop {
            let Some(item) = self.table.get(&key).await? else { return Ok(None) };
            let mut alarm: Alarm = from_item(&item)?;
            if alarm.status != Change::Raised || alarm.escalated.contains(&after_secs) {
                return Ok(None);
            }
            let detail = format!("{} (still raised, not acknowledged)", alarm.detail);
            let transition = alarm.transition(Change::Raised, now_ms, &detail);
            let hash = hash63(&[&alarm.id, &after_secs.to_string()]) & 0xF_FFFF;
            let sort = (time_key(now_ms) | hash) + probe;
            let notification = Notification {
                id: format!("{company}-{sort:x}"),
                alarm: alarm.id.clone(),
                transition,
                acknowledged: None,
                escalation: Some(after_secs),
                escalated: alarm.escalated.clone(),
            };
            alarm.escalated.push(after_secs);
            let writes = vec![outbox_write(sort, &notification), alarm_write(&key, &alarm, item.version)];
            match self.table.transact(writes).await {
                Ok(()) => return Ok(Some(notification)),
                Err(wenu_core::Error::ConditionFailed(_)) => {
                    // The alarm changed (look again), or another entry has the key (the next one).
                    if self.table.get(&key).await?.is_some_and(|now| now.version == item.version) {
                        probe += 1;
                    }
                }
                Err(err) => return Err(err.into()),
            }
        }
    }

    /// A company's transitions with event time in `range` (unix ms), oldest first.
    /// `cursor` is the `next` of the previous page, if any.
    pub async fn history(
        &self,
        company: &str,
        range: Range<i64>,
        limit: usize,
        cursor: Option<i64>,
    ) -> Result<(Vec<Notification>, Option<i64>)> {
        let start = cursor.unwrap_or(i64::MIN).max(time_key(range.start));
        let sort = start..time_key(range.end);
        let page = self.table.query(&format!("alarm-history#{company}"), sort, limit).await?;
        let notifications = page.items.iter().map(from_item).collect::<Result<_>>()?;
        Ok((notifications, page.next))
    }

    /// Every notification not yet delivered everywhere, oldest first.
    pub async fn outbox(&self) -> Result<Vec<(ItemKey, OutboxEntry, u64)>> {
        let items = query_all(self.table.as_ref(), OUTBOX, i64::MIN..i64::MAX).await?;
        items.iter().map(|item| Ok((item.key.clone(), from_item(item)?, item.version))).collect()
    }

    pub async fn outbox_entry(&self, key: &ItemKey) -> Result<Option<(OutboxEntry, u64)>> {
        self.table.get(key).await?.map(|item| Ok((from_item(&item)?, item.version))).transpose()
    }

    /// Saves an entry's progress; `ConditionFailed` if it changed meanwhile.
    pub async fn update_outbox(&self, key: &ItemKey, entry: &OutboxEntry, version: u64) -> Result<u64> {
        Ok(self.table.put(key, to_bytes(entry), None, Expect::Version(version)).await?)
    }

    /// Removes an entry every channel is done with.
    pub async fn remove_outbox(&self, key: &ItemKey) -> Result<()> {
        Ok(self.table.delete(key).await?)
    }

    /// Keeps a notification a channel never accepted.
    pub async fn dead_letter(&self, key: &ItemKey, letter: &DeadLetter, now_ms: i64) -> Result<()> {
        let dead = ItemKey {
            partition: format!("alarm-dead#{}", letter.notification.transition.company),
            sort: key.sort,
        };
        let expires_at = Some(now_ms / 1000 + self.history_days * DAY_SECS);
        // The channel is part of the key's meaning but not of the key: one
        // letter per (transition, channel), the later replacing the earlier.
        let sort = dead.sort ^ (hash63(&[&letter.channel]) & 0xFF);
        let key = ItemKey { sort, ..dead };
        self.table.put(&key, to_bytes(letter), expires_at, Expect::Anything).await?;
        Ok(())
    }

    /// A company's dead letters.
    pub async fn dead_letters(&self, company: &str) -> Result<Vec<DeadLetter>> {
        let items =
            query_all(self.table.as_ref(), &format!("alarm-dead#{company}"), i64::MIN..i64::MAX).await?;
        items.iter().map(from_item).collect()
    }
}

impl Alarm {
    /// A transition of this alarm at `ts`, outside the stream (an
    /// operator's acknowledgement, an escalation).
    fn transition(&self, change: Change, ts: i64, detail: &str) -> Transition {
        Transition {
            company: self.company.clone(),
            rule: self.rule.clone(),
            rule_name: self.rule_name.clone(),
            severity: self.severity,
            condition: self.condition.clone(),
            device: self.device.clone(),
            sensor: self.sensor.clone(),
            change,
            ts,
            raised_at: self.raised_at,
            value: self.value,
            detail: detail.to_owned(),
        }
    }
}

/// A new outbox entry for `notification`, at `sort`.
fn outbox_write(sort: i64, notification: &Notification) -> Write {
    let entry = OutboxEntry { notification: notification.clone(), channels: None };
    Write {
        key: ItemKey { partition: OUTBOX.into(), sort },
        value: to_bytes(&entry),
        expires_at: None,
        expect: Expect::Absent,
    }
}

/// `alarm` written back over the version it was read at.
fn alarm_write(key: &ItemKey, alarm: &Alarm, version: u64) -> Write {
    Write { key: key.clone(), value: to_bytes(alarm), expires_at: None, expect: Expect::Version(version) }
}

fn alarm_item_key(company: &str, id: &str) -> Option<ItemKey> {
    let sort = i64::from_str_radix(id, 16).ok().filter(|s| *s >= 0)?;
    Some(ItemKey { partition: format!("alarm-active#{company}"), sort })
}

fn series_of(t: &Transition) -> StateKey {
    StateKey {
        company: t.company.clone(),
        rule: t.rule.clone(),
        device: t.device.clone(),
        sensor: t.sensor.clone(),
    }
}

/// The alarm after `transition`.
fn apply_to_alarm(alarm: Option<Alarm>, t: &Transition, key: &ItemKey) -> Alarm {
    match (t.change, alarm) {
        (Change::Cleared, Some(mut alarm)) => {
            alarm.status = Change::Cleared;
            alarm.cleared_at = Some(t.ts);
            alarm
        }
        (Change::Acknowledged, Some(mut alarm)) => {
            alarm.status = Change::Acknowledged;
            alarm
        }
        // A raise, or a clear/ack of an alarm whose item already expired.
        (change, _) => Alarm {
            id: format!("{:016x}", key.sort),
            company: t.company.clone(),
            rule: t.rule.clone(),
            rule_name: t.rule_name.clone(),
            severity: t.severity,
            condition: t.condition.clone(),
            device: t.device.clone(),
            sensor: t.sensor.clone(),
            status: change,
            raised_at: t.raised_at,
            cleared_at: (change == Change::Cleared).then_some(t.ts),
            value: t.value,
            detail: t.detail.clone(),
            acknowledged: None,
            escalated: Vec::new(),
        },
    }
}

#[derive(Serialize, Deserialize)]
struct StoredState {
    device: String,
    sensor: Option<String>,
    state: SeriesState,
}
