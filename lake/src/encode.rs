//! Rows to Parquet bytes (and back, for compaction). Pure: no I/O.
//!
//! One row per reading. `company`, `date` and `hour` are not in the
//! files: they are the Hive partition columns of the path, which is how
//! DuckDB, pyarrow and Athena expect them.

use std::sync::{Arc, LazyLock};

use arrow::array::{
    ArrayRef, BinaryArray, Float64Array, Int64Array, RecordBatch, StringArray, StringBuilder,
    TimestampMillisecondArray,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use bytes::Bytes;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::arrow_writer::compute_leaves;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use wenu_core::reading::Reading;
use wenu_core::stream::Record;
use wenu_decrypt::DecodedMessage;

use crate::Result;

/// Rows per row group (about a million).
pub const ROW_GROUP_ROWS: usize = 1024 * 1024;

fn utc_millis() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
}

/// The columns of a readings file.
pub static READINGS_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("device_id", DataType::Utf8, false),
        Field::new("site", DataType::Utf8, true),
        Field::new("sensor", DataType::Utf8, false),
        Field::new("kind", DataType::Utf8, false),
        Field::new("value", DataType::Float64, false),
        Field::new("unit", DataType::Utf8, false),
        Field::new("raw_value", DataType::Float64, false),
        Field::new("ts", utc_millis(), false),
        Field::new("received_at", utc_millis(), false),
        Field::new("seq", DataType::Int64, false),
        Field::new("key_id", DataType::Int64, false),
    ]))
});

/// The columns of a quarantine file (the reason is the partition).
pub static QUARANTINE_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("position", DataType::Int64, false),
        Field::new("device_id", DataType::Utf8, false),
        Field::new("topic", DataType::Utf8, false),
        Field::new("received_at", utc_millis(), false),
        Field::new("detail", DataType::Utf8, false),
        Field::new("payload", DataType::Binary, false),
    ]))
});

/// A rejected record with the reason's detail.
#[derive(Debug, Clone)]
pub struct QuarantinedRecord {
    pub record: Record,
    pub detail: String,
}

fn properties() -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).expect("valid level")))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_created_by(format!("wenu {}", env!("CARGO_PKG_VERSION")))
        .build()
}

/// The rows of a readings file, one per reading, sorted by (device, seq,
/// sensor) so that a file's content depends only on the set of readings,
/// not on arrival order.
pub fn readings_batch(messages: &mut [DecodedMessage]) -> Result<RecordBatch> {
    // After dedupe (device, seq) is unique, so an unstable sort is deterministic.
    messages.sort_unstable_by(|a, b| (&a.device_id, a.seq).cmp(&(&b.device_id, b.seq)));
    for message in messages.iter_mut() {
        message.readings.sort_by(|a, b| a.sensor.cmp(&b.sensor));
    }
    let messages = &*messages;
    let rows: usize = messages.iter().map(|m| m.readings.len()).sum();
    let each = || messages.iter().flat_map(|m| m.readings.iter().map(move |r| (m, r)));
    let strings = |f: for<'a> fn(&'a DecodedMessage, &'a Reading) -> &'a str| -> ArrayRef {
        let mut column = StringBuilder::with_capacity(rows, rows * 8);
        each().for_each(|(m, r)| column.append_value(f(m, r)));
        Arc::new(column.finish())
    };
    let numbers = |f: fn(&DecodedMessage, &Reading) -> i64| -> Vec<i64> {
        let mut column = Vec::with_capacity(rows);
        column.extend(each().map(|(m, r)| f(m, r)));
        column
    };
    let times =
        |f| -> ArrayRef { Arc::new(TimestampMillisecondArray::from(numbers(f)).with_timezone("UTC")) };
    let mut values = Vec::with_capacity(rows);
    values.extend(each().map(|(_, r)| r.value));
    // Until enrichment calibrates, the value is the raw value.
    let values: ArrayRef = Arc::new(Float64Array::from(values));
    let columns: Vec<ArrayRef> = vec![
        strings(|m, _| &m.device_id),
        {
            let mut column = StringBuilder::with_capacity(rows, rows * 8);
            each().for_each(|(m, _)| column.append_option(m.site.as_deref()));
            Arc::new(column.finish())
        },
        strings(|_, r| &r.sensor),
        strings(|_, r| &r.kind),
        values.clone(),
        strings(|_, r| &r.unit),
        values,
        times(|m, _| m.ts),
        times(|m, _| m.received_at),
        Arc::new(Int64Array::from(numbers(|m, _| m.seq as i64))),
        Arc::new(Int64Array::from(numbers(|m, _| i64::from(m.key_id)))),
    ];
    Ok(RecordBatch::try_new(READINGS_SCHEMA.clone(), columns)?)
}

/// One reading as a JSON row of the lake, times in unix ms: what the
/// Firehose transformation returns, and what Firehose's record format
/// conversion (or [`rows_batch`], where Firehose is not there) turns into
/// Parquet with the columns of [`READINGS_SCHEMA`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LakeRow {
    pub device_id: String,
    pub site: Option<String>,
    pub sensor: String,
    pub kind: String,
    pub value: f64,
    pub unit: String,
    pub raw_value: f64,
    pub ts: i64,
    pub received_at: i64,
    pub seq: u64,
    pub key_id: u32,
}

impl LakeRow {
    /// A message's rows, one per reading.
    pub fn of_message(message: &DecodedMessage) -> impl Iterator<Item = LakeRow> + '_ {
        message.readings.iter().map(|reading| LakeRow {
            device_id: message.device_id.to_string(),
            site: message.site.as_ref().map(|s| s.to_string()),
            sensor: reading.sensor.to_string(),
            kind: reading.kind.to_string(),
            // Until enrichment calibrates, the value is the raw value.
            value: reading.value,
            unit: reading.unit.to_string(),
            raw_value: reading.value,
            ts: message.ts,
            received_at: message.received_at,
            seq: message.seq,
            key_id: message.key_id,
        })
    }
}

/// The rows of a readings file from JSON rows, sorted like [`readings_batch`].
pub fn rows_batch(rows: &mut [LakeRow]) -> Result<RecordBatch> {
    rows.sort_unstable_by(|a, b| (&a.device_id, a.seq, &a.sensor).cmp(&(&b.device_id, b.seq, &b.sensor)));
    let rows = &*rows;
    let strings =
        |f: fn(&LakeRow) -> &str| -> ArrayRef { Arc::new(StringArray::from_iter_values(rows.iter().map(f))) };
    let times = |f: fn(&LakeRow) -> i64| -> ArrayRef {
        Arc::new(TimestampMillisecondArray::from_iter_values(rows.iter().map(f)).with_timezone("UTC"))
    };
    let columns: Vec<ArrayRef> = vec![
        strings(|r| &r.device_id),
        Arc::new(StringArray::from_iter(rows.iter().map(|r| r.site.as_deref()))),
        strings(|r| &r.sensor),
        strings(|r| &r.kind),
        Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.value))),
        strings(|r| &r.unit),
        Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.raw_value))),
        times(|r| r.ts),
        times(|r| r.received_at),
        Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.seq as i64))),
        Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| i64::from(r.key_id)))),
    ];
    Ok(RecordBatch::try_new(READINGS_SCHEMA.clone(), columns)?)
}

/// One quarantine file, rows in stream order.
pub fn quarantine_file(rows: &[QuarantinedRecord]) -> Result<Bytes> {
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from_iter_values(
            rows.iter().map(|q| q.record.position.as_u64().map_or(i64::MAX, |p| p as i64)),
        )),
        Arc::new(StringArray::from_iter_values(rows.iter().map(|q| q.record.device_id.as_str()))),
        Arc::new(StringArray::from_iter_values(rows.iter().map(|q| q.record.topic.as_str()))),
        Arc::new(
            TimestampMillisecondArray::from_iter_values(rows.iter().map(|q| q.record.received_at))
                .with_timezone("UTC"),
        ),
        Arc::new(StringArray::from_iter_values(rows.iter().map(|q| q.detail.as_str()))),
        Arc::new(BinaryArray::from_iter_values(rows.iter().map(|q| q.record.payload.as_ref()))),
    ];
    write(&QUARANTINE_SCHEMA, &RecordBatch::try_new(QUARANTINE_SCHEMA.clone(), columns)?)
}

/// Writes a batch as one Parquet file with Wenu's settings, in row groups of
/// [`ROW_GROUP_ROWS`]; the columns of a row group are encoded and compressed
/// in parallel.
pub fn write(schema: &SchemaRef, batch: &RecordBatch) -> Result<Bytes> {
    // ArrowWriter records the Arrow schema (time zones) in the file's metadata.
    let (mut file, row_groups) =
        ArrowWriter::try_new(Vec::new(), schema.clone(), Some(properties()))?.into_serialized_writer()?;
    let mut offset = 0;
    for index in 0..batch.num_rows().div_ceil(ROW_GROUP_ROWS) {
        let rows = batch.slice(offset, ROW_GROUP_ROWS.min(batch.num_rows() - offset));
        offset += rows.num_rows();
        let mut leaves = Vec::with_capacity(schema.fields().len());
        for (field, column) in schema.fields().iter().zip(rows.columns()) {
            leaves.extend(compute_leaves(field, column)?);
        }
        let chunks = row_groups
            .create_column_writers(index)?
            .into_par_iter()
            .zip(leaves)
            .map(|(mut writer, leaf)| {
                writer.write(&leaf)?;
                writer.close()
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut row_group = file.next_row_group()?;
        for chunk in chunks {
            chunk.append_to_row_group(&mut row_group)?;
        }
        row_group.close()?;
    }
    Ok(Bytes::from(file.into_inner()?))
}

/// Reads a whole Parquet file into record batches.
pub fn read(file: Bytes) -> Result<Vec<RecordBatch>> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)?.with_batch_size(64 * 1024).build()?;
    Ok(reader.collect::<Result<Vec<_>, _>>()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use wenu_core::stream::Position;

    fn message(device: &str, seq: u64) -> DecodedMessage {
        let reading = |sensor: &str, value| Reading {
            sensor: sensor.into(),
            kind: "temperature".into(),
            value,
            unit: "degC".into(),
        };
        DecodedMessage {
            position: Position::new(seq),
            device_id: device.into(),
            company: "acme".into(),
            site: (device == "dev-a").then(|| "plant-7".into()),
            seq,
            ts: 1_800_000_000_000 + seq as i64,
            received_at: 1_800_000_000_500,
            key_id: 2,
            readings: vec![reading("t-2", 20.5), reading("t-1", -3.25)],
        }
    }

    #[test]
    fn json_rows_make_the_same_file_as_decoded_messages() {
        let mut messages = vec![message("dev-b", 4), message("dev-a", 9), message("dev-a", 3)];
        let mut rows: Vec<LakeRow> = messages.iter().flat_map(LakeRow::of_message).collect();
        rows.reverse();
        // Through JSON, as the Firehose transformation answers.
        let json: Vec<String> = rows.iter().map(|r| serde_json::to_string(r).unwrap()).collect();
        let mut parsed: Vec<LakeRow> = json.iter().map(|j| serde_json::from_str(j).unwrap()).collect();
        assert_eq!(parsed, rows);
        let from_rows = rows_batch(&mut parsed).unwrap();
        let from_messages = readings_batch(&mut messages).unwrap();
        assert_eq!(from_rows, from_messages);
        assert_eq!(
            write(&READINGS_SCHEMA, &from_rows).unwrap(),
            write(&READINGS_SCHEMA, &from_messages).unwrap()
        );
    }

    /// `glue-columns.json` is how AWS sees these files: Firehose converts
    /// the decrypt function's rows to Parquet through the Glue table that
    /// infra-cdk declares from it, and Athena reads them with it.
    #[test]
    fn the_glue_columns_describe_the_readings_schema() {
        let glue: Vec<(String, String)> = serde_json::from_str(include_str!("../glue-columns.json")).unwrap();
        let hive = |data_type: &DataType| match data_type {
            DataType::Utf8 => "string",
            DataType::Float64 => "double",
            DataType::Int64 => "bigint",
            DataType::Timestamp(TimeUnit::Millisecond, Some(zone)) if zone.as_ref() == "UTC" => "timestamp",
            other => panic!("no Glue type for {other}"),
        };
        let ours: Vec<(String, String)> = READINGS_SCHEMA
            .fields()
            .iter()
            .map(|f| (f.name().clone(), hive(f.data_type()).to_owned()))
            .collect();
        assert_eq!(glue, ours);
    }
}
