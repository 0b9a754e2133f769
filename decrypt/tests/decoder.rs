//! The decoder against envelopes sealed the way devices seal them: every
//! rejection reason, duplicates, and decisions that survive a restore.

use bytes::Bytes;
use proptest::prelude::*;
use wenu_core::envelope::seal;
use wenu_core::keyring::Keyring;
use wenu_core::reading::{Reading, ReadingBatch};
use wenu_core::stream::{Position, Record};
use wenu_decrypt::{DecodeLimits, Decoder, DeviceEntry, Directory, Outcome, RejectReason, SequenceTracker};

const NOW: i64 = 1_800_000_000_000;
const CREATED: i64 = NOW - 86_400_000;

struct Fixture {
    keyring: Keyring,
    directory: Directory,
    nonce: u64,
}

impl Fixture {
    fn new() -> Self {
        let mut keyring = Keyring::default();
        keyring.add_key("dev-1");
        keyring.add_key("dev-2");
        keyring.add_key("dev-off");
        let entry = |enabled| DeviceEntry {
            company: "acme".into(),
            created_at: CREATED,
            enabled,
            site: None,
            seq_reset_at: None,
        };
        let directory = Directory::new([
            ("dev-1".to_string(), entry(true)),
            ("dev-2".to_string(), entry(true)),
            ("dev-off".to_string(), entry(false)),
        ]);
        Fixture { keyring, directory, nonce: 0 }
    }

    fn decoder(&self) -> Decoder {
        Decoder::new(
            self.keyring.clone(),
            self.directory.clone(),
            DecodeLimits::default(),
            SequenceTracker::default(),
        )
    }

    fn seal_plaintext(&mut self, device_id: &str, plaintext: &[u8]) -> Bytes {
        self.nonce += 1;
        let key = self.keyring.current_key(device_id).unwrap().clone();
        let mut nonce = [0u8; 12];
        nonce[4..].copy_from_slice(&self.nonce.to_be_bytes());
        Bytes::from(seal(device_id, key.id, &key.key, nonce, plaintext))
    }

    fn sealed(&mut self, device_id: &str, seq: u64, ts: i64, value: f64) -> Bytes {
        let batch = ReadingBatch {
            seq,
            ts,
            readings: vec![Reading {
                sensor: "temp-1".into(),
                kind: "temperature".into(),
                value,
                unit: "degC".into(),
            }],
        };
        self.seal_plaintext(device_id, &batch.to_json())
    }
}

fn record(position: u64, device_id: &str, payload: Bytes) -> Record {
    Record {
        position: Position::new(position),
        device_id: device_id.into(),
        topic: format!("wenu/{device_id}/telemetry"),
        received_at: NOW,
        payload,
    }
}

fn reason(outcome: Outcome) -> RejectReason {
    match outcome {
        Outcome::Rejected(r) => r.reason,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

#[test]
fn a_good_record_becomes_attributed_readings() {
    let mut f = Fixture::new();
    let mut decoder = f.decoder();
    let payload = f.sealed("dev-1", 7, NOW - 5, 21.5);
    let Outcome::Accepted(m) = decoder.decode(&record(42, "dev-1", payload)) else { panic!() };
    assert_eq!(
        (m.position, m.device_id.as_str(), m.company.as_str(), m.seq),
        (Position::new(42), "dev-1", "acme", 7)
    );
    assert_eq!((m.ts, m.received_at, m.key_id), (NOW - 5, NOW, 1));
    assert_eq!(m.readings.len(), 1);
    assert_eq!((m.readings[0].sensor.as_str(), m.readings[0].value), ("temp-1", 21.5));
}

#[test]
fn every_rejection_reason() {
    let mut f = Fixture::new();
    let mut decoder = f.decoder();
    let good = f.sealed("dev-1", 1, NOW, 1.0);

    let mut tampered = good.to_vec();
    *tampered.last_mut().unwrap() ^= 1;
    let mut other_version = good.to_vec();
    other_version[0] = 9;
    let mut unknown_key = good.to_vec();
    unknown_key[1..5].copy_from_slice(&77u32.to_be_bytes());

    let cases: Vec<(Record, RejectReason)> = vec![
        (record(1, "dev-1", Bytes::from(tampered)), RejectReason::Tampered),
        (record(2, "dev-1", good.slice(..10)), RejectReason::Truncated),
        (record(3, "dev-1", Bytes::from(other_version)), RejectReason::UnsupportedVersion),
        (record(4, "dev-1", Bytes::from(unknown_key)), RejectReason::UnknownKey),
        (record(5, "ghost", good.clone()), RejectReason::UnknownDevice),
        (record(6, "dev-off", f.sealed("dev-off", 1, NOW, 1.0)), RejectReason::DisabledDevice),
        (record(7, "dev-2", good.clone()), RejectReason::Tampered),
        (record(8, "dev-1", f.seal_plaintext("dev-1", b"{not json")), RejectReason::MalformedPlaintext),
        (record(9, "dev-1", f.seal_plaintext("dev-1", br#"{"seq":1}"#)), RejectReason::MalformedPlaintext),
        (record(10, "dev-1", f.sealed("dev-1", 2, NOW, f64::INFINITY)), RejectReason::NonFiniteValue),
        (record(11, "dev-1", f.sealed("dev-1", 3, NOW + 3_600_000, 1.0)), RejectReason::TimestampInFuture),
        (
            record(12, "dev-1", f.sealed("dev-1", 4, CREATED - 7_200_000, 1.0)),
            RejectReason::TimestampBeforeDevice,
        ),
    ];
    for (record, expected) in cases {
        let position = record.position;
        assert_eq!(reason(decoder.decode(&record)), expected, "record {position:?}");
    }

    // A key retired (at NOW) while its messages were still on their way: what
    // arrived before the retirement opens, what arrives from then on does not.
    let mut keyring = f.keyring.clone();
    keyring.retire("dev-1", 1, NOW).unwrap();
    decoder.refresh(keyring, f.directory.clone());
    let mut early = record(13, "dev-1", f.sealed("dev-1", 5, NOW - 1, 1.0));
    early.received_at = NOW - 1;
    assert!(matches!(decoder.decode(&early), Outcome::Accepted(_)));
    assert_eq!(reason(decoder.decode(&record(14, "dev-1", good))), RejectReason::RetiredKey);
}

#[test]
fn duplicates_are_dropped_and_old_seqs_are_replays() {
    let mut f = Fixture::new();
    let mut decoder = f.decoder();
    let first = f.sealed("dev-1", 1, NOW, 1.0);
    assert!(matches!(decoder.decode(&record(1, "dev-1", first.clone())), Outcome::Accepted(_)));
    assert!(matches!(decoder.decode(&record(2, "dev-1", first.clone())), Outcome::Duplicate { seq: 1, .. }));
    let far = f.sealed("dev-1", 1000, NOW, 1.0);
    assert!(matches!(decoder.decode(&record(3, "dev-1", far)), Outcome::Accepted(_)));
    assert_eq!(reason(decoder.decode(&record(4, "dev-1", first))), RejectReason::ReplayedSeq);
    let c = decoder.sequences().completeness("dev-1").unwrap();
    assert_eq!((c.received, c.expected, c.duplicates, c.replayed), (2, 1000, 1, 1));
}

#[test]
fn a_rejected_record_does_not_mark_its_seq_as_seen() {
    let mut f = Fixture::new();
    let mut decoder = f.decoder();
    let future = f.sealed("dev-1", 5, NOW + 3_600_000, 1.0);
    assert_eq!(reason(decoder.decode(&record(1, "dev-1", future))), RejectReason::TimestampInFuture);
    let fixed = f.sealed("dev-1", 5, NOW, 1.0);
    assert!(matches!(decoder.decode(&record(2, "dev-1", fixed)), Outcome::Accepted(_)));
}

#[test]
fn restored_state_makes_the_same_decisions() {
    let mut f = Fixture::new();
    let records: Vec<Record> =
        (0..50u64).map(|i| record(i, "dev-1", f.sealed("dev-1", (i * 7) % 40, NOW, i as f64))).collect();
    let mut decoder = f.decoder();
    let (head, tail) = records.split_at(20);
    head.iter().for_each(|r| {
        decoder.decode(r);
    });
    let saved = decoder.sequences().clone();
    let first_run: Vec<_> = tail.iter().map(|r| decoder.decode(r)).collect();

    let mut restarted = f.decoder();
    restarted.restore_sequences(saved);
    let second_run: Vec<_> = tail.iter().map(|r| restarted.decode(r)).collect();
    assert_eq!(first_run, second_run);
}

#[test]
fn a_batch_decodes_as_its_records_one_by_one() {
    let mut f = Fixture::new();
    // Duplicates, replays and rejections interleaved, in one batch.
    let mut records: Vec<Record> = (0..300u64)
        .map(|i| {
            let device = if i % 3 == 0 { "dev-2" } else { "dev-1" };
            let seq = if i % 10 == 9 { i / 2 } else { i };
            record(i, device, f.sealed(device, seq, NOW, i as f64))
        })
        .collect();
    records[17].payload = records[17].payload.slice(..20);
    records[40].device_id = "ghost".into();
    let one_by_one: Vec<_> = {
        let mut decoder = f.decoder();
        records.iter().map(|r| decoder.decode(r)).collect()
    };
    let batched = f.decoder().decode_all(&records);
    assert_eq!(batched, one_by_one);
    assert!(batched.iter().any(|o| matches!(o, Outcome::Duplicate { .. })));
    assert!(batched.iter().any(|o| matches!(o, Outcome::Rejected(_))));
}

proptest! {
    /// Arbitrary bytes from a known device never panic and are always rejected.
    #[test]
    fn random_payloads_are_rejected_not_panics(payload in proptest::collection::vec(any::<u8>(), 0..200)) {
        let f = Fixture::new();
        let mut decoder = f.decoder();
        let outcome = decoder.decode(&record(1, "dev-1", Bytes::from(payload)));
        prop_assert!(matches!(outcome, Outcome::Rejected(_)));
    }
}
