//! Wenu's data lake: what Firehose, the decrypt Lambda and S3 do on AWS.
//!
//! A [`LakeStage`] consumes the stream in size-or-time batches (the consumer
//! runtime of `wenu-local`), decrypts each record with the shared decoder,
//! and writes through any `object_store` backend:
//!
//! * [`layout`]: Hive partitions `readings/company=/date=/hour=` by event time,
//!   `quarantine/reason=/date=` for rejected records, files named by the
//!   stream range they cover so a redo overwrites rather than duplicates;
//! * [`encode`]: rows to Parquet (zstd, statistics, ~1M-row groups) and back;
//! * [`compact`]: one file per closed hour partition, swapped in atomically;
//! * [`inventory`]: files, rows and quarantined records of a local lake;
//! * [`sql`]: SQL over the lake (DataFusion), tables `readings` and `quarantine`.

pub mod compact;
pub mod encode;
mod error;
pub mod inventory;
pub mod layout;
#[cfg(feature = "sql")]
pub mod sql;
pub mod stage;

pub use error::{Error, Result};
pub use stage::{BatchReport, LakeStage, LakeTotals};
