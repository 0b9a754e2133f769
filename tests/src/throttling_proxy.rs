//! A test double for one thing moto cannot do: throttle. An HTTP proxy in
//! front of moto that answers a share of AWS batch calls the way a busy
//! service does, and forwards everything else untouched:
//!
//! * `PutRecords` (Kinesis): every other record of a call fails with
//!   `ProvisionedThroughputExceededException` and is not forwarded;
//! * `SendMessageBatch` (SQS): every other entry fails, not the sender's fault;
//! * `BatchGetItem` (DynamoDB): every other key comes back unprocessed;
//! * the first call of any other operation is refused whole with
//!   `ThrottlingException`, which the SDK's own retry layer must absorb.
//!
//! Only the first `throttled_calls` calls of each operation are throttled,
//! so an adapter that retries gets everything through, and the test can
//! check that each record, message or key arrived exactly once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};

#[derive(Clone)]
struct Shared {
    upstream: String,
    http: reqwest::Client,
    throttled_calls: u32,
    calls: Arc<Mutex<HashMap<String, u32>>>,
}

/// A running proxy; point the SDK at `endpoint`.
pub struct ThrottlingProxy {
    pub endpoint: String,
    calls: Arc<Mutex<HashMap<String, u32>>>,
}

impl ThrottlingProxy {
    /// Proxies to `upstream` (moto), throttling the first `throttled_calls`
    /// calls of each operation.
    pub async fn start(upstream: &str, throttled_calls: u32) -> ThrottlingProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let calls = Arc::new(Mutex::new(HashMap::new()));
        let shared = Shared {
            upstream: upstream.trim_end_matches('/').to_owned(),
            http: reqwest::Client::new(),
            throttled_calls,
            calls: calls.clone(),
        };
        let app = axum::Router::new().fallback(proxy).with_state(shared);
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        ThrottlingProxy { endpoint, calls }
    }

    /// How many calls of `operation` (`PutRecords`, …) came through.
    pub fn calls(&self, operation: &str) -> u32 {
        self.calls.lock().unwrap().get(operation).copied().unwrap_or(0)
    }
}

async fn proxy(State(shared): State<Shared>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 64 << 20).await.unwrap();
    // JSON-protocol services name the operation in X-Amz-Target: `Kinesis_20131202.PutRecords`.
    let operation = parts
        .headers
        .get("x-amz-target")
        .and_then(|t| t.to_str().ok())
        .and_then(|t| t.rsplit('.').next())
        .unwrap_or("")
        .to_owned();
    let call = {
        let mut calls = shared.calls.lock().unwrap();
        let n = calls.entry(operation.clone()).or_default();
        *n += 1;
        *n
    };
    let throttle = call <= shared.throttled_calls && !operation.is_empty();
    let request: Option<Value> = serde_json::from_slice(&body).ok();
    let forward = |body: Vec<u8>| forward(&shared, &parts.method, &parts.uri, &parts.headers, body);
    match (operation.as_str(), request) {
        ("PutRecords", Some(mut request)) if throttle => {
            let records = take_array(&mut request, "Records");
            let (kept, refused) = split_every_other(records);
            request["Records"] = Value::Array(kept.iter().map(|(_, r)| r.clone()).collect());
            let (status, headers, mut answer) = forward(serde_json::to_vec(&request).unwrap()).await;
            let results = take_array(&mut answer, "Records");
            let mut merged = vec![Value::Null; kept.len() + refused.len()];
            for ((i, _), result) in kept.iter().zip(results) {
                merged[*i] = result;
            }
            for (i, _) in &refused {
                merged[*i] = json!({"ErrorCode": "ProvisionedThroughputExceededException", "ErrorMessage": "Rate exceeded for shard (throttling proxy)"});
            }
            let failed = answer["FailedRecordCount"].as_u64().unwrap_or(0) + refused.len() as u64;
            answer["Records"] = Value::Array(merged);
            answer["FailedRecordCount"] = json!(failed);
            respond(status, headers, answer)
        }
        ("SendMessageBatch", Some(mut request)) if throttle => {
            let entries = take_array(&mut request, "Entries");
            let (kept, refused) = split_every_other(entries);
            request["Entries"] = Value::Array(kept.into_iter().map(|(_, e)| e).collect());
            let (status, headers, mut answer) = forward(serde_json::to_vec(&request).unwrap()).await;
            let mut failed = take_array(&mut answer, "Failed");
            failed.extend(refused.into_iter().map(|(_, e)| {
                json!({"Id": e["Id"], "SenderFault": false, "Code": "ThrottlingException", "Message": "throttling proxy"})
            }));
            answer["Failed"] = Value::Array(failed);
            respond(status, headers, answer)
        }
        ("BatchGetItem", Some(mut request)) if throttle => {
            let mut unprocessed = serde_json::Map::new();
            if let Some(tables) = request["RequestItems"].as_object_mut() {
                for (table, wanted) in tables.iter_mut() {
                    let keys = take_array(wanted, "Keys");
                    let (kept, held) = split_every_other(keys);
                    wanted["Keys"] = Value::Array(kept.into_iter().map(|(_, k)| k).collect());
                    if !held.is_empty() {
                        let mut later = wanted.clone();
                        later["Keys"] = Value::Array(held.into_iter().map(|(_, k)| k).collect());
                        unprocessed.insert(table.clone(), later);
                    }
                }
                tables.retain(|_, wanted| wanted["Keys"].as_array().is_some_and(|k| !k.is_empty()));
            }
            let (status, headers, mut answer) =
                if request["RequestItems"].as_object().is_some_and(|t| t.is_empty()) {
                    (StatusCode::OK, HeaderMap::new(), json!({"Responses": {}}))
                } else {
                    forward(serde_json::to_vec(&request).unwrap()).await
                };
            answer["UnprocessedKeys"] = Value::Object(unprocessed);
            respond(status, headers, answer)
        }
        (operation, _)
            if throttle
                && call == 1
                && !matches!(operation, "PutRecords" | "SendMessageBatch" | "BatchGetItem") =>
        {
            let mut response = Response::new(Body::from(
                json!({"__type": "ThrottlingException", "message": "Rate exceeded (throttling proxy)"})
                    .to_string(),
            ));
            *response.status_mut() = StatusCode::BAD_REQUEST;
            response
                .headers_mut()
                .insert("x-amzn-errortype", HeaderValue::from_static("ThrottlingException"));
            response
                .headers_mut()
                .insert("content-type", HeaderValue::from_static("application/x-amz-json-1.0"));
            response
        }
        _ => {
            let (status, headers, body) =
                forward_raw(&shared, &parts.method, &parts.uri, &parts.headers, body.to_vec()).await;
            let mut response = Response::new(Body::from(body));
            *response.status_mut() = status;
            *response.headers_mut() = headers;
            response
        }
    }
}

/// Items of a call, each with its index in the call.
type Indexed = Vec<(usize, Value)>;

/// Keeps the odd-numbered items, refuses the even-numbered ones (0, 2, …),
/// each with its index in the original call.
fn split_every_other(items: Vec<Value>) -> (Indexed, Indexed) {
    items.into_iter().enumerate().partition(|(i, _)| i % 2 == 1)
}

fn take_array(value: &mut Value, field: &str) -> Vec<Value> {
    match value.get_mut(field).map(Value::take) {
        Some(Value::Array(items)) => items,
        _ => Vec::new(),
    }
}

async fn forward(
    shared: &Shared,
    method: &axum::http::Method,
    uri: &axum::http::Uri,
    headers: &HeaderMap,
    body: Vec<u8>,
) -> (StatusCode, HeaderMap, Value) {
    let (status, headers, body) = forward_raw(shared, method, uri, headers, body).await;
    (status, headers, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

async fn forward_raw(
    shared: &Shared,
    method: &axum::http::Method,
    uri: &axum::http::Uri,
    headers: &HeaderMap,
    body: Vec<u8>,
) -> (StatusCode, HeaderMap, Vec<u8>) {
    let url = format!("{}{}", shared.upstream, uri.path_and_query().map_or("/", |p| p.as_str()));
    let mut request = shared.http.request(method.clone(), url).body(body);
    for (name, value) in headers {
        if !matches!(name.as_str(), "host" | "content-length") {
            request = request.header(name, value);
        }
    }
    let answer = request.send().await.expect("moto answers");
    let status = answer.status();
    let mut headers = answer.headers().clone();
    headers.remove("content-length");
    headers.remove("x-amz-crc32");
    (status, headers, answer.bytes().await.expect("moto's answer").to_vec())
}

fn respond(status: StatusCode, mut headers: HeaderMap, body: Value) -> Response {
    headers.remove("content-length");
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}
