//! A local certificate authority for the edge's TLS listener: a CA, a
//! server certificate, and one client certificate per device (common name =
//! device id) for mutual TLS.
//!
//! In production, devices get X.509 certificates from IoT Core or your PKI;
//! this is the local stand-in used by `wenu certs`, the demo and tests. The
//! CA is valid for [`CA_DAYS`]; server and device certificates for as many
//! days as asked ([`DEFAULT_DAYS`] by default), and devices get new ones
//! from the same CA with [`issue_device_certificates`]. A certificate that
//! leaked is revoked in the registry (`wenu devices revoke-cert`).

use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use time::{Duration, OffsetDateTime};
use wenu_core::keyring::write_private_file;

use crate::{Error, Result};

/// How long the local CA is valid.
pub const CA_DAYS: u32 = 3650;
/// How long server and device certificates are valid unless asked otherwise:
/// the longest lifetime public CAs issue today.
pub const DEFAULT_DAYS: u32 = 397;

/// Writes `ca.crt`/`ca.key`, `server.crt`/`server.key` (valid for `hosts`)
/// and `devices/{id}.crt`/`.key` into `out`, the latter two valid for
/// `days`. Private keys are owner-only.
pub fn init_local_ca(out: &Path, hosts: &[String], devices: &[String], days: u32) -> Result<()> {
    std::fs::create_dir_all(out).map_err(|source| file_error(out, source))?;
    let mut ca = ca_params();
    valid_for(&mut ca, CA_DAYS.max(days));
    let ca_key = KeyPair::generate()?;
    let ca_cert = ca.self_signed(&ca_key)?;
    write_pair(out, "ca", &ca_cert.pem(), &ca_key)?;
    let issuer = Issuer::new(ca_params(), ca_key);

    let mut server = CertificateParams::new(hosts.to_vec())?;
    server.distinguished_name.push(DnType::CommonName, hosts.first().map_or("localhost", String::as_str));
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    valid_for(&mut server, days);
    let server_key = KeyPair::generate()?;
    write_pair(out, "server", &server.signed_by(&server_key, &issuer)?.pem(), &server_key)?;
    issue(out, &issuer, devices, days)
}

/// Issues `devices/{id}.crt`/`.key` in `out` with the CA that
/// [`init_local_ca`] wrote there: new devices, or renewals before expiry.
pub fn issue_device_certificates(out: &Path, devices: &[String], days: u32) -> Result<()> {
    let key_path = out.join("ca.key");
    let pem = std::fs::read_to_string(&key_path).map_err(|source| file_error(&key_path, source))?;
    let issuer = Issuer::new(ca_params(), KeyPair::from_pem(&pem)?);
    issue(out, &issuer, devices, days)
}

fn issue(out: &Path, issuer: &Issuer<'_, KeyPair>, devices: &[String], days: u32) -> Result<()> {
    let devices_dir = out.join("devices");
    std::fs::create_dir_all(&devices_dir).map_err(|source| file_error(&devices_dir, source))?;
    for device in devices {
        let mut client = CertificateParams::new(Vec::<String>::new())?;
        client.distinguished_name.push(DnType::CommonName, device.as_str());
        client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        valid_for(&mut client, days);
        let key = KeyPair::generate()?;
        write_pair(&devices_dir, device, &client.signed_by(&key, issuer)?.pem(), &key)?;
    }
    Ok(())
}

/// The CA's name and usages: what its certificate says, and what signing
/// with it later needs to know again.
fn ca_params() -> CertificateParams {
    let mut ca = CertificateParams::default();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "Wenu local device CA");
    ca.key_usages =
        vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    ca
}

/// From an hour ago (clocks disagree a little) for `days`.
fn valid_for(params: &mut CertificateParams, days: u32) {
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::hours(1);
    params.not_after = now + Duration::days(i64::from(days));
}

/// `{name}.crt` (public) and `{name}.key` (owner-only).
fn write_pair(dir: &Path, name: &str, cert_pem: &str, key: &KeyPair) -> Result<()> {
    let cert_path = dir.join(format!("{name}.crt"));
    std::fs::write(&cert_path, cert_pem).map_err(|source| file_error(&cert_path, source))?;
    write_private_file(&dir.join(format!("{name}.key")), key.serialize_pem().as_bytes())?;
    Ok(())
}

fn file_error(path: &Path, source: std::io::Error) -> Error {
    Error::CertificateFile { path: path.to_owned(), source }
}
