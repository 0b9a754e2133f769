//! The fleet's state and each device's downlink: who is online, silent or
//! offline, which configuration each runs, and the desired configuration
//! and commands the edge delivers. Viewers read; admins and operators
//! change.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use wenu_registry::{DeviceState, MAX_COMMAND_TTL_MS, Presence};
use wenu_stats::SeriesKey;
use wenu_stats::rollup::Last;

use crate::auth::Caller;
use crate::data::{latest_of, own_device};
use crate::error::{ApiError, Result};
use crate::params::{Body, Params, page_size};
use crate::state::ApiState;

#[derive(Deserialize)]
pub(crate) struct FleetParams {
    company: Option<String>,
    site: Option<String>,
    silent_after_secs: Option<u32>,
}

/// One device in the fleet view.
#[derive(Serialize)]
struct FleetEntry {
    #[serde(flatten)]
    state: DeviceState,
    site: Option<String>,
    enabled: bool,
    presence: Presence,
    config_stale: bool,
}

/// `GET /api/v1/fleet`: every device of the company with its presence and
/// configuration, and how many are in each state.
pub(crate) async fn fleet(
    caller: Caller,
    State(state): State<ApiState>,
    Params(params): Params<FleetParams>,
) -> Result<Json<Value>> {
    let company = caller.company(params.company.as_deref())?;
    let silent_after_ms = match params.silent_after_secs {
        Some(secs) => i64::from(secs) * 1000,
        None => state.0.limits.silent_after.as_millis() as i64,
    };
    let now = wenu_core::clock::now_ms();
    let devices = state.0.registry.list_devices(Some(&company)).await?;
    let mut states = state.0.registry.device_states(Some(&company)).await?.into_iter();
    let mut items = Vec::with_capacity(devices.len());
    // Both lists are ordered by device id.
    for device in devices {
        let Some(device_state) = states.by_ref().find(|s| s.device_id == device.id) else { continue };
        if params.site.is_some() && device.site != params.site {
            continue;
        }
        items.push(FleetEntry {
            presence: device_state.presence(now, silent_after_ms),
            config_stale: device_state.config_stale(),
            state: device_state,
            site: device.site,
            enabled: device.enabled,
        });
    }
    let count = |p: Presence| items.iter().filter(|e| e.presence == p).count();
    let counts = json!({
        "devices": items.len(),
        "online": count(Presence::Online),
        "silent": count(Presence::Silent),
        "offline": count(Presence::Offline),
        "never_seen": count(Presence::NeverSeen),
        "config_stale": items.iter().filter(|e| e.config_stale).count(),
    });
    Ok(Json(
        json!({ "at": now, "silent_after_secs": silent_after_ms / 1000, "counts": counts, "items": items }),
    ))
}

#[derive(Deserialize)]
pub(crate) struct CompanyParam {
    company: Option<String>,
}

/// `GET /api/v1/devices/{id}/state`: presence, what the device reported,
/// and its newest reading's sequence number and time.
pub(crate) async fn device_state(
    caller: Caller,
    State(state): State<ApiState>,
    Path(id): Path<String>,
    Params(params): Params<CompanyParam>,
) -> Result<Json<Value>> {
    let company = caller.company(params.company.as_deref())?;
    own_device(&state, &company, &id).await?;
    let device_state = state.0.registry.device_state(&id).await?;
    let now = wenu_core::clock::now_ms();
    let silent_after_ms = state.0.limits.silent_after.as_millis() as i64;
    // Its newest reading, from the stats: the sequence number it has reached
    // (the edge cannot see it; the payload is sealed).
    let mut newest: Option<(String, Last)> = None;
    for spec in state.0.registry.sensors(Some(&id)).await? {
        let series = SeriesKey { company: company.clone(), device: id.clone(), sensor: spec.sensor.clone() };
        if let Some(last) = latest_of(&state, &series, now).await?
            && newest.as_ref().is_none_or(|(_, n)| (last.ts, last.seq) > (n.ts, n.seq))
        {
            newest = Some((spec.sensor, last));
        }
    }
    let last_reading =
        newest.map(|(sensor, last)| json!({ "seq": last.seq, "ts": last.ts, "sensor": sensor }));
    Ok(Json(json!({
        "presence": device_state.presence(now, silent_after_ms),
        "config_stale": device_state.config_stale(),
        "last_reading": last_reading,
        "state": device_state,
    })))
}

/// `GET /api/v1/devices/{id}/config`: the desired configuration, 404 if none.
pub(crate) async fn config(
    caller: Caller,
    State(state): State<ApiState>,
    Path(id): Path<String>,
    Params(params): Params<CompanyParam>,
) -> Result<Json<Value>> {
    let company = caller.company(params.company.as_deref())?;
    own_device(&state, &company, &id).await?;
    let config = state.0.registry.desired_config(&id).await?;
    let config = config.ok_or_else(|| ApiError::NotFound(format!("a configuration of {id}")))?;
    Ok(Json(json!(config)))
}

/// `PUT /api/v1/devices/{id}/config`: a new desired configuration (a JSON
/// object), delivered now or when the device next connects (admin, operator).
pub(crate) async fn put_config(
    caller: Caller,
    State(state): State<ApiState>,
    Path(id): Path<String>,
    Params(params): Params<CompanyParam>,
    Body(document): Body<Value>,
) -> Result<Json<Value>> {
    let company = caller.company_to_manage(params.company.as_deref())?;
    own_device(&state, &company, &id).await?;
    let config = state.0.registry.acting_as(&caller.actor()).set_desired_config(&id, &document).await?;
    Ok(Json(json!(config)))
}

#[derive(Deserialize)]
pub(crate) struct CommandsParams {
    company: Option<String>,
    limit: Option<usize>,
}

/// `GET /api/v1/devices/{id}/commands`: its latest commands, newest first.
pub(crate) async fn commands(
    caller: Caller,
    State(state): State<ApiState>,
    Path(id): Path<String>,
    Params(params): Params<CommandsParams>,
) -> Result<Json<Value>> {
    let company = caller.company(params.company.as_deref())?;
    own_device(&state, &company, &id).await?;
    let limit = page_size(params.limit, 50, 500)?;
    Ok(Json(json!({ "items": state.0.registry.commands(&id, limit as u32).await? })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CommandBody {
    name: String,
    #[serde(default = "empty_object")]
    args: Value,
    /// How long it may wait for the device; an hour if left out.
    ttl_secs: Option<u32>,
}

fn empty_object() -> Value {
    json!({})
}

/// `POST /api/v1/devices/{id}/commands`: queues a command (admin, operator).
pub(crate) async fn send_command(
    caller: Caller,
    State(state): State<ApiState>,
    Path(id): Path<String>,
    Params(params): Params<CompanyParam>,
    Body(body): Body<CommandBody>,
) -> Result<Response> {
    let company = caller.company_to_manage(params.company.as_deref())?;
    own_device(&state, &company, &id).await?;
    let ttl_ms = i64::from(body.ttl_secs.unwrap_or(3600)) * 1000;
    if ttl_ms > MAX_COMMAND_TTL_MS {
        return Err(ApiError::bad("ttl_secs: at most 30 days"));
    }
    let registry = state.0.registry.acting_as(&caller.actor());
    let command = registry.send_command(&id, &body.name, &body.args, ttl_ms).await?;
    Ok((StatusCode::CREATED, Json(json!(command))).into_response())
}
