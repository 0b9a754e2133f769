//! What the registry says about sites, sensors and companies: the business
//! data enrich normalises readings with. The registry stores these; stages
//! read them as a snapshot.

use serde::{Deserialize, Serialize};

/// A place a company's devices are installed at.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Site {
    pub company: String,
    pub id: String,
    pub name: String,
}

/// One sensor of a device, as the registry defines it: what it measures,
/// the unit its values are stored in, how to calibrate it and which values
/// are plausible.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SensorSpec {
    pub device: String,
    /// The name the device uses for it in its readings (`temp-1`).
    pub sensor: String,
    /// `temperature`, `humidity`, … (free text, for people and dashboards).
    pub kind: String,
    /// The canonical unit: readings in another unit are converted to it.
    pub unit: String,
    /// Calibrated value = raw × `scale` + `offset`, in the canonical unit.
    pub scale: f64,
    pub offset: f64,
    /// Calibrated values outside `[valid_min, valid_max]` are flagged.
    pub valid_min: Option<f64>,
    pub valid_max: Option<f64>,
}

impl SensorSpec {
    /// A sensor with no calibration and no valid range.
    pub fn new(device: &str, sensor: &str, kind: &str, unit: &str) -> Self {
        SensorSpec {
            device: device.to_owned(),
            sensor: sensor.to_owned(),
            kind: kind.to_owned(),
            unit: unit.to_owned(),
            scale: 1.0,
            offset: 0.0,
            valid_min: None,
            valid_max: None,
        }
    }
}

/// How long a company's stats are kept per resolution, in days; `None`
/// means the platform default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatsRetentionDays {
    pub minute: Option<u32>,
    pub hour: Option<u32>,
    pub day: Option<u32>,
}

/// Per-company settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompanySettings {
    pub company: String,
    pub stats_retention: StatsRetentionDays,
}
