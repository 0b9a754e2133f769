//! `wenu rules`, `wenu alarms`: alarm rules and the alarms they raise,
//! from the data directory.

use clap::Subcommand;
use wenu_alarms::{AckOutcome, AlarmStore, Condition, Rule, Severity};
use wenu_local::SqliteTable;

use crate::config::Config;
use crate::serve::now_ms;

#[derive(Subcommand)]
pub enum RulesCommand {
    /// A company's rules.
    List {
        #[arg(long)]
        company: String,
    },
    /// Create or replace a rule.
    Put {
        #[arg(long)]
        company: String,
        /// Unique within the company: a-z, 0-9, -.
        #[arg(long)]
        id: String,
        #[arg(long)]
        name: String,
        /// One device; every device of the company when absent.
        #[arg(long)]
        device: Option<String>,
        /// The sensor watched; absent for missing-data rules.
        #[arg(long)]
        sensor: Option<String>,
        /// The condition as JSON, e.g. '{"kind":"threshold","direction":"above","limit":30,"hysteresis":1,"for_ms":10000}';
        /// kinds: threshold, rate_of_change, flatline, missing_data, z_score.
        #[arg(long)]
        condition: String,
        #[arg(long, default_value = "warning", value_parser = ["info", "warning", "critical"])]
        severity: String,
        /// Store it switched off.
        #[arg(long)]
        disabled: bool,
    },
    Delete {
        #[arg(long)]
        company: String,
        id: String,
    },
}

#[derive(Subcommand)]
pub enum AlarmsCommand {
    /// A company's raised and acknowledged alarms.
    List {
        #[arg(long)]
        company: String,
    },
    /// Acknowledge a raised alarm.
    Ack {
        #[arg(long)]
        company: String,
        id: String,
        #[arg(long, default_value = "")]
        comment: String,
    },
    /// Transitions of the last `--hours` hours, oldest first.
    History {
        #[arg(long)]
        company: String,
        #[arg(long, default_value_t = 24)]
        hours: i64,
    },
    /// Notifications a channel never accepted.
    DeadLetters {
        #[arg(long)]
        company: String,
    },
    /// Notifications not yet delivered on every channel (all companies).
    Outbox,
}

pub async fn run_rules(config: Config, command: RulesCommand) -> anyhow::Result<()> {
    let registry = config.registry().await?.acting_as("cli");
    match command {
        RulesCommand::List { company } => {
            println!("{}", serde_json::to_string_pretty(&registry.rules(Some(&company)).await?)?)
        }
        RulesCommand::Put { company, id, name, device, sensor, condition, severity, disabled } => {
            let condition: Condition = serde_json::from_str(&condition)
                .map_err(|e| anyhow::anyhow!("--condition is not a valid condition: {e}"))?;
            let rule = Rule {
                company,
                id,
                name,
                device,
                sensor,
                condition,
                severity: Severity::parse(&severity).expect("checked by clap"),
                enabled: !disabled,
                version: 0,
            };
            let stored = registry.put_rule(&rule).await?;
            println!("{}", serde_json::to_string_pretty(&stored)?);
        }
        RulesCommand::Delete { company, id } => {
            registry.delete_rule(&company, &id).await?;
            eprintln!("rule {id} deleted");
        }
    }
    Ok(())
}

fn alarm_store(config: &Config) -> anyhow::Result<AlarmStore> {
    let table = SqliteTable::open(&config.alarms_path())?;
    Ok(AlarmStore::new(std::sync::Arc::new(table), config.alarms.history_days))
}

pub async fn run_alarms(config: Config, command: AlarmsCommand) -> anyhow::Result<()> {
    config.ensure_data_dir()?;
    let store = alarm_store(&config)?;
    match command {
        AlarmsCommand::List { company } => {
            println!("{}", serde_json::to_string_pretty(&store.active(&company).await?)?)
        }
        AlarmsCommand::Ack { company, id, comment } => {
            match store.acknowledge(&company, &id, "cli", &comment, now_ms()).await? {
                // A running server notices the outbox entry at its next look (within seconds).
                AckOutcome::Acknowledged(n) => println!("{}", serde_json::to_string_pretty(&n)?),
                AckOutcome::AlreadyAcknowledged(_) => anyhow::bail!("alarm {id} is already acknowledged"),
                AckOutcome::NotRaised(_) => anyhow::bail!("alarm {id} has cleared"),
                AckOutcome::Unknown => anyhow::bail!("no alarm {id} in company {company}"),
            }
        }
        AlarmsCommand::History { company, hours } => {
            let now = now_ms();
            let from = now - hours.max(1) * 3_600_000;
            let mut cursor = None;
            loop {
                let (page, next) = store.history(&company, from..now + 1, 1000, cursor).await?;
                for n in page {
                    println!("{}", serde_json::to_string(&n)?);
                }
                match next {
                    Some(next) => cursor = Some(next),
                    None => break,
                }
            }
        }
        AlarmsCommand::Outbox => {
            for (_, entry, _) in store.outbox().await? {
                println!("{}", serde_json::to_string(&entry)?);
            }
        }
        AlarmsCommand::DeadLetters { company } => {
            println!("{}", serde_json::to_string_pretty(&store.dead_letters(&company).await?)?)
        }
    }
    Ok(())
}
