//! The decrypt stage: one stream record in, readings or a rejection out.

use std::collections::HashMap;

use compact_str::CompactString;
use rayon::prelude::*;
use wenu_core::envelope::{Header, Opener};
use wenu_core::keyring::Keyring;
use wenu_core::reading::{Reading, ReadingBatch};
use wenu_core::stream::{Position, Record};

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

/// One message of a device, decoded and attributed to its device and company.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedMessage {
    /// Stream position of the record it came from.
    pub position: Position,
    pub device_id: CompactString,
    pub company: CompactString,
    /// The device's site when the message was decoded.
    pub site: Option<CompactString>,
    pub seq: u64,
    /// Event time, unix ms.
    pub ts: i64,
    /// Arrival time at the edge, unix ms.
    pub received_at: i64,
    pub key_id: u32,
    /// The sensor values, in the device's units, in the order it sent them.
    pub readings: Vec<Reading>,
}

/// What became of one record.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// A new message (possibly with no readings).
    Accepted(DecodedMessage),
    /// A message the device had already delivered: dropped, counted.
    Duplicate {
        device_id: String,
        seq: u64,
    },
    Rejected(Rejection),
}

/// A record that opened and passed every check that needs no state: what is
/// left is the sequence check, which must see records in stream order.
struct Opened {
    key_id: u32,
    batch: ReadingBatch,
}

/// Decrypts, parses, checks and dedupes stream records.
///
/// The sequence tracker is its only state; keys and devices come from
/// snapshots that [`Decoder::refresh`] replaces. [`Decoder::decode_all`]
/// opens a batch's envelopes on all cores (they are independent) and then
/// runs the sequence check in stream order, so its decisions are the same
/// as decoding the records one by one.
pub struct Decoder {
    keyring: Keyring,
    directory: Directory,
    limits: DecodeLimits,
    /// Expanded keys by device and key id, so a device's key schedule runs once.
    openers: HashMap<String, Vec<(u32, Opener)>>,
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

    pub fn sequences_mut(&mut self) -> &mut SequenceTracker {
        &mut self.sequences
    }

    /// Replaces the sequence state, e.g. with the one saved at a checkpoint.
    pub fn restore_sequences(&mut self, sequences: SequenceTracker) {
        self.sequences = sequences;
    }

    pub fn knows_device(&self, device_id: &str) -> bool {
        self.directory.get(device_id).is_some()
    }

    pub fn decode(&mut self, record: &Record) -> Outcome {
        self.decode_all(std::slice::from_ref(record)).pop().expect("one outcome per record")
    }

    /// One outcome per record, in order, on the calling thread: for small
    /// batches that must not wait for the shared thread pool (alarms).
    pub fn decode_here(&mut self, records: &[Record]) -> Vec<Outcome> {
        self.expand_keys(records);
        records
            .iter()
            .map(|record| match self.open(record).and_then(|o| self.check_sequence(record, o)) {
                Ok(outcome) => outcome,
                Err(rejection) => Outcome::Rejected(rejection),
            })
            .collect()
    }

    /// One outcome per record, in order.
    pub fn decode_all(&mut self, records: &[Record]) -> Vec<Outcome> {
        self.expand_keys(records);
        let this = &*self;
        let opened: Vec<Result<Opened, Rejection>> = records.par_iter().map(|r| this.open(r)).collect();
        records
            .iter()
            .zip(opened)
            .map(|(record, opened)| match opened.and_then(|o| self.check_sequence(record, o)) {
                Ok(outcome) => outcome,
                Err(rejection) => Outcome::Rejected(rejection),
            })
            .collect()
    }

    /// Builds the key schedules the records will need that are not cached yet.
    fn expand_keys(&mut self, records: &[Record]) {
        for record in records {
            let Ok(header) = Header::parse(&record.payload) else { continue };
            let cached = self.openers.get(record.device_id.as_str());
            if cached.is_some_and(|keys| keys.iter().any(|(id, _)| *id == header.key_id)) {
                continue;
            }
            // A missing or retired key is reported by `open`, per record.
            if let Ok(key) = self.keyring.decryption_key_at(&record.device_id, header.key_id, i64::MIN) {
                let opener = Opener::new(key);
                self.openers.entry(record.device_id.clone()).or_default().push((header.key_id, opener));
            }
        }
    }

    /// Everything but the sequence check: pure in the record, so it runs in parallel.
    fn open(&self, record: &Record) -> Result<Opened, Rejection> {
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
        // Retirement depends on the record's arrival, so it is checked even when the key is cached.
        let key = self.keyring.decryption_key_at(device_id, header.key_id, record.received_at)?;
        let opener = self
            .openers
            .get(device_id)
            .and_then(|keys| keys.iter().find(|(id, _)| *id == header.key_id))
            .map(|(_, opener)| opener);
        let plaintext = match opener {
            Some(opener) => opener.open(device_id, &record.payload)?,
            None => Opener::new(key).open(device_id, &record.payload)?,
        };
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
        Ok(Opened { key_id: header.key_id, batch })
    }

    fn check_sequence(&mut self, record: &Record, opened: Opened) -> Result<Outcome, Rejection> {
        let device_id = record.device_id.as_str();
        let Opened { key_id, batch } = opened;
        let reset_at = self.directory.get(device_id).and_then(|d| d.seq_reset_at);
        match self.sequences.observe_at(device_id, batch.seq, record.received_at, reset_at) {
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
        let entry = self.directory.get(device_id);
        let company = entry.map(|d| d.company.as_str()).unwrap_or_default().into();
        let site = entry.and_then(|d| d.site.as_deref()).map(CompactString::from);
        Ok(Outcome::Accepted(DecodedMessage {
            position: record.position,
            device_id: device_id.into(),
            company,
            site,
            seq: batch.seq,
            ts: batch.ts,
            received_at: record.received_at,
            key_id,
            readings: batch.readings,
        }))
    }
}
