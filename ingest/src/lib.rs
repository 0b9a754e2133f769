//! Wenu's edge: where field sensors connect.
//!
//! An embedded MQTT server: [ntex-mqtt](https://github.com/ntex-rs/ntex-mqtt)'s
//! codec and protocol state machine (MQTT 3.1.1 and 5) on ntex's worker
//! threads, and a gate that carries Wenu's contract:
//!
//! * **login** ([`policy::identify`], then the registry): a device
//!   logs in with username = device id and its password, or with a client
//!   certificate whose common name is its device id; its client id is its
//!   device id and it leaves no will ([`policy::check_device_session`]);
//!   failed logins are throttled per address and per id ([`throttle`]);
//! * **publish** ([`policy::check_publish`], then a durable append): a device
//!   may publish only to `wenu/{its id}/telemetry`, at QoS 0 or 1, not
//!   retained, while enabled, within its quotas; payloads over the limit are
//!   refused, and the PUBACK goes out only after the stream has the envelope on
//!   disk. A connection may have [`RECEIVE_MAXIMUM`] publishes in flight; they
//!   are appended in arrival order, share group commits, and are acknowledged
//!   in order. When the stream cannot take one, it is refused (MQTT 5 reason
//!   code) or the connection closed (3.1.1, whose PUBACK cannot carry a
//!   refusal), so the device keeps its copy and sends it again.
//!   What a device reports about itself (`wenu/{id}/reported`) and its
//!   commands' results (`wenu/{id}/results`) go to the registry instead.
//! * **downlink** (`downlink`): a device may subscribe to its own
//!   `wenu/{id}/config` and `wenu/{id}/commands` only, and gets its desired
//!   configuration and pending commands there; the edge records when each
//!   device connects, leaves and was last seen (`reports`).
//! * **one connection per client id**: a newer one closes the older
//!   (`links`), and a device disabled while connected is cut off at its next
//!   publish; alarm readers get their company's alarms through [`EdgePublisher`].
//!
//! The edge never decrypts: it stores the envelope as received.

mod appender;
pub mod certs;
mod counters;
mod device_cache;
mod downlink;
mod error;
mod gate;
mod links;
mod mqtt;
pub mod policy;
mod quota;
mod reports;
mod sequencer;
mod server;
pub mod throttle;
mod tls;

pub use counters::{EdgeCounters, EdgeSnapshot};
pub use device_cache::REVISION_CHECK;
pub use error::{Error, Result};
pub use quota::QuotaConfig;
pub use server::{Edge, EdgeConfig, EdgePublisher, RECEIVE_MAXIMUM, TlsConfig};
pub use throttle::ThrottleConfig;
