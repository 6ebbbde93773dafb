//! The data path's own TLS record layer (src/data/record.rs, issue 11)
//! against a real plaintext backend (pyftpdlib), driven by the rustls test
//! client: every cipher suite ftpsgate offers moves files byte-exact both
//! ways, a client's TLS 1.3 KeyUpdates mid-upload are followed and answered,
//! an upload in thousands of tiny records arrives intact, and a forged record
//! fails the upload with a 426 naming TLS while the backend is told to abort.
//! The uploads read ftpsgate's records raw: a KeyUpdate the client asks for
//! is answered, and rustls opens ftpsgate's close_notify under the updated
//! key. Every other property of ftpsgate's KeyUpdate is checked against
//! rustls in `src/data/record_tests.rs`.

mod support;

use std::io::{Read, Write};

use rustls::crypto::aws_lc_rs::cipher_suite as cs;
use rustls::{ClientConnection, StreamOwned};
use support::harness::{client_config_suite, Client, Got, Proxy};
use support::tools::{random_bytes, sha256_bytes, FtpBackend, PyFtpd};

/// EPSV, `verb_line`, a data connection offering only `suite`, the 1xx.
fn start_with(
    c: &mut Client,
    verb_line: &str,
    suite: rustls::SupportedCipherSuite,
) -> StreamOwned<ClientConnection, std::net::TcpStream> {
    let addr = c.epsv();
    c.send_raw(format!("{verb_line}\r\n").as_bytes());
    let data = c.data_tls_with(addr, client_config_suite(suite));
    let pre = c.read();
    assert_eq!(pre.code / 100, 1, "{verb_line}: {pre:?}");
    data
}

/// TLS 1.3 record lengths (header excluded) of what ftpsgate sends after the
/// handshake of an upload: a KeyUpdate (4-byte header, 1-byte body, inner
/// type, 16-byte tag) and a close_notify alert (2 bytes, type, tag).
const KEY_UPDATE_LEN: usize = 4 + 1 + 1 + 16;
const CLOSE_NOTIFY_LEN: usize = 2 + 1 + 16;

/// Sends close_notify, reads everything ftpsgate sent on the data connection
/// raw (an upload's client reads nothing before this), then has rustls open
/// it: ftpsgate's close_notify must be found under whatever key ftpsgate is on
/// by now. Returns the final reply and the lengths of ftpsgate's records.
fn finish_upload_records(
    c: &mut Client,
    mut d: StreamOwned<ClientConnection, std::net::TcpStream>,
) -> (Got, Vec<usize>) {
    d.conn.send_close_notify();
    d.flush().unwrap();
    let mut raw = Vec::new();
    d.sock
        .read_to_end(&mut raw)
        .expect("ftpsgate closes the data connection");
    let mut lengths = Vec::new();
    let mut rest = &raw[..];
    while rest.len() >= 5 {
        let len = usize::from(u16::from_be_bytes([rest[3], rest[4]]));
        lengths.push(len);
        rest = &rest[(5 + len).min(rest.len())..];
    }
    let mut input = &raw[..];
    while !input.is_empty() {
        d.conn.read_tls(&mut input).unwrap();
        d.conn
            .process_new_packets()
            .expect("ftpsgate's records open");
    }
    let mut plain = Vec::new();
    d.conn
        .reader()
        .read_to_end(&mut plain)
        .expect("ftpsgate answers close_notify with its own");
    assert!(plain.is_empty());
    (c.read(), lengths)
}

/// [`finish_upload_records`] where ftpsgate was asked for no KeyUpdate: only
/// its close_notify follows the handshake.
fn finish_upload(c: &mut Client, d: StreamOwned<ClientConnection, std::net::TcpStream>) -> Got {
    let tls13 = d.conn.protocol_version() == Some(rustls::ProtocolVersion::TLSv1_3);
    let (fin, lengths) = finish_upload_records(c, d);
    if tls13 {
        assert_eq!(lengths, [CLOSE_NOTIFY_LEN], "{fin:?}");
    }
    fin
}

#[test]
fn every_suite_moves_files_byte_exact_both_ways() {
    let Some(b) = PyFtpd::available() else { return };
    let proxy = Proxy::spawn(b.addr, |_| {});
    // Not a multiple of the 16 KiB record size: full records and a short one.
    let data = random_bytes(1024 * 1024 + 4099, 11);
    b.write_file("src.bin", &data);
    let mut c = Client::logged_in(proxy.addr, &b);
    // Every suite ftpsgate offers with the harness's ECDSA certificate.
    let suites: Vec<_> = ftpsgate::tls::provider()
        .cipher_suites
        .into_iter()
        .filter(|s| s.usable_for_signature_algorithm(rustls::SignatureAlgorithm::ECDSA))
        .collect();
    for version in [
        rustls::ProtocolVersion::TLSv1_2,
        rustls::ProtocolVersion::TLSv1_3,
    ] {
        assert!(suites.iter().any(|s| s.version().version == version));
    }
    for suite in suites {
        let mut d = start_with(&mut c, "RETR src.bin", suite);
        assert_eq!(d.conn.negotiated_cipher_suite(), Some(suite));
        let mut got = Vec::new();
        d.read_to_end(&mut got)
            .expect("download ends with close_notify");
        assert_eq!(c.read().code, 226, "{suite:?}");
        assert_eq!(
            sha256_bytes(&got),
            sha256_bytes(&data),
            "{suite:?} download"
        );

        let mut d = start_with(&mut c, "STOR dst.bin", suite);
        d.write_all(&data).unwrap();
        assert_eq!(finish_upload(&mut c, d).code, 226, "{suite:?}");
        let stored = std::fs::read(b.root.join("dst.bin")).unwrap();
        assert_eq!(
            sha256_bytes(&stored),
            sha256_bytes(&data),
            "{suite:?} upload"
        );
    }
}

#[test]
fn client_key_updates_mid_upload_are_followed() {
    let Some(b) = PyFtpd::available() else { return };
    let proxy = Proxy::spawn(b.addr, |_| {});
    let data = random_bytes(2 * 1024 * 1024, 12);
    let mut c = Client::logged_in(proxy.addr, &b);
    for suite in [
        cs::TLS13_AES_256_GCM_SHA384,
        cs::TLS13_CHACHA20_POLY1305_SHA256,
    ] {
        let mut d = start_with(&mut c, "STOR keyed.bin", suite);
        for chunk in data.chunks(300 * 1024) {
            d.write_all(chunk).unwrap();
            // rustls asks the peer to update too: ftpsgate must answer.
            d.conn.refresh_traffic_keys().unwrap();
        }
        let (fin, lengths) = finish_upload_records(&mut c, d);
        assert_eq!(fin.code, 226, "{suite:?}: {fin:?}");
        // ftpsgate answered (one KeyUpdate per batch it read, however many
        // requests the batch held), then closed under its newest key.
        let (last, answers) = lengths.split_last().unwrap();
        assert_eq!(*last, CLOSE_NOTIFY_LEN, "{suite:?}: {lengths:?}");
        assert!(!answers.is_empty(), "{suite:?}: no KeyUpdate answered");
        assert!(
            answers.iter().all(|&l| l == KEY_UPDATE_LEN),
            "{suite:?}: {lengths:?}"
        );
        let stored = std::fs::read(b.root.join("keyed.bin")).unwrap();
        assert_eq!(sha256_bytes(&stored), sha256_bytes(&data), "{suite:?}");
    }
    let transfers = proxy.events.transfers(2);
    assert!(
        transfers.iter().all(|t| t.bytes == data.len() as u64),
        "{transfers:?}"
    );
}

#[test]
fn a_forged_record_fails_the_upload_and_the_backend_is_told_to_abort() {
    let Some(b) = PyFtpd::available() else { return };
    let proxy = Proxy::spawn(b.addr, |_| {});
    let mut c = Client::logged_in(proxy.addr, &b);
    let mut d = start_with(&mut c, "STOR forged.bin", cs::TLS13_AES_128_GCM_SHA256);
    d.write_all(&random_bytes(64 * 1024, 13)).unwrap();
    d.flush().unwrap();
    // An application-data record that no key sealed.
    let mut forged = vec![23, 3, 3, 0, 64];
    forged.extend(random_bytes(64, 14));
    d.sock.write_all(&forged).unwrap();
    let fin = c.read();
    assert_eq!(fin.code, 426, "{fin:?}");
    assert!(
        fin.text().contains("TLS record failed authentication"),
        "{fin:?}"
    );
    assert_eq!(c.cmd("NOOP").code, 200, "session usable");
    assert!(
        b.commands().iter().any(|l| l.contains("ABOR")),
        "backend told to abort"
    );
}

#[test]
fn an_upload_in_tiny_records_is_byte_exact() {
    let Some(b) = PyFtpd::available() else { return };
    let proxy = Proxy::spawn(b.addr, |_| {});
    let data = random_bytes(600 * 1000, 15);
    let mut c = Client::logged_in(proxy.addr, &b);
    let mut d = start_with(&mut c, "STOR tiny.bin", cs::TLS13_AES_128_GCM_SHA256);
    // One record per write: 6,000 records of 100 bytes, many of them in one
    // read of the proxy, each a plaintext run of its own in the writev.
    for chunk in data.chunks(100) {
        d.write_all(chunk).unwrap();
    }
    assert_eq!(finish_upload(&mut c, d).code, 226);
    let stored = std::fs::read(b.root.join("tiny.bin")).unwrap();
    assert_eq!(sha256_bytes(&stored), sha256_bytes(&data));
}
