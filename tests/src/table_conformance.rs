//! The table store port's conformance suite, written once and run against
//! every backend (the embedded table now, DynamoDB on moto with the AWS
//! adapter). Each check takes a fresh, empty table.

use bytes::Bytes;
use wenu_core::Error;
use wenu_core::table::{Expect, ItemKey, TableStore, Write, query_all};

fn key(partition: &str, sort: i64) -> ItemKey {
    ItemKey { partition: partition.into(), sort }
}

fn now_secs() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

/// Versions count writes; a write that expects another version or absence fails.
pub async fn conditional_writes(table: &dyn TableStore) {
    let k = key("acme#dev-1#temp#1m", 60_000);
    assert_eq!(table.get(&k).await.unwrap(), None);
    assert_eq!(table.put(&k, Bytes::from("one"), None, Expect::Absent).await.unwrap(), 1);
    let err = table.put(&k, Bytes::from("again"), None, Expect::Absent).await.unwrap_err();
    assert!(matches!(err, Error::ConditionFailed(_)), "{err}");
    assert_eq!(table.put(&k, Bytes::from("two"), None, Expect::Version(1)).await.unwrap(), 2);
    let err = table.put(&k, Bytes::from("stale"), None, Expect::Version(1)).await.unwrap_err();
    assert!(matches!(err, Error::ConditionFailed(_)), "{err}");
    let item = table.get(&k).await.unwrap().unwrap();
    assert_eq!((item.value, item.version), (Bytes::from("two"), 2));
    assert_eq!(table.put(&k, Bytes::from("three"), None, Expect::Anything).await.unwrap(), 3);
    table.delete(&k).await.unwrap();
    assert_eq!(table.get(&k).await.unwrap(), None);

    // Several at once, in the order asked, missing ones as None.
    let (a, b) = (key("many", 1), key("many", 2));
    table.put(&a, Bytes::from("a"), None, Expect::Absent).await.unwrap();
    table.put(&b, Bytes::from("b"), None, Expect::Absent).await.unwrap();
    let got = table.get_many(&[b.clone(), key("many", 3), a.clone()]).await.unwrap();
    let values: Vec<_> = got.iter().map(|i| i.as_ref().map(|i| (i.key.clone(), i.value.clone()))).collect();
    assert_eq!(values, [Some((b, Bytes::from("b"))), None, Some((a, Bytes::from("a")))]);
    assert!(table.get_many(&[]).await.unwrap().is_empty());
}

/// A query returns a partition's sort key range in order, page by page.
pub async fn range_queries_and_pages(table: &dyn TableStore) {
    let writes = (0..25)
        .map(|i| Write {
            key: key("p", i * 10),
            value: Bytes::from(format!("v{i}")),
            expires_at: None,
            expect: Expect::Absent,
        })
        .chain([Write {
            key: key("other", 50),
            value: Bytes::from("x"),
            expires_at: None,
            expect: Expect::Absent,
        }])
        .collect();
    table.transact(writes).await.unwrap();
    let page = table.query("p", 50..200, 4).await.unwrap();
    assert_eq!(page.items.iter().map(|i| i.key.sort).collect::<Vec<_>>(), [50, 60, 70, 80]);
    // The next page starts after the last item returned, at or before the
    // next item (DynamoDB resumes right after its last evaluated key).
    assert!(page.next.is_some_and(|next| next > 80 && next <= 90), "{:?}", page.next);
    let all = query_all(table, "p", 50..200).await.unwrap();
    assert_eq!(
        all.iter().map(|i| i.key.sort).collect::<Vec<_>>(),
        (5..20).map(|i| i * 10).collect::<Vec<_>>()
    );
    assert_eq!(all[0].value, Bytes::from("v5"));
    assert!(table.query("p", 1000..2000, 10).await.unwrap().items.is_empty());
    // The last item of a range, newest first: what "latest value" reads.
    let last = table.last("p", 50..200).await.unwrap().unwrap();
    assert_eq!((last.key.sort, last.value), (190, Bytes::from("v19")));
    assert_eq!(table.last("p", 0..10).await.unwrap().unwrap().key.sort, 0);
    assert_eq!(table.last("p", 1000..2000).await.unwrap(), None);
}

/// Expired items are invisible, and a new item may take their place.
pub async fn expired_items_are_gone(table: &dyn TableStore) {
    let (old, live) = (key("ttl", 1), key("ttl", 2));
    table.put(&old, Bytes::from("old"), Some(now_secs() - 10), Expect::Anything).await.unwrap();
    table.put(&live, Bytes::from("live"), Some(now_secs() + 3600), Expect::Anything).await.unwrap();
    assert_eq!(table.get(&old).await.unwrap(), None);
    assert_eq!(table.get_many(std::slice::from_ref(&old)).await.unwrap(), [None]);
    let items = query_all(table, "ttl", 0..10).await.unwrap();
    assert_eq!(items.iter().map(|i| i.key.sort).collect::<Vec<_>>(), [2]);
    table.put(&key("ttl", 3), Bytes::from("gone"), Some(now_secs() - 10), Expect::Anything).await.unwrap();
    assert_eq!(
        table.last("ttl", 0..10).await.unwrap().map(|i| i.key.sort),
        Some(2),
        "expired items are skipped"
    );
    assert!(items[0].expires_at.is_some_and(|at| at > now_secs()));
    assert_eq!(table.put(&old, Bytes::from("new"), None, Expect::Absent).await.unwrap(), 1);
}

/// A transaction whose condition fails writes nothing.
pub async fn transactions_are_all_or_nothing(table: &dyn TableStore) {
    let (a, b) = (key("tx", 1), key("tx", 2));
    table.put(&b, Bytes::from("b"), None, Expect::Absent).await.unwrap();
    let writes = vec![
        Write { key: a.clone(), value: Bytes::from("a"), expires_at: None, expect: Expect::Absent },
        Write { key: b.clone(), value: Bytes::from("b2"), expires_at: None, expect: Expect::Version(7) },
    ];
    let err = table.transact(writes).await.unwrap_err();
    assert!(matches!(err, Error::ConditionFailed(_)), "{err}");
    assert_eq!(table.get(&a).await.unwrap(), None);
    assert_eq!(table.get(&b).await.unwrap().unwrap().value, Bytes::from("b"));
}
