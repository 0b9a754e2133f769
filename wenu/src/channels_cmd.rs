//! `wenu channels`, `wenu silences`: where a company's alarm notifications
//! go and when they stay quiet, in the registry (as the API manages them).

use std::time::Duration;

use clap::Subcommand;
use wenu_alarms::{Notification, Route, Severity};
use wenu_registry::{NewChannel, NewSilence};

use crate::config::Config;
use crate::serve::now_ms;

#[derive(Subcommand)]
pub enum ChannelsCommand {
    List {
        #[arg(long)]
        company: String,
    },
    /// Add a channel: an `https://` webhook (prints its signing secret, the
    /// only time it is shown) or a `mailto:` address.
    Add {
        #[arg(long)]
        company: String,
        /// `https://…` (a webhook) or `mailto:ops@example.com`.
        url: String,
        /// A webhook's body: `wenu` (the signed notification JSON),
        /// `slack` (an incoming webhook's message) or `teams` (an Adaptive Card).
        #[arg(long, default_value = "wenu", value_parser = ["wenu", "slack", "teams"])]
        format: String,
        /// Only alarms of this severity or worse.
        #[arg(long, value_parser = ["info", "warning", "critical"])]
        min_severity: Option<String>,
        /// Only alarms of this rule (repeat for several).
        #[arg(long = "rule")]
        rules: Vec<String>,
        /// Only raised alarms still unacknowledged this long after they were
        /// raised (escalation), e.g. `15m`, `1h`.
        #[arg(long, value_parser = humantime::parse_duration)]
        escalate_after: Option<Duration>,
    },
    Delete {
        #[arg(long)]
        company: String,
        id: String,
    },
    /// Send a test message to a channel now, with this machine's settings.
    Test {
        #[arg(long)]
        company: String,
        id: String,
    },
}

#[derive(Subcommand)]
pub enum SilencesCommand {
    /// Current and coming silences (`--all`: ended ones too).
    List {
        #[arg(long)]
        company: String,
        #[arg(long)]
        all: bool,
    },
    /// Silence a device, a site or a rule (or what all those named share)
    /// from now on for a while; transitions are still recorded.
    Add {
        #[arg(long)]
        company: String,
        #[arg(long)]
        device: Option<String>,
        #[arg(long)]
        site: Option<String>,
        #[arg(long)]
        rule: Option<String>,
        /// How long, e.g. `2h`, `30m`.
        #[arg(long = "for", value_parser = humantime::parse_duration)]
        duration: Duration,
        #[arg(long)]
        reason: String,
    },
    /// End a silence now.
    End {
        #[arg(long)]
        company: String,
        id: String,
    },
}

pub async fn run_channels(config: Config, command: ChannelsCommand) -> anyhow::Result<()> {
    let registry = config.registry().await?.acting_as("cli");
    match command {
        ChannelsCommand::List { company } => {
            for channel in registry.channels(Some(&company)).await? {
                let route = serde_json::to_string(&channel.route)?;
                println!(
                    "{:<18} {:<7} {:<6} {:<40} {route}",
                    channel.id,
                    channel.kind,
                    channel.format.as_str(),
                    channel.url
                );
            }
        }
        ChannelsCommand::Add { company, url, format, min_severity, rules, escalate_after } => {
            let route = Route {
                min_severity: min_severity.as_deref().and_then(Severity::parse),
                rules,
                escalate_after_secs: escalate_after
                    .map(|d| u32::try_from(d.as_secs()))
                    .transpose()
                    .map_err(|_| anyhow::anyhow!("--escalate-after is too long"))?,
            };
            let format = wenu_alarms::WebhookFormat::parse(&format).expect("clap checked the format");
            let new = NewChannel { url, format, route };
            let channel = registry.add_channel(&company, &new).await?;
            if channel.kind == "webhook" {
                println!(
                    "{}",
                    serde_json::json!({ "id": channel.id, "url": channel.url, "secret": channel.secret })
                );
                eprintln!("channel {} added; keep the secret, it is not shown again", channel.id);
            } else {
                println!("{}", serde_json::json!({ "id": channel.id, "url": channel.url }));
                eprintln!("channel {} added", channel.id);
            }
        }
        ChannelsCommand::Delete { company, id } => {
            registry.delete_channel(&company, &id).await?;
            eprintln!("channel {id} deleted");
        }
        ChannelsCommand::Test { company, id } => {
            let found = registry.channels(Some(&company)).await?.into_iter().find(|c| c.id == id);
            let found = found.ok_or_else(|| anyhow::anyhow!("unknown channel {id}"))?;
            let channel = found.target();
            let notifiers = crate::alarms::channel_notifiers(&config, &registry)?;
            let notifier = notifiers
                .iter()
                .find(|n| Some(n.channel_kind()) == wenu_alarms::ChannelKind::of_url(&channel.url).ok())
                .ok_or_else(|| anyhow::anyhow!("no notifier for {}", channel.url))?;
            let notification = Notification::test(&company, "cli", now_ms());
            notifier
                .deliver(&channel, &notification)
                .await
                .map_err(|e| anyhow::anyhow!("not delivered: {e}"))?;
            eprintln!("test message delivered to {}", channel.url);
        }
    }
    Ok(())
}

pub async fn run_silences(config: Config, command: SilencesCommand) -> anyhow::Result<()> {
    let registry = config.registry().await?.acting_as("cli");
    match command {
        SilencesCommand::List { company, all } => {
            let now = now_ms();
            for silence in registry.silences(Some(&company), if all { 0 } else { now }).await? {
                let what = [("device", &silence.device), ("site", &silence.site), ("rule", &silence.rule)]
                    .iter()
                    .filter_map(|(name, value)| value.as_ref().map(|v| format!("{name}={v}")))
                    .collect::<Vec<_>>()
                    .join(" ");
                let state = if silence.is_active(now) {
                    "active"
                } else if silence.ends_at <= now {
                    "ended"
                } else {
                    "coming"
                };
                println!(
                    "{:<18} {state:<7} {} → {}  {what}  {:?} (by {})",
                    silence.id,
                    utc(silence.starts_at),
                    utc(silence.ends_at),
                    silence.reason,
                    silence.created_by
                );
            }
        }
        SilencesCommand::Add { company, device, site, rule, duration, reason } => {
            let starts_at = now_ms();
            let ends_at = starts_at.saturating_add(i64::try_from(duration.as_millis()).unwrap_or(i64::MAX));
            let new = NewSilence { device, site, rule, starts_at: Some(starts_at), ends_at, reason };
            let silence = registry.add_silence(&company, &new).await?;
            println!("{}", serde_json::to_string(&silence)?);
            eprintln!("silence {} until {}", silence.id, utc(silence.ends_at));
        }
        SilencesCommand::End { company, id } => {
            let silence = registry.end_silence(&company, &id).await?;
            eprintln!("silence {} ended at {}", silence.id, utc(silence.ends_at));
        }
    }
    Ok(())
}

fn utc(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map_or_else(|| ms.to_string(), |t| t.format("%Y-%m-%d %H:%M").to_string())
}
