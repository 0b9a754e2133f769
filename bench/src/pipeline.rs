//! `wenu bench pipeline`: the highest rate the whole embedded pipeline
//! sustains. `wenu serve` runs as a child process with every stage on (the
//! edge, the lake, enrich, the stats queue and workers, alarms with rules);
//! a fleet offers fixed rates in steps, and a rate is sustained when the
//! edge acknowledges it and no stage's backlog grows. Backlogs, stage busy
//! times and CPU come from the server's own `/metrics` and `/proc`.
//!
//! The ramp multiplies the rate until a step fails, then bisects between
//! the last sustained rate and the first that was not.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use serde::Serialize;
use serde_json::json;
use wenu_core::fleet::Fleet;
use wenu_firmware_sim::{LoadConfig, LoadReport, run_load};
use wenu_registry::Registry;

use crate::process::{Scratch, ServerProcess, own_cpu_seconds};

#[derive(Args)]
pub struct PipelineArgs {
    /// Simulated devices.
    #[arg(long, default_value_t = 100)]
    devices: usize,
    /// Active alarm rules on the fleet's readings (none of them fires).
    #[arg(long, default_value_t = 100)]
    rules: usize,
    /// First offered rate, in messages per second from the whole fleet.
    #[arg(long, default_value_t = 2_000.0)]
    start_rate: f64,
    /// The ramp stops here even if every step was sustained.
    #[arg(long, default_value_t = 200_000.0)]
    max_rate: f64,
    /// Each step offers this many times the previous rate.
    #[arg(long, default_value_t = 1.5)]
    growth: f64,
    /// Bisection steps between the last sustained rate and the first failed one.
    #[arg(long, default_value_t = 2)]
    refine: usize,
    /// Seconds each rate is offered.
    #[arg(long, default_value_t = 20)]
    step_seconds: u64,
    /// The lake's buffer time (`lake.buffer_secs`): a lake that flushes by
    /// time holds up to this long of records as backlog.
    #[arg(long, default_value_t = 5)]
    lake_buffer_secs: u64,
}

/// The backlogs followed, each in the unit its input arrives in.
const BACKLOGS: [&str; 4] = ["lake", "enrich", "alarms", "stats"];
/// A backlog grows if, over the second half of a step, it rises faster than
/// this share of its input rate.
const GROWTH_TOLERANCE: f64 = 0.05;
/// Between steps, how long the pipeline may take to catch up.
const CATCH_UP_LIMIT: Duration = Duration::from_secs(180);
const SAMPLE_EVERY: Duration = Duration::from_millis(500);

pub async fn run(args: PipelineArgs) -> anyhow::Result<serde_json::Value> {
    anyhow::ensure!(args.growth > 1.0, "--growth must be above 1");
    let scratch = Scratch::new("pipeline")?;
    eprintln!("provisioning {} devices and {} rules…", args.devices, args.rules);
    let fleet = crate::connections::provision(scratch.path(), args.devices).await?;
    let registry = Registry::open(&Registry::default_path(scratch.path())).await?;
    wenu::devices::define_simulated_sensors(&registry, &fleet).await?;
    for rule in crate::alarms::quiet_rules(&fleet, args.rules) {
        registry.put_rule(&rule).await?;
    }
    registry.close().await;

    let lake_buffer = args.lake_buffer_secs.to_string();
    // Device quotas off: the fleet's devices publish far above a real sensor's rate.
    let server = ServerProcess::wenu(
        scratch.path(),
        &[
            ("WENU_LAKE_BUFFER_SECS", &lake_buffer),
            ("WENU_MQTT_DEVICE_PUBLISHES_PER_SECOND", "1000000"),
            ("WENU_MQTT_DEVICE_PUBLISH_BURST", "1000000"),
            ("WENU_MQTT_DEVICE_BYTES_PER_SECOND", "1000000000"),
            ("WENU_MQTT_DEVICE_BYTE_BURST", "1000000000"),
        ],
    )?;
    let metrics = Metrics::new(server.http.context("wenu serve printed no HTTP address")?);

    let mut steps: Vec<Step> = Vec::new();
    let mut first_seq = 1;
    let mut run_step = async |rate: f64, steps: &mut Vec<Step>| -> anyhow::Result<bool> {
        eprintln!("offering {rate:.0} msg/s for {} s…", args.step_seconds);
        let step = offer(&server, &metrics, &fleet, rate, args.step_seconds, first_seq).await?;
        first_seq += step.per_device_span;
        eprintln!(
            "  {}: acked {:.0}/s, growth/s {:?}, caught up in {:.1} s",
            if step.sustained { "sustained" } else { "not sustained" },
            step.acked_per_sec,
            step.backlog_growth_per_sec,
            step.catch_up_secs
        );
        let sustained = step.sustained;
        steps.push(step);
        Ok(sustained)
    };
    let (mut sustained, mut failed) = (None::<f64>, None::<f64>);
    let mut rate = args.start_rate;
    while rate <= args.max_rate {
        if run_step(rate, &mut steps).await? {
            sustained = Some(rate);
            rate *= args.growth;
        } else {
            failed = Some(rate);
            break;
        }
    }
    for _ in 0..args.refine {
        let (Some(low), Some(high)) = (sustained, failed) else { break };
        let middle = ((low + high) / 2.0).round();
        if run_step(middle, &mut steps).await? {
            sustained = Some(middle);
        } else {
            failed = Some(middle);
        }
    }
    drop(server);

    let best = sustained.and_then(|rate| steps.iter().find(|s| s.offered_per_sec == rate));
    let limit = failed.and_then(|rate| steps.iter().find(|s| s.offered_per_sec == rate));
    Ok(json!({
        "devices": args.devices,
        "rules": args.rules,
        "lake_buffer_secs": args.lake_buffer_secs,
        "step_seconds": args.step_seconds,
        "sustained_msgs_per_sec": sustained,
        "sustained_readings_per_sec": best.map(|s| s.readings_per_sec.round()),
        "at_sustained_rate": best.map(Step::summary),
        "first_failed_rate": limit.map(Step::summary),
        "limited_by": limit.map(|s| s.limited_by()),
        "steps": steps,
    }))
}

/// One offered rate and what the pipeline did with it.
#[derive(Serialize)]
struct Step {
    offered_per_sec: f64,
    /// What the load generator managed to produce (below the offered rate
    /// when it, not the server, is the limit).
    produced_per_sec: f64,
    acked_per_sec: f64,
    readings_per_sec: f64,
    /// Stats jobs enrich queued per second (one per series and batch).
    jobs_per_sec: f64,
    puback_p99_ms: f64,
    edge_kept_up: bool,
    /// Over the second half of the step, per backlog (records; jobs for stats).
    backlog_growth_per_sec: BTreeMap<&'static str, f64>,
    backlog_max: BTreeMap<&'static str, f64>,
    /// Seconds each stage spent processing batches, per second.
    busy: BTreeMap<&'static str, f64>,
    /// CPU cores in use: the server (every stage, the edge and storage) and
    /// the load generator.
    server_cores: f64,
    load_generator_cores: f64,
    /// After the fleet stopped, until every backlog was empty.
    catch_up_secs: f64,
    sustained: bool,
    /// Sampled every 500 ms from the start of the step: seconds, then each
    /// backlog in the order of `backlog_names`.
    backlog_names: [&'static str; 4],
    lag_curve: Vec<(f64, [f64; 4])>,
    #[serde(skip)]
    per_device_span: u64,
}

impl Step {
    fn summary(&self) -> serde_json::Value {
        json!({
            "offered_per_sec": self.offered_per_sec,
            "acked_per_sec": self.acked_per_sec.round(),
            "readings_per_sec": self.readings_per_sec.round(),
            "puback_p99_ms": self.puback_p99_ms,
            "busy": self.busy,
            "server_cores": self.server_cores,
            "load_generator_cores": self.load_generator_cores,
            "backlog_growth_per_sec": self.backlog_growth_per_sec,
        })
    }

    /// What failed first: the edge, or the backlog that grew fastest
    /// relative to its input.
    fn limited_by(&self) -> &'static str {
        if self.produced_per_sec < self.offered_per_sec * 0.95 {
            return "load generator";
        }
        if !self.edge_kept_up {
            return "edge";
        }
        let relative = |name: &&'static str| {
            let input = if *name == "stats" { self.jobs_per_sec } else { self.offered_per_sec };
            self.backlog_growth_per_sec[name] / input.max(1.0)
        };
        BACKLOGS.into_iter().max_by(|a, b| relative(a).total_cmp(&relative(b))).unwrap_or("none")
    }
}

/// Offers `rate` messages per second for `seconds`, then waits until the
/// pipeline has caught up.
async fn offer(
    server: &ServerProcess,
    metrics: &Metrics,
    fleet: &Fleet,
    rate: f64,
    seconds: u64,
    first_seq: u64,
) -> anyhow::Result<Step> {
    let rate_per_device = rate / fleet.devices.len().max(1) as f64;
    let config = LoadConfig {
        host: "127.0.0.1".into(),
        port: server.port,
        rate_per_device,
        window: 64,
        duration: Duration::from_secs(seconds),
        first_seq,
        drain_timeout: Duration::from_secs(30),
    };
    let before = metrics.scrape().await?;
    let (cpu_before, own_before) = (server.cpu_seconds()?, own_cpu_seconds()?);
    let started = Instant::now();
    let load = {
        let fleet = fleet.clone();
        tokio::spawn(async move { run_load(&fleet, config).await })
    };
    let mut curve = Vec::new();
    while !load.is_finished() {
        tokio::time::sleep(SAMPLE_EVERY).await;
        curve.push((started.elapsed().as_secs_f64(), metrics.scrape().await?.backlogs()));
    }
    let report: LoadReport = load.await??;
    let after = metrics.scrape().await?;
    let elapsed = started.elapsed().as_secs_f64();
    let server_cores = (server.cpu_seconds()? - cpu_before) / elapsed;
    let load_generator_cores = (own_cpu_seconds()? - own_before) / elapsed;

    let catching_up = Instant::now();
    loop {
        let backlogs = metrics.scrape().await?.backlogs();
        curve.push((started.elapsed().as_secs_f64(), backlogs));
        if backlogs.iter().all(|&b| b <= 0.0) {
            break;
        }
        anyhow::ensure!(
            catching_up.elapsed() < CATCH_UP_LIMIT,
            "the pipeline did not catch up within {CATCH_UP_LIMIT:?} of a step at {rate} msg/s: {backlogs:?}"
        );
        tokio::time::sleep(SAMPLE_EVERY).await;
    }
    let catch_up_secs = catching_up.elapsed().as_secs_f64();

    let production = (report.connect_secs, report.connect_secs + seconds as f64);
    let readings =
        after.sum("wenu_enrich_readings_total", None) - before.sum("wenu_enrich_readings_total", None);
    let readings_per_sec = readings / seconds as f64;
    let jobs = after.sum("wenu_enrich_jobs_total", None) - before.sum("wenu_enrich_jobs_total", None);
    let jobs_per_sec = jobs / seconds as f64;
    let mut backlog_growth_per_sec = BTreeMap::new();
    let mut backlog_max = BTreeMap::new();
    for (i, name) in BACKLOGS.iter().enumerate() {
        let second_half: Vec<(f64, f64)> = curve
            .iter()
            .filter(|(t, _)| *t >= (production.0 + production.1) / 2.0 && *t <= production.1)
            .map(|(t, b)| (*t, b[i]))
            .collect();
        backlog_growth_per_sec.insert(*name, slope(&second_half));
        backlog_max.insert(*name, curve.iter().map(|(_, b)| b[i]).fold(0.0, f64::max));
    }
    let edge_kept_up =
        report.unacked_at_exit == 0 && report.offered_per_sec >= rate * 0.95 && report.drain_secs <= 1.0;
    let sustained = edge_kept_up
        && backlog_growth_per_sec.iter().all(|(name, growth)| {
            let input = if *name == "stats" { jobs_per_sec } else { rate };
            *growth <= input * GROWTH_TOLERANCE
        });
    let busy_seconds = |m: &Scrape, stage: &str| match stage {
        "stats" => m.sum("wenu_stats_apply_seconds_sum", None),
        consumer => m.sum("wenu_consumer_batch_seconds_sum", Some(("consumer", consumer))),
    };
    let busy = BACKLOGS
        .iter()
        .map(|stage| {
            let seconds = busy_seconds(&after, stage) - busy_seconds(&before, stage);
            (*stage, (seconds / elapsed * 100.0).round() / 100.0)
        })
        .collect();
    Ok(Step {
        offered_per_sec: rate,
        produced_per_sec: report.offered_per_sec.round(),
        acked_per_sec: report.acked as f64 / (seconds as f64 + report.drain_secs),
        readings_per_sec,
        jobs_per_sec,
        puback_p99_ms: report.puback_p99_ms,
        edge_kept_up,
        backlog_growth_per_sec,
        backlog_max,
        busy,
        server_cores: (server_cores * 100.0).round() / 100.0,
        load_generator_cores: (load_generator_cores * 100.0).round() / 100.0,
        catch_up_secs,
        sustained,
        backlog_names: BACKLOGS,
        lag_curve: curve,
        per_device_span: (rate_per_device * seconds as f64).ceil() as u64 * 2 + 1_000,
    })
}

/// The least-squares slope of `points` (per second); 0 for fewer than two.
fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    if points.len() < 2 {
        return 0.0;
    }
    let (mean_t, mean_v) = points.iter().fold((0.0, 0.0), |(t, v), p| (t + p.0 / n, v + p.1 / n));
    let (mut covariance, mut variance) = (0.0, 0.0);
    for (t, v) in points {
        covariance += (t - mean_t) * (v - mean_v);
        variance += (t - mean_t) * (t - mean_t);
    }
    if variance == 0.0 { 0.0 } else { covariance / variance }
}

/// The server's `/metrics`.
struct Metrics {
    client: reqwest::Client,
    url: String,
}

impl Metrics {
    fn new(http: SocketAddr) -> Self {
        Self { client: reqwest::Client::new(), url: format!("http://{http}/metrics") }
    }

    async fn scrape(&self) -> anyhow::Result<Scrape> {
        let text = self.client.get(&self.url).send().await?.error_for_status()?.text().await?;
        Ok(Scrape(text))
    }
}

/// One `/metrics` text (Prometheus exposition format).
struct Scrape(String);

impl Scrape {
    /// The sum of the samples of `name`, of those with `label` if given.
    fn sum(&self, name: &str, label: Option<(&str, &str)>) -> f64 {
        let wanted = label.map(|(key, value)| format!("{key}=\"{value}\""));
        self.0
            .lines()
            .filter(|line| !line.starts_with('#'))
            .filter_map(|line| {
                let (series, value) = line.rsplit_once(' ')?;
                let (metric, labels) = series.split_once('{').unwrap_or((series, ""));
                let labelled =
                    wanted.as_ref().is_none_or(|w| labels.split(',').any(|l| l.trim_end_matches('}') == w));
                (metric == name && labelled).then(|| value.parse::<f64>().ok()).flatten()
            })
            .sum()
    }

    /// Records each consumer has still to read, and stats jobs enrich has
    /// queued that the workers have not applied, in `BACKLOGS` order.
    /// Each consumer's backlog right after its last commit (so the lake's
    /// buffer, emptied at each flush, is not counted), and the stats jobs
    /// queued and not yet applied.
    fn backlogs(&self) -> [f64; 4] {
        let lag = |consumer| self.sum("wenu_consumer_lag_after_commit_records", Some(("consumer", consumer)));
        [lag("lake"), lag("enrich"), lag("alarms"), self.stats_jobs_queued().max(0.0)]
    }

    fn stats_jobs_queued(&self) -> f64 {
        self.sum("wenu_enrich_jobs_total", None)
            - self.sum("wenu_stats_jobs_total", Some(("outcome", "applied")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_slope_of_a_line_is_its_rate() {
        let points: Vec<(f64, f64)> = (0..10).map(|i| (i as f64 * 0.5, 100.0 + 40.0 * i as f64)).collect();
        assert!((slope(&points) - 80.0).abs() < 1e-9);
        assert_eq!(slope(&[(1.0, 5.0)]), 0.0);
    }

    #[test]
    fn a_scrape_sums_the_samples_of_a_metric_and_label() {
        let scrape = Scrape(
            "# TYPE wenu_consumer_lag_after_commit_records gauge\n\
             wenu_consumer_lag_after_commit_records{consumer=\"lake\"} 120\n\
             wenu_consumer_lag_after_commit_records{consumer=\"enrich\"} 7\n\
             wenu_enrich_jobs_total 100\n\
             wenu_stats_jobs_total{outcome=\"applied\"} 90\n\
             wenu_stats_jobs_total{outcome=\"failed\"} 3\n"
                .into(),
        );
        assert_eq!(scrape.sum("wenu_consumer_lag_after_commit_records", None), 127.0);
        assert_eq!(scrape.sum("wenu_consumer_lag_after_commit_records", Some(("consumer", "lake"))), 120.0);
        assert_eq!(scrape.backlogs(), [120.0, 7.0, 0.0, 10.0]);
    }
}
