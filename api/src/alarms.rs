//! Alarm rules, alarms and their history: `/api/v1/rules`,
//! `/api/v1/alarms`. Everyone of a company may look at rules and alarms;
//! admins (and operators) change rules, acknowledge alarms, and alone see
//! dead letters. Where notifications go is [`crate::channels`]'.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};
use wenu_alarms::{AckOutcome, Alarm, AlarmStore, Condition, DeadLetter, Notification, Rule, Severity};

use crate::auth::Caller;
use crate::data::now_ms;
use crate::error::{ApiError, Result};
use crate::params::{Body, Format, Params, page_size, rows_response, time_range};
use crate::state::ApiState;

#[derive(Deserialize)]
pub(crate) struct CompanyParam {
    pub(crate) company: Option<String>,
}

pub(crate) fn store(state: &ApiState) -> Result<&AlarmStore> {
    state.0.alarms.as_ref().ok_or(ApiError::Unavailable("alarms are not configured"))
}

/// `GET /api/v1/rules`: the company's rules.
pub(crate) async fn rules(
    caller: Caller,
    State(state): State<ApiState>,
    Params(params): Params<CompanyParam>,
) -> Result<Json<Vec<Rule>>> {
    let company = caller.company(params.company.as_deref())?;
    Ok(Json(state.0.registry.rules(Some(&company)).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RuleBody {
    name: String,
    #[serde(default)]
    device: Option<String>,
    #[serde(default)]
    sensor: Option<String>,
    condition: Condition,
    severity: Severity,
    #[serde(default = "enabled")]
    enabled: bool,
}

fn enabled() -> bool {
    true
}

/// `PUT /api/v1/rules/{id}`: creates or replaces a rule (admin, operator),
/// validated; the alarms stage picks it up at its next batch.
pub(crate) async fn put_rule(
    caller: Caller,
    State(state): State<ApiState>,
    Path(id): Path<String>,
    Params(params): Params<CompanyParam>,
    Body(body): Body<RuleBody>,
) -> Result<Json<Rule>> {
    let company = caller.company_to_manage(params.company.as_deref())?;
    let rule = Rule {
        company,
        id,
        name: body.name.trim().to_owned(),
        device: body.device,
        sensor: body.sensor,
        condition: body.condition,
        severity: body.severity,
        enabled: body.enabled,
        version: 0,
    };
    let stored = state.0.registry.acting_as(&caller.actor()).put_rule(&rule).await?;
    Ok(Json(stored))
}

/// `DELETE /api/v1/rules/{id}` (admin, operator).
pub(crate) async fn delete_rule(
    caller: Caller,
    State(state): State<ApiState>,
    Path(id): Path<String>,
    Params(params): Params<CompanyParam>,
) -> Result<StatusCode> {
    let company = caller.company_to_manage(params.company.as_deref())?;
    state.0.registry.acting_as(&caller.actor()).delete_rule(&company, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /api/v1/alarms`: the company's raised and acknowledged alarms,
/// most severe and most recent first.
pub(crate) async fn active(
    caller: Caller,
    State(state): State<ApiState>,
    Params(params): Params<CompanyParam>,
) -> Result<Json<Vec<Alarm>>> {
    let company = caller.company(params.company.as_deref())?;
    Ok(Json(store(&state)?.active(&company).await?))
}

/// `GET /api/v1/alarms/{id}`: one alarm, whatever its status.
pub(crate) async fn alarm(
    caller: Caller,
    State(state): State<ApiState>,
    Path(id): Path<String>,
    Params(params): Params<CompanyParam>,
) -> Result<Json<Alarm>> {
    let company = caller.company(params.company.as_deref())?;
    let alarm = store(&state)?.alarm(&company, &id).await?;
    alarm.map(Json).ok_or_else(|| ApiError::NotFound(format!("alarm {id}")))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AckBody {
    #[serde(default)]
    comment: String,
}

/// `POST /api/v1/alarms/{id}/ack`: acknowledges a raised alarm with a
/// comment (admin, operator); notified like every transition.
pub(crate) async fn acknowledge(
    caller: Caller,
    State(state): State<ApiState>,
    Path(id): Path<String>,
    Params(params): Params<CompanyParam>,
    Body(body): Body<AckBody>,
) -> Result<Json<Notification>> {
    let company = caller.company_to_manage(params.company.as_deref())?;
    if body.comment.len() > 2000 {
        return Err(ApiError::bad("comment: at most 2000 characters"));
    }
    let store = store(&state)?;
    let outcome = store.acknowledge(&company, &id, &caller.actor(), body.comment.trim(), now_ms()).await?;
    match outcome {
        AckOutcome::Acknowledged(notification) => {
            if let Some(wake) = &state.0.alarm_wake {
                wake.notify_one();
            }
            Ok(Json(notification))
        }
        AckOutcome::AlreadyAcknowledged(_) => {
            Err(ApiError::Conflict(format!("alarm {id} is already acknowledged")))
        }
        AckOutcome::NotRaised(_) => Err(ApiError::Conflict(format!("alarm {id} has cleared"))),
        AckOutcome::Unknown => Err(ApiError::NotFound(format!("alarm {id}"))),
    }
}

#[derive(Deserialize)]
pub(crate) struct HistoryParams {
    company: Option<String>,
    from: Option<String>,
    to: Option<String>,
    limit: Option<usize>,
    cursor: Option<i64>,
    format: Option<String>,
}

/// `GET /api/v1/alarms/history`: transitions (raised, acknowledged,
/// cleared) by event time, oldest first, paged with `cursor`.
pub(crate) async fn history(
    caller: Caller,
    State(state): State<ApiState>,
    headers: HeaderMap,
    Params(params): Params<HistoryParams>,
) -> Result<Response> {
    let company = caller.company(params.company.as_deref())?;
    let format = Format::choose(params.format.as_deref(), &headers)?;
    let (from, to) = time_range(params.from.as_deref(), params.to.as_deref(), "-1d", now_ms())?;
    let limit = page_size(params.limit, 500, state.0.limits.max_page)?;
    let (items, next) = store(&state)?.history(&company, from..to, limit, params.cursor).await?;
    let rows: Vec<Value> = items.iter().map(history_row).collect();
    rows_response(format, &rows, next.map(|n| n.to_string()))
}

/// Flat enough for CSV.
fn history_row(n: &Notification) -> Value {
    let t = &n.transition;
    json!({
        "id": n.id, "alarm": n.alarm, "change": t.change, "ts": t.ts, "rule": t.rule,
        "severity": t.severity, "condition": t.condition, "device": t.device, "sensor": t.sensor,
        "value": t.value, "detail": t.detail,
        "by": n.acknowledged.as_ref().map(|a| a.by.clone()),
    })
}

/// `GET /api/v1/alarms/dead-letters` (admin, operator): notifications a
/// channel never accepted, with why; the errors name webhook endpoints.
pub(crate) async fn dead_letters(
    caller: Caller,
    State(state): State<ApiState>,
    Params(params): Params<CompanyParam>,
) -> Result<Json<Vec<DeadLetter>>> {
    let company = caller.company_to_administer(params.company.as_deref())?;
    Ok(Json(store(&state)?.dead_letters(&company).await?))
}
