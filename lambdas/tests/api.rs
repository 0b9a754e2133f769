//! The API function: API Gateway HTTP API events (payload 2.0, the fixture
//! is AWS's sample) turned into requests by `lambda_http`, answered by the
//! same router as on one machine, over a real registry (SQLite) and stats
//! table.

use std::sync::Arc;

use lambda_http::request::LambdaRequest;
use lambda_http::{Request, Service};
use serde_json::{Value, json};
use wenu_api::{ApiState, DeviceKeys};
use wenu_local::SqliteTable;
use wenu_registry::{Registry, Role};

struct Api {
    _dir: tempfile::TempDir,
    registry: Registry,
    router: axum::Router,
}

async fn api() -> Api {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::open(&dir.path().join("registry.db")).await.unwrap();
    let keys =
        wenu_api::StoredKeys::new(Box::new(wenu_local::KeyringFile::new(dir.path().join("keyring.json"))));
    keys.provision(&registry, "acme", 2).await.unwrap();
    keys.provision(&registry, "globex", 1).await.unwrap();
    let stats = Arc::new(SqliteTable::open(&dir.path().join("stats.db")).unwrap());
    let state = ApiState::new(registry.clone(), stats, Default::default(), Default::default());
    Api { _dir: dir, registry, router: wenu_api::router(state) }
}

/// The fixture as `method path?query` with `bearer` and `body`.
fn event(method: &str, path_and_query: &str, bearer: Option<&str>, body: Option<Value>) -> Request {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/apigw-http-event.json"))
            .unwrap();
    let mut json: Value = serde_json::from_str(&text).unwrap();
    let (path, query) = path_and_query.split_once('?').unwrap_or((path_and_query, ""));
    json["rawPath"] = path.into();
    json["rawQueryString"] = query.into();
    json["requestContext"]["http"]["method"] = method.into();
    json["requestContext"]["http"]["path"] = path.into();
    json["queryStringParameters"] =
        Value::Object(url_pairs(query).into_iter().map(|(k, v)| (k, Value::String(v))).collect());
    let mut headers = json!({ "content-type": "application/json" });
    if let Some(bearer) = bearer {
        headers["authorization"] = format!("Bearer {bearer}").into();
    }
    json["headers"] = headers;
    json["cookies"] = json!([]);
    json["body"] = body.map_or(Value::Null, |b| b.to_string().into());
    let request: LambdaRequest = serde_json::from_value(json).unwrap();
    request.into()
}

fn url_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (k.into(), v.into()))
        .collect()
}

async fn call(api: &mut Api, request: Request) -> (u16, Value) {
    let response = api.router.call(request).await.unwrap();
    let status = response.status().as_u16();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

#[tokio::test]
async fn api_gateway_requests_reach_the_router_with_their_token_path_query_and_body() {
    let mut api = api().await;
    let acme = api.registry.create_token(Some("acme"), Role::Admin, "dashboard", None).await.unwrap();

    let (status, me) = call(&mut api, event("GET", "/api/v1/me", Some(&acme.bearer), None)).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["company"], "acme");

    let (status, body) = call(&mut api, event("GET", "/api/v1/me", None, None)).await;
    assert_eq!(status, 401, "{body}");

    // The query string reaches the handler: acme's token cannot list globex's devices.
    let (status, devices) = call(&mut api, event("GET", "/api/v1/devices", Some(&acme.bearer), None)).await;
    assert_eq!(status, 200, "{devices}");
    assert_eq!(devices["items"].as_array().unwrap().len(), 2);
    let (status, body) =
        call(&mut api, event("GET", "/api/v1/devices?company=globex", Some(&acme.bearer), None)).await;
    assert_eq!(status, 403, "{body}");

    // The body reaches the handler.
    let put = event("PUT", "/api/v1/sites/north", Some(&acme.bearer), Some(json!({ "name": "North plant" })));
    let (status, site) = call(&mut api, put).await;
    assert_eq!(status, 200, "{site}");
    let sites = api.registry.sites("acme").await.unwrap();
    assert_eq!(sites.len(), 1);

    // Pages are served too (the dashboard behind the same API).
    let response = api.router.call(event("GET", "/dashboard", None, None)).await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
}
