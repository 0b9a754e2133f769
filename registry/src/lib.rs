//! Wenu's registry: companies, sites, devices, sensors and company settings,
//! the business logic that the pipeline looks devices up in.
//!
//! One code path on two databases through sqlx: an SQLite file in WAL mode on
//! one machine, PostgreSQL (RDS) on AWS. The schema evolves through numbered
//! migrations ([`schema`]) written once for both, so later issues add tables
//! (rules, …) without breaking existing data directories. Every change bumps a
//! revision number, which is how stages holding a [`Snapshot`] learn that they
//! should reload, and writes an [`AuditEntry`] in the same transaction. API
//! tokens ([`ApiToken`]) are stored here too, hashed, and so are alarm
//! rules, the channels alarms are sent to (and their silences), and each device's downlink
//! (desired configuration, commands) and state ([`downlink`]).

mod alarms;
mod audit;
mod catalog;
mod channels;
mod credentials;
mod devices;
mod downlink;
mod error;
mod key_retirement;
mod password;
mod provision;
mod schema;
pub mod sources;
mod store;
mod tokens;

pub use audit::AuditEntry;
pub use catalog::Snapshot;
pub use channels::{Channel, MAX_CHANNELS_PER_COMPANY, NewChannel, NewSilence};
pub use credentials::{Revoked, certificate_fingerprint, normalise_fingerprint};
pub use devices::{AuthOutcome, Device, DeviceQuota};
pub use downlink::{
    Command, CommandResult, CommandStatus, DesiredConfig, DeviceState, MAX_COMMAND_TTL_MS,
    MAX_DOCUMENT_BYTES, Presence, Report,
};
pub use error::{Error, Result};
pub use key_retirement::KeyRetirement;
pub use password::{generate_password, hash_password, verify_password};
pub use provision::{Rotation, provision_fleet, provision_into, retire_key, rotate_key};
pub use sources::{RegistryCatalog, RegistryChannels, RegistryKeys, RegistryRules};
pub use store::Registry;
pub use tokens::{ApiToken, MAX_RATE_PER_SECOND, MAX_TOKENS_PER_COMPANY, NewToken, Role};
