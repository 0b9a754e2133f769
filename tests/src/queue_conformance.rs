//! The queue port's conformance suite, written once and run against every
//! backend (the embedded queue now, SQS on moto with the AWS adapter).
//!
//! Each check takes a fresh, empty queue whose max receive count is
//! [`MAX_RECEIVE_COUNT`]. Redelivery is driven with `change_visibility(0)`,
//! never by waiting for a timeout, so the suite runs without sleeping.

use std::time::Duration;

use wenu_core::queue::{NewMessage, Queue, Received};

/// The `maxReceiveCount` the suite expects its queues to have.
pub const MAX_RECEIVE_COUNT: u32 = 3;

const LONG: Duration = Duration::from_secs(300);

fn message(group: &str, body: &str) -> NewMessage {
    NewMessage { group: group.into(), body: body.as_bytes().to_vec().into() }
}

fn bodies(received: &[Received]) -> Vec<String> {
    received.iter().map(|r| String::from_utf8_lossy(&r.body).into_owned()).collect()
}

/// Receives until a call returns nothing (backends may return fewer than asked).
async fn receive_all(queue: &dyn Queue) -> Vec<Received> {
    let mut all = Vec::new();
    loop {
        let batch = queue.receive(10, LONG).await.expect("receive");
        if batch.is_empty() {
            return all;
        }
        all.extend(batch);
    }
}

/// Sent messages come back once each; deleted ones are gone.
pub async fn send_receive_delete(queue: &dyn Queue) {
    let sent: Vec<_> = (0..5).map(|i| message(&format!("g{i}"), &format!("m{i}"))).collect();
    queue.send_batch(sent).await.unwrap();
    assert_eq!(queue.depth().await.unwrap().visible, 5);
    let received = receive_all(queue).await;
    let mut got = bodies(&received);
    got.sort();
    assert_eq!(got, ["m0", "m1", "m2", "m3", "m4"]);
    assert!(received.iter().all(|r| r.receive_count == 1));
    let depth = queue.depth().await.unwrap();
    assert_eq!((depth.visible, depth.in_flight), (0, 5));
    for r in &received {
        queue.delete(&r.receipt).await.unwrap();
    }
    let depth = queue.depth().await.unwrap();
    assert_eq!((depth.visible, depth.in_flight, depth.dead), (0, 0, 0));
    assert!(queue.receive(10, LONG).await.unwrap().is_empty());
}

/// A batch delete removes every message it names, however many calls it
/// takes the backend (SQS takes ten a call).
pub async fn batch_delete(queue: &dyn Queue) {
    let sent: Vec<_> = (0..23).map(|i| message(&format!("g{i}"), &format!("m{i}"))).collect();
    queue.send_batch(sent).await.unwrap();
    let received = receive_all(queue).await;
    assert_eq!(received.len(), 23);
    queue.delete_batch(&[]).await.unwrap();
    let (kept, deleted) = received.split_at(1);
    let receipts: Vec<String> = deleted.iter().map(|r| r.receipt.clone()).collect();
    queue.delete_batch(&receipts).await.unwrap();
    let depth = queue.depth().await.unwrap();
    assert_eq!((depth.visible, depth.in_flight, depth.dead), (0, 1, 0));
    queue.change_visibility(&kept[0].receipt, Duration::ZERO).await.unwrap();
    assert_eq!(bodies(&receive_all(queue).await), bodies(kept), "only the one left out comes back");
}

/// An in-flight message is hidden until it is given back, then redelivered
/// with a higher receive count.
pub async fn visibility_timeout(queue: &dyn Queue) {
    queue.send_batch(vec![message("g", "job")]).await.unwrap();
    let first = queue.receive(10, LONG).await.unwrap();
    assert_eq!(bodies(&first), ["job"]);
    assert!(queue.receive(10, LONG).await.unwrap().is_empty(), "in flight, so hidden");
    queue.change_visibility(&first[0].receipt, Duration::ZERO).await.unwrap();
    let second = queue.receive(10, LONG).await.unwrap();
    assert_eq!(bodies(&second), ["job"]);
    assert_eq!((second[0].id.as_str(), second[0].receive_count), (first[0].id.as_str(), 2));
    queue.delete(&second[0].receipt).await.unwrap();
    assert!(queue.receive(10, LONG).await.unwrap().is_empty());
}

/// A group's messages come out in order, and none to another receiver while
/// one is in flight; other groups are not held up.
pub async fn one_in_flight_per_group(queue: &dyn Queue) {
    let sent = vec![message("a", "a1"), message("a", "a2"), message("b", "b1"), message("a", "a3")];
    queue.send_batch(sent).await.unwrap();
    let first = queue.receive(1, LONG).await.unwrap();
    assert_eq!(bodies(&first), ["a1"]);
    let others = receive_all(queue).await;
    assert_eq!(bodies(&others), ["b1"], "group a is in flight");
    queue.delete(&first[0].receipt).await.unwrap();
    queue.delete(&others[0].receipt).await.unwrap();
    // The rest of the group in order. One receive may hand out several
    // messages of a group, in order (SQS does); no other receive gets any of
    // them while they are in flight.
    let mut rest = Vec::new();
    loop {
        let next = queue.receive(10, LONG).await.unwrap();
        if next.is_empty() {
            break;
        }
        assert!(queue.receive(10, LONG).await.unwrap().is_empty(), "group a is in flight");
        for r in &next {
            queue.delete(&r.receipt).await.unwrap();
        }
        rest.extend(bodies(&next));
    }
    assert_eq!(rest, ["a2", "a3"]);
}

/// A message that keeps failing ends in the dead-letter queue after the max
/// receive count, stops blocking its group, and a redrive brings it back.
pub async fn dead_letters_and_redrive(queue: &dyn Queue) {
    queue.send_batch(vec![message("poison", "bad"), message("poison", "next")]).await.unwrap();
    for attempt in 1..=MAX_RECEIVE_COUNT {
        let got = queue.receive(1, LONG).await.unwrap();
        assert_eq!(bodies(&got), ["bad"], "attempt {attempt}");
        assert_eq!(got[0].receive_count, attempt);
        queue.change_visibility(&got[0].receipt, Duration::ZERO).await.unwrap();
    }
    let after = receive_all(queue).await;
    assert_eq!(bodies(&after), ["next"], "the poison message is dead, its group moves on");
    queue.delete(&after[0].receipt).await.unwrap();
    assert_eq!(queue.depth().await.unwrap().dead, 1);

    assert_eq!(queue.redrive(None).await.unwrap(), 1);
    assert_eq!(queue.depth().await.unwrap().dead, 0);
    let redriven = receive_all(queue).await;
    assert_eq!(bodies(&redriven), ["bad"]);
    assert_eq!(redriven[0].receive_count, 1, "a redriven message starts over");
    queue.delete(&redriven[0].receipt).await.unwrap();
}

/// More messages than one backend call takes, with bodies that are not
/// text, come back whole.
pub async fn large_batches_and_binary_bodies(queue: &dyn Queue) {
    let sent: Vec<NewMessage> = (0..25u8)
        .map(|i| NewMessage { group: format!("g{}", i % 7), body: vec![0, i, 0xff, b'\n', i].into() })
        .collect();
    queue.send_batch(sent.clone()).await.unwrap();
    // Nothing is left in flight after each round, so an empty receive means
    // every message has been seen.
    let mut got = Vec::new();
    loop {
        let batch = queue.receive(10, LONG).await.unwrap();
        if batch.is_empty() {
            break;
        }
        for r in batch {
            queue.delete(&r.receipt).await.unwrap();
            got.push((r.group, r.body.to_vec()));
        }
    }
    let mut want: Vec<(String, Vec<u8>)> = sent.into_iter().map(|m| (m.group, m.body.to_vec())).collect();
    got.sort();
    want.sort();
    assert_eq!(got, want);
}
