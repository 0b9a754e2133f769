//! Company stats: what dashboards read.
//!
//! For every series (company, device, sensor) and every [`Resolution`]
//! (1 min, 1 h, 1 day), a [`Rollup`] per time bucket: count, min, max, sum,
//! mean, last, and p50/p95/p99 from a mergeable DDSketch. Rollups are items
//! of the table store, keyed `{company}#{device}#{sensor}#{resolution}` by
//! bucket start, and expire after the company's retention for that resolution.
//!
//! Enrich sends one [`Job`] per series and stream batch through the jobs
//! queue; [`apply_job`] folds it into the buckets it touches. Jobs are
//! delivered at least once, so folding must be idempotent: each bucket
//! remembers which sequence numbers of its device it already counted
//! ([`SeqSet`], kept as ranges) and skips them. A job applied twice, or a
//! job that a crash interrupted after some of its buckets were written,
//! therefore counts every reading exactly once. Late readings simply update
//! their older bucket.
//!
//! * [`resolution`]: buckets and default retention;
//! * [`rollup`]: one bucket's aggregate, with its stored form;
//! * [`seqset`]: sets of sequence numbers as ranges;
//! * [`job`]: what enrich sends, and [`apply_job`], the stats worker's handler;
//! * [`worker`]: the embedded runtime's pool of stats workers on the jobs queue.

pub mod error;
pub mod job;
pub mod resolution;
pub mod rollup;
pub mod seqset;
pub mod worker;

pub use error::{Error, Result};
pub use job::{
    Job, JobReport, Point, Retention, SeriesKey, apply_job, apply_jobs, read_series, read_summaries,
};
pub use resolution::Resolution;
pub use rollup::Rollup;
pub use seqset::SeqSet;
