//! A device whose sequence counter went back (a factory reset) is
//! quarantined as replaying old messages until an operator resets its
//! sequence window in the registry; from then on its messages are new.

mod support;

use support::{ok, sql_rows, start_pipeline, wait_for_lake, wenu};
use tokio::sync::watch;
use wenu_core::fleet::Fleet;
use wenu_firmware_sim::{SimConfig, run_fleet};

async fn send(fleet: &Fleet, port: u16, first_seq: u64, count: u64) {
    let sim = SimConfig {
        port,
        rate_per_device: 0.0,
        per_device: Some(count),
        window: 8,
        first_seq,
        ..SimConfig::default()
    };
    let (_stop, stop) = watch::channel(false);
    assert_eq!(run_fleet(fleet, sim, stop).await.unwrap().unacked_at_exit, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_sequence_reset_a_device_that_restarted_its_counter_is_accepted() {
    let pipeline = start_pipeline(1);
    let (data, port) = (&pipeline.data, pipeline.port);
    let device = pipeline.fleet.devices[0].device_id.clone();
    // More than the sequence window, so numbers from 1 again are replays.
    send(&pipeline.fleet, port, 1, 300).await;
    wait_for_lake(data).await;

    // The device forgets its counter and starts again from 1.
    send(&pipeline.fleet, port, 1, 10).await;
    wait_for_lake(data).await;
    let quarantined = sql_rows(data, "SELECT count(*) AS n FROM quarantine WHERE reason = 'replayed_seq'");
    assert_eq!(quarantined[0]["n"], 10, "before the reset: replays");

    ok(wenu(data).args(["devices", "reset-sequence", &device]).output().unwrap());
    send(&pipeline.fleet, port, 1, 10).await;
    wait_for_lake(data).await;
    let quarantined = sql_rows(data, "SELECT count(*) AS n FROM quarantine WHERE reason = 'replayed_seq'");
    assert_eq!(quarantined[0]["n"], 10, "after the reset nothing more is quarantined");
    let messages =
        sql_rows(data, "SELECT count(DISTINCT (seq, received_at)) AS n FROM readings WHERE seq <= 10");
    assert_eq!(messages[0]["n"], 20, "seq 1 to 10 from the first run and again after the reset");
    let listed = ok(wenu(data).args(["devices", "list", "--json"]).output().unwrap());
    assert!(listed.contains("seq_reset_at"), "{listed}");
    pipeline.server.terminate();
}
