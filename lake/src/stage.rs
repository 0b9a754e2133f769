//! The lake as a stream consumer: decrypt a batch, write one Parquet file per
//! hour partition it touches and one per quarantine reason, named by the
//! batch's stream range.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use rayon::prelude::*;
use wenu_core::durable::sync_files;
use wenu_core::keyring::Keyring;
use wenu_core::stream::Record;
use wenu_decrypt::{DecodeLimits, DecodedMessage, Decoder, Directory, KeySource, Outcome, SequenceTracker};

use crate::compact::LakeLock;
use crate::encode::{self, QuarantinedRecord};
use crate::layout::{HourPartition, part_name, quarantine_dir};
use crate::{Error, Result};

/// Running totals of one lake consumer, for progress views.
#[derive(Debug, Default)]
pub struct LakeTotals {
    pub rows: AtomicU64,
    pub files: AtomicU64,
    pub duplicates: AtomicU64,
    pub quarantined: AtomicU64,
}

/// What one batch produced.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct BatchReport {
    pub rows: u64,
    pub files: u64,
    pub duplicates: u64,
    pub quarantined: BTreeMap<&'static str, u64>,
}

/// Decrypts records and writes the lake through any `object_store` backend.
pub struct LakeStage {
    store: Arc<dyn ObjectStore>,
    keys: Box<dyn KeySource>,
    /// `None` only while a batch is being decoded on a blocking thread.
    decoder: Option<Decoder>,
    totals: Arc<LakeTotals>,
    /// A local lake: held shared while files are put, so compaction never
    /// swaps one out, and the directory whose new files are fsynced.
    local: Option<(Arc<LakeLock>, PathBuf)>,
}

impl LakeStage {
    pub fn new(store: Arc<dyn ObjectStore>, keys: Box<dyn KeySource>, limits: DecodeLimits) -> Self {
        let decoder =
            Decoder::new(Keyring::default(), Directory::default(), limits, SequenceTracker::default());
        LakeStage { store, keys, decoder: Some(decoder), totals: Arc::default(), local: None }
    }

    /// For a lake on the local filesystem at `dir` (the store's root):
    /// coordinates with `wenu lake compact`, and fsyncs each batch's files and
    /// directories before the batch counts as durable, because the local
    /// object store renames into place without syncing, and a checkpoint
    /// must never outlive the files after a power cut.
    pub fn with_local_dir(mut self, dir: &Path) -> Result<Self> {
        self.local = Some((Arc::new(LakeLock::open(dir)?), dir.to_path_buf()));
        Ok(self)
    }

    /// Counts into `totals`: a stage built again after a failure keeps
    /// counting where the one before it stopped.
    pub fn with_totals(mut self, totals: Arc<LakeTotals>) -> Self {
        self.totals = totals;
        self
    }

    pub fn totals(&self) -> Arc<LakeTotals> {
        self.totals.clone()
    }

    pub fn sequences(&self) -> Option<&SequenceTracker> {
        self.decoder.as_ref().map(Decoder::sequences)
    }

    /// Decodes and writes one batch; the files are in the store when it returns.
    pub async fn write_batch(&mut self, records: &[Record]) -> Result<BatchReport> {
        let (Some(first), Some(last)) = (records.first(), records.last()) else {
            return Ok(BatchReport::default());
        };
        // Files are named by the embedded log's positions, which fit a u64 (on
        // AWS, Firehose writes the lake).
        let (Some(first), Some(last)) = (first.position.as_u64(), last.position.as_u64()) else {
            return Err(Error::Core(wenu_core::Error::Stream {
                message: format!(
                    "positions {}..{} are not the embedded log's",
                    first.position, last.position
                ),
                retryable: false,
            }));
        };
        let name = part_name(first, last);
        // Refreshed in place: a refresh that fails leaves the decoder where
        // the retry of this batch finds it.
        let refreshed = self.keys.refresh().await.map_err(Error::Keys)?;
        let mut decoder = self.decoder.take().expect("decoder present between batches");
        if let Some((keyring, directory)) = refreshed {
            decoder.refresh(keyring, directory);
        }
        // Decryption and Parquet encoding are CPU work: keep them off the async workers.
        let owned = records.to_vec();
        let (decoder, encoded) = tokio::task::spawn_blocking(move || {
            let encoded = encode_batch(&mut decoder, &owned, &name);
            (decoder, encoded)
        })
        .await
        .map_err(|e| Error::Task(e.to_string()))?;
        self.decoder = Some(decoder);
        let (files, mut report) = encoded?;

        // The compactor holds the lock exclusively for milliseconds (links and one rename).
        let shared = self.local.as_ref().map(|(lock, _)| lock.shared()).transpose()?;
        let mut written = Vec::with_capacity(files.len());
        for (path, bytes) in files {
            self.store.put(&path, PutPayload::from_bytes(bytes)).await?;
            written.push(path);
            report.files += 1;
        }
        drop(shared);
        if let Some((_, root)) = &self.local {
            let paths: Vec<PathBuf> = written.iter().map(|p| root.join(p.as_ref())).collect();
            tokio::task::spawn_blocking(move || sync_files(&paths))
                .await
                .map_err(|e| Error::Task(e.to_string()))??;
        }
        metrics::counter!("wenu_lake_rows_total").increment(report.rows);
        metrics::counter!("wenu_lake_files_total").increment(report.files);
        metrics::counter!("wenu_decrypt_duplicates_total").increment(report.duplicates);
        for (reason, n) in &report.quarantined {
            metrics::counter!("wenu_decrypt_rejected_total", "reason" => *reason).increment(*n);
        }
        if let Some(sequences) = self.sequences() {
            let (received, expected) =
                sequences.all().fold((0u64, 0u64), |(r, e), d| (r + d.received, e + d.expected));
            let ratio = if expected == 0 { 1.0 } else { received as f64 / expected as f64 };
            metrics::gauge!("wenu_lake_completeness_ratio").set(ratio);
            metrics::gauge!("wenu_lake_missing_messages").set(expected.saturating_sub(received) as f64);
        }
        let t = &self.totals;
        t.rows.fetch_add(report.rows, Ordering::Relaxed);
        t.files.fetch_add(report.files, Ordering::Relaxed);
        t.duplicates.fetch_add(report.duplicates, Ordering::Relaxed);
        t.quarantined.fetch_add(report.quarantined.values().sum(), Ordering::Relaxed);
        Ok(report)
    }
}

type EncodedFiles = Vec<(object_store::path::Path, bytes::Bytes)>;

fn encode_batch(
    decoder: &mut Decoder,
    records: &[Record],
    name: &str,
) -> Result<(EncodedFiles, BatchReport)> {
    let mut report = BatchReport::default();
    let mut accepted = Vec::with_capacity(records.len());
    let mut quarantine: BTreeMap<object_store::path::Path, Vec<QuarantinedRecord>> = BTreeMap::new();
    for (record, outcome) in records.iter().zip(decoder.decode_all(records)) {
        match outcome {
            Outcome::Accepted(message) => accepted.push(message),
            Outcome::Duplicate { .. } => report.duplicates += 1,
            Outcome::Rejected(rejection) => {
                let label = rejection.reason.label();
                *report.quarantined.entry(label).or_default() += 1;
                tracing::debug!(device = %record.device_id, position = %record.position, reason = label, detail = %rejection.detail, "record quarantined");
                quarantine
                    .entry(quarantine_dir(label, record.received_at))
                    .or_default()
                    .push(QuarantinedRecord { record: record.clone(), detail: rejection.detail });
            }
        }
    }
    report.rows = accepted.iter().map(|m| m.readings.len() as u64).sum();

    // Sorting by partition first makes each partition one contiguous run.
    accepted.sort_unstable_by(|a, b| {
        (&a.company, hour_of(a.ts), &a.device_id, a.seq).cmp(&(
            &b.company,
            hour_of(b.ts),
            &b.device_id,
            b.seq,
        ))
    });
    let runs: Vec<&mut [DecodedMessage]> =
        accepted.chunk_by_mut(|a, b| a.company == b.company && hour_of(a.ts) == hour_of(b.ts)).collect();
    let tables = runs
        .into_par_iter()
        .map(|run| {
            let dir = HourPartition::of(&run[0].company, run[0].ts).dir();
            Ok((dir.join(name), encode::readings_batch(run)?))
        })
        .collect::<Result<Vec<_>>>()?;
    // The rows are in the tables now; the messages need not wait for the encoding.
    drop(accepted);
    let readings = tables
        .into_par_iter()
        .map(|(path, table)| Ok((path, encode::write(&encode::READINGS_SCHEMA, &table)?)));
    let quarantined =
        quarantine.par_iter().map(|(dir, rows)| Ok((dir.clone().join(name), encode::quarantine_file(rows)?)));
    let files = readings.chain(quarantined).collect::<Result<EncodedFiles>>()?;
    Ok((files, report))
}

/// Hours since the epoch: the partition of an event time, without formatting it.
fn hour_of(ts_ms: i64) -> i64 {
    ts_ms.div_euclid(3_600_000)
}

#[async_trait]
impl wenu_runtime::Stage for LakeStage {
    type Error = Error;

    fn restore(&mut self, state: Option<&[u8]>) -> Result<()> {
        let sequences = match state {
            Some(bytes) => serde_json::from_slice(bytes)?,
            None => SequenceTracker::default(),
        };
        self.decoder.as_mut().expect("decoder present between batches").restore_sequences(sequences);
        Ok(())
    }

    async fn process(&mut self, records: &[Record]) -> Result<Vec<u8>> {
        wenu_core::failpoint::hit("lake.process").await;
        self.write_batch(records).await?;
        let sequences = self.sequences().expect("decoder present between batches");
        Ok(serde_json::to_vec(sequences)?)
    }
}
