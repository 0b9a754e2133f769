//! The table store port: items under a partition key, ordered by a numeric
//! sort key, with conditional writes and a time to live.
//!
//! DynamoDB implements it on AWS, an embedded table on one machine
//! (`wenu-local`). Stats rollups use it with this key layout:
//! partition `{company}#{device}#{sensor}#{resolution}`, sort key = bucket
//! start; the alarms use it for alarm state.
//!
//! Every item carries a version, which a conditional write compares: a
//! read-modify-write that lost a race fails with
//! [`Error::ConditionFailed`](crate::Error::ConditionFailed) instead of
//! overwriting. An expired item (its `expires_at` passed) is never returned,
//! whether or not the backend has removed it yet (DynamoDB's TTL deletes
//! within days; the embedded store sweeps).

use std::ops::Range;

use async_trait::async_trait;
use bytes::Bytes;

use crate::Result;

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ItemKey {
    pub partition: String,
    pub sort: i64,
}

/// One stored item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub key: ItemKey,
    /// The item's content, opaque to the store.
    pub value: Bytes,
    /// 1 for a new item, +1 on every write.
    pub version: u64,
    /// Unix seconds after which the item is gone (DynamoDB's TTL attribute).
    pub expires_at: Option<i64>,
}

/// What a write expects to find.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Write whatever is there.
    Anything,
    /// The item must not exist (or be expired).
    Absent,
    /// The item must exist at this version.
    Version(u64),
}

/// One conditional write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write {
    pub key: ItemKey,
    pub value: Bytes,
    pub expires_at: Option<i64>,
    pub expect: Expect,
}

/// One page of a query.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Page {
    /// In sort key order.
    pub items: Vec<Item>,
    /// Where the next page starts, if the range holds more.
    pub next: Option<i64>,
}

#[async_trait]
pub trait TableStore: Send + Sync + 'static {
    async fn get(&self, key: &ItemKey) -> Result<Option<Item>>;

    /// Several items at once, in the order of `keys` (DynamoDB
    /// `BatchGetItem`; the AWS adapter splits by its limit of 100 keys).
    async fn get_many(&self, keys: &[ItemKey]) -> Result<Vec<Option<Item>>>;

    /// Writes `value` if the item is as `expect`ed; returns the new version.
    async fn put(&self, key: &ItemKey, value: Bytes, expires_at: Option<i64>, expect: Expect) -> Result<u64>;

    /// Several conditional writes, applied together: if a condition fails,
    /// none of them is (DynamoDB `TransactWriteItems`, whose limit of 100
    /// items the AWS adapter works within by splitting: then a failure may
    /// leave earlier chunks applied, so callers make each write idempotent).
    async fn transact(&self, writes: Vec<Write>) -> Result<()>;

    async fn delete(&self, key: &ItemKey) -> Result<()>;

    /// Items of `partition` with a sort key in `sort`, at most `limit`.
    async fn query(&self, partition: &str, sort: Range<i64>, limit: usize) -> Result<Page>;

    /// The item of `partition` with the greatest sort key in `sort`
    /// (DynamoDB `Query` with `ScanIndexForward=false, Limit=1`).
    async fn last(&self, partition: &str, sort: Range<i64>) -> Result<Option<Item>>;
}

/// All items of a range, following pages.
pub async fn query_all(store: &dyn TableStore, partition: &str, sort: Range<i64>) -> Result<Vec<Item>> {
    let (mut items, mut start) = (Vec::new(), sort.start);
    loop {
        let page = store.query(partition, start..sort.end, 1000).await?;
        items.extend(page.items);
        match page.next {
            Some(next) => start = next,
            None => return Ok(items),
        }
    }
}
