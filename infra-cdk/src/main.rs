//! `infra-cdk synth --stage NAME`: prints the CloudFormation template of a
//! stage (JSON), for `aws cloudformation deploy` (see docs/aws.md).

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(version, about = "Wenu's AWS deployment as code")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Prints the CloudFormation template of one stage.
    Synth {
        /// The environment: `dev`, `staging`, `prod`, or your own (1-12 of a-z, 0-9, -).
        /// `staging` and `prod` keep their data when deleted and run the database in two zones.
        #[arg(long)]
        stage: String,
        /// Writes the template to this file instead of standard output.
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Synth { stage, output } => {
            let template = infra_cdk::synth(infra_cdk::Stage::new(&stage)?);
            let mut text = serde_json::to_string_pretty(&template)?;
            text.push('\n');
            match output {
                Some(path) => {
                    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?
                }
                None => match std::io::stdout().write_all(text.as_bytes()) {
                    // `| head` closed the pipe: what it wanted is printed.
                    Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
                    other => other.context("writing the template")?,
                },
            }
        }
    }
    Ok(())
}
