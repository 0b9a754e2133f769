//! The conformance suites of the queue and table store ports against the
//! embedded backends, plus what only the embedded backends promise.

use std::time::Duration;

use wenu_core::queue::{NewMessage, Queue};
use wenu_local::{QueueOptions, SqliteQueue, SqliteTable};
use wenu_tests::{queue_conformance as queue_suite, table_conformance as table_suite};

fn queue(dir: &tempfile::TempDir, name: &str) -> SqliteQueue {
    let options = QueueOptions { max_receive_count: queue_suite::MAX_RECEIVE_COUNT };
    SqliteQueue::open(&dir.path().join(format!("{name}.db")), options).unwrap()
}

fn table(dir: &tempfile::TempDir, name: &str) -> SqliteTable {
    SqliteTable::open(&dir.path().join(format!("{name}.db"))).unwrap()
}

#[tokio::test]
async fn sqlite_queue_passes_the_queue_suite() {
    let dir = tempfile::tempdir().unwrap();
    queue_suite::send_receive_delete(&queue(&dir, "a")).await;
    queue_suite::visibility_timeout(&queue(&dir, "b")).await;
    queue_suite::one_in_flight_per_group(&queue(&dir, "c")).await;
    queue_suite::large_batches_and_binary_bodies(&queue(&dir, "e")).await;
    queue_suite::dead_letters_and_redrive(&queue(&dir, "d")).await;
    queue_suite::batch_delete(&queue(&dir, "f")).await;
}

#[tokio::test]
async fn sqlite_table_passes_the_table_suite() {
    let dir = tempfile::tempdir().unwrap();
    table_suite::conditional_writes(&table(&dir, "a")).await;
    table_suite::range_queries_and_pages(&table(&dir, "b")).await;
    table_suite::expired_items_are_gone(&table(&dir, "c")).await;
    table_suite::transactions_are_all_or_nothing(&table(&dir, "d")).await;
}

#[tokio::test]
async fn queued_messages_survive_a_reopen_and_stale_receipts_do_nothing() {
    let dir = tempfile::tempdir().unwrap();
    {
        let q = queue(&dir, "q");
        q.send_batch(vec![NewMessage { group: "g".into(), body: "kept".into() }]).await.unwrap();
    }
    let q = queue(&dir, "q");
    let first = q.receive(10, Duration::from_secs(60)).await.unwrap();
    assert_eq!(first.len(), 1);
    q.change_visibility(&first[0].receipt, Duration::ZERO).await.unwrap();
    let second = q.receive(10, Duration::from_secs(60)).await.unwrap();
    q.delete(&first[0].receipt).await.unwrap();
    assert_eq!(q.depth().await.unwrap().in_flight, 1, "the first delivery's receipt no longer deletes");
    q.delete(&second[0].receipt).await.unwrap();
    assert_eq!(q.depth().await.unwrap(), Default::default());
}

#[tokio::test]
async fn the_sweeper_removes_expired_items() {
    use wenu_core::table::{Expect, ItemKey, TableStore};
    let dir = tempfile::tempdir().unwrap();
    let t = table(&dir, "t");
    let k = |sort| ItemKey { partition: "p".into(), sort };
    t.put(&k(1), "a".into(), Some(100), Expect::Anything).await.unwrap();
    t.put(&k(2), "b".into(), Some(i64::MAX), Expect::Anything).await.unwrap();
    t.put(&k(3), "c".into(), None, Expect::Anything).await.unwrap();
    assert_eq!(t.sweep(1_000).await.unwrap(), 1);
    assert_eq!(t.sweep(1_000).await.unwrap(), 0);
}

#[tokio::test]
async fn sqlite_stream_passes_the_stream_suite() {
    use wenu_local::{SqliteStream, StreamOptions};
    use wenu_tests::stream_conformance as stream_suite;
    let dir = tempfile::tempdir().unwrap();
    let stream = |name: &str| {
        SqliteStream::open(&dir.path().join(format!("{name}.db")), StreamOptions::default()).unwrap()
    };
    stream_suite::append_and_read_back(&stream("a")).await;
    stream_suite::start_positions(&stream("b")).await;
    stream_suite::checkpoints(&stream("c")).await;
}

#[tokio::test]
async fn local_directory_passes_object_stores_own_suite() {
    use object_store::integration;
    let dir = tempfile::tempdir().unwrap();
    let store = object_store::local::LocalFileSystem::new_with_prefix(dir.path()).unwrap();
    integration::put_get_delete_list(&store).await;
    integration::get_opts(&store).await;
    integration::put_opts(&store, false).await;
    integration::list_uses_directories_correctly(&store).await;
    integration::list_with_delimiter(&store).await;
    integration::rename_and_copy(&store).await;
    integration::copy_if_not_exists(&store).await;
    integration::stream_get(&store).await;
}

#[tokio::test]
async fn keyring_file_passes_the_keyring_suite() {
    use wenu_local::KeyringFile;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keyring.json");
    let (mut writer, mut reader) = (KeyringFile::new(&path), KeyringFile::new(&path));
    wenu_tests::keyring_conformance::provisioned_and_rotated_keys_reach_a_reader(&mut writer, &mut reader)
        .await;
    let path = dir.path().join("imported.json");
    let (mut writer, mut reader) = (KeyringFile::new(&path), KeyringFile::new(&path));
    wenu_tests::keyring_conformance::an_imported_fleet_reaches_a_reader(&mut writer, &mut reader).await;
    let path = dir.path().join("concurrent.json");
    let (mut first, mut second, mut reader) =
        (KeyringFile::new(&path), KeyringFile::new(&path), KeyringFile::new(&path));
    wenu_tests::keyring_conformance::concurrent_writers_lose_no_key(&mut first, &mut second, &mut reader)
        .await;
}
