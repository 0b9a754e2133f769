//! The bad-input catalogue: every kind of bad input a field fleet produces,
//! sent through the real MQTT edge of a running `wenu serve` by a real
//! client (`mosquitto_pub`, rumqttc for the connect flood) while a healthy
//! fleet keeps publishing. Each gets a clear error — a refusal the client
//! sees, or a quarantine entry with a reason and a detail — and a metric;
//! the healthy fleet's acknowledged readings all reach the lake, once.
//!
//! What the edge refuses is never acknowledged, so the device still holds
//! it: it is counted, not quarantined. What the edge acknowledges but the
//! pipeline cannot use is quarantined in the lake (`quarantine` table).

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use support::{acked_lines, start_pipeline_with, wait_for_lake, wenu};
use tokio::sync::watch;
use wenu_core::envelope::seal;
use wenu_core::fleet::Fleet;
use wenu_core::keyring::{Keyring, SecretKey};
use wenu_core::reading::{Reading, ReadingBatch};
use wenu_firmware_sim::{SimConfig, run_fleet};
use wenu_tests::mosquitto_pub;

/// Messages of the healthy fleet acknowledged before it stops, at least.
const HEALTHY_MINIMUM: usize = 100;

/// Devices: the first four are the healthy fleet (the simulator gives each
/// the sensors the registry defines for its place in the fleet), the fifth
/// sends the bad input, the sixth is the victim of the wrong-topic case and
/// gets disabled.
const DEVICES: usize = 6;
const BAD: usize = 4;
const VICTIM: usize = 5;
const MAX_PAYLOAD: usize = 4096;

/// What the catalogue expects of one input.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    /// Acknowledged and stored as readings (the control case).
    Stored,
    /// The edge refuses the connection; counted under this reason.
    ConnectRefused(&'static str),
    /// The edge refuses the publish; counted under this reason.
    PublishRefused(&'static str),
    /// Acknowledged (the edge cannot decrypt), then quarantined by the lake
    /// under this reason and counted.
    Quarantined(&'static str),
    /// Acknowledged, then dropped as a message the device already delivered.
    Duplicate,
}

/// How one input is sent.
enum Input {
    /// The bad device publishes `payload` to `topic` (its own when `None`).
    Publish { payload: Vec<u8>, topic: Option<String> },
    /// A client connects with these credentials and publishes a good message.
    Connect { user: Option<String>, password: Option<String> },
}

struct Case {
    name: &'static str,
    /// `wenu` commands run before sending (on the server's data directory).
    before: Vec<Vec<String>>,
    input: Input,
    expect: Expect,
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

fn batch(seq: u64, ts: i64, value: f64) -> Vec<u8> {
    let reading = Reading { sensor: "temp-1".into(), kind: "temperature".into(), value, unit: "degC".into() };
    ReadingBatch { seq, ts, readings: vec![reading] }.to_json()
}

/// Seals for the bad device with its key `key_id`, a fresh nonce each time.
struct Sealer {
    device: String,
    keys: Keyring,
    nonce: u64,
}

impl Sealer {
    fn seal_with(&mut self, key_id: u32, key: &SecretKey, plaintext: &[u8]) -> Vec<u8> {
        self.nonce += 1;
        let mut nonce = [0u8; 12];
        nonce[4..].copy_from_slice(&self.nonce.to_be_bytes());
        seal(&self.device, key_id, key, nonce, plaintext)
    }

    fn seal(&mut self, plaintext: &[u8]) -> Vec<u8> {
        let key = self.keys.current_key(&self.device).unwrap().clone();
        self.seal_with(key.id, &key.key, plaintext)
    }
}

fn catalogue(fleet: &Fleet, keyring: &Keyring) -> Vec<Case> {
    let me = &fleet.devices[BAD];
    let victim = &fleet.devices[VICTIM];
    let mut sealer = Sealer { device: me.device_id.clone(), keys: keyring.clone(), nonce: 0 };
    let now = now_ms();
    let good = |seq| batch(seq, now, 21.5);
    let publish = |payload| Input::Publish { payload, topic: None };
    let case = |name, input, expect| Case { name, before: vec![], input, expect };

    let first_good = sealer.seal(&good(1000));
    let mut tampered = sealer.seal(&good(1001));
    *tampered.last_mut().unwrap() ^= 0x40;
    let mut unknown_version = sealer.seal(&good(1002));
    unknown_version[0] = 9;
    let unknown_key = sealer.seal_with(77, &me.key, &good(1003));
    let retired_key = sealer.seal_with(me.key_id, &me.key, &good(2000));

    let mut cases = vec![
        case("a good message (control)", publish(first_good.clone()), Expect::Stored),
        case("tampered tag", publish(tampered), Expect::Quarantined("tampered")),
        case("truncated envelope", publish(first_good[..20].to_vec()), Expect::Quarantined("truncated")),
        case("unknown version", publish(unknown_version), Expect::Quarantined("unsupported_version")),
        case("unknown key id", publish(unknown_key), Expect::Quarantined("unknown_key")),
        case(
            "malformed JSON",
            publish(sealer.seal(b"{\"seq\": 1004, \"ts\": ")),
            Expect::Quarantined("malformed_plaintext"),
        ),
        case(
            "missing fields",
            publish(sealer.seal(b"{\"seq\": 1005, \"readings\": []}")),
            Expect::Quarantined("malformed_plaintext"),
        ),
        case(
            "NaN value",
            publish(sealer.seal(&batch(1006, now, f64::NAN))),
            Expect::Quarantined("non_finite_value"),
        ),
        case(
            "infinite value",
            publish(sealer.seal(&batch(1007, now, f64::INFINITY).replace_null_with("\"Infinity\""))),
            Expect::Quarantined("non_finite_value"),
        ),
        case(
            "timestamp a day in the future",
            publish(sealer.seal(&batch(1008, now + 86_400_000, 21.5))),
            Expect::Quarantined("timestamp_in_future"),
        ),
        case(
            "timestamp in 1970",
            publish(sealer.seal(&batch(1009, 0, 21.5))),
            Expect::Quarantined("timestamp_before_device"),
        ),
        case("resent envelope (offline buffer)", publish(first_good.clone()), Expect::Duplicate),
        case("replayed old seq", publish(sealer.seal(&good(1))), Expect::Quarantined("replayed_seq")),
        case(
            "wrong topic (another device's)",
            Input::Publish {
                payload: sealer.seal(&good(1010)),
                topic: Some(format!("wenu/{}/telemetry", victim.device_id)),
            },
            Expect::PublishRefused("foreign_topic"),
        ),
        case(
            "topic outside the scheme",
            Input::Publish { payload: sealer.seal(&good(1011)), topic: Some("wenu/x/y/z".into()) },
            Expect::PublishRefused("invalid_topic"),
        ),
        case("oversized payload", publish(vec![0x5a; MAX_PAYLOAD + 1]), Expect::PublishRefused("oversized")),
        case(
            "no credentials",
            Input::Connect { user: None, password: None },
            Expect::ConnectRefused("no_credentials"),
        ),
        case(
            "wrong password",
            Input::Connect { user: Some(me.device_id.clone()), password: Some("guess".into()) },
            Expect::ConnectRefused("bad_password"),
        ),
        case(
            "unknown device",
            Input::Connect { user: Some("acme-99999".into()), password: Some("x".into()) },
            Expect::ConnectRefused("unknown_device"),
        ),
        case("a good message after all that", publish(sealer.seal(&good(1012))), Expect::Stored),
    ];
    cases.push(Case {
        name: "disabled device",
        before: vec![vec!["devices".into(), "disable".into(), victim.device_id.clone()]],
        input: Input::Connect {
            user: Some(victim.device_id.clone()),
            password: Some(victim.password.0.clone()),
        },
        expect: Expect::ConnectRefused("disabled"),
    });
    cases.push(Case {
        name: "retired key",
        before: vec![
            vec!["devices".into(), "rotate-key".into(), me.device_id.clone()],
            vec![
                "devices".into(),
                "retire-key".into(),
                me.device_id.clone(),
                "--key-id".into(),
                me.key_id.to_string(),
            ],
        ],
        input: publish(retired_key),
        expect: Expect::Quarantined("retired_key"),
    });
    cases
}

/// serde_json writes non-finite values as `null`; firmware also writes strings.
trait ReplaceNull {
    fn replace_null_with(self, text: &str) -> Vec<u8>;
}

impl ReplaceNull for Vec<u8> {
    fn replace_null_with(self, text: &str) -> Vec<u8> {
        String::from_utf8(self).unwrap().replace("null", text).into_bytes()
    }
}

/// Sends one input with `mosquitto_pub -V mqttv5`; its exit status and stderr.
async fn send(input: &Input, port: u16, fleet: &Fleet, dir: &Path, n: usize) -> (bool, String) {
    let me = &fleet.devices[BAD];
    let file = dir.join(format!("input-{n}.bin"));
    let (user, password, topic) = match input {
        Input::Publish { payload, topic } => {
            std::fs::write(&file, payload).unwrap();
            let topic = topic.clone().unwrap_or_else(|| format!("wenu/{}/telemetry", me.device_id));
            (Some(me.device_id.clone()), Some(me.password.0.clone()), topic)
        }
        Input::Connect { user, password } => {
            std::fs::write(&file, b"not sent").unwrap();
            let topic = format!("wenu/{}/telemetry", user.as_deref().unwrap_or("nobody"));
            (user.clone(), password.clone(), topic)
        }
    };
    let port = port.to_string();
    let file = file.display().to_string();
    let mut args = vec!["-h", "127.0.0.1", "-p", &port, "-V", "mqttv5", "-q", "1", "-t", &topic, "-f", &file];
    if let Some(user) = &user {
        // A device's client id is its id.
        args.extend(["-i", user, "-u", user]);
    }
    if let Some(password) = &password {
        args.extend(["-P", password]);
    }
    let out = mosquitto_pub(&args).await;
    (out.status.success(), String::from_utf8_lossy(&out.stderr).trim().to_owned())
}

/// Rows of `wenu sql --format csv`, header skipped.
fn sql(data: &Path, query: &str) -> Vec<Vec<String>> {
    let out = wenu(data).args(["sql", "--format", "csv", query]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| l.splitn(3, ',').map(str::to_owned).collect())
        .collect()
}

/// `count` clients connect at once with credentials that fail (half of
/// them a real device's id with a wrong password, half unknown ids).
async fn connect_flood(port: u16, device: &str, count: usize) -> usize {
    let mut clients = tokio::task::JoinSet::new();
    for n in 0..count {
        let user = if n % 2 == 0 { device.to_owned() } else { format!("flood-{n}") };
        clients.spawn(async move {
            let mut options = rumqttc::MqttOptions::new(user.clone(), "127.0.0.1", port);
            options.set_credentials(user, "wrong");
            let (_client, mut events) = rumqttc::AsyncClient::new(options, 1);
            loop {
                match events.poll().await {
                    Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(_))) => return false,
                    Ok(_) => continue,
                    Err(rumqttc::ConnectionError::ConnectionRefused(_)) => return true,
                    Err(_) => return true,
                }
            }
        });
    }
    let mut refused = 0;
    while let Some(outcome) = clients.join_next().await {
        refused += usize::from(outcome.unwrap());
    }
    refused
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_bad_input_gets_an_error_a_metric_and_a_quarantine_entry() {
    let pipeline = start_pipeline_with(DEVICES, &[("WENU_MQTT_MAX_PAYLOAD_BYTES", &MAX_PAYLOAD.to_string())]);
    let (data, port) = (pipeline.data.clone(), pipeline.port);
    let keyring = Keyring::load(&data.join("keyring.json")).unwrap();
    let fleet = pipeline.fleet.clone();

    // The healthy fleet publishes throughout.
    let healthy = Fleet { devices: fleet.devices[..BAD].to_vec() };
    let acked_path = pipeline.dir.path().join("acked.jsonl");
    let sim =
        SimConfig { port, rate_per_device: 20.0, report: Some(acked_path.clone()), ..SimConfig::default() };
    let (stop_tx, stop) = watch::channel(false);
    let fleet_run = tokio::spawn(async move { run_fleet(&healthy, sim, stop).await.unwrap() });

    let cases = catalogue(&fleet, &keyring);
    for (n, case) in cases.iter().enumerate() {
        for command in &case.before {
            let out = wenu(&data).args(command).output().unwrap();
            assert!(out.status.success(), "{}: {}", case.name, String::from_utf8_lossy(&out.stderr));
        }
        let (ok, stderr) = send(&case.input, port, &fleet, pipeline.dir.path(), n).await;
        match case.expect {
            Expect::Stored | Expect::Quarantined(_) | Expect::Duplicate => {
                assert!(ok, "{}: the edge acknowledges what it cannot judge: {stderr}", case.name)
            }
            Expect::ConnectRefused(_) => {
                assert!(!ok && stderr.to_lowercase().contains("connection"), "{}: {stderr}", case.name)
            }
            Expect::PublishRefused(_) => assert!(!stderr.is_empty(), "{}: no error shown", case.name),
        }
    }
    let flood = 200;
    assert_eq!(
        connect_flood(port, &fleet.devices[BAD].device_id, flood).await,
        flood,
        "every flood connect refused"
    );

    // The healthy fleet goes on being acknowledged after the attacks, however
    // fast they were refused.
    let after_attacks = acked_lines(&acked_path).len();
    let kept_going = tokio::time::timeout(Duration::from_secs(60), async {
        while acked_lines(&acked_path).len() < (after_attacks + 40).max(HEALTHY_MINIMUM) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    assert!(kept_going.await.is_ok(), "the healthy fleet stopped being acknowledged");
    stop_tx.send(true).unwrap();
    let report = fleet_run.await.unwrap();
    assert_eq!(report.connection_errors, 0, "the healthy fleet was never disconnected");
    assert_eq!(report.unacked_at_exit, 0);
    wait_for_lake(&data).await;

    // Metrics: one count per case under its reason (the flood adds its own).
    let metrics = pipeline.server.metrics();
    let metric = |name: &str| metrics.get(name).copied().unwrap_or(0.0) as usize;
    let mut expected: BTreeMap<String, usize> = BTreeMap::new();
    for case in &cases {
        let key = match case.expect {
            Expect::ConnectRefused(r) => {
                format!("wenu_edge_connects_total{{outcome=\"refused\",reason=\"{r}\"}}")
            }
            Expect::PublishRefused(r) => {
                format!("wenu_edge_publishes_total{{outcome=\"refused\",reason=\"{r}\"}}")
            }
            Expect::Quarantined(r) => format!("wenu_decrypt_rejected_total{{reason=\"{r}\"}}"),
            Expect::Duplicate => "wenu_decrypt_duplicates_total".to_owned(),
            Expect::Stored => continue,
        };
        *expected.entry(key).or_default() += 1;
    }
    *expected
        .entry("wenu_edge_connects_total{outcome=\"refused\",reason=\"bad_password\"}".into())
        .or_default() += flood / 2;
    // Unknown ids from one address: looked up until the address has spent
    // its failure budget, then refused unseen (the device's own id, from the
    // address of its last good login, is not). How many of the flood's
    // concurrent connects were checked before the first failures were
    // counted depends on timing; every one was refused either way.
    let unknown = "wenu_edge_connects_total{outcome=\"refused\",reason=\"unknown_device\"}";
    let throttled = "wenu_edge_connects_total{outcome=\"refused\",reason=\"throttled\"}";
    let catalogue_unknown = expected.remove(unknown).unwrap_or(0);
    assert_eq!(metric(unknown) + metric(throttled), catalogue_unknown + flood / 2, "{metrics:#?}");
    for (name, count) in &expected {
        assert_eq!(metric(name), *count, "{name}\n{metrics:#?}");
    }

    // Quarantine: one entry per quarantined case, in order, with a detail.
    let quarantined: Vec<&str> = cases
        .iter()
        .filter_map(|c| if let Expect::Quarantined(r) = c.expect { Some(r) } else { None })
        .collect();
    let rows = sql(&data, "SELECT reason, device_id, detail FROM quarantine ORDER BY position");
    assert_eq!(rows.iter().map(|r| r[0].as_str()).collect::<Vec<_>>(), quarantined, "{rows:#?}");
    for row in &rows {
        assert_eq!(row[1], fleet.devices[BAD].device_id, "{row:?}");
        assert!(row[2].len() > 5, "a detail says what was wrong: {row:?}");
    }

    // The bad device's good messages are stored, once; the healthy fleet's
    // acknowledged readings all are, once each.
    let stored =
        sql(&data, "SELECT device_id, seq, count(*) - count(DISTINCT sensor) FROM readings GROUP BY 1, 2");
    let stored: BTreeMap<(String, u64), u64> =
        stored.into_iter().map(|r| ((r[0].clone(), r[1].parse().unwrap()), r[2].parse().unwrap())).collect();
    let me = &fleet.devices[BAD].device_id;
    let mine: BTreeSet<u64> = stored.keys().filter(|(d, _)| d == me).map(|(_, s)| *s).collect();
    assert_eq!(mine, BTreeSet::from([1000, 1012]), "only the good messages of the bad device");
    let acked = acked_lines(&acked_path);
    assert!(acked.len() >= HEALTHY_MINIMUM, "the healthy fleet published throughout: {}", acked.len());
    for (device, seq) in &acked {
        // One row per sensor of the message, none twice.
        assert_eq!(stored.get(&(device.clone(), *seq)), Some(&0), "{device} seq {seq}");
    }
    let acked: BTreeSet<_> = acked.into_iter().collect();
    let healthy_rows = stored.keys().filter(|(d, _)| d != me).count();
    assert_eq!(healthy_rows, acked.len(), "nothing stored that was not acknowledged, nothing twice");
    println!(
        "bad-input catalogue: {} cases + {flood} flood connects; healthy fleet {} messages acknowledged and stored",
        cases.len(),
        acked.len()
    );
}
