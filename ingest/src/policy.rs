//! The edge's decisions, as pure functions: who a client is, and whether a
//! publish may enter the stream. The rmqtt hooks only translate.

use wenu_core::topic::{alarm_topic, device_of_telemetry_topic};

/// Usernames of the clients that read a company's alarms:
/// `company:{company id}`, with one of the company's API tokens as password.
/// Device ids never contain `:`, so the two cannot be confused.
pub const COMPANY_PREFIX: &str = "company:";

/// The company a username speaks for, if it is an alarm reader's.
pub fn company_of_username(username: &str) -> Option<&str> {
    username.strip_prefix(COMPANY_PREFIX)
}

/// Whether a client may subscribe to `filter`: only an alarm reader, only
/// to its own company's alarm topic, with no wildcards. Devices subscribe
/// to nothing.
pub fn may_subscribe(username: Option<&str>, filter: &str) -> bool {
    username.and_then(company_of_username).is_some_and(|company| filter == alarm_topic(company))
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
    RegistryUnavailable,
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
            ConnectRefusal::RegistryUnavailable => "registry_unavailable",
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
    /// The stream could not store it durably (disk full, overload).
    StreamUnavailable,
}

impl PublishRefusal {
    pub fn label(self) -> &'static str {
        match self {
            PublishRefusal::InvalidTopic => "invalid_topic",
            PublishRefusal::ForeignTopic => "foreign_topic",
            PublishRefusal::Oversized { .. } => "oversized",
            PublishRefusal::StreamUnavailable => "stream_unavailable",
        }
    }
}

/// Whether `device_id` may put this publish on the stream.
pub fn check_publish(
    device_id: &str,
    topic: &str,
    payload_len: usize,
    limit: usize,
) -> Result<(), PublishRefusal> {
    let owner = device_of_telemetry_topic(topic).map_err(|_| PublishRefusal::InvalidTopic)?;
    if owner != device_id {
        return Err(PublishRefusal::ForeignTopic);
    }
    if payload_len > limit {
        return Err(PublishRefusal::Oversized { len: payload_len, limit });
    }
    Ok(())
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
    fn only_a_company_reader_subscribes_and_only_to_its_alarms() {
        assert!(may_subscribe(Some("company:acme"), "wenu/alarms/acme"));
        assert!(!may_subscribe(Some("company:acme"), "wenu/alarms/globex"));
        assert!(!may_subscribe(Some("company:acme"), "wenu/alarms/+"));
        assert!(!may_subscribe(Some("company:acme"), "wenu/#"));
        assert!(!may_subscribe(Some("acme-00001"), "wenu/alarms/acme"));
        assert!(!may_subscribe(None, "wenu/alarms/acme"));
    }

    #[test]
    fn publishes() {
        assert_eq!(check_publish("d1", "wenu/d1/telemetry", 10, 100), Ok(()));
        assert_eq!(check_publish("d1", "wenu/d2/telemetry", 10, 100), Err(PublishRefusal::ForeignTopic));
        assert_eq!(check_publish("d1", "wenu/d1/other", 10, 100), Err(PublishRefusal::InvalidTopic));
        assert_eq!(check_publish("d1", "$SYS/x", 10, 100), Err(PublishRefusal::InvalidTopic));
        assert_eq!(
            check_publish("d1", "wenu/d1/telemetry", 101, 100),
            Err(PublishRefusal::Oversized { len: 101, limit: 100 })
        );
    }
}
