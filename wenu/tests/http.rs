//! The HTTP server of `wenu serve` as a hostile client meets it: a client
//! that never finishes its headers is cut off, and `/health` reports each
//! consumer of the pipeline.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use support::start_pipeline;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_finishes_its_headers_is_cut_off() {
    let pipeline = start_pipeline(1);
    let http = pipeline.server.http.clone();
    let cut_off = tokio::task::spawn_blocking(move || {
        let mut socket = TcpStream::connect(&http).unwrap();
        socket.write_all(b"GET /api/v1/health HTTP/1.1\r\nHost: wenu\r\nX-Slow: ").unwrap();
        // Bounded only so that a server that never cuts it off fails the test.
        socket.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let mut answer = Vec::new();
        let read = socket.read_to_end(&mut answer);
        (read.map_err(|e| e.kind()), String::from_utf8_lossy(&answer).into_owned())
    })
    .await
    .unwrap();
    match cut_off {
        (Ok(_), answer) => assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 408"), "{answer}"),
        (Err(kind), _) => assert_eq!(kind, std::io::ErrorKind::ConnectionReset),
    }

    // Everyone else is still served, and the health report names every consumer.
    let health: serde_json::Value = serde_json::from_str(&pipeline.server.http_get("/health")).unwrap();
    assert_eq!(health["status"], "ok", "{health}");
    for consumer in ["lake", "enrich", "alarms"] {
        assert_eq!(health["consumers"][consumer]["state"], "running", "{health}");
    }
    pipeline.server.terminate();
}
