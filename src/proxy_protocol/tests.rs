//! Tests of the PROXY protocol module: interpretation of every header kind,
//! the backend encoding read back, and framing over real sockets (nothing
//! consumed past the header, caps, deadline).

use std::time::Duration;

use proptest::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::*;

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn v2_local() -> Vec<u8> {
    let mut h = V2_SIGNATURE.to_vec();
    h.extend([0x20, 0x00, 0, 0]);
    h
}

#[test]
fn v1_headers() {
    let o = interpret(
        b"PROXY TCP4 192.0.2.7 10.0.0.1 51000 21\r\n",
        ProxyProtocol::V1,
    )
    .unwrap();
    assert_eq!(o.source, Some(sa("192.0.2.7:51000")));
    assert_eq!(o.destination, Some(sa("10.0.0.1:21")));
    let o = interpret(
        b"PROXY TCP6 2001:db8::7 2001:db8::1 51000 21\r\n",
        ProxyProtocol::Any,
    )
    .unwrap();
    assert_eq!(o.source, Some(sa("[2001:db8::7]:51000")));
    let o = interpret(b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n", ProxyProtocol::V1).unwrap();
    assert_eq!(o, Origin::default(), "UNKNOWN: the connection's own peer");
    for bad in [
        &b"PROXY TCP4 192.0.2.7 10.0.0.1 51000\r\n"[..],
        b"PROXY TCP4 300.0.2.7 10.0.0.1 51000 21\r\n",
        b"PROXY TCP4 2001:db8::7 10.0.0.1 1 2\r\n",
        b"PROXY UDP4 192.0.2.7 10.0.0.1 1 2\r\n",
        // A bare LF (the `ppp` crate takes it; the spec and HAProxy do not).
        b"PROXY TCP6 2001:db8::7 2001:db8::1 51000 21 \n",
        b"PROXY TCP4 192.0.2.7 10.0.0.1 51000 21\n",
    ] {
        assert!(
            matches!(
                interpret(bad, ProxyProtocol::V1),
                Err(HeaderError::Invalid(_))
            ),
            "{bad:?}"
        );
    }
}

#[test]
fn v2_headers() {
    let h = encode(
        BackendProxyProtocol::V2,
        sa("192.0.2.7:51000"),
        sa("10.0.0.1:21"),
    )
    .unwrap()
    .unwrap();
    let o = interpret(&h, ProxyProtocol::V2).unwrap();
    assert_eq!(
        (o.source, o.destination),
        (Some(sa("192.0.2.7:51000")), Some(sa("10.0.0.1:21")))
    );
    assert_eq!(
        interpret(&v2_local(), ProxyProtocol::Any),
        Ok(Origin::default())
    );
    // PROXY over UDP is not a TCP client.
    let mut udp = h.clone();
    udp[13] = 0x12;
    assert_eq!(interpret(&udp, ProxyProtocol::V2), Err(HeaderError::NotTcp));
    // Version 1 of the binary header does not exist.
    let mut v = h.clone();
    v[12] = 0x11;
    assert!(matches!(
        interpret(&v, ProxyProtocol::V2),
        Err(HeaderError::Invalid(_))
    ));
}

#[test]
fn versions_the_listener_does_not_accept_are_refused() {
    let v1 = b"PROXY TCP4 192.0.2.7 10.0.0.1 51000 21\r\n";
    assert_eq!(
        interpret(v1, ProxyProtocol::V2),
        Err(HeaderError::WrongVersion("v1", "v2"))
    );
    assert_eq!(
        interpret(&v2_local(), ProxyProtocol::V1),
        Err(HeaderError::WrongVersion("v2", "v1"))
    );
    assert_eq!(
        interpret(b"USER alice\r\n", ProxyProtocol::Any),
        Err(HeaderError::NotProxy)
    );
    assert_eq!(HeaderError::Timeout.reason(), "proxy_timeout");
    assert_eq!(HeaderError::NotProxy.reason(), "proxy_invalid");
}

#[test]
fn backend_headers() {
    let client = sa("192.0.2.7:51000");
    assert_eq!(
        encode(BackendProxyProtocol::Off, client, sa("10.0.0.5:21")).unwrap(),
        None
    );
    let v1 = encode(BackendProxyProtocol::V1, client, sa("10.0.0.5:21"))
        .unwrap()
        .unwrap();
    assert_eq!(v1, b"PROXY TCP4 192.0.2.7 10.0.0.5 51000 21\r\n");
    // Mixed families: both written as IPv6.
    let v1 = encode(BackendProxyProtocol::V1, client, sa("[2001:db8::5]:21"))
        .unwrap()
        .unwrap();
    assert_eq!(v1, b"PROXY TCP6 ::ffff:192.0.2.7 2001:db8::5 51000 21\r\n");
    let v2 = encode(BackendProxyProtocol::V2, client, sa("[2001:db8::5]:21"))
        .unwrap()
        .unwrap();
    let o = interpret(&v2, ProxyProtocol::V2).unwrap();
    assert_eq!(o.source, Some(client), "read back as the IPv4 client");
}

#[test]
fn health_check_headers_name_no_client() {
    assert_eq!(encode_local(BackendProxyProtocol::Off).unwrap(), None);
    let v1 = encode_local(BackendProxyProtocol::V1).unwrap().unwrap();
    assert_eq!(v1, b"PROXY UNKNOWN\r\n");
    let v2 = encode_local(BackendProxyProtocol::V2).unwrap().unwrap();
    assert_eq!(v2, v2_local());
    for h in [v1, v2] {
        let o = interpret(&h, ProxyProtocol::Any).unwrap();
        assert_eq!(o.source, None, "the proxy's own connection");
    }
}

proptest! {
    #[test]
    fn encode_then_interpret(src in any::<u32>(), dst in any::<u32>(), sp in any::<u16>(), dp in any::<u16>()) {
        let (s, d) = (SocketAddr::from((src.to_be_bytes(), sp)), SocketAddr::from((dst.to_be_bytes(), dp)));
        for v in [BackendProxyProtocol::V1, BackendProxyProtocol::V2] {
            let h = encode(v, s, d).unwrap().unwrap();
            let o = interpret(&h, ProxyProtocol::Any).unwrap();
            prop_assert_eq!((o.source, o.destination), (Some(s), Some(d)));
        }
    }

    #[test]
    fn interpret_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = interpret(&bytes, ProxyProtocol::Any);
        let mut v2 = V2_SIGNATURE.to_vec();
        v2.extend(&bytes);
        let _ = interpret(&v2, ProxyProtocol::Any);
    }
}

/// A connected pair: (writer, reader).
async fn pair() -> (TcpStream, TcpStream) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let w = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
    let (r, _) = l.accept().await.unwrap();
    (w, r)
}

const LIMIT: Duration = Duration::from_secs(5);

#[tokio::test]
async fn framing_stops_at_the_end_of_the_header() {
    let (mut w, mut r) = pair().await;
    let mut bytes = encode(
        BackendProxyProtocol::V2,
        sa("192.0.2.7:1"),
        sa("10.0.0.1:21"),
    )
    .unwrap()
    .unwrap();
    bytes.extend_from_slice(b"\x16\x03\x01 client hello");
    w.write_all(&bytes).await.unwrap();
    let o = read_header(&mut r, ProxyProtocol::Any, LIMIT)
        .await
        .unwrap();
    assert_eq!(o.source, Some(sa("192.0.2.7:1")));
    let mut rest = [0u8; 16];
    r.read_exact(&mut rest).await.unwrap();
    assert_eq!(&rest, b"\x16\x03\x01 client hello");

    // v1 in pieces, with the next bytes in the same segment as the CRLF.
    let (mut w, mut r) = pair().await;
    let reader = tokio::spawn(async move {
        let o = read_header(&mut r, ProxyProtocol::V1, LIMIT).await;
        let mut rest = [0u8; 4];
        r.read_exact(&mut rest).await.unwrap();
        (o, rest)
    });
    for part in [
        &b"PROXY TCP4 192.0.2.7 "[..],
        b"10.0.0.1 5",
        b"1000 21\r",
        b"\nNEXT",
    ] {
        w.write_all(part).await.unwrap();
        w.flush().await.unwrap();
        tokio::task::yield_now().await;
    }
    let (o, rest) = reader.await.unwrap();
    assert_eq!(o.unwrap().source, Some(sa("192.0.2.7:51000")));
    assert_eq!(&rest, b"NEXT");
}

#[tokio::test]
async fn framing_caps_deadline_and_silence() {
    let (mut w, mut r) = pair().await;
    w.write_all(format!("PROXY TCP4 {}\r\n", "1".repeat(120)).as_bytes())
        .await
        .unwrap();
    assert_eq!(
        read_header(&mut r, ProxyProtocol::V1, LIMIT).await,
        Err(HeaderError::TooLong)
    );

    let (mut w, mut r) = pair().await;
    let mut big = V2_SIGNATURE.to_vec();
    big.extend([0x21, 0x11, 0xff, 0xff]);
    w.write_all(&big).await.unwrap();
    assert_eq!(
        read_header(&mut r, ProxyProtocol::V2, LIMIT).await,
        Err(HeaderError::TooLong)
    );

    let (mut w, mut r) = pair().await;
    w.write_all(b"PROXY TCP4 192.0.2.7").await.unwrap();
    let short = Duration::from_millis(200);
    assert_eq!(
        read_header(&mut r, ProxyProtocol::V1, short).await,
        Err(HeaderError::Timeout)
    );

    let (w, mut r) = pair().await;
    drop(w);
    assert_eq!(
        read_header(&mut r, ProxyProtocol::Any, LIMIT).await,
        Err(HeaderError::Closed)
    );

    let (mut w, mut r) = pair().await;
    w.write_all(b"220 a banner, not a header\r\n")
        .await
        .unwrap();
    assert_eq!(
        read_header(&mut r, ProxyProtocol::Any, LIMIT).await,
        Err(HeaderError::NotProxy)
    );
}
