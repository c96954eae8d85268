//! TLS server configuration from PEM files (rustls with the ring provider),
//! with a certificate that can be replaced while running: new handshakes see
//! the new one, established connections keep theirs.

use std::path::Path;
use std::sync::{Arc, RwLock};

use anyhow::{bail, Context};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// The ALPN protocol IDs of STUN (RFC 7443 §4): TURN, and NAT discovery.
pub const STUN_ALPN: [&str; 2] = ["stun.turn", "stun.nat-discovery"];

/// Hands every handshake the current certificate.
#[derive(Debug)]
pub struct CertResolver(RwLock<Arc<CertifiedKey>>);

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.read().unwrap_or_else(|e| e.into_inner()).clone())
    }
}

impl CertResolver {
    /// Loads the files again and swaps the certificate in.
    pub fn reload(&self, cert_file: &Path, key_file: &Path) -> anyhow::Result<()> {
        let key = load(cert_file, key_file)?;
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(key);
        Ok(())
    }
}

fn load(cert_file: &Path, key_file: &Path) -> anyhow::Result<CertifiedKey> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_file)
        .with_context(|| format!("tls.cert_file: cannot read {}", cert_file.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("tls.cert_file: {} is not valid PEM", cert_file.display()))?;
    if certs.is_empty() {
        bail!("tls.cert_file: {} holds no certificate", cert_file.display());
    }
    let key = PrivateKeyDer::from_pem_file(key_file)
        .with_context(|| format!("tls.key_file: no private key found in {}", key_file.display()))?;
    let provider = rustls::crypto::ring::default_provider();
    let signing = provider
        .key_provider
        .load_private_key(key)
        .context("tls.key_file: unsupported private key")?;
    let ck = CertifiedKey::new(certs, signing);
    ck.keys_match()
        .context("tls: the certificate and key do not form a valid pair")?;
    Ok(ck)
}

/// One certificate for TURN over TLS and HTTPS: the rustls config, and the
/// resolver that lets the certificate be replaced later (reload).
#[derive(Clone)]
pub struct TlsSetup {
    pub config: Arc<rustls::ServerConfig>,
    pub resolver: Arc<CertResolver>,
}

impl TlsSetup {
    /// Loads a PEM certificate chain and key.
    pub fn load(cert_file: &Path, key_file: &Path) -> anyhow::Result<TlsSetup> {
        let resolver = Arc::new(CertResolver(RwLock::new(Arc::new(load(cert_file, key_file)?))));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .context("tls: protocol versions")?
            .with_no_client_auth()
            .with_cert_resolver(resolver.clone());
        Ok(TlsSetup {
            config: Arc::new(config),
            resolver,
        })
    }

    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.config.clone())
    }

    /// An acceptor that negotiates one of `alpn` (RFC 7301): rustls then
    /// refuses a client whose offer shares none with a fatal
    /// no_application_protocol alert, and accepts a client that offers
    /// nothing. The certificate stays the shared, reloadable one.
    pub fn acceptor_with_alpn(&self, alpn: &[String]) -> tokio_rustls::TlsAcceptor {
        let mut config = (*self.config).clone();
        config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
        tokio_rustls::TlsAcceptor::from(Arc::new(config))
    }
}
