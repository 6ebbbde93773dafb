//! TLS setup: PEM chain and key (or an ephemeral rcgen certificate) into the
//! two rustls server configurations ftpsgate uses, plus the `cert` subcommand.
//!
//! Both configurations share one certificate, one session-ID cache (TLS 1.2)
//! and one stateless ticketer (TLS 1.2/1.3), so a data connection can resume
//! the control connection's session (RFC 4217 §10.2, PROTOCOL.md §5.3). The
//! control configuration issues TLS 1.3 tickets; the data configuration
//! issues none, because unread tickets on an upload connection make clients
//! reset it and lose data (curl#6149). TLS 1.2 and 1.3 only; no 0-RTT.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{
    ProducesTickets, ServerSessionMemoryCache, StoresServerSessions, WebPkiClientVerifier,
};
use rustls::{RootCertStore, ServerConfig};
use sha2::{Digest, Sha256};

use crate::config::{Requirement, Settings};

/// Session-ID cache entries shared by control and data connections.
const SESSION_CACHE_SIZE: usize = 16 * 1024;

/// The TLS material for one running proxy.
#[derive(Clone)]
pub struct TlsContext {
    /// For control connections: issues TLS 1.3 tickets.
    pub control: Arc<ServerConfig>,
    /// For data connections: same certificate and session stores, no tickets.
    pub data: Arc<ServerConfig>,
    /// SHA-256 fingerprint of the leaf certificate, `AA:BB:...`.
    pub fingerprint: String,
    /// True when the certificate was generated at start.
    pub ephemeral: bool,
}

/// A TLS set-up problem, naming the file and key it came from.
#[derive(Debug, thiserror::Error)]
#[error("{key}: {path}: {message}")]
pub struct TlsError {
    /// The config key (`cert`, `key`, `client_ca`).
    pub key: &'static str,
    /// The file.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

fn tls_err(key: &'static str, path: &Path, message: impl ToString) -> TlsError {
    TlsError {
        key,
        path: path.display().to_string(),
        message: message.to_string(),
    }
}

impl TlsContext {
    /// Loads or generates the certificate and builds both configurations.
    pub fn from_settings(settings: &Settings) -> Result<TlsContext, TlsError> {
        let (chain, key, ephemeral) = match (&settings.cert, &settings.key) {
            (Some(cert), Some(key)) => {
                let chain = CertificateDer::pem_file_iter(cert)
                    .map_err(|e| tls_err("cert", cert, e))?
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| tls_err("cert", cert, e))?;
                if chain.is_empty() {
                    return Err(tls_err("cert", cert, "no CERTIFICATE block found"));
                }
                let key = PrivateKeyDer::from_pem_file(key).map_err(|e| tls_err("key", key, e))?;
                (chain, key, false)
            }
            _ => {
                let (cert, key) = generate("localhost").map_err(|e| TlsError {
                    key: "cert",
                    path: "(ephemeral)".into(),
                    message: e.to_string(),
                })?;
                let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).map_err(|e| TlsError {
                    key: "key",
                    path: "(ephemeral)".into(),
                    message: e.to_string(),
                })?;
                let chain = vec![
                    CertificateDer::from_pem_slice(cert.as_bytes()).map_err(|e| TlsError {
                        key: "cert",
                        path: "(ephemeral)".into(),
                        message: e.to_string(),
                    })?,
                ];
                (chain, key, true)
            }
        };
        let fingerprint = fingerprint(&chain[0]);

        let provider = Arc::new(provider());
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| tls_err("cert", Path::new("-"), e))?;
        let builder = match &settings.client_ca {
            None => builder.with_no_client_auth(),
            Some(ca) => {
                let mut roots = RootCertStore::empty();
                for cert in
                    CertificateDer::pem_file_iter(ca).map_err(|e| tls_err("client_ca", ca, e))?
                {
                    roots
                        .add(cert.map_err(|e| tls_err("client_ca", ca, e))?)
                        .map_err(|e| tls_err("client_ca", ca, e))?;
                }
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
                let verifier = match settings.client_cert {
                    Requirement::Required => verifier,
                    Requirement::Optional => verifier.allow_unauthenticated(),
                };
                builder.with_client_cert_verifier(
                    verifier.build().map_err(|e| tls_err("client_ca", ca, e))?,
                )
            }
        };
        let key_path = settings.key.clone().unwrap_or_default();
        let mut control = builder
            .with_single_cert(chain, key)
            .map_err(|e| tls_err("key", &key_path, e))?;
        control.session_storage = Arc::new(ObservedStore(ServerSessionMemoryCache::new(
            SESSION_CACHE_SIZE,
        )));
        control.ticketer = Arc::new(ObservedTicketer(
            rustls::crypto::aws_lc_rs::Ticketer::new()
                .map_err(|e| tls_err("cert", Path::new("-"), e))?,
        ));
        control.ignore_client_order = true;
        control.max_early_data_size = 0;
        control.send_half_rtt_data = false;
        let mut data = control.clone();
        data.send_tls13_tickets = 0;
        Ok(TlsContext {
            control: Arc::new(control),
            data: Arc::new(data),
            fingerprint,
            ephemeral,
        })
    }
}

thread_local! {
    /// While a data handshake is being polled on this thread: the encoded
    /// session state rustls looked up to resume (see [`observe_resumption`]).
    static OBSERVED: RefCell<Option<Vec<u8>>> = const { RefCell::new(None) };
    static OBSERVING: Cell<bool> = const { Cell::new(false) };
}

fn observed(value: &Option<Vec<u8>>) {
    if OBSERVING.with(Cell::get) {
        OBSERVED.with(|o| *o.borrow_mut() = value.clone());
    }
}

/// rustls reports a resumed session's application data only for TLS 1.3.
/// For TLS 1.2 the session-ID cache and the ticketer are wrapped: during a
/// data handshake they record the session state they hand back, and the
/// caller checks it carries the control session's token.
#[derive(Debug)]
struct ObservedStore(Arc<dyn StoresServerSessions>);

impl StoresServerSessions for ObservedStore {
    fn put(&self, key: Vec<u8>, value: Vec<u8>) -> bool {
        self.0.put(key, value)
    }
    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        let v = self.0.get(key);
        observed(&v);
        v
    }
    fn take(&self, key: &[u8]) -> Option<Vec<u8>> {
        let v = self.0.take(key);
        observed(&v);
        v
    }
    fn can_cache(&self) -> bool {
        self.0.can_cache()
    }
}

#[derive(Debug)]
struct ObservedTicketer(Arc<dyn ProducesTickets>);

impl ProducesTickets for ObservedTicketer {
    fn enabled(&self) -> bool {
        self.0.enabled()
    }
    fn lifetime(&self) -> u32 {
        self.0.lifetime()
    }
    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        self.0.encrypt(plain)
    }
    fn decrypt(&self, cipher: &[u8]) -> Option<Vec<u8>> {
        let v = self.0.decrypt(cipher);
        observed(&v);
        v
    }
}

/// Polls `handshake` with resumption observation on and returns its output
/// plus the session state the handshake resumed from, if any.
pub async fn observe_resumption<F: Future>(handshake: F) -> (F::Output, Option<Vec<u8>>) {
    let mut handshake = std::pin::pin!(handshake);
    let mut seen = None;
    let out = std::future::poll_fn(|cx| {
        OBSERVING.with(|o| o.set(true));
        let r = handshake.as_mut().poll(cx);
        OBSERVING.with(|o| o.set(false));
        if let Some(v) = OBSERVED.with(|o| o.borrow_mut().take()) {
            seen = Some(v);
        }
        r
    })
    .await;
    (out, seen)
}

/// True when an encoded session state carries `token` as its application data.
pub fn session_carries(state: &[u8], token: &[u8]) -> bool {
    !token.is_empty() && state.windows(token.len()).any(|w| w == token)
}

/// aws-lc-rs with AES-128-GCM preferred: as safe as AES-256-GCM for TLS and
/// cheaper per byte on the data path. ftpsgate's order wins over the client's
/// (`ignore_client_order`), since curl and OpenSSL list AES-256 first.
fn provider() -> rustls::crypto::CryptoProvider {
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    let rank = |s: &rustls::SupportedCipherSuite| match s.suite() {
        rustls::CipherSuite::TLS13_AES_128_GCM_SHA256 => 0,
        rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 => 1,
        rustls::CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 => 1,
        _ => 2,
    };
    provider.cipher_suites.sort_by_key(rank);
    provider
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
