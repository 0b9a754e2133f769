//! The alarms function on the stream (`wenu_lambdas::alarms`): rules run on
//! each batch, notifications published to SNS before it returns; invoked
//! every minute by a schedule for the missing-data timers and escalations.
//! Environment: `WENU_REGISTRY_URL`, `WENU_REGISTRY_SECRET_ARN`, `WENU_KEYS_SECRET_PREFIX`,
//! `WENU_ALARMS_TABLE`, `WENU_ALARMS_TOPIC_ARN`, `WENU_SMTP_URL`, `WENU_EMAIL_FROM`.

use std::sync::Arc;

use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use tokio::sync::Mutex;
use wenu_alarms::{AlarmStage, DispatchOptions, Dispatcher, Escalator};
use wenu_decrypt::DecodeLimits;
use wenu_lambdas::alarms::AlarmsFunction;
use wenu_lambdas::settings;
use wenu_registry::{RegistryCatalog, RegistryChannels, RegistryRules};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let config = wenu_aws::config::load().await;
    let registry = settings::registry(&config).await?;
    let store = settings::alarm_store(&config)?;
    let mut notifiers: Vec<Arc<dyn wenu_alarms::Notifier>> = vec![Arc::new(settings::alarm_topic(&config)?)];
    notifiers.extend(
        settings::channel_notifiers(&registry)?.into_iter().map(|n| n as Arc<dyn wenu_alarms::Notifier>),
    );
    let escalator = Escalator::new(store.clone(), Arc::new(RegistryChannels::new(registry.clone())));
    let dispatcher =
        Dispatcher::new(store.clone(), notifiers, DispatchOptions::default()).with_escalation(escalator);
    let stage = AlarmStage::new(
        Box::new(settings::registry_keys(&config, &registry)?),
        Box::new(RegistryCatalog::new(registry.clone())),
        Box::new(RegistryRules::new(registry)),
        store,
        dispatcher.waker(),
        DecodeLimits::default(),
    );
    let function = &Mutex::new(AlarmsFunction::new(stage, dispatcher)?);
    run(service_fn(move |event: LambdaEvent<serde_json::Value>| async move {
        function.lock().await.handle_any(event.payload).await.map_err(Error::from)
    }))
    .await
}
