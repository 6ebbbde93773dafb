//! Reading exactly one PROXY header off a fresh connection: never a byte
//! past its end (the FTP greeting exchange or a TLS ClientHello follows at
//! once), within a deadline, and within [`V1_MAX`]/[`V2_MAX`]. The bytes
//! are framed here and interpreted by [`interpret`].

use std::io;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use super::{interpret, HeaderError, Origin, V1_MAX, V2_MAX, V2_SIGNATURE};
use crate::config::ProxyProtocol;

/// The shortest header of either version (`PROXY UNKNOWN\r\n`; v2 has 16
/// fixed bytes): this many bytes can always be read without passing the end.
const SHORTEST: usize = 15;

/// Reads and interprets the header at the start of `tcp` within `limit`.
pub async fn read_header(
    tcp: &mut TcpStream,
    accept: ProxyProtocol,
    limit: Duration,
) -> Result<Origin, HeaderError> {
    let bytes = tokio::time::timeout(limit, frame(tcp))
        .await
        .map_err(|_| HeaderError::Timeout)??;
    interpret(&bytes, accept)
}

fn io_error(e: io::Error) -> HeaderError {
    HeaderError::Io(e.kind())
}

/// The header's bytes, and not one more.
async fn frame(tcp: &mut TcpStream) -> Result<Vec<u8>, HeaderError> {
    let mut buf = vec![0u8; SHORTEST];
    let mut filled = 0;
    while filled < SHORTEST {
        match tcp.read(&mut buf[filled..]).await.map_err(io_error)? {
            0 if filled == 0 => return Err(HeaderError::Closed),
            0 => return Err(HeaderError::Io(io::ErrorKind::UnexpectedEof)),
            n => filled += n,
        }
    }
    if buf.starts_with(V2_SIGNATURE) {
        let mut rest = [0u8; 1];
        tcp.read_exact(&mut rest).await.map_err(io_error)?;
        buf.push(rest[0]);
        let total = 16 + usize::from(u16::from_be_bytes([buf[14], buf[15]]));
        if total > V2_MAX {
            return Err(HeaderError::TooLong);
        }
        let mut body = vec![0u8; total - 16];
        tcp.read_exact(&mut body).await.map_err(io_error)?;
        buf.extend_from_slice(&body);
        return Ok(buf);
    }
    if !buf.starts_with(b"PROXY ") {
        return Err(HeaderError::NotProxy);
    }
    while !buf.ends_with(b"\r\n") {
        v1_more(tcp, &mut buf).await?;
    }
    Ok(buf)
}

/// Takes the next bytes of a v1 header: what has arrived, up to and
/// including the first LF (peeked first, so nothing after it is consumed).
async fn v1_more(tcp: &mut TcpStream, buf: &mut Vec<u8>) -> Result<(), HeaderError> {
    let room = V1_MAX.saturating_sub(buf.len());
    if room == 0 {
        return Err(HeaderError::TooLong);
    }
    let mut peeked = [0u8; V1_MAX];
    let n = tcp.peek(&mut peeked[..room]).await.map_err(io_error)?;
    if n == 0 {
        return Err(HeaderError::Io(io::ErrorKind::UnexpectedEof));
    }
    let take = peeked[..n]
        .iter()
        .position(|&b| b == b'\n')
        .map_or(n, |i| i + 1);
    let mut bytes = vec![0u8; take];
    tcp.read_exact(&mut bytes).await.map_err(io_error)?;
    buf.extend_from_slice(&bytes);
    if buf.ends_with(b"\n") && !buf.ends_with(b"\r\n") {
        return Err(HeaderError::Invalid("v1 header ends with a bare LF".into()));
    }
    Ok(())
}
