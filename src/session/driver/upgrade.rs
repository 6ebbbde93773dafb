//! Swapping the client's control stream: the TLS handshake after `234` (and
//! at once on the implicit listener), and CCC back to plaintext (RFC 4217
//! §4-§5). Both account for every buffered byte: nothing pipelined before a
//! swap may be read on the other side of it (CVE-2011-1575 class).

use std::sync::Arc;
use std::time::Duration;

use rustls::ServerConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;

use super::control::ClientCtl;
use crate::error::SessionError;
use crate::events::TlsDetails;
use crate::stream::{MaybeTls, Tcp};
use crate::tls::reuse::Token;

/// How long to wait for the client's close_notify after CCC (the whole drain).
pub const CCC_DRAIN_TIMEOUT: Duration = Duration::from_secs(1);
/// The largest TLS record (2^14 plus the most expansion TLS allows).
const MAX_RECORD: usize = 18 * 1024;

/// What the control handshake established.
pub struct Established {
    /// For events.
    pub details: TlsDetails,
    /// The client certificate (leaf, DER), which data connections must match.
    pub client_cert: Option<Vec<u8>>,
}

/// Runs the server side of the control handshake; the session's `token`
/// becomes the resumption data every ticket and cached session carries.
pub async fn start_tls(
    client: &mut ClientCtl,
    config: Arc<ServerConfig>,
    token: Token,
    timeout: Duration,
) -> Result<Established, SessionError> {
    let Some(MaybeTls::Plain(tcp)) = client.stream.take() else {
        return Err(SessionError::Internal("TLS requested on a TLS stream"));
    };
    let accept = TlsAcceptor::from(config).accept_with(Tcp::for_handshake(tcp), move |conn| {
        conn.set_resumption_data(token.as_bytes())
    });
    let mut tls = tokio::time::timeout(timeout, accept)
        .await
        .map_err(|_| SessionError::HandshakeTimeout)?
        .map_err(SessionError::Handshake)?;
    tls.get_mut().0.handshaking = false;
    let established = Established {
        details: crate::tls::details(tls.get_ref().1),
        client_cert: crate::tls::client_cert(tls.get_ref().1),
    };
    client.stream = Some(MaybeTls::Tls(Box::new(tls)));
    Ok(established)
}

/// CCC: the 200 has been sent under TLS; send close_notify, consume the
/// client's (if it sends one), and continue in plaintext.
pub async fn clear_control(client: &mut ClientCtl) -> Result<(), SessionError> {
    let Some(MaybeTls::Tls(tls)) = client.stream.take() else {
        return Err(SessionError::Internal("CCC without TLS"));
    };
    let (tcp, mut conn) = tls.into_inner();
    let mut tcp = tcp.inner;
    conn.send_close_notify();
    let mut out = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut out).map_err(SessionError::ClientIo)?;
    }
    tokio::time::timeout(CCC_DRAIN_TIMEOUT, tcp.write_all(&out))
        .await
        .map_err(|_| SessionError::ClientStalled)?
        .map_err(SessionError::ClientIo)?;
    drain_close_notify(&mut tcp, &mut conn).await?;
    client.stream = Some(MaybeTls::Plain(tcp));
    Ok(())
}

/// curl's "active" CCC mode answers with its own close_notify, "passive" mode
/// does not (CURLOPT_FTP_SSL_CCC). TLS records (TLS 1.3 sends the alert as an
/// encrypted application_data record) are fed to rustls and dropped until
/// plaintext arrives; an FTP command never starts with a record type byte.
/// The whole drain has one deadline: no record within it means plaintext
/// follows; a record that starts but does not complete ends the session.
async fn drain_close_notify(
    tcp: &mut TcpStream,
    conn: &mut rustls::ServerConnection,
) -> Result<(), SessionError> {
    let deadline = tokio::time::Instant::now() + CCC_DRAIN_TIMEOUT;
    loop {
        let mut head = [0u8; 1];
        match tokio::time::timeout_at(deadline, tcp.peek(&mut head)).await {
            Ok(Ok(1)) if (0x14..=0x17).contains(&head[0]) => {}
            _ => return Ok(()),
        }
        let record = tokio::time::timeout_at(deadline, read_record(tcp))
            .await
            .map_err(|_| SessionError::CccRecord)??;
        let _ = conn.read_tls(&mut &record[..]);
        match conn.process_new_packets() {
            Ok(state) if state.peer_has_closed() => return Ok(()),
            Ok(_) => continue,
            Err(_) => return Ok(()),
        }
    }
}

/// One whole TLS record (header and body), at most [`MAX_RECORD`] long.
async fn read_record(tcp: &mut TcpStream) -> Result<Vec<u8>, SessionError> {
    let mut record = vec![0u8; 5];
    tcp.read_exact(&mut record)
        .await
        .map_err(SessionError::ClientIo)?;
    let len = usize::from(u16::from_be_bytes([record[3], record[4]]));
    if len > MAX_RECORD {
        return Err(SessionError::CccRecord);
    }
    record.resize(5 + len, 0);
    tcp.read_exact(&mut record[5..])
        .await
        .map_err(SessionError::ClientIo)?;
    Ok(record)
}
