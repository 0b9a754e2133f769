//! Reading every shard of a stream for one consumer, from its checkpoints,
//! finishing a shard's parents before starting it (so a device's records
//! stay in order across a reshard), as the KCL and Lambda's pollers do.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use wenu_core::Result;
use wenu_core::stream::{Position, Record, Shard, ShardId, StartAt, Stream};

/// How often the shard list is fetched again (a reshard shows up within it).
const RELIST_EVERY: Duration = Duration::from_secs(30);

pub struct ShardReader {
    stream: Arc<dyn Stream>,
    consumer: String,
    shards: Vec<Shard>,
    listed_at: Option<Instant>,
    /// Where the next read of each shard starts.
    next: HashMap<ShardId, StartAt>,
    /// Closed shards read to their end.
    done: HashSet<ShardId>,
    /// The shard to look at first next time, so no shard starves another.
    cursor: usize,
}

impl ShardReader {
    pub fn new(stream: Arc<dyn Stream>, consumer: impl Into<String>) -> Self {
        ShardReader {
            stream,
            consumer: consumer.into(),
            shards: Vec::new(),
            listed_at: None,
            next: HashMap::new(),
            done: HashSet::new(),
            cursor: 0,
        }
    }

    pub fn consumer(&self) -> &str {
        &self.consumer
    }

    /// Up to `max` records of the next shard that has any; `None` when every
    /// shard has been read up to now.
    pub async fn read(&mut self, max: usize) -> Result<Option<(ShardId, Vec<Record>)>> {
        if self.listed_at.is_none_or(|at| at.elapsed() >= RELIST_EVERY) {
            self.shards = self.stream.shards().await?;
            self.listed_at = Some(Instant::now());
        }
        let count = self.shards.len();
        for step in 0..count {
            let shard = self.shards[(self.cursor + step) % count].clone();
            if self.done.contains(&shard.id) || self.waits_for_parent(&shard) {
                continue;
            }
            let start = match self.next.get(&shard.id) {
                Some(start) => *start,
                None => {
                    let checkpoint = self.stream.checkpoint(&self.consumer, &shard.id).await?;
                    checkpoint.map_or(StartAt::Oldest, StartAt::After)
                }
            };
            let records = self.stream.read_shard(&shard.id, start, max).await?;
            let Some(last) = records.last() else {
                if shard.closed {
                    self.done.insert(shard.id.clone());
                }
                self.next.insert(shard.id, start);
                continue;
            };
            self.next.insert(shard.id.clone(), StartAt::After(last.position));
            self.cursor = (self.cursor + step + 1) % count;
            return Ok(Some((shard.id, records)));
        }
        Ok(None)
    }

    fn waits_for_parent(&self, shard: &Shard) -> bool {
        shard
            .parents
            .iter()
            .any(|parent| self.shards.iter().any(|s| &s.id == parent) && !self.done.contains(parent))
    }

    /// The next read of `shard` starts at `start` again (a retry).
    pub fn rewind(&mut self, shard: &ShardId, start: StartAt) {
        self.next.insert(shard.clone(), start);
    }

    /// Everything of `shard` up to `position` is processed.
    pub async fn commit(&self, shard: &ShardId, position: Position) -> Result<()> {
        self.stream.commit_checkpoint(&self.consumer, shard, position).await
    }

    /// Forgets where reading stood, to start again from the checkpoints.
    pub fn reset(&mut self) {
        self.next.clear();
        self.done.clear();
        self.listed_at = None;
    }
}
