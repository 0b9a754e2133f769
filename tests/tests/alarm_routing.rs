//! Escalation and silences through the real stage, store, dispatcher and
//! webhook notifier, with receivers on 127.0.0.1: an alarm nobody
//! acknowledges reaches the on-call channel after its delay (tokio's paused
//! clock stands in for the minutes), once, and hears its clear; a silenced
//! device's transitions are recorded and notify nobody.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use wenu_alarms::{
    AckOutcome, Change, Channel, Dispatcher, Escalator, FixedChannels, Route, Silence, WebhookNotifier,
    WebhookPolicy,
};
use wenu_tests::alarm_fleet::{Fleet, fast_retries, too_hot};
use wenu_tests::webhook_receiver::{Received, Receiver};

/// The alarm ids and changes a receiver got, with the escalation they were part of.
fn seen(received: &[Received]) -> Vec<(String, Change, Option<u32>)> {
    received
        .iter()
        .map(|r| {
            (
                r.notification.transition.device.clone(),
                r.notification.transition.change,
                r.notification.escalation,
            )
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn an_unacknowledged_alarm_escalates_after_its_delay_and_an_acknowledged_one_does_not() {
    let fleet = Fleet::new(&["d1", "d2"]);
    let store = fleet.store();
    let (first, on_call) = (Receiver::start("s1").await, Receiver::start("s2").await);
    let escalating = Route { escalate_after_secs: Some(900), ..Route::default() };
    let channels = Arc::new(FixedChannels::new(vec![
        first.target("first"),
        Channel { route: escalating, ..on_call.target("on-call") },
    ]));
    let notifier = WebhookNotifier::new(channels.clone(), WebhookPolicy::private_networks()).unwrap();
    let dispatcher = Dispatcher::new(store.clone(), vec![Arc::new(notifier)], fast_retries())
        .with_escalation(Escalator::new(store.clone(), channels));
    let mut stage = fleet.stage(vec![too_hot()], Arc::new(Notify::new()));

    // Both devices run hot now; the first channel hears both raises at once.
    let now = wenu_core::clock::now_ms();
    stage
        .evaluate(&[fleet.record(0, "d1", 1, now, 40.0), fleet.record(1, "d2", 1, now, 41.0)])
        .await
        .unwrap();
    dispatcher.deliver_due().await.unwrap();
    assert_eq!(first.received().len(), 2);
    assert!(on_call.received().is_empty());

    // d2's alarm is acknowledged after a minute; d1's is not.
    tokio::time::advance(Duration::from_secs(60)).await;
    let d2_alarm = store.active("acme").await.unwrap().into_iter().find(|a| a.device == "d2").unwrap();
    let acked = store.acknowledge("acme", &d2_alarm.id, "token:ops", "on it", now + 60_000).await.unwrap();
    assert!(matches!(acked, AckOutcome::Acknowledged(_)));

    // Nothing escalates before 15 minutes...
    tokio::time::advance(Duration::from_secs(830)).await;
    dispatcher.deliver_due().await.unwrap();
    assert!(on_call.received().is_empty(), "{:?}", seen(&on_call.received()));

    // ...then d1's alarm does, once however often the dispatcher looks.
    tokio::time::advance(Duration::from_secs(20)).await;
    dispatcher.deliver_due().await.unwrap();
    tokio::time::advance(Duration::from_secs(60)).await;
    dispatcher.deliver_due().await.unwrap();
    assert_eq!(seen(&on_call.received()), [("d1".to_owned(), Change::Raised, Some(900))]);
    let d1_alarm = store.active("acme").await.unwrap().into_iter().find(|a| a.device == "d1").unwrap();
    assert_eq!(d1_alarm.escalated, [900]);

    // Its clear reaches both channels; d2's never reaches the on-call one.
    let later = now + 1_000_000;
    stage
        .evaluate(&[fleet.record(2, "d1", 2, later, 20.0), fleet.record(3, "d2", 2, later, 20.0)])
        .await
        .unwrap();
    dispatcher.deliver_due().await.unwrap();
    assert_eq!(
        seen(&on_call.received()),
        [("d1".to_owned(), Change::Raised, Some(900)), ("d1".to_owned(), Change::Cleared, None)]
    );
    let first_seen = seen(&first.received());
    assert_eq!(first_seen.len(), 5, "two raises, d2's acknowledgement, two clears: {first_seen:?}");
    assert!(first_seen.iter().all(|(_, _, escalation)| escalation.is_none()));
    assert!(first.received().iter().chain(on_call.received().iter()).all(|r| r.signed));
}

#[tokio::test]
async fn a_silenced_devices_transitions_are_recorded_but_notify_nobody() {
    let fleet = Fleet::new(&["d1", "d2"]);
    let store = fleet.store();
    let receiver = Receiver::start("s1").await;
    let now = wenu_core::clock::now_ms();
    let maintenance = Silence {
        id: "s1".into(),
        company: "acme".into(),
        device: Some("d1".into()),
        site: None,
        rule: None,
        starts_at: now - 60_000,
        ends_at: now + 3_600_000,
        reason: "pump replaced".into(),
        created_by: "token:ops".into(),
    };
    let channels =
        Arc::new(FixedChannels { channels: vec![receiver.target("hook")], silences: vec![maintenance] });
    let notifier = WebhookNotifier::new(channels, WebhookPolicy::private_networks()).unwrap();
    let dispatcher = Dispatcher::new(store.clone(), vec![Arc::new(notifier)], fast_retries());
    let mut stage = fleet.stage(vec![too_hot()], Arc::new(Notify::new()));

    stage
        .evaluate(&[fleet.record(0, "d1", 1, now, 40.0), fleet.record(1, "d2", 1, now, 40.0)])
        .await
        .unwrap();
    dispatcher.deliver_due().await.unwrap();
    assert_eq!(seen(&receiver.received()), [("d2".to_owned(), Change::Raised, None)]);
    assert!(store.outbox().await.unwrap().is_empty(), "the silenced notification is done with, not waiting");
    let (history, _) = store.history("acme", now - 1000..now + 1000, 10, None).await.unwrap();
    let mut recorded: Vec<&str> = history.iter().map(|n| n.transition.device.as_str()).collect();
    recorded.sort();
    assert_eq!(recorded, ["d1", "d2"], "both transitions are in the history");
    assert_eq!(store.active("acme").await.unwrap().len(), 2, "and both alarms are raised");

    // After the window, d1's transitions notify again.
    let after = now + 3_700_000;
    stage.evaluate(&[fleet.record(2, "d1", 2, after, 20.0)]).await.unwrap();
    dispatcher.deliver_due().await.unwrap();
    assert_eq!(
        seen(&receiver.received()),
        [("d2".to_owned(), Change::Raised, None), ("d1".to_owned(), Change::Cleared, None)]
    );
}
