//! The server certificate: loading a PEM chain and key (or generating an
//! ephemeral self-signed pair with rcgen), its SHA-256 fingerprint, the
//! [`CertResolver`] through which rustls reads the current certificate (so
//! it can be replaced without rebuilding the configurations or losing their
//! session stores), and the `cert` subcommand's writer.

use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use sha2::{Digest, Sha256};

use super::{tls_err, TlsError};
use crate::config::Settings;

/// A certificate ready to serve.
#[derive(Debug, Clone)]
pub struct LoadedCert {
    /// Chain and signing key.
    pub key: Arc<CertifiedKey>,
    /// SHA-256 of the leaf, `AA:BB:...`.
    pub fingerprint: String,
    /// Generated at start rather than read from files.
    pub ephemeral: bool,
}

/// Reads `cert`/`key` from the settings, or generates an ephemeral pair when
/// neither is set. The key must match the certificate.
pub fn load(settings: &Settings, provider: &CryptoProvider) -> Result<LoadedCert, TlsError> {
    let (chain, key, ephemeral) = match (&settings.cert, &settings.key) {
        (Some(cert), Some(key)) => (read_chain(cert)?, read_key(key)?, false),
        _ => {
            let (cert, key) =
                generate("localhost").map_err(|e| tls_err("cert", Path::new("(ephemeral)"), e))?;
            let chain = vec![CertificateDer::from_pem_slice(cert.as_bytes())
                .map_err(|e| tls_err("cert", Path::new("(ephemeral)"), e))?];
            let key = PrivateKeyDer::from_pem_slice(key.as_bytes())
                .map_err(|e| tls_err("key", Path::new("(ephemeral)"), e))?;
            (chain, key, true)
        }
    };
    let fingerprint = fingerprint(&chain[0]);
    let key_path = settings.key.clone().unwrap_or_else(|| "(ephemeral)".into());
    let key =
        CertifiedKey::from_der(chain, key, provider).map_err(|e| tls_err("key", &key_path, e))?;
    Ok(LoadedCert {
        key: Arc::new(key),
        fingerprint,
        ephemeral,
    })
}

fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let chain = CertificateDer::pem_file_iter(path)
        .map_err(|e| tls_err("cert", path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls_err("cert", path, e))?;
    if chain.is_empty() {
        return Err(tls_err("cert", path, "no CERTIFICATE block found"));
    }
    Ok(chain)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| tls_err("key", path, e))
}

/// Serves whatever certificate is current; [`CertResolver::set`] replaces it
/// for every handshake that starts afterwards (STYLE.md 2.15).
#[derive(Debug)]
pub struct CertResolver {
    current: ArcSwap<CertifiedKey>,
}

impl CertResolver {
    /// A resolver serving `key`.
    pub fn new(key: Arc<CertifiedKey>) -> CertResolver {
        CertResolver {
            current: ArcSwap::new(key),
        }
    }

    /// Serves `key` from now on.
    pub fn set(&self, key: Arc<CertifiedKey>) {
        self.current.store(key);
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// SHA-256 over the DER certificate, as colon-separated upper-case hex.
pub fn fingerprint(cert: &CertificateDer<'_>) -> String {
    Sha256::digest(cert.as_ref())
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// A self-signed certificate and key for `hostname` (DNS name or IP), as PEM.
pub fn generate(hostname: &str) -> Result<(String, String), rcgen::Error> {
    let mut names = vec![hostname.to_string()];
    for extra in ["localhost", "127.0.0.1", "::1"] {
        if !names.iter().any(|n| n == extra) {
            names.push(extra.to_string());
        }
    }
    let certified = rcgen::generate_simple_self_signed(names)?;
    Ok((certified.cert.pem(), certified.key_pair.serialize_pem()))
}

/// The `cert` subcommand: writes a self-signed pair, the key with mode 0600.
pub fn write_self_signed(
    hostname: &str,
    cert_out: &Path,
    key_out: &Path,
) -> anyhow::Result<String> {
    use anyhow::Context;
    let (cert, key) = generate(hostname).context("generating the certificate")?;
    std::fs::write(cert_out, &cert).with_context(|| format!("writing {}", cert_out.display()))?;
    write_private(key_out, key.as_bytes())
        .with_context(|| format!("writing {}", key_out.display()))?;
    let der =
        CertificateDer::from_pem_slice(cert.as_bytes()).context("re-reading the certificate")?;
    Ok(fingerprint(&der))
}

#[cfg(unix)]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)
}

#[cfg(not(unix))]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, bytes)
}
