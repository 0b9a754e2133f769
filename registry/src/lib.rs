//! Wenu's registry: companies and their devices, the business logic that the
//! pipeline looks devices up in (seed element 17).
//!
//! On one machine it is an SQLite file in WAL mode; the schema evolves through
//! numbered migrations ([`schema`]), so every later issue adds tables (sites,
//! sensors, rules, tokens) without breaking existing data directories.

mod error;
mod password;
mod provision;
mod schema;
mod store;

pub use error::{Error, Result};
pub use password::{generate_password, hash_password, verify_password};
pub use provision::{provision_fleet, rotate_key};
pub use store::{AuthOutcome, Device, Registry};
