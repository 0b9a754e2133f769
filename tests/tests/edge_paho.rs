//! The edge against Eclipse Paho's Python client (paho-mqtt), MQTT 3.1.1 and
//! 5: the reason codes a client that nobody here wrote receives.

use wenu_tests::{Listen, TestEdge};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paho_gets_the_mqtt_5_reason_codes_and_3_1_1_semantics() {
    let python = std::env::var("PAHO_PYTHON")
        .expect("PAHO_PYTHON must name a Python with paho-mqtt installed; scripts/test.sh sets it up");
    let edge = TestEdge::start(Listen::Tcp, 2).await;
    let (me, other) = (edge.device(0), edge.device(1));
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/py/paho_edge.py");
    let args = [script.to_owned(), edge.port().to_string(), me.device_id.clone(), me.password.0.clone()];
    let other_id = other.device_id.clone();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(python).args(args).arg(other_id).output().expect("PAHO_PYTHON runs")
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let result: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let code = |case: &str| result[case].as_i64();

    assert_eq!(code("v5_connack"), Some(0), "{result}");
    assert_eq!(result["v5_connack_properties"]["MaximumQoS"], 1, "QoS 2 is not offered: {result}");
    assert_eq!(result["v5_connack_properties"]["RetainAvailable"], 0, "{result}");
    assert_eq!(result["v5_connack_properties"]["ReceiveMaximum"], wenu_ingest::RECEIVE_MAXIMUM, "{result}");
    assert_eq!(code("v5_own_topic"), Some(0));
    // A refused publish: PUBACK with a reason code >= 0x80 (0x87 Not authorized).
    assert_eq!(code("v5_foreign_topic"), Some(0x87), "{result}");
    assert_eq!(code("v5_after_refusal"), Some(0), "an MQTT 5 session survives a refusal");
    // CONNACK 0x85 Client Identifier not valid: a device's client id must be its id.
    assert_eq!(code("v5_client_id_of_another_device"), Some(0x85), "{result}");
    // Many publishes in flight at once, each acknowledged, in order.
    assert_eq!(result["v5_pipelined_in_order"], true, "{result}");
    assert_eq!(result["v311_pipelined_in_order"], true, "{result}");
    // MQTT 3.1.1: return code 4, bad user name or password (which paho
    // reports as MQTT 5's 0x86); a publish cannot be refused in a 3.1.1
    // PUBACK, so the connection is closed.
    assert_eq!(code("v311_bad_password"), Some(0x86), "{result}");
    assert_eq!(code("v311_connack"), Some(0));
    assert_eq!(code("v311_own_topic"), Some(0));
    assert_eq!(result["v311_foreign_topic"], serde_json::Value::Null, "{result}");

    // The single publishes to its own topic, and the pipelined ones in the
    // order they were sent.
    let records = edge.records().await;
    assert_eq!(records.len(), 3 + 2 * 200, "every publish to its own topic");
    let pipelined: Vec<String> =
        records[2..].iter().map(|r| String::from_utf8_lossy(&r.payload).into_owned()).collect();
    let sent: Vec<String> = (0..200).map(|n| n.to_string()).collect();
    assert_eq!(pipelined[..200], sent[..], "MQTT 5 publishes stored in the order sent");
    assert_eq!(pipelined[201..], sent[..], "MQTT 3.1.1 publishes stored in the order sent");
}
