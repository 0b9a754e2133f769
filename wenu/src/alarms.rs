//! The alarms in the embedded pipeline: the stage as its own stream
//! consumer, the dispatcher with its three channels (webhooks, the MQTT
//! topic `wenu/alarms/{company}` on the embedded server, the API's live
//! stream), and the state in its own table (`alarms.db`).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use wenu_alarms::{
    AlarmStage, AlarmStore, AlarmTotals, Dispatcher, Notification, Notifier, NotifyError, WebhookNotifier,
};
use wenu_api::LiveHub;
use wenu_core::topic::alarm_topic;
use wenu_ingest::EdgePublisher;
use wenu_local::KeyringFile;
use wenu_local::SqliteTable;
use wenu_registry::Registry;
use wenu_runtime::{BatchLimits, ConsumerOptions, Supervisor};

use crate::config::Config;
use wenu_registry::{RegistryCatalog, RegistryKeys, RegistryRules, RegistryWebhooks};

/// The consumer's checkpoint name.
pub const ALARMS_CONSUMER: &str = "alarms";

/// Notifications on the embedded MQTT server, for a company's subscribers.
pub struct MqttNotifier(pub EdgePublisher);

#[async_trait]
impl Notifier for MqttNotifier {
    fn kind(&self) -> &'static str {
        "mqtt"
    }

    async fn targets(&self, notification: &Notification) -> Result<Vec<String>, NotifyError> {
        Ok(vec![alarm_topic(&notification.transition.company)])
    }

    async fn send(&self, topic: &str, notification: &Notification) -> Result<(), NotifyError> {
        let payload = serde_json::to_vec(notification).expect("a notification serializes");
        self.0.publish(topic, payload.into());
        Ok(())
    }
}

/// What runs the alarms.
pub struct Alarms {
    pub store: AlarmStore,
    pub table: SqliteTable,
    pub dispatcher: Dispatcher,
    pub totals: Arc<AlarmTotals>,
}

impl Alarms {
    pub fn open(
        config: &Config,
        registry: &Registry,
        mqtt: EdgePublisher,
        live: &LiveHub,
    ) -> anyhow::Result<Alarms> {
        let table = SqliteTable::open(&config.alarms_path())?;
        let store = AlarmStore::new(Arc::new(table.clone()), config.alarms.history_days);
        let notifiers: Vec<Arc<dyn Notifier>> = vec![
            Arc::new(
                WebhookNotifier::new(
                    Arc::new(RegistryWebhooks::new(registry.clone())),
                    config.webhook_policy()?,
                )
                .map_err(anyhow::Error::msg)?,
            ),
            Arc::new(MqttNotifier(mqtt)),
            Arc::new(live.clone()),
        ];
        let dispatcher = Dispatcher::new(store.clone(), notifiers, config.dispatch_options());
        Ok(Alarms { store, table, dispatcher, totals: Arc::default() })
    }

    /// Starts the consumer and the dispatcher on a thread and runtime of
    /// their own, so that lake, enrich and stats work queued on the main
    /// runtime never delays an alarm; both stop when `stopped` turns true.
    pub fn start(
        &self,
        config: &Config,
        registry: &Registry,
        supervisor: &Supervisor,
        stopped: watch::Receiver<bool>,
    ) -> anyhow::Result<JoinHandle<()>> {
        let (keyring, registry, limits) = (config.keyring_path(), registry.clone(), config.decode_limits());
        let (store, waker, totals) = (self.store.clone(), self.dispatcher.waker(), self.totals.clone());
        let build = move || {
            let stage = AlarmStage::new(
                Box::new(RegistryKeys::new(Box::new(KeyringFile::new(keyring.clone())), registry.clone())),
                Box::new(RegistryCatalog::new(registry.clone())),
                Box::new(RegistryRules::new(registry.clone())),
                store.clone(),
                waker.clone(),
                limits,
            )
            .with_totals(totals.clone());
            Ok::<_, std::convert::Infallible>(stage)
        };
        // Every record as soon as it is read: alarms are about milliseconds.
        let mut options = ConsumerOptions::new(ALARMS_CONSUMER, BatchLimits::unchecked(1, Duration::ZERO));
        options.tick_every = Some(Duration::from_millis(config.alarms.timer_millis.max(10)));
        options.read_chunk = 1_000;
        // Transitions are keyed by themselves, not by the batch, and the state
        // is in the table: redoing records is harmless, so no pending range and
        // a checkpoint every 200 ms rather than two fsyncs per batch.
        options.redo_same_range = false;
        options.checkpoint_every = Duration::from_millis(200);
        let consumer = supervisor.clone().run(options, stopped.clone(), build);
        let dispatcher = self.dispatcher.clone();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let thread = std::thread::Builder::new().name("wenu-alarms".into()).spawn(move || {
            runtime.block_on(async move {
                tokio::join!(consumer, dispatcher.run(stopped));
            })
        })?;
        // Awaited like the other consumers' tasks when the server stops.
        Ok(tokio::task::spawn_blocking(move || {
            if thread.join().is_err() {
                tracing::error!("the alarms thread panicked");
            }
        }))
    }
}
