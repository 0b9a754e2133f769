//! Query parameters the endpoints share: times, resolutions, pages, and the
//! choice between JSON and CSV.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use wenu_stats::Resolution;
use wenu_stats::rollup::Summary;

use crate::error::{ApiError, Result};

/// Query parameters; a malformed query is a JSON 400 like every other error.
pub(crate) struct Params<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Params<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| Params(q.0))
            .map_err(|e| ApiError::bad(e.body_text()))
    }
}

/// A JSON request body; malformed JSON is a JSON 400.
pub(crate) struct Body<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self> {
        axum::Json::<T>::from_request(request, state)
            .await
            .map(|j| Body(j.0))
            .map_err(|e| ApiError::bad(e.body_text()))
    }
}

/// A time as unix ms from RFC 3339, unix ms, `now`, or a time relative to
/// now such as `-1h`, `-30m`, `-7d`.
pub fn parse_time(text: &str, now: i64) -> Result<i64, String> {
    if text == "now" {
        return Ok(now);
    }
    if let Some(relative) = text.strip_prefix('-') {
        let unit_at = relative.find(|c: char| !c.is_ascii_digit()).unwrap_or(relative.len());
        let (amount, unit) = relative.split_at(unit_at);
        let ms = match unit {
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return Err(format!("{text:?}: a relative time is a number and s, m, h or d (`-1h`)")),
        };
        let amount: i64 = amount.parse().map_err(|_| format!("{text:?}: no number"))?;
        return amount
            .checked_mul(ms)
            .and_then(|back| now.checked_sub(back))
            .ok_or_else(|| format!("{text:?}: too far back"));
    }
    if let Ok(ms) = text.parse::<i64>() {
        return Ok(ms);
    }
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|at| at.timestamp_millis())
        .map_err(|_| format!("{text:?}: expected RFC 3339, unix ms, `now` or `-1h`"))
}

/// `from` and `to` parameters, with defaults, checked to be in order.
/// 9999-12-31T23:59:59.999Z.
const LATEST_MS: i64 = 253_402_300_799_999;

pub(crate) fn time_range(
    from: Option<&str>,
    to: Option<&str>,
    default_from: &str,
    now: i64,
) -> Result<(i64, i64)> {
    let from =
        parse_time(from.unwrap_or(default_from), now).map_err(|e| ApiError::bad(format!("from: {e}")))?;
    let to = parse_time(to.unwrap_or("now"), now).map_err(|e| ApiError::bad(format!("to: {e}")))?;
    // Years 1970 to 9999: ranges and bucket arithmetic then cannot overflow.
    for (name, t) in [("from", from), ("to", to)] {
        if !(0..=LATEST_MS).contains(&t) {
            return Err(ApiError::bad(format!("{name}: outside the years 1970 to 9999")));
        }
    }
    if from >= to {
        return Err(ApiError::bad("from must be before to"));
    }
    Ok((from, to))
}

pub(crate) fn parse_resolution(label: Option<&str>) -> Result<Resolution> {
    let label = label.unwrap_or("1m");
    Resolution::parse(label).ok_or_else(|| ApiError::bad(format!("res {label:?}: expected 1m, 1h or 1d")))
}

/// `limit` within `1..=max`, `default` when absent.
pub(crate) fn page_size(limit: Option<usize>, default: usize, max: usize) -> Result<usize> {
    match limit {
        None => Ok(default.min(max)),
        Some(n) if (1..=max).contains(&n) => Ok(n),
        Some(n) => Err(ApiError::bad(format!("limit {n}: expected 1 to {max}"))),
    }
}

/// One bucket of a stats series, as the API and the CLI show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatsBucket {
    /// Bucket start, RFC 3339.
    pub bucket: String,
    /// Bucket start, unix ms.
    pub bucket_ms: i64,
    pub count: u64,
    pub min: f64,
    pub max: f64,
    pub sum: f64,
    pub mean: Option<f64>,
    pub last: Option<f64>,
    pub p50: Option<f64>,
    pub p95: Option<f64>,
    pub p99: Option<f64>,
}

impl StatsBucket {
    pub fn new(start: i64, summary: &Summary) -> Self {
        StatsBucket {
            bucket: rfc3339(start),
            bucket_ms: start,
            count: summary.count,
            min: summary.min,
            max: summary.max,
            sum: summary.sum,
            mean: summary.mean(),
            last: summary.last.map(|l| l.value),
            p50: summary.p50,
            p95: summary.p95,
            p99: summary.p99,
        }
    }
}

/// `2026-12-07T10:00:00.000Z`. chrono's RFC 3339 writer, not a strftime
/// pattern: a 1-day series formats 1 440 of these per response.
pub fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map_or_else(|| ms.to_string(), |t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
}

/// JSON unless the client asked for CSV (`?format=csv` or `Accept: text/csv`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Format {
    Json,
    Csv,
}

impl Format {
    pub fn choose(format: Option<&str>, headers: &HeaderMap) -> Result<Format> {
        match format {
            Some("json") => Ok(Format::Json),
            Some("csv") => Ok(Format::Csv),
            Some(other) => Err(ApiError::bad(format!("format {other:?}: expected json or csv"))),
            None => {
                let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
                Ok(if accept.starts_with("text/csv") { Format::Csv } else { Format::Json })
            }
        }
    }
}

/// A list of rows as JSON `{"items": [...], "next": …}` or as CSV with a
/// header line (the next page's cursor then travels in a `Link`-like
/// `X-Next-Cursor` header).
/// About the size of a stats bucket in JSON.
const ROW_BYTES: usize = 192;

/// A page of rows as JSON: `{"items": [...], "next": ...}`.
#[derive(Serialize)]
struct Rows<'a, T> {
    items: &'a [T],
    next: Option<String>,
}

pub(crate) fn rows_response<T: Serialize>(
    format: Format,
    items: &[T],
    next: Option<String>,
) -> Result<Response> {
    match format {
        Format::Json => {
            // Typed, not `json!` (that builds a map per row before writing
            // it), into a buffer sized for the rows up front (a day of minute
            // buckets is ~260 KB), not grown by doubling.
            let mut body = Vec::with_capacity(64 + items.len() * ROW_BYTES);
            serde_json::to_writer(&mut body, &Rows { items, next })
                .map_err(|e| ApiError::Internal(format!("JSON: {e}")))?;
            Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
        }
        Format::Csv => {
            let mut writer = csv::Writer::from_writer(Vec::new());
            for item in items {
                writer.serialize(item).map_err(|e| ApiError::Internal(format!("CSV: {e}")))?;
            }
            let body = writer.into_inner().map_err(|e| ApiError::Internal(format!("CSV: {e}")))?;
            let mut response = ([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], body).into_response();
            if let Some(next) = next.and_then(|n| HeaderValue::from_str(&n).ok()) {
                response.headers_mut().insert("x-next-cursor", next);
            }
            Ok(response)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_written_as_rfc3339_in_utc_with_milliseconds() {
        for (ms, text) in [
            (0, "1970-01-01T00:00:00.000Z"),
            (1_709_164_800_123, "2024-02-29T00:00:00.123Z"),
            (1_796_637_600_000, "2026-12-07T10:00:00.000Z"),
            (253_402_300_799_999, "9999-12-31T23:59:59.999Z"),
        ] {
            assert_eq!(rfc3339(ms), text);
        }
    }

    #[test]
    fn times_in_every_form() {
        let now = 1_700_000_000_000;
        assert_eq!(parse_time("now", now).unwrap(), now);
        assert_eq!(parse_time("-1h", now).unwrap(), now - 3_600_000);
        assert_eq!(parse_time("-30m", now).unwrap(), now - 1_800_000);
        assert_eq!(parse_time("-2d", now).unwrap(), now - 172_800_000);
        assert_eq!(parse_time("1699999999000", now).unwrap(), 1_699_999_999_000);
        assert_eq!(parse_time("2023-11-14T22:13:20Z", now).unwrap(), now);
        assert!(parse_time("-1w", now).is_err());
        assert!(parse_time("yesterday", now).is_err());
        assert!(parse_time("-99999999999999999d", now).is_err());
    }
}
