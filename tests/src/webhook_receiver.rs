//! A webhook receiver on 127.0.0.1 for alarm tests: records each delivery
//! and checks its signature, and can answer 503 to the first requests.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use bytes::Bytes;
use tokio::sync::Notify;
use wenu_alarms::webhook::signature;
use wenu_alarms::{Channel, Notification};

/// What a webhook receiver got: the notification, and whether its signature verified.
#[derive(Debug, Clone)]
pub struct Received {
    pub delivery: String,
    pub notification: Notification,
    pub signed: bool,
}

/// An HTTP server on 127.0.0.1 that records webhook deliveries; it answers
/// 503 to the first `fail_first` requests.
#[derive(Clone)]
pub struct Receiver {
    pub url: String,
    pub secret: Arc<Mutex<String>>,
    pub received: Arc<Mutex<Vec<Received>>>,
    pub requests: Arc<AtomicU32>,
    pub fail_first: Arc<AtomicU32>,
    pub arrived: Arc<Notify>,
}

impl Receiver {
    pub async fn start(secret: &str) -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let receiver = Receiver {
            url: format!("http://{}/hook", listener.local_addr().unwrap()),
            secret: Arc::new(Mutex::new(secret.to_owned())),
            received: Arc::default(),
            requests: Arc::default(),
            fail_first: Arc::default(),
            arrived: Arc::default(),
        };
        let app =
            axum::Router::new().route("/hook", axum::routing::post(receive)).with_state(receiver.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        receiver
    }

    /// Uses `secret` (one the registry generated) from now on.
    pub fn set_secret(&self, secret: &str) {
        *self.secret.lock().unwrap() = secret.to_owned();
    }

    pub fn target(&self, id: &str) -> Channel {
        Channel {
            id: id.into(),
            company: "acme".into(),
            url: self.url.clone(),
            secret: self.secret.lock().unwrap().clone(),
            format: wenu_alarms::WebhookFormat::Wenu,
            route: Default::default(),
        }
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// Waits until `n` deliveries were received.
    pub async fn wait_for(&self, n: usize) -> Vec<Received> {
        loop {
            let arrived = self.arrived.notified();
            let received = self.received();
            if received.len() >= n {
                return received;
            }
            tokio::time::timeout(std::time::Duration::from_secs(20), arrived)
                .await
                .unwrap_or_else(|_| panic!("{} of {n} deliveries after 20 s", received.len()));
        }
    }
}

async fn receive(State(receiver): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    receiver.requests.fetch_add(1, Ordering::SeqCst);
    if receiver.fail_first.load(Ordering::SeqCst) > 0 {
        receiver.fail_first.fetch_sub(1, Ordering::SeqCst);
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let timestamp: i64 = header("x-wenu-timestamp").parse().unwrap_or_default();
    let secret = receiver.secret.lock().unwrap().clone();
    let signed = header("x-wenu-signature") == signature(&secret, timestamp, &body);
    let notification: Notification = serde_json::from_slice(&body).expect("a notification");
    receiver.received.lock().unwrap().push(Received {
        delivery: header("x-wenu-delivery"),
        notification,
        signed,
    });
    receiver.arrived.notify_waiters();
    StatusCode::NO_CONTENT
}
