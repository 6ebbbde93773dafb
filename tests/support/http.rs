//! A bare HTTP/1.1 GET over a plain socket, for the metrics endpoint
//! (`/metrics`, `/healthz`, `/readyz`) of an in-process or containerised
//! ftpsgate: the status code and the body, nothing else.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// `GET path` with `Connection: close`: (status code, body). Reads for at
/// most 20 s.
pub fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").expect("an HTTP response");
    let code = head.get(9..12).and_then(|c| c.parse().ok()).expect(head);
    (code, body.to_owned())
}
