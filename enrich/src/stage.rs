//! Enrich as a stream consumer: decrypt a batch, normalise its readings with
//! the latest registry snapshot, quarantine what cannot be normalised, and
//! queue one stats job per series.
//!
//! At least once: a batch redone after a crash queues its jobs again, and
//! the stats workers count each (device, seq) once per bucket anyway.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use tokio::sync::broadcast;
use wenu_core::keyring::Keyring;
use wenu_core::queue::{NewMessage, Queue};
use wenu_core::stream::Record;
use wenu_decrypt::{DecodeLimits, Decoder, Directory, KeySource, Outcome, SequenceTracker};
use wenu_stats::Job;

use crate::catalog::Catalog;
use crate::normalise::{EnrichedBatch, QuarantinedReading, enrich_batch};
use crate::{Error, Result};

/// Where enrich gets registry snapshots from, and learns that they changed.
#[async_trait]
pub trait CatalogSource: Send + Sync + 'static {
    /// A new snapshot when something changed since the last call (always on
    /// the first call), `None` when nothing did.
    async fn refresh(&mut self) -> Result<Option<Catalog>, String>;
}

/// A snapshot that never changes: for tests and benchmarks.
pub struct FixedCatalog(Option<Catalog>);

impl FixedCatalog {
    pub fn new(catalog: Catalog) -> Self {
        FixedCatalog(Some(catalog))
    }
}

#[async_trait]
impl CatalogSource for FixedCatalog {
    async fn refresh(&mut self) -> Result<Option<Catalog>, String> {
        Ok(self.0.take())
    }
}

/// Running totals, for progress views and tests.
#[derive(Debug, Default)]
pub struct EnrichTotals {
    pub readings: AtomicU64,
    pub jobs: AtomicU64,
    pub quarantined: AtomicU64,
}

pub struct EnrichStage {
    keys: Box<dyn KeySource>,
    catalogs: Box<dyn CatalogSource>,
    catalog: Arc<Catalog>,
    /// `None` only while a batch is being decoded on a blocking thread.
    decoder: Option<Decoder>,
    queue: Arc<dyn Queue>,
    /// Where quarantined readings are written (the lake's store).
    quarantine: Arc<dyn ObjectStore>,
    totals: Arc<EnrichTotals>,
    /// Each batch's jobs, for live views; dropped for subscribers that lag.
    live: Option<broadcast::Sender<Arc<Vec<Job>>>>,
    /// The local directory behind `quarantine`, whose new files are fsynced.
    local_dir: Option<std::path::PathBuf>,
}

impl EnrichStage {
    pub fn new(
        keys: Box<dyn KeySource>,
        catalogs: Box<dyn CatalogSource>,
        queue: Arc<dyn Queue>,
        quarantine: Arc<dyn ObjectStore>,
        limits: DecodeLimits,
    ) -> Self {
        let decoder =
            Decoder::new(Keyring::default(), Directory::default(), limits, SequenceTracker::default());
        EnrichStage {
            keys,
            catalogs,
            catalog: Arc::default(),
            decoder: Some(decoder),
            queue,
            quarantine,
            totals: Arc::default(),
            live: None,
            local_dir: None,
        }
    }

    /// `quarantine` is a local directory, `dir`: each batch's quarantine
    /// files are fsynced before the batch counts as done, because the local
    /// object store does not sync, and a checkpoint must never outlive them.
    pub fn with_local_dir(mut self, dir: &std::path::Path) -> Self {
        self.local_dir = Some(dir.to_path_buf());
        self
    }

    /// Publishes every batch's normalised readings (as its jobs) on `live`
    /// once they are queued.
    pub fn with_live(mut self, live: broadcast::Sender<Arc<Vec<Job>>>) -> Self {
        self.live = Some(live);
        self
    }

    /// Counts into `totals`: a stage built again after a failure keeps
    /// counting where the one before it stopped.
    pub fn with_totals(mut self, totals: Arc<EnrichTotals>) -> Self {
        self.totals = totals;
        self
    }

    pub fn totals(&self) -> Arc<EnrichTotals> {
        self.totals.clone()
    }

    /// Processes one batch; its jobs are queued and its quarantine written when it returns.
    pub async fn enrich(&mut self, records: &[Record]) -> Result<EnrichedBatch> {
        let (Some(first), Some(last)) = (records.first(), records.last()) else {
            return Ok(EnrichedBatch::default());
        };
        let name = format!("part-{:020}-{:020}.jsonl", first.position, last.position);
        // Both refreshed before the decoder is taken out: a refresh that fails
        // leaves it where the retry of this batch finds it.
        let refreshed = self.keys.refresh().await.map_err(Error::Registry)?;
        if let Some(catalog) = self.catalogs.refresh().await.map_err(Error::Registry)? {
            tracing::debug!(
                revision = catalog.revision(),
                sensors = catalog.sensor_count(),
                "catalog reloaded"
            );
            self.catalog = Arc::new(catalog);
        }
        let mut decoder = self.decoder.take().expect("decoder present between batches");
        if let Some((keyring, directory)) = refreshed {
            decoder.refresh(keyring, directory);
        }
        // Decryption is CPU work: keep it off the async workers.
        let owned = records.to_vec();
        let catalog = self.catalog.clone();
        let (decoder, batch) = tokio::task::spawn_blocking(move || {
            let accepted: Vec<_> = decoder
                .decode_all(&owned)
                .into_iter()
                .filter_map(|outcome| match outcome {
                    Outcome::Accepted(message) => Some(message),
                    // The lake stage quarantines bad records and counts duplicates.
                    Outcome::Duplicate { .. } | Outcome::Rejected(_) => None,
                })
                .collect();
            let batch = enrich_batch(&accepted, &catalog);
            (decoder, batch)
        })
        .await
        .map_err(|e| Error::Task(e.to_string()))?;
        self.decoder = Some(decoder);

        self.write_quarantine(&batch.quarantined, &name).await?;
        if !batch.jobs.is_empty() {
            let messages = batch
                .jobs
                .iter()
                .map(|job| NewMessage { group: job.series.group(), body: job.to_bytes().into() })
                .collect();
            self.queue.send_batch(messages).await?;
            // Jobs queued, checkpoint not yet moved: the crash tests stop here.
            wenu_core::failpoint::hit("enrich.after_send").await;
            if let Some(live) = self.live.as_ref().filter(|l| l.receiver_count() > 0) {
                // No subscriber, no copy; a send fails only without subscribers.
                let _ = live.send(Arc::new(batch.jobs.clone()));
            }
        }
        metrics::counter!("wenu_enrich_readings_total").increment(batch.normalised);
        metrics::counter!("wenu_enrich_jobs_total").increment(batch.jobs.len() as u64);
        for reading in &batch.quarantined {
            metrics::counter!("wenu_enrich_quarantined_total", "reason" => reading.reason).increment(1);
        }
        let t = &self.totals;
        t.readings.fetch_add(batch.normalised, Ordering::Relaxed);
        t.jobs.fetch_add(batch.jobs.len() as u64, Ordering::Relaxed);
        t.quarantined.fetch_add(batch.quarantined.len() as u64, Ordering::Relaxed);
        Ok(batch)
    }

    /// One JSON-lines file per reason and day, named by the batch's stream
    /// range, so a redone batch overwrites its own file.
    async fn write_quarantine(&self, readings: &[QuarantinedReading], name: &str) -> Result<()> {
        let mut files: BTreeMap<Path, Vec<u8>> = BTreeMap::new();
        for reading in readings {
            let date = chrono::DateTime::from_timestamp_millis(reading.ts)
                .map_or_else(|| "invalid".to_owned(), |t| t.format("%Y-%m-%d").to_string());
            let path = Path::from(format!("enrich-quarantine/reason={}/date={date}/{name}", reading.reason));
            let file = files.entry(path).or_default();
            serde_json::to_writer(&mut *file, reading).expect("a quarantined reading serializes");
            file.push(b'\n');
        }
        let mut written = Vec::with_capacity(files.len());
        for (path, bytes) in files {
            self.quarantine.put(&path, PutPayload::from(bytes)).await?;
            written.push(path);
        }
        if let Some(root) = &self.local_dir
            && !written.is_empty()
        {
            let paths: Vec<_> = written.iter().map(|p| root.join(p.as_ref())).collect();
            tokio::task::spawn_blocking(move || wenu_core::durable::sync_files(&paths))
                .await
                .map_err(|e| Error::Task(e.to_string()))??;
        }
        Ok(())
    }
}

#[async_trait]
impl wenu_runtime::Stage for EnrichStage {
    type Error = Error;

    fn restore(&mut self, state: Option<&[u8]>) -> Result<()> {
        let sequences = match state {
            Some(bytes) => serde_json::from_slice(bytes).map_err(|e| Error::State(e.to_string()))?,
            None => SequenceTracker::default(),
        };
        self.decoder.as_mut().expect("decoder present between batches").restore_sequences(sequences);
        Ok(())
    }

    async fn process(&mut self, records: &[Record]) -> Result<Vec<u8>> {
        self.enrich(records).await?;
        let sequences = self.decoder.as_ref().expect("decoder present between batches").sequences();
        serde_json::to_vec(sequences).map_err(|e| Error::State(e.to_string()))
    }
}
