//! Policy audit mode (issue 9), one test per policy, with real clients and a
//! real backend (pyftpdlib): under `audit` the request a policy would
//! refuse goes through (the transfer is byte-exact, the login succeeds),
//! and exactly one "would refuse" fact per session and reason is recorded: a
//! `PolicyAudited` event carrying the client's address and user (the WARN
//! log line is written from it), `ftpsgate_policy_audited_total{reason}`
//! moves by one, and `ftpsgate_policy_refusals_total` does not move.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use ftpsgate::config::{Ccc, Requirement, Reuse, Settings};
use ftpsgate::events::SessionEvent;
use ftpsgate::session::Refusal;
use support::harness::{client_config_with_cert, Client, Proxy};
use support::tools::{
    curl_download, py_client, random_bytes, sha256_bytes, sha256_file, tools_available,
    CurlOptions, FtpBackend, PyClientOptions, PyFtpd, PASS, USER,
};

/// The `/metrics` value of `series` (0 when absent).
fn metric(addr: SocketAddr, series: &str) -> f64 {
    let (code, body) = support::http::get(addr, "/metrics");
    assert_eq!(code, 200, "{body}");
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

/// A proxy with metrics in front of `b`, with `tweak` applied.
fn proxy(b: &PyFtpd, tweak: impl FnOnce(&mut Settings)) -> (Proxy, SocketAddr) {
    let p = Proxy::spawn(b.addr, |s| {
        s.metrics = Some("127.0.0.1:0".parse().unwrap());
        tweak(s);
    });
    let m = p.metrics_addr().unwrap();
    (p, m)
}

/// Every audit recorded: (reason label, client IP, user).
fn audits(p: &Proxy) -> Vec<(&'static str, String, Option<String>)> {
    p.events
        .all()
        .into_iter()
        .filter_map(|(info, e)| match e {
            SessionEvent::PolicyAudited(r) => {
                Some((r.reason(), info.client.ip().to_string(), info.user))
            }
            _ => None,
        })
        .collect()
}

/// Exactly one audit for each of `reasons` (in order) by alice from
/// 127.0.0.1; each counted once, refused never.
fn assert_audited_once(p: &Proxy, m: SocketAddr, reasons: &[&'static str]) {
    let user = Some(USER.to_string());
    let want: Vec<_> = reasons
        .iter()
        .map(|r| (*r, "127.0.0.1".to_string(), user.clone()))
        .collect();
    assert_eq!(audits(p), want);
    for reason in reasons {
        let audited = format!("ftpsgate_policy_audited_total{{reason=\"{reason}\"}}");
        let refused = format!("ftpsgate_policy_refusals_total{{reason=\"{reason}\"}}");
        assert_eq!((metric(m, &audited), metric(m, &refused)), (1.0, 0.0));
    }
    assert!(p.events.refusals().is_empty(), "{:?}", p.events.refusals());
}

fn setup(tools: &[&str]) -> Option<(PyFtpd, Vec<u8>, tempfile::TempDir)> {
    if !tools_available(tools) {
        return None;
    }
    let b = PyFtpd::start();
    let data = random_bytes(700_001, 31);
    b.write_file("a.bin", &data);
    Some((b, data, tempfile::tempdir().unwrap()))
}

#[test]
fn control_tls_audit_lets_a_plaintext_login_through_and_records_it() {
    let Some((b, data, dir)) = setup(&["pyftpdlib", "curl"]) else {
        return;
    };
    let (p, m) = proxy(&b, |s| {
        s.control_tls = Requirement::Audit;
        s.data_tls = Requirement::Optional;
    });
    let out = dir.path().join("plain.bin");
    curl_download(p.addr, "a.bin", &out, &CurlOptions::plain()).assert_success();
    assert_eq!(sha256_file(&out), sha256_bytes(&data));
    // USER/PASS, then every other command before TLS: one report each.
    assert_audited_once(&p, m, &["login_before_tls", "command_before_tls"]);
}

#[test]
fn data_tls_audit_lets_a_clear_transfer_through_and_records_it() {
    let Some((b, data, dir)) = setup(&["pyftpdlib", "curl"]) else {
        return;
    };
    let (p, m) = proxy(&b, |s| s.data_tls = Requirement::Audit);
    // curl --ftp-ssl-control: TLS for the login, clear data connections.
    let opts = CurlOptions::plain().arg("--ftp-ssl-control").arg("-k");
    let out = dir.path().join("clear.bin");
    curl_download(p.addr, "a.bin", &out, &opts).assert_success();
    assert_eq!(sha256_file(&out), sha256_bytes(&data));
    assert_audited_once(&p, m, &["clear_data"]);
}

#[test]
fn ccc_audit_lets_curl_clear_the_control_channel_and_records_it() {
    let Some((b, data, dir)) = setup(&["pyftpdlib", "curl"]) else {
        return;
    };
    let (p, m) = proxy(&b, |s| s.ccc = Ccc::Audit);
    let opts = CurlOptions::explicit()
        .arg("--ftp-ssl-ccc")
        .arg("--ftp-ssl-ccc-mode")
        .arg("active");
    let out = dir.path().join("ccc.bin");
    curl_download(p.addr, "a.bin", &out, &opts).assert_success();
    assert_eq!(sha256_file(&out), sha256_bytes(&data));
    assert!(!b.commands().iter().any(|c| c.starts_with("CCC")));
    assert_audited_once(&p, m, &["ccc_denied"]);
}

#[test]
fn session_reuse_audit_lets_an_unresumed_data_connection_through() {
    let Some((b, data, dir)) = setup(&["pyftpdlib", "python3"]) else {
        return;
    };
    let (p, m) = proxy(&b, |s| s.require_session_reuse = Reuse::Audit);
    // CPython's FTP_TLS never resumes the control session on data connections.
    let out = dir.path().join("fresh.bin");
    let out_s = out.display().to_string();
    let r = py_client(
        p.addr,
        &PyClientOptions::explicit(),
        &["get", "a.bin", &out_s],
    );
    r.assert_success();
    assert_eq!(r.field("data_session_reused"), Some("False"), "{r}");
    assert_eq!(sha256_file(&out), sha256_bytes(&data));
    assert_audited_once(&p, m, &["session_not_resumed"]);
}

#[test]
fn client_cert_audit_lets_a_client_without_certificate_in() {
    let Some((b, data, dir)) = setup(&["pyftpdlib"]) else {
        return;
    };
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let (p, m) = proxy(&b, |s| {
        s.client_ca = Some(ca_file.clone());
        s.client_cert = Requirement::Audit;
    });
    let (mut c, _) = Client::connect(p.addr);
    c.login_secure(USER, PASS);
    assert_eq!(c.cmd("TYPE I").code, 200);
    let (_, got, fin) = c.download("RETR a.bin");
    assert_eq!((fin.code, sha256_bytes(&got)), (226, sha256_bytes(&data)));
    assert_eq!(c.cmd("QUIT").code, 221);
    p.events.closed(1, Duration::from_secs(10));
    // The audit is made at the handshake, before USER: no user yet.
    let want = [(
        Refusal::ClientCertMissing.reason(),
        "127.0.0.1".to_string(),
        None,
    )];
    assert_eq!(audits(&p), want);
    let series = "ftpsgate_policy_audited_total{reason=\"client_cert_missing\"}";
    assert_eq!(metric(m, series), 1.0);

    // With a certificate from that CA: nothing to audit.
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf_params = rcgen::CertificateParams::new(vec!["client.test".to_string()]).unwrap();
    let leaf = leaf_params.signed_by(&leaf_key, &ca, &ca_key).unwrap();
    let key = rustls::pki_types::PrivateKeyDer::try_from(leaf_key.serialize_der()).unwrap();
    let (mut c, _) = Client::connect(p.addr);
    c.tls = client_config_with_cert(vec![leaf.der().clone()], key);
    c.login_secure(USER, PASS);
    assert_eq!(c.cmd("TYPE I").code, 200);
    let (_, got, _) = c.download("RETR a.bin");
    assert_eq!(got.len(), data.len());
    assert_eq!(audits(&p).len(), 1, "a certified client is not audited");
}
