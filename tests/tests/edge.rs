//! The edge against real MQTT clients: Debian's `mosquitto_pub` and the
//! simulator's rumqttc, over plain TCP, TLS and mutual TLS, on loopback.

use std::collections::BTreeMap;

use tokio::sync::watch;
use wenu_core::envelope::{NonceSequence, seal};
use wenu_core::reading::{Reading, ReadingBatch};
use wenu_firmware_sim::{SimConfig, SimTls, run_fleet};
use wenu_local::StreamOptions;
use wenu_tests::{Listen, TestEdge, mosquitto_pub, path_arg};

/// A sealed reading batch for device `n` of the edge's fleet, as a file
/// mosquitto_pub can send with `-f`.
fn sealed_message(edge: &TestEdge, n: usize, seq: u64) -> std::path::PathBuf {
    let device = edge.device(n);
    let batch = ReadingBatch {
        seq,
        ts: 1_700_000_000_000,
        readings: vec![Reading {
            sensor: "temp-1".into(),
            kind: "temperature".into(),
            value: 20.5,
            unit: "degC".into(),
        }],
    };
    let envelope = seal(
        &device.device_id,
        device.key_id,
        &device.key,
        NonceSequence::new().next_nonce().unwrap(),
        &batch.to_json(),
    );
    let path = edge.dir.path().join(format!("msg-{n}-{seq}.bin"));
    std::fs::write(&path, envelope).unwrap();
    path
}

fn publish_args<'a>(
    port: &'a str,
    user: &'a str,
    password: &'a str,
    topic: &'a str,
    file: &'a str,
    version: &'a str,
) -> Vec<&'a str> {
    vec![
        "-h",
        "127.0.0.1",
        "-p",
        port,
        "-V",
        version,
        "-q",
        "1",
        "-i",
        user,
        "-u",
        user,
        "-P",
        password,
        "-t",
        topic,
        "-f",
        file,
    ]
}

fn refusals(edge: &TestEdge) -> (BTreeMap<String, u64>, BTreeMap<String, u64>) {
    let s = edge.edge.counters().snapshot(0);
    (s.connects_refused, s.publishes_refused)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_pub_is_accepted_over_tcp_with_mqtt_311_and_5() {
    let edge = TestEdge::start(Listen::Tcp, 2).await;
    let port = edge.port().to_string();
    let dev = edge.device(0);
    let topic = format!("wenu/{}/telemetry", dev.device_id);
    for (seq, version) in [(1, "mqttv311"), (2, "mqttv5")] {
        let file = path_arg(&sealed_message(&edge, 0, seq));
        let out =
            mosquitto_pub(&publish_args(&port, &dev.device_id, &dev.password.0, &topic, &file, version))
                .await;
        assert!(out.status.success(), "{version}: {}", String::from_utf8_lossy(&out.stderr));
    }
    // QoS 0 is stored too, with no acknowledgement to wait for.
    let file = path_arg(&sealed_message(&edge, 0, 3));
    let mut args = publish_args(&port, &dev.device_id, &dev.password.0, &topic, &file, "mqttv311");
    args[7] = "0";
    assert!(mosquitto_pub(&args).await.status.success());
    while edge.records().await.len() < 3 {
        tokio::task::yield_now().await;
    }
    let records = edge.records().await;
    assert_eq!(records.len(), 3);
    assert!(records.iter().all(|r| r.device_id == dev.device_id && r.topic == topic));
    let seqs: Vec<u64> = edge.decoded_seqs().await.into_keys().map(|(_, seq)| seq).collect();
    assert_eq!(seqs, [1, 2, 3]);
    // The QoS 0 publish is counted just after it is stored.
    while edge.edge.counters().snapshot(0).publishes_accepted < 3 {
        tokio::task::yield_now().await;
    }
    assert_eq!(edge.edge.counters().snapshot(0).publishes_accepted, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_credentials_foreign_topics_and_oversized_payloads_are_refused() {
    let edge =
        TestEdge::start_with(Listen::Tcp, 2, StreamOptions::default(), |c| c.max_payload_bytes = 1024).await;
    let port = edge.port().to_string();
    let (me, other) = (edge.device(0), edge.device(1));
    let my_topic = format!("wenu/{}/telemetry", me.device_id);
    let their_topic = format!("wenu/{}/telemetry", other.device_id);
    let file = path_arg(&sealed_message(&edge, 0, 1));
    let big = edge.dir.path().join("big.bin");
    std::fs::write(&big, vec![7u8; 1025]).unwrap();
    let big = path_arg(&big);

    // Wrong password, unknown device, no credentials: CONNACK refuses.
    let out = mosquitto_pub(&publish_args(&port, &me.device_id, "wrong", &my_topic, &file, "mqttv311")).await;
    assert!(!out.status.success());
    let out =
        mosquitto_pub(&publish_args(&port, "acme-99999", &me.password.0, &my_topic, &file, "mqttv5")).await;
    assert!(!out.status.success());
    let out = mosquitto_pub(&["-h", "127.0.0.1", "-p", &port, "-q", "1", "-t", &my_topic, "-f", &file]).await;
    assert!(!out.status.success());
    // Another device's password is not mine.
    let out =
        mosquitto_pub(&publish_args(&port, &me.device_id, &other.password.0, &my_topic, &file, "mqttv311"))
            .await;
    assert!(!out.status.success());

    // Foreign topic: MQTT 3.1.1 can only close the connection; MQTT 5 says why.
    let out =
        mosquitto_pub(&publish_args(&port, &me.device_id, &me.password.0, &their_topic, &file, "mqttv311"))
            .await;
    assert!(!out.status.success(), "3.1.1 foreign publish must not be acknowledged");
    let out =
        mosquitto_pub(&publish_args(&port, &me.device_id, &me.password.0, &their_topic, &file, "mqttv5"))
            .await;
    assert!(String::from_utf8_lossy(&out.stderr).contains("Not authorized"), "{out:?}");
    let out =
        mosquitto_pub(&publish_args(&port, &me.device_id, &me.password.0, "wenu/x/y/z", &file, "mqttv5"))
            .await;
    assert!(!String::from_utf8_lossy(&out.stderr).is_empty(), "{out:?}");

    // Oversized payload.
    let out =
        mosquitto_pub(&publish_args(&port, &me.device_id, &me.password.0, &my_topic, &big, "mqttv5")).await;
    assert!(!String::from_utf8_lossy(&out.stderr).is_empty(), "{out:?}");
    let out =
        mosquitto_pub(&publish_args(&port, &me.device_id, &me.password.0, &my_topic, &big, "mqttv311")).await;
    assert!(!out.status.success());

    assert!(edge.records().await.is_empty(), "nothing refused reaches the stream");
    let (connects, publishes) = refusals(&edge);
    assert_eq!(connects.get("bad_password"), Some(&2));
    assert_eq!(connects.get("unknown_device"), Some(&1));
    assert_eq!(connects.get("no_credentials"), Some(&1));
    assert_eq!(publishes.get("foreign_topic"), Some(&2));
    assert_eq!(publishes.get("invalid_topic"), Some(&1));
    assert_eq!(publishes.get("oversized"), Some(&2));

    // A good publish on the same edge still goes through.
    let out =
        mosquitto_pub(&publish_args(&port, &me.device_id, &me.password.0, &my_topic, &file, "mqttv311"))
            .await;
    assert!(out.status.success());
    assert_eq!(edge.records().await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_may_not_subscribe() {
    let edge = TestEdge::start(Listen::Tcp, 1).await;
    let dev = edge.device(0);
    let out = tokio::task::spawn_blocking({
        let (port, user, password) = (edge.port().to_string(), dev.device_id.clone(), dev.password.0.clone());
        move || {
            std::process::Command::new("mosquitto_sub")
                .args([
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &port,
                    "-V",
                    "mqttv5",
                    "-i",
                    &user,
                    "-u",
                    &user,
                    "-P",
                    &password,
                    "-t",
                    "#",
                    "-C",
                    "1",
                    "-W",
                    "5",
                ])
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    // mosquitto_sub exits 0 here, but reports that the SUBACK refused.
    assert!(String::from_utf8_lossy(&out.stderr).contains("denied"), "{out:?}");
}

async fn run_sim(edge: &TestEdge, tls: Option<SimTls>, per_device: u64) -> wenu_firmware_sim::FleetReport {
    let config = SimConfig {
        port: edge.port(),
        host: "127.0.0.1".into(),
        tls,
        rate_per_device: 0.0,
        per_device: Some(per_device),
        ..SimConfig::default()
    };
    let (_stop_tx, stop) = watch::channel(false);
    run_fleet(&edge.fleet, config, stop).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rumqttc_fleet_is_fully_acknowledged_and_stored() {
    let edge = TestEdge::start(Listen::Tcp, 5).await;
    let report = run_sim(&edge, None, 40).await;
    assert_eq!((report.acked, report.unacked_at_exit), (200, 0));
    let seqs = edge.decoded_seqs().await;
    for device in &edge.fleet.devices {
        for seq in 1..=40 {
            assert!(
                seqs.contains_key(&(device.device_id.clone(), seq)),
                "{} seq {seq} missing",
                device.device_id
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_passwords_for_mosquitto_pub_and_rumqttc() {
    let edge = TestEdge::start(Listen::Tls, 3).await;
    let port = edge.port().to_string();
    let dev = edge.device(0);
    let topic = format!("wenu/{}/telemetry", dev.device_id);
    let file = path_arg(&sealed_message(&edge, 0, 1000));
    let ca = path_arg(&edge.certs.join("ca.crt"));
    let mut args = publish_args(&port, &dev.device_id, &dev.password.0, &topic, &file, "mqttv311");
    args.extend(["--cafile", &ca]);
    let out = mosquitto_pub(&args).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // Without trusting the CA, the client refuses the server.
    let out = mosquitto_pub(&args[..args.len() - 2]).await;
    assert!(!out.status.success());

    let tls = SimTls { ca_pem: std::fs::read(edge.certs.join("ca.crt")).unwrap(), client_cert_dir: None };
    let report = run_sim(&edge, Some(tls), 10).await;
    assert_eq!(report.acked, 30);
    assert_eq!(edge.decoded_seqs().await.len(), 31);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_accepts_the_devices_own_certificate_only() {
    let edge = TestEdge::start(Listen::MutualTls, 2).await;
    let port = edge.port().to_string();
    let (me, other) = (edge.device(0), edge.device(1));
    let topic = format!("wenu/{}/telemetry", me.device_id);
    let file = path_arg(&sealed_message(&edge, 0, 1));
    let ca = path_arg(&edge.certs.join("ca.crt"));
    let cert_of = |id: &str| {
        (
            path_arg(&edge.certs.join("devices").join(format!("{id}.crt"))),
            path_arg(&edge.certs.join("devices").join(format!("{id}.key"))),
        )
    };
    let (my_cert, my_key) = cert_of(&me.device_id);
    let (their_cert, their_key) = cert_of(&other.device_id);
    let base = ["-h", "127.0.0.1", "-p", &port, "-q", "1", "-t", &topic, "-f", &file, "--cafile", &ca];

    // The certificate alone identifies the device: no password needed.
    let mut args = base.to_vec();
    args.extend(["-i", &me.device_id, "--cert", &my_cert, "--key", &my_key]);
    let out = mosquitto_pub(&args).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // Another device's certificate while claiming to be me: refused.
    let mut args = base.to_vec();
    args.extend(["-i", &me.device_id, "--cert", &their_cert, "--key", &their_key]);
    args.extend(["-u", &me.device_id, "-P", &me.password.0]);
    assert!(!mosquitto_pub(&args).await.status.success());

    // Another device's certificate publishing to my topic: a foreign topic.
    let mut args = base.to_vec();
    args.extend(["-i", &other.device_id, "--cert", &their_cert, "--key", &their_key]);
    assert!(!mosquitto_pub(&args).await.status.success());

    // No certificate, or one from an unknown CA: the TLS handshake fails.
    let mut args = base.to_vec();
    args.extend(["-i", &me.device_id, "-u", &me.device_id, "-P", &me.password.0]);
    assert!(!mosquitto_pub(&args).await.status.success());
    let stranger = edge.dir.path().join("stranger-ca");
    let days = wenu_ingest::certs::DEFAULT_DAYS;
    wenu_ingest::certs::init_local_ca(
        &stranger,
        &["localhost".into()],
        std::slice::from_ref(&me.device_id),
        days,
    )
    .unwrap();
    let (strange_cert, strange_key) = (
        path_arg(&stranger.join("devices").join(format!("{}.crt", me.device_id))),
        path_arg(&stranger.join("devices").join(format!("{}.key", me.device_id))),
    );
    let mut args = base.to_vec();
    args.extend(["-i", &me.device_id, "--cert", &strange_cert, "--key", &strange_key]);
    assert!(!mosquitto_pub(&args).await.status.success());

    let (connects, publishes) = refusals(&edge);
    assert_eq!(connects.get("certificate_mismatch"), Some(&1));
    assert_eq!(publishes.get("foreign_topic"), Some(&1));
    assert_eq!(edge.records().await.len(), 1);

    // The simulator with client certificates.
    let tls = SimTls {
        ca_pem: std::fs::read(edge.certs.join("ca.crt")).unwrap(),
        client_cert_dir: Some(edge.certs.join("devices")),
    };
    let report = run_sim(&edge, Some(tls), 10).await;
    assert_eq!(report.acked, 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_log_withholds_the_puback() {
    // A log capped at 64 KiB, filled up before any device publishes.
    let options = StreamOptions { max_bytes: Some(64 * 1024), ..StreamOptions::default() };
    let edge = TestEdge::start_with(Listen::Tcp, 1, options, |_| {}).await;
    let filler = wenu_core::stream::NewRecord {
        device_id: "filler".into(),
        topic: "wenu/filler/telemetry".into(),
        received_at: 0,
        payload: vec![0u8; 4096].into(),
    };
    while wenu_core::stream::Stream::append(&edge.stream, vec![filler.clone()]).await.is_ok() {}
    let stored = edge.records().await.len();

    let port = edge.port().to_string();
    let dev = edge.device(0);
    let topic = format!("wenu/{}/telemetry", dev.device_id);
    let file = path_arg(&sealed_message(&edge, 0, 1));
    // MQTT 5: the PUBACK carries the refusal; 3.1.1: no PUBACK, the connection closes.
    let out =
        mosquitto_pub(&publish_args(&port, &dev.device_id, &dev.password.0, &topic, &file, "mqttv5")).await;
    assert!(String::from_utf8_lossy(&out.stderr).contains("Quota exceeded"), "{out:?}");
    let out =
        mosquitto_pub(&publish_args(&port, &dev.device_id, &dev.password.0, &topic, &file, "mqttv311")).await;
    assert!(!out.status.success(), "a 3.1.1 client must not get a PUBACK for an unstored reading");

    assert_eq!(edge.records().await.len(), stored);
    assert_eq!(refusals(&edge).1.get("stream_unavailable"), Some(&2));
    assert_eq!(edge.edge.counters().snapshot(0).publishes_accepted, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_company_reads_only_its_own_alarm_topic_with_its_token() {
    let edge = TestEdge::start(Listen::Tcp, 1).await;
    let acme =
        edge.registry.create_token(Some("acme"), wenu_registry::Role::Viewer, "t", None).await.unwrap();
    let subscribe = |user: &str, password: &str, topic: &str| {
        // A reader's client id is `company:{company}:…`, a device's its id.
        let client_id = if user.starts_with("company:") { format!("{user}:test") } else { user.to_owned() };
        let args: Vec<String> =
            ["-h", "127.0.0.1", "-p", &edge.port().to_string(), "-i", &client_id, "-u", user, "-P", password]
                .into_iter()
                .chain(["-t", topic, "-q", "1", "-C", "1", "-W", "10"])
                .map(str::to_owned)
                .collect();
        tokio::task::spawn_blocking(move || {
            std::process::Command::new("mosquitto_sub").args(&args).output().unwrap()
        })
    };
    let reader = subscribe("company:acme", &acme.bearer, "wenu/alarms/acme");
    // Published until the reader has it: the subscription is made in the background.
    let publisher = edge.edge.publisher();
    while !reader.is_finished() {
        publisher.publish("wenu/alarms/acme", bytes::Bytes::from_static(b"{\"id\":\"a1\"}"));
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let out = reader.await.unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "{\"id\":\"a1\"}", "{out:?}");

    let other = subscribe("company:acme", &acme.bearer, "wenu/alarms/globex").await.unwrap();
    assert!(String::from_utf8_lossy(&other.stderr).contains("denied"), "{other:?}");
    let wildcard = subscribe("company:acme", &acme.bearer, "wenu/alarms/#").await.unwrap();
    assert!(String::from_utf8_lossy(&wildcard.stderr).contains("denied"), "{wildcard:?}");
    let impostor = subscribe("company:globex", &acme.bearer, "wenu/alarms/globex").await.unwrap();
    assert!(!impostor.status.success(), "acme's token is not globex's: {impostor:?}");
    let device = edge.device(0);
    let as_device = subscribe(&device.device_id, &device.password.0, "wenu/alarms/acme").await.unwrap();
    assert!(String::from_utf8_lossy(&as_device.stderr).contains("denied"), "{as_device:?}");
}
