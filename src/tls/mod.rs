//! TLS for both legs toward the client: the two rustls server configurations
//! ftpsgate uses, built from [`cert`] (the certificate, served through a
//! resolver) and [`reuse`] (the session stores and the data-to-control
//! binding). TLS 1.2 and 1.3 only; no 0-RTT.
//!
//! Both configurations share one certificate resolver, one session-ID cache
//! (TLS 1.2) and one stateless ticketer (TLS 1.2/1.3), so a data connection
//! can resume the control connection's session (RFC 4217 §10.2, PROTOCOL.md
//! §5.3). The control configuration issues TLS 1.3 tickets; data connections
//! never store sessions and issue tickets only under the rules of [`reuse`].

pub mod cert;
pub mod reuse;

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::server::{ServerConnection, WebPkiClientVerifier};
use rustls::{ConfigBuilder, RootCertStore, ServerConfig, WantsVerifier};

use crate::config::{Requirement, Settings};
use crate::events::TlsDetails;

pub use cert::{fingerprint, generate, write_self_signed};

/// The TLS material for one configuration generation.
#[derive(Clone)]
pub struct TlsContext {
    /// For control connections: issues TLS 1.3 tickets.
    pub control: Arc<ServerConfig>,
    /// For data connections: same certificate and session stores, no tickets.
    pub data: Arc<ServerConfig>,
    /// For download data connections when reuse is checked: one TLS 1.3
    /// ticket, sealed only when the handshake is bound (see [`reuse`]).
    pub data_ticketed: Arc<ServerConfig>,
    /// SHA-256 fingerprint of the leaf certificate, `AA:BB:...`.
    pub fingerprint: String,
    /// True when the certificate was generated at start.
    pub ephemeral: bool,
    resolver: Arc<cert::CertResolver>,
    current: cert::LoadedCert,
    stores: reuse::Stores,
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

pub(crate) fn tls_err(key: &'static str, path: &Path, message: impl ToString) -> TlsError {
    TlsError {
        key,
        path: path.display().to_string(),
        message: message.to_string(),
    }
}

impl TlsContext {
    /// Loads or generates the certificate and builds both configurations
    /// around fresh session stores.
    pub fn from_settings(settings: &Settings) -> Result<TlsContext, TlsError> {
        let provider = provider();
        let current = cert::load(settings, &provider)?;
        let stores = reuse::Stores::new().map_err(|e| tls_err("cert", Path::new("-"), e))?;
        let resolver = Arc::new(cert::CertResolver::new(current.key.clone()));
        Self::assemble(settings, provider, current, resolver, stores)
    }

    /// A context for new settings that keeps this one's session stores (so
    /// every session a client holds can still resume) and serves the new
    /// certificate through the same resolver. An ephemeral certificate is
    /// kept as it is. Nothing changes if this fails.
    pub fn renew(&self, settings: &Settings) -> Result<TlsContext, TlsError> {
        let provider = provider();
        let current = if settings.cert.is_none() && self.ephemeral {
            self.current.clone()
        } else {
            cert::load(settings, &provider)?
        };
        let next = Self::assemble(
            settings,
            provider,
            current,
            self.resolver.clone(),
            self.stores.clone(),
        )?;
        next.resolver.set(next.current.key.clone());
        Ok(next)
    }

    fn assemble(
        settings: &Settings,
        provider: rustls::crypto::CryptoProvider,
        current: cert::LoadedCert,
        resolver: Arc<cert::CertResolver>,
        stores: reuse::Stores,
    ) -> Result<TlsContext, TlsError> {
        let provider = Arc::new(provider);
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| tls_err("cert", Path::new("-"), e))?;
        let mut control =
            client_auth(builder, settings, provider)?.with_cert_resolver(resolver.clone());
        (control.session_storage, control.ticketer) = stores.control();
        control.ignore_client_order = true;
        control.max_early_data_size = 0;
        control.send_half_rtt_data = false;
        let mut data = control.clone();
        (data.session_storage, data.ticketer) = stores.data();
        // No TLS 1.3 tickets on data connections: an uploading client that
        // never reads them resets the connection and loses data (curl#6149).
        data.send_tls13_tickets = 0;
        // After the handshake the data path seals and opens records itself
        // (`data::record`), with the keys rustls hands over.
        data.enable_secret_extraction = true;
        // Downloads, where reuse is checked, get one: OpenSSL clients spend a
        // TLS 1.3 ticket per connection and need a fresh one for the next.
        let mut data_ticketed = data.clone();
        data_ticketed.send_tls13_tickets = usize::from(settings.require_session_reuse.is_checked());
        Ok(TlsContext {
            control: Arc::new(control),
            data: Arc::new(data),
            data_ticketed: Arc::new(data_ticketed),
            fingerprint: current.fingerprint.clone(),
            ephemeral: current.ephemeral,
            resolver,
            current,
            stores,
        })
    }
}

/// Client certificates: verified against `client_ca` when set, required or optional.
fn client_auth(
    builder: ConfigBuilder<ServerConfig, WantsVerifier>,
    settings: &Settings,
    provider: Arc<rustls::crypto::CryptoProvider>,
) -> Result<ConfigBuilder<ServerConfig, rustls::server::WantsServerCert>, TlsError> {
    let Some(ca) = &settings.client_ca else {
        return Ok(builder.with_no_client_auth());
    };
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).map_err(|e| tls_err("client_ca", ca, e))? {
        roots
            .add(cert.map_err(|e| tls_err("client_ca", ca, e))?)
            .map_err(|e| tls_err("client_ca", ca, e))?;
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
    let verifier = match settings.client_cert {
        Requirement::Required => verifier,
        // Audit: the handshake lets a client without a certificate through;
        // the session reports it (`policy::client_cert`).
        Requirement::Optional | Requirement::Audit => verifier.allow_unauthenticated(),
    };
    Ok(builder
        .with_client_cert_verifier(verifier.build().map_err(|e| tls_err("client_ca", ca, e))?))
}

/// The cryptography every listener offers: aws-lc-rs with AES-128-GCM
/// preferred, as safe as AES-256-GCM for TLS and cheaper per byte on the
/// data path. ftpsgate's order wins over the client's
/// (`ignore_client_order`), since curl and OpenSSL list AES-256 first.
pub fn provider() -> rustls::crypto::CryptoProvider {
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

/// The client certificate a completed handshake presented (leaf, DER).
pub fn client_cert(conn: &ServerConnection) -> Option<Vec<u8>> {
    conn.peer_certificates()
        .and_then(|c| c.first())
        .map(|der| der.as_ref().to_vec())
}

/// What a completed handshake negotiated, for events and logs.
pub fn details(conn: &ServerConnection) -> TlsDetails {
    let version = match conn.protocol_version() {
        Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3",
        Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2",
        _ => "unknown",
    };
    let suite = conn
        .negotiated_cipher_suite()
        .and_then(|s| s.suite().as_str())
        .unwrap_or("unknown");
    let client_cert = conn.peer_certificates().and_then(|c| c.first()).map(|der| {
        x509_parser::parse_x509_certificate(der.as_ref())
            .map(|(_, cert)| cert.subject().to_string())
            .unwrap_or_else(|_| "(unparsable)".into())
    });
    TlsDetails {
        version,
        suite,
        resumed: matches!(conn.handshake_kind(), Some(rustls::HandshakeKind::Resumed)),
        client_cert,
    }
}
