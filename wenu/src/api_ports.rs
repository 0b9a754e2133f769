//! The API's lake port on one machine: raw readings from the local Parquet
//! lake through DataFusion.

use std::path::Path;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{Float64Type, Int64Type};
use async_trait::async_trait;
use wenu_api::{LakeReader, RawReading, ReadingsQuery};
use wenu_lake::sql::{LakeSql, ScalarValue};

/// Raw readings through the lake's SQL engine, one session for all requests.
pub struct LocalLake {
    sql: LakeSql,
}

impl LocalLake {
    pub async fn open(lake_dir: &Path) -> anyhow::Result<Self> {
        Ok(LocalLake { sql: LakeSql::open(lake_dir).await? })
    }
}

fn date(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).map_or_else(String::new, |t| t.format("%Y-%m-%d").to_string())
}

#[async_trait]
impl LakeReader for LocalLake {
    async fn readings(&self, q: &ReadingsQuery) -> Result<Vec<RawReading>, String> {
        let utc_ms = |ms: i64| ScalarValue::TimestampMillisecond(Some(ms), Some("UTC".into()));
        let sensor_filter = if q.sensor.is_some() { "AND sensor = $7" } else { "" };
        // The partition columns (company, date) prune files before any is opened.
        let sql = format!(
            "SELECT device_id, sensor, CAST(ts AS BIGINT) AS ts_ms, seq, value, unit, raw_value,
                    CAST(received_at AS BIGINT) AS received_ms
             FROM readings
             WHERE company = $1 AND date >= $2 AND date <= $3 AND device_id = $4 AND ts >= $5 AND ts < $6 {sensor_filter}
             ORDER BY ts, seq, sensor LIMIT {} OFFSET {}",
            q.limit, q.offset
        );
        let mut params = vec![
            ScalarValue::from(q.company.as_str()),
            ScalarValue::from(date(q.from).as_str()),
            ScalarValue::from(date(q.to).as_str()),
            ScalarValue::from(q.device.as_str()),
            utc_ms(q.from),
            utc_ms(q.to),
        ];
        if let Some(sensor) = &q.sensor {
            params.push(ScalarValue::from(sensor.as_str()));
        }
        let batches = self.sql.query_with(&sql, params).await.map_err(|e| e.to_string())?;
        Ok(batches.iter().flat_map(rows).collect())
    }
}

fn rows(batch: &RecordBatch) -> Vec<RawReading> {
    let text = |i: usize| batch.column(i).as_string_opt::<i32>().cloned();
    let (Some(device), Some(sensor), Some(unit)) = (text(0), text(1), text(5)) else {
        // Utf8View or dictionary columns would land here; the lake writes plain Utf8.
        return Vec::new();
    };
    let (ts, seq, received) = (
        batch.column(2).as_primitive::<Int64Type>(),
        batch.column(3).as_primitive::<Int64Type>(),
        batch.column(7).as_primitive::<Int64Type>(),
    );
    let (value, raw) =
        (batch.column(4).as_primitive::<Float64Type>(), batch.column(6).as_primitive::<Float64Type>());
    (0..batch.num_rows())
        .filter(|&i| !value.is_null(i))
        .map(|i| RawReading {
            device: device.value(i).to_owned(),
            sensor: sensor.value(i).to_owned(),
            ts: ts.value(i),
            seq: seq.value(i),
            value: value.value(i),
            unit: unit.value(i).to_owned(),
            raw_value: raw.value(i),
            received_at: received.value(i),
        })
        .collect()
}
