//! The downlink through the real edge, with an MQTT 5 client nobody here
//! wrote (rumqttc): a device's desired configuration set while it is offline
//! reaches it when it subscribes and follows changes while it is connected;
//! commands are delivered, acknowledged and expire; what the device reports
//! lands in the registry; and a device can neither read another device's
//! downlink nor write to its own.

use std::time::Duration;

use bytes::Bytes;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{Packet, PubAckReason, Publish, SubscribeReasonCode};
use rumqttc::v5::{AsyncClient, Event, EventLoop, MqttOptions};
use serde_json::{Value, json};
use wenu_registry::CommandStatus;
use wenu_tests::{Listen, TestEdge};

/// Generous: the edge looks for downlink changes every second.
const PATIENCE: Duration = Duration::from_secs(30);

async fn connect(edge: &TestEdge, n: usize) -> (AsyncClient, EventLoop) {
    let device = edge.device(n);
    let mut options = MqttOptions::new(&device.device_id, "127.0.0.1", edge.port());
    options.set_credentials(&device.device_id, &device.password.0);
    options.set_keep_alive(Duration::from_secs(60));
    let (client, mut events) = AsyncClient::new(options, 16);
    next(&mut events, |p| matches!(p, Packet::ConnAck(_))).await;
    (client, events)
}

/// Polls until a packet matches; returns it.
async fn next(events: &mut EventLoop, wanted: impl Fn(&Packet) -> bool) -> Packet {
    let found = async {
        loop {
            if let Event::Incoming(packet) = events.poll().await.expect("connection ended")
                && wanted(&packet)
            {
                return packet;
            }
        }
    };
    tokio::time::timeout(PATIENCE, found).await.expect("the packet did not come")
}

async fn received(events: &mut EventLoop, topic: &str) -> Value {
    let topic = topic.to_owned();
    match next(events, |p| matches!(p, Packet::Publish(Publish { topic: t, .. }) if *t == topic)).await {
        Packet::Publish(publish) => serde_json::from_slice(&publish.payload).unwrap(),
        _ => unreachable!(),
    }
}

async fn subscribed(client: &AsyncClient, events: &mut EventLoop, filter: &str) -> SubscribeReasonCode {
    client.subscribe(filter, QoS::AtLeastOnce).await.unwrap();
    match next(events, |p| matches!(p, Packet::SubAck(_))).await {
        Packet::SubAck(ack) => ack.return_codes[0],
        _ => unreachable!(),
    }
}

async fn published(
    client: &AsyncClient,
    events: &mut EventLoop,
    topic: &str,
    payload: Value,
) -> PubAckReason {
    client.publish(topic, QoS::AtLeastOnce, false, Bytes::from(payload.to_string())).await.unwrap();
    match next(events, |p| matches!(p, Packet::PubAck(_))).await {
        Packet::PubAck(ack) => ack.reason,
        _ => unreachable!(),
    }
}

/// Polls the registry until `done` holds.
async fn eventually<T>(mut read: impl AsyncFnMut() -> T, done: impl Fn(&T) -> bool) -> T {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let value = read().await;
        if done(&value) || tokio::time::Instant::now() > deadline {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configuration_set_while_offline_arrives_on_subscribe_and_changes_follow() {
    let edge = TestEdge::start(Listen::Tcp, 1).await;
    let id = edge.device(0).device_id.clone();
    let topic = format!("wenu/{id}/config");
    edge.registry.set_desired_config(&id, &json!({"interval_s": 60})).await.unwrap();

    let (client, mut events) = connect(&edge, 0).await;
    let state = eventually(async || edge.registry.device_state(&id).await.unwrap(), |s| s.online).await;
    assert!(state.online, "the edge records the connection");
    assert_eq!(
        subscribed(&client, &mut events, &topic).await,
        SubscribeReasonCode::Success(QoS::AtLeastOnce)
    );
    assert_eq!(received(&mut events, &topic).await, json!({"version": 1, "config": {"interval_s": 60}}));

    edge.registry.set_desired_config(&id, &json!({"interval_s": 30})).await.unwrap();
    assert_eq!(received(&mut events, &topic).await, json!({"version": 2, "config": {"interval_s": 30}}));

    let report = json!({"firmware": "2.0.1", "boot": 3, "config_version": 2});
    let reported = format!("wenu/{id}/reported");
    assert_eq!(published(&client, &mut events, &reported, report).await, PubAckReason::Success);
    let state = edge.registry.device_state(&id).await.unwrap();
    assert_eq!(state.firmware.as_deref(), Some("2.0.1"));
    assert_eq!(
        (state.boot, state.applied_config_version, state.desired_config_version),
        (Some(3), Some(2), Some(2))
    );
    assert!(edge.records().await.is_empty(), "reports go to the registry, not the log");

    client.disconnect().await.unwrap();
    let _ = events.poll().await;
    let state = eventually(async || edge.registry.device_state(&id).await.unwrap(), |s| !s.online).await;
    assert!(!state.online && state.disconnected_at.is_some(), "the edge records the departure");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_are_delivered_once_subscribed_acknowledged_and_expire_when_the_device_stays_away() {
    let edge = TestEdge::start(Listen::Tcp, 1).await;
    let id = edge.device(0).device_id.clone();
    let reboot = edge.registry.send_command(&id, "reboot", &json!({}), 60_000).await.unwrap();
    let missed = edge.registry.send_command(&id, "sample_now", &json!({}), 1_000).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1_100)).await; // `missed` expires while the device is away

    let (client, mut events) = connect(&edge, 0).await;
    let topic = format!("wenu/{id}/commands");
    subscribed(&client, &mut events, &topic).await;
    let message = received(&mut events, &topic).await;
    assert_eq!(message["id"], reboot.id.as_str());
    assert_eq!(message["name"], "reboot");
    let status = async |command: &str| {
        let commands = edge.registry.commands(&id, 10).await.unwrap();
        commands.into_iter().find(|c| c.id == command).unwrap().status
    };
    let delivered = eventually(async || status(&reboot.id).await, |s| *s == CommandStatus::Delivered).await;
    assert_eq!(delivered, CommandStatus::Delivered, "the device's PUBACK marks it delivered");
    assert_eq!(status(&missed.id).await, CommandStatus::Expired);

    // A command sent while connected arrives too.
    let interval = edge.registry.send_command(&id, "set_interval", &json!({"s": 5}), 60_000).await.unwrap();
    assert_eq!(received(&mut events, &topic).await["id"], interval.id.as_str());

    let results = format!("wenu/{id}/results");
    let done = json!({"id": reboot.id, "status": "done"});
    assert_eq!(published(&client, &mut events, &results, done.clone()).await, PubAckReason::Success);
    assert_eq!(status(&reboot.id).await, CommandStatus::Done);
    let again = published(&client, &mut events, &results, done).await;
    assert_eq!(again, PubAckReason::ImplementationSpecificError, "a result is final");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_reads_only_its_own_downlink_and_writes_only_its_own_reports() {
    let edge = TestEdge::start(Listen::Tcp, 2).await;
    let (me, other) = (edge.device(0).device_id.clone(), edge.device(1).device_id.clone());
    edge.registry.set_desired_config(&other, &json!({"secret": "theirs"})).await.unwrap();
    edge.registry.send_command(&other, "reboot", &json!({}), 60_000).await.unwrap();
    let (client, mut events) = connect(&edge, 0).await;

    for filter in [
        format!("wenu/{other}/config"),
        format!("wenu/{other}/commands"),
        "wenu/+/config".to_owned(),
        format!("wenu/{me}/#"),
        format!("wenu/{me}/telemetry"),
    ] {
        assert_eq!(
            subscribed(&client, &mut events, &filter).await,
            SubscribeReasonCode::NotAuthorized,
            "{filter}"
        );
    }
    let report = json!({"firmware": "evil"});
    assert_eq!(
        published(&client, &mut events, &format!("wenu/{other}/reported"), report.clone()).await,
        PubAckReason::NotAuthorized
    );
    assert_eq!(
        published(&client, &mut events, &format!("wenu/{me}/config"), json!({"version": 9})).await,
        PubAckReason::TopicNameInvalid,
        "the server's topics are not the device's to write"
    );
    let reported = format!("wenu/{me}/reported");
    assert_eq!(
        published(&client, &mut events, &reported, json!({"firmware": 1, "extra": true})).await,
        PubAckReason::PayloadFormatInvalid
    );
    let theirs = edge.registry.commands(&other, 10).await.unwrap()[0].id.clone();
    assert_eq!(
        published(
            &client,
            &mut events,
            &format!("wenu/{me}/results"),
            json!({"id": theirs, "status": "done"})
        )
        .await,
        PubAckReason::ImplementationSpecificError,
        "another device's command"
    );
    let state = edge.registry.device_state(&other).await.unwrap();
    assert_eq!(state.firmware, None);
    assert_eq!(edge.registry.commands(&other, 10).await.unwrap()[0].status, CommandStatus::Pending);
}
