//! A local certificate authority for the edge's TLS listener: a CA, a
//! server certificate, and one client certificate per device (common name =
//! device id) for mutual TLS.
//!
//! In production, devices get X.509 certificates from IoT Core or your PKI;
//! this is the local stand-in used by `wenu certs init`, the demo and tests.

use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use wenu_core::keyring::write_private_file;

use crate::{Error, Result};

/// Writes `ca.crt`/`ca.key`, `server.crt`/`server.key` (valid for `hosts`)
/// and `devices/{id}.crt`/`.key` into `out`. Private keys are owner-only.
pub fn init_local_ca(out: &Path, hosts: &[String], devices: &[String]) -> Result<()> {
    std::fs::create_dir_all(out.join("devices")).map_err(|source| file_error(out, source))?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "Wenu local device CA");
    ca.key_usages =
        vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let ca_key = KeyPair::generate()?;
    let ca_cert = ca.self_signed(&ca_key)?;
    write_pair(out, "ca", &ca_cert.pem(), &ca_key)?;
    let issuer = Issuer::new(ca, ca_key);

    let mut server = CertificateParams::new(hosts.to_vec())?;
    server.distinguished_name.push(DnType::CommonName, hosts.first().map_or("localhost", String::as_str));
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server_key = KeyPair::generate()?;
    write_pair(out, "server", &server.signed_by(&server_key, &issuer)?.pem(), &server_key)?;

    let devices_dir = out.join("devices");
    for device in devices {
        let mut client = CertificateParams::new(Vec::<String>::new())?;
        client.distinguished_name.push(DnType::CommonName, device.as_str());
        client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let key = KeyPair::generate()?;
        write_pair(&devices_dir, device, &client.signed_by(&key, &issuer)?.pem(), &key)?;
    }
    Ok(())
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
