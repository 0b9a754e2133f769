//! Generated bad input for the decoder: mutated envelopes and arbitrary
//! plaintexts sealed with the right key. Whatever arrives, the decoder
//! answers with an outcome and never panics; nothing altered is accepted,
//! and what is accepted satisfies every documented check.
//!
//! CI runs a few thousand cases per property; the release run reported in
//! `docs/benchmarks.md` runs a million each:
//! `WENU_GENERATED_CASES=1000000 cargo test --release -p wenu-decrypt --test generated_inputs`.

use bytes::Bytes;
use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::{Value, json};
use wenu_core::envelope::seal;
use wenu_core::keyring::Keyring;
use wenu_core::stream::{Position, Record};
use wenu_decrypt::{DecodeLimits, Decoder, DeviceEntry, Directory, Outcome, RejectReason, SequenceTracker};

const NOW: i64 = 1_800_000_000_000;
const CREATED: i64 = NOW - 86_400_000;

fn cases() -> u32 {
    std::env::var("WENU_GENERATED_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(3_000)
}

struct Fixture {
    keyring: Keyring,
    directory: Directory,
}

impl Fixture {
    fn new() -> Fixture {
        let mut keyring = Keyring::default();
        keyring.add_key("dev-1");
        let entry = DeviceEntry {
            company: "acme".into(),
            created_at: CREATED,
            enabled: true,
            site: None,
            seq_reset_at: None,
        };
        Fixture { keyring, directory: Directory::new([("dev-1".to_string(), entry)]) }
    }

    fn decode(&self, payload: Vec<u8>) -> Outcome {
        let mut decoder = Decoder::new(
            self.keyring.clone(),
            self.directory.clone(),
            DecodeLimits::default(),
            SequenceTracker::default(),
        );
        let record = Record {
            position: Position::new(1),
            device_id: "dev-1".into(),
            topic: "wenu/dev-1/telemetry".into(),
            received_at: NOW,
            payload: Bytes::from(payload),
        };
        decoder.decode_here(std::slice::from_ref(&record)).pop().expect("one outcome")
    }

    fn seal(&self, plaintext: &[u8], nonce: [u8; 12]) -> Vec<u8> {
        let key = self.keyring.current_key("dev-1").expect("provisioned");
        seal("dev-1", key.id, &key.key, nonce, plaintext)
    }
}

/// What can happen to an envelope between the device and the decoder.
#[derive(Debug, Clone)]
enum Mutation {
    FlipBit(Index),
    Truncate(Index),
    Append(Vec<u8>),
    Overwrite(Index, u8),
    Version(u8),
    KeyId(u32),
    Nonce([u8; 12]),
    Splice(Index, Vec<u8>),
    Replace(Vec<u8>),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let bytes = |max| proptest::collection::vec(any::<u8>(), 0..max);
    prop_oneof![
        any::<Index>().prop_map(Mutation::FlipBit),
        any::<Index>().prop_map(Mutation::Truncate),
        bytes(64).prop_map(Mutation::Append),
        (any::<Index>(), any::<u8>()).prop_map(|(at, b)| Mutation::Overwrite(at, b)),
        any::<u8>().prop_map(Mutation::Version),
        any::<u32>().prop_map(Mutation::KeyId),
        any::<[u8; 12]>().prop_map(Mutation::Nonce),
        (any::<Index>(), bytes(32)).prop_map(|(at, b)| Mutation::Splice(at, b)),
        bytes(400).prop_map(Mutation::Replace),
    ]
}

fn apply(mutation: &Mutation, mut envelope: Vec<u8>) -> Vec<u8> {
    match mutation {
        Mutation::FlipBit(at) => {
            let bit = at.index(envelope.len() * 8);
            envelope[bit / 8] ^= 1 << (bit % 8);
        }
        Mutation::Truncate(at) => envelope.truncate(at.index(envelope.len())),
        Mutation::Append(bytes) => envelope.extend_from_slice(bytes),
        Mutation::Overwrite(at, byte) => {
            let at = at.index(envelope.len());
            envelope[at] = *byte;
        }
        Mutation::Version(v) => envelope[0] = *v,
        Mutation::KeyId(id) => envelope[1..5].copy_from_slice(&id.to_be_bytes()),
        Mutation::Nonce(nonce) => envelope[5..17].copy_from_slice(nonce),
        Mutation::Splice(at, bytes) => {
            let at = at.index(envelope.len());
            envelope.splice(at..at, bytes.iter().copied());
        }
        Mutation::Replace(bytes) => envelope = bytes.clone(),
    }
    envelope
}

/// A plausible reading field value, or something a broken firmware sends.
fn field() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        (NOW - 2 * 86_400_000..NOW + 86_400_000).prop_map(Value::from),
        Just(Value::Null),
        Just(json!("NaN")),
        Just(json!("Infinity")),
        Just(json!("-inf")),
        Just(json!(1e308)),
        Just(json!(-0.0)),
        "[a-z0-9 -]{0,12}".prop_map(Value::from),
        any::<bool>().prop_map(Value::from),
        Just(json!([])),
        Just(json!({})),
    ]
}

/// Mostly a good value, now and then a bad one, now and then none at all.
fn mostly(good: BoxedStrategy<Value>) -> BoxedStrategy<Option<Value>> {
    prop_oneof![18 => good.prop_map(Some), 1 => field().prop_map(Some), 1 => Just(None)].boxed()
}

fn object(fields: Vec<(&'static str, Option<Value>)>, extra: bool) -> Value {
    let mut object: serde_json::Map<String, Value> =
        fields.into_iter().filter_map(|(k, v)| Some((k.to_owned(), v?))).collect();
    if extra {
        object.insert("firmware".into(), json!("1.2.3"));
    }
    Value::Object(object)
}

/// A reading as firmware sends it, or with one field broken or missing.
fn reading() -> impl Strategy<Value = Value> {
    let name = || "[a-z][a-z0-9-]{0,10}".prop_map(Value::from).boxed();
    let value = prop_oneof![
        8 => (-1e6..1e6f64).prop_map(Value::from),
        1 => prop_oneof![Just(Value::Null), Just(json!("NaN")), Just(json!("Infinity")), Just(json!("-inf"))],
    ];
    (mostly(name()), mostly(name()), mostly(value.boxed()), mostly(name()), proptest::bool::weighted(0.1))
        .prop_map(|(sensor, kind, value, unit, extra)| {
            object(vec![("sensor", sensor), ("kind", kind), ("value", value), ("unit", unit)], extra)
        })
}

/// A reading batch, mostly well formed, with times around the device's life.
fn batch() -> impl Strategy<Value = Value> {
    let seq = (1..1_000_000u64).prop_map(Value::from).boxed();
    let ts = (CREATED - 3 * 3_600_000..NOW + 3_600_000).prop_map(Value::from).boxed();
    let readings = proptest::collection::vec(reading(), 0..5).prop_map(Value::Array).boxed();
    (mostly(seq), mostly(ts), mostly(readings), proptest::bool::weighted(0.1)).prop_map(
        |(seq, ts, readings, extra)| object(vec![("seq", seq), ("ts", ts), ("readings", readings)], extra),
    )
}

/// Arbitrary JSON, JSON shaped like a reading batch, or raw bytes.
fn plaintext() -> impl Strategy<Value = Vec<u8>> {
    let any_json = field().prop_recursive(3, 32, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map("[a-z]{1,8}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    });
    prop_oneof![
        1 => any_json.prop_map(|v| serde_json::to_vec(&v).expect("serializes")),
        6 => batch().prop_map(|v| serde_json::to_vec(&v).expect("serializes")),
        1 => proptest::collection::vec(any::<u8>(), 0..300),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn generated_envelopes_are_rejected_with_a_reason(
        plaintext in plaintext(), nonce in any::<[u8; 12]>(), mutation in mutation()
    ) {
        let f = Fixture::new();
        let sealed = f.seal(&plaintext, nonce);
        let mutated = apply(&mutation, sealed.clone());
        if mutated == sealed {
            return Ok(()); // a mutation that changed nothing (the same byte written back)
        }
        match f.decode(mutated) {
            Outcome::Rejected(rejection) => {
                prop_assert!(
                    matches!(
                        rejection.reason,
                        RejectReason::Tampered
                            | RejectReason::Truncated
                            | RejectReason::UnsupportedVersion
                            | RejectReason::UnknownKey
                    ),
                    "{mutation:?}: {rejection:?}"
                );
                prop_assert!(!rejection.detail.is_empty());
            }
            other => prop_assert!(false, "{mutation:?} was not rejected: {other:?}"),
        }
    }

    #[test]
    fn generated_plaintexts_are_decoded_or_rejected(plaintext in plaintext(), nonce in any::<[u8; 12]>()) {
        let f = Fixture::new();
        match f.decode(f.seal(&plaintext, nonce)) {
            Outcome::Accepted(message) => {
                prop_assert!(message.readings.iter().all(|r| r.value.is_finite()));
                prop_assert!(message.ts <= NOW + DecodeLimits::default().max_future_ms);
                prop_assert!(message.ts >= CREATED - DecodeLimits::default().max_before_created_ms);
            }
            Outcome::Rejected(rejection) => {
                prop_assert!(
                    matches!(
                        rejection.reason,
                        RejectReason::MalformedPlaintext
                            | RejectReason::NonFiniteValue
                            | RejectReason::TimestampInFuture
                            | RejectReason::TimestampBeforeDevice
                    ),
                    "{rejection:?}"
                );
                prop_assert!(!rejection.detail.is_empty());
            }
            Outcome::Duplicate { .. } => prop_assert!(false, "a first message cannot be a duplicate"),
        }
    }
}

/// The generators reach every branch they are meant to: some plaintexts are
/// accepted, and each plaintext check rejects some.
#[test]
fn generated_plaintexts_cover_acceptance_and_every_plaintext_check() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    use std::collections::BTreeMap;

    let f = Fixture::new();
    let mut runner = TestRunner::deterministic();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for n in 0..20_000u64 {
        let plaintext = plaintext().new_tree(&mut runner).expect("a value").current();
        let mut nonce = [0u8; 12];
        nonce[4..].copy_from_slice(&n.to_be_bytes());
        let label = match f.decode(f.seal(&plaintext, nonce)) {
            Outcome::Accepted(_) => "accepted".to_owned(),
            Outcome::Rejected(r) => r.reason.label().to_owned(),
            Outcome::Duplicate { .. } => "duplicate".to_owned(),
        };
        *seen.entry(label).or_default() += 1;
    }
    for expected in [
        "accepted",
        "malformed_plaintext",
        "non_finite_value",
        "timestamp_in_future",
        "timestamp_before_device",
    ] {
        assert!(seen.get(expected).is_some_and(|&n| n >= 5), "{expected} too rare: {seen:?}");
    }
}
