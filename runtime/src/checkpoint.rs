//! The checkpoint port: where a consumer keeps its position, its stage's
//! state and the range it is flushing.
//!
//! The embedded implementation is a SQLite table (`wenu-local`). On AWS no
//! consumer runs in Wenu's code: the event source mappings and Firehose keep
//! their own positions.

use async_trait::async_trait;
use wenu_core::Result;
use wenu_core::stream::Position;

/// What a consumer saved last.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SavedConsumer {
    /// Everything up to and including this position is processed.
    pub position: Option<Position>,
    /// A flush that started and may not have finished: `(first, last)`.
    pub pending: Option<(Position, Position)>,
    /// The stage's state as of `position`.
    pub state: Option<Vec<u8>>,
}

/// Consumers' saved positions. Implementations write the position and the
/// state atomically, so a stage restarts from a state that matches its
/// checkpoint exactly.
#[async_trait]
pub trait Checkpoints: Send + Sync + 'static {
    /// What `consumer` saved last; the default when it never saved.
    async fn load(&self, consumer: &str) -> Result<SavedConsumer>;

    /// Records that the range `first..=last` is about to be flushed, so a
    /// restart redoes exactly that range.
    async fn begin_flush(&self, consumer: &str, first: Position, last: Position) -> Result<()>;

    /// Records that everything up to `position` is processed, with the state
    /// as of it, and clears the pending range.
    async fn commit(&self, consumer: &str, position: Position, state: Vec<u8>) -> Result<()>;
}
