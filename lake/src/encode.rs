//! Rows to Parquet bytes (and back, for compaction). Pure: no I/O.
//!
//! Columns follow DESIGN.md §5. `company`, `date` and `hour` are not in the
//! files: they are the Hive partition columns of the path, which is how
//! DuckDB, pyarrow and Athena expect them.

use std::sync::{Arc, LazyLock};

use arrow::array::{
    ArrayRef, BinaryArray, Float64Array, Int64Array, RecordBatch, StringArray, TimestampMillisecondArray,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use bytes::Bytes;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use wenu_core::stream::Record;
use wenu_decrypt::DecodedReading;

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

/// One readings file. The rows are sorted by (device, seq, sensor) so that a
/// file's content depends only on the set of readings, not on arrival order.
pub fn readings_file(readings: &mut [DecodedReading]) -> Result<Bytes> {
    readings.sort_by(|a, b| (&a.device_id, a.seq, &a.sensor).cmp(&(&b.device_id, b.seq, &b.sensor)));
    let batch = readings_batch(readings)?;
    write(&READINGS_SCHEMA, [batch])
}

pub fn readings_batch(readings: &[DecodedReading]) -> Result<RecordBatch> {
    let strings = |f: fn(&DecodedReading) -> &str| -> ArrayRef {
        Arc::new(StringArray::from_iter_values(readings.iter().map(f)))
    };
    let times = |f: fn(&DecodedReading) -> i64| -> ArrayRef {
        Arc::new(TimestampMillisecondArray::from_iter_values(readings.iter().map(f)).with_timezone("UTC"))
    };
    let columns: Vec<ArrayRef> = vec![
        strings(|r| &r.device_id),
        Arc::new(StringArray::new_null(readings.len())),
        strings(|r| &r.sensor),
        strings(|r| &r.kind),
        Arc::new(Float64Array::from_iter_values(readings.iter().map(|r| r.value))),
        strings(|r| &r.unit),
        Arc::new(Float64Array::from_iter_values(readings.iter().map(|r| r.value))),
        times(|r| r.ts),
        times(|r| r.received_at),
        Arc::new(Int64Array::from_iter_values(readings.iter().map(|r| r.seq as i64))),
        Arc::new(Int64Array::from_iter_values(readings.iter().map(|r| i64::from(r.key_id)))),
    ];
    Ok(RecordBatch::try_new(READINGS_SCHEMA.clone(), columns)?)
}

/// One quarantine file, rows in stream order.
pub fn quarantine_file(rows: &[QuarantinedRecord]) -> Result<Bytes> {
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from_iter_values(rows.iter().map(|q| q.record.position.0 as i64))),
        Arc::new(StringArray::from_iter_values(rows.iter().map(|q| q.record.device_id.as_str()))),
        Arc::new(StringArray::from_iter_values(rows.iter().map(|q| q.record.topic.as_str()))),
        Arc::new(
            TimestampMillisecondArray::from_iter_values(rows.iter().map(|q| q.record.received_at))
                .with_timezone("UTC"),
        ),
        Arc::new(StringArray::from_iter_values(rows.iter().map(|q| q.detail.as_str()))),
        Arc::new(BinaryArray::from_iter_values(rows.iter().map(|q| q.record.payload.as_ref()))),
    ];
    let batch = RecordBatch::try_new(QUARANTINE_SCHEMA.clone(), columns)?;
    write(&QUARANTINE_SCHEMA, [batch])
}

/// Writes batches as one Parquet file with Wenu's settings.
pub fn write(schema: &SchemaRef, batches: impl IntoIterator<Item = RecordBatch>) -> Result<Bytes> {
    let mut out = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut out, schema.clone(), Some(properties()))?;
    for batch in batches {
        writer.write(&batch)?;
    }
    writer.close()?;
    Ok(Bytes::from(out))
}

/// Reads a whole Parquet file into record batches.
pub fn read(file: Bytes) -> Result<Vec<RecordBatch>> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)?.with_batch_size(64 * 1024).build()?;
    Ok(reader.collect::<Result<Vec<_>, _>>()?)
}
