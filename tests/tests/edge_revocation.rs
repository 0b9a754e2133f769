//! Taking a credential back ends what it opened: a revoked client
//! certificate is refused at login and its open session closed, and so are
//! an alarm reader whose token was revoked and a device that was disabled.

use std::time::Duration;

use rumqttc::{
    AsyncClient, ConnectReturnCode, ConnectionError, Event, EventLoop, MqttOptions, Packet, QoS,
    TlsConfiguration, Transport,
};
use wenu_registry::{Role, certificate_fingerprint};
use wenu_tests::{Listen, TestEdge};

/// Generous: the edge closes revoked sessions within a second.
const PATIENCE: Duration = Duration::from_secs(30);

fn options(edge: &TestEdge, client_id: &str) -> MqttOptions {
    let mut options = MqttOptions::new(client_id, "127.0.0.1", edge.port());
    options.set_keep_alive(Duration::from_secs(60));
    options
}

/// Device `n`'s own client certificate, for the mutual-TLS listener.
fn with_certificate(edge: &TestEdge, n: usize, mut options: MqttOptions) -> MqttOptions {
    // rumqttc's TLS asks rustls for the process's provider.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let read = |ext: &str| {
        std::fs::read(edge.certs.join("devices").join(format!("{}.{ext}", edge.device(n).device_id))).unwrap()
    };
    let ca = std::fs::read(edge.certs.join("ca.crt")).unwrap();
    let tls = TlsConfiguration::Simple { ca, alpn: None, client_auth: Some((read("crt"), read("key"))) };
    options.set_transport(Transport::tls_with_config(tls));
    options
}

fn fingerprint_of(edge: &TestEdge, n: usize) -> String {
    let pem =
        std::fs::read(edge.certs.join("devices").join(format!("{}.crt", edge.device(n).device_id))).unwrap();
    let (_, pem) = x509_parser::pem::parse_x509_pem(&pem).unwrap();
    certificate_fingerprint(&pem.contents)
}

/// Connects and waits for the CONNACK: the session, or why it was refused.
async fn connect(options: MqttOptions) -> Result<(AsyncClient, EventLoop), ConnectionError> {
    let (client, mut events) = AsyncClient::new(options, 16);
    loop {
        match tokio::time::timeout(PATIENCE, events.poll()).await.expect("no CONNACK") {
            Ok(Event::Incoming(Packet::ConnAck(_))) => return Ok((client, events)),
            Ok(_) => {}
            Err(err) => return Err(err),
        }
    }
}

/// Polls until the server ends the session; panics if it does not.
async fn ended(events: &mut EventLoop) {
    let end = async {
        loop {
            if events.poll().await.is_err() {
                return;
            }
        }
    };
    tokio::time::timeout(PATIENCE, end).await.expect("the session was not ended");
}

/// True if the session is still up: a publish from it is acknowledged.
async fn still_up(client: &AsyncClient, events: &mut EventLoop, topic: &str) -> bool {
    client.publish(topic, QoS::AtLeastOnce, false, b"not an envelope".to_vec()).await.unwrap();
    loop {
        match tokio::time::timeout(PATIENCE, events.poll()).await.expect("no answer") {
            Ok(Event::Incoming(Packet::PubAck(_))) => return true,
            Ok(_) => {}
            Err(_) => return false,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_certificate_is_refused_at_login_and_its_session_ends() {
    let edge = TestEdge::start(Listen::MutualTls, 2).await;
    let (me, other) = (edge.device(0).device_id.clone(), edge.device(1).device_id.clone());
    let (_mine, mut my_events) = connect(with_certificate(&edge, 0, options(&edge, &me))).await.unwrap();
    let (theirs, mut their_events) =
        connect(with_certificate(&edge, 1, options(&edge, &other))).await.unwrap();

    edge.registry.revoke_certificate(&me, &fingerprint_of(&edge, 0)).await.unwrap();
    ended(&mut my_events).await;
    let refused = connect(with_certificate(&edge, 0, options(&edge, &me))).await.err().unwrap();
    assert!(
        matches!(refused, ConnectionError::ConnectionRefused(ConnectReturnCode::NotAuthorized)),
        "{refused:?}"
    );
    let refusals = edge.edge.counters().snapshot(0).connects_refused;
    assert_eq!(refusals.get("certificate_revoked"), Some(&1), "{refusals:?}");

    // Another device's certificate is untouched.
    assert!(still_up(&theirs, &mut their_events, &format!("wenu/{other}/telemetry")).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_a_token_ends_its_alarm_reader_session() {
    let edge = TestEdge::start(Listen::Tcp, 1).await;
    let kept = edge.registry.create_token(Some("acme"), Role::Viewer, "kept", None).await.unwrap();
    let revoked = edge.registry.create_token(Some("acme"), Role::Viewer, "revoked", None).await.unwrap();
    let reader = |client_id: &str, bearer: &str| {
        let mut options = options(&edge, client_id);
        options.set_credentials("company:acme", bearer);
        options
    };
    let (doomed, mut doomed_events) = connect(reader("company:acme:a", &revoked.bearer)).await.unwrap();
    doomed.subscribe("wenu/alarms/acme", QoS::AtLeastOnce).await.unwrap();
    let (keeper, mut kept_events) = connect(reader("company:acme:b", &kept.bearer)).await.unwrap();

    edge.registry.revoke_token(&revoked.token.id).await.unwrap();
    ended(&mut doomed_events).await;
    let refused = connect(reader("company:acme:a", &revoked.bearer)).await.err().unwrap();
    assert!(matches!(refused, ConnectionError::ConnectionRefused(_)), "{refused:?}");

    // The other token's reader still gets alarms.
    keeper.subscribe("wenu/alarms/acme", QoS::AtLeastOnce).await.unwrap();
    let publisher = edge.edge.publisher();
    let delivered = async {
        loop {
            publisher.publish("wenu/alarms/acme", bytes::Bytes::from_static(b"{}"));
            if let Ok(Ok(Event::Incoming(Packet::Publish(p)))) =
                tokio::time::timeout(Duration::from_millis(200), kept_events.poll()).await
            {
                return p.topic;
            }
        }
    };
    assert_eq!(tokio::time::timeout(PATIENCE, delivered).await.unwrap(), "wenu/alarms/acme");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabling_a_device_ends_its_session() {
    let edge = TestEdge::start(Listen::Tcp, 1).await;
    let device = edge.device(0).clone();
    let mut options = options(&edge, &device.device_id);
    options.set_credentials(device.device_id.clone(), device.password.0.clone());
    let (_client, mut events) = connect(options.clone()).await.unwrap();
    edge.registry.set_enabled(&device.device_id, false).await.unwrap();
    ended(&mut events).await;
    assert!(connect(options).await.is_err(), "a disabled device may not log in again");
}
