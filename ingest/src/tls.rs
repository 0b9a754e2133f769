//! TLS for the 8883 listener (rustls): the server certificate, and with a
//! client CA, mutual TLS where a device's certificate names the device.

use std::path::Path;
use std::sync::Arc;

use ntex_io::IoRef;
use ntex_tls::rustls::PeerCert;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};

use crate::gate::PeerCertificate;
use crate::{Error, Result, TlsConfig};

/// The rustls configuration of a TLS listener. With `client_ca`, every
/// client must present a certificate that CA signed.
pub(crate) fn server_config(tls: &TlsConfig) -> Result<Arc<ServerConfig>> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_error(&tls.cert, e))?;
    let builder = match &tls.client_ca {
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for cert in certificates(ca)? {
                roots.add(cert).map_err(|e| tls_error(ca, e))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| tls_error(ca, e))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let key = PrivateKeyDer::from_pem_file(&tls.key).map_err(|e| tls_error(&tls.key, e))?;
    let config =
        builder.with_single_cert(certificates(&tls.cert)?, key).map_err(|e| tls_error(&tls.cert, e))?;
    Ok(Arc::new(config))
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| tls_error(path, e))?;
    if certs.is_empty() {
        return Err(tls_error(path, "no certificate in the file"));
    }
    Ok(certs)
}

fn tls_error(path: &Path, error: impl std::fmt::Display) -> Error {
    Error::Tls { path: path.to_owned(), message: error.to_string() }
}

/// The certificate the client presented, if it did (the TLS layer has
/// verified it against the client CA): its common name and fingerprint.
pub(crate) fn peer_certificate(io: &IoRef) -> Option<PeerCertificate> {
    let query = io.query::<PeerCert<'static>>();
    let cert = query.as_ref()?;
    let name = x509_parser::parse_x509_certificate(&cert.0).ok().and_then(|(_, cert)| {
        cert.subject().iter_common_name().next().and_then(|cn| cn.as_str().ok()).map(str::to_owned)
    });
    Some(PeerCertificate {
        name: name.unwrap_or_default(),
        fingerprint: wenu_registry::certificate_fingerprint(&cert.0),
    })
}
