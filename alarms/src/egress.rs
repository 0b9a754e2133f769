//! Where webhooks may connect. A webhook URL is chosen by a company's admin,
//! so a delivery must not become a way into the network Wenu runs in
//! (server-side request forgery): addresses are checked when the connection
//! is made, on the very addresses it is made to, so a name that resolves to
//! something else by the time of the delivery (DNS rebinding) is refused too.
//! Redirects are never followed, every request has a deadline, and errors
//! name an endpoint by scheme, host and port only: a webhook's path and query
//! often are its credential.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use rustls::pki_types::CertificateDer;

/// How far webhooks may reach.
#[derive(Debug, Clone)]
pub struct WebhookPolicy {
    /// Also deliver to private networks (RFC 1918, loopback, unique-local,
    /// shared address space): for receivers on the premises. Link-local
    /// addresses, where clouds serve instance credentials, stay refused.
    pub allow_private: bool,
    /// Certificates trusted besides the public roots, for receivers whose
    /// certificate a private CA signed.
    pub extra_roots: Vec<CertificateDer<'static>>,
    /// Longest a delivery may take, connecting included.
    pub timeout: Duration,
}

impl Default for WebhookPolicy {
    /// Public addresses only, public roots, 10 s.
    fn default() -> Self {
        WebhookPolicy { allow_private: false, extra_roots: Vec::new(), timeout: Duration::from_secs(10) }
    }
}

impl WebhookPolicy {
    /// Private networks allowed: for receivers on the premises, and tests on loopback.
    pub fn private_networks() -> Self {
        WebhookPolicy { allow_private: true, ..WebhookPolicy::default() }
    }

    /// Also trusts the CA certificates of a PEM file.
    pub fn trusting_ca_file(mut self, path: &std::path::Path) -> Result<Self, String> {
        use rustls::pki_types::pem::PemObject;
        let certs = CertificateDer::pem_file_iter(path)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|e| format!("{}: {e}", path.display()))?;
        if certs.is_empty() {
            return Err(format!("{} holds no certificate", path.display()));
        }
        self.extra_roots.extend(certs);
        Ok(self)
    }

    /// Whether a delivery may connect to `ip`.
    pub fn allows(&self, ip: IpAddr) -> bool {
        match classify(ip) {
            Reach::Public => true,
            Reach::Private => self.allow_private,
            Reach::Never => false,
        }
    }

    /// The HTTP client that enforces this policy.
    pub fn client(&self) -> Result<reqwest::Client, String> {
        let mut roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
        for cert in &self.extra_roots {
            roots.add(cert.clone()).map_err(|e| format!("a webhook root certificate: {e}"))?;
        }
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
        reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .dns_resolver(Arc::new(CheckedResolver { policy: self.clone() }))
            .redirect(reqwest::redirect::Policy::none())
            // A proxy would connect on our behalf, past the address check.
            .no_proxy()
            .connect_timeout(self.timeout.min(Duration::from_secs(5)))
            .timeout(self.timeout)
            .build()
            .map_err(|e| format!("the webhook HTTP client: {e}"))
    }

    /// Checks a URL before any request: an `http` or `https` URL with a host,
    /// and, when the host is an address, one this policy allows (names are
    /// checked when they are resolved).
    pub fn check_url(&self, url: &str) -> Result<reqwest::Url, String> {
        let parsed = reqwest::Url::parse(url).map_err(|e| format!("not a URL: {e}"))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err("only http and https URLs".into());
        }
        let ip = match parsed.host() {
            None => return Err("the URL has no host".into()),
            Some(url::Host::Domain(_)) => None,
            Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
        };
        if let Some(ip) = ip.filter(|ip| !self.allows(*ip)) {
            return Err(format!("{} is an address webhooks may not reach ({ip})", endpoint(&parsed)));
        }
        Ok(parsed)
    }
}

/// The request failed because its host resolves only to refused addresses.
pub(crate) fn refused_address(err: &reqwest::Error) -> bool {
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        if cause.is::<Unreachable>() {
            return true;
        }
        source = cause.source();
    }
    false
}

/// A URL as errors and logs may show it: scheme, host and port.
pub fn endpoint(url: &reqwest::Url) -> String {
    let host = url.host_str().unwrap_or("?");
    match url.port() {
        Some(port) => format!("{}://{host}:{port}", url.scheme()),
        None => format!("{}://{host}", url.scheme()),
    }
}

enum Reach {
    Public,
    Private,
    Never,
}

fn classify(ip: IpAddr) -> Reach {
    match ip {
        IpAddr::V4(ip) => classify_v4(ip),
        IpAddr::V6(ip) => match ip.to_ipv4_mapped() {
            Some(v4) => classify_v4(v4),
            None => classify_v6(ip),
        },
    }
}

fn classify_v4(ip: Ipv4Addr) -> Reach {
    let [a, b, ..] = ip.octets();
    if ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || a == 0
        || a >= 240
    {
        Reach::Never
    } else if ip.is_loopback() || ip.is_private() || (a == 100 && (64..128).contains(&b)) {
        Reach::Private
    } else {
        Reach::Public
    }
}

fn classify_v6(ip: Ipv6Addr) -> Reach {
    let first = ip.segments()[0];
    let link_local = first & 0xffc0 == 0xfe80;
    let unique_local = first & 0xfe00 == 0xfc00;
    // NAT64 and 6to4 carry an IPv4 address that could be anything.
    let embeds_v4 = (first == 0x0064 && ip.segments()[1] == 0xff9b) || first == 0x2002;
    if ip.is_unspecified() || ip.is_multicast() || link_local || embeds_v4 {
        Reach::Never
    } else if ip.is_loopback() || unique_local {
        Reach::Private
    } else {
        Reach::Public
    }
}

/// Resolves a webhook's host and keeps only the addresses the policy allows;
/// the connection is made to those, so what was checked is what is reached.
struct CheckedResolver {
    policy: WebhookPolicy,
}

#[derive(Debug, thiserror::Error)]
#[error("{host} resolves only to addresses webhooks may not reach")]
pub(crate) struct Unreachable {
    host: String,
}

impl Resolve for CheckedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.clone();
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed: Vec<SocketAddr> = found.into_iter().filter(|a| policy.allows(a.ip())).collect();
            if allowed.is_empty() {
                return Err(Box::new(Unreachable { host }) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_addresses_only_unless_private_networks_are_allowed() {
        let public = WebhookPolicy::default();
        let private = WebhookPolicy::private_networks();
        for ip in ["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c", "8.8.8.8"] {
            let ip: IpAddr = ip.parse().unwrap();
            assert!(public.allows(ip) && private.allows(ip), "{ip}");
        }
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "100.64.0.1",
            "::1",
            "fd00:ec2::254",
            "::ffff:127.0.0.1",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert!(!public.allows(ip) && private.allows(ip), "{ip}");
        }
        for ip in [
            "169.254.169.254",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "fe80::1",
            "::",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
            "2002:a9fe:a9fe::1",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert!(!public.allows(ip) && !private.allows(ip), "{ip}");
        }
    }

    #[test]
    fn urls_are_checked_and_shown_without_path_or_query() {
        let public = WebhookPolicy::default();
        assert!(public.check_url("https://hooks.example.com/services/T0/B0/secret?token=x").is_ok());
        for refused in [
            "ftp://example.com/",
            "http://127.0.0.1:8080/hook",
            "http://[::1]/",
            "http://169.254.169.254/latest/meta-data/",
            "not a url",
        ] {
            assert!(public.check_url(refused).is_err(), "{refused}");
        }
        let err = public.check_url("http://10.0.0.1/secret-path?key=k").unwrap_err();
        assert!(!err.contains("secret") && !err.contains("key="), "{err}");
        let url =
            reqwest::Url::parse("https://hooks.example.com:8443/services/T0/B0/secret?token=x").unwrap();
        assert_eq!(endpoint(&url), "https://hooks.example.com:8443");
    }

    #[tokio::test]
    async fn names_that_resolve_to_refused_addresses_are_refused_at_connect_time() {
        let resolver = CheckedResolver { policy: WebhookPolicy::default() };
        let err = resolver.resolve("localhost".parse().unwrap()).await.err().expect("localhost is loopback");
        assert!(err.to_string().contains("may not reach"), "{err}");
        let resolver = CheckedResolver { policy: WebhookPolicy::private_networks() };
        let addrs: Vec<_> = resolver.resolve("localhost".parse().unwrap()).await.unwrap().collect();
        assert!(addrs.iter().all(|a| a.ip().is_loopback()) && !addrs.is_empty());
    }
}
