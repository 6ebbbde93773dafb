//! ftpsgate's own TLS record layer for the client leg of a data connection
//! once rustls has made the handshake (issue 11). rustls hands over the
//! traffic keys and sequence numbers (`dangerous_extract_secrets`); the relay
//! then seals and opens records in place, in its one buffer, so no plaintext
//! byte is copied in user space. Pure: no I/O.
//!
//! Covers every suite ftpsgate offers: TLS 1.3 (AES-GCM, ChaCha20-Poly1305)
//! and TLS 1.2 ECDHE with AES-GCM or ChaCha20-Poly1305 (RFC 8446 §5, RFC 5246
//! §6.2.3.3, RFC 5288, RFC 7905). What it does not do fails the transfer with
//! a named error instead: TLS 1.2 renegotiation from the client, and
//! sealing more TLS 1.2 records than the cipher's confidentiality limit
//! (2^24 for AES-GCM, as rustls). Under TLS 1.3 a client's KeyUpdate is
//! followed ([`super::rekey`]) and ftpsgate sends its own before the limit.

use std::ops::Range;

use aws_lc_rs::aead::{
    Aad, Algorithm, LessSafeKey, Nonce, UnboundKey, AES_128_GCM, AES_256_GCM, CHACHA20_POLY1305,
    NONCE_LEN,
};
use rustls::{ConnectionTrafficSecrets, ExtractedSecrets, ProtocolVersion};

use super::rekey::{Capture, Secret};

/// The largest plaintext of one record (RFC 8446 §5.1).
pub const MAX_FRAGMENT: usize = 16 * 1024;
/// A record header: type, legacy version, length.
pub const HEADER: usize = 5;
const TAG: usize = 16;
const EXPLICIT_NONCE: usize = 8;
/// The KeyUpdate handshake message type (RFC 8446 §4.6.3).
const KEY_UPDATE: u8 = 24;
/// The largest ciphertext a peer may send (2^14 + 2048, RFC 5246; TLS 1.3 allows less).
const MAX_CIPHERTEXT: usize = MAX_FRAGMENT + 2048;
/// The largest record a peer may send, header included.
pub const MAX_RECORD: usize = HEADER + MAX_CIPHERTEXT;

/// Record content types (RFC 8446 §5.1).
pub mod content {
    /// ChangeCipherSpec: never valid after the handshake.
    pub const CHANGE_CIPHER_SPEC: u8 = 20;
    /// An alert.
    pub const ALERT: u8 = 21;
    /// A handshake message (KeyUpdate, renegotiation).
    pub const HANDSHAKE: u8 = 22;
    /// Application data.
    pub const APPLICATION_DATA: u8 = 23;
}

/// Why the record layer gave up on a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// The negotiated version or cipher is not one the data path handles.
    #[error("TLS version or cipher not supported on the data path")]
    Unsupported,
    /// A record failed authentication (bad_record_mac).
    #[error("TLS record failed authentication")]
    Decrypt,
    /// A record is too large, too short or badly formed.
    #[error("malformed TLS record")]
    Malformed,
    /// A record type that has no place after the handshake.
    #[error("unexpected TLS record (content type {0}) after the handshake")]
    Unexpected(u8),
    /// A handshake message after the handshake other than a TLS 1.3 KeyUpdate
    /// (TLS 1.2 renegotiation), or a KeyUpdate whose secret is unknown.
    #[error("TLS renegotiation on a data connection is not supported")]
    Rekey,
    /// A fatal alert from the client.
    #[error("TLS alert {0} from the client")]
    Alert(u8),
    /// The cipher's confidentiality limit: no more records may be sealed.
    #[error("TLS record limit of the cipher reached")]
    Exhausted,
}

/// How records are framed: the AAD and nonce rules differ per version and cipher.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// TLS 1.3: inner content type, header as AAD, nonce = iv ^ seq.
    Tls13,
    /// TLS 1.2 AES-GCM: 8-byte explicit nonce, salt from the iv.
    Tls12Gcm,
    /// TLS 1.2 ChaCha20-Poly1305: nonce = iv ^ seq.
    Tls12Chacha,
}

/// One direction's key, iv and sequence number.
struct Keys {
    key: LessSafeKey,
    iv: [u8; NONCE_LEN],
    seq: u64,
    limit: u64,
    /// The traffic secret these keys came from (TLS 1.3): what a KeyUpdate derives from.
    secret: Option<Secret>,
}

/// The AEAD of the extracted secrets, with their key and iv.
fn parts(
    secrets: &ConnectionTrafficSecrets,
) -> Result<(&'static Algorithm, &[u8], &[u8]), RecordError> {
    match secrets {
        ConnectionTrafficSecrets::Aes128Gcm { key, iv } => {
            Ok((&AES_128_GCM, key.as_ref(), iv.as_ref()))
        }
        ConnectionTrafficSecrets::Aes256Gcm { key, iv } => {
            Ok((&AES_256_GCM, key.as_ref(), iv.as_ref()))
        }
        ConnectionTrafficSecrets::Chacha20Poly1305 { key, iv } => {
            Ok((&CHACHA20_POLY1305, key.as_ref(), iv.as_ref()))
        }
        _ => Err(RecordError::Unsupported),
    }
}

impl Keys {
    fn new(
        (seq, secrets): (u64, ConnectionTrafficSecrets),
        limit: u64,
        secret: Option<Secret>,
    ) -> Result<Keys, RecordError> {
        let (alg, key, iv) = parts(&secrets)?;
        let unbound = UnboundKey::new(alg, key).map_err(|_| RecordError::Unsupported)?;
        Ok(Keys {
            key: LessSafeKey::new(unbound),
            iv: iv.try_into().map_err(|_| RecordError::Unsupported)?,
            seq,
            limit,
            secret,
        })
    }

    /// Moves to the next key generation (KeyUpdate): new key and iv, sequence 0.
    fn update(&mut self) -> Result<(), RecordError> {
        let next = self.secret.as_ref().ok_or(RecordError::Rekey)?.next();
        (self.key, self.iv) = next.keys().ok_or(RecordError::Rekey)?;
        self.seq = 0;
        self.secret = Some(next);
        Ok(())
    }

    /// The sequence number and nonce (iv ^ seq) of the next record.
    fn next(&mut self) -> Result<(u64, [u8; NONCE_LEN]), RecordError> {
        if self.seq >= self.limit {
            return Err(RecordError::Exhausted);
        }
        let seq = self.seq;
        self.seq += 1;
        let mut nonce = self.iv;
        for (n, s) in nonce[NONCE_LEN - 8..].iter_mut().zip(seq.to_be_bytes()) {
            *n ^= s;
        }
        Ok((seq, nonce))
    }
}

/// TLS 1.2 additional data: seq, type, version, plaintext length.
fn tls12_aad(seq: u64, typ: u8, version: [u8; 2], len: usize) -> [u8; 13] {
    let mut aad = [0u8; 13];
    aad[..8].copy_from_slice(&seq.to_be_bytes());
    aad[8] = typ;
    aad[9..11].copy_from_slice(&version);
    aad[11..].copy_from_slice(&(len as u16).to_be_bytes());
    aad
}

/// Both directions of a data connection, taken over from rustls; under
/// TLS 1.3, `capture` holds the traffic secrets for key updates.
pub fn take_over(
    secrets: ExtractedSecrets,
    version: Option<ProtocolVersion>,
    limit: u64,
    capture: &Capture,
) -> Result<(Sealer, Opener), RecordError> {
    let gcm = !matches!(
        secrets.tx.1,
        ConnectionTrafficSecrets::Chacha20Poly1305 { .. }
    );
    let framing = match version {
        Some(ProtocolVersion::TLSv1_3) => Framing::Tls13,
        Some(ProtocolVersion::TLSv1_2) if gcm => Framing::Tls12Gcm,
        Some(ProtocolVersion::TLSv1_2) => Framing::Tls12Chacha,
        _ => return Err(RecordError::Unsupported),
    };
    let (client, server) = match framing {
        Framing::Tls13 => capture.take(parts(&secrets.tx.1)?.0).unzip(),
        Framing::Tls12Gcm | Framing::Tls12Chacha => (None, None),
    };
    let sealer = Sealer {
        keys: Keys::new(secrets.tx, limit, server)?,
        framing,
    };
    let opener = Opener {
        keys: Keys::new(secrets.rx, u64::MAX, client)?,
        framing,
    };
    Ok((sealer, opener))
}

/// Seals outgoing records in place.
pub struct Sealer {
    keys: Keys,
    framing: Framing,
}

impl Sealer {
    /// Bytes a record has before its payload: header, explicit nonce.
    pub fn prefix(&self) -> usize {
        match self.framing {
            Framing::Tls12Gcm => HEADER + EXPLICIT_NONCE,
            Framing::Tls13 | Framing::Tls12Chacha => HEADER,
        }
    }

    /// Bytes a record has after its payload: inner content type, tag.
    pub fn suffix(&self) -> usize {
        match self.framing {
            Framing::Tls13 => 1 + TAG,
            Framing::Tls12Gcm | Framing::Tls12Chacha => TAG,
        }
    }

    /// Whether a KeyUpdate must go before the next `records` records: they
    /// (and the KeyUpdate itself) would pass the cipher's limit. Under TLS
    /// 1.2 there is no update; sealing stops with [`RecordError::Exhausted`].
    pub fn update_due(&self, records: usize) -> bool {
        self.keys.secret.is_some()
            && self.keys.seq.saturating_add(records as u64) >= self.keys.limit
    }

    /// Seals a KeyUpdate (`request`: the client should update too) into
    /// `record`, then moves to the next key; returns the record's length.
    pub fn key_update(&mut self, record: &mut [u8], request: bool) -> Result<usize, RecordError> {
        let pre = self.prefix();
        record[pre..pre + 5].copy_from_slice(&[KEY_UPDATE, 0, 0, 1, u8::from(request)]);
        let n = self.seal(content::HANDSHAKE, record, 5)?;
        self.keys.update()?;
        Ok(n)
    }

    /// Seals the `len` payload bytes at `record[prefix()..]` as one record
    /// of type `typ`, writing the header before them and the rest after;
    /// returns the record's length. `record` must hold `prefix + len + suffix`.
    pub fn seal(&mut self, typ: u8, record: &mut [u8], len: usize) -> Result<usize, RecordError> {
        let pre = self.prefix();
        let total = pre + len + self.suffix();
        let (seq, nonce) = self.keys.next()?;
        let (outer, body_end) = match self.framing {
            Framing::Tls13 => {
                record[pre + len] = typ;
                (content::APPLICATION_DATA, pre + len + 1)
            }
            Framing::Tls12Gcm | Framing::Tls12Chacha => (typ, pre + len),
        };
        let wire = ((total - HEADER) as u16).to_be_bytes();
        let header = [outer, 3, 3, wire[0], wire[1]];
        record[..HEADER].copy_from_slice(&header);
        if self.framing == Framing::Tls12Gcm {
            record[HEADER..pre].copy_from_slice(&nonce[NONCE_LEN - 8..]);
        }
        let nonce = Nonce::assume_unique_for_key(nonce);
        let body = &mut record[pre..body_end];
        let tag = match self.framing {
            Framing::Tls13 => {
                self.keys
                    .key
                    .seal_in_place_separate_tag(nonce, Aad::from(header), body)
            }
            Framing::Tls12Gcm | Framing::Tls12Chacha => {
                let aad = tls12_aad(seq, typ, [3, 3], len);
                self.keys
                    .key
                    .seal_in_place_separate_tag(nonce, Aad::from(aad), body)
            }
        }
        .map_err(|_| RecordError::Unsupported)?;
        record[body_end..total].copy_from_slice(tag.as_ref());
        Ok(total)
    }
}

/// What an alert from the client means for the transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alert {
    /// close_notify: the client's data is complete.
    CloseNotify,
    /// user_canceled, or a TLS 1.2 warning: ignored, as rustls does.
    Ignore,
}

/// Opens incoming records in place.
pub struct Opener {
    keys: Keys,
    framing: Framing,
}

impl Opener {
    /// The whole length of the record that starts `buf`, once its header is
    /// there (`None` before); a length no peer may send is an error.
    pub fn record_len(&self, buf: &[u8]) -> Result<Option<usize>, RecordError> {
        let Some(header) = buf.get(..HEADER) else {
            return Ok(None);
        };
        let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
        let min = match self.framing {
            Framing::Tls12Gcm => EXPLICIT_NONCE + TAG,
            Framing::Tls13 | Framing::Tls12Chacha => TAG,
        };
        if !(min..=MAX_CIPHERTEXT).contains(&len) {
            return Err(RecordError::Malformed);
        }
        Ok(Some(HEADER + len))
    }

    /// Reads an alert record's plaintext (RFC 8446 §6): anything but
    /// close_notify, user_canceled and (TLS 1.2) a warning is fatal.
    pub fn alert(&self, payload: &[u8]) -> Result<Alert, RecordError> {
        let &[level, description] = payload else {
            return Err(RecordError::Malformed);
        };
        match description {
            0 => Ok(Alert::CloseNotify),
            90 => Ok(Alert::Ignore),
            _ if level == 1 && self.framing != Framing::Tls13 => Ok(Alert::Ignore),
            _ => Err(RecordError::Alert(description)),
        }
    }

    /// A handshake message from the client: under TLS 1.3 a KeyUpdate
    /// moves to the client's next key (true: it asks for ours to move too);
    /// anything else (TLS 1.2 renegotiation) is refused.
    pub fn key_update(&mut self, message: &[u8]) -> Result<bool, RecordError> {
        match message {
            &[KEY_UPDATE, 0, 0, 1, request @ (0 | 1)] if self.framing == Framing::Tls13 => {
                self.keys.update()?;
                Ok(request == 1)
            }
            _ => Err(RecordError::Rekey),
        }
    }

    /// Opens one whole record (header included) in place; returns its
    /// content type and where its plaintext now is within `record`.
    pub fn open(&mut self, record: &mut [u8]) -> Result<(u8, Range<usize>), RecordError> {
        let typ = record[0];
        let valid = match self.framing {
            Framing::Tls13 => typ == content::APPLICATION_DATA,
            Framing::Tls12Gcm | Framing::Tls12Chacha => {
                matches!(
                    typ,
                    content::ALERT | content::HANDSHAKE | content::APPLICATION_DATA
                )
            }
        };
        if !valid {
            return Err(RecordError::Unexpected(typ));
        }
        let (seq, mut nonce) = self.keys.next()?;
        let pre = match self.framing {
            Framing::Tls12Gcm => {
                nonce[..4].copy_from_slice(&self.keys.iv[..4]);
                nonce[4..].copy_from_slice(&record[HEADER..HEADER + EXPLICIT_NONCE]);
                HEADER + EXPLICIT_NONCE
            }
            Framing::Tls13 | Framing::Tls12Chacha => HEADER,
        };
        let plain_len = record.len() - pre - TAG;
        let header: [u8; HEADER] = record[..HEADER]
            .try_into()
            .map_err(|_| RecordError::Malformed)?;
        let nonce = Nonce::assume_unique_for_key(nonce);
        let body = &mut record[pre..];
        let opened = match self.framing {
            Framing::Tls13 => self.keys.key.open_in_place(nonce, Aad::from(header), body),
            Framing::Tls12Gcm | Framing::Tls12Chacha => {
                let aad = tls12_aad(seq, typ, [header[1], header[2]], plain_len);
                self.keys.key.open_in_place(nonce, Aad::from(aad), body)
            }
        };
        opened.map_err(|_| RecordError::Decrypt)?;
        let (typ, len) = match self.framing {
            Framing::Tls13 => {
                let inner = &record[pre..pre + plain_len];
                let at = inner
                    .iter()
                    .rposition(|&b| b != 0)
                    .ok_or(RecordError::Malformed)?;
                (inner[at], at)
            }
            Framing::Tls12Gcm | Framing::Tls12Chacha => (typ, plain_len),
        };
        if len > MAX_FRAGMENT {
            return Err(RecordError::Malformed);
        }
        Ok((typ, pre..pre + len))
    }
}

#[cfg(test)]
#[path = "record_tests.rs"]
mod tests;
