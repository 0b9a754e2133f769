//! Wenu's HTTP API and web pages, as one axum [`Router`]: served by
//! `wenu serve` on one machine, by API Gateway and a Lambda (lambda_http)
//! on AWS.
//!
//! * `/api/v1/…`: JSON (or CSV) over bearer tokens from the registry, each
//!   scoped to one company ([`auth`]), rate-limited per token
//!   ([`rate_limit`]): stats, latest values, raw readings, completeness
//!   ([`data`]), the registry and its audit log ([`manage`]), the fleet's
//!   state and each device's configuration and commands (`downlink`), live
//!   readings and alarm transitions as server-sent events ([`live`]), alarm
//!   rules, alarms with acknowledgement and history, webhooks (`alarms`).
//! * `/dashboard` and `/backoffice`: the web pages ([`pages`]).
//!
//! The handlers reach storage only through ports ([`state`]): the registry,
//! the stats table, a lake reader and a device key store.

mod alarms;
pub mod auth;
mod channels;
mod data;
mod downlink;
pub mod error;
pub mod live;
mod manage;
mod pages;
pub mod params;
pub mod rate_limit;
mod recent;
pub mod state;
mod stored_keys;
mod validators;

use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde_json::json;
use wenu_runtime::Health;

pub use error::ApiError;
pub use live::{LiveBatch, LiveHub};
pub use params::{StatsBucket, parse_time, rfc3339};
pub use state::{ApiLimits, ApiState, DeviceKeys, LakeReader, RawReading, ReadingsQuery};
pub use stored_keys::StoredKeys;

/// The API and the pages; `/health` answers as `/api/v1/health` does.
pub fn router(state: ApiState) -> Router {
    let api = Router::new()
        .route("/health", get(health))
        .route("/me", get(manage::me))
        .route("/series", get(data::series))
        .route("/stats", get(data::stats))
        .route("/latest", get(data::latest))
        .route("/readings", get(data::readings))
        .route("/completeness", get(data::completeness))
        .route("/live", get(live::live))
        .route("/companies", get(manage::companies).post(manage::create_company))
        .route("/companies/{company}/settings", get(manage::settings).put(manage::set_settings))
        .route("/sites", get(manage::sites))
        .route("/sites/{site}", put(manage::put_site).delete(manage::delete_site))
        .route("/devices", get(manage::devices).post(manage::provision))
        .route("/devices/{device}", get(manage::device).patch(manage::patch_device))
        .route("/devices/{device}/rotate-key", post(manage::rotate_key))
        .route("/devices/{device}/reset-sequence", post(manage::reset_sequence))
        .route("/devices/{device}/revoke-certificate", post(manage::revoke_certificate))
        .route("/fleet", get(downlink::fleet))
        .route("/devices/{device}/state", get(downlink::device_state))
        .route("/devices/{device}/config", get(downlink::config).put(downlink::put_config))
        .route("/devices/{device}/commands", get(downlink::commands).post(downlink::send_command))
        .route("/devices/{device}/sensors", get(manage::sensors))
        .route("/devices/{device}/sensors/{sensor}", put(manage::put_sensor).delete(manage::delete_sensor))
        .route("/tokens", get(manage::tokens).post(manage::create_token))
        .route("/tokens/{id}", axum::routing::delete(manage::revoke_token))
        .route("/audit", get(manage::audit))
        .route("/rules", get(alarms::rules))
        .route("/rules/{id}", put(alarms::put_rule).delete(alarms::delete_rule))
        .route("/alarms", get(alarms::active))
        .route("/alarms/history", get(alarms::history))
        .route("/alarms/dead-letters", get(alarms::dead_letters))
        .route("/alarms/{id}", get(alarms::alarm))
        .route("/alarms/{id}/ack", post(alarms::acknowledge))
        .route("/channels", get(channels::channels).post(channels::add_channel))
        .route("/channels/{id}", axum::routing::delete(channels::delete_channel))
        .route("/channels/{id}/test", post(channels::test_channel))
        // The name channels had when they were webhooks only.
        .route("/webhooks", get(channels::channels).post(channels::add_channel))
        .route("/webhooks/{id}", axum::routing::delete(channels::delete_channel))
        .route("/silences", get(channels::silences).post(channels::add_silence))
        .route("/silences/{id}/end", post(channels::end_silence))
        .fallback(|| async { ApiError::NotFound("endpoint".into()) });
    Router::new()
        .nest("/api/v1", api)
        .route("/health", get(health))
        .route("/", get(pages::root))
        .route("/dashboard", get(pages::dashboard))
        .route("/backoffice", get(pages::backoffice))
        .route("/assets/common.js", get(pages::common_js))
        .route("/assets/dashboard.js", get(pages::dashboard_js))
        .route("/assets/fleet.js", get(pages::fleet_js))
        .route("/assets/notify.js", get(pages::notify_js))
        .route("/assets/backoffice.js", get(pages::backoffice_js))
        .route("/assets/style.css", get(pages::style_css))
        .route("/assets/uPlot.iife.min.js", get(pages::uplot_js))
        .route("/assets/uPlot.min.css", get(pages::uplot_css))
        .layer(middleware::from_fn_with_state(state.clone(), forget_after_changes))
        .layer(middleware::from_fn(record_metrics))
        .with_state(state)
}

/// `GET /api/v1/health` (and `/health`), unauthenticated: whether the
/// stores answer and no consumer of the pipeline is failing.
async fn health(State(state): State<ApiState>) -> Response {
    let registry = state.0.registry.ping().await.map_err(|e| e.to_string());
    let stats = state.0.stats.last("health#probe", 0..1).await.map_err(|e| e.to_string());
    let consumers = state.0.consumers.as_ref().map(Health::snapshot);
    let consumers_ok = state.0.consumers.as_ref().is_none_or(Health::is_ok);
    let ok = registry.is_ok() && stats.is_ok() && consumers_ok;
    let status = if ok { axum::http::StatusCode::OK } else { axum::http::StatusCode::SERVICE_UNAVAILABLE };
    let body = json!({
        "status": if ok { "ok" } else { "degraded" },
        "registry": registry.err().unwrap_or_else(|| "ok".into()),
        "stats": stats.err().unwrap_or_else(|| "ok".into()),
        "consumers": consumers,
    });
    (status, axum::Json(body)).into_response()
}

/// Requests and their latency per route and status, for `/metrics`.
/// A change through the API (any method but GET and HEAD, answered with
/// success) may revoke a token or move a device: the registry answers kept
/// for a second are dropped.
async fn forget_after_changes(State(state): State<ApiState>, request: Request, next: Next) -> Response {
    let reads_only = matches!(*request.method(), Method::GET | Method::HEAD);
    let response = next.run(request).await;
    if !reads_only && response.status().is_success() {
        state.0.recent.forget_all();
    }
    response
}

async fn record_metrics(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = request.method().to_string();
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!("wenu_api_requests_total", "route" => route.clone(), "method" => method, "status" => status)
        .increment(1);
    metrics::histogram!("wenu_api_request_duration_seconds", "route" => route)
        .record(started.elapsed().as_secs_f64());
    response
}
