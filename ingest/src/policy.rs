//! The edge's decisions, as pure functions: who a client is, and whether a
//! publish may enter the stream. The MQTT glue only translates.

use wenu_core::topic::{DeviceTopic, alarm_topic};

/// Usernames of the clients that read a company's alarms:
/// `company:{company id}`, with one of the company's API tokens as password.
/// Device ids never contain `:`, so the two cannot be confused. Their client
/// ids are `company:{company id}:{anything}`.
pub const COMPANY_PREFIX: &str = "company:";

/// The company a username speaks for, if it is an alarm reader's.
pub fn company_of_username(username: &str) -> Option<&str> {
    username.strip_prefix(COMPANY_PREFIX)
}

/// Whether a client may subscribe to `filter`, with no wildcards: an alarm
/// reader to its own company's alarm topic, a device to its own downlink
/// topics (configuration, commands). `identity` is the device id or the
/// reader's `company:{id}`.
pub fn may_subscribe(identity: &str, filter: &str) -> bool {
    match company_of_username(identity) {
        Some(company) => filter == alarm_topic(company),
        None => DeviceTopic::parse(filter)
            .is_some_and(|(device, topic)| device == identity && topic.is_downlink()),
    }
}

/// How a client claims to be a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claim<'a> {
    pub username: Option<&'a str>,
    pub has_password: bool,
    /// Common name of a client certificate the TLS layer already verified
    /// against the device CA (mutual TLS listeners only).
    pub certificate_name: Option<&'a str>,
}

/// Which check identifies the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Identity<'a> {
    /// Verify this device's password.
    Password(&'a str),
    /// The certificate proved it; check the device exists and is enabled.
    Certificate(&'a str),
}

/// Why a connection was refused; the label is the metric's `reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectRefusal {
    NoCredentials,
    UnknownDevice,
    BadPassword,
    Disabled,
    /// The username names another device than the client certificate.
    CertificateMismatch,
    CertificateWithoutName,
    /// The client certificate's fingerprint is revoked in the registry.
    CertificateRevoked,
    RegistryUnavailable,
    /// The client id is not the identity: a device's must be its device id,
    /// an alarm reader's `company:{company}:…`. Sessions are keyed by client
    /// id, so this is what keeps one client from taking over another's.
    ClientIdMismatch,
    /// A CONNECT with a Last Will: the server would publish it on the
    /// client's behalf, past every publish check.
    WillRefused,
    /// An alarm reader asked to keep its session (clean session off):
    /// alarm readers get clean sessions only.
    PersistentSession,
    /// Too many failed logins from this address or for this device lately.
    Throttled,
}

impl ConnectRefusal {
    pub fn label(self) -> &'static str {
        match self {
            ConnectRefusal::NoCredentials => "no_credentials",
            ConnectRefusal::UnknownDevice => "unknown_device",
            ConnectRefusal::BadPassword => "bad_password",
            ConnectRefusal::Disabled => "disabled",
            ConnectRefusal::CertificateMismatch => "certificate_mismatch",
            ConnectRefusal::CertificateWithoutName => "certificate_without_name",
            ConnectRefusal::CertificateRevoked => "certificate_revoked",
            ConnectRefusal::RegistryUnavailable => "registry_unavailable",
            ConnectRefusal::ClientIdMismatch => "client_id_mismatch",
            ConnectRefusal::WillRefused => "will_refused",
            ConnectRefusal::PersistentSession => "persistent_session",
            ConnectRefusal::Throttled => "throttled",
        }
    }
}

/// Decides which identity a CONNECT claims, before any lookup.
pub fn identify(claim: Claim<'_>) -> Result<Identity<'_>, ConnectRefusal> {
    if let Some(cert_name) = claim.certificate_name {
        if cert_name.is_empty() {
            return Err(ConnectRefusal::CertificateWithoutName);
        }
        return match claim.username {
            Some(username) if username != cert_name => Err(ConnectRefusal::CertificateMismatch),
            _ => Ok(Identity::Certificate(cert_name)),
        };
    }
    match claim.username {
        Some(username) if claim.has_password => Ok(Identity::Password(username)),
        _ => Err(ConnectRefusal::NoCredentials),
    }
}

/// What a CONNECT asks for besides credentials: the session and the will.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionRequest<'a> {
    pub client_id: &'a str,
    /// MQTT 3.1.1 clean session / MQTT 5 clean start.
    pub clean_session: bool,
    pub has_will: bool,
}

/// Whether a device may open this session: its client id is its device id
/// and it leaves no will. (A device only publishes, so a kept session holds
/// nothing another identity could use; the client id rule is what matters.)
pub fn check_device_session(device_id: &str, request: SessionRequest<'_>) -> Result<(), ConnectRefusal> {
    if request.client_id != device_id {
        return Err(ConnectRefusal::ClientIdMismatch);
    }
    if request.has_will {
        return Err(ConnectRefusal::WillRefused);
    }
    Ok(())
}

/// Whether a company's alarm reader may open this session: client id
/// `company:{company}:{something}`, a clean session and no will.
pub fn check_reader_session(company: &str, request: SessionRequest<'_>) -> Result<(), ConnectRefusal> {
    let suffix = request
        .client_id
        .strip_prefix(COMPANY_PREFIX)
        .and_then(|rest| rest.strip_prefix(company))
        .and_then(|rest| rest.strip_prefix(':'));
    if suffix.is_none_or(str::is_empty) {
        return Err(ConnectRefusal::ClientIdMismatch);
    }
    if request.has_will {
        return Err(ConnectRefusal::WillRefused);
    }
    if !request.clean_session {
        return Err(ConnectRefusal::PersistentSession);
    }
    Ok(())
}

/// Why a publish was refused; the label is the metric's `reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublishRefusal {
    /// Not a telemetry topic at all.
    InvalidTopic,
    /// Another device's telemetry topic.
    ForeignTopic,
    Oversized {
        len: usize,
        limit: usize,
    },
    /// Retained messages are not kept: the stream is the only store.
    Retained,
    /// QoS 2 is not offered: QoS 1 into an idempotent pipeline already
    /// gives exactly-once in effect.
    ExactlyOnceQos,
    /// The device was disabled in the registry.
    Disabled,
    /// Over the device's publish or byte quota.
    QuotaExceeded,
    /// The stream could not store it durably (disk full, overload).
    StreamUnavailable,
    /// The registry could not say whether the device is enabled.
    RegistryUnavailable,
    /// A report or a command result that is not the JSON the guide gives.
    MalformedControl,
    /// A result for a command the device does not have (or already finished).
    UnknownCommand,
}

impl PublishRefusal {
    pub fn label(self) -> &'static str {
        match self {
            PublishRefusal::InvalidTopic => "invalid_topic",
            PublishRefusal::ForeignTopic => "foreign_topic",
            PublishRefusal::Oversized { .. } => "oversized",
            PublishRefusal::Retained => "retained",
            PublishRefusal::ExactlyOnceQos => "qos2",
            PublishRefusal::Disabled => "disabled",
            PublishRefusal::QuotaExceeded => "quota_exceeded",
            PublishRefusal::StreamUnavailable => "stream_unavailable",
            PublishRefusal::RegistryUnavailable => "registry_unavailable",
            PublishRefusal::MalformedControl => "malformed_control",
            PublishRefusal::UnknownCommand => "unknown_command",
        }
    }
}

/// A PUBLISH as the policy sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IncomingPublish<'a> {
    pub topic: &'a str,
    pub payload_len: usize,
    pub qos: u8,
    pub retain: bool,
}

impl<'a> IncomingPublish<'a> {
    /// A plain QoS 1 publish, the one devices send.
    pub fn qos1(topic: &'a str, payload_len: usize) -> Self {
        Self { topic, payload_len, qos: 1, retain: false }
    }
}

/// Where an accepted publish of a device goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination {
    /// Readings: into the log, acknowledged once durable.
    Log,
    /// What the device reports about itself: into the registry.
    Reported,
    /// A command's result: into the registry.
    Results,
}

/// Whether `device_id` may publish this, and where it goes.
pub fn check_publish(
    device_id: &str,
    publish: IncomingPublish<'_>,
    limit: usize,
) -> Result<Destination, PublishRefusal> {
    let (owner, topic) = DeviceTopic::parse(publish.topic).ok_or(PublishRefusal::InvalidTopic)?;
    if owner != device_id {
        return Err(PublishRefusal::ForeignTopic);
    }
    let destination = match topic {
        DeviceTopic::Telemetry => Destination::Log,
        DeviceTopic::Reported => Destination::Reported,
        DeviceTopic::Results => Destination::Results,
        // The server's own topics: a device does not publish there.
        DeviceTopic::Config | DeviceTopic::Commands => return Err(PublishRefusal::InvalidTopic),
    };
    if publish.retain {
        return Err(PublishRefusal::Retained);
    }
    if publish.qos > 1 {
        return Err(PublishRefusal::ExactlyOnceQos);
    }
    if publish.payload_len > limit {
        return Err(PublishRefusal::Oversized { len: publish.payload_len, limit });
    }
    Ok(destination)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim<'a>(username: Option<&'a str>, has_password: bool, cert: Option<&'a str>) -> Claim<'a> {
        Claim { username, has_password, certificate_name: cert }
    }

    #[test]
    fn identities() {
        assert_eq!(identify(claim(Some("d1"), true, None)), Ok(Identity::Password("d1")));
        assert_eq!(identify(claim(Some("d1"), false, None)), Err(ConnectRefusal::NoCredentials));
        assert_eq!(identify(claim(None, true, None)), Err(ConnectRefusal::NoCredentials));
        assert_eq!(identify(claim(None, false, Some("d1"))), Ok(Identity::Certificate("d1")));
        assert_eq!(identify(claim(Some("d1"), true, Some("d1"))), Ok(Identity::Certificate("d1")));
        assert_eq!(identify(claim(Some("d2"), true, Some("d1"))), Err(ConnectRefusal::CertificateMismatch));
        assert_eq!(identify(claim(None, false, Some(""))), Err(ConnectRefusal::CertificateWithoutName));
    }

    #[test]
    fn readers_subscribe_to_their_alarms_and_devices_to_their_own_downlink() {
        assert!(may_subscribe("company:acme", "wenu/alarms/acme"));
        assert!(!may_subscribe("company:acme", "wenu/alarms/globex"));
        assert!(!may_subscribe("company:acme", "wenu/alarms/+"));
        assert!(!may_subscribe("company:acme", "wenu/#"));
        assert!(!may_subscribe("company:acme", "wenu/acme-00001/config"));
        assert!(!may_subscribe("acme-00001", "wenu/alarms/acme"));
        assert!(may_subscribe("acme-00001", "wenu/acme-00001/config"));
        assert!(may_subscribe("acme-00001", "wenu/acme-00001/commands"));
        for other in ["wenu/acme-00002/config", "wenu/+/config", "wenu/acme-00001/+", "wenu/acme-00001/#"] {
            assert!(!may_subscribe("acme-00001", other), "{other}");
        }
        for uplink in ["wenu/acme-00001/telemetry", "wenu/acme-00001/reported", "wenu/acme-00001/results"] {
            assert!(!may_subscribe("acme-00001", uplink), "{uplink}");
        }
    }

    #[test]
    fn publishes() {
        let qos1 = IncomingPublish::qos1;
        assert_eq!(check_publish("d1", qos1("wenu/d1/telemetry", 10), 100), Ok(Destination::Log));
        let qos0 = IncomingPublish { qos: 0, ..qos1("wenu/d1/telemetry", 10) };
        assert_eq!(check_publish("d1", qos0, 100), Ok(Destination::Log));
        assert_eq!(check_publish("d1", qos1("wenu/d1/reported", 10), 100), Ok(Destination::Reported));
        assert_eq!(check_publish("d1", qos1("wenu/d1/results", 10), 100), Ok(Destination::Results));
        assert_eq!(check_publish("d1", qos1("wenu/d1/config", 10), 100), Err(PublishRefusal::InvalidTopic));
        assert_eq!(check_publish("d1", qos1("wenu/d2/reported", 10), 100), Err(PublishRefusal::ForeignTopic));
        assert_eq!(
            check_publish("d1", qos1("wenu/d2/telemetry", 10), 100),
            Err(PublishRefusal::ForeignTopic)
        );
        assert_eq!(check_publish("d1", qos1("wenu/d1/other", 10), 100), Err(PublishRefusal::InvalidTopic));
        assert_eq!(check_publish("d1", qos1("$SYS/x", 10), 100), Err(PublishRefusal::InvalidTopic));
        assert_eq!(
            check_publish("d1", qos1("wenu/d1/telemetry", 101), 100),
            Err(PublishRefusal::Oversized { len: 101, limit: 100 })
        );
        let retained = IncomingPublish { retain: true, ..qos1("wenu/d1/telemetry", 10) };
        assert_eq!(check_publish("d1", retained, 100), Err(PublishRefusal::Retained));
        let qos2 = IncomingPublish { qos: 2, ..qos1("wenu/d1/telemetry", 10) };
        assert_eq!(check_publish("d1", qos2, 100), Err(PublishRefusal::ExactlyOnceQos));
    }

    fn session(client_id: &str, clean_session: bool, has_will: bool) -> SessionRequest<'_> {
        SessionRequest { client_id, clean_session, has_will }
    }

    #[test]
    fn a_device_session_is_its_own_and_leaves_no_will() {
        assert_eq!(check_device_session("d1", session("d1", true, false)), Ok(()));
        assert_eq!(check_device_session("d1", session("d1", false, false)), Ok(()));
        for other in ["d2", "", "company:acme:x", "d1 "] {
            assert_eq!(
                check_device_session("d1", session(other, true, false)),
                Err(ConnectRefusal::ClientIdMismatch),
                "{other:?}"
            );
        }
        assert_eq!(check_device_session("d1", session("d1", true, true)), Err(ConnectRefusal::WillRefused));
    }

    #[test]
    fn an_alarm_reader_session_names_its_company_and_is_clean() {
        assert_eq!(check_reader_session("acme", session("company:acme:dash", true, false)), Ok(()));
        for other in
            ["company:acme", "company:acme:", "company:globex:dash", "company:acmex:dash", "dash", "d1"]
        {
            assert_eq!(
                check_reader_session("acme", session(other, true, false)),
                Err(ConnectRefusal::ClientIdMismatch),
                "{other:?}"
            );
        }
        assert_eq!(
            check_reader_session("acme", session("company:acme:dash", false, false)),
            Err(ConnectRefusal::PersistentSession)
        );
        assert_eq!(
            check_reader_session("acme", session("company:acme:dash", true, true)),
            Err(ConnectRefusal::WillRefused)
        );
    }
}
