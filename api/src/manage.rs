//! The registry API: companies, sites, devices, sensors, tokens and the
//! audit log. Viewers read their company's registry; admins change it;
//! operators do both for every company and create companies. Every change is
//! audited in the name of the token that made it.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use wenu_core::catalog::{CompanySettings, SensorSpec, StatsRetentionDays};
use wenu_registry::{Registry, Role};

use crate::auth::Caller;
use crate::data::own_device;
use crate::error::{ApiError, Result};
use crate::params::{Body, Params, page_size};
use crate::state::ApiState;

#[derive(Deserialize)]
pub(crate) struct CompanyParam {
    company: Option<String>,
}

/// The registry in the caller's name, for the audit log.
fn registry_as(state: &ApiState, caller: &Caller) -> Registry {
    state.0.registry.acting_as(&caller.actor())
}

/// `GET /api/v1/me`: the token's own description.
pub(crate) async fn me(caller: Caller) -> Json<Value> {
    Json(json!(caller.token))
}

/// `GET /api/v1/companies`: every company for an operator, one's own otherwise.
pub(crate) async fn companies(caller: Caller, State(state): State<ApiState>) -> Result<Json<Value>> {
    let all = state.0.registry.list_companies().await?;
    let visible: Vec<_> = match &caller.token.company {
        Some(own) => all.into_iter().filter(|c| c == own).collect(),
        None => all,
    };
    Ok(Json(json!({ "items": visible })))
}

#[derive(Deserialize)]
pub(crate) struct NewCompany {
    id: String,
}

/// `POST /api/v1/companies` (operator).
pub(crate) async fn create_company(
    caller: Caller,
    State(state): State<ApiState>,
    Body(body): Body<NewCompany>,
) -> Result<Response> {
    caller.require_operator()?;
    if state.0.registry.list_companies().await?.contains(&body.id) {
        return Err(ApiError::Conflict(format!("company {} already exists", body.id)));
    }
    registry_as(&state, &caller).ensure_company(&body.id).await?;
    Ok((StatusCode::CREATED, Json(json!({ "id": body.id }))).into_response())
}

/// `GET /api/v1/companies/{id}/settings`.
pub(crate) async fn settings(
    caller: Caller,
    State(state): State<ApiState>,
    Path(company): Path<String>,
) -> Result<Json<CompanySettings>> {
    let company = caller.company(Some(&company))?;
    require_company(&state, &company).await?;
    Ok(Json(state.0.registry.company_settings(&company).await?))
}

#[derive(Deserialize)]
pub(crate) struct SettingsBody {
    stats_retention: StatsRetentionDays,
}

/// `PUT /api/v1/companies/{id}/settings` (admin, operator).
pub(crate) async fn set_settings(
    caller: Caller,
    State(state): State<ApiState>,
    Path(company): Path<String>,
    Body(body): Body<SettingsBody>,
) -> Result<Json<CompanySettings>> {
    let company = caller.company_to_manage(Some(&company))?;
    let settings = CompanySettings { company, stats_retention: body.stats_retention };
    registry_as(&state, &caller).set_company_settings(&settings).await?;
    Ok(Json(settings))
}

async fn require_company(state: &ApiState, company: &str) -> Result<()> {
    if state.0.registry.list_companies().await?.iter().any(|c| c == company) {
        Ok(())
    } else {
        Err(ApiError::NotFound(format!("company {company}")))
    }
}

/// `GET /api/v1/sites`.
pub(crate) async fn sites(
    caller: Caller,
    State(state): State<ApiState>,
    Params(params): Params<CompanyParam>,
) -> Result<Json<Value>> {
    let company = caller.company(params.company.as_deref())?;
    Ok(Json(json!({ "items": state.0.registry.sites(&company).await? })))
}

#[derive(Deserialize)]
pub(crate) struct SiteBody {
    name: String,
}

/// `PUT /api/v1/sites/{site}`: creates or renames a site (admin, operator).
pub(crate) async fn put_site(
    caller: Caller,
    State(state): State<ApiState>,
    Path(site): Path<String>,
    Params(params): Params<CompanyParam>,
    Body(body): Body<SiteBody>,
) -> Result<Json<Value>> {
    let company = caller.company_to_manage(params.company.as_deref())?;
    if body.name.trim().is_empty() || body.name.len() > 200 {
        return Err(ApiError::bad("a site name is 1 to 200 characters"));
    }
    registry_as(&state, &caller).upsert_site(&company, &site, body.name.trim()).await?;
    Ok(Json(json!({ "company": company, "id": site, "name": body.name.trim() })))
}

/// `DELETE /api/v1/sites/{site}`: only a site without devices (admin, operator).
pub(crate) async fn delete_site(
    caller: Caller,
    State(state): State<ApiState>,
    Path(site): Path<String>,
    Params(params): Params<CompanyParam>,
) -> Result<StatusCode> {
    let company = caller.company_to_manage(params.company.as_deref())?;
    registry_as(&state, &caller).delete_site(&company, &site).await.map_err(|e| match e {
        wenu_registry::Error::Invalid(m) => ApiError::Conflict(m),
        other => other.into(),
    })?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
pub(crate) struct DevicesParams {
    company: Option<String>,
    site: Option<String>,
    limit: Option<usize>,
    /// The previous page's last device id.
    cursor: Option<String>,
}

/// `GET /api/v1/devices`.
pub(crate) async fn devices(
    caller: Caller,
    State(state): State<ApiState>,
    Params(params): Params<DevicesParams>,
) -> Result<Json<Value>> {
    let company = caller.company(params.company.as_deref())?;
    let limit = page_size(params.limit, state.0.limits.max_page, state.0.limits.max_page)?;
    let mut items: Vec<_> = state
        .0
        .registry
        .list_devices(Some(&company))
        .await?
        .into_iter()
        .filter(|d| params.site.is_none() || d.site == params.site)
        .filter(|d| params.cursor.as_ref().is_none_or(|c| d.id > *c))
        .take(limit + 1)
        .collect();
    let next = (items.len() > limit).then(|| {
        items.truncate(limit);
        items.last().map(|d| d.id.clone())
    });
    Ok(Json(json!({ "items": items, "next": next.flatten() })))
}

#[derive(Deserialize)]
pub(crate) struct ProvisionBody {
    count: usize,
    site: Option<String>,
}

/// `POST /api/v1/devices`: creates devices with passwords and keys; the
/// answer is the only place those secrets are shown (admin, operator).
pub(crate) async fn provision(
    caller: Caller,
    State(state): State<ApiState>,
    Params(params): Params<CompanyParam>,
    Body(body): Body<ProvisionBody>,
) -> Result<Response> {
    let company = caller.company_to_manage(params.company.as_deref())?;
    if !(1..=1000).contains(&body.count) {
        return Err(ApiError::bad("count: 1 to 1000 devices at a time"));
    }
    require_company(&state, &company).await?;
    let registry = registry_as(&state, &caller);
    if let Some(site) = &body.site
        && !registry.sites(&company).await?.iter().any(|s| s.id == *site)
    {
        return Err(ApiError::NotFound(format!("site {site}")));
    }
    let keys = state.0.keys.as_ref().ok_or(ApiError::Unavailable("device provisioning"))?;
    let devices = keys.provision(&registry, &company, body.count).await.map_err(ApiError::Internal)?;
    if let Some(site) = &body.site {
        for device in &devices {
            registry.set_device_site(&device.device_id, Some(site)).await?;
        }
    }
    Ok((StatusCode::CREATED, Json(json!({ "items": devices }))).into_response())
}

/// `GET /api/v1/devices/{id}`: the device and its sensors.
pub(crate) async fn device(
    caller: Caller,
    State(state): State<ApiState>,
    Path(id): Path<String>,
    Params(params): Params<CompanyParam>,
) -> Result<Json<Value>> {
    let company = caller.company(params.company.as_deref())?;
    let device = own_device(&state, &company, &id).await?;
    let sensors = state.0.registry.sensors(Some(&id)).await?;
    Ok(Json(json!({ "device": device, "sensors": sensors })))
}

#[derive(Deserialize)]
pub(crate) struct DevicePatch {
    enabled: Option<bool>,
    /// A site id, or `""` for none.
    site: Option<String>,
}

/// `PATCH /api/v1/devices/{id}`: enable, disable, move to a site (admin, operator).
pub(crate) async fn patch_device(
    caller: Caller,
    State(state): State<ApiState>,
    Path(id): Path<String>,
    Params(params): Params<CompanyParam>,
    Body(body): Body<DevicePatch>,
) -> Result<Json<Value>> {
    let company = caller.company_to_manage(params.company.as_deref())?;
    own_device(&state, &company, &id).await?;
    let registry = registry_as(&state, &caller);
    if let Some(enabled) = body.enabled {
        registry.set_enabled(&id, enabled).await?;
    }
    if let Some(site) = &body.site {
        registry.set_device_site(&id, Some(site.as_str()).filter(|s| !s.is_empty())).await?;
    }
    Ok(Json(json!(own_device(&state, &company, &id).await?)))
}

#[derive(Deserialize)]
pub(crate) struct RotateParams {
    company: Option<String>,
    /// Retire the older keys this long after the rotation even if the
    /// device never confirms the new one.
    retire_after_secs: Option<u32>,
}

/// `POST /api/v1/devices/{id}/rotate-key`: a new key for the device, shown
/// once and sent to the device over the downlink sealed under its current
/// key; older keys keep decrypting until the device confirms, or until
/// `?retire_after_secs=` (admin, operator).
pub(crate) async fn rotate_key(
    caller: Caller,
    State(state): State<ApiState>,
    Path(id): Path<String>,
    Params(params): Params<RotateParams>,
) -> Result<Json<Value>> {
    let company = caller.company_to_manage(params.company.as_deref())?;
    own_device(&state, &company, &id).await?;
    let keys = state.0.keys.as_ref().ok_or(ApiError::Unavailable("key rotation"))?;
    let retire_after_ms = params.retire_after_secs.map(|s| i64::from(s) * 1000);
    let rotation =
        keys.rotate(&registry_as(&state, &caller), &id, retire_after_ms).await.map_err(ApiError::Internal)?;
    Ok(Json(json!({
        "device_id": id,
        "key_id": rotation.key_id,
        "key": rotation.key.to_base64(),
        "command_id": rotation.command.map(|c| c.id),
        "retire_at": rotation.retire_at,
    })))
}

/// `POST /api/v1/devices/{id}/reset-sequence`: the device's counter went
/// back (factory reset); what arrives from now on starts a fresh sequence
/// window instead of being quarantined as replays (admin, operator).
pub(crate) async fn reset_sequence(
    caller: Caller,
    State(state): State<ApiState>,
    Path(id): Path<String>,
    Params(params): Params<CompanyParam>,
) -> Result<Json<Value>> {
    let company = caller.company_to_manage(params.company.as_deref())?;
    own_device(&state, &company, &id).await?;
    let at = registry_as(&state, &caller).reset_sequence(&id).await?;
    Ok(Json(json!({ "device_id": id, "seq_reset_at": at })))
}

#[derive(Deserialize)]
pub(crate) struct RevokeCertificate {
    /// SHA-256 of the certificate's DER, hex (colons allowed).
    fingerprint: String,
}

/// `POST /api/v1/devices/{id}/revoke-certificate`: refuses a client
/// certificate of the device from its next handshake on and ends the
/// sessions it opened (admin, operator).
pub(crate) async fn revoke_certificate(
    caller: Caller,
    State(state): State<ApiState>,
    Path(id): Path<String>,
    Params(params): Params<CompanyParam>,
    Body(body): Body<RevokeCertificate>,
) -> Result<Json<Value>> {
    let company = caller.company_to_manage(params.company.as_deref())?;
    own_device(&state, &company, &id).await?;
    let fingerprint = registry_as(&state, &caller).revoke_certificate(&id, &body.fingerprint).await?;
    Ok(Json(json!({ "device_id": id, "revoked": fingerprint })))
}

/// `GET /api/v1/devices/{id}/sensors`.
pub(crate) async fn sensors(
    caller: Caller,
    State(state): State<ApiState>,
    Path(id): Path<String>,
    Params(params): Params<CompanyParam>,
) -> Result<Json<Value>> {
    let company = caller.company(params.company.as_deref())?;
    own_device(&state, &company, &id).await?;
    Ok(Json(json!({ "items": state.0.registry.sensors(Some(&id)).await? })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SensorBody {
    kind: String,
    unit: String,
    #[serde(default = "one")]
    scale: f64,
    #[serde(default)]
    offset: f64,
    valid_min: Option<f64>,
    valid_max: Option<f64>,
}

fn one() -> f64 {
    1.0
}

/// `PUT /api/v1/devices/{id}/sensors/{sensor}`: defines or redefines a
/// sensor (admin, operator). The unit must be one enrich can convert to.
pub(crate) async fn put_sensor(
    caller: Caller,
    State(state): State<ApiState>,
    Path((id, sensor)): Path<(String, String)>,
    Params(params): Params<CompanyParam>,
    Body(body): Body<SensorBody>,
) -> Result<Json<SensorSpec>> {
    let company = caller.company_to_manage(params.company.as_deref())?;
    own_device(&state, &company, &id).await?;
    let spec = SensorSpec {
        device: id,
        sensor,
        kind: body.kind.trim().to_owned(),
        unit: body.unit.trim().to_owned(),
        scale: body.scale,
        offset: body.offset,
        valid_min: body.valid_min,
        valid_max: body.valid_max,
    };
    registry_as(&state, &caller).upsert_sensor(&spec).await?;
    Ok(Json(spec))
}

/// `DELETE /api/v1/devices/{id}/sensors/{sensor}` (admin, operator).
pub(crate) async fn delete_sensor(
    caller: Caller,
    State(state): State<ApiState>,
    Path((id, sensor)): Path<(String, String)>,
    Params(params): Params<CompanyParam>,
) -> Result<StatusCode> {
    let company = caller.company_to_manage(params.company.as_deref())?;
    own_device(&state, &company, &id).await?;
    registry_as(&state, &caller).delete_sensor(&id, &sensor).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /api/v1/tokens`: a company's tokens (admin), or every token (operator).
pub(crate) async fn tokens(
    caller: Caller,
    State(state): State<ApiState>,
    Params(params): Params<CompanyParam>,
) -> Result<Json<Value>> {
    let scope = match (caller.is_operator(), &params.company) {
        (true, None) => None,
        _ => Some(caller.company_to_manage(params.company.as_deref())?),
    };
    Ok(Json(json!({ "items": state.0.registry.list_tokens(scope.as_deref()).await? })))
}

#[derive(Deserialize)]
pub(crate) struct TokenBody {
    role: Role,
    name: String,
    rate_per_second: Option<u32>,
    /// For operators: the company of a viewer or admin token.
    company: Option<String>,
}

/// `POST /api/v1/tokens`: admins make tokens for their company, operators
/// for any company and other operators. The bearer is shown once.
pub(crate) async fn create_token(
    caller: Caller,
    State(state): State<ApiState>,
    Body(body): Body<TokenBody>,
) -> Result<Response> {
    let company = match body.role {
        Role::Operator => {
            caller.require_operator()?;
            None
        }
        Role::Viewer | Role::Admin => Some(caller.company_to_manage(body.company.as_deref())?),
    };
    let created = registry_as(&state, &caller)
        .create_token(company.as_deref(), body.role, &body.name, body.rate_per_second)
        .await?;
    Ok((StatusCode::CREATED, Json(json!({ "token": created.token, "bearer": created.bearer })))
        .into_response())
}

/// `DELETE /api/v1/tokens/{id}`: revokes a token of one's company (admin) or any (operator).
pub(crate) async fn revoke_token(
    caller: Caller,
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    let token =
        state.0.registry.token(&id).await?.ok_or_else(|| ApiError::NotFound(format!("token {id}")))?;
    let allowed =
        caller.is_operator() || (caller.token.role == Role::Admin && token.company == caller.token.company);
    if !allowed {
        return Err(ApiError::NotFound(format!("token {id}")));
    }
    registry_as(&state, &caller).revoke_token(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
pub(crate) struct AuditParams {
    company: Option<String>,
    before: Option<i64>,
    limit: Option<usize>,
}

/// `GET /api/v1/audit`: registry changes, newest first (admin: one's
/// company; operator: all, or one company).
pub(crate) async fn audit(
    caller: Caller,
    State(state): State<ApiState>,
    Params(params): Params<AuditParams>,
) -> Result<Json<Value>> {
    let scope = match (caller.is_operator(), &params.company) {
        (true, None) => None,
        _ => Some(caller.company_to_manage(params.company.as_deref())?),
    };
    let limit = page_size(params.limit, 100, 1000)?;
    let items = state.0.registry.audit_log(scope.as_deref(), params.before, limit as u32).await?;
    let next = (items.len() == limit).then(|| items.last().map(|e| e.revision)).flatten();
    Ok(Json(json!({ "items": items, "next": next })))
}
