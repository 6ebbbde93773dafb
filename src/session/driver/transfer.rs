//! The data half of a control session: setting up both data legs when the
//! client sends PASV/EPSV/PORT/EPRT (the backend side first, so REST stays
//! adjacent to RETR/STOR, PROTOCOL.md §6.3), running one transfer with the
//! reply ordering of PROTOCOL.md §7 (the backend's final reply is held until
//! the client leg is complete; ABOR, STAT and NOOP during a transfer), and
//! aborting the backend's transfer when the client side fails (§15).

use std::net::{IpAddr, SocketAddr};

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::{
    BackendDataLeg, ClientData, ClientEvent, DataSetup, Driver, ABORT_NOTICE_TIMEOUT,
    ABORT_REPLY_TIMEOUT, BACKEND_REPLY_TIMEOUT, MAX_DEFERRED,
};
use crate::config::BackendData;
use crate::data::broker::{self, ClientLeg, DataTls, PassiveAccept};
use crate::data::relay::{self, Outcome};
use crate::data::DataError;
use crate::error::SessionError;
use crate::ftp::addr;
use crate::ftp::command::Command;
use crate::ftp::reply::Reply;

impl Driver {
    /// Prepares the backend side of a data connection; on refusal relays the
    /// backend's reply and returns None.
    async fn backend_setup(&mut self) -> Result<Option<BackendDataLeg>, SessionError> {
        let bpeer = self
            .backend_peer
            .ok_or_else(|| SessionError::internal("no backend peer"))?;
        let blocal = self
            .backend_local
            .ok_or_else(|| SessionError::internal("no backend local"))?;
        match self.shared.settings.backend_data {
            BackendData::Passive => {
                let cmd = if bpeer.is_ipv4() {
                    Command::new("PASV", "")
                } else {
                    Command::new("EPSV", "")
                };
                self.backend()?.send(&cmd).await?;
                let r = self.backend()?.reply_within(BACKEND_REPLY_TIMEOUT).await?;
                let port = match r.code {
                    227 => addr::parse_pasv_reply(&r.text()).map(|a| a.port()),
                    229 => addr::parse_epsv_reply(&r.text()),
                    _ => {
                        self.relay(r).await?;
                        return Ok(None);
                    }
                };
                match port {
                    // The backend's advertised host is ignored: data goes to its control address.
                    Ok(p) if p != 0 => Ok(Some(BackendDataLeg::Passive(SocketAddr::new(
                        bpeer.ip(),
                        p,
                    )))),
                    _ => {
                        warn!(reply = %r.text(), "unusable backend passive reply");
                        self.reply(
                            425,
                            "Can't open data connection (backend passive reply unusable).",
                        )
                        .await?;
                        Ok(None)
                    }
                }
            }
            BackendData::Active => {
                let listener = match TcpListener::bind(SocketAddr::new(blocal.ip(), 0)).await {
                    Ok(l) => l,
                    Err(e) => {
                        warn!(error = %e, "cannot listen for backend data");
                        self.reply(425, "Can't open data connection.").await?;
                        return Ok(None);
                    }
                };
                let laddr = listener.local_addr().map_err(SessionError::internal_io)?;
                let cmd = match laddr {
                    SocketAddr::V4(v4) => Command::new("PORT", &addr::format_port(v4)),
                    SocketAddr::V6(_) => Command::new("EPRT", &addr::format_eprt(laddr)),
                };
                self.backend()?.send(&cmd).await?;
                let r = self.backend()?.reply_within(BACKEND_REPLY_TIMEOUT).await?;
                if !r.is_success() {
                    self.relay(r).await?;
                    return Ok(None);
                }
                Ok(Some(BackendDataLeg::Active(listener)))
            }
        }
    }

    fn data_tls(&self) -> DataTls {
        DataTls {
            acceptor: TlsAcceptor::from(self.shared.tls.data.clone()),
            session_token: self.token.clone(),
        }
    }

    pub(super) async fn passive(&mut self, extended: bool) -> Result<(), SessionError> {
        self.setup = None;
        self.session.on_data_ready(false);
        let Some(backend) = self.backend_setup().await? else {
            return Ok(());
        };
        let (listener, lease) = match self.shared.pool.bind(self.local.ip()) {
            Ok(x) => x,
            Err(e) => {
                warn!(error = %e, "no passive port");
                return self
                    .reply(
                        425,
                        "Can't open data connection: no passive port available.",
                    )
                    .await;
            }
        };
        let port = listener
            .local_addr()
            .map_err(SessionError::internal_io)?
            .port();
        let accept = PassiveAccept::spawn(
            listener,
            lease,
            self.peer.ip(),
            self.protect.clone(),
            self.data_tls(),
        );
        self.setup = Some(DataSetup {
            client: ClientData::Passive(accept),
            backend,
        });
        self.session.on_data_ready(true);
        let reply = if extended {
            Reply::new(229, addr::epsv_reply_text(port))
        } else {
            let ip = match self
                .shared
                .settings
                .public_address
                .unwrap_or(self.local.ip())
            {
                IpAddr::V4(v4) => v4,
                IpAddr::V6(v6) => v6
                    .to_ipv4_mapped()
                    .unwrap_or(std::net::Ipv4Addr::UNSPECIFIED),
            };
            Reply::new(
                227,
                addr::pasv_reply_text(std::net::SocketAddrV4::new(ip, port)),
            )
        };
        self.client
            .send(&reply)
            .await
            .map_err(SessionError::client_io)
    }

    pub(super) async fn active(&mut self, target: SocketAddr) -> Result<(), SessionError> {
        self.setup = None;
        self.session.on_data_ready(false);
        let Some(backend) = self.backend_setup().await? else {
            return Ok(());
        };
        self.setup = Some(DataSetup {
            client: ClientData::Active(target),
            backend,
        });
        self.session.on_data_ready(true);
        self.reply(200, "Active data connection target accepted.")
            .await
    }

    pub(super) async fn transfer(
        &mut self,
        cmd: Command,
        upload: bool,
        protect: bool,
    ) -> Result<(), SessionError> {
        let Some(setup) = self.setup.take() else {
            return self.reply(425, "Use PASV, EPSV, PORT or EPRT first.").await;
        };
        let blocal = self
            .backend_local
            .ok_or_else(|| SessionError::internal("no backend local"))?
            .ip();
        let bpeer = self
            .backend_peer
            .ok_or_else(|| SessionError::internal("no backend peer"))?
            .ip();
        // A passive backend leg is connected before the command, as a plain client would.
        let mut backend_listener = None;
        let mut backend_stream = None;
        match setup.backend {
            BackendDataLeg::Passive(a) => match broker::connect_from(blocal, a).await {
                Ok(s) => backend_stream = Some(s),
                Err(e) => {
                    warn!(error = %e, "backend data connect failed");
                    return self
                        .reply(425, "Can't open data connection to the server.")
                        .await;
                }
            },
            BackendDataLeg::Active(l) => backend_listener = Some(l),
        }
        self.backend()?.send(&cmd).await?;
        let first = self.backend()?.reply_within(BACKEND_REPLY_TIMEOUT).await?;
        if !first.is_preliminary() {
            return self.relay(first).await;
        }
        let mut first = first;
        if first.code == 125 && matches!(setup.client, ClientData::Active(_)) {
            // 125 means "already open"; toward an active-mode client ftpsgate has yet to
            // connect, and curl mishandles 125 there. STOU's "FILE: name" text is kept.
            first.code = 150;
            if !first.text().starts_with("FILE:") {
                first.lines = vec![b"Opening data connection.".to_vec()];
            }
        }
        self.relay(first).await?;

        let local_ip = self.local.ip();
        let dtls = self.data_tls();
        let require_reuse = self.shared.settings.require_session_reuse;
        let data_timeout = self.shared.settings.data_timeout;
        let eof = self.shared.settings.upload_eof;
        let cancel = CancellationToken::new();
        let task_cancel = cancel.clone();
        let (finish_tx, finish_rx) = tokio::sync::oneshot::channel();
        let finish_rx = (!upload).then_some(finish_rx);
        let client_setup = setup.client;
        let data = tokio::spawn(async move {
            let backend = match (backend_stream, backend_listener) {
                (Some(s), _) => Ok(s),
                (None, Some(l)) => tokio::select! {
                    r = tokio::time::timeout(data_timeout, broker::accept_from(&l, bpeer)) => {
                        r.map_err(|_| DataError::BackendConnect)
                            .and_then(|r| r.map_err(|_| DataError::BackendConnect))
                    }
                    _ = task_cancel.cancelled() => Err(DataError::Aborted),
                },
                (None, None) => Err(DataError::BackendConnect),
            };
            let leg = async {
                match client_setup {
                    ClientData::Passive(accept) => accept.wait(data_timeout).await,
                    ClientData::Active(target) => {
                        match broker::connect_from(local_ip, target).await {
                            Ok(tcp) => broker::secure(tcp, protect, &dtls).await,
                            Err(_) => Err(DataError::ClientConnect),
                        }
                    }
                }
            };
            // ABOR (or the session ending) while waiting for the client's connection.
            let leg: Result<ClientLeg, DataError> = tokio::select! {
                l = leg => l,
                _ = task_cancel.cancelled() => Err(DataError::Aborted),
            };
            let fail = |backend: Result<TcpStream, DataError>, e: DataError| {
                Outcome::failed(e, backend.ok())
            };
            let leg = match leg {
                Ok(l) => l,
                Err(e) => return fail(backend, e),
            };
            if leg.protected != protect {
                return fail(backend, DataError::ProtMismatch);
            }
            if require_reuse && protect && !leg.resumed_this_session {
                return fail(backend, DataError::NotResumed);
            }
            let backend = match backend {
                Ok(b) => b,
                Err(e) => return fail(Err(DataError::BackendConnect), e),
            };
            relay::relay(
                leg.stream,
                backend,
                upload,
                eof,
                task_cancel,
                finish_rx,
                None,
            )
            .await
        });
        self.finish_transfer(cmd, upload, data, cancel, finish_tx)
            .await
    }

    /// Waits for both the data relay and the backend's final reply, handling
    /// ABOR and deferring other commands, then sends the client one final reply.
    async fn finish_transfer(
        &mut self,
        cmd: Command,
        upload: bool,
        mut data: tokio::task::JoinHandle<Outcome>,
        cancel: CancellationToken,
        finish: tokio::sync::oneshot::Sender<bool>,
    ) -> Result<(), SessionError> {
        // However this ends (including `?`), the relay task stops with it.
        let _stop_relay = cancel.clone().drop_guard();
        let mut finish = Some(finish);
        let mut outcome: Option<Outcome> = None;
        let mut final_reply: Option<Reply> = None;
        let mut aborted_by_client = false;
        // Once the data has moved, the backend's final reply must follow in bounded time.
        let mut reply_deadline = None;
        while outcome.is_none() || final_reply.is_none() {
            if outcome.is_some() && reply_deadline.is_none() {
                reply_deadline = Some(tokio::time::Instant::now() + BACKEND_REPLY_TIMEOUT);
            }
            let deadline = reply_deadline
                .unwrap_or_else(|| tokio::time::Instant::now() + BACKEND_REPLY_TIMEOUT);
            let backend = self
                .backend
                .as_mut()
                .ok_or_else(|| SessionError::internal("no backend"))?;
            tokio::select! {
                o = &mut data, if outcome.is_none() => {
                    let o = o.unwrap_or_else(|_| Outcome::failed(DataError::Aborted, None));
                    let failed = o.result.is_err();
                    outcome = Some(o);
                    if failed && final_reply.is_none() {
                        break;
                    }
                }
                r = backend.next(), if final_reply.is_none() => {
                    let r = r?;
                    if r.is_preliminary() {
                        self.relay(r).await?;
                        continue;
                    }
                    let failed = !r.is_success();
                    if let Some(f) = finish.take() {
                        let _ = f.send(!failed);
                    }
                    final_reply = Some(r);
                    if failed && outcome.is_none() {
                        // The backend gave up; stop the relay and collect what it hands back.
                        cancel.cancel();
                    }
                }
                _ = tokio::time::sleep_until(deadline), if reply_deadline.is_some() => {
                    return Err(SessionError::backend("no final reply from the backend after the transfer"));
                }
                ev = self.client.next() => {
                    let ev = ev.map_err(SessionError::client_io)?;
                    match ev {
                        ClientEvent::Line(ref l) if Command::parse(l).is_ok_and(|c| c.verb == "ABOR") => {
                            aborted_by_client = true;
                            cancel.cancel();
                            break;
                        }
                        ClientEvent::Eof => {
                            cancel.cancel();
                            let o = (&mut data).await.ok();
                            if final_reply.is_none() {
                                self.abort_backend(o.and_then(|o| o.backend), upload).await?;
                            }
                            return Err(SessionError::client_silent("client closed the control connection during a transfer".into()));
                        }
                        other => {
                            if self.deferred.len() >= MAX_DEFERRED {
                                return Err(SessionError::client_reply(Reply::new(421, "Too many commands during a transfer."), "deferred queue full"));
                            }
                            self.deferred.push_back(other);
                        }
                    }
                }
            }
        }
        if outcome.is_none() {
            outcome = (&mut data).await.ok();
        }
        let outcome = outcome.unwrap_or_else(|| Outcome::failed(DataError::Aborted, None));
        let Outcome {
            bytes,
            elapsed,
            result,
            backend: backend_leg,
            lenient_eof,
        } = outcome;
        let ms = elapsed.as_millis() as u64;
        if aborted_by_client {
            if final_reply.is_none() {
                self.abort_backend(backend_leg, upload).await?;
            }
            info!(verb = %cmd.verb, bytes, ms, "transfer aborted by client");
            // The transfer command is still unanswered, so it gets its reply first.
            if result.is_ok() {
                self.reply(226, "Transfer complete.").await?;
            } else {
                self.reply(426, "Connection closed; transfer aborted.")
                    .await?;
            }
            return self.reply(226, "ABOR command successful.").await;
        }
        match (result, final_reply) {
            (Ok(()), Some(r)) => {
                if lenient_eof {
                    warn!("upload ended without TLS close_notify; accepted (upload_eof: lenient)");
                }
                info!(verb = %cmd.verb, bytes, ms, code = r.code, "transfer finished");
                self.relay(r).await
            }
            (Err(e), Some(r)) => {
                drop(backend_leg);
                warn!(verb = %cmd.verb, bytes, error = %e, backend_code = r.code, "transfer failed");
                if r.is_success() {
                    self.client
                        .send(&error_reply(&e))
                        .await
                        .map_err(SessionError::client_io)
                } else {
                    self.relay(r).await
                }
            }
            (Err(e), None) => {
                warn!(verb = %cmd.verb, bytes, error = %e, "transfer failed; aborting backend transfer");
                self.abort_backend(backend_leg, upload).await?;
                self.client
                    .send(&error_reply(&e))
                    .await
                    .map_err(SessionError::client_io)
            }
            (Ok(()), None) => Err(SessionError::internal(
                "transfer finished without a backend reply",
            )),
        }
    }

    /// Aborts the backend's running transfer. For downloads the backend data
    /// leg is closed first (unblocking a server stuck writing). For uploads ABOR
    /// goes first and the leg is reset only after the backend answers, so a
    /// partial upload is never closed cleanly (PROTOCOL.md §15); a backend that
    /// does not notice ABOR while it reads (vsftpd without `async_abor_enable`)
    /// gets the reset after [`ABORT_NOTICE_TIMEOUT`]. ABOR is preceded by Telnet
    /// IP and Synch (IAC as urgent data, then DM), as RFC 959 §4.1.3 and
    /// mod_proxy do. The backend owes two replies: the transfer's final one
    /// (426/451, or 226 if it had just finished) and ABOR's (225/226).
    async fn abort_backend(
        &mut self,
        leg: Option<TcpStream>,
        upload: bool,
    ) -> Result<(), SessionError> {
        let mut leg = if upload {
            leg
        } else {
            drop(leg);
            None
        };
        let backend = self.backend()?;
        debug!("to backend: IAC IP, Synch, ABOR");
        backend
            .stream
            .write_all(&[IAC, IP])
            .await
            .map_err(SessionError::backend_io)?;
        let _ = socket2::SockRef::from(&backend.stream).send_out_of_band(&[IAC]);
        backend
            .stream
            .write_all(&[DM])
            .await
            .map_err(SessionError::backend_io)?;
        backend.send(&Command::new("ABOR", "")).await?;
        let first = match (
            leg.is_some(),
            tokio::time::timeout(ABORT_NOTICE_TIMEOUT, backend.next()).await,
        ) {
            (_, Ok(r)) => r?,
            (true, Err(_)) => {
                reset(leg.take());
                backend.reply_within(ABORT_REPLY_TIMEOUT).await?
            }
            (false, Err(_)) => backend.reply_within(ABORT_REPLY_TIMEOUT).await?,
        };
        match backend.reply_within(ABORT_REPLY_TIMEOUT).await {
            Ok(second) => debug!(
                transfer = first.code,
                abor = second.code,
                "backend aborted the transfer"
            ),
            Err(e) => debug!(transfer = first.code, error = %e, "no second reply after ABOR"),
        }
        reset(leg);
        Ok(())
    }
}

/// Closes a backend data connection with RST, never with a clean FIN.
fn reset(leg: Option<TcpStream>) {
    if let Some(s) = leg {
        let _ = s.set_zero_linger();
        drop(s);
    }
}

const IAC: u8 = 255;
const IP: u8 = 244;
const DM: u8 = 242;

/// The client reply for a failed transfer (PROTOCOL.md §15).
fn error_reply(e: &DataError) -> Reply {
    match e {
        DataError::ClientConnect | DataError::BackendConnect => Reply::new(425, "Can't open data connection."),
        DataError::Handshake => Reply::new(522, "Data connection TLS handshake failed."),
        DataError::NotResumed => Reply::new(
            522,
            "Data connection refused: TLS session reuse required (resume the control connection's TLS session).",
        ),
        DataError::ProtMismatch => Reply::new(425, "PROT level changed after the data connection was opened; retry."),
        DataError::Truncated => Reply::new(426, "Upload ended without TLS close_notify; transfer aborted."),
        DataError::Stalled => Reply::new(426, "Data connection stalled; transfer aborted."),
        DataError::Client(_) | DataError::Backend(_) | DataError::Aborted => {
            Reply::new(426, "Connection closed; transfer aborted.")
        }
    }
}
