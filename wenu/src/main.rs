//! `wenu`: the whole Wenu pipeline on one machine, and its command line.
//!
//! `wenu serve` runs the embedded pipeline (the MQTT edge, the durable
//! stream, the lake, enrich, the stats queue and workers, the HTTP API with
//! its dashboard and backoffice, `/metrics`); the other commands manage the
//! data directory (devices, sensors, companies, tokens, certificates), inspect it (`status`, `sql`, `stats`, `queue`), or drive
//! load against a server (`sim`, `demo`, `bench`).

use clap::{Parser, Subcommand};
use wenu::{
    alarms_cmd, allocator, bench, certs, channels_cmd, config, demo, devices, lake, registry_cmd, replay,
    serve, sim, sql, stats_cmd, status, tokens_cmd,
};

#[derive(Parser)]
#[command(name = "wenu", version, about = "Wenu IoT telemetry pipeline")]
struct Cli {
    #[command(flatten)]
    config: config::ConfigArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the pipeline: MQTT edge, durable stream, lake, alarms, enrich and stats, HTTP API and metrics.
    Serve(serve::ServeArgs),
    /// Show connections, accepted and refused messages and the log, from the data directory.
    Status(status::StatusArgs),
    /// Provision, list and rotate the keys of devices.
    #[command(subcommand)]
    Devices(devices::DevicesCommand),
    /// Define and list the sensors of devices (unit, calibration, valid range).
    #[command(subcommand)]
    Sensors(registry_cmd::SensorsCommand),
    /// Companies and their settings (stats retention).
    #[command(subcommand)]
    Companies(registry_cmd::CompaniesCommand),
    /// API tokens for dashboards and the backoffice (scoped to a company, or operator).
    #[command(subcommand)]
    Tokens(tokens_cmd::TokensCommand),
    /// Alarm rules (threshold, rate of change, flatline, missing data, z-score).
    #[command(subcommand)]
    Rules(alarms_cmd::RulesCommand),
    /// Raised alarms: list, acknowledge, history, dead letters.
    #[command(subcommand)]
    Alarms(alarms_cmd::AlarmsCommand),
    /// Where a company's alarm notifications go (webhooks, Slack, Teams, e-mail), with routing.
    #[command(subcommand, visible_alias = "webhooks")]
    Channels(channels_cmd::ChannelsCommand),
    /// Keep a device, site or rule from notifying anyone for a while.
    #[command(subcommand)]
    Silences(channels_cmd::SilencesCommand),
    /// Query company stats (rollups per sensor at 1 min, 1 h, 1 day).
    #[command(subcommand)]
    Stats(stats_cmd::StatsCommand),
    /// The stats jobs queue: depth and dead letters.
    #[command(subcommand)]
    Queue(stats_cmd::QueueCommand),
    /// Make a local CA, a server certificate and device client certificates.
    #[command(subcommand)]
    Certs(certs::CertsCommand),
    /// Run a simulated fleet from a fleet file against a running server.
    Sim(sim::SimArgs),
    /// Start the pipeline with a simulated fleet and show live counts.
    Demo(demo::DemoArgs),
    /// Maintain the Parquet lake (compaction).
    #[command(subcommand)]
    Lake(lake::LakeCommand),
    /// Rebuild a lake from the stream (within its retention).
    Replay(replay::ReplayArgs),
    /// Run SQL over the Parquet lake (tables `readings` and `quarantine`).
    Sql(sql::SqlArgs),
    /// Measure the pipeline against baselines (runs the `wenu-bench` binary;
    /// `wenu bench --help` lists the benchmarks).
    #[command(disable_help_flag = true)]
    Bench {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
    /// Print the configuration in effect (defaults, the file, `WENU_*`), as TOML.
    Config,
}

fn main() -> std::process::ExitCode {
    allocator::return_freed_memory_soon();
    match run(Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            // The error chain without repeats; no backtrace for a user's mistake.
            let mut message = String::new();
            for cause in err.chain().map(|c| c.to_string()) {
                if !message.contains(&cause) {
                    message += if message.is_empty() { "" } else { ": " };
                    message += &cause;
                }
            }
            eprintln!("error: {message}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    init_logging();
    let config = cli.config.load()?;
    let config_file = cli.config.file;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve(args) => serve::run(config, args).await,
            Command::Status(args) => status::run(config, args).await,
            Command::Devices(command) => devices::run(config, command).await,
            Command::Sensors(command) => registry_cmd::run_sensors(config, command).await,
            Command::Companies(command) => registry_cmd::run_companies(config, command).await,
            Command::Tokens(command) => tokens_cmd::run(config, command).await,
            Command::Rules(command) => alarms_cmd::run_rules(config, command).await,
            Command::Alarms(command) => alarms_cmd::run_alarms(config, command).await,
            Command::Channels(command) => channels_cmd::run_channels(config, command).await,
            Command::Silences(command) => channels_cmd::run_silences(config, command).await,
            Command::Stats(command) => stats_cmd::run(config, command).await,
            Command::Queue(command) => stats_cmd::run_queue(config, command).await,
            Command::Certs(command) => certs::run(command),
            Command::Sim(args) => sim::run_sim(args).await,
            Command::Demo(args) => demo::run_demo(config, args).await,
            Command::Lake(command) => lake::run(config, command),
            Command::Replay(args) => replay::run(config, args).await,
            Command::Sql(args) => sql::run(config, args).await,
            Command::Bench { args } => bench::run(config_file.as_deref(), &config.data_dir, &args),
            Command::Config => {
                print!("{}", config.to_toml()?);
                Ok(())
            }
        }
    });
    // A command that failed half-way may leave blocking work behind (a
    // server it started); the user needs the error, not a wait for that.
    runtime.shutdown_timeout(std::time::Duration::from_secs(10));
    result
}

/// Logs to stderr; `RUST_LOG` overrides the default filter. The MQTT
/// libraries' own logging is kept at warnings: at debug and trace they log
/// every connection and packet.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(
            "info,ntex=warn,ntex_mqtt=warn,ntex_server=warn,ntex_io=warn,rumqttc=warn",
        )
    });
    // Colours for a terminal only: a file or the journal gets plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi).init();
}
