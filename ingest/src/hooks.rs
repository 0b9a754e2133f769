//! The rmqtt hooks: translate MQTT events into the edge's policy decisions
//! and the durable append.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use rmqtt::codec::v5::{PublishAckReason, SubscribeAckReason};
use rmqtt::hook::{Handler, HookResult, Parameter, ReturnType};
use rmqtt::session::Session;
use rmqtt::types::{AuthResult, ConnectInfo, Publish, PublishAclResult, PublishResult, SubscribeAclResult};
use wenu_core::log_throttle::LogThrottle;
use wenu_core::stream::{NewRecord, Stream};
use wenu_registry::{AuthOutcome, Registry};

use crate::EdgeCounters;
use crate::device_cache::DeviceCache;
use crate::policy::{
    Claim, ConnectRefusal, Identity, IncomingPublish, PublishRefusal, SessionRequest, check_device_session,
    check_publish, check_reader_session, company_of_username, identify, may_subscribe,
};
use crate::quota::PublishQuotas;
use crate::throttle::LoginThrottle;

/// MQTT protocol level of version 5.
const MQTT_5: u8 = 5;

pub(crate) struct EdgeHooks {
    pub stream: Arc<dyn Stream>,
    pub registry: Registry,
    pub counters: Arc<EdgeCounters>,
    pub max_payload_bytes: usize,
    /// Login checks running at once, at most one per core: a check costs
    /// microseconds, but a device still on an Argon2 hash from an older
    /// registry costs tens of milliseconds (once), and a storm of those must
    /// queue instead of thrashing memory.
    pub password_checks: Arc<tokio::sync::Semaphore>,
    pub throttle: Arc<LoginThrottle>,
    pub devices: Arc<DeviceCache>,
    pub quotas: Arc<PublishQuotas>,
}

pub(crate) use wenu_core::clock::now_ms;

#[async_trait]
impl Handler for EdgeHooks {
    async fn hook(&self, param: &Parameter, acc: Option<HookResult>) -> ReturnType {
        match param {
            Parameter::ClientAuthenticate(info) => {
                (false, Some(HookResult::AuthResult(self.authenticate(info).await)))
            }
            Parameter::MessagePublishCheckAcl(session, publish) => {
                (false, Some(HookResult::PublishAclResult(self.publish(session, publish).await)))
            }
            // Devices subscribe to nothing; a company's alarm reader to its alarm topic only.
            Parameter::ClientSubscribeCheckAcl(session, subscribe) => {
                let username = session.id.username.as_deref();
                let result = if may_subscribe(username, &subscribe.topic_filter) {
                    SubscribeAclResult::new_success(subscribe.opts.qos(), None)
                } else {
                    tracing::info!(username = ?username, filter = %subscribe.topic_filter, "subscription refused");
                    SubscribeAclResult::new_failure(SubscribeAckReason::NotAuthorized)
                };
                (false, Some(HookResult::SubscribeAclResult(result)))
            }
            Parameter::ClientConnected(_) => {
                self.counters.connected();
                (true, acc)
            }
            Parameter::ClientDisconnected(_, _) => {
                self.counters.disconnected();
                (true, acc)
            }
            _ => (true, acc),
        }
    }
}

impl EdgeHooks {
    /// Who the client is, whether its session and will are allowed, and
    /// whether failed logins from its address or for its identity are
    /// being throttled. Sessions are keyed by client id, so tying the client
    /// id to the identity is what keeps one client from resuming or taking
    /// over another's.
    async fn authenticate(&self, info: &ConnectInfo) -> AuthResult {
        let address = info.ipaddress().map_or(std::net::IpAddr::from([0, 0, 0, 0]), |a| a.ip());
        let claimed = info.username().map(|u| u.to_string()).unwrap_or_default();
        let outcome = if !self.throttle.admits(address, &claimed, Instant::now()) {
            Err(ConnectRefusal::Throttled)
        } else if let Some(company) = company_of_username(&claimed) {
            self.authenticate_reader(company, info).await.map(|()| claimed.clone())
        } else {
            self.authenticate_device(info).await
        };
        match outcome {
            Ok(identity) => {
                tracing::debug!(identity = %identity, "client connected");
                self.throttle.succeeded(address, &claimed);
                if company_of_username(&identity).is_none() {
                    self.counters.connect_accepted();
                }
                // Never a superuser: rmqtt skips the publish hook, hence the
                // durable append, for superuser sessions.
                AuthResult::Allow(false, None)
            }
            Err(refusal) => {
                // At most a line a second: a flood of bad CONNECTs must not fill the disk with logs.
                static THROTTLE: LogThrottle = LogThrottle::new(Duration::from_secs(1));
                if let Some(suppressed) = THROTTLE.allow() {
                    tracing::info!(username = ?claimed, client_id = ?info.client_id(), reason = refusal.label(), suppressed, "connection refused");
                }
                self.counters.connect_refused(refusal.label());
                // Only wrong credentials count as failures.
                if matches!(refusal, ConnectRefusal::BadPassword | ConnectRefusal::UnknownDevice) {
                    self.throttle.failed(address, &claimed, Instant::now());
                }
                match refusal {
                    ConnectRefusal::BadPassword
                    | ConnectRefusal::UnknownDevice
                    | ConnectRefusal::NoCredentials => AuthResult::BadUsernameOrPassword,
                    _ => AuthResult::NotAuthorized,
                }
            }
        }
    }

    /// An alarm reader: the password must be a live API token of that company.
    async fn authenticate_reader(&self, company: &str, info: &ConnectInfo) -> Result<(), ConnectRefusal> {
        check_reader_session(company, session_request(info))?;
        let password = info.password().ok_or(ConnectRefusal::NoCredentials)?;
        let bearer = String::from_utf8_lossy(password);
        match self.registry.verify_token(&bearer).await {
            Ok(Some(token)) if token.company.as_deref() == Some(company) => Ok(()),
            Ok(_) => Err(ConnectRefusal::BadPassword),
            Err(err) => {
                tracing::error!(error = %err, "registry lookup failed");
                Err(ConnectRefusal::RegistryUnavailable)
            }
        }
    }

    async fn authenticate_device(&self, info: &ConnectInfo) -> Result<String, ConnectRefusal> {
        let username = info.username().map(|u| u.to_string());
        let certificate_name = info.cert().map(|c| c.common_name.clone().unwrap_or_default());
        let claim = Claim {
            username: username.as_deref(),
            has_password: info.password().is_some(),
            certificate_name: certificate_name.as_deref(),
        };
        let identity = identify(claim)?;
        let registry = self.registry.clone();
        let (device_id, password) = match identity {
            Identity::Password(device) => {
                let password = info.password().map(|p| String::from_utf8_lossy(p).into_owned());
                (device.to_owned(), password)
            }
            Identity::Certificate(device) => (device.to_owned(), None),
        };
        check_device_session(&device_id, session_request(info))?;
        let _permit =
            self.password_checks.acquire().await.map_err(|_| ConnectRefusal::RegistryUnavailable)?;
        let outcome = match password {
            Some(password) => registry.authenticate(&device_id, password).await,
            None => registry.authenticate_by_certificate(&device_id).await,
        };
        match outcome {
            Ok(AuthOutcome::Allowed) => Ok(device_id),
            Ok(AuthOutcome::UnknownDevice) => Err(ConnectRefusal::UnknownDevice),
            Ok(AuthOutcome::BadPassword) => Err(ConnectRefusal::BadPassword),
            Ok(AuthOutcome::Disabled) => Err(ConnectRefusal::Disabled),
            Err(err) => {
                tracing::error!(error = %err, "registry lookup failed");
                Err(ConnectRefusal::RegistryUnavailable)
            }
        }
    }

    async fn publish(&self, session: &Session, publish: &Publish) -> PublishAclResult {
        let v5 = session.protocol().await.is_ok_and(|level| level == MQTT_5);
        let device_id = match &session.id.username {
            Some(username) => username.to_string(),
            None => match session.connect_info().await {
                Ok(info) => info.cert().and_then(|c| c.common_name.clone()).unwrap_or_default(),
                Err(_) => String::new(),
            },
        };
        let incoming = IncomingPublish {
            topic: &publish.topic,
            payload_len: publish.payload.len(),
            qos: publish.qos.value(),
            retain: publish.retain,
        };
        if let Err(refusal) = check_publish(&device_id, incoming, self.max_payload_bytes) {
            static THROTTLE: LogThrottle = LogThrottle::new(Duration::from_secs(1));
            if let Some(suppressed) = THROTTLE.allow() {
                tracing::info!(device = %device_id, topic = ?publish.topic, reason = refusal.label(), suppressed, "publish refused");
            }
            return self.refuse(refusal, v5);
        }
        let device = match self.devices.get(&device_id).await {
            Ok(device) => device,
            Err(err) => {
                tracing::error!(error = %err, "registry lookup failed");
                return self.refuse(PublishRefusal::StreamUnavailable, v5);
            }
        };
        if !device.enabled {
            tracing::info!(device = %device_id, "publish refused: device disabled; closing its session");
            return self.refuse(PublishRefusal::Disabled, v5);
        }
        if !self.quotas.admit(&device_id, publish.payload.len(), device.quota) {
            static THROTTLE: LogThrottle = LogThrottle::new(Duration::from_secs(1));
            if let Some(suppressed) = THROTTLE.allow() {
                tracing::info!(device = %device_id, suppressed, "publish refused: over the device's quota");
            }
            return self.refuse(PublishRefusal::QuotaExceeded, v5);
        }
        let record = NewRecord {
            device_id,
            topic: publish.topic.to_string(),
            received_at: now_ms(),
            payload: publish.payload.clone(),
        };
        let started = Instant::now();
        match self.stream.append(vec![record]).await {
            Ok(_) => {
                metrics::histogram!("wenu_edge_append_seconds").record(started.elapsed().as_secs_f64());
                self.counters.publish_accepted(publish.payload.len());
                PublishAclResult::allow()
            }
            Err(err) => {
                static THROTTLE: LogThrottle = LogThrottle::new(Duration::from_secs(1));
                if let Some(suppressed) = THROTTLE.allow() {
                    tracing::warn!(error = %err, suppressed, "stream append failed; publish not acknowledged");
                }
                self.refuse(PublishRefusal::StreamUnavailable, v5)
            }
        }
    }

    /// MQTT 5 carries the refusal in the PUBACK; a 3.1.1 PUBACK cannot say no,
    /// so there the connection is closed and the device keeps its copy. A
    /// disabled device's session is closed either way.
    fn refuse(&self, refusal: PublishRefusal, v5: bool) -> PublishAclResult {
        self.counters.publish_refused(refusal.label());
        let reason = match refusal {
            PublishRefusal::InvalidTopic => PublishAckReason::TopicNameInvalid,
            PublishRefusal::ForeignTopic | PublishRefusal::Disabled => PublishAckReason::NotAuthorized,
            PublishRefusal::Oversized { .. } | PublishRefusal::Retained | PublishRefusal::ExactlyOnceQos => {
                PublishAckReason::ImplementationSpecificError
            }
            PublishRefusal::StreamUnavailable | PublishRefusal::QuotaExceeded => {
                PublishAckReason::QuotaExceeded
            }
        };
        let disconnect = !v5 || refusal == PublishRefusal::Disabled;
        PublishAclResult(PublishResult::reason_code(reason, Some(refusal.label().into()), disconnect))
    }
}

fn session_request(info: &ConnectInfo) -> SessionRequest<'_> {
    SessionRequest {
        client_id: info.client_id(),
        clean_session: info.clean_start(),
        has_will: info.last_will().is_some(),
    }
}
