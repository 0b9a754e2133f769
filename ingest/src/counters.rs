//! What the edge has seen, for `wenu status` and Prometheus.
//!
//! Totals survive restarts: the edge writes a snapshot file every second and
//! on shutdown, and resumes counting from it. The stream itself stays the
//! authority on what was stored; these counters explain refusals.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// A point-in-time copy of the counters, as written to `edge.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EdgeSnapshot {
    /// False in the snapshot a server writes as it stops.
    #[serde(default)]
    pub running: bool,
    /// Connections open when the snapshot was taken (0 once the edge stopped).
    pub connections: i64,
    pub connects_accepted: u64,
    pub connects_refused: BTreeMap<String, u64>,
    pub publishes_accepted: u64,
    pub payload_bytes_accepted: u64,
    pub publishes_refused: BTreeMap<String, u64>,
    /// Unix ms of the snapshot.
    pub updated_at: i64,
}

#[derive(Debug, Default)]
pub struct EdgeCounters {
    connections: AtomicI64,
    connects_accepted: AtomicU64,
    publishes_accepted: AtomicU64,
    payload_bytes_accepted: AtomicU64,
    refusals: Mutex<(BTreeMap<String, u64>, BTreeMap<String, u64>)>,
}

impl EdgeCounters {
    /// Resumes totals from an earlier snapshot.
    pub fn resume(from: &EdgeSnapshot) -> Self {
        Self {
            connections: AtomicI64::new(0),
            connects_accepted: AtomicU64::new(from.connects_accepted),
            publishes_accepted: AtomicU64::new(from.publishes_accepted),
            payload_bytes_accepted: AtomicU64::new(from.payload_bytes_accepted),
            refusals: Mutex::new((from.connects_refused.clone(), from.publishes_refused.clone())),
        }
    }

    pub fn connected(&self) {
        self.connections.fetch_add(1, Ordering::Relaxed);
        metrics::gauge!("wenu_edge_connections").increment(1.0);
    }

    pub fn disconnected(&self) {
        self.connections.fetch_sub(1, Ordering::Relaxed);
        metrics::gauge!("wenu_edge_connections").decrement(1.0);
    }

    pub fn connect_accepted(&self) {
        self.connects_accepted.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("wenu_edge_connects_total", "outcome" => "accepted").increment(1);
    }

    pub fn connect_refused(&self, reason: &'static str) {
        *self.refusals.lock().expect("counters poisoned").0.entry(reason.to_owned()).or_default() += 1;
        metrics::counter!("wenu_edge_connects_total", "outcome" => "refused", "reason" => reason)
            .increment(1);
    }

    pub fn publish_accepted(&self, payload_bytes: usize) {
        self.publishes_accepted.fetch_add(1, Ordering::Relaxed);
        self.payload_bytes_accepted.fetch_add(payload_bytes as u64, Ordering::Relaxed);
        metrics::counter!("wenu_edge_publishes_total", "outcome" => "accepted").increment(1);
    }

    pub fn publish_refused(&self, reason: &'static str) {
        *self.refusals.lock().expect("counters poisoned").1.entry(reason.to_owned()).or_default() += 1;
        metrics::counter!("wenu_edge_publishes_total", "outcome" => "refused", "reason" => reason)
            .increment(1);
    }

    pub fn snapshot(&self, now_ms: i64) -> EdgeSnapshot {
        let refusals = self.refusals.lock().expect("counters poisoned");
        EdgeSnapshot {
            running: true,
            connections: self.connections.load(Ordering::Relaxed),
            connects_accepted: self.connects_accepted.load(Ordering::Relaxed),
            connects_refused: refusals.0.clone(),
            publishes_accepted: self.publishes_accepted.load(Ordering::Relaxed),
            payload_bytes_accepted: self.payload_bytes_accepted.load(Ordering::Relaxed),
            publishes_refused: refusals.1.clone(),
            updated_at: now_ms,
        }
    }
}

impl EdgeSnapshot {
    pub fn load(path: &Path) -> Result<Option<Self>> {
        match std::fs::read(path) {
            Ok(bytes) => Ok(serde_json::from_slice(&bytes).ok()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(Error::Counters { path: path.to_owned(), source }),
        }
    }

    /// Written through a temporary file so a reader never sees half a snapshot.
    pub fn save(&self, path: &Path) -> Result<()> {
        let tmp = path.with_extension("json.tmp");
        let bytes = serde_json::to_vec_pretty(self).expect("snapshot serializes");
        std::fs::write(&tmp, bytes)
            .and_then(|()| std::fs::rename(&tmp, path))
            .map_err(|source| Error::Counters { path: path.to_owned(), source })
    }
}
