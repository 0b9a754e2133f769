//! The commands of the `wenu` binary, as a library so that `wenu-bench` can
//! start the same server in-process and provision fleets the same way.
//!
//! `serve` runs the embedded pipeline (the MQTT edge, the durable stream,
//! the lake, enrich, the stats queue and workers, the HTTP API with its
//! dashboard and backoffice, `/metrics`); the other modules manage the data
//! directory (devices, sensors, companies, tokens, certificates), inspect it
//! (`status`, `sql`, `stats`, `queue`), or drive load against a server
//! (`sim`, `demo`). Not a stable API: the binary is the product.

pub mod alarms;
pub mod alarms_cmd;
pub mod allocator;
pub mod api_ports;
pub mod bench;
pub mod certs;
pub mod channels_cmd;
pub mod config;
pub mod demo;
pub mod devices;
pub mod http;
pub mod lake;
pub mod priority;
pub mod registry_cmd;
pub mod replay;
pub mod serve;
#[cfg(feature = "aws")]
pub mod serve_aws;
pub mod sim;
pub mod sql;
pub mod stats_cmd;
pub mod status;
pub mod tokens_cmd;
