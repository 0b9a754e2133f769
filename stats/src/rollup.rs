//! One bucket of one series: the aggregate dashboards read.

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

    /// The stored form: JSON, with the sketch in DDSketch's portable binary
    /// encoding (the one sketches-java and the Go and Python ports read).
    pub fn to_bytes(&self) -> Vec<u8> {
        let stored = Stored {
            count: self.count,
            min: self.min,
            max: self.max,
            sum: self.sum,
            last: self.last,
            sketch: BASE64.encode(self.sketch.to_java_bytes()),
            seqs: self.seqs.clone(),
        };
        serde_json::to_vec(&stored).expect("a rollup always serializes")
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let stored: Stored = serde_json::from_slice(bytes).map_err(|e| Error::Corrupt(e.to_string()))?;
        let sketch = BASE64.decode(&stored.sketch).map_err(|e| Error::Corrupt(e.to_string()))?;
        let sketch = DDSketch::from_java_bytes(&sketch).map_err(|e| Error::Corrupt(format!("{e:?}")))?;
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
