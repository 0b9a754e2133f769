//! A simulated fleet of field sensors, for the demo, the tests and the
//! benchmarks.
//!
//! Each device behaves like real firmware: one MQTT connection, a sequence
//! number that only grows, a random nonce per message, readings sealed with
//! its key, and a bounded offline buffer of unacknowledged messages that it
//! sends again after reconnecting. Fault modes ([`Fault`]) make some devices
//! misbehave for the later stages to catch. Devices follow their downlink
//! as docs/devices.md asks of firmware: configuration, commands, new keys.

mod device;
mod downlink;
mod error;
mod fleet_run;
mod load;
mod signal;

pub use error::{Error, Result};
pub use fleet_run::{FleetReport, SimConfig, SimTls, run_fleet};
pub use load::{LoadConfig, LoadReport, run_load};
pub use signal::{Fault, SensorSignal, sensor_specs};
