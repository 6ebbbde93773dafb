//! The record layer against rustls itself, in memory: for every suite
//! ftpsgate offers, a rustls client reads what [`Sealer`] seals and
//! [`Opener`] reads what the client writes, alerts and tampering included.

use std::io::{Read, Write};
use std::sync::Arc;

use rustls::crypto::aws_lc_rs::{cipher_suite as cs, default_provider};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{
    ClientConfig, ClientConnection, ServerConfig, ServerConnection, SupportedCipherSuite,
};

use super::*;
use crate::data::rekey::Capture;

fn provider(suite: SupportedCipherSuite) -> Arc<CryptoProvider> {
    Arc::new(CryptoProvider {
        cipher_suites: vec![suite],
        ..default_provider()
    })
}

/// A connected rustls client and server (with secret extraction and the
/// secrets captured for key updates) for one suite.
fn pair(suite: SupportedCipherSuite) -> (ClientConnection, ServerConnection, Arc<Capture>) {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".into()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let der = CertificateDer::from(cert.der().to_vec());
    let pkcs8 = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let mut server = ServerConfig::builder_with_provider(provider(suite))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![der.clone()], pkcs8)
        .unwrap();
    server.enable_secret_extraction = true;
    let capture = Arc::new(Capture::default());
    server.key_log = capture.clone();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(der).unwrap();
    let client = ClientConfig::builder_with_provider(provider(suite))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut c = ClientConnection::new(Arc::new(client), "localhost".try_into().unwrap()).unwrap();
    let mut s = ServerConnection::new(Arc::new(server)).unwrap();
    while c.is_handshaking() || s.is_handshaking() || s.wants_write() || c.wants_write() {
        shuttle(&mut c, &mut s);
    }
    (c, s, capture)
}

fn shuttle(c: &mut ClientConnection, s: &mut ServerConnection) {
    let mut buf = Vec::new();
    while c.wants_write() {
        c.write_tls(&mut buf).unwrap();
    }
    s.read_tls(&mut buf.as_slice()).unwrap();
    s.process_new_packets().unwrap();
    buf.clear();
    while s.wants_write() {
        s.write_tls(&mut buf).unwrap();
    }
    c.read_tls(&mut buf.as_slice()).unwrap();
    c.process_new_packets().unwrap();
}

fn take(s: ServerConnection, limit: u64, capture: &Capture) -> (Sealer, Opener) {
    let version = s.protocol_version();
    take_over(
        s.dangerous_extract_secrets().unwrap(),
        version,
        limit,
        capture,
    )
    .unwrap()
}

/// What the client sent, as TLS bytes.
fn client_bytes(c: &mut ClientConnection) -> Vec<u8> {
    let mut out = Vec::new();
    while c.wants_write() {
        c.write_tls(&mut out).unwrap();
    }
    out
}

/// Opens every record in `wire`; returns (type, plaintext) per record.
fn open_all(opener: &mut Opener, mut wire: Vec<u8>) -> Result<Vec<(u8, Vec<u8>)>, RecordError> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < wire.len() {
        let len = opener.record_len(&wire[at..])?.unwrap();
        let (typ, range) = opener.open(&mut wire[at..at + len])?;
        out.push((typ, wire[at..at + len][range].to_vec()));
        at += len;
    }
    Ok(out)
}

fn seal(sealer: &mut Sealer, typ: u8, payload: &[u8]) -> Vec<u8> {
    let mut rec = vec![0u8; sealer.prefix() + payload.len() + sealer.suffix()];
    let pre = sealer.prefix();
    rec[pre..pre + payload.len()].copy_from_slice(payload);
    let n = sealer.seal(typ, &mut rec, payload.len()).unwrap();
    assert_eq!(n, rec.len());
    rec
}

const SUITES: [SupportedCipherSuite; 6] = [
    cs::TLS13_AES_128_GCM_SHA256,
    cs::TLS13_AES_256_GCM_SHA384,
    cs::TLS13_CHACHA20_POLY1305_SHA256,
    cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
];

#[test]
fn the_suites_are_every_one_ftpsgate_offers_with_an_ecdsa_certificate() {
    let offered: Vec<_> = crate::tls::provider()
        .cipher_suites
        .into_iter()
        .filter(|s| s.usable_for_signature_algorithm(rustls::SignatureAlgorithm::ECDSA))
        .map(|s| s.suite())
        .collect();
    let mut ours: Vec<_> = SUITES.iter().map(|s| s.suite()).collect();
    ours.sort_by_key(|s| offered.iter().position(|o| o == s));
    assert_eq!(ours, offered);
}

#[test]
fn both_directions_interoperate_with_rustls_for_every_suite() {
    for suite in SUITES {
        let (mut c, s, k) = pair(suite);
        let (mut sealer, mut opener) = take(s, u64::MAX, &k);
        // Client → us: several records, one of them full size.
        let big: Vec<u8> = (0..MAX_FRAGMENT + 100).map(|i| (i % 251) as u8).collect();
        c.writer().write_all(b"hello").unwrap();
        c.writer().write_all(&big).unwrap();
        let got = open_all(&mut opener, client_bytes(&mut c)).unwrap();
        let data: Vec<u8> = got.iter().flat_map(|(_, d)| d.clone()).collect();
        assert!(
            got.iter().all(|(t, _)| *t == content::APPLICATION_DATA),
            "{suite:?}"
        );
        assert_eq!(data, [b"hello".as_slice(), &big].concat(), "{suite:?}");
        // Us → client: a full record, an empty one, then close_notify.
        let mut wire = seal(&mut sealer, content::APPLICATION_DATA, &big[..MAX_FRAGMENT]);
        wire.extend(seal(&mut sealer, content::APPLICATION_DATA, b""));
        wire.extend(seal(&mut sealer, content::ALERT, &[1, 0]));
        let (mut rest, mut read) = (wire.as_slice(), Vec::new());
        while !rest.is_empty() {
            c.read_tls(&mut rest).unwrap();
            c.process_new_packets().unwrap();
            let _ = c.reader().read_to_end(&mut read);
        }
        assert!(
            c.process_new_packets().unwrap().peer_has_closed(),
            "{suite:?}"
        );
        assert_eq!(read, &big[..MAX_FRAGMENT], "{suite:?}");
        // The client's close_notify reaches us as an alert record.
        c.send_close_notify();
        let got = open_all(&mut opener, client_bytes(&mut c)).unwrap();
        assert_eq!(got, vec![(content::ALERT, vec![1, 0])], "{suite:?}");
    }
}

#[test]
fn a_tampered_record_fails_authentication() {
    for suite in [SUITES[0], SUITES[3], SUITES[5]] {
        let (mut c, s, k) = pair(suite);
        let (_, mut opener) = take(s, u64::MAX, &k);
        c.writer().write_all(b"payload").unwrap();
        let mut wire = client_bytes(&mut c);
        let last = wire.len() - 1;
        wire[last] ^= 1;
        assert_eq!(open_all(&mut opener, wire), Err(RecordError::Decrypt));
    }
}

#[test]
fn a_client_key_update_is_followed_under_tls13() {
    for suite in &SUITES[..3] {
        let (mut c, s, k) = pair(*suite);
        let (_, mut opener) = take(s, u64::MAX, &k);
        c.writer().write_all(b"before").unwrap();
        c.refresh_traffic_keys().unwrap();
        c.writer().write_all(b"after").unwrap();
        let mut wire = client_bytes(&mut c);
        let mut at = 0;
        let mut seen = Vec::new();
        while at < wire.len() {
            let len = opener.record_len(&wire[at..]).unwrap().unwrap();
            let (typ, r) = opener.open(&mut wire[at..at + len]).unwrap();
            let payload = wire[at..at + len][r].to_vec();
            if typ == content::HANDSHAKE {
                assert_eq!(opener.key_update(&payload), Ok(true), "{suite:?}");
            } else {
                seen.extend(payload);
            }
            at += len;
        }
        assert_eq!(seen, b"beforeafter", "{suite:?}");
    }
}

#[test]
fn our_key_update_moves_the_client_to_the_next_key_and_it_answers() {
    for suite in &SUITES[..3] {
        let (mut c, s, k) = pair(*suite);
        let (mut sealer, mut opener) = take(s, u64::MAX, &k);
        let mut rec = vec![0u8; 64];
        let n = sealer.key_update(&mut rec, true).unwrap();
        let mut wire = rec[..n].to_vec();
        wire.extend(seal(&mut sealer, content::APPLICATION_DATA, b"fresh"));
        c.read_tls(&mut wire.as_slice()).unwrap();
        c.process_new_packets().unwrap();
        let mut read = [0u8; 5];
        c.reader().read_exact(&mut read).unwrap();
        assert_eq!(&read, b"fresh", "{suite:?}");
        // Asked to, the client updated its own key: we follow.
        c.writer().write_all(b"next").unwrap();
        let mut wire = client_bytes(&mut c);
        let len = opener.record_len(&wire).unwrap().unwrap();
        let (typ, r) = opener.open(&mut wire[..len]).unwrap();
        assert_eq!(typ, content::HANDSHAKE);
        assert_eq!(opener.key_update(&wire[r]), Ok(false));
        let got = open_all(&mut opener, wire[len..].to_vec()).unwrap();
        assert_eq!(got, vec![(content::APPLICATION_DATA, b"next".to_vec())]);
    }
}

#[test]
fn tls12_has_no_key_update() {
    let (_, s, k) = pair(SUITES[3]);
    let (sealer, mut opener) = take(s, 10, &k);
    assert!(!sealer.update_due(100));
    assert_eq!(
        opener.key_update(&[24, 0, 0, 1, 0]),
        Err(RecordError::Rekey)
    );
}

#[test]
fn lengths_no_peer_may_send_are_refused() {
    let (_, s, k) = pair(SUITES[3]);
    let (_, opener) = take(s, u64::MAX, &k);
    assert_eq!(opener.record_len(&[23, 3, 3]), Ok(None));
    assert_eq!(
        opener.record_len(&[23, 3, 3, 0, 10]),
        Err(RecordError::Malformed)
    );
    assert_eq!(
        opener.record_len(&[23, 3, 3, 0xff, 0xff]),
        Err(RecordError::Malformed)
    );
    assert_eq!(opener.record_len(&[23, 3, 3, 0, 24]), Ok(Some(29)));
}

#[test]
fn records_before_the_handshake_type_are_refused_under_tls13() {
    let (mut c, s, k) = pair(SUITES[0]);
    let (_, mut opener) = take(s, u64::MAX, &k);
    c.writer().write_all(b"x").unwrap();
    let mut wire = client_bytes(&mut c);
    wire[0] = content::CHANGE_CIPHER_SPEC;
    assert_eq!(
        open_all(&mut opener, wire),
        Err(RecordError::Unexpected(20))
    );
}

#[test]
fn tls12_sealing_stops_at_the_confidentiality_limit() {
    let (_, s, _) = pair(SUITES[3]);
    let limit = s.dangerous_extract_secrets().unwrap().tx.0 + 2;
    let (_, s, k) = pair(SUITES[3]);
    let (mut sealer, _) = take(s, limit, &k);
    let mut rec = vec![0u8; 64];
    sealer.seal(content::APPLICATION_DATA, &mut rec, 1).unwrap();
    sealer.seal(content::APPLICATION_DATA, &mut rec, 1).unwrap();
    assert_eq!(
        sealer.seal(content::APPLICATION_DATA, &mut rec, 1),
        Err(RecordError::Exhausted)
    );
}

#[test]
fn tls13_updates_its_key_before_the_limit() {
    let (mut c, s, k) = pair(SUITES[0]);
    let limit = 3;
    let (mut sealer, _) = take(s, limit, &k);
    let mut wire = Vec::new();
    for i in 0..10u8 {
        if sealer.update_due(1) {
            let mut rec = vec![0u8; 64];
            let n = sealer.key_update(&mut rec, false).unwrap();
            wire.extend_from_slice(&rec[..n]);
        }
        wire.extend(seal(&mut sealer, content::APPLICATION_DATA, &[i]));
    }
    c.read_tls(&mut wire.as_slice()).unwrap();
    c.process_new_packets().unwrap();
    let mut read = Vec::new();
    let _ = c.reader().read_to_end(&mut read);
    assert_eq!(read, (0..10u8).collect::<Vec<_>>());
}
