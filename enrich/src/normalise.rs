//! Normalising readings: the registry's sensor definition decides the unit,
//! the calibration and the plausible range of each value.

use std::collections::BTreeMap;

use serde::Serialize;
use wenu_core::reading::Reading;
use wenu_core::stream::Position;
use wenu_decrypt::DecodedMessage;
use wenu_stats::{Job, Point, SeriesKey};

use crate::catalog::Catalog;
use crate::units::conversion;

/// A reading in its sensor's canonical unit, calibrated, with the registry's
/// attributes. Borrows from the message and the catalog: no copies.
#[derive(Debug, Clone, PartialEq)]
pub struct NormalisedReading<'a> {
    pub company: &'a str,
    pub site: Option<&'a str>,
    pub device: &'a str,
    pub sensor: &'a str,
    pub kind: &'a str,
    /// The sensor's canonical unit.
    pub unit: &'a str,
    pub seq: u64,
    pub ts: i64,
    /// Converted and calibrated.
    pub value: f64,
    /// As the device sent it.
    pub raw_value: f64,
    pub raw_unit: &'a str,
    /// Outside the sensor's valid range (or not finite after calibration).
    pub out_of_range: bool,
}

/// Why a reading could not be normalised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// The registry defines no such sensor for the device.
    UnknownSensor,
    /// The device sent a unit that does not convert to the sensor's.
    UnitMismatch { sent: String, canonical: String },
}

impl Rejection {
    pub fn reason(&self) -> &'static str {
        match self {
            Rejection::UnknownSensor => "unknown_sensor",
            Rejection::UnitMismatch { .. } => "unit_mismatch",
        }
    }

    fn detail(&self) -> String {
        match self {
            Rejection::UnknownSensor => "the registry defines no such sensor for this device".into(),
            Rejection::UnitMismatch { sent, canonical } => {
                format!("unit {sent:?} does not convert to the sensor's unit {canonical:?}")
            }
        }
    }
}

/// Normalises one reading of a message.
pub fn normalise<'a>(
    message: &'a DecodedMessage,
    reading: &'a Reading,
    catalog: &'a Catalog,
) -> Result<NormalisedReading<'a>, Rejection> {
    let spec = catalog.sensor(&message.device_id, &reading.sensor).ok_or(Rejection::UnknownSensor)?;
    let to_canonical = conversion(&reading.unit, &spec.unit).ok_or_else(|| Rejection::UnitMismatch {
        sent: reading.unit.to_string(),
        canonical: spec.unit.clone(),
    })?;
    let value = to_canonical.apply(reading.value) * spec.scale + spec.offset;
    let out_of_range = !value.is_finite()
        || spec.valid_min.is_some_and(|min| value < min)
        || spec.valid_max.is_some_and(|max| value > max);
    Ok(NormalisedReading {
        company: &message.company,
        site: catalog.site(&message.device_id).map(|(id, _)| id.as_str()),
        device: &message.device_id,
        sensor: &reading.sensor,
        kind: &spec.kind,
        unit: &spec.unit,
        seq: message.seq,
        ts: message.ts,
        value,
        raw_value: reading.value,
        raw_unit: &reading.unit,
        out_of_range,
    })
}

/// A reading set aside for someone to look at, with why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QuarantinedReading {
    pub reason: &'static str,
    pub detail: String,
    pub company: String,
    pub device: String,
    pub seq: u64,
    pub ts: i64,
    /// Stream position of the message, to find it again with `wenu replay`.
    pub position: Position,
    pub sensor: String,
    pub kind: String,
    pub value: f64,
    pub unit: String,
}

impl QuarantinedReading {
    fn new(message: &DecodedMessage, reading: &Reading, reason: &'static str, detail: String) -> Self {
        QuarantinedReading {
            reason,
            detail,
            company: message.company.to_string(),
            device: message.device_id.to_string(),
            seq: message.seq,
            ts: message.ts,
            position: message.position,
            sensor: reading.sensor.to_string(),
            kind: reading.kind.to_string(),
            value: reading.value,
            unit: reading.unit.to_string(),
        }
    }
}

/// What enrich makes of a batch of messages.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EnrichedBatch {
    /// One job per series (split when very long), in series order.
    pub jobs: Vec<Job>,
    pub quarantined: Vec<QuarantinedReading>,
    /// Readings that went into jobs.
    pub normalised: u64,
}

/// Jobs are queue messages: SQS takes at most 256 KiB, and a point is under 80 bytes of JSON.
pub const MAX_POINTS_PER_JOB: usize = 2_000;

/// Normalises every reading of `messages` and groups them into stats jobs.
///
/// Out-of-range readings are flagged, kept out of the rollups (one
/// implausible value would own a bucket's min or max) and quarantined so
/// that they can be inspected. Unknown sensors and unconvertible units are
/// quarantined too: nothing is dropped silently.
pub fn enrich_batch(messages: &[DecodedMessage], catalog: &Catalog) -> EnrichedBatch {
    let mut series: BTreeMap<(&str, &str, &str), Vec<Point>> = BTreeMap::new();
    let mut batch = EnrichedBatch::default();
    for message in messages {
        for reading in &message.readings {
            match normalise(message, reading, catalog) {
                Ok(n) if n.out_of_range => {
                    let detail = format!(
                        "calibrated value {} {} is outside the sensor's valid range",
                        n.value, n.unit
                    );
                    batch.quarantined.push(QuarantinedReading::new(message, reading, "out_of_range", detail));
                }
                Ok(n) => {
                    let point = Point { seq: n.seq, ts: n.ts, value: n.value };
                    series.entry((n.company, n.device, n.sensor)).or_default().push(point);
                    batch.normalised += 1;
                }
                Err(rejection) => batch.quarantined.push(QuarantinedReading::new(
                    message,
                    reading,
                    rejection.reason(),
                    rejection.detail(),
                )),
            }
        }
    }
    for ((company, device, sensor), points) in series {
        let key =
            SeriesKey { company: company.to_owned(), device: device.to_owned(), sensor: sensor.to_owned() };
        let retention = catalog.retention(company);
        for chunk in points.chunks(MAX_POINTS_PER_JOB) {
            batch.jobs.push(Job { series: key.clone(), points: chunk.to_vec(), retention });
        }
    }
    batch
}
