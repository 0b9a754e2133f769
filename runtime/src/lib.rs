//! Wenu's consumer runtime: how a stage is fed from the stream when Wenu
//! runs the consumers itself (the embedded pipeline). On AWS, Lambda's event
//! source mappings and Firehose play this part and call the same stages.
//!
//! * [`Stage`]: the work done on each batch, written once per stage;
//! * [`Consumer`]: reads a shard from a named checkpoint, batches by size or
//!   time ([`Batcher`]), moves the checkpoint once the stage's output is
//!   durable, retries failed batches with backoff;
//! * [`Supervisor`]: runs each consumer, builds its stage again after a
//!   panic, and reports every consumer's [`Health`] and lag;
//! * [`Checkpoints`]: the port where consumers keep their positions.
//!
//! The runtime speaks only to the ports of `wenu-core` and this crate, so it
//! runs over any backend; `wenu-local` implements them on SQLite.

pub mod batcher;
mod checkpoint;
pub mod consumer;
mod health;
mod stage;
mod supervisor;

pub use batcher::{BatchLimits, Batcher};
pub use checkpoint::{Checkpoints, SavedConsumer};
pub use consumer::{Consumer, ConsumerOptions};
pub use health::{ConsumerHealth, ConsumerState, FAILING_AFTER, Health};
pub use stage::Stage;
pub use supervisor::{Supervisor, starting_with};
