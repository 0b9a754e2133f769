//! The alarms in the embedded pipeline: the stage as its own stream
//! consumer, the dispatcher with its channels (companies' webhooks and
//! e-mail addresses, the MQTT topic `wenu/alarms/{company}` on the embedded
//! server, the API's live stream) and escalations, and the state in its own
//! table (`alarms.db`).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use wenu_alarms::{
    AlarmStage, AlarmStore, AlarmTotals, ChannelNotifier, Dispatcher, EmailNotifier, Escalator, Notification,
    Notifier, NotifyError, WebhookNotifier,
};
use wenu_api::LiveHub;
use wenu_core::topic::alarm_topic;
use wenu_ingest::EdgePublisher;
use wenu_local::KeyringFile;
use wenu_local::SqliteTable;
use wenu_registry::Registry;
use wenu_runtime::{BatchLimits, ConsumerOptions, Supervisor};

use crate::config::Config;
use wenu_registry::{RegistryCatalog, RegistryChannels, RegistryKeys, RegistryRules};

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

/// The notifiers of companies' own channels (webhooks, e-mail), which the
/// API also uses for a channel's test message.
pub fn channel_notifiers(
    config: &Config,
    registry: &Registry,
) -> anyhow::Result<Vec<Arc<dyn ChannelNotifier>>> {
    let directory = Arc::new(RegistryChannels::new(registry.clone()));
    let webhooks =
        WebhookNotifier::new(directory.clone(), config.webhook_policy()?).map_err(anyhow::Error::msg)?;
    let email = EmailNotifier::new(directory, config.mail_sender()?, config.email_from()?);
    Ok(vec![Arc::new(webhooks), Arc::new(email)])
}

/// The dispatcher of `notifiers`, escalating what companies' channels ask for.
pub fn dispatcher(
    config: &Config,
    registry: &Registry,
    store: &AlarmStore,
    notifiers: Vec<Arc<dyn Notifier>>,
) -> Dispatcher {
    let escalator = Escalator::new(store.clone(), Arc::new(RegistryChannels::new(registry.clone())));
    Dispatcher::new(store.clone(), notifiers, config.dispatch_options()).with_escalation(escalator)
}

/// What runs the alarms.
pub struct Alarms {
    pub store: AlarmStore,
    pub table: SqliteTable,
    pub dispatcher: Dispatcher,
    /// Those of companies' channels, for the API's test messages.
    pub channel_notifiers: Vec<Arc<dyn ChannelNotifier>>,
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
        let channel_notifiers = channel_notifiers(config, registry)?;
        let mut notifiers: Vec<Arc<dyn Notifier>> =
            channel_notifiers.iter().map(|n| n.clone() as Arc<dyn Notifier>).collect();
        notifiers.push(Arc::new(MqttNotifier(mqtt)));
        notifiers.push(Arc::new(live.clone()));
        let dispatcher = dispatcher(config, registry, &store, notifiers);
        Ok(Alarms { store, table, dispatcher, channel_notifiers, totals: Arc::default() })
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
