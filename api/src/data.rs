//! What dashboards read: the series of a company, their stats, latest
//! values, raw readings from the lake, and completeness per device.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use wenu_registry::Device;
use wenu_stats::rollup::Summary;
use wenu_stats::{Resolution, SeqSet, SeriesKey};

use crate::auth::Caller;
use crate::error::{ApiError, Result};
use crate::params::{
    Format, Params, StatsBucket, page_size, parse_resolution, rfc3339, rows_response, time_range,
};
use crate::state::{ApiState, ReadingsQuery};
use crate::validators;

pub(crate) use wenu_core::clock::now_ms;

/// A device of the caller's company, or 404 (also for another company's).
pub(crate) async fn own_device(state: &ApiState, company: &str, device: &str) -> Result<Device> {
    match state.0.registry.device(device).await? {
        Some(found) if found.company == company => Ok(found),
        _ => Err(ApiError::NotFound(format!("device {device}"))),
    }
}

/// Like [`own_device`] for reads of a device's data, which need only its
/// owner: answered from the last second's lookups when it can be.
pub(crate) async fn check_owner(state: &ApiState, company: &str, device: &str) -> Result<()> {
    let owner = match state.0.recent.owner(device) {
        Some(owner) => owner,
        None => {
            let found = own_device(state, company, device).await?;
            state.0.recent.remember_owner(device, &found.company);
            found.company
        }
    };
    if owner != company {
        return Err(ApiError::NotFound(format!("device {device}")));
    }
    Ok(())
}

#[derive(Deserialize)]
pub(crate) struct SeriesParams {
    company: Option<String>,
    site: Option<String>,
    device: Option<String>,
    limit: Option<usize>,
    /// `device/sensor` of the previous page's last item.
    cursor: Option<String>,
    format: Option<String>,
}

#[derive(Serialize)]
struct SeriesItem {
    device: String,
    site: Option<String>,
    sensor: String,
    kind: String,
    unit: String,
    valid_min: Option<f64>,
    valid_max: Option<f64>,
}

/// `GET /api/v1/series`: the sensors of the company, by device and sensor.
pub(crate) async fn series(
    caller: Caller,
    State(state): State<ApiState>,
    Params(params): Params<SeriesParams>,
    headers: HeaderMap,
) -> Result<Response> {
    let format = Format::choose(params.format.as_deref(), &headers)?;
    let company = caller.company(params.company.as_deref())?;
    let limit = page_size(params.limit, state.0.limits.max_page, state.0.limits.max_page)?;
    let registry = &state.0.registry;
    let devices = registry.list_devices(Some(&company)).await?;
    let site_of = |id: &str| devices.iter().find(|d| d.id == id).and_then(|d| d.site.clone());
    let mut items: Vec<SeriesItem> = registry
        .company_sensors(&company)
        .await?
        .into_iter()
        .filter(|s| params.device.as_ref().is_none_or(|d| *d == s.device))
        .filter(|s| params.site.is_none() || site_of(&s.device) == params.site)
        .filter(|s| params.cursor.as_ref().is_none_or(|c| format!("{}/{}", s.device, s.sensor) > *c))
        .map(|s| SeriesItem {
            site: site_of(&s.device),
            device: s.device,
            sensor: s.sensor,
            kind: s.kind,
            unit: s.unit,
            valid_min: s.valid_min,
            valid_max: s.valid_max,
        })
        .take(limit + 1)
        .collect();
    let next = (items.len() > limit).then(|| {
        items.truncate(limit);
        items.last().map(|s| format!("{}/{}", s.device, s.sensor)).unwrap_or_default()
    });
    rows_response(format, &items, next)
}

#[derive(Deserialize)]
pub(crate) struct StatsParams {
    company: Option<String>,
    device: Option<String>,
    sensor: Option<String>,
    res: Option<String>,
    from: Option<String>,
    to: Option<String>,
    limit: Option<usize>,
    /// The `next` of the previous page: a bucket start.
    cursor: Option<i64>,
    format: Option<String>,
}

/// `GET /api/v1/stats`: the rollups of one series at a resolution over a
/// range; the bucket containing `from` is included.
pub(crate) async fn stats(
    caller: Caller,
    State(state): State<ApiState>,
    Params(params): Params<StatsParams>,
    headers: HeaderMap,
) -> Result<Response> {
    let format = Format::choose(params.format.as_deref(), &headers)?;
    let company = caller.company(params.company.as_deref())?;
    let device = params.device.as_deref().ok_or_else(|| ApiError::bad("device is required"))?;
    let sensor = params.sensor.as_deref().ok_or_else(|| ApiError::bad("sensor is required"))?;
    let resolution = parse_resolution(params.res.as_deref())?;
    let (from, to) = time_range(params.from.as_deref(), params.to.as_deref(), "-24h", now_ms())?;
    let limits = &state.0.limits;
    let start = resolution.bucket_start(from);
    let buckets = (to - start) / resolution.width_ms();
    if buckets > limits.max_buckets {
        return Err(ApiError::bad(format!(
            "the range spans {buckets} buckets of {}; at most {} (use a coarser res)",
            resolution.label(),
            limits.max_buckets
        )));
    }
    let limit = page_size(params.limit, limits.max_page, limits.max_page)?;
    let start = match params.cursor {
        Some(cursor) if cursor < start || cursor >= to => {
            return Err(ApiError::bad("cursor outside the range"));
        }
        Some(cursor) => cursor,
        None => start,
    };
    check_owner(&state, &company, device).await?;
    let series = SeriesKey { company, device: device.to_owned(), sensor: sensor.to_owned() };
    let page = state.0.stats.query(&series.partition(resolution), start..to, limit).await?;
    let etag = validators::etag(&page.items, (format, limit, page.next));
    if let Some(not_modified) = validators::not_modified(&headers, &etag) {
        return Ok(not_modified);
    }
    let items = page
        .items
        .iter()
        .map(|item| Ok(StatsBucket::new(item.key.sort, &Summary::from_bytes(&item.value)?)))
        .collect::<Result<Vec<_>>>()?;
    let response = rows_response(format, &items, page.next.map(|n| n.to_string()))?;
    Ok(validators::with_validator(response, etag))
}

#[derive(Deserialize)]
pub(crate) struct LatestParams {
    company: Option<String>,
    device: Option<String>,
    format: Option<String>,
}

#[derive(Serialize)]
struct LatestValue {
    device: String,
    sensor: String,
    unit: String,
    ts: i64,
    time: String,
    value: f64,
}

/// `GET /api/v1/latest`: the newest value of each sensor (of one device, or
/// of the company), from the finest stats that hold one.
pub(crate) async fn latest(
    caller: Caller,
    State(state): State<ApiState>,
    Params(params): Params<LatestParams>,
    headers: HeaderMap,
) -> Result<Response> {
    let format = Format::choose(params.format.as_deref(), &headers)?;
    let company = caller.company(params.company.as_deref())?;
    if let Some(device) = &params.device {
        check_owner(&state, &company, device).await?;
    }
    let sensors = state.0.registry.company_sensors(&company).await?;
    let now = now_ms();
    let mut items = Vec::new();
    for spec in sensors.iter().filter(|s| params.device.as_ref().is_none_or(|d| *d == s.device)) {
        let series =
            SeriesKey { company: company.clone(), device: spec.device.clone(), sensor: spec.sensor.clone() };
        if let Some(last) = latest_of(&state, &series, now).await? {
            items.push(LatestValue {
                device: spec.device.clone(),
                sensor: spec.sensor.clone(),
                unit: spec.unit.clone(),
                ts: last.ts,
                time: rfc3339(last.ts),
                value: last.value,
            });
        }
    }
    rows_response(format, &items, None)
}

/// The newest reading of a series: the 1-minute buckets of the last two
/// hours, else the hourly ones of the last two weeks, else the daily ones.
pub(crate) async fn latest_of(
    state: &ApiState,
    series: &SeriesKey,
    now: i64,
) -> Result<Option<wenu_stats::rollup::Last>> {
    // Readings a little in the future (device clocks) still count.
    let end = now + 3_600_000;
    for (resolution, back) in [
        (Resolution::Minute, 2 * 3_600_000),
        (Resolution::Hour, 14 * 86_400_000),
        (Resolution::Day, 800 * 86_400_000),
    ] {
        if let Some(item) = state.0.stats.last(&series.partition(resolution), now - back..end).await? {
            return Ok(Summary::from_bytes(&item.value)?.last);
        }
    }
    Ok(None)
}

#[derive(Deserialize)]
pub(crate) struct ReadingsParams {
    company: Option<String>,
    device: Option<String>,
    sensor: Option<String>,
    from: Option<String>,
    to: Option<String>,
    limit: Option<usize>,
    /// Rows to skip: the `next` of the previous page.
    cursor: Option<usize>,
    format: Option<String>,
}

/// `GET /api/v1/readings`: raw readings of one device from the lake, over
/// a recent window (they appear once the lake has written its batch).
pub(crate) async fn readings(
    caller: Caller,
    State(state): State<ApiState>,
    Params(params): Params<ReadingsParams>,
    headers: HeaderMap,
) -> Result<Response> {
    let format = Format::choose(params.format.as_deref(), &headers)?;
    let company = caller.company(params.company.as_deref())?;
    let device = params.device.clone().ok_or_else(|| ApiError::bad("device is required"))?;
    let (from, to) = time_range(params.from.as_deref(), params.to.as_deref(), "-1h", now_ms())?;
    let limits = &state.0.limits;
    if to - from > limits.max_readings_range_ms {
        return Err(ApiError::bad(format!(
            "raw readings span at most {} h; use /api/v1/stats for longer ranges",
            limits.max_readings_range_ms / 3_600_000
        )));
    }
    let limit = page_size(params.limit, 1000, limits.max_page)?;
    check_owner(&state, &company, &device).await?;
    let lake = state.0.lake.as_ref().ok_or(ApiError::Unavailable("the lake"))?;
    let offset = params.cursor.unwrap_or(0);
    let query =
        ReadingsQuery { company, device, sensor: params.sensor.clone(), from, to, limit: limit + 1, offset };
    let mut rows = lake.readings(&query).await.map_err(ApiError::Internal)?;
    let next = (rows.len() > limit).then(|| {
        rows.truncate(limit);
        (offset + limit).to_string()
    });
    rows_response(format, &rows, next)
}

#[derive(Deserialize)]
pub(crate) struct CompletenessParams {
    company: Option<String>,
    site: Option<String>,
    from: Option<String>,
    to: Option<String>,
    /// Devices per page (default 100)...
    limit: Option<usize>,
    /// ...after this many (the `next` of the previous page).
    cursor: Option<usize>,
    format: Option<String>,
}

/// Devices per `/completeness` page at most: each reads up to 744 hourly
/// rollups per sensor.
const MAX_COMPLETENESS_PAGE: usize = 100;

/// How much of what a device sent arrived: its messages are numbered, so
/// the numbers missing between the first and the last seen in the window
/// are messages lost on the way (or still in flight). A jump of more than
/// [`MAX_LOST_RUN`] numbers is taken for the counter restarting (a device
/// reboot), not for loss.
#[derive(Serialize)]
struct Completeness {
    device: String,
    site: Option<String>,
    received: u64,
    expected: u64,
    /// received / expected; `null` when nothing arrived.
    ratio: Option<f64>,
    first_seq: Option<u64>,
    last_seq: Option<u64>,
}

/// The longest run of missing sequence numbers counted as lost messages.
const MAX_LOST_RUN: u64 = 1000;

/// `GET /api/v1/completeness`: per device over a window (default the last
/// 24 h, at most 31 days), from the hourly stats' sequence numbers; at most
/// 100 devices a page, the next page from `cursor`.
pub(crate) async fn completeness(
    caller: Caller,
    State(state): State<ApiState>,
    Params(params): Params<CompletenessParams>,
    headers: HeaderMap,
) -> Result<Response> {
    let format = Format::choose(params.format.as_deref(), &headers)?;
    let company = caller.company(params.company.as_deref())?;
    let (from, to) = time_range(params.from.as_deref(), params.to.as_deref(), "-24h", now_ms())?;
    if to - from > 31 * 86_400_000 {
        return Err(ApiError::bad("completeness spans at most 31 days"));
    }
    let limit = page_size(params.limit, MAX_COMPLETENESS_PAGE, MAX_COMPLETENESS_PAGE)?;
    let skip = params.cursor.unwrap_or(0);
    let registry = &state.0.registry;
    let sensors = registry.company_sensors(&company).await?;
    let devices: Vec<_> = registry
        .list_devices(Some(&company))
        .await?
        .into_iter()
        .filter(|device| params.site.is_none() || device.site == params.site)
        .collect();
    let next = (devices.len() > skip.saturating_add(limit)).then(|| (skip + limit).to_string());
    let mut items = Vec::new();
    for device in devices.into_iter().skip(skip).take(limit) {
        let mut seen = SeqSet::default();
        for spec in sensors.iter().filter(|s| s.device == device.id) {
            let series = SeriesKey {
                company: company.clone(),
                device: device.id.clone(),
                sensor: spec.sensor.clone(),
            };
            let hours = wenu_stats::read_series(
                state.0.stats.as_ref(),
                &series,
                Resolution::Hour,
                Resolution::Hour.bucket_start(from),
                to,
            )
            .await?;
            for (_, rollup) in &hours {
                seen.extend(rollup.seqs());
            }
        }
        let bounds = seen.bounds();
        let missing: u64 = seen
            .spans()
            .windows(2)
            .map(|pair| pair[1].0 - pair[0].1 - 1)
            .filter(|&gap| gap <= MAX_LOST_RUN)
            .sum();
        let expected = seen.len() + missing;
        items.push(Completeness {
            device: device.id,
            site: device.site,
            received: seen.len(),
            expected,
            ratio: (expected > 0).then(|| seen.len() as f64 / expected as f64),
            first_seq: bounds.map(|b| b.0),
            last_seq: bounds.map(|b| b.1),
        });
    }
    rows_response(format, &items, next)
}
