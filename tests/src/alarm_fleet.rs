//! An alarm fleet for the alarm tests: devices of company `acme` with keys,
//! a `temp-1` sensor each, sealed messages of one reading, and the alarms
//! stage over a real table store.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::Notify;
use wenu_alarms::{
    AlarmStage, AlarmStore, Condition, Direction, DispatchOptions, FixedRules, Rule, Severity,
};
use wenu_core::catalog::SensorSpec;
use wenu_core::clock::ManualClock;
use wenu_core::envelope::seal;
use wenu_core::keyring::Keyring;
use wenu_core::reading::{Reading, ReadingBatch};
use wenu_core::stream::{Position, Record};
use wenu_decrypt::{DecodeLimits, DeviceEntry, Directory, FixedKeys};
use wenu_enrich::{Catalog, DevicePlacement, FixedCatalog};
use wenu_local::SqliteTable;

/// 2026-11-26T17:30:00Z, which the alarm table takes for now: what the
/// tests write at T0 expires after the alarm history's retention, whatever
/// today is.
pub const T0: i64 = 1_795_714_200_000;

/// Devices of company acme with their keys, placements and sensors, and an
/// alarm table whose clock reads [`T0`].
pub struct Fleet {
    pub dir: tempfile::TempDir,
    pub keyring: Keyring,
    pub directory: Directory,
    pub catalog: Catalog,
    pub table: SqliteTable,
}

impl Fleet {
    /// `devices` of company acme, each with a `temp-1` sensor in degC.
    pub fn new(devices: &[&str]) -> Fleet {
        let dir = tempfile::tempdir().unwrap();
        let mut keyring = Keyring::default();
        let mut entries = Vec::new();
        for device in devices {
            keyring.add_key(device);
            let entry = DeviceEntry {
                company: "acme".into(),
                created_at: T0 - 3_600_000,
                enabled: true,
                site: None,
                seq_reset_at: None,
            };
            entries.push((device.to_string(), entry));
        }
        let placements = devices.iter().map(|d| DevicePlacement {
            device: d.to_string(),
            company: "acme".into(),
            site: None,
        });
        let sensors = devices.iter().map(|d| SensorSpec::new(d, "temp-1", "temperature", "degC"));
        let catalog = Catalog::new(1, placements, [], sensors, []);
        let table = SqliteTable::open(&dir.path().join("alarms.db")).unwrap().with_clock(ManualClock::at(T0));
        Fleet { dir, keyring, directory: Directory::new(entries), catalog, table }
    }

    pub fn store(&self) -> AlarmStore {
        AlarmStore::new(Arc::new(self.table.clone()), 90)
    }

    /// A stage over this fleet's table, as after a fresh start.
    pub fn stage(&self, rules: Vec<Rule>, wake: Arc<Notify>) -> AlarmStage {
        AlarmStage::new(
            Box::new(FixedKeys::new(self.keyring.clone(), self.directory.clone())),
            Box::new(FixedCatalog::new(self.catalog.clone())),
            Box::new(FixedRules::new(rules)),
            self.store(),
            wake,
            DecodeLimits { max_future_ms: i64::MAX / 4, max_before_created_ms: i64::MAX / 4 },
        )
    }

    /// A message of `device` with one `temp-1` reading.
    pub fn record(&self, position: u64, device: &str, seq: u64, ts: i64, value: f64) -> Record {
        let key = self.keyring.current_key(device).unwrap();
        let batch = ReadingBatch {
            seq,
            ts,
            readings: vec![Reading {
                sensor: "temp-1".into(),
                kind: "temperature".into(),
                value,
                unit: "degC".into(),
            }],
        };
        let mut nonce = [0u8; 12];
        nonce[4..].copy_from_slice(&seq.to_be_bytes());
        Record {
            position: Position::new(position),
            device_id: device.into(),
            topic: format!("wenu/{device}/telemetry"),
            received_at: ts,
            payload: Bytes::from(seal(device, key.id, &key.key, nonce, &batch.to_json())),
        }
    }
}

/// A critical rule of acme.
pub fn rule(id: &str, sensor: Option<&str>, condition: Condition) -> Rule {
    Rule {
        company: "acme".into(),
        id: id.into(),
        name: format!("rule {id}"),
        device: None,
        sensor: sensor.map(Into::into),
        condition,
        severity: Severity::Critical,
        enabled: true,
        version: T0 - 10_000,
    }
}

/// Critical above 30 on `temp-1`, cleared below 29.
pub fn too_hot() -> Rule {
    rule(
        "too-hot",
        Some("temp-1"),
        Condition::Threshold { direction: Direction::Above, limit: 30.0, hysteresis: 1.0, for_ms: 0 },
    )
}

/// Three tries, milliseconds apart.
pub fn fast_retries() -> DispatchOptions {
    DispatchOptions {
        max_attempts: 3,
        first_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(50),
        send_timeout: Duration::from_secs(5),
    }
}
