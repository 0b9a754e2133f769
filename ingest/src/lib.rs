//! Wenu's edge: where field sensors connect.
//!
//! An embedded MQTT server ([rmqtt](https://github.com/rmqtt/rmqtt) used as a
//! library) with two hooks that carry Wenu's contract:
//!
//! * **authenticate** ([`policy::authenticate`] via the registry): a device
//!   logs in with username = device id and its password, or with a client
//!   certificate whose common name is its device id;
//! * **publish** ([`policy::check_publish`], then a durable append): a device
//!   may publish only to `wenu/{its id}/telemetry`, payloads over the limit are
//!   refused, and the PUBACK goes out only after the stream has the envelope on
//!   disk. When the stream cannot take it, the publish is refused (MQTT 5
//!   reason code) or the connection closed (3.1.1, whose PUBACK cannot carry a
//!   refusal), so the device keeps its copy and sends it again.
//!
//! The edge never decrypts: it stores the envelope as received.

pub mod certs;
mod counters;
mod error;
mod hooks;
pub mod policy;
mod server;

pub use counters::{EdgeCounters, EdgeSnapshot};
pub use error::{Error, Result};
pub use server::{Edge, EdgeConfig, EdgePublisher, TlsConfig};
