//! Alarms end to end through a real `wenu serve`: the simulator's fault
//! modes (spike, stuck, gap) and a silent device raise alarms, and a webhook
//! receiver on 127.0.0.1 and `mosquitto_sub` with the company's token each
//! get exactly one notification per transition. Also: only that company
//! can read its alarm topic; `kill -9` between recording a transition and
//! notifying it still delivers it exactly once; a stalled alarm consumer
//! does not stall the lake, and a stalled lake does not stall alarms.

mod support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use support::{Pipeline, ServeProcess, ok, start_pipeline, start_pipeline_with, wait_for_consumer, wenu};
use tokio::sync::watch;
use wenu_core::fleet::Fleet;
use wenu_firmware_sim::{Fault, SimConfig, run_fleet};
use wenu_tests::webhook_receiver::Receiver;

fn token(data: &std::path::Path, company: &str, role: &str) -> String {
    ok(wenu(data).args(["tokens", "create", "--company", company, "--role", role]).output().unwrap())
        .trim()
        .to_owned()
}

struct Api {
    base: String,
    bearer: String,
    client: reqwest::Client,
}

impl Api {
    fn new(server: &ServeProcess, bearer: &str) -> Api {
        Api {
            base: format!("http://{}/api/v1", server.http),
            bearer: bearer.into(),
            client: reqwest::Client::new(),
        }
    }

    async fn send(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut request =
            self.client.request(method, format!("{}{path}", self.base)).bearer_auth(&self.bearer);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn put_rule(&self, id: &str, rule: Value) {
        let (status, body) = self.send(reqwest::Method::PUT, &format!("/rules/{id}"), Some(rule)).await;
        assert_eq!(status, 200, "{body}");
    }

    /// Rule "hot": critical on any temperature of `device`, so its first reading raises.
    async fn put_hot_rule(&self, device: &str) {
        self.put_rule(
            "hot",
            json!({"name": "Any temperature", "device": device, "sensor": "temp-1", "severity": "critical",
            "condition": {"kind": "threshold", "direction": "above", "limit": -1000}}),
        )
        .await;
    }

    /// Adds the receiver as a webhook and tells it the secret the server generated.
    async fn add_webhook(&self, receiver: &Receiver) {
        let (status, hook) =
            self.send(reqwest::Method::POST, "/webhooks", Some(json!({ "url": receiver.url }))).await;
        assert_eq!(status, 201, "{hook}");
        receiver.set_secret(hook["secret"].as_str().unwrap());
    }
}

/// Client ids must differ: a second connection with the same id takes over the first.
static SUBSCRIBERS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// `mosquitto_sub` on the company's alarm topic, collecting the messages.
struct Subscriber {
    child: Child,
    messages: Arc<Mutex<Vec<Value>>>,
}

impl Subscriber {
    /// Connects as `company:{company}` with `token` and subscribes to `topic`;
    /// returns once the SUBACK arrived, with its outcome (`false`: refused).
    fn start(port: u16, company: &str, token: &str, topic: &str) -> (Subscriber, bool) {
        // Line-buffered: into a pipe it would otherwise hold its output back.
        let mut child = Command::new("stdbuf")
            .args([
                "-oL",
                "mosquitto_sub",
                "-h",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-q",
                "1",
                "-d",
                "-t",
                topic,
            ])
            .args([
                "-u",
                &format!("company:{company}"),
                "-P",
                token,
                "-i",
                // A reader's client id names its company.
                &format!(
                    "company:{company}:sub-{}",
                    SUBSCRIBERS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                ),
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto_sub (Debian mosquitto-clients) is installed");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut granted = false;
        for line in lines.by_ref() {
            let line = line.unwrap();
            // `received CONNACK (0)` accepts; any other code refuses.
            if line.contains("received CONNACK") && !line.contains("CONNACK (0)") {
                return (Subscriber { child, messages: Arc::default() }, false);
            }
            // `Subscribed (mid: 1): 1` granted QoS 1; `: 128` (0x80) refused.
            if line.starts_with("Subscribed") {
                granted = line.rsplit(':').next().is_some_and(|code| code.trim() != "128");
                break;
            }
        }
        let messages: Arc<Mutex<Vec<Value>>> = Arc::default();
        let sink = messages.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                if let Ok(value) = serde_json::from_str::<Value>(&line) {
                    sink.lock().unwrap().push(value);
                }
            }
        });
        (Subscriber { child, messages }, granted)
    }

    fn ids(&self) -> Vec<String> {
        self.messages.lock().unwrap().iter().map(|m| m["id"].as_str().unwrap().to_owned()).collect()
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn only(fleet: &Fleet, index: usize) -> Fleet {
    Fleet { devices: vec![fleet.devices[index].clone()] }
}

/// Polls `check` until it holds (at most 60 s); the servers work in the background.
async fn eventually<T>(what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    for _ in 0..1200 {
        if let Some(value) = check().await {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what}: not within 60 s");
}

fn outbox_len(data: &std::path::Path) -> usize {
    ok(wenu(data).args(["alarms", "outbox"]).output().unwrap()).lines().count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_modes_raise_alarms_notified_once_per_transition_on_webhook_and_mqtt() {
    let Pipeline { dir, data, fleet, port, server } = start_pipeline(4);
    let admin = Api::new(&server, &token(&data, "acme", "admin"));
    let viewer = token(&data, "acme", "viewer");
    let device = |i: usize| fleet.devices[i].device_id.clone();
    admin.put_rule("spike", json!({"name": "Temperature spike", "device": device(0), "sensor": "temp-1", "severity": "critical",
        "condition": {"kind": "threshold", "direction": "above", "limit": 100, "hysteresis": 5}})).await;
    admin
        .put_rule(
            "stuck",
            json!({"name": "Stuck sensor", "device": device(1), "sensor": "temp-1", "severity": "warning",
        "condition": {"kind": "flatline", "window_ms": 2000}}),
        )
        .await;
    admin
        .put_rule(
            "gaps",
            json!({"name": "Lost messages", "device": device(2), "severity": "warning",
        "condition": {"kind": "missing_data", "silence_ms": 600000, "max_gap": 1}}),
        )
        .await;
    admin
        .put_rule(
            "silent",
            json!({"name": "Silent device", "device": device(3), "severity": "critical",
        "condition": {"kind": "missing_data", "silence_ms": 3000}}),
        )
        .await;
    let (status, body) = admin
        .send(
            reqwest::Method::PUT,
            "/rules/bad",
            Some(json!({"name": "x", "sensor": "temp-1",
        "severity": "info", "condition": {"kind": "flatline", "window_ms": 0}})),
        )
        .await;
    assert_eq!(status, 400, "invalid rules are refused: {body}");
    let receiver = Receiver::start("unset").await;
    admin.add_webhook(&receiver).await;

    // Only acme's token opens acme's alarm topic, and only that topic.
    let (subscriber, granted) = Subscriber::start(port, "acme", &viewer, "wenu/alarms/acme");
    assert!(granted, "acme's viewer token subscribes to wenu/alarms/acme");
    let globex = token(&data, "acme", "viewer");
    let (_other_topic, granted) = Subscriber::start(port, "acme", &globex, "wenu/alarms/globex");
    assert!(!granted, "acme cannot read globex's alarms");
    let globex_fleet = dir.path().join("globex.json");
    ok(wenu(&data)
        .args(["devices", "provision", "--company", "globex", "--count", "1", "--out"])
        .arg(&globex_fleet)
        .output()
        .unwrap());
    let globex_token = token(&data, "globex", "viewer");
    let (_impostor, granted) = Subscriber::start(port, "acme", &globex_token, "wenu/alarms/acme");
    assert!(!granted, "globex's token does not open acme's topic");

    // Three fault modes, one device each, at once; the fourth device stays silent.
    let runs = [(0, Fault::Spike), (1, Fault::Stuck), (2, Fault::Gap)].map(|(index, fault)| {
        let sim = SimConfig {
            port,
            rate_per_device: 40.0,
            per_device: Some(200),
            window: 4,
            faults: vec![fault],
            ..SimConfig::default()
        };
        let devices = only(&fleet, index);
        let (_stop, stop) = watch::channel(false);
        tokio::spawn(async move { run_fleet(&devices, sim, stop).await.unwrap() })
    });
    for run in runs {
        assert_eq!(run.await.unwrap().unacked_at_exit, 0);
    }
    wait_for_consumer(&data, "alarms").await;
    eventually("the outbox drains", async || (outbox_len(&data) == 0).then_some(())).await;

    let (status, history) =
        admin.send(reqwest::Method::GET, "/alarms/history?from=-1h&limit=5000", None).await;
    assert_eq!(status, 200);
    let history = history["items"].as_array().unwrap().clone();
    let mut per_rule: BTreeMap<(String, String), usize> = BTreeMap::new();
    for t in &history {
        *per_rule
            .entry((t["rule"].as_str().unwrap().into(), t["change"].as_str().unwrap().into()))
            .or_default() += 1;
    }
    println!("transitions per rule: {per_rule:?}");
    for rule in ["spike", "stuck", "gaps", "silent"] {
        assert!(per_rule.contains_key(&(rule.into(), "raised".into())), "{rule} raised: {per_rule:?}");
    }
    assert!(per_rule.contains_key(&("spike".into(), "cleared".into())), "a spike clears: {per_rule:?}");

    // Exactly one notification per transition on each channel.
    let mut expected: Vec<String> = history.iter().map(|t| t["id"].as_str().unwrap().to_owned()).collect();
    expected.sort();
    let mut webhook: Vec<String> = receiver.received().iter().map(|r| r.delivery.clone()).collect();
    webhook.sort();
    assert_eq!(webhook, expected, "webhook deliveries = transitions, none twice");
    assert!(receiver.received().iter().all(|r| r.signed), "every delivery signed with the webhook's secret");
    let mut mqtt = eventually("MQTT catches up", async || {
        let ids = subscriber.ids();
        (ids.len() >= expected.len()).then_some(ids)
    })
    .await;
    mqtt.sort();
    assert_eq!(mqtt, expected, "MQTT messages = transitions, none twice");

    // The dashboard API lists what is still raised.
    let (_, active) = admin.send(reqwest::Method::GET, "/alarms", None).await;
    let active_rules: Vec<&str> =
        active.as_array().unwrap().iter().map(|a| a["rule"].as_str().unwrap()).collect();
    assert!(active_rules.contains(&"stuck") && active_rules.contains(&"silent"), "{active_rules:?}");
}

/// A one-device data directory with a rule that raises on the device's
/// first reading and a webhook receiver, its setup server stopped: tests
/// then start `wenu serve` with the failpoints they need.
async fn one_hot_device() -> (Pipeline, Receiver) {
    let pipeline = start_pipeline(1);
    let admin = Api::new(&pipeline.server, &token(&pipeline.data, "acme", "admin"));
    admin.put_hot_rule(&pipeline.fleet.devices[0].device_id).await;
    let receiver = Receiver::start("unset").await;
    admin.add_webhook(&receiver).await;
    (pipeline, receiver)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_recording_and_notifying_still_notifies_exactly_once() {
    let (Pipeline { dir: _dir, data, fleet, port, server }, receiver) = one_hot_device().await;
    server.terminate();

    // This server dies (as kill -9 would) right after the transition is
    // durable and before anything is sent.
    let mqtt = format!("127.0.0.1:{port}");
    let mut doomed =
        ServeProcess::start_with(&data, &mqtt, &[("WENU_FAILPOINTS", "alarms.after_record=abort")]);
    let sim =
        SimConfig { port, rate_per_device: 0.0, per_device: Some(3), window: 1, ..SimConfig::default() };
    let (_stop, stop) = watch::channel(false);
    // The server may die with a later reading still in flight (the abort
    // comes as soon as the first transition is recorded); only the recorded
    // transition matters here, and that is checked below.
    run_fleet(&fleet, sim, stop).await.unwrap();
    let exit = tokio::task::spawn_blocking(move || doomed.child.wait().unwrap()).await.unwrap();
    assert!(!exit.success(), "the failpoint aborted the server");
    assert!(receiver.received().is_empty(), "nothing sent before the crash");
    let history = ok(wenu(&data).args(["alarms", "history", "--company", "acme"]).output().unwrap());
    assert_eq!(history.lines().count(), 1, "the transition is recorded: {history}");
    assert_eq!(outbox_len(&data), 1, "its notification waits in the outbox");

    let restarted = ServeProcess::start(&data, &mqtt);
    let delivered = receiver.wait_for(1).await;
    eventually("the outbox drains", async || (outbox_len(&data) == 0).then_some(())).await;
    wait_for_consumer(&data, "alarms").await;
    let recorded: Value = serde_json::from_str(history.lines().next().unwrap()).unwrap();
    assert_eq!(receiver.received().len(), 1, "delivered once, not again after the redone batch");
    assert_eq!(delivered[0].delivery, recorded["id"].as_str().unwrap());
    let history_after = ok(wenu(&data).args(["alarms", "history", "--company", "acme"]).output().unwrap());
    assert_eq!(history_after, history, "no second transition from the records redone after the crash");
    restarted.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_alarm_consumer_and_a_stalled_lake_do_not_hold_each_other_up() {
    let (Pipeline { dir: _dir, data, fleet, port, server }, receiver) = one_hot_device().await;
    server.terminate();
    let mqtt = format!("127.0.0.1:{port}");
    let run = |first_seq: u64| {
        let devices = fleet.clone();
        let sim = SimConfig {
            port,
            rate_per_device: 0.0,
            per_device: Some(20),
            window: 4,
            first_seq,
            ..SimConfig::default()
        };
        async move {
            let (_stop, stop) = watch::channel(false);
            run_fleet(&devices, sim, stop).await.unwrap()
        }
    };

    // Alarms stalled: the lake still receives everything.
    let fast = [("WENU_LAKE_BUFFER_SECS", "0")];
    let stalled_alarms =
        ServeProcess::start_with(&data, &mqtt, &[fast[0], ("WENU_FAILPOINTS", "alarms.evaluate=stall")]);
    assert_eq!(run(1).await.acked, 20);
    support::wait_for_lake(&data).await;
    assert!(receiver.received().is_empty(), "the alarm consumer is stalled");
    stalled_alarms.kill_9(); // a stalled task never finishes its shutdown

    // Lake stalled: the alarm is raised and notified anyway (the backlog included).
    let stalled_lake =
        ServeProcess::start_with(&data, &mqtt, &[fast[0], ("WENU_FAILPOINTS", "lake.process=stall")]);
    assert_eq!(run(21).await.acked, 20);
    let delivered = receiver.wait_for(1).await;
    assert_eq!(delivered[0].notification.transition.rule, "hot");
    wait_for_consumer(&data, "alarms").await;
    let lake = support::status(&data)["consumers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["consumer"] == "lake")
        .cloned()
        .unwrap();
    assert!(lake["lag"].as_u64().unwrap() >= 20, "the lake is behind while alarms are current: {lake}");
    stalled_lake.kill_9();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_reach_no_private_address_and_their_urls_stay_secret() {
    // As deployed: public addresses only (the other tests allow loopback).
    let pipeline = start_pipeline_with(
        1,
        &[("WENU_ALARMS_WEBHOOK_PRIVATE_NETWORKS", "false"), ("WENU_ALARMS_FIRST_BACKOFF_MILLIS", "10")],
    );
    let admin = Api::new(&pipeline.server, &token(&pipeline.data, "acme", "admin"));
    let viewer = Api::new(&pipeline.server, &token(&pipeline.data, "acme", "viewer"));
    admin.put_hot_rule(&pipeline.fleet.devices[0].device_id).await;
    let receiver = Receiver::start("unset").await;
    let port = receiver.url.split(':').nth(2).unwrap().split('/').next().unwrap().to_owned();
    let hooks = [
        receiver.url.replace("/hook", "/hook?token=s3cr3t"),
        format!("http://localhost:{port}/hook/s3cr3t"),
        "http://169.254.169.254/latest/meta-data/iam/s3cr3t".to_owned(),
        "http://[::ffff:127.0.0.1]:1/s3cr3t".to_owned(),
    ];
    for url in &hooks {
        let (status, body) =
            admin.send(reqwest::Method::POST, "/webhooks", Some(json!({ "url": url }))).await;
        assert_eq!(status, 201, "{body}");
    }

    let sim = SimConfig {
        port: pipeline.port,
        rate_per_device: 0.0,
        per_device: Some(1),
        window: 1,
        ..SimConfig::default()
    };
    let (_stop, stop) = watch::channel(false);
    run_fleet(&pipeline.fleet, sim, stop).await.unwrap();
    let letters = eventually("a dead letter per webhook", async || {
        let (status, letters) = admin.send(reqwest::Method::GET, "/alarms/dead-letters", None).await;
        assert_eq!(status, 200, "{letters}");
        (letters.as_array().unwrap().len() == hooks.len()).then_some(letters)
    })
    .await;
    for letter in letters.as_array().unwrap() {
        let error = letter["error"].as_str().unwrap();
        assert!(error.contains("may not reach"), "refused by the address check: {error}");
        assert!(!error.contains("s3cr3t") && !error.contains("meta-data"), "no path or query: {error}");
        assert_eq!(letter["attempts"], 1, "a refusal is final: {letter}");
    }
    assert!(receiver.received().is_empty(), "nothing reached the loopback receiver");
    assert_eq!(receiver.requests.load(std::sync::atomic::Ordering::SeqCst), 0);

    let (status, _) = viewer.send(reqwest::Method::GET, "/alarms/dead-letters", None).await;
    assert_eq!(status, 403, "dead letters name endpoints: admins only");
    let (status, _) = viewer.send(reqwest::Method::GET, "/webhooks", None).await;
    assert_eq!(status, 403);
    pipeline.server.terminate();
}
