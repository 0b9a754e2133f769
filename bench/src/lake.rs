//! `wenu bench lake`: decrypt + parse + Parquet (zstd) rows per second over a
//! prepared stream, against DuckDB turning the same plaintext (no
//! decryption) into Parquet; also raw AES-GCM decryption on one core and the
//! peak RSS of the process.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use bytes::Bytes;
use clap::Args;
use indicatif::ProgressBar;
use object_store::local::LocalFileSystem;
use serde_json::json;
use wenu_core::envelope::{Opener, seal};
use wenu_core::keyring::Keyring;
use wenu_core::reading::{Reading, ReadingBatch};
use wenu_core::stream::{NewRecord, Record, StartAt, Stream};
use wenu_decrypt::{DecodeLimits, DeviceEntry, Directory, FixedKeys};
use wenu_lake::LakeStage;
use wenu_local::{SqliteStream, StreamOptions};
use wenu_runtime::BatchLimits;

use crate::process::{Scratch, own_memory};
use wenu_core::clock::now_ms;

#[derive(Args)]
pub struct LakeArgs {
    /// Readings in the prepared stream.
    #[arg(long, default_value_t = 10_000_000)]
    readings: u64,
    /// Readings per message (the sensors of one device).
    #[arg(long, default_value_t = 4)]
    readings_per_message: u64,
    #[arg(long, default_value_t = 1_000)]
    devices: u64,
    /// Batch size of the lake, as `lake.buffer_mib`.
    #[arg(long, default_value_t = 16)]
    buffer_mib: usize,
    /// Python with the `duckdb` module, for the baseline (the test command's venv).
    #[arg(long, env = "DUCKDB_PYTHON")]
    python: Option<String>,
    /// Skip the DuckDB baseline.
    #[arg(long)]
    no_baseline: bool,
}

pub async fn run(args: LakeArgs) -> anyhow::Result<serde_json::Value> {
    anyhow::ensure!(args.readings_per_message > 0 && args.devices > 0, "counts must be positive");
    let scratch = Scratch::new("lake")?;
    let scratch = scratch.path();
    let (keyring, directory) = fleet(args.devices);
    let stream = SqliteStream::open(&scratch.join("stream.db"), StreamOptions::default())?;
    let plain_path = scratch.join("plain.jsonl");
    let messages = args.readings.div_ceil(args.readings_per_message);
    let envelope_bytes = prepare(&stream, &keyring, &plain_path, messages, &args).await?;

    let aes_mb_per_sec = raw_decrypt_rate(&stream, &keyring).await?;

    eprintln!("lake: decrypt, parse, Parquet…");
    std::fs::create_dir_all(scratch.join("lake"))?;
    let objects = Arc::new(LocalFileSystem::new_with_prefix(scratch.join("lake"))?);
    let mut stage =
        LakeStage::new(objects, Box::new(FixedKeys::new(keyring, directory)), DecodeLimits::default());
    let limits = BatchLimits::new(args.buffer_mib * 1024 * 1024, std::time::Duration::ZERO)?;
    let started = Instant::now();
    let (mut rows, mut next) = (0u64, StartAt::Oldest);
    loop {
        let batch = read_batch(&stream, &mut next, limits.max_bytes).await?;
        if batch.is_empty() {
            break;
        }
        rows += stage.write_batch(&batch).await?.rows;
    }
    let lake_secs = started.elapsed().as_secs_f64();
    let peak_rss_mib = own_memory()?.peak_rss_mib.round();
    eprintln!("lake: {rows} rows in {lake_secs:.1} s");

    let duckdb = if args.no_baseline { None } else { Some(duckdb_baseline(&args, &plain_path, scratch)?) };
    let duck_rows_per_sec = duckdb.as_ref().and_then(|d| d["rows_per_sec"].as_f64());
    let wenu_rows_per_sec = rows as f64 / lake_secs;
    let report = json!({
        "readings": rows,
        "messages": messages,
        "envelope_mib": envelope_bytes as f64 / 1048576.0,
        "wenu": {"secs": lake_secs, "rows_per_sec": wenu_rows_per_sec.round(), "peak_rss_mib": peak_rss_mib},
        "aes_gcm_decrypt_mb_per_sec_one_core": aes_mb_per_sec.round(),
        "duckdb": duckdb,
        "wenu_vs_duckdb": duck_rows_per_sec.map(|d| wenu_rows_per_sec / d),
    });
    Ok(report)
}

pub(crate) fn fleet(devices: u64) -> (Keyring, Directory) {
    let mut keyring = Keyring::default();
    let created_at = now_ms() - 86_400_000;
    let entries = (0..devices).map(|d| {
        let id = format!("bench-{d:05}");
        keyring.add_key(&id);
        (
            id,
            DeviceEntry {
                company: "bench".into(),
                created_at,
                enabled: true,
                site: None,
                seq_reset_at: None,
            },
        )
    });
    let directory = Directory::new(entries.collect::<Vec<_>>());
    (keyring, directory)
}

/// Seals `messages` envelopes into the stream and writes their plaintext, one
/// JSON object per line, for the baseline. Returns the envelope bytes.
async fn prepare(
    stream: &SqliteStream,
    keyring: &Keyring,
    plain_path: &Path,
    messages: u64,
    args: &LakeArgs,
) -> anyhow::Result<u64> {
    eprintln!("preparing {messages} messages of {} readings…", args.readings_per_message);
    let progress = ProgressBar::new(messages);
    let mut plain = std::io::BufWriter::new(std::fs::File::create(plain_path)?);
    let (start, mut bytes) = (now_ms() - 3_600_000, 0u64);
    let mut i = 0;
    while i < messages {
        let chunk: Vec<NewRecord> = (i..messages.min(i + 10_000))
            .map(|m| {
                let ts = start + (m as i64 * 3_600_000) / messages as i64;
                let (device, seq) = (m % args.devices, m / args.devices + 1);
                let (plaintext, record) =
                    bench_message(keyring, m, device, seq, ts, args.readings_per_message);
                plain.write_all(&plaintext).and_then(|()| plain.write_all(b"\n")).expect("plaintext file");
                bytes += record.payload.len() as u64;
                record
            })
            .collect();
        let n = chunk.len() as u64;
        stream.append(chunk).await?;
        progress.inc(n);
        i += n;
    }
    plain.flush()?;
    progress.finish_and_clear();
    Ok(bytes)
}

/// The `m`-th message of a bench stream: device `bench-{device}`'s message
/// `seq` with `sensors` readings `s-0`, `s-1`, … Returns its plaintext and
/// the record of its envelope (a nonce unique per message).
pub(crate) fn bench_message(
    keyring: &Keyring,
    m: u64,
    device: u64,
    seq: u64,
    ts: i64,
    sensors: u64,
) -> (Vec<u8>, NewRecord) {
    let device_id = format!("bench-{device:05}");
    let key = keyring.current_key(&device_id).expect("provisioned");
    let readings = (0..sensors)
        .map(|s| Reading {
            sensor: format!("s-{s}").into(),
            kind: "temperature".into(),
            value: 20.0 + ((m * 7 + s) % 1000) as f64 / 100.0,
            unit: "degC".into(),
        })
        .collect();
    let plaintext = ReadingBatch { seq, ts, readings }.to_json();
    let mut nonce = [0u8; 12];
    nonce[4..].copy_from_slice(&m.to_be_bytes());
    let envelope = seal(&device_id, key.id, &key.key, nonce, &plaintext);
    let record =
        NewRecord { device_id, topic: String::new(), received_at: ts, payload: Bytes::from(envelope) };
    (plaintext, record)
}

/// Records from `next` until `max_bytes` of payload.
pub(crate) async fn read_batch(
    stream: &SqliteStream,
    next: &mut StartAt,
    max_bytes: usize,
) -> anyhow::Result<Vec<Record>> {
    let (mut out, mut bytes) = (Vec::new(), 0);
    while bytes < max_bytes {
        let chunk = stream.read(*next, 20_000).await?;
        let Some(last) = chunk.last() else { break };
        *next = StartAt::After(last.position);
        bytes += chunk.iter().map(|r| r.payload.len()).sum::<usize>();
        out.extend(chunk);
    }
    Ok(out)
}

/// AES-256-GCM opening of the first 200 000 envelopes on this thread, MB/s.
async fn raw_decrypt_rate(stream: &SqliteStream, keyring: &Keyring) -> anyhow::Result<f64> {
    let records = stream.read(StartAt::Oldest, 200_000).await?;
    let openers: std::collections::HashMap<&str, Opener> = records
        .iter()
        .map(|r| (r.device_id.as_str(), Opener::new(&keyring.current_key(&r.device_id).expect("key").key)))
        .collect();
    let started = Instant::now();
    let mut bytes = 0usize;
    for record in &records {
        bytes += openers[record.device_id.as_str()].open(&record.device_id, &record.payload)?.len();
    }
    Ok(bytes as f64 / 1e6 / started.elapsed().as_secs_f64())
}

fn duckdb_baseline(args: &LakeArgs, plain: &Path, scratch: &Path) -> anyhow::Result<serde_json::Value> {
    let python = args.python.clone().context("the DuckDB baseline needs --python (or DUCKDB_PYTHON)")?;
    eprintln!("duckdb: read_json → Parquet…");
    let script = r#"
import json, sys, time, duckdb
plain, out = sys.argv[1], sys.argv[2]
con = duckdb.connect()
con.execute("SET enable_progress_bar = false")
started = time.perf_counter()
con.execute(f"""COPY (SELECT seq, ts, r.sensor, r.kind, r.value, r.unit
                      FROM (SELECT seq, ts, unnest(readings) AS r FROM read_json('{plain}')))
               TO '{out}' (FORMAT parquet, COMPRESSION zstd)""")
secs = time.perf_counter() - started
rows = con.execute(f"SELECT count(*) FROM read_parquet('{out}')").fetchone()[0]
print(json.dumps({"rows": rows, "secs": secs, "rows_per_sec": round(rows / secs)}))
"#;
    let out = std::process::Command::new(&python)
        .args(["-c", script])
        .arg(plain)
        .arg(scratch.join("duckdb.parquet"))
        .output()
        .with_context(|| format!("running {python}"))?;
    anyhow::ensure!(out.status.success(), "duckdb baseline: {}", String::from_utf8_lossy(&out.stderr));
    Ok(serde_json::from_slice(&out.stdout)?)
}
