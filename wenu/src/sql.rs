//! `wenu sql`: SQL over the Parquet lake, no other tool needed.

use clap::{Args, ValueEnum};
use wenu_lake::sql::LakeSql;

use crate::config::Config;

#[derive(Args)]
pub struct SqlArgs {
    /// The statement, e.g. `SELECT company, count(*) FROM readings GROUP BY company`.
    /// Tables: `readings` (partitions company, date, hour) and `quarantine` (reason, date).
    query: String,
    /// How to print the result.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Table,
    Csv,
    /// One JSON object per row.
    Json,
}

pub async fn run(config: Config, args: SqlArgs) -> anyhow::Result<()> {
    let lake = LakeSql::open(&config.lake_dir()).await?;
    let batches = lake.query(&args.query).await?;
    let mut out = std::io::stdout().lock();
    match args.format {
        Format::Table => println!("{}", arrow::util::pretty::pretty_format_batches(&batches)?),
        Format::Csv => {
            let mut writer = arrow::csv::Writer::new(&mut out);
            batches.iter().try_for_each(|b| writer.write(b))?;
        }
        Format::Json => {
            let mut writer = arrow::json::LineDelimitedWriter::new(&mut out);
            writer.write_batches(&batches.iter().collect::<Vec<_>>())?;
            writer.finish()?;
        }
    }
    Ok(())
}
