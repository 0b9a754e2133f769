//! Cache validators: a response's ETag is derived from the versions of the
//! items it was built from, so a dashboard that asks again for buckets that
//! have not changed gets `304 Not Modified` without the body being built or
//! sent. A bucket that takes a late reading gets a new version, and with it
//! a new ETag.

use std::hash::{DefaultHasher, Hash, Hasher};

use axum::http::header::{CACHE_CONTROL, ETAG, IF_NONE_MATCH};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use wenu_core::table::Item;

/// A weak ETag (the body may be sent compressed or not) over each item's
/// key and version and whatever else shapes the response (`shape`).
pub(crate) fn etag(items: &[Item], shape: impl Hash) -> HeaderValue {
    let mut hasher = DefaultHasher::new();
    shape.hash(&mut hasher);
    for item in items {
        (&item.key.partition, item.key.sort, item.version).hash(&mut hasher);
    }
    HeaderValue::from_str(&format!("W/\"{:016x}\"", hasher.finish())).expect("hex is a valid header value")
}

/// `304 Not Modified` if the request's `If-None-Match` holds `etag`.
pub(crate) fn not_modified(request: &HeaderMap, etag: &HeaderValue) -> Option<Response> {
    let matches = request.get_all(IF_NONE_MATCH).iter().filter_map(|v| v.to_str().ok()).any(|list| {
        list.split(',').map(str::trim).any(|candidate| candidate == "*" || weakly_equal(candidate, etag))
    });
    matches.then(|| with_validator(StatusCode::NOT_MODIFIED.into_response(), etag.clone()))
}

/// The response with its ETag; caches must revalidate before reusing it.
pub(crate) fn with_validator(mut response: Response, etag: HeaderValue) -> Response {
    let headers = response.headers_mut();
    headers.insert(ETAG, etag);
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("private, no-cache"));
    response
}

/// RFC 9110's weak comparison: equal opaque tags, either or both weak.
fn weakly_equal(candidate: &str, etag: &HeaderValue) -> bool {
    let opaque = |tag: &str| tag.strip_prefix("W/").unwrap_or(tag).to_owned();
    etag.to_str().is_ok_and(|ours| opaque(candidate) == opaque(ours))
}

#[cfg(test)]
mod tests {
    use super::*;
    use wenu_core::table::ItemKey;

    fn item(sort: i64, version: u64) -> Item {
        Item {
            key: ItemKey { partition: "acme#d1#t#1m".into(), sort },
            value: b"x".to_vec().into(),
            version,
            expires_at: None,
        }
    }

    #[test]
    fn the_etag_changes_with_a_version_and_with_the_shape() {
        let items = [item(0, 1), item(60_000, 3)];
        assert_eq!(etag(&items, "json"), etag(&items, "json"));
        assert_ne!(etag(&items, "json"), etag(&[item(0, 1), item(60_000, 4)], "json"));
        assert_ne!(etag(&items, "json"), etag(&items, "csv"));
        assert_ne!(etag(&items, "json"), etag(&items[..1], "json"));
    }

    #[test]
    fn if_none_match_is_compared_weakly_and_in_lists() {
        let tag = etag(&[item(0, 1)], ());
        let opaque = tag.to_str().unwrap().trim_start_matches("W/").to_owned();
        for sent in
            [tag.to_str().unwrap().to_owned(), opaque.clone(), format!("\"other\", {opaque}"), "*".into()]
        {
            let mut headers = HeaderMap::new();
            headers.insert(IF_NONE_MATCH, HeaderValue::from_str(&sent).unwrap());
            let response = not_modified(&headers, &tag).expect(&sent);
            assert_eq!(response.status(), StatusCode::NOT_MODIFIED);
            assert_eq!(response.headers()[ETAG], tag);
        }
        let mut headers = HeaderMap::new();
        headers.insert(IF_NONE_MATCH, HeaderValue::from_static("\"other\""));
        assert!(not_modified(&headers, &tag).is_none());
        assert!(not_modified(&HeaderMap::new(), &tag).is_none());
    }
}
