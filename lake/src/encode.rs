//! Rows to Parquet bytes (and back, for compaction). Pure: no I/O.
//!
//! Columns follow DESIGN.md §5. `company`, `date` and `hour` are not in the
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
use wenu_core::reading::Reading;
use wenu_core::stream::Record;
use wenu_decrypt::DecodedMessage;

use crate::Result;

/// Rows per row group (DESIGN.md §5: ~1M).
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
