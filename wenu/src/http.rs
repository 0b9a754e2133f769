//! The HTTP side: the API and pages of `wenu-api`, plus the process's
//! Prometheus `/metrics`.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::Context;
use axum::http::header::CONTENT_TYPE;
use axum::routing::get;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tower_http::CompressionLevel;
use tower_http::compression::CompressionLayer;
use tower_http::timeout::RequestBodyTimeoutLayer;
use wenu_api::ApiState;

use crate::priority;

/// Seconds: 0.5 ms to 10 s.
const LATENCY_BUCKETS: [f64; 14] =
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// Installs the process-wide metrics recorder once and returns its handle.
pub fn install_metrics_recorder() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            PrometheusBuilder::new()
                // Histograms as buckets (not summaries), so Prometheus can aggregate them.
                .set_buckets(&LATENCY_BUCKETS)
                .expect("bucket list is not empty")
                .install_recorder()
                .expect("no other metrics recorder is installed")
        })
        .clone()
}

/// How long a client has to send a request's headers, and its body; a
/// client that trickles them is cut off rather than holding a connection.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
const BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// Connections served at once; the next waits in the listen backlog.
/// Live streams are capped lower, per token, by the API.
const MAX_CONNECTIONS: usize = 1024;

pub async fn serve(
    addr: SocketAddr,
    metrics: PrometheusHandle,
    api: ApiState,
) -> anyhow::Result<(SocketAddr, JoinHandle<()>)> {
    let exposition = [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")];
    let app = wenu_api::router(api)
        .route("/metrics", get(move || std::future::ready((exposition, metrics.render()))))
        .layer(RequestBodyTimeoutLayer::new(BODY_TIMEOUT))
        // gzip or brotli as the client's Accept-Encoding asks (not for live
        // event streams): a day of 1-minute stats (~390 KB of JSON) shrinks
        // about 3× at gzip level 4; higher levels cost more CPU per request.
        .layer(CompressionLayer::new().quality(CompressionLevel::Precise(4)));
    let listener = std::net::TcpListener::bind(addr).with_context(|| format!("binding HTTP on {addr}"))?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let runtime = priority::query_runtime()?;
    // Registered with the HTTP runtime's reactor, so its threads do all the HTTP work.
    let listener = {
        let _entered = runtime.enter();
        tokio::net::TcpListener::from_std(listener)?
    };
    Ok((addr, runtime.spawn(accept_loop(listener, app))))
}

/// axum's `serve`, with hyper's header timeout and a connection cap.
async fn accept_loop(listener: tokio::net::TcpListener, app: axum::Router) {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(HEADER_TIMEOUT);
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let slot = slots.clone().acquire_owned().await.expect("the semaphore is never closed");
        let socket = match listener.accept().await {
            Ok((socket, _)) => socket,
            Err(err) => {
                // Out of file descriptors, most likely: give it a moment.
                tracing::warn!(error = %err, "HTTP accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let connection = http.serve_connection(TokioIo::new(socket), TowerToHyperService::new(app.clone()));
        tokio::spawn(async move {
            // Errors here are the client's (a reset, a header timeout).
            if let Err(err) = connection.await {
                tracing::debug!(error = %err, "HTTP connection ended");
            }
            drop(slot);
        });
    }
}
