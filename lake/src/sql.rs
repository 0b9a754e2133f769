//! SQL over the lake with an embedded engine (DataFusion), so an analyst on
//! the single-machine install needs no other tool.
//!
//! Two tables are registered: `readings` (the partition columns `company`,
//! `date` and `hour` come from the paths, as Athena's Glue table does) and
//! `quarantine` (with `reason` and `date`).

use std::path::Path;

use arrow::array::RecordBatch;
use arrow::datatypes::DataType;
use datafusion::prelude::{ParquetReadOptions, SessionContext};
pub use datafusion::scalar::ScalarValue;

use crate::Result;
use crate::encode::{QUARANTINE_SCHEMA, READINGS_SCHEMA};

/// A query session over a local lake directory.
pub struct LakeSql {
    ctx: SessionContext,
}

impl LakeSql {
    pub async fn open(lake_dir: &Path) -> Result<Self> {
        let ctx = SessionContext::new();
        for (table, schema, partitions) in [
            ("readings", &*READINGS_SCHEMA, &["company", "date", "hour"][..]),
            ("quarantine", &*QUARANTINE_SCHEMA, &["reason", "date"][..]),
        ] {
            let dir = lake_dir.join(table);
            // An empty lake is a lake with no rows, not an error.
            std::fs::create_dir_all(&dir)
                .map_err(|source| wenu_core::Error::Io { path: dir.clone(), source })?;
            let options = ParquetReadOptions::default()
                .schema(schema)
                .table_partition_cols(partitions.iter().map(|c| (c.to_string(), DataType::Utf8)).collect());
            ctx.register_parquet(table, format!("{}/", dir.display()), options).await?;
        }
        Ok(LakeSql { ctx })
    }

    /// Runs one statement and collects its result.
    pub async fn query(&self, sql: &str) -> Result<Vec<RecordBatch>> {
        Ok(self.ctx.sql(sql).await?.collect().await?)
    }

    /// Runs one statement with `$1`, `$2`… bound to `params`: values from
    /// users never become SQL text.
    pub async fn query_with(&self, sql: &str, params: Vec<ScalarValue>) -> Result<Vec<RecordBatch>> {
        Ok(self.ctx.sql(sql).await?.with_param_values(params)?.collect().await?)
    }
}
