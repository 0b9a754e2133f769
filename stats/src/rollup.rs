//! One bucket of one series: the aggregate dashboards read.
//!
//! Stored as a fixed-size [`Summary`] (count, min, max, sum, last and three
//! quantiles, computed when the bucket is written) followed by the quantile
//! sketch and the sequence numbers counted, which only folding new readings
//! in needs: a dashboard query reads the summary and decodes nothing else.
//! Buckets written by older versions (JSON) are still read.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};
use sketches_ddsketch::{Config, DDSketch};

use crate::seqset::SeqSet;
use crate::{Error, Result};

/// count, min, max, sum, last and a quantile sketch of one bucket, plus the
/// sequence numbers already counted in it.
#[derive(Clone)]
pub struct Rollup {
    pub count: u64,
    pub min: f64,
    pub max: f64,
    pub sum: f64,
    /// The reading with the latest event time (ties: the highest seq), so
    /// that "last" does not depend on the order readings arrive in.
    pub last: Option<Last>,
    sketch: DDSketch,
    seqs: SeqSet,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Last {
    pub ts: i64,
    pub seq: u64,
    pub value: f64,
}

impl Default for Rollup {
    fn default() -> Self {
        Rollup {
            count: 0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            sum: 0.0,
            last: None,
            sketch: DDSketch::new(Config::defaults()),
            seqs: SeqSet::default(),
        }
    }
}

impl std::fmt::Debug for Rollup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rollup")
            .field("count", &self.count)
            .field("min", &self.min)
            .field("max", &self.max)
            .field("sum", &self.sum)
            .field("last", &self.last)
            .field("p50", &self.quantile(0.5))
            .finish()
    }
}

impl Rollup {
    /// Counts the reading of message `seq` unless this bucket already has it;
    /// returns whether it was new.
    pub fn add(&mut self, seq: u64, ts: i64, value: f64) -> bool {
        if !self.seqs.insert(seq) {
            return false;
        }
        self.count += 1;
        self.min = self.min.min(value);
        self.max = self.max.max(value);
        self.sum += value;
        self.sketch.add(value);
        if self.last.is_none_or(|l| (ts, seq) > (l.ts, l.seq)) {
            self.last = Some(Last { ts, seq, value });
        }
        true
    }

    pub fn mean(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum / self.count as f64)
    }

    /// The `q` quantile (0–1), within 1 % relative error, and never outside
    /// the bucket's min and max (the sketch alone can be, by up to 1 %).
    pub fn quantile(&self, q: f64) -> Option<f64> {
        self.sketch.quantile(q).ok().flatten().map(|v| v.clamp(self.min, self.max))
    }

    /// The sequence numbers counted here.
    pub fn seqs(&self) -> &SeqSet {
        &self.seqs
    }

    /// Whether message `seq` is already counted here.
    pub fn has(&self, seq: u64) -> bool {
        self.seqs.contains(seq)
    }

    /// The stored form: [`STORED_MAGIC`], the summary, the sketch in
    /// DDSketch's portable binary encoding (the one sketches-java and the Go
    /// and Python ports read) behind its length, then the sequence numbers.
    pub fn to_bytes(&self) -> Vec<u8> {
        let sketch = self.sketch.to_java_bytes();
        let mut out = Vec::with_capacity(SUMMARY_END + 4 + sketch.len() + 16);
        out.extend_from_slice(STORED_MAGIC);
        self.summary().write(&mut out);
        out.extend_from_slice(&(sketch.len() as u32).to_le_bytes());
        out.extend_from_slice(&sketch);
        out.extend_from_slice(&serde_json::to_vec(&self.seqs).expect("a sequence set serializes"));
        out
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let Some(rest) = bytes.strip_prefix(STORED_MAGIC) else { return Self::from_json(bytes) };
        let summary = Summary::read(rest)?;
        let rest = &rest[SUMMARY_END - STORED_MAGIC.len()..];
        let (len, rest) = rest.split_first_chunk::<4>().ok_or_else(|| corrupt("no sketch length"))?;
        let len = u32::from_le_bytes(*len) as usize;
        let (sketch, seqs) = rest.split_at_checked(len).ok_or_else(|| corrupt("sketch cut short"))?;
        Ok(Rollup {
            count: summary.count,
            min: summary.min,
            max: summary.max,
            sum: summary.sum,
            last: summary.last,
            sketch: DDSketch::from_java_bytes(sketch).map_err(|e| corrupt(format!("{e:?}")))?,
            seqs: serde_json::from_slice(seqs).map_err(|e| corrupt(e.to_string()))?,
        })
    }

    /// What the buckets written before the binary form hold.
    fn from_json(bytes: &[u8]) -> Result<Self> {
        let stored: Stored = serde_json::from_slice(bytes).map_err(|e| corrupt(e.to_string()))?;
        let sketch = BASE64.decode(&stored.sketch).map_err(|e| corrupt(e.to_string()))?;
        let sketch = DDSketch::from_java_bytes(&sketch).map_err(|e| corrupt(format!("{e:?}")))?;
        Ok(Rollup {
            count: stored.count,
            min: stored.min,
            max: stored.max,
            sum: stored.sum,
            last: stored.last,
            sketch,
            seqs: stored.seqs,
        })
    }

    /// What a query shows of this bucket.
    pub fn summary(&self) -> Summary {
        Summary {
            count: self.count,
            min: self.min,
            max: self.max,
            sum: self.sum,
            last: self.last,
            p50: self.quantile(0.5),
            p95: self.quantile(0.95),
            p99: self.quantile(0.99),
        }
    }
}

/// Marks the binary form; JSON, the older one, starts with `{`.
const STORED_MAGIC: &[u8] = b"WR\x01";
/// Where the summary ends: magic, count, min, max, sum, last (a flag and
/// three numbers), three quantiles.
const SUMMARY_END: usize = 3 + 4 * 8 + 1 + 3 * 8 + 3 * 8;

/// A bucket as a query shows it, read from storage without the sketch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    pub count: u64,
    pub min: f64,
    pub max: f64,
    pub sum: f64,
    pub last: Option<Last>,
    pub p50: Option<f64>,
    pub p95: Option<f64>,
    pub p99: Option<f64>,
}

impl Summary {
    /// The summary of a stored bucket, whichever form it was stored in.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        match bytes.strip_prefix(STORED_MAGIC) {
            Some(rest) => Self::read(rest),
            None => Ok(Rollup::from_json(bytes)?.summary()),
        }
    }

    pub fn mean(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum / self.count as f64)
    }

    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.count.to_le_bytes());
        for v in [self.min, self.max, self.sum] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        let last = self.last.unwrap_or(Last { ts: 0, seq: 0, value: 0.0 });
        out.push(u8::from(self.last.is_some()));
        out.extend_from_slice(&last.ts.to_le_bytes());
        out.extend_from_slice(&last.seq.to_le_bytes());
        out.extend_from_slice(&last.value.to_le_bytes());
        for q in [self.p50, self.p95, self.p99] {
            out.extend_from_slice(&q.unwrap_or(f64::NAN).to_le_bytes());
        }
    }

    /// Reads what [`write`](Self::write) wrote, from the start of `bytes`.
    fn read(bytes: &[u8]) -> Result<Self> {
        let header =
            bytes.get(..SUMMARY_END - STORED_MAGIC.len()).ok_or_else(|| corrupt("summary cut short"))?;
        let word = |at: usize| <[u8; 8]>::try_from(&header[at..at + 8]).expect("8 bytes");
        let float = |at: usize| f64::from_le_bytes(word(at));
        let quantile = |at: usize| Some(float(at)).filter(|v| !v.is_nan());
        let last = (header[32] == 1).then(|| Last {
            ts: i64::from_le_bytes(word(33)),
            seq: u64::from_le_bytes(word(41)),
            value: float(49),
        });
        Ok(Summary {
            count: u64::from_le_bytes(word(0)),
            min: float(8),
            max: float(16),
            sum: float(24),
            last,
            p50: quantile(57),
            p95: quantile(65),
            p99: quantile(73),
        })
    }
}

fn corrupt(message: impl Into<String>) -> Error {
    Error::Corrupt(message.into())
}

#[derive(Serialize, Deserialize)]
struct Stored {
    count: u64,
    min: f64,
    max: f64,
    sum: f64,
    last: Option<Last>,
    sketch: String,
    seqs: SeqSet,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aggregates_and_survives_storage() {
        let mut rollup = Rollup::default();
        for (seq, value) in (1..=100).map(|s| (s, s as f64)) {
            assert!(rollup.add(seq, 1_000 + seq as i64, value));
        }
        assert!(!rollup.add(50, 0, 1e9), "seq 50 is already counted");
        let back = Rollup::from_bytes(&rollup.to_bytes()).unwrap();
        for r in [&rollup, &back] {
            assert_eq!((r.count, r.min, r.max, r.sum), (100, 1.0, 100.0, 5050.0));
            assert_eq!(r.mean(), Some(50.5));
            assert_eq!(r.last, Some(Last { ts: 1_100, seq: 100, value: 100.0 }));
            let p50 = r.quantile(0.5).unwrap();
            assert!((p50 - 50.0).abs() <= 1.0, "p50 {p50}");
            let p99 = r.quantile(0.99).unwrap();
            assert!((p99 - 99.0).abs() <= 2.0, "p99 {p99}");
            assert!(r.has(100) && !r.has(101));
        }
        assert!(Rollup::from_bytes(b"{}").is_err());
        assert!(Rollup::from_bytes(&rollup.to_bytes()[..40]).is_err(), "cut short");
        assert!(Summary::from_bytes(&rollup.to_bytes()[..40]).is_err(), "cut short");
    }

    #[test]
    fn the_summary_is_read_without_the_sketch_from_either_stored_form() {
        let mut rollup = Rollup::default();
        for seq in 1..=50 {
            rollup.add(seq, seq as i64, seq as f64 / 2.0);
        }
        let binary = rollup.to_bytes();
        let summary = Summary::from_bytes(&binary).unwrap();
        assert_eq!(summary, rollup.summary());
        assert_eq!((summary.count, summary.mean()), (50, Some(12.75)));
        assert_eq!(summary.last, Some(Last { ts: 50, seq: 50, value: 25.0 }));
        assert_eq!(summary.p50, rollup.quantile(0.5));
        // Only the summary is read: the bytes after it may be anything.
        let mut garbled = binary[..SUMMARY_END].to_vec();
        garbled.extend_from_slice(b"not a sketch");
        assert_eq!(Summary::from_bytes(&garbled).unwrap(), summary);
        assert!(Rollup::from_bytes(&garbled).is_err());

        // A bucket stored as JSON by an older version.
        let legacy = serde_json::to_vec(&Stored {
            count: rollup.count,
            min: rollup.min,
            max: rollup.max,
            sum: rollup.sum,
            last: rollup.last,
            sketch: BASE64.encode(rollup.sketch.to_java_bytes()),
            seqs: rollup.seqs.clone(),
        })
        .unwrap();
        assert_eq!(Summary::from_bytes(&legacy).unwrap(), summary);
        let from_legacy = Rollup::from_bytes(&legacy).unwrap();
        assert_eq!(from_legacy.summary(), summary);
        assert!(from_legacy.has(50) && !from_legacy.has(51));

        // An empty bucket has no last value and no quantiles.
        let empty = Summary::from_bytes(&Rollup::default().to_bytes()).unwrap();
        assert_eq!((empty.count, empty.last, empty.p50, empty.mean()), (0, None, None, None));
    }

    #[test]
    fn quantiles_stay_within_min_and_max() {
        // Values close together, where the sketch's 1 % can fall below the minimum.
        let mut rollup = Rollup::default();
        for seq in 1..=40 {
            rollup.add(seq, seq as i64, 1008.8 + (seq % 7) as f64 * 0.2);
        }
        for q in [0.0, 0.5, 0.95, 0.99, 1.0] {
            let v = rollup.quantile(q).unwrap();
            assert!((rollup.min..=rollup.max).contains(&v), "q{q} = {v}");
        }
    }
}
