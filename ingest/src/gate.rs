//! What the edge decides about a login and a publish, whatever MQTT library
//! carries them: the policy, the registry, throttles, quotas and the durable
//! append. The MQTT glue (`mqtt`) only translates packets to and from it.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use wenu_core::log_throttle::LogThrottle;
use wenu_core::stream::{NewRecord, Stream};
use wenu_registry::{AuthOutcome, Registry};

use crate::EdgeCounters;
use crate::device_cache::DeviceCache;
use crate::links::Credential;
use crate::policy::{
    Claim, ConnectRefusal, Destination, Identity, IncomingPublish, PublishRefusal, SessionRequest,
    check_device_session, check_publish, check_reader_session, company_of_username, identify,
};
use crate::quota::PublishQuotas;
use crate::reports::{self, LastSeen};
use crate::throttle::LoginThrottle;

pub(crate) use wenu_core::clock::now_ms;

/// A CONNECT, as the gate sees it.
#[derive(Debug)]
pub(crate) struct LoginRequest {
    pub address: IpAddr,
    pub username: Option<String>,
    pub password: Option<Bytes>,
    /// The client certificate the TLS layer verified, if any.
    pub certificate: Option<PeerCertificate>,
    pub client_id: String,
    pub clean_session: bool,
    pub has_will: bool,
}

/// A client certificate, as the TLS layer verified it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PeerCertificate {
    /// Its common name; empty if it has none.
    pub name: String,
    /// SHA-256 of its DER, lowercase hex: what the registry revokes.
    pub fingerprint: String,
}

/// Who logged in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Login {
    Device {
        id: String,
        credential: Credential,
    },
    /// A company's alarm reader.
    Reader {
        company: String,
        credential: Credential,
    },
}

impl Login {
    pub fn credential(&self) -> &Credential {
        match self {
            Login::Device { credential, .. } | Login::Reader { credential, .. } => credential,
        }
    }
}

/// A PUBLISH waiting for its append, in arrival order.
#[derive(Debug)]
pub(crate) struct Publish {
    pub topic: String,
    pub payload: Bytes,
    pub qos: u8,
    pub retain: bool,
}

pub(crate) struct Gate {
    pub stream: Arc<dyn Stream>,
    pub registry: Registry,
    pub counters: Arc<EdgeCounters>,
    pub max_payload_bytes: usize,
    /// Login checks running at once, at most one per core: a check costs
    /// microseconds, but a device still on an Argon2 hash from an older
    /// registry costs tens of milliseconds (once), and a storm of those must
    /// queue instead of thrashing memory.
    pub password_checks: tokio::sync::Semaphore,
    pub throttle: LoginThrottle,
    pub devices: DeviceCache,
    pub quotas: PublishQuotas,
    pub last_seen: Arc<LastSeen>,
}

impl Gate {
    /// Who the client is, whether its session and will are allowed, and
    /// whether failed logins from its address or for its identity are
    /// being throttled. Tying the client id to the identity is what keeps
    /// one client from taking over another's session.
    pub async fn login(&self, request: &LoginRequest) -> Result<Login, ConnectRefusal> {
        let claimed = request.username.clone().unwrap_or_default();
        let outcome = if !self.throttle.admits(request.address, &claimed, Instant::now()) {
            Err(ConnectRefusal::Throttled)
        } else if let Some(company) = company_of_username(&claimed) {
            self.login_reader(company, request)
                .await
                .map(|credential| Login::Reader { company: company.to_owned(), credential })
        } else {
            self.login_device(request).await.map(|(id, credential)| Login::Device { id, credential })
        };
        match &outcome {
            Ok(login) => {
                self.throttle.succeeded(request.address, &claimed);
                if matches!(login, Login::Device { .. }) {
                    self.counters.connect_accepted();
                }
            }
            Err(refusal) => {
                // At most a line a second: a flood of bad CONNECTs must not fill the disk with logs.
                static THROTTLE: LogThrottle = LogThrottle::new(Duration::from_secs(1));
                if let Some(suppressed) = THROTTLE.allow() {
                    tracing::info!(username = ?claimed, client_id = ?request.client_id, reason = refusal.label(), suppressed, "connection refused");
                }
                self.counters.connect_refused(refusal.label());
                // Only wrong credentials count as failures.
                if matches!(refusal, ConnectRefusal::BadPassword | ConnectRefusal::UnknownDevice) {
                    self.throttle.failed(request.address, &claimed, Instant::now());
                }
            }
        }
        outcome
    }

    /// An alarm reader: the password must be a live API token of that company.
    async fn login_reader(
        &self,
        company: &str,
        request: &LoginRequest,
    ) -> Result<Credential, ConnectRefusal> {
        check_reader_session(company, session_request(request))?;
        let password = request.password.as_ref().ok_or(ConnectRefusal::NoCredentials)?;
        let bearer = String::from_utf8_lossy(password);
        match self.registry.verify_token(&bearer).await {
            Ok(Some(token)) if token.company.as_deref() == Some(company) => Ok(Credential::Token(token.id)),
            Ok(_) => Err(ConnectRefusal::BadPassword),
            Err(err) => {
                tracing::error!(error = %err, "registry lookup failed");
                Err(ConnectRefusal::RegistryUnavailable)
            }
        }
    }

    async fn login_device(&self, request: &LoginRequest) -> Result<(String, Credential), ConnectRefusal> {
        let claim = Claim {
            username: request.username.as_deref(),
            has_password: request.password.is_some(),
            certificate_name: request.certificate.as_ref().map(|c| c.name.as_str()),
        };
        let (device_id, password) = match identify(claim)? {
            Identity::Password(device) => {
                let password = request.password.as_ref().map(|p| String::from_utf8_lossy(p).into_owned());
                (device.to_owned(), password)
            }
            Identity::Certificate(device) => (device.to_owned(), None),
        };
        check_device_session(&device_id, session_request(request))?;
        let _permit =
            self.password_checks.acquire().await.map_err(|_| ConnectRefusal::RegistryUnavailable)?;
        let certificate = request.certificate.as_ref().map(|c| c.fingerprint.clone());
        let outcome = match (password, &certificate) {
            (Some(password), _) => self.registry.authenticate(&device_id, password).await,
            (None, Some(fingerprint)) => {
                self.registry.authenticate_by_certificate(&device_id, fingerprint).await
            }
            (None, None) => return Err(ConnectRefusal::NoCredentials),
        };
        match outcome {
            Ok(AuthOutcome::Allowed) => {
                let credential = Credential::Device { id: device_id.clone(), certificate };
                Ok((device_id, credential))
            }
            Ok(AuthOutcome::RevokedCertificate) => Err(ConnectRefusal::CertificateRevoked),
            Ok(AuthOutcome::UnknownDevice) => Err(ConnectRefusal::UnknownDevice),
            Ok(AuthOutcome::BadPassword) => Err(ConnectRefusal::BadPassword),
            Ok(AuthOutcome::Disabled) => Err(ConnectRefusal::Disabled),
            Err(err) => {
                tracing::error!(error = %err, "registry lookup failed");
                Err(ConnectRefusal::RegistryUnavailable)
            }
        }
    }

    /// Checks a run of one device's publishes, in arrival order, and appends
    /// the admitted ones to the stream as one batch (one group commit).
    /// Returns each publish's outcome, in the same order; `Ok` means the
    /// stream holds it durably.
    pub async fn publish(&self, device_id: &str, batch: &[Publish]) -> Vec<Result<(), PublishRefusal>> {
        let mut outcomes = Vec::with_capacity(batch.len());
        let mut to_log = Vec::with_capacity(batch.len());
        let mut records = Vec::new();
        let received_at = now_ms();
        for publish in batch {
            let (outcome, logged) = match self.admit(device_id, publish).await {
                Ok(Destination::Log) => {
                    records.push(NewRecord {
                        device_id: device_id.to_owned(),
                        topic: publish.topic.clone(),
                        received_at,
                        payload: publish.payload.clone(),
                    });
                    (Ok(()), true)
                }
                Ok(control) => (self.record_report(device_id, control, publish).await, false),
                Err(refusal) => (Err(refusal), false),
            };
            to_log.push(logged);
            outcomes.push(outcome);
        }
        if outcomes.iter().any(Result::is_ok) {
            self.last_seen.note(device_id, received_at);
        }
        if records.is_empty() {
            return outcomes;
        }
        let started = Instant::now();
        let appended = self.stream.append(records).await;
        for ((publish, outcome), to_log) in batch.iter().zip(outcomes.iter_mut()).zip(to_log) {
            if !to_log {
                continue;
            }
            match &appended {
                Ok(_) => self.counters.publish_accepted(publish.payload.len()),
                Err(_) => {
                    *outcome = Err(PublishRefusal::StreamUnavailable);
                    self.counters.publish_refused(PublishRefusal::StreamUnavailable.label());
                }
            }
        }
        match appended {
            Ok(_) => metrics::histogram!("wenu_edge_append_seconds").record(started.elapsed().as_secs_f64()),
            Err(err) => {
                static THROTTLE: LogThrottle = LogThrottle::new(Duration::from_secs(1));
                if let Some(suppressed) = THROTTLE.allow() {
                    tracing::warn!(error = %err, suppressed, "stream append failed; publish not acknowledged");
                }
            }
        }
        outcomes
    }

    /// Whether one publish may be taken, and where it goes; counts the refusal if not.
    async fn admit(&self, device_id: &str, publish: &Publish) -> Result<Destination, PublishRefusal> {
        let refusal = match self.check(device_id, publish).await {
            Ok(destination) => return Ok(destination),
            Err(refusal) => refusal,
        };
        self.refused(device_id, publish, refusal);
        Err(refusal)
    }

    fn refused(&self, device_id: &str, publish: &Publish, refusal: PublishRefusal) {
        self.counters.publish_refused(refusal.label());
        static THROTTLE: LogThrottle = LogThrottle::new(Duration::from_secs(1));
        if let Some(suppressed) = THROTTLE.allow() {
            tracing::info!(device = %device_id, topic = ?publish.topic, reason = refusal.label(), suppressed, "publish refused");
        }
    }

    /// A report or a command result, into the registry (not the log).
    async fn record_report(
        &self,
        device_id: &str,
        destination: Destination,
        publish: &Publish,
    ) -> Result<(), PublishRefusal> {
        let recorded = reports::record(&self.registry, device_id, destination, &publish.payload).await;
        match recorded {
            Ok(()) => metrics::counter!("wenu_edge_reports_total").increment(1),
            Err(refusal) => self.refused(device_id, publish, refusal),
        }
        recorded
    }

    async fn check(&self, device_id: &str, publish: &Publish) -> Result<Destination, PublishRefusal> {
        let incoming = IncomingPublish {
            topic: &publish.topic,
            payload_len: publish.payload.len(),
            qos: publish.qos,
            retain: publish.retain,
        };
        let destination = check_publish(device_id, incoming, self.max_payload_bytes)?;
        let device = self.devices.get(device_id).await.map_err(|err| {
            tracing::error!(error = %err, "registry lookup failed");
            PublishRefusal::RegistryUnavailable
        })?;
        if !device.enabled {
            return Err(PublishRefusal::Disabled);
        }
        if !self.quotas.admit(device_id, publish.payload.len(), device.quota) {
            return Err(PublishRefusal::QuotaExceeded);
        }
        Ok(destination)
    }
}

fn session_request(request: &LoginRequest) -> SessionRequest<'_> {
    SessionRequest {
        client_id: &request.client_id,
        clean_session: request.clean_session,
        has_will: request.has_will,
    }
}
