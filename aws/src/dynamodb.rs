//! The table store port on DynamoDB.
//!
//! One item per key: `pk` (string, the partition), `sk` (number, the sort
//! key), `val` (binary, the opaque value), `ver` (number) and `expires_at`
//! (number, unix seconds), the table's TTL attribute. DynamoDB deletes
//! expired items within days, so every read also filters them out, as the
//! port promises.
//!
//! Conditions are DynamoDB condition expressions; batch reads retry their
//! `UnprocessedKeys`; transactions are `TransactWriteItems`, split at its
//! limit of 100 writes.

use std::collections::HashMap;
use std::ops::Range;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, KeysAndAttributes,
    ReturnValue, ScalarAttributeType, TableStatus, TimeToLiveSpecification, TransactWriteItem, Update,
};
use bytes::Bytes;
use wenu_core::clock::{self, SharedClock};
use wenu_core::table::{Expect, Item, ItemKey, Page, TableStore, Write};
use wenu_core::{Error, Result};

use crate::error::{classify, code};
use crate::retry::Backoff;

/// DynamoDB's limits on one call.
const MAX_BATCH_GET: usize = 100;
const MAX_TRANSACTION: usize = 100;

/// The attribute DynamoDB's TTL reads.
pub const TTL_ATTRIBUTE: &str = "expires_at";

/// A DynamoDB table; cheap to clone.
#[derive(Clone, Debug)]
pub struct DynamoTable {
    client: Client,
    table: String,
    /// Decides which items have expired (DynamoDB's TTL deletes lazily).
    clock: SharedClock,
}

impl DynamoTable {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        DynamoTable { client, table: table.into(), clock: clock::system() }
    }

    /// The same table, deciding expiry by `clock` instead of the machine's.
    pub fn with_clock(self, clock: SharedClock) -> Self {
        DynamoTable { clock, ..self }
    }

    /// Creates the table (on-demand billing, TTL on `expires_at`) if it does
    /// not exist, as the deployment template does; for development and tests.
    pub async fn create(client: Client, table: &str) -> Result<Self> {
        let attribute = |name: &str, kind| {
            AttributeDefinition::builder().attribute_name(name).attribute_type(kind).build().expect("all set")
        };
        let key = |name: &str, kind| {
            KeySchemaElement::builder().attribute_name(name).key_type(kind).build().expect("all set")
        };
        let created = client
            .create_table()
            .table_name(table)
            .attribute_definitions(attribute("pk", ScalarAttributeType::S))
            .attribute_definitions(attribute("sk", ScalarAttributeType::N))
            .key_schema(key("pk", KeyType::Hash))
            .key_schema(key("sk", KeyType::Range))
            .billing_mode(BillingMode::PayPerRequest)
            .send()
            .await;
        match created {
            Ok(_) => {}
            Err(e) if code(&e) == Some("ResourceInUseException") => {
                return Ok(DynamoTable::new(client, table));
            }
            Err(e) => return Err(table_error("CreateTable", &e)),
        }
        // A new table takes a moment to become usable on AWS.
        let mut backoff = Backoff::default();
        loop {
            let described = client
                .describe_table()
                .table_name(table)
                .send()
                .await
                .map_err(|e| table_error("DescribeTable", &e))?;
            if described.table().and_then(|t| t.table_status()) == Some(&TableStatus::Active) {
                break;
            }
            backoff
                .wait(
                    "DescribeTable",
                    Error::Table { message: format!("table {table} is not active"), retryable: true },
                )
                .await?;
        }
        client
            .update_time_to_live()
            .table_name(table)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .enabled(true)
                    .attribute_name(TTL_ATTRIBUTE)
                    .build()
                    .expect("all set"),
            )
            .send()
            .await
            .map_err(|e| table_error("UpdateTimeToLive", &e))?;
        Ok(DynamoTable::new(client, table))
    }

    pub fn name(&self) -> &str {
        &self.table
    }

    /// One write as an `Update`: the value, the next version and the expiry,
    /// under the condition `expect` asks for. Outside a transaction an
    /// `Anything` write also requires the item live (or absent), so that
    /// [`TableStore::put`] can restart an expired item's versions at 1.
    fn update(&self, write: &Write, now: i64, in_transaction: bool) -> Update {
        let mut update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(key_attributes(&write.key)))
            .expression_attribute_names("#val", "val")
            .expression_attribute_names("#ver", "ver")
            .expression_attribute_names("#exp", TTL_ATTRIBUTE)
            .expression_attribute_values(":val", AttributeValue::B(Blob::new(write.value.to_vec())))
            .expression_attribute_values(":one", number(1));
        let (set_version, condition) = match write.expect {
            Expect::Anything => {
                update = update.expression_attribute_values(":zero", number(0));
                let condition = (!in_transaction).then(|| format!("attribute_not_exists(pk) OR {LIVE}"));
                ("#ver = if_not_exists(#ver, :zero) + :one", condition)
            }
            Expect::Absent => ("#ver = :one", Some(ABSENT.to_owned())),
            Expect::Version(v) => {
                update = update.expression_attribute_values(":expected", number(v));
                ("#ver = :expected + :one", Some(format!("#ver = :expected AND {LIVE}")))
            }
        };
        let mut expression = format!("SET #val = :val, {set_version}");
        match write.expires_at {
            Some(at) => {
                expression.push_str(", #exp = :exp");
                update = update.expression_attribute_values(":exp", number(at));
            }
            None => expression.push_str(" REMOVE #exp"),
        }
        if let Some(condition) = condition {
            update = update.condition_expression(condition).expression_attribute_values(":now", number(now));
        }
        update.update_expression(expression).build().expect("table, key and expression are set")
    }

    /// Applies one write on its own; returns the new version.
    async fn update_item(
        &self,
        write: &Write,
        now: i64,
    ) -> Result<u64, SdkError<UpdateItemError, HttpResponse>> {
        let update = self.update(write, now, false);
        let output = self
            .client
            .update_item()
            .table_name(update.table_name())
            .set_key(Some(update.key().clone()))
            .update_expression(update.update_expression())
            .set_condition_expression(update.condition_expression().map(str::to_owned))
            .set_expression_attribute_names(update.expression_attribute_names().cloned())
            .set_expression_attribute_values(update.expression_attribute_values().cloned())
            .return_values(ReturnValue::UpdatedNew)
            .send()
            .await?;
        Ok(output.attributes().and_then(|a| a.get("ver")).and_then(as_u64).unwrap_or(1))
    }

    async fn query_page(
        &self,
        partition: &str,
        sort: &Range<i64>,
        limit: usize,
        forward: bool,
        start: Option<HashMap<String, AttributeValue>>,
    ) -> Result<(Vec<Item>, Option<i64>)> {
        let output = self
            .client
            .query()
            .table_name(&self.table)
            .consistent_read(true)
            .key_condition_expression("pk = :pk AND sk BETWEEN :lo AND :hi")
            .filter_expression(LIVE)
            .expression_attribute_names("#exp", TTL_ATTRIBUTE)
            .expression_attribute_values(":pk", AttributeValue::S(partition.to_owned()))
            .expression_attribute_values(":lo", number(sort.start))
            .expression_attribute_values(":hi", number(sort.end - 1))
            .expression_attribute_values(":now", number(self.clock.now_secs()))
            .scan_index_forward(forward)
            .limit(limit.clamp(1, i32::MAX as usize) as i32)
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(|e| table_error("Query", &e))?;
        let items = output.items().iter().map(item).collect::<Result<Vec<_>>>()?;
        let last = output.last_evaluated_key().and_then(|k| k.get("sk")).and_then(as_i64);
        Ok((items, last))
    }
}

#[async_trait]
impl TableStore for DynamoTable {
    async fn get(&self, key: &ItemKey) -> Result<Option<Item>> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key_attributes(key)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| table_error("GetItem", &e))?;
        let now = self.clock.now_secs();
        output.item().map(item).transpose().map(|i| i.filter(|i| is_live(i, now)))
    }

    async fn get_many(&self, keys: &[ItemKey]) -> Result<Vec<Option<Item>>> {
        // BatchGetItem refuses a key twice in one call; ask for each once.
        let mut unique: Vec<&ItemKey> = keys.iter().collect();
        unique.sort();
        unique.dedup();
        let mut found: HashMap<ItemKey, Item> = HashMap::new();
        for chunk in unique.chunks(MAX_BATCH_GET) {
            let mut request = KeysAndAttributes::builder().consistent_read(true);
            for key in chunk {
                request = request.keys(key_attributes(key));
            }
            let mut pending = Some(request.build().expect("keys are set"));
            let mut backoff = Backoff::default();
            while let Some(request) = pending.take() {
                let output = self
                    .client
                    .batch_get_item()
                    .request_items(&self.table, request)
                    .send()
                    .await
                    .map_err(|e| table_error("BatchGetItem", &e))?;
                let items = output
                    .responses()
                    .and_then(|r| r.get(&self.table))
                    .map(Vec::as_slice)
                    .unwrap_or_default();
                for attributes in items {
                    let item = item(attributes)?;
                    found.insert(item.key.clone(), item);
                }
                pending = output
                    .unprocessed_keys()
                    .and_then(|u| u.get(&self.table))
                    .filter(|u| !u.keys().is_empty())
                    .cloned();
                if let Some(left) = &pending {
                    metrics::counter!("wenu_aws_partial_failures_total", "call" => "BatchGetItem")
                        .increment(left.keys().len() as u64);
                    backoff
                        .wait(
                            "BatchGetItem",
                            Error::Table {
                                message: "unprocessed keys kept coming back".into(),
                                retryable: true,
                            },
                        )
                        .await?;
                }
            }
        }
        let now = self.clock.now_secs();
        Ok(keys.iter().map(|k| found.get(k).filter(|i| is_live(i, now)).cloned()).collect())
    }

    async fn put(&self, key: &ItemKey, value: Bytes, expires_at: Option<i64>, expect: Expect) -> Result<u64> {
        let write = Write { key: key.clone(), value, expires_at, expect };
        let now = self.clock.now_secs();
        match self.update_item(&write, now).await {
            Ok(version) => Ok(version),
            // Only an expired item, not yet removed by DynamoDB, fails an
            // `Anything` write: replace it as a new item. Someone else doing
            // so in between fails this as any lost race does.
            Err(e) if expect == Expect::Anything && is_condition_failure(&e) => {
                let fresh = Write { expect: Expect::Absent, ..write };
                self.update_item(&fresh, now).await.map_err(|e| condition_or(key, &e))
            }
            Err(e) => Err(condition_or(key, &e)),
        }
    }

    async fn transact(&self, writes: Vec<Write>) -> Result<()> {
        let now = self.clock.now_secs();
        for chunk in writes.chunks(MAX_TRANSACTION) {
            let items = chunk
                .iter()
                .map(|w| TransactWriteItem::builder().update(self.update(w, now, true)).build())
                .collect();
            self.client.transact_write_items().set_transact_items(Some(items)).send().await.map_err(|e| {
                let cancelled_by_condition = matches!(
                    e.as_service_error(),
                    Some(TransactWriteItemsError::TransactionCanceledException(c))
                        if c.cancellation_reasons().iter().any(|r| r.code() == Some("ConditionalCheckFailed"))
                );
                if cancelled_by_condition {
                    Error::ConditionFailed(format!(
                        "a condition of a {}-write transaction failed",
                        chunk.len()
                    ))
                } else {
                    table_error("TransactWriteItems", &e)
                }
            })?;
        }
        Ok(())
    }

    async fn delete(&self, key: &ItemKey) -> Result<()> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key_attributes(key)))
            .send()
            .await
            .map(drop)
            .map_err(|e| table_error("DeleteItem", &e))
    }

    async fn query(&self, partition: &str, sort: Range<i64>, limit: usize) -> Result<Page> {
        let mut items = Vec::new();
        if sort.start >= sort.end || limit == 0 {
            return Ok(Page { items, next: None });
        }
        // DynamoDB's Limit counts items before the expiry filter, and a page
        // stops at 1 MB: keep asking until `limit` live items or the end.
        let mut start = None;
        loop {
            let (page, last) = self.query_page(partition, &sort, limit - items.len(), true, start).await?;
            items.extend(page);
            match last {
                None => return Ok(Page { items, next: None }),
                Some(last) if items.len() >= limit => return Ok(Page { items, next: Some(last + 1) }),
                Some(last) => {
                    start = Some(key_attributes(&ItemKey { partition: partition.to_owned(), sort: last }))
                }
            }
        }
    }

    async fn last(&self, partition: &str, sort: Range<i64>) -> Result<Option<Item>> {
        if sort.start >= sort.end {
            return Ok(None);
        }
        let mut start = None;
        loop {
            let (mut page, last) = self.query_page(partition, &sort, 1, false, start).await?;
            if let Some(item) = page.pop() {
                return Ok(Some(item));
            }
            match last {
                None => return Ok(None),
                Some(last) => {
                    start = Some(key_attributes(&ItemKey { partition: partition.to_owned(), sort: last }))
                }
            }
        }
    }
}

/// The item is absent, or expired and waiting for DynamoDB's TTL deletion
/// (`#exp` and `:now` bound).
const ABSENT: &str = "attribute_not_exists(pk) OR (attribute_exists(#exp) AND #exp <= :now)";

/// The item has not expired (`#exp` and `:now` bound).
const LIVE: &str = "(attribute_not_exists(#exp) OR #exp > :now)";

fn key_attributes(key: &ItemKey) -> HashMap<String, AttributeValue> {
    HashMap::from([
        ("pk".to_owned(), AttributeValue::S(key.partition.clone())),
        ("sk".to_owned(), number(key.sort)),
    ])
}

fn number(n: impl ToString) -> AttributeValue {
    AttributeValue::N(n.to_string())
}

fn as_i64(value: &AttributeValue) -> Option<i64> {
    value.as_n().ok()?.parse().ok()
}

fn as_u64(value: &AttributeValue) -> Option<u64> {
    value.as_n().ok()?.parse().ok()
}

fn item(attributes: &HashMap<String, AttributeValue>) -> Result<Item> {
    let field = |name: &str| attributes.get(name).ok_or_else(|| permanent(format!("item without {name}")));
    Ok(Item {
        key: ItemKey {
            partition: field("pk")?.as_s().map_err(|_| permanent("pk is not a string"))?.clone(),
            sort: as_i64(field("sk")?).ok_or_else(|| permanent("sk is not a number"))?,
        },
        value: Bytes::copy_from_slice(
            field("val")?.as_b().map_err(|_| permanent("val is not binary"))?.as_ref(),
        ),
        version: as_u64(field("ver")?).ok_or_else(|| permanent("ver is not a number"))?,
        expires_at: attributes.get(TTL_ATTRIBUTE).and_then(as_i64),
    })
}

fn is_live(item: &Item, now: i64) -> bool {
    item.expires_at.is_none_or(|at| at > now)
}

fn permanent(message: impl Into<String>) -> Error {
    Error::Table { message: message.into(), retryable: false }
}

fn table_error<E, R>(call: &str, err: &SdkError<E, R>) -> Error
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let (message, retryable) = classify(err);
    Error::Table { message: format!("DynamoDB {call}: {message}"), retryable }
}

fn is_condition_failure<E, R>(err: &SdkError<E, R>) -> bool
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata,
{
    code(err) == Some("ConditionalCheckFailedException")
}

/// A failed condition is the port's `ConditionFailed`; anything else a table error.
fn condition_or(key: &ItemKey, err: &SdkError<UpdateItemError, HttpResponse>) -> Error {
    if is_condition_failure(err) {
        Error::ConditionFailed(format!("{}/{}: not in the expected state", key.partition, key.sort))
    } else {
        table_error("UpdateItem", err)
    }
}
