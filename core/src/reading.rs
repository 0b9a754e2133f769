//! The plaintext a device seals into an envelope.

use compact_str::CompactString;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// One message from a device: its sequence number, when it was taken and the
/// sensor values.
///
/// `seq` increases by one per message and survives reboots, so the pipeline can
/// drop the duplicates that offline buffering produces and count the gaps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReadingBatch {
    pub seq: u64,
    /// Event time, unix milliseconds.
    pub ts: i64,
    pub readings: Vec<Reading>,
}

/// One sensor value as the device measured it, in the device's unit.
///
/// Names and units are [`CompactString`]s: they are short, so they live
/// inline, and the lake decodes millions of them per second without an
/// allocation each.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reading {
    pub sensor: CompactString,
    pub kind: CompactString,
    /// JSON has no NaN or infinity: serde_json writes them as `null`, and some
    /// firmware writes `"NaN"` or `"Infinity"`. Those are read back as
    /// non-finite values so that the decrypt stage can reject them by name
    /// rather than as malformed JSON.
    #[serde(deserialize_with = "number_or_non_finite")]
    pub value: f64,
    pub unit: CompactString,
}

fn number_or_non_finite<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Value {
        Number(f64),
        Text(String),
        Null(()),
    }
    match Value::deserialize(deserializer)? {
        Value::Number(n) => Ok(n),
        Value::Null(()) => Ok(f64::NAN),
        Value::Text(t) => match t.as_str() {
            "NaN" | "nan" => Ok(f64::NAN),
            "Infinity" | "inf" => Ok(f64::INFINITY),
            "-Infinity" | "-inf" => Ok(f64::NEG_INFINITY),
            other => Err(serde::de::Error::custom(format!("value {other:?} is not a number"))),
        },
    }
}

impl ReadingBatch {
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a reading batch always serializes")
    }

    pub fn from_json(bytes: &[u8]) -> Result<Self> {
        serde_json::from_slice(bytes).map_err(|e| Error::MalformedPlaintext(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_matches_the_documented_shape() {
        let batch = ReadingBatch {
            seq: 7,
            ts: 1_700_000_000_000,
            readings: vec![Reading {
                sensor: "temp-1".into(),
                kind: "temperature".into(),
                value: 21.5,
                unit: "degC".into(),
            }],
        };
        let json: serde_json::Value = serde_json::from_slice(&batch.to_json()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"seq": 7, "ts": 1_700_000_000_000i64,
                "readings": [{"sensor": "temp-1", "kind": "temperature", "value": 21.5, "unit": "degC"}]})
        );
        assert_eq!(ReadingBatch::from_json(&batch.to_json()).unwrap(), batch);
        assert!(matches!(ReadingBatch::from_json(b"{\"seq\":1}"), Err(Error::MalformedPlaintext(_))));
    }

    #[test]
    fn non_finite_values_survive_the_round_trip_as_non_finite() {
        let reading = |value: &str| {
            let json = format!(
                r#"{{"seq":1,"ts":1,"readings":[{{"sensor":"s","kind":"k","value":{value},"unit":"u"}}]}}"#
            );
            ReadingBatch::from_json(json.as_bytes()).map(|b| b.readings[0].value)
        };
        assert!(reading("null").unwrap().is_nan());
        assert!(reading("\"NaN\"").unwrap().is_nan());
        assert_eq!(reading("\"-Infinity\"").unwrap(), f64::NEG_INFINITY);
        assert_eq!(reading("2.5").unwrap(), 2.5);
        assert!(matches!(reading("\"warm\""), Err(Error::MalformedPlaintext(_))));
    }
}
