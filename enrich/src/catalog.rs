//! The registry as enrich sees it: an immutable snapshot indexed for lookups
//! by device and sensor name.

use std::collections::HashMap;

use wenu_core::catalog::{CompanySettings, SensorSpec, Site};
use wenu_stats::Retention;

/// Where a device is: its company and, if placed, its site.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevicePlacement {
    pub device: String,
    pub company: String,
    pub site: Option<String>,
}

/// A snapshot of the registry at one revision.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    revision: i64,
    /// device → sensor name → spec.
    sensors: HashMap<String, HashMap<String, SensorSpec>>,
    /// device → (site id, site name).
    sites: HashMap<String, (String, String)>,
    retention: HashMap<String, Retention>,
}

impl Catalog {
    pub fn new(
        revision: i64,
        devices: impl IntoIterator<Item = DevicePlacement>,
        sites: impl IntoIterator<Item = Site>,
        sensors: impl IntoIterator<Item = SensorSpec>,
        settings: impl IntoIterator<Item = CompanySettings>,
    ) -> Self {
        let site_names: HashMap<(String, String), String> =
            sites.into_iter().map(|s| ((s.company, s.id), s.name)).collect();
        let sites = devices
            .into_iter()
            .filter_map(|d| {
                let site = d.site?;
                let name =
                    site_names.get(&(d.company, site.clone())).cloned().unwrap_or_else(|| site.clone());
                Some((d.device, (site, name)))
            })
            .collect();
        let mut by_device: HashMap<String, HashMap<String, SensorSpec>> = HashMap::new();
        for spec in sensors {
            by_device.entry(spec.device.clone()).or_default().insert(spec.sensor.clone(), spec);
        }
        let retention = settings
            .into_iter()
            .map(|s| {
                let days = s.stats_retention;
                (s.company, Retention::from_days(days.minute, days.hour, days.day))
            })
            .collect();
        Catalog { revision, sensors: by_device, sites, retention }
    }

    /// The registry revision this snapshot was taken at.
    pub fn revision(&self) -> i64 {
        self.revision
    }

    pub fn sensor(&self, device: &str, sensor: &str) -> Option<&SensorSpec> {
        self.sensors.get(device)?.get(sensor)
    }

    /// The device's site id and name.
    pub fn site(&self, device: &str) -> Option<&(String, String)> {
        self.sites.get(device)
    }

    pub fn retention(&self, company: &str) -> Retention {
        self.retention.get(company).copied().unwrap_or_default()
    }

    pub fn sensor_count(&self) -> usize {
        self.sensors.values().map(HashMap::len).sum()
    }
}
