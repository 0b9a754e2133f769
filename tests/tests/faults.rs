//! The simulator's fault modes produce what later stages must catch: the edge
//! stores every envelope as received, and decrypting the log shows each fault.

use tokio::sync::watch;
use wenu_core::envelope::open_with_keyring;
use wenu_core::reading::ReadingBatch;
use wenu_firmware_sim::{Fault, SimConfig, run_fleet};
use wenu_tests::{Listen, TestEdge};

/// Runs one faulty device (device 0) and one healthy one, 60 messages each,
/// and returns per device: (undecryptable records, decoded batches).
async fn run_with(fault: Fault) -> Vec<(usize, Vec<ReadingBatch>)> {
    let edge = TestEdge::start(Listen::Tcp, 2).await;
    let config = SimConfig {
        port: edge.port(),
        rate_per_device: 0.0,
        per_device: Some(60),
        faults: vec![fault],
        ..SimConfig::default()
    };
    let (_stop, stop) = watch::channel(false);
    let report = run_fleet(&edge.fleet, config, stop).await.unwrap();
    assert_eq!(report.unacked_at_exit, 0, "the edge stores faulty envelopes too: it never decrypts");
    let records = edge.records().await;
    edge.fleet
        .devices
        .iter()
        .map(|device| {
            let mine: Vec<_> = records.iter().filter(|r| r.device_id == device.device_id).collect();
            let opened: Vec<_> = mine
                .iter()
                .filter_map(|r| open_with_keyring(&r.device_id, &r.payload, &edge.keyring).ok())
                .collect();
            let batches = opened.iter().map(|p| ReadingBatch::from_json(p).unwrap()).collect();
            (mine.len() - opened.len(), batches)
        })
        .collect()
}

fn seqs(batches: &[ReadingBatch]) -> Vec<u64> {
    batches.iter().map(|b| b.seq).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_fault_shows_in_the_log_and_healthy_devices_are_untouched() {
    for fault in [Fault::Stuck, Fault::Spike, Fault::Gap, Fault::Replay, Fault::Tamper, Fault::WrongKey] {
        let devices = run_with(fault).await;
        let (healthy_bad, healthy) = &devices[1];
        assert_eq!(*healthy_bad, 0, "{fault:?}");
        assert_eq!(seqs(healthy), (1..=60).collect::<Vec<_>>(), "{fault:?}");

        let (bad, faulty) = &devices[0];
        let faulty_seqs = seqs(faulty);
        match fault {
            Fault::Stuck => {
                let values: Vec<f64> = faulty.iter().map(|b| b.readings[0].value).collect();
                assert!(values.windows(2).all(|w| w[0] == w[1]), "a stuck sensor repeats itself");
            }
            Fault::Spike => {
                let temps: Vec<f64> = faulty.iter().map(|b| b.readings[0].value).collect();
                assert!(temps.iter().any(|t| *t > 500.0), "at least one spike in 60 readings: {temps:?}");
            }
            Fault::Gap => {
                assert!(faulty_seqs.windows(2).all(|w| w[1] > w[0]));
                assert!(faulty_seqs.windows(2).any(|w| w[1] > w[0] + 1), "sequence gaps: {faulty_seqs:?}");
            }
            Fault::Replay => {
                let mut unique = faulty_seqs.clone();
                unique.dedup();
                assert!(unique.len() < faulty_seqs.len(), "some envelope arrives twice: {faulty_seqs:?}");
            }
            Fault::Tamper => assert!(*bad > 0 && !faulty.is_empty(), "some, not all, envelopes altered"),
            Fault::WrongKey => assert_eq!((*bad, faulty.len()), (60, 0), "nothing decrypts"),
        }
    }
}
