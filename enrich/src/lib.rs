//! Enrich: readings normalised with the registry's business data, then
//! queued as stats jobs.
//!
//! The logic is pure and the same in the enrich Lambda and the embedded
//! pipeline: a [`Catalog`] (a registry snapshot) turns each decoded reading
//! into a [`NormalisedReading`] — converted to its sensor's canonical unit
//! ([`units`]), calibrated (`raw × scale + offset`), given its company and
//! site, and flagged when outside the sensor's valid range. Readings of
//! unknown sensors, in units that don't convert, or out of range are
//! quarantined with their reason; the rest become one stats [`Job`] per
//! series.
//!
//! * [`units`]: unit conversion;
//! * [`catalog`]: the snapshot, indexed by device and sensor;
//! * [`normalise`]: one reading, and a batch into jobs;
//! * [`stage`]: the stream consumer around it (decrypt, quarantine, queue).
//!
//! [`Job`]: wenu_stats::Job

pub mod catalog;
pub mod error;
pub mod normalise;
pub mod stage;
pub mod units;

pub use catalog::{Catalog, DevicePlacement};
pub use error::{Error, Result};
pub use normalise::{
    EnrichedBatch, NormalisedReading, QuarantinedReading, Rejection, enrich_batch, normalise,
};
pub use stage::{CatalogSource, EnrichStage, EnrichTotals, FixedCatalog};
