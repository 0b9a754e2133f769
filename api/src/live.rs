//! `GET /api/v1/live`: new readings of the caller's company as server-sent
//! events, as enrich normalises them, and its alarm transitions as the
//! alarm notifier sends them (`alarm` events).
//!
//! Enrich publishes each batch's jobs on a broadcast channel; every
//! subscriber filters its company's series. A subscriber too slow to keep
//! up skips ahead (and is told so with a `lagged` event) instead of holding
//! the pipeline back.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use wenu_alarms::{Notification, Notifier, NotifyError};
use wenu_stats::Job;

use crate::auth::{Caller, bearer};
use crate::data::own_device;
use crate::error::{ApiError, Result};
use crate::params::Params;
use crate::state::ApiState;

/// A batch of normalised readings, grouped by series.
pub type LiveBatch = Arc<Vec<Job>>;

/// Where live readings and alarm transitions are published; cheap to clone.
#[derive(Clone)]
pub struct LiveHub {
    sender: broadcast::Sender<LiveBatch>,
    alarms: broadcast::Sender<Arc<Notification>>,
}

impl LiveHub {
    /// Keeps up to `capacity` batches (and alarm transitions) for slow subscribers.
    pub fn new(capacity: usize) -> Self {
        LiveHub {
            sender: broadcast::channel(capacity.max(1)).0,
            alarms: broadcast::channel(capacity.max(1)).0,
        }
    }

    /// The sender enrich publishes on.
    pub fn sender(&self) -> broadcast::Sender<LiveBatch> {
        self.sender.clone()
    }

    pub fn subscribe(&self) -> broadcast::Receiver<LiveBatch> {
        self.sender.subscribe()
    }
}

impl Default for LiveHub {
    fn default() -> Self {
        LiveHub::new(256)
    }
}

#[derive(Deserialize)]
pub(crate) struct LiveParams {
    company: Option<String>,
    device: Option<String>,
}

/// One reading in a `readings` event.
#[derive(Serialize)]
struct LiveReading<'a> {
    device: &'a str,
    sensor: &'a str,
    seq: u64,
    ts: i64,
    value: f64,
}

pub(crate) async fn live(
    caller: Caller,
    State(state): State<ApiState>,
    Params(params): Params<LiveParams>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    let company = caller.company(params.company.as_deref())?;
    if let Some(device) = &params.device {
        own_device(&state, &company, device).await?;
    }
    let guard = state.0.live_slots.take(&caller.token.id).ok_or(ApiError::TooManyStreams)?;
    let alarm_company = company.clone();
    let readings = BroadcastStream::new(state.0.live.subscribe()).filter_map(move |batch| {
        let _still_subscribed = &guard;
        let event = match batch {
            Ok(jobs) => readings_event(&jobs, &company, params.device.as_deref()),
            Err(BroadcastStreamRecvError::Lagged(skipped)) => {
                Some(Event::default().event("lagged").data(format!("{{\"skipped_batches\":{skipped}}}")))
            }
        };
        std::future::ready(event.map(Ok))
    });
    let alarms = BroadcastStream::new(state.0.live.alarms.subscribe()).filter_map(move |notification| {
        let event = match notification {
            Ok(n) if n.transition.company == alarm_company => {
                Some(Event::default().event("alarm").json_data(&*n).expect("a notification serializes"))
            }
            _ => None,
        };
        std::future::ready(event.map(Ok))
    });
    let bearer = bearer(&headers).unwrap_or_default().to_owned();
    let events = futures_util::stream::select(readings, alarms).take_until(revoked(state, bearer));
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

/// Resolves once `bearer` no longer verifies (revoked), checking every
/// `live_token_check`: the end of that token's live streams.
async fn revoked(state: ApiState, bearer: String) {
    let mut every = tokio::time::interval(state.0.limits.live_token_check);
    every.tick().await;
    loop {
        every.tick().await;
        // A registry that cannot answer now is asked again at the next check.
        if let Ok(None) = state.0.registry.verify_token(&bearer).await {
            return;
        }
    }
}

fn readings_event(jobs: &[Job], company: &str, device: Option<&str>) -> Option<Event> {
    let readings: Vec<LiveReading> = jobs
        .iter()
        .filter(|job| job.series.company == company && device.is_none_or(|d| d == job.series.device))
        .flat_map(|job| {
            job.points.iter().map(|p| LiveReading {
                device: &job.series.device,
                sensor: &job.series.sensor,
                seq: p.seq,
                ts: p.ts,
                value: p.value,
            })
        })
        .collect();
    if readings.is_empty() {
        return None;
    }
    Some(Event::default().event("readings").json_data(&readings).expect("readings serialize"))
}

/// The live stream as a notification channel: delivered once published
/// (like MQTT, it keeps nothing for clients not listening).
#[async_trait::async_trait]
impl Notifier for LiveHub {
    fn kind(&self) -> &'static str {
        "live"
    }

    async fn targets(&self, _notification: &Notification) -> Result<Vec<String>, NotifyError> {
        Ok(vec!["api".into()])
    }

    async fn send(&self, _target: &str, notification: &Notification) -> Result<(), NotifyError> {
        // Fails only when no one listens: nothing to deliver then.
        let _ = self.alarms.send(Arc::new(notification.clone()));
        Ok(())
    }
}

/// Open live streams, at most `max_total` and `max_per_token` of one token:
/// each holds a task and a subscription, so one token cannot take them all.
pub struct LiveSlots {
    max_total: usize,
    max_per_token: usize,
    open: Mutex<HashMap<String, usize>>,
}

impl LiveSlots {
    pub(crate) fn new(max_total: usize, max_per_token: usize) -> Self {
        LiveSlots { max_total, max_per_token, open: Mutex::default() }
    }

    /// A slot for one more stream of `token`, if there is room.
    fn take(self: &Arc<Self>, token: &str) -> Option<LiveSlot> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let total: usize = open.values().sum();
        let mine = open.get(token).copied().unwrap_or(0);
        if total >= self.max_total || mine >= self.max_per_token {
            return None;
        }
        open.insert(token.to_owned(), mine + 1);
        metrics::gauge!("wenu_api_live_subscribers").increment(1.0);
        Some(LiveSlot { slots: self.clone(), token: token.to_owned() })
    }
}

/// One open stream's slot; given back when the stream ends.
struct LiveSlot {
    slots: Arc<LiveSlots>,
    token: String,
}

impl Drop for LiveSlot {
    fn drop(&mut self) {
        let mut open = self.slots.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = open.get_mut(&self.token) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.token);
            }
        }
        metrics::gauge!("wenu_api_live_subscribers").decrement(1.0);
    }
}
