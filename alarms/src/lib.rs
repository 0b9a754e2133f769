//! Alarms: anomaly detection on the stream, isolated from the rest of the
//! pipeline (seed elements 10–12, DESIGN.md §7).
//!
//! The logic is pure and the same in the alarms Lambda and the embedded
//! pipeline:
//!
//! * [`rule`]: rules as the registry stores them — threshold with
//!   hysteresis, rate of change, flatline, missing data, EWMA z-score —
//!   with validation;
//! * [`detector`]: what each condition concludes from one reading;
//! * [`lifecycle`]: the debounced normal → raised → cleared phases;
//! * [`engine`]: which rules watch a reading and what a reading, a message
//!   or the passing of time does to a (rule, series), in event time.

pub mod detector;
pub mod engine;
pub mod error;
pub mod lifecycle;
pub mod rule;

pub use engine::{RuleSet, SeriesState, Transition, apply_message, apply_reading, check_silence};
pub use error::{Error, Result};
pub use lifecycle::{Change, Phase};
pub use rule::{Condition, Direction, Rule, Severity};
