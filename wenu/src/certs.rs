//! `wenu certs init`: a local certificate authority for the demo and tests,
//! a server certificate for the MQTT TLS listener, and one client
//! certificate per device (common name = device id) for mutual TLS.
//!
//! In production, devices get X.509 certificates from IoT Core or your PKI;
//! this is only the local stand-in.

use std::path::{Path, PathBuf};

use clap::Subcommand;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use wenu_core::fleet::Fleet;
use wenu_core::keyring::write_private_file;

#[derive(Subcommand)]
pub enum CertsCommand {
    /// Write ca.crt, server.crt/.key and devices/{id}.crt/.key into a directory.
    Init {
        /// Directory to write into.
        #[arg(long, default_value = "certs")]
        out: PathBuf,
        /// Names the server certificate is valid for (DNS names or IPs).
        #[arg(long = "host", default_values_t = ["localhost".to_string(), "127.0.0.1".to_string()])]
        hosts: Vec<String>,
        /// Also issue a client certificate to every device of this fleet file.
        #[arg(long)]
        fleet: Option<PathBuf>,
    },
}

pub fn run(command: CertsCommand) -> anyhow::Result<()> {
    let CertsCommand::Init { out, hosts, fleet } = command;
    let devices = match fleet {
        Some(path) => Fleet::load(&path)?
            .devices
            .into_iter()
            .map(|d| d.device_id)
            .collect(),
        None => Vec::new(),
    };
    init(&out, &hosts, &devices)?;
    eprintln!(
        "wrote CA, server certificate and {} device certificates to {}",
        devices.len(),
        out.display()
    );
    Ok(())
}

pub fn init(out: &Path, hosts: &[String], devices: &[String]) -> anyhow::Result<()> {
    std::fs::create_dir_all(out.join("devices"))?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "Wenu local device CA");
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_key = KeyPair::generate()?;
    std::fs::write(out.join("ca.crt"), ca.self_signed(&ca_key)?.pem())?;
    write_private_file(&out.join("ca.key"), ca_key.serialize_pem().as_bytes())?;
    let issuer = Issuer::new(ca, ca_key);

    let mut server = CertificateParams::new(hosts.to_vec())?;
    server.distinguished_name.push(
        DnType::CommonName,
        hosts.first().map_or("localhost", String::as_str),
    );
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server_key = KeyPair::generate()?;
    std::fs::write(
        out.join("server.crt"),
        server.signed_by(&server_key, &issuer)?.pem(),
    )?;
    write_private_file(
        &out.join("server.key"),
        server_key.serialize_pem().as_bytes(),
    )?;

    for device in devices {
        let mut client = CertificateParams::new(Vec::<String>::new())?;
        client
            .distinguished_name
            .push(DnType::CommonName, device.as_str());
        client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let key = KeyPair::generate()?;
        std::fs::write(
            out.join("devices").join(format!("{device}.crt")),
            client.signed_by(&key, &issuer)?.pem(),
        )?;
        write_private_file(
            &out.join("devices").join(format!("{device}.key")),
            key.serialize_pem().as_bytes(),
        )?;
    }
    Ok(())
}
