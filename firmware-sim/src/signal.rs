//! Sensor signals and fault modes: what a device measures, with no I/O.

use std::str::FromStr;

use rand::Rng;
use rand::rngs::SmallRng;
use wenu_core::catalog::SensorSpec;
use wenu_core::reading::Reading;

/// Ways a simulated device misbehaves, for the later stages to detect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Fault {
    /// Every sensor repeats one value (a flatline).
    Stuck,
    /// Now and then a value a hundred times too large.
    Spike,
    /// Sequence numbers skip now and then (lost messages).
    Gap,
    /// Now and then an earlier message is sent again, byte for byte.
    Replay,
    /// Now and then a ciphertext byte is flipped in transit.
    Tamper,
    /// Readings are sealed with a key the cloud doesn't know.
    WrongKey,
}

impl FromStr for Fault {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "stuck" => Ok(Fault::Stuck),
            "spike" => Ok(Fault::Spike),
            "gap" => Ok(Fault::Gap),
            "replay" => Ok(Fault::Replay),
            "tamper" => Ok(Fault::Tamper),
            "wrong-key" => Ok(Fault::WrongKey),
            other => Err(format!("unknown fault {other:?}: stuck, spike, gap, replay, tamper or wrong-key")),
        }
    }
}

/// (sensor, kind, unit, base, amplitude, noise, plausible range).
type SensorTemplate = (&'static str, &'static str, &'static str, f64, f64, f64, (f64, f64));

/// Every sensor a simulated device may have.
const SENSORS: [SensorTemplate; 4] = [
    ("temp-1", "temperature", "degC", 21.0, 4.0, 0.2, (-40.0, 85.0)),
    ("hum-1", "humidity", "%RH", 45.0, 10.0, 1.0, (0.0, 100.0)),
    ("pres-1", "pressure", "hPa", 1013.0, 6.0, 0.3, (300.0, 1100.0)),
    ("vib-1", "vibration", "mm/s", 2.0, 1.0, 0.5, (0.0, 50.0)),
];

fn sensor_count(index: usize) -> usize {
    2 + index % 3
}

/// How the registry should define the sensors of the `index`-th simulated
/// device: what provisioning a simulated fleet registers.
pub fn sensor_specs(index: usize, device_id: &str) -> Vec<SensorSpec> {
    SENSORS
        .iter()
        .take(sensor_count(index))
        .map(|&(sensor, kind, unit, .., (min, max))| SensorSpec {
            valid_min: Some(min),
            valid_max: Some(max),
            ..SensorSpec::new(device_id, sensor, kind, unit)
        })
        .collect()
}

/// One sensor of a device: a daily-ish cycle plus noise around a base value.
#[derive(Debug, Clone)]
pub struct SensorSignal {
    pub sensor: &'static str,
    pub kind: &'static str,
    pub unit: &'static str,
    base: f64,
    amplitude: f64,
    noise: f64,
    period_ms: f64,
    phase: f64,
}

impl SensorSignal {
    /// The sensors of the `index`-th device: two to four of temperature,
    /// humidity, pressure and vibration, with device-specific offsets.
    pub fn for_device(index: usize, rng: &mut SmallRng) -> Vec<SensorSignal> {
        SENSORS
            .iter()
            .take(sensor_count(index))
            .map(|&(sensor, kind, unit, base, amplitude, noise, _)| SensorSignal {
                sensor,
                kind,
                unit,
                base: base + rng.gen_range(-1.0..1.0) * amplitude * 0.2,
                amplitude,
                noise,
                period_ms: 600_000.0 * rng.gen_range(0.8..1.2),
                phase: rng.gen_range(0.0..std::f64::consts::TAU),
            })
            .collect()
    }

    pub fn sample(&self, ts_ms: i64, rng: &mut SmallRng) -> f64 {
        let cycle = (ts_ms as f64 / self.period_ms * std::f64::consts::TAU + self.phase).sin();
        let value = self.base + self.amplitude * cycle + rng.gen_range(-1.0..1.0) * self.noise;
        if self.kind == "vibration" { value.abs() } else { value }
    }
}

/// The readings a device takes at `ts_ms`, faults applied.
pub fn take_readings(
    sensors: &[SensorSignal],
    ts_ms: i64,
    fault: Option<Fault>,
    rng: &mut SmallRng,
) -> Vec<Reading> {
    sensors
        .iter()
        .map(|s| {
            let value = match fault {
                Some(Fault::Stuck) => s.base,
                Some(Fault::Spike) if rng.gen_ratio(1, 20) => s.sample(ts_ms, rng) * 100.0,
                _ => s.sample(ts_ms, rng),
            };
            Reading { sensor: s.sensor.into(), kind: s.kind.into(), value, unit: s.unit.into() }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn signals_are_plausible_and_faults_show() {
        let mut rng = SmallRng::seed_from_u64(1);
        let sensors = SensorSignal::for_device(2, &mut rng);
        assert_eq!(sensors.len(), 4);
        for t in 0..1000 {
            for r in take_readings(&sensors, t * 1000, None, &mut rng) {
                assert!(r.value.is_finite());
                if r.kind == "temperature" {
                    assert!((10.0..32.0).contains(&r.value), "{r:?}");
                }
            }
        }
        let stuck: Vec<_> = (0..10)
            .map(|t| take_readings(&sensors, t * 1000, Some(Fault::Stuck), &mut rng)[0].value)
            .collect();
        assert!(stuck.windows(2).all(|w| w[0] == w[1]));
        assert_eq!("wrong-key".parse::<Fault>(), Ok(Fault::WrongKey));
        assert!("melt".parse::<Fault>().is_err());
    }
}
