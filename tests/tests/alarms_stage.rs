//! The alarms stage, store and dispatcher together, over a real table store
//! and a real webhook receiver on 127.0.0.1: one notification per
//! transition and channel, across redeliveries and restarts.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, watch};
use wenu_alarms::{AckOutcome, Change, Condition, Dispatcher, FixedChannels, WebhookNotifier, WebhookPolicy};
use wenu_tests::alarm_fleet::{Fleet, T0, fast_retries, rule, too_hot};
use wenu_tests::webhook_receiver::Receiver;

#[tokio::test]
async fn each_transition_reaches_the_webhook_once_across_redelivery_and_restart() {
    let fleet = Fleet::new(&["d1", "d2"]);
    let receiver = Receiver::start("s3cret").await;
    let hooks = Arc::new(FixedChannels::new(vec![receiver.target("h1")]));
    let dispatcher = Dispatcher::new(
        fleet.store(),
        vec![Arc::new(WebhookNotifier::new(hooks, WebhookPolicy::private_networks()).unwrap())],
        fast_retries(),
    );
    let (stop, stopped) = watch::channel(false);
    tokio::spawn(dispatcher.clone().run(stopped));

    // d1 goes hot at 2 s and back at 4 s; d2 stays fine.
    let values = [20.0, 25.0, 35.0, 36.0, 25.0, 24.0];
    let records: Vec<_> = values
        .iter()
        .enumerate()
        .flat_map(|(i, v)| {
            let ts = T0 + i as i64 * 1000;
            [
                fleet.record(2 * i as u64, "d1", i as u64, ts, *v),
                fleet.record(2 * i as u64 + 1, "d2", i as u64, ts, 21.0),
            ]
        })
        .collect();
    let mut stage = fleet.stage(vec![too_hot()], dispatcher.waker());
    let transitions = stage.evaluate(&records).await.unwrap();
    assert_eq!(
        transitions.iter().map(|t| (t.device.as_str(), t.change, t.ts)).collect::<Vec<_>>(),
        [("d1", Change::Raised, T0 + 2000), ("d1", Change::Cleared, T0 + 4000)]
    );
    let received = receiver.wait_for(2).await;

    // The same records again (a redelivery), then through a restarted stage
    // whose cache is empty: nothing new is recorded or sent.
    assert!(stage.evaluate(&records).await.unwrap().is_empty());
    let mut restarted = fleet.stage(vec![too_hot()], dispatcher.waker());
    assert!(restarted.evaluate(&records).await.unwrap().is_empty());
    // Nothing was queued again: once the two deliveries are marked done the
    // outbox is empty, and nothing more can be sent.
    for _ in 0..1000 {
        if fleet.store().outbox().await.unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await; // polls for the dispatcher's write
    }
    assert!(fleet.store().outbox().await.unwrap().is_empty(), "outbox drained");
    assert_eq!(receiver.received().len(), 2);

    let changes: Vec<_> = received.iter().map(|r| (r.notification.transition.change, r.signed)).collect();
    assert_eq!(changes, [(Change::Raised, true), (Change::Cleared, true)]);
    assert_ne!(received[0].delivery, received[1].delivery);
    assert_eq!(received[0].delivery, received[0].notification.id);
    assert_eq!(received[0].notification.alarm, received[1].notification.alarm);
    let (history, _) = fleet.store().history("acme", T0..T0 + 60_000, 100, None).await.unwrap();
    assert_eq!(history.len(), 2);
    stop.send_replace(true);
}

#[tokio::test]
async fn a_failing_webhook_is_retried_then_dead_lettered_without_delaying_other_channels() {
    let fleet = Fleet::new(&["d1"]);
    let flaky = Receiver::start("a").await;
    let down = Receiver::start("b").await;
    flaky.fail_first.store(2, std::sync::atomic::Ordering::SeqCst);
    down.fail_first.store(u32::MAX, std::sync::atomic::Ordering::SeqCst);
    let hooks = Arc::new(FixedChannels::new(vec![flaky.target("flaky"), down.target("down")]));
    let dispatcher = Dispatcher::new(
        fleet.store(),
        vec![Arc::new(WebhookNotifier::new(hooks, WebhookPolicy::private_networks()).unwrap())],
        fast_retries(),
    );
    let (stop, stopped) = watch::channel(false);
    tokio::spawn(dispatcher.clone().run(stopped));

    let mut stage = fleet.stage(vec![too_hot()], dispatcher.waker());
    stage.evaluate(&[fleet.record(0, "d1", 1, T0, 40.0)]).await.unwrap();
    let received = flaky.wait_for(1).await;
    assert_eq!(flaky.requests.load(std::sync::atomic::Ordering::SeqCst), 3, "two 503s, then delivered");
    assert_eq!(received[0].notification.transition.change, Change::Raised);

    // The endpoint that stays down gets max_attempts tries, then a dead letter.
    let store = fleet.store();
    // The letter is written first, then the entry leaves the outbox.
    for _ in 0..1000 {
        if store.outbox().await.unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await; // polls for the dispatcher's write
    }
    let letters = store.dead_letters("acme").await.unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!((letters[0].channel.as_str(), letters[0].attempts), ("webhook:down", 3));
    assert!(letters[0].error.contains("503"), "{}", letters[0].error);
    stop.send_replace(true);
}

#[tokio::test]
async fn an_acknowledgement_is_a_transition_and_survives_the_clear() {
    let fleet = Fleet::new(&["d1"]);
    let wake = Arc::new(Notify::new());
    let store = fleet.store();
    let mut stage = fleet.stage(vec![too_hot()], wake);
    stage.evaluate(&[fleet.record(0, "d1", 1, T0, 40.0)]).await.unwrap();
    let active = store.active("acme").await.unwrap();
    assert_eq!(active.len(), 1);
    let id = active[0].id.clone();

    let AckOutcome::Acknowledged(ack) =
        store.acknowledge("acme", &id, "token:ops", "on my way", T0 + 500).await.unwrap()
    else {
        panic!("acknowledged")
    };
    assert_eq!(ack.transition.change, Change::Acknowledged);
    assert!(matches!(
        store.acknowledge("acme", &id, "token:ops", "again", T0 + 600).await.unwrap(),
        AckOutcome::AlreadyAcknowledged(_)
    ));
    assert!(matches!(store.acknowledge("globex", &id, "x", "", T0).await.unwrap(), AckOutcome::Unknown));
    assert!(matches!(store.acknowledge("acme", "zz", "x", "", T0).await.unwrap(), AckOutcome::Unknown));

    stage.evaluate(&[fleet.record(1, "d1", 2, T0 + 1000, 20.0)]).await.unwrap();
    assert!(store.active("acme").await.unwrap().is_empty());
    let alarm = store.alarm("acme", &id).await.unwrap().unwrap();
    assert_eq!(alarm.status, Change::Cleared);
    assert_eq!(alarm.acknowledged.unwrap().comment, "on my way");
    assert!(matches!(store.acknowledge("acme", &id, "x", "", T0).await.unwrap(), AckOutcome::NotRaised(_)));
    let (history, _) = store.history("acme", T0..T0 + 60_000, 100, None).await.unwrap();
    let changes: Vec<_> = history.iter().map(|n| n.transition.change).collect();
    assert_eq!(changes, [Change::Raised, Change::Acknowledged, Change::Cleared]);
    assert_eq!(store.outbox().await.unwrap().len(), 3, "three notifications queued");
}

#[tokio::test(start_paused = true)]
async fn missing_data_fires_for_a_silent_device_on_the_timer_alone() {
    let fleet = Fleet::new(&["d1", "quiet"]);
    let silent = rule("silent", None, Condition::MissingData { silence_ms: 60_000, max_gap: None });
    let mut stage = fleet.stage(vec![silent.clone()], Arc::new(Notify::new()));
    stage.evaluate(&[fleet.record(0, "d1", 1, T0, 20.0)]).await.unwrap();

    tokio::time::advance(Duration::from_millis(59_000)).await;
    assert!(stage.check_timers().await.unwrap().is_empty(), "not before 60 s");
    tokio::time::advance(Duration::from_millis(1_500)).await;
    let raised = stage.check_timers().await.unwrap();
    // Both: d1 went silent; "quiet" never sent anything since provisioning.
    let mut devices: Vec<_> = raised.iter().map(|t| (t.device.as_str(), t.change)).collect();
    devices.sort();
    assert_eq!(devices, [("d1", Change::Raised), ("quiet", Change::Raised)]);
    assert_eq!(
        raised.iter().find(|t| t.device == "d1").unwrap().ts,
        T0 + 60_000,
        "keyed by when data was due"
    );
    tokio::time::advance(Duration::from_millis(60_000)).await;
    assert!(stage.check_timers().await.unwrap().is_empty(), "raised once");

    // A restart notices nothing new: the state is in the table.
    let mut restarted = fleet.stage(vec![silent], Arc::new(Notify::new()));
    restarted.evaluate(&[]).await.unwrap();
    tokio::time::advance(Duration::from_millis(120_000)).await;
    assert!(restarted.check_timers().await.unwrap().is_empty());
    let back = restarted.evaluate(&[fleet.record(1, "d1", 2, T0 + 200_000, 20.0)]).await.unwrap();
    assert_eq!(
        back.iter().map(|t| (t.device.as_str(), t.change)).collect::<Vec<_>>(),
        [("d1", Change::Cleared)]
    );
}

#[tokio::test]
async fn deleting_or_disabling_a_rule_clears_its_alarms() {
    let fleet = Fleet::new(&["d1"]);
    let store = fleet.store();
    let mut stage = fleet.stage(vec![too_hot()], Arc::new(Notify::new()));
    stage.evaluate(&[fleet.record(0, "d1", 1, T0, 40.0)]).await.unwrap();
    assert_eq!(store.active("acme").await.unwrap().len(), 1);

    // Restarted without the rule (deleted while the alarms were down).
    let mut without = fleet.stage(Vec::new(), Arc::new(Notify::new()));
    without.evaluate(&[]).await.unwrap();
    assert!(store.active("acme").await.unwrap().is_empty());
    let (history, _) = store.history("acme", T0..i64::MAX, 100, None).await.unwrap();
    let last = history.last().unwrap();
    assert_eq!(
        (last.transition.change, last.transition.detail.as_str()),
        (Change::Cleared, "the rule was deleted or disabled")
    );
    assert_eq!(store.outbox().await.unwrap().len(), 2, "the clear is notified like any transition");

    // The rule back: it starts from normal and raises again.
    let mut again = fleet.stage(vec![too_hot()], Arc::new(Notify::new()));
    let raised = again.evaluate(&[fleet.record(1, "d1", 2, T0 + 1000, 41.0)]).await.unwrap();
    assert_eq!(raised.iter().map(|t| t.change).collect::<Vec<_>>(), [Change::Raised]);
}

/// On AWS every shard's alarms function instance caches states, and any
/// instance's timers look at every watched device: two stages over one
/// store must recover when the other wrote first.
#[tokio::test]
async fn a_stage_whose_cached_state_went_stale_works_from_the_store_on_retry() {
    use wenu_runtime::Stage;
    let fleet = Fleet::new(&["d1"]);
    let wake = Arc::new(Notify::new());
    let mut first = fleet.stage(vec![too_hot()], wake.clone());
    let mut second = fleet.stage(vec![too_hot()], wake);

    first.evaluate(&[fleet.record(0, "d1", 1, T0, 20.0)]).await.unwrap();
    first.before_checkpoint().await.unwrap();
    second.evaluate(&[fleet.record(1, "d1", 2, T0 + 1000, 21.0)]).await.unwrap();
    second.before_checkpoint().await.unwrap();

    // `first` still holds the state it wrote; `second` has written since.
    let hot = [fleet.record(2, "d1", 3, T0 + 2000, 35.0)];
    let error = first.evaluate(&hot).await.unwrap_err();
    assert!(matches!(error, wenu_alarms::Error::Store(wenu_core::Error::ConditionFailed(_))), "{error}");
    assert!(error.is_retryable());
    let transitions = first.evaluate(&hot).await.unwrap();
    assert_eq!(
        transitions.iter().map(|t| (t.change, t.ts)).collect::<Vec<_>>(),
        [(Change::Raised, T0 + 2000)]
    );
    assert_eq!(fleet.store().active("acme").await.unwrap().len(), 1);
}

/// On AWS the alarms function also runs every minute on EventBridge's
/// scheduled event, so a device going silent raises its alarm even when
/// no batch comes at all.
#[tokio::test(start_paused = true)]
async fn the_alarms_function_fires_missing_data_on_a_scheduled_event_alone() {
    let fleet = Fleet::new(&["d1"]);
    let silent = rule("silent", None, Condition::MissingData { silence_ms: 60_000, max_gap: None });
    let dispatcher = Dispatcher::new(fleet.store(), Vec::new(), fast_retries());
    let stage = fleet.stage(vec![silent], dispatcher.waker());
    let mut function = wenu_lambdas::alarms::AlarmsFunction::new(stage, dispatcher).unwrap();
    let scheduled: serde_json::Value =
        serde_json::from_str(include_str!("../../lambdas/tests/fixtures/scheduled-event.json")).unwrap();

    assert_eq!(function.handle_any(scheduled.clone()).await.unwrap(), serde_json::Value::Null);
    assert!(fleet.store().active("acme").await.unwrap().is_empty(), "not silent yet");
    tokio::time::advance(Duration::from_millis(61_000)).await;
    function.handle_any(scheduled.clone()).await.unwrap();
    let active = fleet.store().active("acme").await.unwrap();
    assert_eq!(
        active.iter().map(|a| (a.device.as_str(), a.rule.as_str())).collect::<Vec<_>>(),
        [("d1", "silent")]
    );
    assert!(fleet.store().outbox().await.unwrap().is_empty(), "delivered (to no channel) before returning");

    let error =
        function.handle_any(serde_json::json!({ "detail-type": "Something else" })).await.unwrap_err();
    assert!(error.contains("neither"), "{error}");
}
