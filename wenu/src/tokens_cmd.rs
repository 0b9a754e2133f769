//! `wenu tokens`: API tokens for dashboards, scripts and the backoffice.

use clap::{Subcommand, ValueEnum};
use wenu_registry::Role;

use crate::config::Config;

#[derive(Subcommand)]
pub enum TokensCommand {
    /// Create a token and print it (the only time it is shown).
    Create {
        /// The company it is scoped to; none for an operator token.
        #[arg(long)]
        company: Option<String>,
        #[arg(long, value_enum, default_value = "viewer")]
        role: RoleArg,
        /// What it is for (shown in listings and the audit log).
        #[arg(long, default_value = "cli")]
        name: String,
        /// Requests per second (the server's default when absent).
        #[arg(long)]
        rate: Option<u32>,
        /// Print the whole token record as JSON, not just the bearer.
        #[arg(long)]
        json: bool,
    },
    /// List tokens (never their secrets).
    List {
        #[arg(long)]
        company: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token by id.
    Revoke { id: String },
}

#[derive(Clone, Copy, ValueEnum)]
pub enum RoleArg {
    Viewer,
    Admin,
    Operator,
}

impl From<RoleArg> for Role {
    fn from(role: RoleArg) -> Role {
        match role {
            RoleArg::Viewer => Role::Viewer,
            RoleArg::Admin => Role::Admin,
            RoleArg::Operator => Role::Operator,
        }
    }
}

pub async fn run(config: Config, command: TokensCommand) -> anyhow::Result<()> {
    config.ensure_data_dir()?;
    let registry = config.registry().await?.acting_as("cli");
    match command {
        TokensCommand::Create { company, role, name, rate, json } => {
            let created = registry.create_token(company.as_deref(), role.into(), &name, rate).await?;
            if json {
                let record = serde_json::json!({ "token": created.token, "bearer": created.bearer });
                println!("{}", serde_json::to_string_pretty(&record)?);
            } else {
                println!("{}", created.bearer);
            }
            eprintln!("token {} created; keep it secret, it is not shown again", created.token.id);
        }
        TokensCommand::List { company, json } => {
            let tokens = registry.list_tokens(company.as_deref()).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&tokens)?);
            } else {
                println!("{:<18} {:<16} {:<9} {:<8} name", "id", "company", "role", "state");
                for t in tokens {
                    let state = if t.revoked_at.is_some() { "revoked" } else { "live" };
                    let company = t.company.as_deref().unwrap_or("-");
                    println!("{:<18} {:<16} {:<9} {:<8} {}", t.id, company, t.role.as_str(), state, t.name);
                }
            }
        }
        TokensCommand::Revoke { id } => {
            registry.revoke_token(&id).await?;
            eprintln!("token {id} revoked");
        }
    }
    Ok(())
}
