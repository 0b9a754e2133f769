//! Where a company's alarm notifications go, and when they do not:
//! `/api/v1/channels` (webhooks, Slack and Teams webhooks, e-mail
//! addresses, each with its routing; `/api/v1/webhooks` is the same list
//! under its older name) and `/api/v1/silences`. Admins and operators
//! manage them; everyone of the company may see the silences.

use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};
use wenu_alarms::{ChannelKind, Notification, Route, Severity, Silence, WebhookFormat};
use wenu_registry::{NewChannel, NewSilence};

use crate::alarms::CompanyParam;
use crate::auth::Caller;
use crate::data::now_ms;
use crate::error::{ApiError, Result};
use crate::params::{Body, Params};
use crate::state::ApiState;

/// Longest a test message may take.
const TEST_TIMEOUT: Duration = Duration::from_secs(15);

/// Shortest time between two test messages to one channel.
pub(crate) const TEST_GAP: Duration = Duration::from_secs(10);

/// `GET /api/v1/channels` (admin, operator): `{"items": [...]}`, URLs and
/// routing, never secrets.
pub(crate) async fn channels(
    caller: Caller,
    State(state): State<ApiState>,
    Params(params): Params<CompanyParam>,
) -> Result<Json<Value>> {
    let company = caller.company_to_manage(params.company.as_deref())?;
    Ok(Json(json!({ "items": state.0.registry.channels(Some(&company)).await? })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ChannelBody {
    /// `https://…` or `mailto:…`.
    url: String,
    /// A webhook's body: `wenu` (the default), `slack` or `teams`.
    #[serde(default)]
    format: WebhookFormat,
    #[serde(default)]
    min_severity: Option<Severity>,
    #[serde(default)]
    rules: Vec<String>,
    #[serde(default)]
    escalate_after_secs: Option<u32>,
}

/// `POST /api/v1/channels` (admin, operator): the answer holds a webhook's
/// signing secret, shown this once.
pub(crate) async fn add_channel(
    caller: Caller,
    State(state): State<ApiState>,
    Params(params): Params<CompanyParam>,
    Body(body): Body<ChannelBody>,
) -> Result<(StatusCode, Json<Value>)> {
    let company = caller.company_to_manage(params.company.as_deref())?;
    let new = NewChannel {
        url: body.url.trim().to_owned(),
        format: body.format,
        route: Route {
            min_severity: body.min_severity,
            rules: body.rules,
            escalate_after_secs: body.escalate_after_secs,
        },
    };
    let channel = state.0.registry.acting_as(&caller.actor()).add_channel(&company, &new).await?;
    let mut answer = json!(channel);
    answer["secret"] = json!(channel.secret);
    Ok((StatusCode::CREATED, Json(answer)))
}

/// `DELETE /api/v1/channels/{id}` (admin, operator).
pub(crate) async fn delete_channel(
    caller: Caller,
    State(state): State<ApiState>,
    Path(id): Path<String>,
    Params(params): Params<CompanyParam>,
) -> Result<StatusCode> {
    let company = caller.company_to_manage(params.company.as_deref())?;
    state.0.registry.acting_as(&caller.actor()).delete_channel(&company, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/v1/channels/{id}/test` (admin, operator): sends a test
/// message to the channel now and says whether it was accepted (and if
/// not, what the receiver or relay answered).
pub(crate) async fn test_channel(
    caller: Caller,
    State(state): State<ApiState>,
    Path(id): Path<String>,
    Params(params): Params<CompanyParam>,
) -> Result<Json<Value>> {
    let company = caller.company_to_manage(params.company.as_deref())?;
    let channels = state.0.registry.channels(Some(&company)).await?;
    let found = channels
        .into_iter()
        .find(|c| c.id == id)
        .ok_or_else(|| ApiError::NotFound(format!("channel {id}")))?;
    let kind = ChannelKind::of_url(&found.url).map_err(ApiError::BadRequest)?;
    let notifier = state
        .0
        .channel_notifiers
        .iter()
        .find(|n| n.channel_kind() == kind)
        .ok_or(ApiError::Unavailable("sending test messages"))?;
    {
        let mut tested = state.0.channel_tests.lock().expect("channel tests");
        let now = std::time::Instant::now();
        tested.retain(|_, at| now.duration_since(*at) < TEST_GAP);
        if let Some(at) = tested.get(&found.id) {
            let wait = TEST_GAP.saturating_sub(now.duration_since(*at));
            return Err(ApiError::RateLimited { retry_after_secs: wait.as_secs().max(1) });
        }
        tested.insert(found.id.clone(), now);
    }
    let channel = found.target();
    let notification = Notification::test(&company, &caller.actor(), now_ms());
    let sent = tokio::time::timeout(TEST_TIMEOUT, notifier.deliver(&channel, &notification))
        .await
        .unwrap_or_else(|_| Err(wenu_alarms::NotifyError::retryable("timed out")));
    tracing::info!(channel = %channel.id, company, delivered = sent.is_ok(), "test message sent");
    Ok(Json(match sent {
        Ok(()) => json!({ "delivered": true, "id": notification.id }),
        Err(err) => json!({ "delivered": false, "id": notification.id, "error": err.message }),
    }))
}

#[derive(Deserialize)]
pub(crate) struct SilencesParams {
    company: Option<String>,
    /// Also those that ended.
    #[serde(default)]
    all: bool,
}

/// `GET /api/v1/silences`: the company's current and coming silences
/// (`?all=true`: ended ones too), each with whether it is in force.
pub(crate) async fn silences(
    caller: Caller,
    State(state): State<ApiState>,
    Params(params): Params<SilencesParams>,
) -> Result<Json<Value>> {
    let company = caller.company(params.company.as_deref())?;
    let now = now_ms();
    let silences = state.0.registry.silences(Some(&company), if params.all { 0 } else { now }).await?;
    let items: Vec<Value> = silences.iter().map(|s| silence_json(s, now)).collect();
    Ok(Json(json!({ "items": items })))
}

fn silence_json(silence: &Silence, now: i64) -> Value {
    let mut value = json!(silence);
    value["active"] = json!(silence.is_active(now));
    value
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SilenceBody {
    #[serde(default)]
    device: Option<String>,
    #[serde(default)]
    site: Option<String>,
    #[serde(default)]
    rule: Option<String>,
    /// Unix ms; now when absent.
    #[serde(default)]
    starts_at: Option<i64>,
    /// Unix ms; or `duration_secs` from the start.
    #[serde(default)]
    ends_at: Option<i64>,
    #[serde(default)]
    duration_secs: Option<i64>,
    reason: String,
}

/// `POST /api/v1/silences` (admin, operator): silences a device, a site or
/// a rule for a window, with a reason (audited).
pub(crate) async fn add_silence(
    caller: Caller,
    State(state): State<ApiState>,
    Params(params): Params<CompanyParam>,
    Body(body): Body<SilenceBody>,
) -> Result<(StatusCode, Json<Value>)> {
    let company = caller.company_to_manage(params.company.as_deref())?;
    let starts_at = body.starts_at.unwrap_or_else(now_ms);
    let ends_at = match (body.ends_at, body.duration_secs) {
        (Some(end), None) => end,
        (None, Some(secs)) if secs > 0 => starts_at.saturating_add(secs.saturating_mul(1000)),
        _ => return Err(ApiError::bad("give either ends_at or a positive duration_secs")),
    };
    let new = NewSilence {
        device: body.device,
        site: body.site,
        rule: body.rule,
        starts_at: Some(starts_at),
        ends_at,
        reason: body.reason,
    };
    let silence = state.0.registry.acting_as(&caller.actor()).add_silence(&company, &new).await?;
    Ok((StatusCode::CREATED, Json(silence_json(&silence, now_ms()))))
}

/// `POST /api/v1/silences/{id}/end` (admin, operator): ends a silence now.
pub(crate) async fn end_silence(
    caller: Caller,
    State(state): State<ApiState>,
    Path(id): Path<String>,
    Params(params): Params<CompanyParam>,
) -> Result<Json<Value>> {
    let company = caller.company_to_manage(params.company.as_deref())?;
    let silence = state.0.registry.acting_as(&caller.actor()).end_silence(&company, &id).await?;
    Ok(Json(silence_json(&silence, now_ms())))
}
