//! The decrypt stage: one stream record in, readings or a rejection out.

use std::collections::HashMap;

use wenu_core::envelope::{Header, Opener};
use wenu_core::keyring::Keyring;
use wenu_core::reading::ReadingBatch;
use wenu_core::stream::Record;

use crate::directory::Directory;
use crate::rejection::{RejectReason, Rejection};
use crate::sequence::{SeqVerdict, SequenceTracker};

/// How far a reading's event time may stray from what is plausible.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    /// How far ahead of its arrival a reading may claim to be (device clock skew).
    pub max_future_ms: i64,
    /// How long before its device's provisioning a reading may claim to be.
    pub max_before_created_ms: i64,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        DecodeLimits { max_future_ms: 10 * 60 * 1000, max_before_created_ms: 60 * 60 * 1000 }
    }
}

/// One sensor value, decoded and attributed to its device and company.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedReading {
    /// Stream position of the record it came from.
    pub position: u64,
    pub device_id: String,
    pub company: String,
    pub seq: u64,
    /// Event time, unix ms.
    pub ts: i64,
    /// Arrival time at the edge, unix ms.
    pub received_at: i64,
    pub key_id: u32,
    pub sensor: String,
    pub kind: String,
    pub value: f64,
    pub unit: String,
}

/// What became of one record.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// New readings (possibly none, for a message with an empty batch).
    Accepted(Vec<DecodedReading>),
    /// A message the device had already delivered: dropped, counted.
    Duplicate {
        device_id: String,
        seq: u64,
    },
    Rejected(Rejection),
}

/// Decrypts, parses, checks and dedupes stream records.
///
/// The sequence tracker is its only state; keys and devices come from
/// snapshots that [`Decoder::refresh`] replaces.
pub struct Decoder {
    keyring: Keyring,
    directory: Directory,
    limits: DecodeLimits,
    /// Expanded keys by (device, key id), so a device's key schedule runs once.
    openers: HashMap<(String, u32), Opener>,
    sequences: SequenceTracker,
}

impl Decoder {
    pub fn new(
        keyring: Keyring,
        directory: Directory,
        limits: DecodeLimits,
        sequences: SequenceTracker,
    ) -> Self {
        Decoder { keyring, directory, limits, openers: HashMap::new(), sequences }
    }

    /// Swaps in newer snapshots of the keyring and the devices (after a
    /// provisioning, a rotation or a retirement).
    pub fn refresh(&mut self, keyring: Keyring, directory: Directory) {
        self.keyring = keyring;
        self.directory = directory;
        self.openers.clear();
    }

    pub fn sequences(&self) -> &SequenceTracker {
        &self.sequences
    }

    /// Replaces the sequence state, e.g. with the one saved at a checkpoint.
    pub fn restore_sequences(&mut self, sequences: SequenceTracker) {
        self.sequences = sequences;
    }

    pub fn knows_device(&self, device_id: &str) -> bool {
        self.directory.get(device_id).is_some()
    }

    pub fn decode(&mut self, record: &Record) -> Outcome {
        match self.try_decode(record) {
            Ok(outcome) => outcome,
            Err(rejection) => Outcome::Rejected(rejection),
        }
    }

    fn try_decode(&mut self, record: &Record) -> Result<Outcome, Rejection> {
        let device_id = record.device_id.as_str();
        let device = self.directory.get(device_id).ok_or_else(|| {
            Rejection::new(RejectReason::UnknownDevice, format!("unknown device {device_id}"))
        })?;
        if !device.enabled {
            return Err(Rejection::new(
                RejectReason::DisabledDevice,
                format!("device {device_id} is disabled"),
            ));
        }
        let header = Header::parse(&record.payload)?;
        let opener = match self.openers.get(&(record.device_id.clone(), header.key_id)) {
            Some(opener) => opener,
            None => {
                let key = self.keyring.decryption_key(device_id, header.key_id)?;
                self.openers.entry((device_id.to_owned(), header.key_id)).or_insert_with(|| Opener::new(key))
            }
        };
        let plaintext = opener.open(device_id, &record.payload)?;
        let batch = ReadingBatch::from_json(&plaintext)?;

        if let Some(bad) = batch.readings.iter().find(|r| !r.value.is_finite()) {
            return Err(Rejection::new(
                RejectReason::NonFiniteValue,
                format!("sensor {} sent {} (seq {})", bad.sensor, bad.value, batch.seq),
            ));
        }
        if batch.ts > record.received_at.saturating_add(self.limits.max_future_ms) {
            return Err(Rejection::new(
                RejectReason::TimestampInFuture,
                format!(
                    "ts {} is {} ms after arrival (seq {})",
                    batch.ts,
                    batch.ts - record.received_at,
                    batch.seq
                ),
            ));
        }
        if batch.ts < device.created_at.saturating_sub(self.limits.max_before_created_ms) {
            return Err(Rejection::new(
                RejectReason::TimestampBeforeDevice,
                format!(
                    "ts {} is before the device was provisioned at {} (seq {})",
                    batch.ts, device.created_at, batch.seq
                ),
            ));
        }
        match self.sequences.observe(device_id, batch.seq) {
            SeqVerdict::New => {}
            SeqVerdict::Duplicate => {
                return Ok(Outcome::Duplicate { device_id: device_id.to_owned(), seq: batch.seq });
            }
            SeqVerdict::Replayed => {
                return Err(Rejection::new(
                    RejectReason::ReplayedSeq,
                    format!("seq {} is far below the device's highest seq", batch.seq),
                ));
            }
        }
        let company = device.company.clone();
        let readings = batch
            .readings
            .into_iter()
            .map(|r| DecodedReading {
                position: record.position.0,
                device_id: device_id.to_owned(),
                company: company.clone(),
                seq: batch.seq,
                ts: batch.ts,
                received_at: record.received_at,
                key_id: header.key_id,
                sensor: r.sensor,
                kind: r.kind,
                value: r.value,
                unit: r.unit,
            })
            .collect();
        Ok(Outcome::Accepted(readings))
    }
}
