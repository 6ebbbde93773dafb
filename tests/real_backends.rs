//! Refusals and malformed input against every real backend (pyftpdlib,
//! vsftpd, ProFTPD) (issue 8, defects 12 and 13): a data connection refused
//! under `require_session_reuse` gets its 522 at once and leaves the control
//! connection usable, for RETR, STOR, APPE and LIST; a 10 KiB command line
//! gets 500 and the next command its normal answer.

mod support;

use std::io::Read;
use std::time::{Duration, Instant};

use support::harness::{client_config, Client, Proxy};
use support::tools::{tools_available, FtpBackend, Proftpd, PyFtpd, Vsftpd};

fn backends() -> Vec<Box<dyn FtpBackend>> {
    if !tools_available(&["pyftpdlib", "vsftpd", "proftpd"]) {
        return Vec::new();
    }
    vec![
        Box::new(PyFtpd::start()),
        Box::new(Vsftpd::start()),
        Box::new(Proftpd::start()),
    ]
}

#[test]
fn a_refused_data_connection_gets_522_at_once_and_the_session_goes_on() {
    for b in backends() {
        b.write_file("r.bin", &[7u8; 100_000]);
        let proxy = Proxy::spawn(b.addr(), |s| {
            s.require_session_reuse = ftpsgate::config::Reuse::Required
        });
        let (mut c, _) = Client::connect(proxy.addr);
        c.login_secure(b.user(), b.pass());
        assert_eq!(c.cmd("TYPE I").code, 200);
        for verb in ["RETR r.bin", "STOR s.bin", "APPE s.bin", "LIST"] {
            let what = format!("{}: {verb}", b.name());
            let addr = c.epsv();
            c.send_raw(format!("{verb}\r\n").as_bytes());
            // A fresh TLS session: a full handshake, which reuse refuses.
            let mut d = c.data_tls_with(addr, client_config());
            let mut sink = Vec::new();
            let _ = d.read_to_end(&mut sink);
            let refused_at = Instant::now();
            assert!(sink.is_empty(), "{what}");
            assert_eq!(c.read().code / 100, 1, "{what}");
            let fin = c.read();
            assert_eq!(fin.code, 522, "{what}: {fin:?}");
            assert!(
                refused_at.elapsed() < Duration::from_secs(2),
                "{what}: 522 after {:?}",
                refused_at.elapsed()
            );
            assert_eq!(c.cmd("NOOP").code, 200, "{what}");
            assert_eq!(c.cmd("PWD").code, 257, "{what}");
        }
    }
}

/// What the backend itself answers to `NOOP` before login (vsftpd: 530).
fn direct_noop(b: &dyn FtpBackend) -> u16 {
    let tcp = std::net::TcpStream::connect(b.addr()).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut r = std::io::BufReader::new(tcp.try_clone().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut r, &mut line).unwrap(); // greeting
    std::io::Write::write_all(&mut &tcp, b"NOOP\r\n").unwrap();
    line.clear();
    std::io::BufRead::read_line(&mut r, &mut line).unwrap();
    line[..3].parse().unwrap()
}

#[test]
fn a_10_kib_line_gets_500_and_the_next_command_its_answer() {
    for b in backends() {
        let expected = direct_noop(b.as_ref());
        // NOOP before TLS reaches the backend only when it is connected at accept.
        let proxy = Proxy::spawn(b.addr(), |s| {
            s.backend_connect = ftpsgate::config::BackendConnect::OnAccept
        });
        let (mut c, _) = Client::connect(proxy.addr);
        let mut line = vec![b'A'; 10 * 1024];
        line.extend_from_slice(b"\r\n");
        c.send_raw(&line);
        assert_eq!(c.read().code, 500, "{}", b.name());
        let noop = c.cmd("NOOP");
        assert_eq!(noop.code, expected, "{}: {noop:?}", b.name());
        // The same in one segment, and the session still logs in afterwards.
        line.extend_from_slice(b"NOOP\r\n");
        c.send_raw(&line);
        assert_eq!(c.read().code, 500, "{}", b.name());
        assert_eq!(c.read().code, expected, "{}", b.name());
        c.auth_tls();
        assert_eq!(c.cmd(&format!("USER {}", b.user())).code, 331);
        assert_eq!(c.cmd(&format!("PASS {}", b.pass())).code, 230);
        assert_eq!(c.cmd("NOOP").code, 200, "{}", b.name());
    }
}

/// After a refused upload the backend's abort is quick too: the next command
/// is answered promptly on every backend (pyftpdlib answers ABOR with a
/// lone 225 when no byte had arrived).
#[test]
fn the_next_command_after_a_refused_upload_is_answered_promptly() {
    for b in backends() {
        let proxy = Proxy::spawn(b.addr(), |s| {
            s.require_session_reuse = ftpsgate::config::Reuse::Required
        });
        let (mut c, _) = Client::connect(proxy.addr);
        c.login_secure(b.user(), b.pass());
        let addr = c.epsv();
        c.send_raw(b"STOR s.bin\r\n");
        drop(c.data_tls_with(addr, client_config()));
        assert_eq!(c.read().code / 100, 1);
        assert_eq!(c.read().code, 522);
        let asked = Instant::now();
        assert_eq!(c.cmd("NOOP").code, 200, "{}", b.name());
        assert!(
            asked.elapsed() < Duration::from_secs(5),
            "{}: NOOP answered after {:?}",
            b.name(),
            asked.elapsed()
        );
    }
}
