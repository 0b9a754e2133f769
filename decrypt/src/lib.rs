//! The decrypt stage of the pipeline, as pure logic (no I/O).
//!
//! Every consumer of the stream that needs the readings (the lake, the alarms,
//! enrich) runs the same [`Decoder`]: it opens a record's envelope with the
//! device's key, parses the plaintext, checks it, and drops what the device
//! already sent. What cannot be used comes back as a [`Rejection`] with a
//! stable reason label, for the quarantine and the metrics.
//!
//! * [`directory`]: what the decoder needs to know of each device (company,
//!   since when it exists, enabled), a snapshot of the registry;
//! * [`sequence`]: per-device sequence tracking: duplicates, gaps, completeness;
//! * [`decoder`]: the stage itself.
//!
//! The decoder's [`sequence::SequenceTracker`] is its only state. Consumers
//! save it with their checkpoint so that re-processing a range after a crash
//! makes exactly the same decisions.

pub mod decoder;
pub mod directory;
pub mod rejection;
pub mod sequence;

pub use decoder::{DecodeLimits, DecodedMessage, Decoder, Outcome};
pub use directory::{DeviceEntry, Directory, FixedKeys, KeySource};
pub use rejection::{RejectReason, Rejection};
pub use sequence::{DeviceCompleteness, SeqSnapshot, SeqVerdict, SequenceTracker};
