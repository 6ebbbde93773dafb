//! The server certificate: loading a PEM chain and key (or generating an
//! ephemeral self-signed pair with rcgen), its SHA-256 fingerprint, the
//! [`CertResolver`] through which rustls reads the current certificate (so
//! it can be replaced without rebuilding the configurations or losing their
//! session stores), and the `cert` subcommand: [`CertName`] (what a
//! certificate may be issued for) and [`write_self_signed`] (refuses to
//! replace files unless forced; writes through a temporary file and a
//! rename so a crash never leaves half a key).

use std::fmt;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::str::FromStr;
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

/// A self-signed certificate and key for `hostname` (DNS name or IP), as PEM:
/// an ECDSA P-256 key, `hostname` as subject CN and first SAN, and
/// `localhost`, `127.0.0.1` and `::1` as further SANs. This is the ephemeral
/// certificate: it keeps rcgen's validity (1975 to 4096), because it lives
/// only as long as the process and must not expire under a long-running one.
pub fn generate(hostname: &str) -> Result<(String, String), rcgen::Error> {
    let (cert, key) = sign(params(hostname)?)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// What `ftpsgate cert` issues a certificate for: a DNS name made of RFC 1123
/// labels (stored lower-case) or an IP address (stored in canonical form, so
/// `0:0::1` and `::1` are the same name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertName {
    /// A host name such as `ftp.example.com`.
    Dns(String),
    /// An IPv4 or IPv6 address.
    Ip(IpAddr),
}

/// Why a `--hostname` value is not a [`CertName`].
#[derive(Debug, thiserror::Error)]
#[error("{input:?} is neither an IP address nor a DNS name: {reason}")]
pub struct CertNameError {
    input: String,
    reason: String,
}

impl FromStr for CertName {
    type Err = CertNameError;

    fn from_str(input: &str) -> Result<CertName, CertNameError> {
        if let Ok(ip) = input.parse::<IpAddr>() {
            return Ok(CertName::Ip(ip));
        }
        dns_name(input)
            .map(CertName::Dns)
            .map_err(|reason| CertNameError {
                input: input.to_string(),
                reason,
            })
    }
}

impl fmt::Display for CertName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CertName::Dns(name) => f.write_str(name),
            CertName::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

/// RFC 1123 §2.1 host name: dot-separated labels of 1-63 letters, digits and
/// hyphens, no hyphen at either end of a label, 253 characters in all. The
/// last label may not be all digits (RFC 3696 §2), which also catches a
/// mistyped IPv4 address such as `10.0.0.256`. No trailing dot, no wildcard.
fn dns_name(input: &str) -> Result<String, String> {
    if input.is_empty() {
        return Err("it is empty".into());
    }
    if input.len() > 253 {
        return Err(format!("{} characters, more than 253", input.len()));
    }
    for label in input.split('.') {
        if label.is_empty() {
            return Err("empty label (a dot at either end, or two in a row)".into());
        }
        if label.len() > 63 {
            return Err(format!("label {label:?} is longer than 63 characters"));
        }
        if let Some(c) = label
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-'))
        {
            return Err(format!(
                "label {label:?} has {c:?}; only letters, digits and '-' are allowed"
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!("label {label:?} starts or ends with '-'"));
        }
    }
    if input
        .rsplit('.')
        .next()
        .is_some_and(|last| last.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err("the last label is all digits (an IP address with a typo?)".into());
    }
    Ok(input.to_ascii_lowercase())
}

/// Days a certificate from `ftpsgate cert` is valid unless `--days` says otherwise.
pub const DEFAULT_DAYS: u32 = 365;

/// The longest validity `ftpsgate cert` issues, in days (about ten years).
pub const MAX_DAYS: u32 = 3650;

/// How far before "now" a new certificate's validity starts, so that clients
/// whose clocks lag a little do not see it as not yet valid. The validity is
/// still exactly the requested number of days.
const CLOCK_SKEW: time::Duration = time::Duration::hours(1);

/// Where `ftpsgate cert` writes, and whether it may replace existing files.
#[derive(Debug, Clone, Copy)]
pub struct CertFiles<'a> {
    /// The certificate (PEM, mode 0644 less the umask).
    pub cert: &'a Path,
    /// The private key (PEM, mode 0600).
    pub key: &'a Path,
    /// Replace files that already exist (`--force`).
    pub force: bool,
}

/// What [`write_self_signed`] wrote.
#[derive(Debug, Clone)]
pub struct Written {
    /// SHA-256 of the certificate, `AA:BB:...`.
    pub fingerprint: String,
    /// The end of its validity.
    pub not_after: time::OffsetDateTime,
}

/// Why `ftpsgate cert` wrote nothing, or not everything.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The file exists and `--force` was not given; nothing was written.
    #[error("{}: already exists; pass --force to replace it", .0.display())]
    Exists(PathBuf),
    /// `--cert-out` and `--key-out` name the same file.
    #[error("--cert-out and --key-out are the same file: {}", .0.display())]
    SameFile(PathBuf),
    /// `--days` outside `1..=MAX_DAYS` (clap refuses it first).
    #[error("--days: {0} is not in 1..={MAX_DAYS}")]
    Days(u32),
    /// rcgen failed.
    #[error("generating the certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
}

/// The `cert` subcommand: a self-signed certificate for `name` valid for
/// `days` days (see [`generate`] for its names and key type), written as
/// PEM. Unless `files.force`, an existing certificate or key file is an
/// error and nothing is written. Each file is written to a temporary file
/// in its directory and renamed over the target, so a crash leaves either
/// the old file or the whole new one; the key is never readable by others,
/// not even while it is being written.
pub fn write_self_signed(
    name: &CertName,
    days: u32,
    files: CertFiles<'_>,
) -> Result<Written, WriteError> {
    if !(1..=MAX_DAYS).contains(&days) {
        return Err(WriteError::Days(days));
    }
    if files.cert == files.key {
        return Err(WriteError::SameFile(files.cert.to_path_buf()));
    }
    if !files.force {
        for path in [files.cert, files.key] {
            refuse_existing(path)?;
        }
    }
    let mut params = params(&name.to_string())?;
    // Whole seconds: X.509 times have no fractions, and the validity must
    // be exactly `days` once encoded.
    let now = time::OffsetDateTime::now_utc();
    let now = now - time::Duration::nanoseconds(now.nanosecond().into());
    params.not_before = now - CLOCK_SKEW;
    params.not_after = params.not_before + time::Duration::days(i64::from(days));
    let not_after = params.not_after;
    let (cert, key) = sign(params)?;
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| WriteError::Io { path, source }
    };
    // The key first: a crash between the two renames then leaves a new key
    // beside the old certificate, which `serve` and `check` refuse as a
    // mismatch rather than serving anything.
    write_atomic(files.key, key.serialize_pem().as_bytes(), 0o600).map_err(io(files.key))?;
    write_atomic(files.cert, cert.pem().as_bytes(), 0o644).map_err(io(files.cert))?;
    Ok(Written {
        fingerprint: fingerprint(cert.der()),
        not_after,
    })
}

/// `Exists` if anything (a dangling symlink included) is at `path`.
fn refuse_existing(path: &Path) -> Result<(), WriteError> {
    match path.symlink_metadata() {
        Ok(_) => Err(WriteError::Exists(path.to_path_buf())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(WriteError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Subject CN and SANs for `hostname`, plus the local names every
/// self-signed certificate here carries (so `curl --cacert` works against
/// `localhost` in a test); no duplicates.
fn params(hostname: &str) -> Result<rcgen::CertificateParams, rcgen::Error> {
    let canonical = |s: &str| {
        s.parse::<IpAddr>()
            .map_or(s.to_string(), |ip| ip.to_string())
    };
    let mut names = vec![hostname.to_string()];
    let extras = [
        "localhost".to_string(),
        Ipv4Addr::LOCALHOST.to_string(),
        Ipv6Addr::LOCALHOST.to_string(),
    ];
    for extra in extras {
        if !names.iter().any(|n| canonical(n) == extra) {
            names.push(extra);
        }
    }
    let mut params = rcgen::CertificateParams::new(names)?;
    let mut subject = rcgen::DistinguishedName::new();
    subject.push(rcgen::DnType::CommonName, hostname);
    params.distinguished_name = subject;
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    Ok(params)
}

/// Self-signs `params` with a new ECDSA P-256 key.
fn sign(
    params: rcgen::CertificateParams,
) -> Result<(rcgen::Certificate, rcgen::KeyPair), rcgen::Error> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let cert = params.self_signed(&key)?;
    Ok((cert, key))
}

/// Writes `bytes` to `path` so that `path` holds either what it held before
/// or all of `bytes`: a new file (mode `mode`, less the umask) in the same
/// directory, synced, renamed over `path`, and the directory synced.
fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let Some(file_name) = path.file_name() else {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a file name",
        ));
    };
    let temp = dir.join(format!(
        ".{}.{:08x}.tmp",
        file_name.to_string_lossy(),
        rand::random::<u32>()
    ));
    let result = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&temp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        // Gone already if the rename happened; otherwise do not leave it.
        let _ = std::fs::remove_file(&temp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_rfc_1123_or_are_addresses() {
        for (input, parsed) in [
            ("ftp.example.com", CertName::Dns("ftp.example.com".into())),
            ("FTP.Example.COM", CertName::Dns("ftp.example.com".into())),
            ("localhost", CertName::Dns("localhost".into())),
            ("3com.example", CertName::Dns("3com.example".into())),
            ("a-b.c1", CertName::Dns("a-b.c1".into())),
            ("192.0.2.7", CertName::Ip("192.0.2.7".parse().unwrap())),
            ("0:0::1", CertName::Ip(Ipv6Addr::LOCALHOST.into())),
        ] {
            assert_eq!(input.parse::<CertName>().unwrap(), parsed, "{input}");
        }
        let long_label = "a".repeat(64);
        let long_name = [
            "a".repeat(63),
            "a".repeat(63),
            "a".repeat(63),
            "a".repeat(63),
        ]
        .join(".");
        for bad in [
            "",
            "ftp_1.example.com",
            "-ftp.example.com",
            "ftp-.example.com",
            "ftp..example.com",
            ".example.com",
            "example.com.",
            "*.example.com",
            "ftp.example.com:21",
            "[::1]",
            "10.0.0.256",
            "1234",
            "ftp exámple.com",
            long_label.as_str(),
            long_name.as_str(),
        ] {
            let err = bad.parse::<CertName>().expect_err(bad);
            assert!(
                err.to_string()
                    .contains("neither an IP address nor a DNS name"),
                "{err}"
            );
        }
    }

    #[test]
    fn subject_and_names_of_a_generated_certificate() {
        let (cert, _) = sign(params("::1").unwrap()).unwrap();
        let (_, parsed) = x509_parser::parse_x509_certificate(cert.der()).unwrap();
        let cn = parsed.subject().iter_common_name().next().unwrap();
        assert_eq!(cn.as_str().unwrap(), "::1");
        let sans = parsed.subject_alternative_name().unwrap().unwrap();
        // ::1 given as the host name is not repeated among the extras.
        assert_eq!(sans.value.general_names.len(), 3, "{:?}", sans.value);
        // ECDSA P-256 (cheaper handshakes than RSA), for ephemeral and `cert` pairs alike.
        let spki = &parsed.tbs_certificate.subject_pki;
        assert_eq!(
            spki.algorithm.algorithm,
            x509_parser::oid_registry::OID_KEY_TYPE_EC_PUBLIC_KEY
        );
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .unwrap()
            .as_oid()
            .unwrap();
        assert_eq!(curve, x509_parser::oid_registry::OID_EC_P256);
    }
}
