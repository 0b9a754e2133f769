//! Wenu's edge: where field sensors connect.
//!
//! An embedded MQTT server ([rmqtt](https://github.com/rmqtt/rmqtt) used as a
//! library) with two hooks that carry Wenu's contract:
//!
//! * **authenticate** ([`policy::identify`], then the registry): a device
//!   logs in with username = device id and its password, or with a client
//!   certificate whose common name is its device id; its client id is its
//!   device id and it leaves no will ([`policy::check_device_session`]);
//!   failed logins are throttled per address and per id ([`throttle`]);
//! * **publish** ([`policy::check_publish`], then a durable append): a device
//!   may publish only to `wenu/{its id}/telemetry`, at QoS 0 or 1, not
//!   retained, while enabled, within its quotas; payloads over the limit are
//!   refused, and the PUBACK goes out only after the stream has the envelope on
//!   disk. When the stream cannot take it, the publish is refused (MQTT 5
//!   reason code) or the connection closed (3.1.1, whose PUBACK cannot carry a
//!   refusal), so the device keeps its copy and sends it again.
//!
//! The edge never decrypts: it stores the envelope as received.

pub mod certs;
mod counters;
mod device_cache;
mod error;
mod hooks;
pub mod policy;
mod quota;
mod server;
pub mod throttle;

pub use counters::{EdgeCounters, EdgeSnapshot};
pub use device_cache::REVISION_CHECK;
pub use error::{Error, Result};
pub use quota::QuotaConfig;
pub use server::{Edge, EdgeConfig, EdgePublisher, TlsConfig};
pub use throttle::ThrottleConfig;
