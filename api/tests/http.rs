//! The API through a real HTTP client against the router on 127.0.0.1:0:
//! every endpoint, its error paths, roles, and the tenant isolation matrix.

mod support;

use std::sync::Arc;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use support::{ACME_DEVICES, GLOBEX_DEVICE, Server, code, now_ms};
use wenu_api::ApiLimits;
use wenu_stats::{Job, Point, Retention, SeriesKey};

fn items(body: &Value) -> &Vec<Value> {
    body["items"].as_array().unwrap_or_else(|| panic!("no items in {body}"))
}

#[tokio::test]
async fn health_is_open_and_everything_else_needs_a_live_token() {
    let server = Server::start(ApiLimits::default()).await;
    let (status, body) = server.call(Method::GET, "/api/v1/health", None, None).await;
    assert_eq!((status, body["status"].as_str()), (StatusCode::OK, Some("ok")));

    let revoked =
        server.registry.create_token(Some("acme"), wenu_registry::Role::Admin, "old", None).await.unwrap();
    server.registry.revoke_token(&revoked.token.id).await.unwrap();
    for path in
        ["/api/v1/me", "/api/v1/series", "/api/v1/stats", "/api/v1/devices", "/api/v1/audit", "/api/v1/live"]
    {
        for token in
            [None, Some("wenu_0000000000000000_nope"), Some("garbage"), Some(revoked.bearer.as_str())]
        {
            let response = server.client.get(server.url(path));
            let response = match token {
                Some(t) => response.bearer_auth(t),
                None => response,
            };
            let response = response.send().await.unwrap();
            assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{path} with {token:?}");
            assert_eq!(response.headers()["www-authenticate"], "Bearer");
            let body: Value = response.json().await.unwrap();
            assert_eq!(code(&body), "unauthorized");
        }
    }
    let (status, body) = server.get("/api/v1/no-such-thing", &server.tokens.acme_viewer).await;
    assert_eq!((status, code(&body)), (StatusCode::NOT_FOUND, "not_found"));
}

/// A dashboard that asks again for buckets that have not changed gets
/// `304 Not Modified`; a late reading in one of them changes the ETag.
#[tokio::test]
async fn stats_carry_an_etag_that_changes_only_with_their_buckets() {
    let server = Server::start(ApiLimits::default()).await;
    let viewer = &server.tokens.acme_viewer;
    let stats = server.url("/api/v1/stats?device=acme-00001&sensor=temp-1&res=1m&from=-3h");
    let get = |url: String, etag: Option<reqwest::header::HeaderValue>| {
        let request = server.client.get(url).bearer_auth(viewer);
        let request = match etag {
            Some(etag) => request.header("if-none-match", etag),
            None => request,
        };
        async move { request.send().await.unwrap() }
    };
    let first = get(stats.clone(), None).await;
    assert_eq!(first.status(), StatusCode::OK);
    assert_eq!(first.headers()["cache-control"], "private, no-cache");
    let etag = first.headers()["etag"].clone();
    assert!(etag.to_str().unwrap().starts_with("W/\""), "{etag:?}");

    let again = get(stats.clone(), Some(etag.clone())).await;
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(again.headers()["etag"], etag);
    assert!(again.bytes().await.unwrap().is_empty());
    // The same buckets as CSV are another representation.
    let csv = get(format!("{stats}&format=csv"), Some(etag.clone())).await;
    assert_eq!(csv.status(), StatusCode::OK);
    assert_ne!(csv.headers()["etag"], etag);

    // A late reading lands in a closed bucket half an hour back.
    let late = Job {
        series: SeriesKey { company: "acme".into(), device: "acme-00001".into(), sensor: "temp-1".into() },
        points: vec![Point { seq: 10_000, ts: server.seeded_until - 30 * 60_000 + 5_000, value: 1e3 }],
        retention: Retention::default(),
    };
    wenu_stats::apply_job(server.stats.as_ref(), &late).await.unwrap();
    let changed = get(stats, Some(etag.clone())).await;
    assert_eq!(changed.status(), StatusCode::OK);
    assert_ne!(changed.headers()["etag"], etag);
    let body: Value = changed.json().await.unwrap();
    assert!(body["items"].as_array().unwrap().iter().any(|b| b["max"] == 1e3));
}

#[tokio::test]
async fn data_endpoints_serve_the_company_its_series_stats_latest_and_completeness() {
    let server = Server::start(ApiLimits::default()).await;
    let viewer = &server.tokens.acme_viewer;

    let (_, me) = server.get("/api/v1/me", viewer).await;
    assert_eq!((me["company"].as_str(), me["role"].as_str()), (Some("acme"), Some("viewer")));

    let (status, series) = server.get("/api/v1/series", viewer).await;
    assert_eq!(status, StatusCode::OK);
    let names: Vec<_> = items(&series).iter().map(|s| s["device"].as_str().unwrap()).collect();
    assert_eq!(names, ACME_DEVICES);
    assert_eq!(items(&series)[0]["site"], "north");
    let (_, north) = server.get("/api/v1/series?site=north", viewer).await;
    assert_eq!(items(&north).len(), 1);
    // Pages of one, followed by cursor.
    let (_, first) = server.get("/api/v1/series?limit=1", viewer).await;
    let cursor = first["next"].as_str().unwrap();
    let (_, second) = server.get(&format!("/api/v1/series?limit=1&cursor={cursor}"), viewer).await;
    assert_eq!(items(&second)[0]["device"], "acme-00002");
    assert!(second["next"].is_null());

    // 120 one-minute buckets, values 0..120 in order; mean = min = max = the value.
    let stats = "/api/v1/stats?device=acme-00001&sensor=temp-1&res=1m&from=-3h";
    let (status, body) = server.get(stats, viewer).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let buckets = items(&body);
    assert_eq!(buckets.len(), 120);
    for (i, bucket) in buckets.iter().enumerate() {
        assert_eq!((bucket["count"].as_u64(), bucket["mean"].as_f64()), (Some(1), Some(i as f64)));
    }
    assert_eq!(buckets[119]["bucket_ms"].as_i64().unwrap(), server.seeded_until - 60_000);
    // The same in pages of 50.
    let (mut seen, mut cursor) = (0, None::<String>);
    loop {
        let page = format!("{stats}&limit=50{}", cursor.map(|c| format!("&cursor={c}")).unwrap_or_default());
        let (_, body) = server.get(&page, viewer).await;
        seen += items(&body).len();
        match body["next"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen, 120);
    // Hourly buckets add up to the same count.
    let (_, hours) =
        server.get("/api/v1/stats?device=acme-00001&sensor=temp-1&res=1h&from=-3h", viewer).await;
    assert_eq!(items(&hours).iter().map(|b| b["count"].as_u64().unwrap()).sum::<u64>(), 120);

    // CSV, asked for by parameter or by Accept.
    let csv = server
        .client
        .get(server.url(&format!("{stats}&format=csv")))
        .bearer_auth(viewer)
        .send()
        .await
        .unwrap();
    assert_eq!(csv.headers()["content-type"], "text/csv; charset=utf-8");
    let text = csv.text().await.unwrap();
    assert!(text.starts_with("bucket,bucket_ms,count,min,max,sum,mean,last,p50,p95,p99\n"), "{text}");
    assert_eq!(text.lines().count(), 121);
    let accept =
        server.client.get(server.url(stats)).bearer_auth(viewer).header("accept", "text/csv").send().await;
    assert_eq!(accept.unwrap().text().await.unwrap(), text);

    let (_, latest) = server.get("/api/v1/latest", viewer).await;
    let latest = items(&latest);
    assert_eq!(latest.len(), 2);
    assert!(latest.iter().all(|v| v["value"] == 119.0 && v["unit"] == "degC"), "{latest:?}");

    let (_, completeness) = server.get("/api/v1/completeness?from=-3h", viewer).await;
    let by_device: Vec<_> = items(&completeness)
        .iter()
        .map(|c| {
            (c["device"].as_str().unwrap(), c["received"].as_u64().unwrap(), c["expected"].as_u64().unwrap())
        })
        .collect();
    assert_eq!(by_device, [("acme-00001", 120, 120), ("acme-00002", 118, 120)]);
    assert_eq!(completeness["next"], serde_json::Value::Null);
    let (_, first) = server.get("/api/v1/completeness?from=-3h&limit=1", viewer).await;
    assert_eq!((items(&first).len(), first["next"].as_str()), (1, Some("1")));
    let (_, second) = server.get("/api/v1/completeness?from=-3h&limit=1&cursor=1", viewer).await;
    assert_eq!(items(&second)[0]["device"], "acme-00002");
    assert_eq!(second["next"], serde_json::Value::Null);

    // No lake behind this server: raw readings are unavailable, said clearly.
    let (status, body) = server.get("/api/v1/readings?device=acme-00001", viewer).await;
    assert_eq!((status, code(&body)), (StatusCode::SERVICE_UNAVAILABLE, "unavailable"));
}

#[tokio::test]
async fn bad_parameters_get_400_saying_what_is_wrong() {
    let server = Server::start(ApiLimits { max_buckets: 2000, ..ApiLimits::default() }).await;
    let cases = [
        ("/api/v1/stats?sensor=temp-1", "device is required"),
        ("/api/v1/stats?device=acme-00001", "sensor is required"),
        ("/api/v1/stats?device=acme-00001&sensor=temp-1&res=5m", "res \"5m\""),
        ("/api/v1/stats?device=acme-00001&sensor=temp-1&from=now&to=-1h", "from must be before to"),
        ("/api/v1/stats?device=acme-00001&sensor=temp-1&from=yesterday", "from: \"yesterday\""),
        ("/api/v1/stats?device=acme-00001&sensor=temp-1&from=-30d", "at most 2000"),
        ("/api/v1/stats?device=acme-00001&sensor=temp-1&limit=0", "limit 0"),
        ("/api/v1/stats?device=acme-00001&sensor=temp-1&limit=x", "limit"),
        ("/api/v1/stats?device=acme-00001&sensor=temp-1&cursor=5", "cursor outside the range"),
        ("/api/v1/stats?device=acme-00001&sensor=temp-1&format=xml", "format \"xml\""),
        ("/api/v1/readings?device=acme-00001&from=-2d", "at most 6 h"),
        ("/api/v1/readings", "device is required"),
        ("/api/v1/completeness?from=-60d", "at most 31 days"),
        ("/api/v1/completeness?limit=101", "limit 101"),
        // Far outside any calendar: refused, not wrapped around.
        (
            "/api/v1/readings?device=acme-00001&from=-9223372036854775807&to=9223372036854775807",
            "relative time",
        ),
        ("/api/v1/readings?device=acme-00001&from=0&to=9223372036854775807", "to: outside the years"),
        ("/api/v1/stats?device=acme-00001&sensor=temp-1&from=-3000000d", "outside the years"),
        ("/api/v1/series?limit=100000", "limit 100000"),
        ("/api/v1/audit?limit=5000", "limit 5000"),
    ];
    for (path, expected) in cases {
        let (status, body) = server.get(path, &server.tokens.acme_admin).await;
        assert_eq!((status, code(&body)), (StatusCode::BAD_REQUEST, "bad_request"), "{path}: {body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(expected), "{path}: {message:?} should say {expected:?}");
    }
    let admin = Some(server.tokens.acme_admin.as_str());
    let bodies = [
        (Method::PUT, "/api/v1/devices/acme-00001/sensors/s1", json!({ "kind": "t" }), "unit"),
        (
            Method::PUT,
            "/api/v1/devices/acme-00001/sensors/s1",
            json!({ "kind": "t", "unit": "degC", "scale": 0 }),
            "scale",
        ),
        (
            Method::PUT,
            "/api/v1/devices/acme-00001/sensors/s1",
            json!({ "kind": "t", "unit": "degC", "colour": 1 }),
            "colour",
        ),
        (
            Method::PUT,
            "/api/v1/devices/acme-00001/sensors/s1",
            json!({ "kind": "t", "unit": "degC", "valid_min": 5, "valid_max": 1 }),
            "valid_min",
        ),
        (
            Method::PUT,
            "/api/v1/devices/acme-00001/sensors/bad%20name",
            json!({ "kind": "t", "unit": "degC" }),
            "invalid id",
        ),
        (Method::PUT, "/api/v1/sites/x", json!({ "name": "" }), "site name"),
        (Method::POST, "/api/v1/devices", json!({ "count": 0 }), "count"),
        (Method::POST, "/api/v1/tokens", json!({ "role": "king", "name": "x" }), "role"),
        (
            Method::PUT,
            "/api/v1/companies/acme/settings",
            json!({ "stats_retention": { "minute": 0 } }),
            "at least one day",
        ),
    ];
    for (method, path, body, expected) in bodies {
        let (status, answer) = server.call(method.clone(), path, admin, Some(body)).await;
        assert_eq!(
            (status, code(&answer)),
            (StatusCode::BAD_REQUEST, "bad_request"),
            "{method} {path}: {answer}"
        );
        assert!(answer["error"]["message"].as_str().unwrap().contains(expected), "{path}: {answer}");
    }
    // Not JSON at all.
    let response = server
        .client
        .put(server.url("/api/v1/sites/x"))
        .bearer_auth(&server.tokens.acme_admin)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
}

/// Every endpoint, called by company A's tokens on company B's resources:
/// refused, and B's data never appears.
#[tokio::test]
async fn no_token_of_one_company_reaches_anything_of_another() {
    let server = Server::start(ApiLimits::default()).await;
    let globex_token_id = server.registry.list_tokens(Some("globex")).await.unwrap()[0].id.clone();
    let (globex_alarm, globex_webhook) = (server.globex_alarm.clone(), server.globex_webhook.clone());
    let globex_silence = server.globex_silence.clone();
    let d = GLOBEX_DEVICE;
    let requests: Vec<(Method, String, Option<Value>)> = vec![
        (Method::GET, "/api/v1/series?company=globex".into(), None),
        (Method::GET, format!("/api/v1/stats?device={d}&sensor=temp-1"), None),
        (Method::GET, format!("/api/v1/stats?company=globex&device={d}&sensor=temp-1"), None),
        (Method::GET, format!("/api/v1/latest?device={d}"), None),
        (Method::GET, format!("/api/v1/readings?device={d}"), None),
        (Method::GET, "/api/v1/completeness?company=globex".into(), None),
        (Method::GET, format!("/api/v1/live?device={d}"), None),
        (Method::GET, "/api/v1/live?company=globex".into(), None),
        (Method::GET, "/api/v1/companies/globex/settings".into(), None),
        (Method::PUT, "/api/v1/companies/globex/settings".into(), Some(json!({ "stats_retention": {} }))),
        (Method::GET, "/api/v1/sites?company=globex".into(), None),
        (Method::PUT, "/api/v1/sites/east?company=globex".into(), Some(json!({ "name": "taken" }))),
        (Method::DELETE, "/api/v1/sites/east?company=globex".into(), None),
        (Method::GET, "/api/v1/devices?company=globex".into(), None),
        (Method::POST, "/api/v1/devices?company=globex".into(), Some(json!({ "count": 1 }))),
        (Method::GET, format!("/api/v1/devices/{d}"), None),
        (Method::PATCH, format!("/api/v1/devices/{d}"), Some(json!({ "enabled": false }))),
        (Method::POST, format!("/api/v1/devices/{d}/rotate-key"), None),
        (Method::GET, format!("/api/v1/devices/{d}/sensors"), None),
        (Method::GET, "/api/v1/fleet?company=globex".into(), None),
        (Method::GET, format!("/api/v1/devices/{d}/state"), None),
        (Method::GET, format!("/api/v1/devices/{d}/config"), None),
        (Method::PUT, format!("/api/v1/devices/{d}/config"), Some(json!({ "interval_s": 1 }))),
        (Method::GET, format!("/api/v1/devices/{d}/commands"), None),
        (Method::POST, format!("/api/v1/devices/{d}/commands"), Some(json!({ "name": "reboot" }))),
        (
            Method::PUT,
            format!("/api/v1/devices/{d}/sensors/temp-1"),
            Some(json!({ "kind": "x", "unit": "degF" })),
        ),
        (Method::DELETE, format!("/api/v1/devices/{d}/sensors/temp-1"), None),
        (Method::GET, "/api/v1/tokens?company=globex".into(), None),
        (
            Method::POST,
            "/api/v1/tokens".into(),
            Some(json!({ "role": "admin", "name": "x", "company": "globex" })),
        ),
        (Method::DELETE, format!("/api/v1/tokens/{globex_token_id}"), None),
        (Method::GET, "/api/v1/audit?company=globex".into(), None),
        (Method::GET, "/api/v1/rules?company=globex".into(), None),
        (Method::PUT, "/api/v1/rules/boiler?company=globex".into(), Some(rule_body())),
        (Method::DELETE, "/api/v1/rules/boiler?company=globex".into(), None),
        (Method::DELETE, "/api/v1/rules/boiler".into(), None),
        (Method::GET, "/api/v1/alarms?company=globex".into(), None),
        (Method::GET, format!("/api/v1/alarms/{globex_alarm}"), None),
        (Method::POST, format!("/api/v1/alarms/{globex_alarm}/ack"), Some(json!({ "comment": "mine" }))),
        (Method::POST, format!("/api/v1/alarms/{globex_alarm}/ack?company=globex"), Some(json!({}))),
        (Method::GET, "/api/v1/alarms/history?company=globex".into(), None),
        (Method::GET, "/api/v1/alarms/dead-letters?company=globex".into(), None),
        (Method::GET, "/api/v1/webhooks?company=globex".into(), None),
        (
            Method::POST,
            "/api/v1/webhooks?company=globex".into(),
            Some(json!({ "url": "https://evil.example" })),
        ),
        (Method::DELETE, format!("/api/v1/webhooks/{globex_webhook}"), None),
        (Method::GET, "/api/v1/channels?company=globex".into(), None),
        (
            Method::POST,
            "/api/v1/channels?company=globex".into(),
            Some(json!({ "url": "mailto:thief@evil.example" })),
        ),
        (Method::DELETE, format!("/api/v1/channels/{globex_webhook}"), None),
        (Method::POST, format!("/api/v1/channels/{globex_webhook}/test"), None),
        (Method::GET, "/api/v1/silences?company=globex".into(), None),
        (
            Method::POST,
            "/api/v1/silences?company=globex".into(),
            Some(json!({ "device": GLOBEX_DEVICE, "duration_secs": 60, "reason": "x" })),
        ),
        (
            Method::POST,
            "/api/v1/silences".into(),
            Some(json!({ "device": GLOBEX_DEVICE, "duration_secs": 60, "reason": "x" })),
        ),
        (Method::POST, format!("/api/v1/silences/{globex_silence}/end"), None),
    ];
    let globex_before = server.registry.audit_log(Some("globex"), None, 1000).await.unwrap();
    for token in [&server.tokens.acme_viewer, &server.tokens.acme_admin] {
        for (method, path, body) in &requests {
            let (status, answer) = server.call(method.clone(), path, Some(token), body.clone()).await;
            assert!(
                [StatusCode::FORBIDDEN, StatusCode::NOT_FOUND].contains(&status),
                "{method} {path} answered {status} {answer}"
            );
            for secret in ["East yard", "Globex boiler", "globex.example", "Globex boiler service"] {
                assert!(!answer.to_string().contains(secret), "{method} {path} leaked {answer}");
            }
        }
    }
    // The implicit scope shows only one's own company.
    let acme = &server.tokens.acme_viewer;
    for path in [
        "/api/v1/series",
        "/api/v1/devices",
        "/api/v1/fleet",
        "/api/v1/latest",
        "/api/v1/completeness",
        "/api/v1/sites",
        "/api/v1/companies",
        "/api/v1/silences",
    ] {
        let (status, body) = server.get(path, acme).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert!(!body.to_string().contains("globex"), "{path} shows globex: {body}");
    }
    let (_, audit) = server.get("/api/v1/audit", &server.tokens.acme_admin).await;
    assert!(!items(&audit).is_empty() && !audit.to_string().contains("globex"));
    let (_, tokens) = server.get("/api/v1/tokens", &server.tokens.acme_admin).await;
    assert!(items(&tokens).iter().all(|t| t["company"] == "acme"));
    // Nothing of globex changed.
    assert_eq!(server.registry.audit_log(Some("globex"), None, 1000).await.unwrap(), globex_before);
    assert!(server.registry.device(GLOBEX_DEVICE).await.unwrap().unwrap().enabled);
    let alarm = server.alarms.alarm("globex", &server.globex_alarm).await.unwrap().unwrap();
    assert!(alarm.acknowledged.is_none(), "globex's alarm was not acknowledged by acme");
    // And globex's own token still sees its data.
    let (status, body) = server
        .get(&format!("/api/v1/stats?device={d}&sensor=temp-1&from=-3h"), &server.tokens.globex_viewer)
        .await;
    assert_eq!((status, items(&body).len()), (StatusCode::OK, 120));
}

#[tokio::test]
async fn roles_decide_who_reads_and_who_changes() {
    let server = Server::start(ApiLimits::default()).await;
    let t = &server.tokens;
    // The other way round too: globex's admin cannot touch acme.
    let (status, _) = server
        .call(
            Method::PATCH,
            "/api/v1/devices/acme-00001",
            Some(&t.globex_admin),
            Some(json!({ "enabled": false })),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // Viewers read, never write.
    let (status, _) = server
        .call(Method::PUT, "/api/v1/sites/south", Some(&t.acme_viewer), Some(json!({ "name": "S" })))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = server.get("/api/v1/tokens", &t.acme_viewer).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = server.get("/api/v1/audit", &t.acme_viewer).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // Admins manage their company, but make neither companies nor operators.
    let (status, _) = server
        .call(Method::PUT, "/api/v1/sites/south", Some(&t.acme_admin), Some(json!({ "name": "S" })))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) =
        server.call(Method::POST, "/api/v1/companies", Some(&t.acme_admin), Some(json!({ "id": "x" }))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let op = json!({ "role": "operator", "name": "x" });
    let (status, _) =
        server.call(Method::POST, "/api/v1/tokens", Some(&t.acme_admin), Some(op.clone())).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // Operators see every company, and must say which one a request is about.
    let (_, companies) = server.get("/api/v1/companies", &t.operator).await;
    assert_eq!(items(&companies), &[json!("acme"), json!("globex")]);
    let (status, body) = server.get("/api/v1/series", &t.operator).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (_, series) = server.get("/api/v1/series?company=globex", &t.operator).await;
    assert_eq!(items(&series).len(), 1);
    let (status, _) = server
        .call(Method::POST, "/api/v1/companies", Some(&t.operator), Some(json!({ "id": "initech" })))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = server
        .call(Method::POST, "/api/v1/companies", Some(&t.operator), Some(json!({ "id": "initech" })))
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, created) = server.call(Method::POST, "/api/v1/tokens", Some(&t.operator), Some(op)).await;
    assert_eq!(status, StatusCode::CREATED);
    let (_, me) = server.get("/api/v1/me", created["bearer"].as_str().unwrap()).await;
    assert_eq!(me["role"], "operator");
}

#[tokio::test]
async fn the_registry_is_managed_over_http_and_every_change_is_audited() {
    let server = Server::start(ApiLimits::default()).await;
    let admin_bearer = server.tokens.acme_admin.as_str();
    let admin = Some(admin_bearer);
    let call =
        |method: Method, path: &'static str, body: Option<Value>| server.call(method, path, admin, body);

    let (status, _) = call(Method::PUT, "/api/v1/sites/south", Some(json!({ "name": "South depot" }))).await;
    assert_eq!(status, StatusCode::OK);
    let (status, created) =
        call(Method::POST, "/api/v1/devices", Some(json!({ "count": 2, "site": "south" }))).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let created = items(&created);
    assert_eq!(created.len(), 2);
    assert_eq!(created[0]["device_id"], "acme-00003");
    assert!(created[0]["password"].as_str().unwrap().len() >= 16 && created[0]["key"].is_string());
    let device = server.registry.device("acme-00003").await.unwrap().unwrap();
    assert_eq!((device.site.as_deref(), device.live_key_ids.as_slice()), (Some("south"), &[1][..]));
    let (status, _) =
        call(Method::POST, "/api/v1/devices", Some(json!({ "count": 1, "site": "nowhere" }))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let (status, patched) =
        call(Method::PATCH, "/api/v1/devices/acme-00003", Some(json!({ "enabled": false }))).await;
    assert_eq!((status, &patched["enabled"]), (StatusCode::OK, &json!(false)));
    let (_, rotated) = call(Method::POST, "/api/v1/devices/acme-00003/rotate-key", None).await;
    assert_eq!(rotated["key_id"], 2);
    assert_eq!(server.registry.device("acme-00003").await.unwrap().unwrap().live_key_ids, [1, 2]);

    let sensor = json!({ "kind": "pressure", "unit": "hPa", "scale": 1.01, "offset": -0.5, "valid_min": 300, "valid_max": 1100 });
    let (status, _) = call(Method::PUT, "/api/v1/devices/acme-00003/sensors/pres-1", Some(sensor)).await;
    assert_eq!(status, StatusCode::OK);
    let (_, device) = call(Method::GET, "/api/v1/devices/acme-00003", None).await;
    assert_eq!(device["sensors"][0]["scale"], 1.01);
    let (status, _) = call(Method::DELETE, "/api/v1/devices/acme-00003/sensors/pres-1", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = call(Method::DELETE, "/api/v1/devices/acme-00003/sensors/pres-1", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = call(Method::DELETE, "/api/v1/sites/south", None).await;
    assert_eq!((status, code(&body)), (StatusCode::CONFLICT, "conflict"), "a site with devices stays");

    let retention = json!({ "stats_retention": { "minute": 3, "hour": 30, "day": null } });
    let (status, _) = call(Method::PUT, "/api/v1/companies/acme/settings", Some(retention)).await;
    assert_eq!(status, StatusCode::OK);
    let (_, settings) = call(Method::GET, "/api/v1/companies/acme/settings", None).await;
    assert_eq!(settings["stats_retention"]["minute"], 3);

    let (status, token) = call(
        Method::POST,
        "/api/v1/tokens",
        Some(json!({ "role": "viewer", "name": "wall", "rate_per_second": 5 })),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let bearer = token["bearer"].as_str().unwrap();
    assert_eq!(server.get("/api/v1/me", bearer).await.0, StatusCode::OK);
    let revoke = format!("/api/v1/tokens/{}", token["token"]["id"].as_str().unwrap());
    assert_eq!(server.call(Method::DELETE, &revoke, admin, None).await.0, StatusCode::NO_CONTENT);
    assert_eq!(server.get("/api/v1/me", bearer).await.0, StatusCode::UNAUTHORIZED);

    // The audit log names the token behind each change, newest first.
    let (_, audit) = call(Method::GET, "/api/v1/audit?limit=20", None).await;
    let actions: Vec<_> = items(&audit).iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(
        actions[..8],
        [
            "token.revoke",
            "token.create",
            "company.settings",
            "sensor.delete",
            "sensor.upsert",
            "device.command",
            "key.add",
            "device.set_enabled"
        ],
        "a rotation adds the key and queues the command that carries it"
    );
    let admin_id = server.registry.verify_token(admin_bearer).await.unwrap().unwrap().id;
    assert!(items(&audit)[..8].iter().all(|e| e["actor"].as_str().unwrap().contains(&admin_id)));
    // Paging.
    let before = items(&audit)[3]["revision"].as_i64().unwrap();
    let (_, page) = server.get(&format!("/api/v1/audit?before={before}&limit=2"), admin_bearer).await;
    assert_eq!(items(&page)[0]["action"], "sensor.upsert");
}

#[tokio::test]
async fn the_live_stream_carries_only_the_callers_company() {
    let server = Server::start(ApiLimits::default()).await;
    let mut response = server
        .client
        .get(server.url("/api/v1/live"))
        .bearer_auth(&server.tokens.acme_viewer)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let job = |company: &str, device: &str, value: f64| Job {
        series: SeriesKey { company: company.into(), device: device.into(), sensor: "temp-1".into() },
        points: vec![Point { seq: 7, ts: 1_000, value }],
        retention: Retention::default(),
    };
    // The subscription exists once the response has started.
    let sender = server.live.sender();
    sender.send(Arc::new(vec![job("globex", GLOBEX_DEVICE, 66.0)])).unwrap();
    sender.send(Arc::new(vec![job("globex", GLOBEX_DEVICE, 67.0), job("acme", "acme-00001", 21.5)])).unwrap();
    let mut text = String::new();
    while !text.contains("\n\n") {
        let chunk = tokio::time::timeout(std::time::Duration::from_secs(10), response.chunk())
            .await
            .unwrap()
            .unwrap();
        text.push_str(std::str::from_utf8(&chunk.expect("stream open")).unwrap());
    }
    let event = text.split("\n\n").next().unwrap();
    assert!(event.starts_with("event: readings\ndata: "), "{event}");
    let data: Value = serde_json::from_str(event.split_once("data: ").unwrap().1).unwrap();
    assert_eq!(
        data,
        json!([{ "device": "acme-00001", "sensor": "temp-1", "seq": 7, "ts": 1000, "value": 21.5 }])
    );

    // Alarm transitions, sent through the hub as the alarm notifier does: only acme's arrive.
    use wenu_alarms::Notifier;
    let (globex_alarm, _) = server.alarms.history("globex", 0..i64::MAX, 10, None).await.unwrap();
    let mut acme_alarm = globex_alarm[0].clone();
    acme_alarm.id = "acme-1".into();
    acme_alarm.transition.company = "acme".into();
    server.live.send("api", &globex_alarm[0]).await.unwrap();
    server.live.send("api", &acme_alarm).await.unwrap();
    let mut rest = text.split_once("\n\n").unwrap().1.to_owned();
    while !rest.contains("event: alarm") || !rest.ends_with("\n\n") {
        let chunk = tokio::time::timeout(std::time::Duration::from_secs(10), response.chunk())
            .await
            .unwrap()
            .unwrap();
        rest.push_str(std::str::from_utf8(&chunk.expect("stream open")).unwrap());
    }
    let alarm = rest.split("\n\n").find(|e| e.starts_with("event: alarm")).unwrap();
    let data: Value = serde_json::from_str(alarm.split_once("data: ").unwrap().1).unwrap();
    assert_eq!((data["id"].as_str(), data["company"].as_str()), (Some("acme-1"), Some("acme")));
    assert!(!rest.contains("Globex boiler\",\"company\":\"globex"), "{rest}");
}

#[tokio::test]
async fn a_token_past_its_rate_gets_429_with_retry_after_and_others_do_not() {
    let server = Server::start(ApiLimits { rate_per_second: 1, burst: 3, ..ApiLimits::default() }).await;
    for _ in 0..3 {
        assert_eq!(server.get("/api/v1/me", &server.tokens.acme_viewer).await.0, StatusCode::OK);
    }
    let response = server
        .client
        .get(server.url("/api/v1/me"))
        .bearer_auth(&server.tokens.acme_viewer)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(response.headers()["retry-after"], "1");
    let body: Value = response.json().await.unwrap();
    assert_eq!(code(&body), "rate_limited");
    assert_eq!(
        server.get("/api/v1/me", &server.tokens.globex_viewer).await.0,
        StatusCode::OK,
        "another token is served"
    );
}

fn rule_body() -> Value {
    json!({ "name": "Too hot", "sensor": "temp-1", "severity": "warning",
            "condition": { "kind": "threshold", "direction": "above", "limit": 30, "hysteresis": 1 } })
}

#[tokio::test]
async fn alarm_rules_alarms_and_webhooks_through_the_api() {
    let server = Server::start(ApiLimits::default()).await;
    let (admin, viewer) = (&server.tokens.acme_admin, &server.tokens.acme_viewer);

    // Rules: validated, admin-only to change, readable by viewers.
    let (status, rule) =
        server.call(Method::PUT, "/api/v1/rules/too-hot", Some(admin), Some(rule_body())).await;
    assert_eq!(status, StatusCode::OK, "{rule}");
    assert_eq!((rule["company"].as_str(), rule["enabled"].as_bool()), (Some("acme"), Some(true)));
    let bad = [
        (
            json!({ "name": "x", "severity": "warning", "condition": { "kind": "flatline", "window_ms": 0 }, "sensor": "s" }),
            "window_ms",
        ),
        (
            json!({ "name": "x", "severity": "warning", "condition": { "kind": "missing_data", "silence_ms": 1000 }, "sensor": "s" }),
            "device",
        ),
        (
            json!({ "name": "x", "severity": "loud", "condition": { "kind": "flatline", "window_ms": 1 }, "sensor": "s" }),
            "severity",
        ),
        (
            json!({ "name": "x", "severity": "info", "condition": { "kind": "telepathy" }, "sensor": "s" }),
            "condition",
        ),
        (
            json!({ "name": "x", "severity": "info", "sensor": "s", "device": "globex-00001",
                 "condition": { "kind": "flatline", "window_ms": 1 } }),
            "device",
        ),
    ];
    for (body, problem) in bad {
        let (status, answer) = server.call(Method::PUT, "/api/v1/rules/r2", Some(admin), Some(body)).await;
        assert!(
            [StatusCode::BAD_REQUEST, StatusCode::NOT_FOUND].contains(&status),
            "{problem}: {status} {answer}"
        );
        assert!(answer.to_string().contains(problem), "{problem} named in {answer}");
    }
    let (status, _) =
        server.call(Method::PUT, "/api/v1/rules/too-hot", Some(viewer), Some(rule_body())).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (_, rules) = server.get("/api/v1/rules", viewer).await;
    assert_eq!(rules.as_array().unwrap().len(), 1);

    // An alarm of acme's: listed, acknowledged once (admins only), in the history.
    let too_hot: wenu_alarms::Rule = serde_json::from_value(rule).unwrap();
    let mut state = wenu_alarms::SeriesState::default();
    let raised =
        wenu_alarms::apply_reading(&too_hot, &mut state, "acme-00001", "temp-1", now_ms(), 35.0).unwrap();
    let id = server.alarms.record(&[raised], &[], now_ms()).await.unwrap()[0].alarm.clone();
    let (_, active) = server.get("/api/v1/alarms", viewer).await;
    assert_eq!(active[0]["id"], id.as_str());
    assert_eq!(active[0]["status"], "raised");
    let ack = format!("/api/v1/alarms/{id}/ack");
    let (status, _) = server.call(Method::POST, &ack, Some(viewer), Some(json!({ "comment": "x" }))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, acked) =
        server.call(Method::POST, &ack, Some(admin), Some(json!({ "comment": "on it" }))).await;
    assert_eq!(status, StatusCode::OK, "{acked}");
    assert_eq!(acked["change"], "acknowledged");
    let (status, again) = server.call(Method::POST, &ack, Some(admin), Some(json!({}))).await;
    assert_eq!((status, code(&again)), (StatusCode::CONFLICT, "conflict"));
    let (_, one) = server.get(&format!("/api/v1/alarms/{id}"), viewer).await;
    assert_eq!(
        (one["status"].as_str(), one["acknowledged"]["comment"].as_str()),
        (Some("acknowledged"), Some("on it"))
    );
    let (_, history) = server.get("/api/v1/alarms/history?from=-1h", viewer).await;
    let changes: Vec<&str> = items(&history).iter().map(|t| t["change"].as_str().unwrap()).collect();
    assert_eq!(changes, ["raised", "acknowledged"]);
    let (status, missing) =
        server.call(Method::POST, "/api/v1/alarms/zz/ack", Some(admin), Some(json!({}))).await;
    assert_eq!((status, code(&missing)), (StatusCode::NOT_FOUND, "not_found"));

    // Webhooks: the secret is shown once, never listed.
    let (status, hook) = server
        .call(Method::POST, "/api/v1/webhooks", Some(admin), Some(json!({ "url": "https://acme.example/h" })))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let secret = hook["secret"].as_str().unwrap();
    assert_eq!(secret.len(), 64);
    let (_, hooks) = server.get("/api/v1/webhooks", admin).await;
    assert!(!hooks.to_string().contains(secret) && hooks.to_string().contains("acme.example"));
    let (status, _) = server.get("/api/v1/webhooks", viewer).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, bad_url) =
        server.call(Method::POST, "/api/v1/webhooks", Some(admin), Some(json!({ "url": "ftp://x" }))).await;
    assert_eq!((status, code(&bad_url)), (StatusCode::BAD_REQUEST, "bad_request"));
    let path = format!("/api/v1/webhooks/{}", hook["id"].as_str().unwrap());
    assert_eq!(server.call(Method::DELETE, &path, Some(admin), None).await.0, StatusCode::NO_CONTENT);
    assert_eq!(
        server.call(Method::DELETE, "/api/v1/rules/too-hot", Some(admin), None).await.0,
        StatusCode::NO_CONTENT
    );
}

/// Channels (an e-mail address, a webhook with routing), their test
/// messages through a real SMTP server and a real receiver on loopback, and
/// silences.
#[tokio::test]
async fn channels_silences_and_test_messages_through_the_api() {
    let smtp = wenu_tests::smtp_server::SmtpServer::start(Default::default());
    let server =
        Server::start_with_relay(ApiLimits::default(), Some(format!("smtp://127.0.0.1:{}", smtp.port))).await;
    let (admin, viewer) = (&server.tokens.acme_admin, &server.tokens.acme_viewer);
    let receiver = wenu_tests::webhook_receiver::Receiver::start("unknown yet").await;

    let (status, mail) = server
        .call(
            Method::POST,
            "/api/v1/channels",
            Some(admin),
            Some(json!({ "url": "mailto:ops@acme.example" })),
        )
        .await;
    assert_eq!((status, mail["kind"].as_str()), (StatusCode::CREATED, Some("email")), "{mail}");
    let body = json!({ "url": receiver.url, "format": "wenu", "min_severity": "critical", "escalate_after_secs": 900 });
    let (status, hook) = server.call(Method::POST, "/api/v1/channels", Some(admin), Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{hook}");
    assert_eq!(
        (hook["min_severity"].as_str(), hook["escalate_after_secs"].as_u64()),
        (Some("critical"), Some(900))
    );
    receiver.set_secret(hook["secret"].as_str().unwrap());
    for bad in [
        json!({ "url": "mailto:a@acme.example?bcc=b@evil.example" }),
        json!({ "url": "https://acme.example/h", "escalate_after_secs": 1 }),
        json!({ "url": "https://acme.example/h", "rules": ["no-such-rule"] }),
        json!({ "url": "https://acme.example/h", "min_severity": "loud" }),
    ] {
        let (status, answer) =
            server.call(Method::POST, "/api/v1/channels", Some(admin), Some(bad.clone())).await;
        assert!(
            [StatusCode::BAD_REQUEST, StatusCode::NOT_FOUND].contains(&status),
            "{bad} → {status} {answer}"
        );
    }
    let (_, listed) = server.get("/api/v1/channels", admin).await;
    assert_eq!(items(&listed).len(), 2);
    assert!(!listed.to_string().contains(hook["secret"].as_str().unwrap()), "secrets are never listed");
    assert_eq!(server.get("/api/v1/channels", viewer).await.0, StatusCode::FORBIDDEN);

    // A test message to each, now, with the outcome in the answer.
    let path = format!("/api/v1/channels/{}/test", mail["id"].as_str().unwrap());
    let (status, outcome) = server.call(Method::POST, &path, Some(admin), None).await;
    assert_eq!((status, outcome["delivered"].as_bool()), (StatusCode::OK, Some(true)), "{outcome}");
    let received = smtp.wait_for(1).await;
    assert_eq!(received[0].to, ["ops@acme.example"]);
    assert!(received[0].header("Subject").unwrap().contains("Test message"), "{:?}", received[0].headers);
    let path = format!("/api/v1/channels/{}/test", hook["id"].as_str().unwrap());
    let (_, outcome) = server.call(Method::POST, &path, Some(admin), None).await;
    assert_eq!(outcome["delivered"].as_bool(), Some(true), "{outcome}");
    let delivered = receiver.wait_for(1).await;
    assert!(delivered[0].signed && delivered[0].notification.transition.rule == "test");
    assert_eq!(server.call(Method::POST, &path, Some(viewer), None).await.0, StatusCode::FORBIDDEN);
    // One test per channel per 10 s: the button is not a way to flood an address.
    let (status, again) = server.call(Method::POST, &path, Some(admin), None).await;
    assert_eq!((status, code(&again)), (StatusCode::TOO_MANY_REQUESTS, "rate_limited"), "{again}");
    assert_eq!(receiver.received().len(), 1);

    // A relay that refuses: the answer says so.
    let (_, refused) = server
        .call(
            Method::POST,
            "/api/v1/channels",
            Some(admin),
            Some(json!({ "url": "mailto:nobody@acme.example" })),
        )
        .await;
    let path = format!("/api/v1/channels/{}/test", refused["id"].as_str().unwrap());
    let (status, outcome) = server.call(Method::POST, &path, Some(admin), None).await;
    assert_eq!((status, outcome["delivered"].as_bool()), (StatusCode::OK, Some(false)));
    assert!(outcome["error"].as_str().unwrap().contains("550"), "{outcome}");

    // Silences: made by admins, seen by everyone of the company, ended early.
    let silence = json!({ "site": "north", "duration_secs": 7200, "reason": "pump replaced" });
    let (status, made) =
        server.call(Method::POST, "/api/v1/silences", Some(admin), Some(silence.clone())).await;
    assert_eq!((status, made["active"].as_bool()), (StatusCode::CREATED, Some(true)), "{made}");
    assert!(made["created_by"].as_str().unwrap().starts_with("token:"), "{made}");
    assert_eq!(
        server.call(Method::POST, "/api/v1/silences", Some(viewer), Some(silence)).await.0,
        StatusCode::FORBIDDEN
    );
    let (status, _) = server
        .call(
            Method::POST,
            "/api/v1/silences",
            Some(admin),
            Some(json!({ "device": "acme-00001", "reason": "x" })),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "a silence needs an end");
    let (_, listed) = server.get("/api/v1/silences", viewer).await;
    assert_eq!(items(&listed).len(), 1);
    let path = format!("/api/v1/silences/{}/end", made["id"].as_str().unwrap());
    let (status, ended) = server.call(Method::POST, &path, Some(admin), None).await;
    assert_eq!((status, ended["active"].as_bool()), (StatusCode::OK, Some(false)));
    assert!(items(&server.get("/api/v1/silences", viewer).await.1).is_empty());
    assert_eq!(items(&server.get("/api/v1/silences?all=true", viewer).await.1).len(), 1);
    let (_, audit) = server.get("/api/v1/audit", admin).await;
    for action in ["silence.add", "silence.end", "channel.add"] {
        assert!(audit.to_string().contains(action), "{action} audited");
    }
}

#[tokio::test]
async fn live_streams_are_capped_per_token_and_end_when_their_token_is_revoked() {
    let limits = ApiLimits {
        max_live_streams_per_token: 2,
        live_token_check: std::time::Duration::from_millis(20),
        ..ApiLimits::default()
    };
    let server = Server::start(limits).await;
    let open =
        |bearer: &str| server.client.get(server.url("/api/v1/live")).bearer_auth(bearer.to_owned()).send();
    let viewer = server.tokens.acme_viewer.clone();
    let mut first = open(&viewer).await.unwrap();
    let second = open(&viewer).await.unwrap();
    assert_eq!((first.status(), second.status()), (StatusCode::OK, StatusCode::OK));
    let third = open(&viewer).await.unwrap();
    assert_eq!(third.status(), StatusCode::TOO_MANY_REQUESTS, "a token's third stream");
    let body: Value = third.json().await.unwrap();
    assert_eq!(code(&body), "too_many_streams");
    assert_eq!(open(&server.tokens.acme_admin).await.unwrap().status(), StatusCode::OK, "another token's");

    let id = server.registry.verify_token(&viewer).await.unwrap().unwrap().id;
    server.registry.revoke_token(&id).await.unwrap();
    let ended = tokio::time::timeout(std::time::Duration::from_secs(30), async {
        while let Ok(Some(_)) = first.chunk().await {}
    })
    .await;
    assert!(ended.is_ok(), "the revoked token's stream ended");
}

/// Data requests remember who owns a device for a second: an answer given
/// to one company is never one given to another, and a token revoked
/// through the API is refused at once, remembered or not.
#[tokio::test]
async fn remembered_registry_answers_never_cross_companies_or_outlive_a_revocation() {
    let server = Server::start(ApiLimits::default()).await;
    let stats = |device: &str| format!("/api/v1/stats?device={device}&sensor=temp-1&res=1m&from=-1h");
    for _ in 0..2 {
        assert_eq!(server.get(&stats(ACME_DEVICES[0]), &server.tokens.acme_viewer).await.0, StatusCode::OK);
        let (status, body) = server.get(&stats(ACME_DEVICES[0]), &server.tokens.globex_viewer).await;
        assert_eq!((status, code(&body)), (StatusCode::NOT_FOUND, "not_found"));
        let (status, _) = server.get(&stats(GLOBEX_DEVICE), &server.tokens.acme_viewer).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }

    let wall =
        server.registry.create_token(Some("acme"), wenu_registry::Role::Viewer, "wall", None).await.unwrap();
    assert_eq!(server.get(&stats(ACME_DEVICES[0]), &wall.bearer).await.0, StatusCode::OK);
    let revoke = format!("/api/v1/tokens/{}", wall.token.id);
    let admin = &server.tokens.acme_admin;
    assert_eq!(server.call(Method::DELETE, &revoke, Some(admin), None).await.0, StatusCode::NO_CONTENT);
    assert_eq!(server.get(&stats(ACME_DEVICES[0]), &wall.bearer).await.0, StatusCode::UNAUTHORIZED);
}

/// The fleet view and each device's downlink: presence from the edge's
/// connect and disconnect, silence, configuration staleness, commands.
#[tokio::test]
async fn the_fleet_view_and_the_downlink_through_the_api() {
    let server = Server::start(ApiLimits::default()).await;
    let (viewer, admin) = (&server.tokens.acme_viewer, &server.tokens.acme_admin);
    let [d1, d2] = ACME_DEVICES;
    let (status, fleet) = server.get("/api/v1/fleet", viewer).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(fleet["counts"]["never_seen"], 2, "{fleet}");

    // A configuration set while the device is away waits for it, stale.
    let (status, config) = server
        .call(
            Method::PUT,
            &format!("/api/v1/devices/{d1}/config"),
            Some(admin),
            Some(json!({ "interval_s": 30 })),
        )
        .await;
    assert_eq!((status, config["version"].as_i64()), (StatusCode::OK, Some(1)), "{config}");
    let (status, _) = server
        .call(
            Method::PUT,
            &format!("/api/v1/devices/{d1}/config"),
            Some(viewer),
            Some(json!({ "interval_s": 5 })),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "viewers read, they do not change");
    let (status, body) = server
        .call(Method::PUT, &format!("/api/v1/devices/{d1}/config"), Some(admin), Some(json!([1])))
        .await;
    assert_eq!((status, code(&body)), (StatusCode::BAD_REQUEST, "bad_request"));
    let (_, got) = server.get(&format!("/api/v1/devices/{d1}/config"), viewer).await;
    assert_eq!(got["document"], json!({ "interval_s": 30 }));
    let (status, _) = server.get(&format!("/api/v1/devices/{d2}/config"), viewer).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "d2 has none");

    // The edge records d1 connecting, then what it reports; d2 connects and stays quiet.
    let now = now_ms();
    server.registry.record_presence(d1, true, now).await.unwrap();
    server.registry.record_last_seen(&[(d1.to_owned(), now)]).await.unwrap();
    server.registry.record_presence(d2, true, now - 600_000).await.unwrap();
    let (_, fleet) = server.get("/api/v1/fleet", viewer).await;
    let entry = |fleet: &Value, d: &str| items(fleet).iter().find(|e| e["device_id"] == d).unwrap().clone();
    assert_eq!(entry(&fleet, d1)["presence"], "online");
    assert_eq!(entry(&fleet, d1)["config_stale"], true);
    assert_eq!(entry(&fleet, d2)["presence"], "silent", "connected ten minutes and nothing sent");
    let (_, wider) = server.get("/api/v1/fleet?silent_after_secs=3600", viewer).await;
    assert_eq!(entry(&wider, d2)["presence"], "online");
    let report =
        wenu_registry::Report { firmware: Some("2.0.1".into()), boot: Some(7), config_version: Some(1) };
    server.registry.record_report(d1, &report).await.unwrap();
    let (_, state) = server.get(&format!("/api/v1/devices/{d1}/state"), viewer).await;
    assert_eq!(state["config_stale"], false, "{state}");
    assert_eq!(state["last_reading"]["seq"], 120, "its newest reading, from the stats: {state}");
    let (_, quiet) = server.get(&format!("/api/v1/devices/{d2}/state"), viewer).await;
    assert_eq!(quiet["last_reading"]["seq"], 120, "{quiet}");
    assert_eq!(
        (state["state"]["firmware"].as_str(), state["state"]["boot"].as_i64()),
        (Some("2.0.1"), Some(7))
    );
    server.registry.record_presence(d2, false, now).await.unwrap();
    let (_, fleet) = server.get("/api/v1/fleet", viewer).await;
    assert_eq!(entry(&fleet, d2)["presence"], "offline");
    assert_eq!(
        fleet["counts"],
        json!({
            "devices": 2, "online": 1, "silent": 0, "offline": 1, "never_seen": 0, "config_stale": 0
        })
    );

    // Commands: queued by an admin, listed with their status; rotate_key is not for hand use.
    let commands = format!("/api/v1/devices/{d1}/commands");
    let (status, command) = server
        .call(
            Method::POST,
            &commands,
            Some(admin),
            Some(json!({ "name": "set_interval", "args": { "s": 60 } })),
        )
        .await;
    assert_eq!((status, command["status"].as_str()), (StatusCode::CREATED, Some("pending")), "{command}");
    for bad in [
        json!({ "name": "rotate_key" }),
        json!({ "name": "Bad Name" }),
        json!({ "name": "x", "ttl_secs": 0 }),
    ] {
        let (status, body) = server.call(Method::POST, &commands, Some(admin), Some(bad.clone())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad} answered {body}");
    }
    let (_, listed) = server.get(&commands, viewer).await;
    assert_eq!(items(&listed).len(), 1);
    assert_eq!(items(&listed)[0]["args"], json!({ "s": 60 }));

    // A key rotation over the API queues the sealed key for the device.
    let (status, rotated) = server
        .call(
            Method::POST,
            &format!("/api/v1/devices/{d1}/rotate-key?retire_after_secs=600"),
            Some(admin),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    assert!(rotated["retire_at"].as_i64().is_some_and(|at| at >= now + 600_000));
    let (_, listed) = server.get(&commands, viewer).await;
    assert_eq!(items(&listed)[0]["name"], "rotate_key");
    assert_eq!(items(&listed)[0]["id"], rotated["command_id"]);
    assert!(
        !listed.to_string().contains(rotated["key"].as_str().unwrap()),
        "the key itself never travels in clear"
    );
}
