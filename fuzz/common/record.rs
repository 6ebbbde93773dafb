//! Target `record`: the data path's own TLS record layer
//! (`data::record`, `data::rekey`), on what a hostile client sends after the
//! handshake.
//!
//! Input: byte 0 picks the framing (TLS 1.3 AES-256-GCM, TLS 1.3
//! ChaCha20-Poly1305, TLS 1.2 AES-256-GCM, TLS 1.2 ChaCha20-Poly1305) and
//! bit 7 the mode. Raw mode feeds the rest to an [`Opener`] as a stream of
//! records. Sealed mode cuts the rest into messages (type, length, payload),
//! seals them with a [`Sealer`] on the same keys (TLS 1.3: a message of type
//! 0 is a KeyUpdate both sides follow), then opens the stream, with one bit
//! flipped at a chosen offset.
//!
//! Invariants:
//! - nothing panics; `record_len` is never past the largest legal record;
//! - raw bytes never open (no key sealed them);
//! - sealed messages open, in order, to exactly their type and payload, key
//!   updates included; under TLS 1.3 the outer type is always application data;
//! - a flipped bit makes its record fail (or wait for bytes that never
//!   come), and nothing before it changes.

use ftpsgate::data::record::{
    self, content, Opener, RecordError, Sealer, MAX_FRAGMENT, MAX_RECORD,
};
use ftpsgate::data::rekey::Capture;
use rustls::crypto::cipher::{AeadKey, Iv};
use rustls::{ConnectionTrafficSecrets, ExtractedSecrets, KeyLog, ProtocolVersion};

use super::Input;

/// A sealer and an opener on the same keys (and, for TLS 1.3, the same
/// traffic secret), so what one seals the other opens.
fn mirrored(kind: u8) -> (Sealer, Opener, bool) {
    let tls13 = kind & 2 == 0;
    let secrets = || match kind & 1 {
        0 => ConnectionTrafficSecrets::Aes256Gcm {
            key: AeadKey::from([7u8; 32]),
            iv: Iv::from([9u8; 12]),
        },
        _ => ConnectionTrafficSecrets::Chacha20Poly1305 {
            key: AeadKey::from([7u8; 32]),
            iv: Iv::from([9u8; 12]),
        },
    };
    let extracted = ExtractedSecrets {
        tx: (0, secrets()),
        rx: (0, secrets()),
    };
    let capture = Capture::default();
    capture.log("CLIENT_TRAFFIC_SECRET_0", &[], &[5u8; 48]);
    capture.log("SERVER_TRAFFIC_SECRET_0", &[], &[5u8; 48]);
    let version = if tls13 {
        ProtocolVersion::TLSv1_3
    } else {
        ProtocolVersion::TLSv1_2
    };
    let (sealer, opener) =
        record::take_over(extracted, Some(version), u64::MAX, &capture).expect("keys");
    (sealer, opener, tls13)
}

/// Messages as (content type, payload).
type Messages = Vec<(u8, Vec<u8>)>;

/// Opens the records of `wire` in turn; (type, payload) of each, then the
/// first error, if any (`Ok(())` also when the stream ends inside a record).
fn open_stream(opener: &mut Opener, wire: &mut [u8]) -> (Messages, Result<(), RecordError>) {
    let mut out = Vec::new();
    let mut at = 0;
    while at < wire.len() {
        let len = match opener.record_len(&wire[at..]) {
            Ok(Some(len)) => len,
            Ok(None) => return (out, Ok(())),
            Err(e) => return (out, Err(e)),
        };
        assert!(
            len <= MAX_RECORD,
            "record_len {len} past the largest record"
        );
        let Some(rec) = wire.get_mut(at..at + len) else {
            return (out, Ok(()));
        };
        match opener.open(rec) {
            Ok((typ, r)) => {
                assert!(r.len() <= MAX_FRAGMENT);
                let payload = rec[r].to_vec();
                if typ == content::HANDSHAKE {
                    if let Err(e) = opener.key_update(&payload) {
                        out.push((typ, payload));
                        return (out, Err(e));
                    }
                }
                out.push((typ, payload));
            }
            Err(e) => return (out, Err(e)),
        }
        at += len;
    }
    (out, Ok(()))
}

/// The target body.
pub fn run(data: &[u8]) {
    let mut input = Input::new(data);
    let kind = input.byte();
    let (mut sealer, mut opener, tls13) = mirrored(kind);
    if kind & 0x80 == 0 {
        let mut wire = input.rest().to_vec();
        let (opened, _) = open_stream(&mut opener, &mut wire);
        assert!(opened.is_empty(), "raw bytes opened: {opened:?}");
        return;
    }
    let flip_at = usize::from(input.u16());
    let mut wire = Vec::new();
    let mut sent = Vec::new();
    let mut starts = Vec::new();
    while !input.is_empty() && sent.len() < 64 {
        let typ = input.pick(&[0, content::APPLICATION_DATA, content::ALERT]);
        let payload = input.chunk();
        starts.push(wire.len());
        if typ == 0 && tls13 {
            let mut rec = [0u8; 64];
            let n = sealer.key_update(&mut rec, false).expect("key update");
            wire.extend_from_slice(&rec[..n]);
            sent.push((content::HANDSHAKE, vec![24, 0, 0, 1, 0]));
            continue;
        }
        let typ = if typ == 0 {
            content::APPLICATION_DATA
        } else {
            typ
        };
        let pre = sealer.prefix();
        let mut rec = vec![0u8; pre + payload.len() + sealer.suffix()];
        rec[pre..pre + payload.len()].copy_from_slice(payload);
        let n = sealer.seal(typ, &mut rec, payload.len()).expect("seal");
        assert_eq!(n, rec.len());
        if tls13 {
            assert_eq!(rec[0], content::APPLICATION_DATA, "TLS 1.3 outer type");
        }
        wire.extend_from_slice(&rec);
        sent.push((typ, payload.to_vec()));
    }
    let clean = wire.clone();
    let (opened, end) = open_stream(&mut opener, &mut wire);
    assert_eq!(end, Ok(()));
    assert_eq!(opened, sent, "sealed messages open to themselves");
    if wire.is_empty() {
        return;
    }
    // One flipped bit: every record before it still opens, its own does not.
    let at = flip_at % clean.len();
    let mut flipped = clean;
    flipped[at] ^= 1 << (flip_at >> 13);
    let record = starts.iter().rposition(|&s| s <= at).unwrap_or(0);
    let (_, mut opener_again, _) = mirrored(kind);
    let (opened, _) = open_stream(&mut opener_again, &mut flipped);
    assert!(
        opened.len() == record && opened[..] == sent[..record],
        "a flipped bit in record {record} went unnoticed: opened {} of {}",
        opened.len(),
        sent.len()
    );
}
