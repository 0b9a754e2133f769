//! Enrich logic on fixtures: units, calibration, attributes, valid range,
//! rejections, and grouping into jobs.

use wenu_core::catalog::{CompanySettings, SensorSpec, Site, StatsRetentionDays};
use wenu_core::reading::Reading;
use wenu_decrypt::DecodedMessage;
use wenu_enrich::normalise::MAX_POINTS_PER_JOB;
use wenu_enrich::{Catalog, DevicePlacement, enrich_batch, normalise};
use wenu_stats::{Point, Retention, SeriesKey};

fn reading(sensor: &str, value: f64, unit: &str) -> Reading {
    Reading { sensor: sensor.into(), kind: "x".into(), value, unit: unit.into() }
}

fn message(device: &str, seq: u64, readings: Vec<Reading>) -> DecodedMessage {
    DecodedMessage {
        position: seq.into(),
        device_id: device.into(),
        company: "acme".into(),
        site: None,
        seq,
        ts: 1_700_000_000_000 + seq as i64 * 1000,
        received_at: 1_700_000_000_000,
        key_id: 1,
        readings,
    }
}

fn catalog() -> Catalog {
    let mut temp = SensorSpec::new("dev-1", "temp-1", "temperature", "degC");
    temp.scale = 2.0;
    temp.offset = 1.0;
    temp.valid_min = Some(-40.0);
    temp.valid_max = Some(85.0);
    Catalog::new(
        7,
        [
            DevicePlacement { device: "dev-1".into(), company: "acme".into(), site: Some("north".into()) },
            DevicePlacement { device: "dev-2".into(), company: "acme".into(), site: None },
        ],
        [Site { company: "acme".into(), id: "north".into(), name: "North plant".into() }],
        [
            temp,
            SensorSpec::new("dev-1", "pres-1", "pressure", "hPa"),
            SensorSpec::new("dev-2", "temp-1", "temperature", "degC"),
        ],
        [CompanySettings {
            company: "acme".into(),
            stats_retention: StatsRetentionDays { minute: Some(1), hour: None, day: None },
        }],
    )
}

#[test]
fn converts_calibrates_and_attributes() {
    let catalog = catalog();
    let msg = message("dev-1", 1, vec![reading("temp-1", 50.0, "degF"), reading("pres-1", 101.3, "kPa")]);
    let temp = normalise(&msg, &msg.readings[0], &catalog).unwrap();
    // 50 °F = 10 °C; × 2 + 1 = 21.
    assert!((temp.value - 21.0).abs() < 1e-9, "{}", temp.value);
    assert_eq!((temp.unit, temp.raw_unit, temp.raw_value), ("degC", "degF", 50.0));
    assert_eq!((temp.company, temp.site, temp.kind), ("acme", Some("north"), "temperature"));
    assert!(!temp.out_of_range);
    let pressure = normalise(&msg, &msg.readings[1], &catalog).unwrap();
    assert!((pressure.value - 1013.0).abs() < 1e-9);

    let unplaced = message("dev-2", 1, vec![reading("temp-1", 20.0, "degC")]);
    assert_eq!(normalise(&unplaced, &unplaced.readings[0], &catalog).unwrap().site, None);
}

#[test]
fn flags_out_of_range_and_rejects_unknowns() {
    let catalog = catalog();
    let msg = message(
        "dev-1",
        1,
        vec![
            reading("temp-1", 50.0, "degC"), // 101 > 85
            reading("hum-1", 40.0, "%RH"),   // not in the registry
            reading("pres-1", 20.0, "degC"), // not a pressure
        ],
    );
    assert!(normalise(&msg, &msg.readings[0], &catalog).unwrap().out_of_range);
    assert_eq!(normalise(&msg, &msg.readings[1], &catalog).unwrap_err().reason(), "unknown_sensor");
    assert_eq!(normalise(&msg, &msg.readings[2], &catalog).unwrap_err().reason(), "unit_mismatch");

    let batch = enrich_batch(&[msg], &catalog);
    assert!(batch.jobs.is_empty());
    assert_eq!(batch.normalised, 0);
    let reasons: Vec<_> = batch.quarantined.iter().map(|q| (q.reason, q.sensor.as_str())).collect();
    assert_eq!(
        reasons,
        [("out_of_range", "temp-1"), ("unknown_sensor", "hum-1"), ("unit_mismatch", "pres-1")]
    );
    assert_eq!(batch.quarantined[0].value, 50.0, "quarantine keeps what the device sent");
    assert!(batch.quarantined[2].detail.contains("hPa"));

    // A device the catalog doesn't know has no known sensors either.
    let stranger = message("dev-9", 1, vec![reading("temp-1", 1.0, "degC")]);
    assert_eq!(enrich_batch(&[stranger], &catalog).quarantined[0].reason, "unknown_sensor");
}

#[test]
fn groups_readings_into_one_job_per_series() {
    let catalog = catalog();
    let messages: Vec<_> = (1..=3)
        .flat_map(|seq| {
            [
                message(
                    "dev-1",
                    seq,
                    vec![reading("temp-1", 10.0, "degC"), reading("pres-1", 1000.0, "hPa")],
                ),
                message("dev-2", seq, vec![reading("temp-1", 20.0 + seq as f64, "degC")]),
            ]
        })
        .collect();
    let batch = enrich_batch(&messages, &catalog);
    assert_eq!(batch.normalised, 9);
    let series: Vec<_> =
        batch.jobs.iter().map(|j| (j.series.device.as_str(), j.series.sensor.as_str())).collect();
    assert_eq!(series, [("dev-1", "pres-1"), ("dev-1", "temp-1"), ("dev-2", "temp-1")]);
    let dev2 = &batch.jobs[2];
    assert_eq!(
        dev2.series,
        SeriesKey { company: "acme".into(), device: "dev-2".into(), sensor: "temp-1".into() }
    );
    assert_eq!(dev2.points[0], Point { seq: 1, ts: 1_700_000_001_000, value: 21.0 });
    assert_eq!(dev2.points.len(), 3);
    assert_eq!(dev2.retention, Retention::from_days(Some(1), None, None));
    assert_eq!(dev2.retention.minute.as_secs(), 86_400);
    assert_eq!(dev2.retention.hour, Retention::default().hour);
}

#[test]
fn splits_long_series_into_queue_sized_jobs() {
    let catalog = catalog();
    let count = MAX_POINTS_PER_JOB as u64 * 2 + 5;
    let messages: Vec<_> =
        (1..=count).map(|seq| message("dev-2", seq, vec![reading("temp-1", 1.0, "degC")])).collect();
    let batch = enrich_batch(&messages, &catalog);
    assert_eq!(
        batch.jobs.iter().map(|j| j.points.len()).collect::<Vec<_>>(),
        [MAX_POINTS_PER_JOB, MAX_POINTS_PER_JOB, 5]
    );
    assert!(batch.jobs.iter().all(|j| j.to_bytes().len() < 256 * 1024));
}
