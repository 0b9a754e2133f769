//! `wenu sensors` and `wenu companies`: the registry's business data from
//! the command line (the registry API of a later issue does the same over HTTP).

use clap::{Args, Subcommand};
use wenu_core::catalog::{CompanySettings, SensorSpec, StatsRetentionDays};

use crate::config::Config;

#[derive(Subcommand)]
pub enum SensorsCommand {
    /// Define a device's sensor, or change its definition.
    Set(SensorArgs),
    /// List sensors, of one device or all.
    List {
        #[arg(long)]
        device: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
pub struct SensorArgs {
    #[arg(long)]
    device: String,
    /// The name the device uses in its readings.
    #[arg(long)]
    sensor: String,
    /// What it measures (temperature, humidity, …).
    #[arg(long)]
    kind: String,
    /// Canonical unit; readings in other units of the same quantity are converted.
    #[arg(long)]
    unit: String,
    /// Calibration: value × scale + offset.
    #[arg(long, default_value_t = 1.0)]
    scale: f64,
    #[arg(long, default_value_t = 0.0, allow_hyphen_values = true)]
    offset: f64,
    /// Calibrated values below are flagged and kept out of the stats.
    #[arg(long, allow_hyphen_values = true)]
    min: Option<f64>,
    #[arg(long, allow_hyphen_values = true)]
    max: Option<f64>,
}

pub async fn run_sensors(config: Config, command: SensorsCommand) -> anyhow::Result<()> {
    let registry = config.registry().await?;
    match command {
        SensorsCommand::Set(a) => {
            let spec = SensorSpec {
                device: a.device,
                sensor: a.sensor,
                kind: a.kind,
                unit: a.unit,
                scale: a.scale,
                offset: a.offset,
                valid_min: a.min,
                valid_max: a.max,
            };
            registry.upsert_sensor(&spec).await?;
            eprintln!("sensor {} of {} defined", spec.sensor, spec.device);
        }
        SensorsCommand::List { device, json } => {
            let sensors = registry.sensors(device.as_deref()).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&sensors)?);
            } else {
                println!(
                    "{:<20} {:<10} {:<12} {:<6} {:>8} {:>8} {:>8} {:>8}",
                    "device", "sensor", "kind", "unit", "scale", "offset", "min", "max"
                );
                let bound = |v: Option<f64>| v.map_or("-".to_owned(), |v| v.to_string());
                for s in sensors {
                    println!(
                        "{:<20} {:<10} {:<12} {:<6} {:>8} {:>8} {:>8} {:>8}",
                        s.device,
                        s.sensor,
                        s.kind,
                        s.unit,
                        s.scale,
                        s.offset,
                        bound(s.valid_min),
                        bound(s.valid_max)
                    );
                }
            }
        }
    }
    Ok(())
}

#[derive(Subcommand)]
pub enum CompaniesCommand {
    /// List companies with their stats retention.
    List,
    /// Set how many days a company keeps its stats per resolution (unset: the default 7 / 90 / 730).
    SetRetention {
        #[arg(long)]
        company: String,
        #[arg(long)]
        minute_days: Option<u32>,
        #[arg(long)]
        hour_days: Option<u32>,
        #[arg(long)]
        day_days: Option<u32>,
    },
}

pub async fn run_companies(config: Config, command: CompaniesCommand) -> anyhow::Result<()> {
    let registry = config.registry().await?;
    match command {
        CompaniesCommand::List => {
            let days = |d: Option<u32>| d.map_or("default".to_owned(), |d| format!("{d} d"));
            println!("{:<20} {:>10} {:>10} {:>10}", "company", "1m stats", "1h stats", "1d stats");
            for company in registry.list_companies().await? {
                let r = registry.company_settings(&company).await?.stats_retention;
                println!("{company:<20} {:>10} {:>10} {:>10}", days(r.minute), days(r.hour), days(r.day));
            }
        }
        CompaniesCommand::SetRetention { company, minute_days, hour_days, day_days } => {
            let stats_retention = StatsRetentionDays { minute: minute_days, hour: hour_days, day: day_days };
            registry
                .set_company_settings(&CompanySettings { company: company.clone(), stats_retention })
                .await?;
            eprintln!("stats retention of {company} set; new buckets take it at once");
        }
    }
    Ok(())
}
