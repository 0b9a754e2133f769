//! The edge as an attacker holding one tenant's credentials would try it,
//! with real clients (rumqttc, Debian's `mosquitto_pub`) on loopback: forged
//! wills, another client's client id, sessions resumed across identities,
//! retained and QoS 2 publishes, a device disabled mid-session, and floods
//! of bad logins. Each is refused and counted, and nothing of another tenant
//! is disturbed.

use std::time::Duration;

use bytes::Bytes;
use rumqttc::{
    AsyncClient, ConnAck, ConnectReturnCode, ConnectionError, Event, EventLoop, LastWill, MqttOptions,
    Packet, QoS,
};
use tokio::sync::mpsc;
use wenu_registry::Role;
use wenu_tests::{Listen, TestEdge, mosquitto_pub};

/// How long a test waits for something that should happen at once; only a
/// bound on a hung test, never a measurement.
const PATIENCE: Duration = Duration::from_secs(30);

fn options(client_id: &str, port: u16, user: &str, password: &str) -> MqttOptions {
    let mut options = MqttOptions::new(client_id, "127.0.0.1", port);
    options.set_credentials(user, password).set_keep_alive(Duration::from_secs(30));
    options
}

/// Connects; the CONNACK's refusal code if there is one.
async fn connect(options: MqttOptions) -> Result<(AsyncClient, EventLoop), ConnectReturnCode> {
    let (client, mut events) = AsyncClient::new(options, 16);
    let outcome = tokio::time::timeout(PATIENCE, async {
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(ConnAck { code, .. }))) => return code,
                Ok(_) => continue,
                Err(ConnectionError::ConnectionRefused(code)) => return code,
                Err(err) => panic!("connection failed: {err}"),
            }
        }
    })
    .await
    .expect("a CONNACK");
    match outcome {
        ConnectReturnCode::Success => Ok((client, events)),
        refused => Err(refused),
    }
}

/// A connected client whose event loop runs in the background: what it
/// receives and whether its connection ended.
struct Connected {
    client: AsyncClient,
    received: mpsc::UnboundedReceiver<Result<Packet, String>>,
}

impl Connected {
    async fn start(options: MqttOptions) -> Connected {
        let (client, mut events) = connect(options).await.expect("accepted");
        let (tx, received) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                match events.poll().await {
                    Ok(Event::Incoming(packet)) => {
                        if tx.send(Ok(packet)).is_err() {
                            return;
                        }
                    }
                    Ok(Event::Outgoing(_)) => {}
                    Err(err) => {
                        let _ = tx.send(Err(err.to_string()));
                        return;
                    }
                }
            }
        });
        Connected { client, received }
    }

    /// The next packet of interest, skipping pings; `Err` once disconnected.
    async fn next(&mut self) -> Result<Packet, String> {
        tokio::time::timeout(PATIENCE, async {
            loop {
                match self.received.recv().await.expect("event loop alive") {
                    Ok(Packet::PingResp) => continue,
                    other => return other,
                }
            }
        })
        .await
        .expect("a packet in time")
    }

    /// A QoS 1 publish and its PUBACK: proof the connection is still up.
    async fn publish_acked(&mut self, topic: &str) {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, b"not decrypted by the edge".to_vec())
            .await
            .unwrap();
        match self.next().await {
            Ok(Packet::PubAck(_)) => {}
            other => panic!("expected a PUBACK, got {other:?}"),
        }
    }
}

/// Globex's alarm reader, subscribed to its alarm topic.
async fn globex_reader(edge: &TestEdge) -> Connected {
    edge.registry.ensure_company("globex").await.unwrap();
    let token = edge.registry.create_token(Some("globex"), Role::Viewer, "reader", None).await.unwrap();
    let mut reader =
        Connected::start(options("company:globex:dash", edge.port(), "company:globex", &token.bearer)).await;
    reader.client.subscribe("wenu/alarms/globex", QoS::AtLeastOnce).await.unwrap();
    match reader.next().await {
        Ok(Packet::SubAck(_)) => reader,
        other => panic!("expected a SUBACK, got {other:?}"),
    }
}

/// Publishes a real alarm and returns the first message the reader gets.
async fn first_alarm_read(edge: &TestEdge, reader: &mut Connected) -> Bytes {
    assert_eq!(edge.edge.publisher().publish("wenu/alarms/globex", Bytes::from_static(b"real")), 1);
    match reader.next().await {
        Ok(Packet::Publish(publish)) => publish.payload,
        other => panic!("expected an alarm, got {other:?}"),
    }
}

fn refused(edge: &TestEdge, reason: &str) -> (u64, u64) {
    let snapshot = edge.edge.counters().snapshot(0);
    (
        snapshot.connects_refused.get(reason).copied().unwrap_or(0),
        snapshot.publishes_refused.get(reason).copied().unwrap_or(0),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_will_cannot_forge_another_companys_alarm() {
    let edge = TestEdge::start(Listen::Tcp, 1).await;
    let mut reader = globex_reader(&edge).await;
    let acme = edge.device(0);
    let forged = br#"{"company":"globex","severity":"critical","state":"raised"}"#.to_vec();

    let mut will_on_alarms = options(&acme.device_id, edge.port(), &acme.device_id, &acme.password.0);
    will_on_alarms.set_last_will(LastWill::new(
        "wenu/alarms/globex",
        forged.clone(),
        QoS::AtLeastOnce,
        false,
    ));
    assert_eq!(connect(will_on_alarms).await.err(), Some(ConnectReturnCode::NotAuthorized));

    // Even a will on its own telemetry topic: the server would publish it
    // past the durable append and every publish check.
    let own_topic = format!("wenu/{}/telemetry", acme.device_id);
    let mut will_on_own = options(&acme.device_id, edge.port(), &acme.device_id, &acme.password.0);
    will_on_own.set_last_will(LastWill::new(own_topic.clone(), forged, QoS::AtLeastOnce, false));
    assert_eq!(connect(will_on_own).await.err(), Some(ConnectReturnCode::NotAuthorized));

    // MQTT 5, from mosquitto_pub.
    let port = edge.port().to_string();
    let out = mosquitto_pub(&[
        "-h",
        "127.0.0.1",
        "-p",
        &port,
        "-V",
        "mqttv5",
        "-i",
        &acme.device_id,
        "-u",
        &acme.device_id,
        "-P",
        &acme.password.0,
        "-t",
        &own_topic,
        "-m",
        "x",
        "--will-topic",
        "wenu/alarms/globex",
        "--will-payload",
        "forged",
    ])
    .await;
    assert!(!out.status.success(), "{out:?}");

    assert_eq!(first_alarm_read(&edge, &mut reader).await, Bytes::from_static(b"real"));
    assert_eq!(refused(&edge, "will_refused").0, 3);
    assert!(edge.records().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_client_takes_over_or_resumes_another_identitys_session() {
    let edge = TestEdge::start(Listen::Tcp, 2).await;
    let port = edge.port();
    let mut reader = globex_reader(&edge).await;
    let (acme, victim) = (edge.device(0), edge.device(1));
    let mut victim_session =
        Connected::start(options(&victim.device_id, port, &victim.device_id, &victim.password.0)).await;
    let victim_topic = format!("wenu/{}/telemetry", victim.device_id);
    victim_session.publish_acked(&victim_topic).await;

    // An acme device asking for globex's reader session, kept or not.
    for clean in [false, true] {
        let mut takeover = options("company:globex:dash", port, &acme.device_id, &acme.password.0);
        takeover.set_clean_session(clean);
        assert_eq!(connect(takeover).await.err(), Some(ConnectReturnCode::BadClientId));
    }
    // acme's own reader token with globex's reader client id.
    let acme_token = edge.registry.create_token(Some("acme"), Role::Viewer, "r", None).await.unwrap();
    let as_globex = options("company:globex:dash", port, "company:acme", &acme_token.bearer);
    assert_eq!(connect(as_globex).await.err(), Some(ConnectReturnCode::BadClientId));
    // A reader may not keep a session to be resumed later (by anyone).
    let globex_token = edge.registry.create_token(Some("globex"), Role::Viewer, "r2", None).await.unwrap();
    let mut persistent = options("company:globex:other", port, "company:globex", &globex_token.bearer);
    persistent.set_clean_session(false);
    assert_eq!(connect(persistent).await.err(), Some(ConnectReturnCode::NotAuthorized));
    // An acme device with another device's client id.
    let mut as_victim = options(&victim.device_id, port, &acme.device_id, &acme.password.0);
    as_victim.set_clean_session(false);
    assert_eq!(connect(as_victim).await.err(), Some(ConnectReturnCode::BadClientId));

    // Neither victim noticed: both sessions are still up.
    victim_session.publish_acked(&victim_topic).await;
    assert_eq!(first_alarm_read(&edge, &mut reader).await, Bytes::from_static(b"real"));
    assert_eq!(refused(&edge, "client_id_mismatch").0, 4);
    assert_eq!(refused(&edge, "persistent_session").0, 1);
    assert_eq!(edge.records().await.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retained_and_qos2_publishes_are_refused() {
    let edge = TestEdge::start(Listen::Tcp, 1).await;
    let dev = edge.device(0);
    let port = edge.port().to_string();
    let topic = format!("wenu/{}/telemetry", dev.device_id);
    let args = |version: &'static str, extra: &'static [&'static str]| {
        let mut args: Vec<String> = ["-h", "127.0.0.1", "-p", &port, "-V", version, "-i", &dev.device_id]
            .into_iter()
            .chain(["-u", &dev.device_id, "-P", &dev.password.0, "-t", &topic, "-m", "x"])
            .map(str::to_owned)
            .collect();
        args.extend(extra.iter().map(|a| a.to_string()));
        args
    };
    // (An MQTT 5 client is told in the CONNACK that retain is not available
    // and that the maximum QoS is 1: libmosquitto then sends a retained
    // publish without the flag, and refuses a QoS 2 one itself.)
    for (version, extra) in
        [("mqttv311", &["-q", "1", "-r"][..]), ("mqttv5", &["-q", "2"][..]), ("mqttv311", &["-q", "2"][..])]
    {
        let args = args(version, extra);
        let out = mosquitto_pub(&args.iter().map(String::as_str).collect::<Vec<_>>()).await;
        assert!(
            !out.status.success() || !out.stderr.is_empty(),
            "{version} {extra:?} must be refused: {out:?}"
        );
        if version == "mqttv5" {
            assert!(String::from_utf8_lossy(&out.stderr).contains("QoS not supported"), "{out:?}");
        }
    }
    assert!(edge.records().await.is_empty());
    assert_eq!(refused(&edge, "retained").1, 1);
    assert_eq!(refused(&edge, "qos2").1, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_disabled_while_connected_is_cut_off() {
    let edge = TestEdge::start(Listen::Tcp, 1).await;
    let dev = edge.device(0);
    let topic = format!("wenu/{}/telemetry", dev.device_id);
    let mut session =
        Connected::start(options(&dev.device_id, edge.port(), &dev.device_id, &dev.password.0)).await;
    session.publish_acked(&topic).await;

    edge.registry.set_enabled(&dev.device_id, false).await.unwrap();
    // Within the registry's revision check the session is closed: by the
    // edge's sweep of disabled devices, or at the next publish, which is
    // refused (a 3.1.1 PUBACK cannot carry a refusal), whichever is first.
    let cut_off = tokio::time::timeout(PATIENCE, async {
        loop {
            if session.client.publish(&topic, QoS::AtLeastOnce, false, b"x".to_vec()).await.is_err() {
                return;
            }
            match session.next().await {
                Ok(Packet::PubAck(_)) => tokio::time::sleep(Duration::from_millis(100)).await,
                Ok(other) => panic!("unexpected {other:?}"),
                Err(_) => return,
            }
        }
    });
    cut_off.await.expect("the disabled device's session is closed");
    let stored = edge.records().await.len();
    assert!(refused(&edge, "disabled").1 <= 1);

    let again = options(&dev.device_id, edge.port(), &dev.device_id, &dev.password.0);
    assert_eq!(connect(again).await.err(), Some(ConnectReturnCode::NotAuthorized));
    assert_eq!(refused(&edge, "disabled").0, 1);
    assert_eq!(edge.records().await.len(), stored);
}

/// One `mosquitto_pub` from `source` (a loopback address); whether the
/// publish went through.
async fn publish_from(edge: &TestEdge, source: &str, user: &str, password: &str) -> bool {
    let port = edge.port().to_string();
    let topic = format!("wenu/{user}/telemetry");
    let args = ["-h", "127.0.0.1", "-A", source, "-p", &port, "-q", "1", "-i", user, "-u", user];
    let mut args = args.to_vec();
    args.extend(["-P", password, "-t", &topic, "-m", "x"]);
    mosquitto_pub(&args).await.status.success()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_logins_are_throttled_per_address_and_per_device_without_locking_devices_out() {
    let edge = TestEdge::start_with(Listen::Tcp, 3, Default::default(), |c| {
        c.login_throttle.failures_per_address_per_minute = 5;
        c.login_throttle.failures_per_device_per_minute = 3;
    })
    .await;
    let (known, fresh, target) = (edge.device(0), edge.device(1), edge.device(2));
    // `known` logs in from 127.0.0.2 once, before the attack.
    assert!(publish_from(&edge, "127.0.0.2", &known.device_id, &known.password.0).await);

    // 127.0.0.2 guesses: after 5 failures its attempts are refused unseen...
    for n in 0..8 {
        assert!(!publish_from(&edge, "127.0.0.2", &format!("acme-9{n:04}"), "guess").await);
    }
    assert_eq!(refused(&edge, "unknown_device").0, 5);
    assert_eq!(refused(&edge, "throttled").0, 3);
    // ...even with good credentials it never used from there,
    assert!(!publish_from(&edge, "127.0.0.2", &fresh.device_id, &fresh.password.0).await);
    // ...but the device that logged in from there before still gets in,
    assert!(publish_from(&edge, "127.0.0.2", &known.device_id, &known.password.0).await);
    // ...and other addresses are not affected.
    assert!(publish_from(&edge, "127.0.0.3", &fresh.device_id, &fresh.password.0).await);

    // Guessing one device's password from many addresses: once its id has
    // spent its budget (3), an address that failed for it is refused for it;
    // the device is not, from its own address or from a new one.
    assert!(publish_from(&edge, "127.0.0.4", &target.device_id, &target.password.0).await);
    for n in 0..5 {
        assert!(!publish_from(&edge, &format!("127.0.1.{n}"), &target.device_id, "guess").await);
    }
    assert_eq!(refused(&edge, "bad_password").0, 5);
    let throttled = refused(&edge, "throttled").0;
    assert!(!publish_from(&edge, "127.0.1.0", &target.device_id, "guess").await);
    assert_eq!(refused(&edge, "throttled").0, throttled + 1);
    assert!(publish_from(&edge, "127.0.2.1", &target.device_id, &target.password.0).await);
    assert!(publish_from(&edge, "127.0.0.4", &target.device_id, &target.password.0).await);
    assert_eq!(edge.records().await.len(), 6);
}

/// 200 QoS 1 publishes of `file` by `device` over MQTT 5, one connection.
async fn flood(
    port: &str,
    device: &wenu_core::fleet::FleetDevice,
    topic: &str,
    file: &str,
) -> std::process::Output {
    let id = device.device_id.as_str();
    let args = ["-h", "127.0.0.1", "-p", port, "-V", "mqttv5", "-q", "1", "-i", id, "-u", id];
    let mut args = args.to_vec();
    args.extend(["-P", &device.password.0, "-t", topic, "-f", file, "--repeat", "200"]);
    mosquitto_pub(&args).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_garbage_flood_beyond_the_device_quota_is_refused_and_others_keep_publishing() {
    let edge = TestEdge::start_with(Listen::Tcp, 2, Default::default(), |c| {
        c.device_quota.publishes_per_second = 10;
        c.device_quota.publish_burst = 20;
        c.device_quota.bytes_per_second = 10 * 1024;
        c.device_quota.byte_burst = 20 * 1024;
    })
    .await;
    let (flooder, other) = (edge.device(0), edge.device(1));
    let garbage = edge.dir.path().join("garbage.bin");
    std::fs::write(&garbage, vec![0x5a; 1024]).unwrap();
    let garbage = garbage.display().to_string();
    let port = edge.port().to_string();
    let topic = format!("wenu/{}/telemetry", flooder.device_id);
    // MQTT 5: each refused publish gets its PUBACK with reason "Quota exceeded".
    let out = flood(&port, flooder, &topic, &garbage).await;
    assert!(String::from_utf8_lossy(&out.stderr).contains("Quota exceeded"), "{out:?}");

    let stored = edge.records().await.len();
    let (_, over_quota) = refused(&edge, "quota_exceeded");
    assert_eq!(stored as u64 + over_quota, 200, "each publish stored or refused");
    // The burst and what refilled while the flood ran, far from all of it.
    assert!((20..200).contains(&stored), "{stored} stored");

    let mut session =
        Connected::start(options(&other.device_id, edge.port(), &other.device_id, &other.password.0)).await;
    session.publish_acked(&format!("wenu/{}/telemetry", other.device_id)).await;
    assert_eq!(edge.records().await.len(), stored + 1);

    // A device given a larger quota of its own in the registry: the same
    // flood goes through (within the edge's cache check of the revision).
    let own =
        wenu_registry::DeviceQuota { publishes_per_second: Some(100_000), bytes_per_second: Some(1 << 30) };
    edge.registry.set_device_quota(&flooder.device_id, own).await.unwrap();
    tokio::time::sleep(wenu_ingest::REVISION_CHECK + Duration::from_millis(100)).await;
    let out = flood(&port, flooder, &topic, &garbage).await;
    assert!(out.stderr.is_empty(), "{out:?}");
    assert_eq!(edge.records().await.len(), stored + 1 + 200);
}
