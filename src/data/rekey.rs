//! TLS 1.3 KeyUpdate for the data path's record layer (RFC 8446 §4.6.3,
//! §7.2). rustls hands over keys, not the traffic secrets a key update is
//! derived from, so each data handshake gets a [`Capture`]: rustls' KeyLog
//! hook, for that one connection, keeping the two application traffic
//! secrets in memory (never written anywhere, wiped when dropped).
//! [`Secret::next`] is the update; [`Secret::keys`] the key and iv of a
//! generation.

use std::sync::Mutex;

use aws_lc_rs::aead::{self, LessSafeKey, UnboundKey, NONCE_LEN};
use aws_lc_rs::hkdf::{self, KeyType, Prk};
use rustls::KeyLog;
use zeroize::Zeroizing;

const CLIENT: &str = "CLIENT_TRAFFIC_SECRET_0";
const SERVER: &str = "SERVER_TRAFFIC_SECRET_0";

/// The application traffic secrets of one TLS 1.3 connection, as rustls
/// derives them during its handshake.
#[derive(Debug, Default)]
pub struct Capture {
    secrets: Mutex<Logged>,
}

/// What rustls logged so far.
#[derive(Debug, Default)]
struct Logged {
    client: Option<Zeroizing<Vec<u8>>>,
    server: Option<Zeroizing<Vec<u8>>>,
}

impl KeyLog for Capture {
    fn will_log(&self, label: &str) -> bool {
        label == CLIENT || label == SERVER
    }

    fn log(&self, label: &str, _client_random: &[u8], secret: &[u8]) {
        let Ok(mut s) = self.secrets.lock() else {
            return;
        };
        match label {
            CLIENT => s.client = Some(Zeroizing::new(secret.to_vec())),
            SERVER => s.server = Some(Zeroizing::new(secret.to_vec())),
            _ => {}
        }
    }
}

impl Capture {
    /// The (client, server) secrets for `alg`, when the handshake was TLS 1.3.
    pub fn take(&self, alg: &'static aead::Algorithm) -> Option<(Secret, Secret)> {
        let mut s = self.secrets.lock().ok()?;
        let (client, server) = (s.client.take()?, s.server.take()?);
        Some((Secret::new(alg, client), Secret::new(alg, server)))
    }
}

/// One direction's current application traffic secret.
pub struct Secret {
    alg: &'static aead::Algorithm,
    hash: hkdf::Algorithm,
    bytes: Zeroizing<Vec<u8>>,
}

/// An HKDF output length.
struct Len(usize);

impl KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

impl Secret {
    fn new(alg: &'static aead::Algorithm, bytes: Zeroizing<Vec<u8>>) -> Secret {
        // TLS 1.3 pairs AES-256-GCM with SHA-384, the other AEADs with SHA-256.
        let hash = if alg == &aead::AES_256_GCM {
            hkdf::HKDF_SHA384
        } else {
            hkdf::HKDF_SHA256
        };
        Secret { alg, hash, bytes }
    }

    /// HKDF-Expand-Label(secret, label, "", len) (RFC 8446 §7.1).
    fn expand(&self, label: &str, len: usize) -> Zeroizing<Vec<u8>> {
        let prk = Prk::new_less_safe(self.hash, &self.bytes);
        let full_len = (6 + label.len()) as u8;
        let info: [&[u8]; 5] = [
            &(len as u16).to_be_bytes(),
            &[full_len],
            b"tls13 ",
            label.as_bytes(),
            &[0],
        ];
        let mut out = Zeroizing::new(vec![0u8; len]);
        // Lengths here are at most 48, far inside HKDF's 255 * hash limit.
        if let Ok(okm) = prk.expand(&info, Len(len)) {
            let _ = okm.fill(&mut out);
        }
        out
    }

    /// The next generation: application_traffic_secret_N+1.
    pub fn next(&self) -> Secret {
        Secret {
            alg: self.alg,
            hash: self.hash,
            bytes: self.expand("traffic upd", self.bytes.len()),
        }
    }

    /// This generation's AEAD key and iv.
    pub fn keys(&self) -> Option<(LessSafeKey, [u8; NONCE_LEN])> {
        let key = self.expand("key", self.alg.key_len());
        let iv = self.expand("iv", NONCE_LEN)[..].try_into().ok()?;
        let key = UnboundKey::new(self.alg, &key).ok()?;
        Some((LessSafeKey::new(key), iv))
    }
}
