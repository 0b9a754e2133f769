//! The webhook notifier against real servers on loopback: HTTPS with a
//! certificate from a private CA (rustls, as the binary is built), and a
//! receiver that answers with a redirect, which is not followed.

use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use wenu_alarms::store::Notification;
use wenu_alarms::{Channel, FixedChannels, Notifier, WebhookNotifier, WebhookPolicy};

fn hook(url: &str) -> Arc<FixedChannels> {
    Arc::new(FixedChannels::new(vec![Channel {
        id: "h1".into(),
        company: "acme".into(),
        url: url.into(),
        secret: "secret".into(),
        format: wenu_alarms::WebhookFormat::Wenu,
        route: Default::default(),
    }]))
}

fn notification() -> Notification {
    serde_json::from_value(serde_json::json!({
        "id": "n1", "alarm": "a1", "company": "acme", "rule": "hot", "rule_name": "Hot",
        "severity": "critical", "condition": "threshold", "device": "acme-00001", "sensor": "temp-1",
        "change": "raised", "ts": 1, "raised_at": 1, "value": 99.0, "detail": "too hot",
    }))
    .unwrap()
}

/// Reads one HTTP request (headers and a `content-length` body) and answers `response`.
async fn answer<S: AsyncReadExt + AsyncWriteExt + Unpin>(mut io: S, response: &str) -> String {
    let mut request = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = io.read(&mut buf).await.unwrap();
        request.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&request).to_string();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length: ")
                        .map(|v| v.parse::<usize>().unwrap())
                })
                .unwrap_or(0);
            if body.len() >= length {
                io.write_all(response.as_bytes()).await.unwrap();
                io.shutdown().await.ok();
                return text;
            }
        }
        assert!(n > 0, "the client closed before a whole request");
    }
}

#[tokio::test]
async fn https_webhooks_are_delivered_to_a_receiver_of_a_trusted_private_ca() {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert = CertificateDer::from(certified.cert.der().to_vec());
    let key = PrivatePkcs8KeyDer::from(certified.signing_key.serialize_der());
    let tls =
        rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert.clone()], key.into())
            .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (requests, mut received) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let (socket, _) = listener.accept().await.unwrap();
            // A client that does not trust the certificate aborts the handshake.
            if let Ok(stream) = acceptor.accept(socket).await {
                requests.send(answer(stream, "HTTP/1.1 204 No Content\r\n\r\n").await).unwrap();
            }
        }
    });
    let url = format!("https://localhost:{port}/hook");

    let untrusted = WebhookNotifier::new(hook(&url), WebhookPolicy::private_networks()).unwrap();
    let err = untrusted.send("h1", &notification()).await.unwrap_err();
    assert!(err.to_string().contains("https://localhost"), "{err}");

    let policy = WebhookPolicy { extra_roots: vec![cert], ..WebhookPolicy::private_networks() };
    let trusted = WebhookNotifier::new(hook(&url), policy).unwrap();
    trusted.send("h1", &notification()).await.unwrap();
    let request = received.recv().await.unwrap();
    assert!(request.starts_with("POST /hook HTTP/1.1"), "{request}");
    assert!(request.to_ascii_lowercase().contains("x-wenu-signature: sha256="), "{request}");
}

#[tokio::test]
async fn a_redirect_is_final_and_not_followed() {
    let target = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target_url = format!("http://{}/internal", target.local_addr().unwrap());
    let redirecting = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook/s3cr3t", redirecting.local_addr().unwrap());
    let response =
        format!("HTTP/1.1 307 Temporary Redirect\r\nlocation: {target_url}\r\ncontent-length: 0\r\n\r\n");
    tokio::spawn(async move {
        let (socket, _) = redirecting.accept().await.unwrap();
        answer(socket, &response).await;
    });

    let notifier = WebhookNotifier::new(hook(&url), WebhookPolicy::private_networks()).unwrap();
    let err = notifier.send("h1", &notification()).await.unwrap_err();
    assert!(!err.retryable, "{err}");
    let text = err.to_string();
    assert!(text.contains("307") && text.contains("not followed"), "{text}");
    assert!(!text.contains("s3cr3t"), "the path stays out of errors: {text}");
    let nothing = tokio::time::timeout(std::time::Duration::from_millis(200), target.accept()).await;
    assert!(nothing.is_err(), "the redirect's target was never contacted");
}

/// A Slack or Teams channel's incoming webhook gets a message it can show,
/// signed like every webhook.
#[tokio::test]
async fn chat_webhooks_get_slack_and_teams_messages() {
    use wenu_alarms::WebhookFormat;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/chat", listener.local_addr().unwrap());
    let (requests, mut received) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let (socket, _) = listener.accept().await.unwrap();
            requests.send(answer(socket, "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await).unwrap();
        }
    });
    for format in [WebhookFormat::Slack, WebhookFormat::Teams] {
        let hooks = Arc::new(FixedChannels::new(vec![Channel {
            id: "chat".into(),
            company: "acme".into(),
            url: url.clone(),
            secret: "secret".into(),
            format,
            route: Default::default(),
        }]));
        let notifier = WebhookNotifier::new(hooks, WebhookPolicy::private_networks()).unwrap();
        notifier.send("chat", &notification()).await.unwrap();
        let request = received.recv().await.unwrap();
        assert!(request.to_ascii_lowercase().contains("x-wenu-signature: sha256="), "{request}");
        let body: serde_json::Value =
            serde_json::from_str(request.split_once("\r\n\r\n").unwrap().1).unwrap();
        match format {
            WebhookFormat::Slack => {
                let text = body["text"].as_str().unwrap();
                assert!(text.starts_with("*CRITICAL raised: Hot on acme-00001 · temp-1*"), "{text}");
                assert!(text.contains("too hot") && text.contains("Value: 99"), "{text}");
            }
            _ => {
                let card = &body["attachments"][0];
                assert_eq!(card["contentType"], "application/vnd.microsoft.card.adaptive");
                assert_eq!(card["content"]["body"][0]["text"], "CRITICAL raised: Hot on acme-00001 · temp-1");
            }
        }
    }
}
