//! Alarm e-mails through a real SMTP server on loopback (aiosmtpd):
//! STARTTLS and AUTH as a mail provider's submission port asks, routing to
//! the company's `mailto:` channels, and what a relay's refusals become.

use std::sync::Arc;
use std::time::Duration;

use wenu_alarms::{
    Channel, ChannelDirectory, EmailNotifier, FixedChannels, Notification, Notifier, Route, Severity,
    SmtpSender,
};
use wenu_tests::smtp_server::{SmtpOptions, SmtpServer};

fn channel(id: &str, address: &str, route: Route) -> Channel {
    Channel {
        id: id.into(),
        company: "acme".into(),
        url: format!("mailto:{address}"),
        secret: String::new(),
        format: Default::default(),
        route,
    }
}

fn notification(severity: &str, rule_name: &str) -> Notification {
    serde_json::from_value(serde_json::json!({
        "id": "acme-1f", "alarm": "a1", "company": "acme", "rule": "hot", "rule_name": rule_name,
        "severity": severity, "condition": "threshold", "device": "acme-00001", "sensor": "temp-1",
        "change": "raised", "ts": 1_765_000_000_000i64, "raised_at": 1_765_000_000_000i64, "value": 99.5,
        "detail": "99.5 above 90 for 10 s",
    }))
    .unwrap()
}

fn email_notifier(sender: SmtpSender, channels: Vec<Channel>) -> EmailNotifier {
    let directory: Arc<dyn ChannelDirectory> = Arc::new(FixedChannels::new(channels));
    EmailNotifier::new(directory, Arc::new(sender), "Wenu alarms <alarms@wenu.example>".parse().unwrap())
}

/// A CA and a server certificate for 127.0.0.1, as PEM files.
fn certificates() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    wenu_ingest::certs::init_local_ca(dir.path(), &["127.0.0.1".into()], &[], 30).unwrap();
    dir
}

#[tokio::test]
async fn an_alarm_reaches_its_addresses_over_starttls_with_auth() {
    let certs = certificates();
    let (cert, key) = (certs.path().join("server.crt"), certs.path().join("server.key"));
    let server =
        SmtpServer::start(SmtpOptions { tls: Some((&cert, &key)), auth: Some(("wenu", "s3cret pw")) });
    let ca = std::fs::read(certs.path().join("ca.crt")).unwrap();
    let url = format!("smtp://wenu:s3cret%20pw@127.0.0.1:{}?tls=required", server.port);
    let sender = SmtpSender::new(&url, Some(&ca), Duration::from_secs(10)).unwrap();
    let critical_only = Route { min_severity: Some(Severity::Critical), ..Route::default() };
    let notifier = email_notifier(
        sender,
        vec![
            channel("ops", "ops@acme.example", Route::default()),
            channel("boss", "boss@acme.example", critical_only),
            Channel { company: "globex".into(), ..channel("other", "ops@globex.example", Route::default()) },
        ],
    );

    // Routing: a warning goes to ops only; another company's channel never.
    let warning = notification("warning", "Boiler too hot");
    assert_eq!(notifier.targets(&warning).await.unwrap(), ["ops"]);
    let critical = notification("critical", "Boiler too hot");
    assert_eq!(notifier.targets(&critical).await.unwrap(), ["ops", "boss"]);

    notifier.send("ops", &critical).await.unwrap();
    let mail = server.wait_for(1).await.remove(0);
    assert!(mail.tls, "sent after STARTTLS");
    assert_eq!(mail.login.as_deref(), Some("wenu"));
    assert_eq!(mail.to, ["ops@acme.example"]);
    assert_eq!(mail.from, "alarms@wenu.example");
    assert_eq!(mail.header("Subject").unwrap(), "CRITICAL raised: Boiler too hot on acme-00001 · temp-1");
    assert_eq!(mail.header("Message-ID").unwrap(), "<acme-1f.ops@wenu.example>", "the same on a resend");
    assert!(mail.text.contains("99.5 above 90 for 10 s\nValue: 99.5\n"), "{}", mail.text);
    assert!(mail.text.contains("channel ops"), "{}", mail.text);
}

#[tokio::test]
async fn a_relay_that_refuses_is_retried_or_given_up_on_and_never_sees_a_password_in_clear() {
    // A wrong password is final (535), and the error does not repeat it.
    let certs = certificates();
    let (cert, key) = (certs.path().join("server.crt"), certs.path().join("server.key"));
    let server = SmtpServer::start(SmtpOptions { tls: Some((&cert, &key)), auth: Some(("wenu", "right")) });
    let ca = std::fs::read(certs.path().join("ca.crt")).unwrap();
    let url = format!("smtp://wenu:wrong-password@127.0.0.1:{}?tls=required", server.port);
    let notifier = email_notifier(
        SmtpSender::new(&url, Some(&ca), Duration::from_secs(10)).unwrap(),
        vec![channel("ops", "ops@acme.example", Route::default())],
    );
    let err = notifier.send("ops", &notification("critical", "Hot")).await.unwrap_err();
    assert!(!err.retryable, "{err}");
    assert!(!err.message.contains("wrong-password"), "{err}");

    // Without TLS on offer, a relay that must use it gets nothing, password included.
    let plain = SmtpServer::start(SmtpOptions::default());
    let url = format!("smtp://wenu:secret@127.0.0.1:{}?tls=required", plain.port);
    let notifier = email_notifier(
        SmtpSender::new(&url, None, Duration::from_secs(10)).unwrap(),
        vec![
            channel("ops", "ops@acme.example", Route::default()),
            channel("busy", "busy@acme.example", Route::default()),
            channel("gone", "nobody@acme.example", Route::default()),
        ],
    );
    assert!(notifier.send("ops", &notification("critical", "Hot")).await.is_err());
    assert!(plain.received().is_empty());

    // A plain relay on a trusted network: 4xx is retried, 5xx is final.
    let url = format!("smtp://127.0.0.1:{}", plain.port);
    let notifier = email_notifier(
        SmtpSender::new(&url, None, Duration::from_secs(10)).unwrap(),
        vec![
            channel("busy", "busy@acme.example", Route::default()),
            channel("gone", "nobody@acme.example", Route::default()),
        ],
    );
    let busy = notifier.send("busy", &notification("critical", "Hot")).await.unwrap_err();
    assert!(busy.retryable, "{busy}");
    let gone = notifier.send("gone", &notification("critical", "Hot")).await.unwrap_err();
    assert!(!gone.retryable, "{gone}");
    // A channel deleted meanwhile is final too.
    assert!(!notifier.send("deleted", &notification("critical", "Hot")).await.unwrap_err().retryable);
}

#[tokio::test]
async fn a_hostile_rule_name_cannot_add_recipients_or_headers() {
    let server = SmtpServer::start(SmtpOptions::default());
    let url = format!("smtp://127.0.0.1:{}", server.port);
    let notifier = email_notifier(
        SmtpSender::new(&url, None, Duration::from_secs(10)).unwrap(),
        vec![channel("ops", "ops@acme.example", Route::default())],
    );
    let hostile = notification("critical", "Hot\r\nBcc: thief@evil.example\r\nX-Injected: yes");
    notifier.send("ops", &hostile).await.unwrap();
    let mail = server.wait_for(1).await.remove(0);
    assert_eq!(mail.to, ["ops@acme.example"]);
    assert_eq!(mail.header("Bcc"), None, "{}", mail.data);
    assert_eq!(mail.header("X-Injected"), None, "{}", mail.data);
}
