//! The HTTP side: the API and pages of `wenu-api`, plus the process's
//! Prometheus `/metrics`.

use std::net::SocketAddr;
use std::sync::OnceLock;

use anyhow::Context;
use axum::http::header::CONTENT_TYPE;
use axum::routing::get;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::task::JoinHandle;
use wenu_api::ApiState;

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

pub async fn serve(
    addr: SocketAddr,
    metrics: PrometheusHandle,
    api: ApiState,
) -> anyhow::Result<(SocketAddr, JoinHandle<()>)> {
    let exposition = [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")];
    let app = wenu_api::router(api)
        .route("/metrics", get(move || std::future::ready((exposition, metrics.render()))))
        .route("/health", get(|| async { "ok" }));
    let listener =
        tokio::net::TcpListener::bind(addr).await.with_context(|| format!("binding HTTP on {addr}"))?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        if let Err(err) = axum::serve(listener, app).await {
            tracing::error!(error = %err, "HTTP server stopped");
        }
    });
    Ok((addr, task))
}
