//! Alarms: anomaly detection on the stream, isolated from the rest of the
//! pipeline.
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
//!
//! Around it, through ports:
//!
//! * [`store`]: detector state, alarms, history and the notification
//!   outbox in the table store, written idempotently per transition;
//! * [`stage`]: the stream consumer (its own checkpoint) that runs the rules;
//! * [`notify`]: the notifier port and the dispatcher that delivers each
//!   transition once per channel, with retries and dead letters;
//! * [`channel`]: a company's channels (`https://` webhooks, `mailto:`
//!   addresses), each with its [`route`] (severities, rules, escalation
//!   delay), quiet while a [`silence`] covers the alarm;
//! * [`webhook`]: signed webhooks, one notifier, reaching only what
//!   [`egress`] allows, with bodies as Wenu's JSON or as Slack's and
//!   Teams' messages ([`chat`]);
//! * [`email`]: e-mails through an SMTP relay;
//! * [`escalate`]: raised alarms nobody acknowledged, sent on to the
//!   channels that wait for them.

pub mod channel;
pub mod chat;
pub mod clock;
pub mod detector;
pub mod egress;
pub mod email;
pub mod engine;
pub mod error;
pub mod escalate;
pub mod lifecycle;
pub mod notify;
pub mod route;
pub mod rule;
pub mod silence;
pub mod stage;
pub mod store;
pub mod webhook;

pub use channel::{Channel, ChannelDirectory, ChannelKind, ChannelNotifier, FixedChannels};
pub use chat::WebhookFormat;
pub use clock::Clock;
pub use egress::WebhookPolicy;
pub use email::{Attachment, EmailNotifier, MailSender, SmtpSender};
pub use engine::{RuleSet, SeriesState, Transition, apply_message, apply_reading, check_silence};
pub use error::{Error, Result};
pub use escalate::Escalator;
pub use lettre::message::Mailbox;
pub use lifecycle::{Change, Phase};
pub use notify::{DispatchOptions, Dispatcher, Notifier, NotifyError};
pub use route::Route;
pub use rule::{Condition, Direction, Rule, Severity};
pub use silence::Silence;
pub use stage::{AlarmStage, AlarmTotals, FixedRules, RuleSource};
pub use store::{AckOutcome, Acknowledgement, Alarm, AlarmStore, DeadLetter, Notification, StateKey};
pub use webhook::WebhookNotifier;
