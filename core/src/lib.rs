//! Wenu's shared domain crate.
//!
//! Everything two or more stages agree on lives here, with no I/O beyond the
//! keyring file:
//!
//! * [`reading`]: the plaintext a device encrypts (a batch of sensor readings with
//!   a per-device sequence number);
//! * [`envelope`]: the binary device wire format (version, key id,
//!   nonce, AES-256-GCM with the device id bound in the AAD);
//! * [`keyring`]: per-device keys with key ids, rotation and retirement, stored
//!   in a file only its owner may read;
//! * [`stream`]: the port of the durable, replayable stream (Kinesis on AWS, an
//!   embedded log on one machine);
//! * [`queue`]: the port of the jobs queue (SQS on AWS, embedded on one machine);
//! * [`table`]: the port of the table store (DynamoDB on AWS, embedded on one
//!   machine), for stats rollups and alarm state;
//! * [`clock`]: wall-clock time as one injectable source, so tests pin the date;
//! * [`catalog`]: sites, sensors and company settings as the registry holds them;
//! * [`fleet`]: the provisioning file a fleet of devices (or the simulator) holds;
//! * [`topic`]: the MQTT topic layout `wenu/{device_id}/telemetry`;
//! * [`failpoint`]: fault injection for crash and isolation tests.

pub mod catalog;
pub mod clock;
pub mod downlink;
pub mod durable;
pub mod envelope;
pub mod error;
pub mod failpoint;
pub mod fleet;
pub mod key_transfer;
pub mod keyring;
pub mod log_throttle;
pub mod queue;
pub mod reading;
pub mod stream;
pub mod table;
pub mod topic;

pub use error::{Error, Result};
