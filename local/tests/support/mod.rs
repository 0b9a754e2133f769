//! What the consumer tests share.

use bytes::Bytes;
use wenu_core::stream::{NewRecord, Position, Stream};
use wenu_local::SqliteStream;

/// Appends `n` records of one device and returns their positions.
pub async fn append(stream: &SqliteStream, n: usize) -> Vec<Position> {
    let records = (0..n)
        .map(|i| NewRecord {
            device_id: "d".into(),
            topic: "wenu/d/telemetry".into(),
            received_at: i as i64,
            payload: Bytes::from_static(b"payload"),
        })
        .collect();
    stream.append(records).await.unwrap()
}
