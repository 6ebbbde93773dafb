//! The control side of one transfer (PROTOCOL.md §7, §14): send the command,
//! relay the backend's 1xx, start the [`Transfer`], then wait for both its
//! outcome and the backend's final reply while handling ABOR and queueing
//! other commands; send the client exactly one final reply, abort the
//! backend's transfer when the client side failed (§15), and emit the
//! transfer's one [`TransferRecord`].

use std::time::{Instant, SystemTime};

use tokio::net::TcpStream;
use tracing::{debug, warn};

use super::control::{ClientEvent, BACKEND_REPLY_TIMEOUT};
use super::{Driver, MAX_DEFERRED};
use crate::data::relay;
use crate::data::transfer::{self, DataSetup, Plan, Transfer, TransferOutcome};
use crate::data::DataError;
use crate::error::{disposition, Failure, SessionError};
use crate::events::{DataMode, Direction, SessionEvent, TransferRecord, TransferResult};
use crate::ftp::command::Command;
use crate::ftp::reply::{Reply, TransferEnd};
use crate::ftp::rewrite;
use crate::session::{DuringTransfer, Refusal};

/// How long a backend gets to notice ABOR during an upload before its data
/// connection is reset.
const ABORT_NOTICE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);
/// Replies the backend owes after ABOR.
const ABORT_REPLY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

const IAC: u8 = 255;
const IP: u8 = 244;
const DM: u8 = 242;

/// Where a running transfer stands.
#[derive(Default)]
struct Progress {
    outcome: Option<TransferOutcome>,
    final_reply: Option<Reply>,
    aborted: bool,
    /// The shutdown grace period ended during the transfer.
    cut: bool,
    /// Once the data has moved, the backend's final reply must follow in bounded time.
    deadline: Option<tokio::time::Instant>,
}

impl Driver<'_> {
    /// Runs one transfer command over a prepared set-up and records it.
    pub(super) async fn transfer(
        &mut self,
        cmd: Command,
        upload: bool,
        protect: bool,
        setup: DataSetup,
    ) -> Result<(), SessionError> {
        let started = Instant::now();
        let mut record = self.new_record(&cmd, upload, Some(setup.mode()));
        let direction = record.direction;
        self.data_state.send_modify(|s| s.pending = Some(direction));
        let result = self.run_transfer(&cmd, protect, setup, &mut record).await;
        self.data_state.send_modify(|s| s.pending = None);
        if let Err(e) = &result {
            // The session ends inside the transfer: unless the transfer was
            // already answered, the client's last reply is the code.
            if record.code == 0 {
                record.code = e.reply().map_or(0, |r| r.code);
            }
            if record.result == TransferResult::Complete {
                record.result = TransferResult::Failed(DataError::Aborted);
            }
        }
        record.duration = started.elapsed();
        self.front.ctx.emit(SessionEvent::TransferFinished(record));
        result
    }

    /// A transfer the policy refused before anything reached the backend.
    pub(super) fn record_refused(&mut self, cmd: &Command, refusal: Refusal) {
        let upload = matches!(
            cmd.class(),
            crate::ftp::command::Class::Transfer { upload: true }
        );
        let mut record = self.new_record(cmd, upload, None);
        record.code = refusal.reply().code;
        record.result = TransferResult::Refused(refusal);
        self.front.ctx.emit(SessionEvent::TransferFinished(record));
    }

    fn new_record(&self, cmd: &Command, upload: bool, mode: Option<DataMode>) -> TransferRecord {
        TransferRecord {
            started: SystemTime::now(),
            verb: cmd.verb.clone(),
            path: String::from_utf8_lossy(&cmd.arg).into_owned(),
            direction: if upload {
                Direction::Upload
            } else {
                Direction::Download
            },
            bytes: 0,
            duration: std::time::Duration::ZERO,
            code: 0,
            data_tls: None,
            prot: self.front.session.prot(),
            binary: self.front.session.binary(),
            data_mode: mode,
            result: TransferResult::Complete,
        }
    }

    fn plan(&self, direction: Direction, protect: bool, binding_required: bool) -> Plan {
        let s = &self.front.ctx.live.settings;
        Plan {
            direction,
            protect,
            reuse: s.require_session_reuse,
            client_cert: s.client_cert,
            peer_unchecked: binding_required,
            data_timeout: s.data_timeout,
            limits: relay::Limits {
                stall: s.stall_timeout,
                rates: self.front.ctx.rates(),
                max_upload: s.max_upload,
                eof: s.upload_eof,
            },
            client_facing_ip: self.front.ctx.local.ip(),
            backend_facing_ip: self.backend.local.ip(),
            backend_ip: self.backend.peer.ip(),
            tls: self.data_tls(),
            control_cert: self.front.client_cert.clone(),
        }
    }

    async fn run_transfer(
        &mut self,
        cmd: &Command,
        protect: bool,
        setup: DataSetup,
        record: &mut TransferRecord,
    ) -> Result<(), SessionError> {
        let plan = self.plan(record.direction, protect, setup.binding_required);
        // A passive backend leg is connected before the command, as a plain client would.
        let backend = match transfer::prepare_backend(setup.backend, plan.backend_facing_ip).await {
            Ok(b) => b,
            Err(e) => return self.transfer_failed(record, e).await,
        };
        self.backend.send(cmd).await?;
        let first = self.backend.reply().await?;
        if !first.is_preliminary() {
            record.code = first.code;
            record.result = TransferResult::Declined;
            return self.relay(first).await;
        }
        let active = record.data_mode == Some(DataMode::Active);
        self.relay(rewrite::client_preliminary(first, active))
            .await?;
        let mut running = Transfer::start(setup.client, backend, plan);
        let progress = self.await_transfer(&mut running).await?;
        self.conclude(progress, record).await
    }

    async fn transfer_failed(
        &mut self,
        record: &mut TransferRecord,
        e: DataError,
    ) -> Result<(), SessionError> {
        let reply = disposition(&Failure::Transfer(&e)).reply;
        record.code = reply.as_ref().map_or(0, |r| r.code);
        record.result = match e {
            DataError::Policy(refusal) => {
                self.front.ctx.emit(SessionEvent::PolicyRefused(refusal));
                TransferResult::Refused(refusal)
            }
            e => TransferResult::Failed(e),
        };
        match reply {
            Some(r) => self.front.client.send(&r).await,
            None => Ok(()),
        }
    }

    /// Waits for the data relay and the backend's final reply, handling ABOR
    /// and queueing other commands.
    async fn await_transfer(&mut self, running: &mut Transfer) -> Result<Progress, SessionError> {
        let mut p = Progress::default();
        while p.outcome.is_none() || p.final_reply.is_none() {
            if p.outcome.is_some() && p.deadline.is_none() {
                p.deadline = Some(tokio::time::Instant::now() + BACKEND_REPLY_TIMEOUT);
            }
            let deadline = p
                .deadline
                .unwrap_or_else(|| tokio::time::Instant::now() + BACKEND_REPLY_TIMEOUT);
            tokio::select! {
                o = running.outcome(), if !running.is_done() => {
                    let failed = o.relay.result.is_err();
                    p.outcome = Some(o);
                    if failed && p.final_reply.is_none() {
                        break;
                    }
                }
                r = self.backend.next(), if p.final_reply.is_none() => {
                    let r = r?;
                    match r.transfer_end() {
                        TransferEnd::Preliminary => {
                            self.relay(r).await?;
                            continue;
                        }
                        // A surplus reply (an injected 227) is never the verdict.
                        TransferEnd::Unexpected => return Err(SessionError::Unsolicited(r.code)),
                        TransferEnd::Success | TransferEnd::Failure => {}
                    }
                    running.confirm(r.is_success());
                    if !r.is_success() && p.outcome.is_none() {
                        // The backend gave up; stop the relay and collect what it hands back.
                        running.cancel();
                    }
                    p.final_reply = Some(r);
                }
                _ = tokio::time::sleep_until(deadline), if p.deadline.is_some() => {
                    return Err(SessionError::NoFinalReply);
                }
                _ = self.front.ctx.cut.cancelled() => {
                    running.cancel();
                    p.cut = true;
                    break;
                }
                ev = self.front.client.next() => {
                    let ev = ev.map_err(SessionError::ClientIo)?;
                    if self.client_during_transfer(ev, running, &mut p).await? {
                        break;
                    }
                }
            }
        }
        if p.outcome.is_none() {
            p.outcome = Some(running.outcome().await);
        }
        Ok(p)
    }

    /// A client event during a transfer. Returns true when waiting stops (ABOR).
    async fn client_during_transfer(
        &mut self,
        ev: ClientEvent,
        running: &mut Transfer,
        p: &mut Progress,
    ) -> Result<bool, SessionError> {
        match ev {
            ClientEvent::Line(ref line) => {
                let abort = Command::parse(line)
                    .is_ok_and(|c| self.front.session.during_transfer(&c) == DuringTransfer::Abort);
                if abort {
                    p.aborted = true;
                    running.cancel();
                    return Ok(true);
                }
            }
            ClientEvent::Eof => {
                running.cancel();
                let outcome = running.outcome().await;
                if p.final_reply.is_none() {
                    let upload = self.is_upload(running);
                    self.abort_backend(outcome.relay.backend, upload).await?;
                }
                return Err(SessionError::ClientLeftTransfer);
            }
            ClientEvent::TooLong | ClientEvent::Overflow => {}
        }
        if self.deferred.len() >= MAX_DEFERRED {
            return Err(SessionError::TooManyQueued);
        }
        self.deferred.push_back(ev);
        Ok(false)
    }

    fn is_upload(&self, running: &Transfer) -> bool {
        running.direction() == Direction::Upload
    }

    /// Sends the one final reply for the transfer command (and ABOR's). When
    /// the backend's transfer must be aborted, the client is answered first:
    /// it learns the outcome at once, and its next command waits for the
    /// backend's abort to finish.
    async fn conclude(
        &mut self,
        p: Progress,
        record: &mut TransferRecord,
    ) -> Result<(), SessionError> {
        let upload = record.direction == Direction::Upload;
        let TransferOutcome {
            relay: outcome,
            tls,
            audits,
        } = p
            .outcome
            .unwrap_or_else(|| TransferOutcome::failed(DataError::Aborted, None));
        for r in audits {
            self.front.ctx.audit(r);
        }
        record.bytes = outcome.bytes;
        record.data_tls = tls;
        if p.cut {
            return self.conclude_cut(outcome.backend, record).await;
        }
        if p.aborted {
            return self
                .conclude_abor(outcome, p.final_reply.is_none(), record)
                .await;
        }
        match (outcome.result, p.final_reply) {
            (Ok(()), Some(r)) => {
                if outcome.lenient_eof {
                    warn!("upload ended without TLS close_notify; accepted (upload_eof: lenient)");
                }
                record.code = r.code;
                if !r.is_success() {
                    record.result = TransferResult::Declined;
                }
                self.relay(r).await
            }
            (Err(e), Some(r)) if r.is_success() => self.transfer_failed(record, e).await,
            (Err(e), Some(r)) => {
                record.code = r.code;
                record.result = TransferResult::Failed(e);
                self.relay(r).await
            }
            (Err(e), None) => {
                self.transfer_failed(record, e).await?;
                self.abort_backend(outcome.backend, upload).await
            }
            (Ok(()), None) => Err(SessionError::Internal(
                "transfer finished without a backend reply",
            )),
        }
    }

    /// ABOR arrived during the transfer: the transfer command is still
    /// unanswered, so it gets its reply first, then ABOR its 226; the
    /// backend's transfer is aborted unless it had already answered.
    async fn conclude_abor(
        &mut self,
        outcome: relay::Outcome,
        backend_busy: bool,
        record: &mut TransferRecord,
    ) -> Result<(), SessionError> {
        record.result = TransferResult::Aborted;
        match outcome.result {
            Ok(()) => {
                record.code = 226;
                self.reply(226, "Transfer complete.").await?;
            }
            Err(_) => {
                record.code = 426;
                self.reply(426, "Connection closed; transfer aborted.")
                    .await?;
            }
        }
        self.reply(226, "ABOR command successful.").await?;
        if backend_busy {
            let upload = record.direction == Direction::Upload;
            self.abort_backend(outcome.backend, upload).await?;
        }
        Ok(())
    }

    /// Shutdown cut the transfer: the client is told, the backend's data leg
    /// is reset (an upload is never left looking complete), and the session
    /// ends; there is no time for the ABOR exchange.
    async fn conclude_cut(
        &mut self,
        leg: Option<TcpStream>,
        record: &mut TransferRecord,
    ) -> Result<(), SessionError> {
        reset(leg);
        let e = DataError::Shutdown;
        self.transfer_failed(record, e).await?;
        Err(SessionError::Shutdown)
    }

    /// Aborts the backend's running transfer. For downloads the backend data
    /// leg is closed first (unblocking a server stuck writing). For uploads ABOR
    /// goes first and the leg is reset only after the backend answers, so a
    /// partial upload is never closed cleanly (PROTOCOL.md §15); a backend that
    /// does not notice ABOR while it reads (vsftpd without `async_abor_enable`)
    /// gets the reset after [`ABORT_NOTICE_TIMEOUT`]. ABOR is preceded by Telnet
    /// IP and Synch (IAC as urgent data, then DM), as RFC 959 §4.1.3 and
    /// mod_proxy do. The backend owes two replies, the transfer's final one
    /// (426/451, or 226 if it had just finished) and ABOR's (225/226), or
    /// only a 225 when its transfer had not started (pyftpdlib).
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
        self.send_abor().await?;
        let backend = &mut self.backend;
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
        // 225 ("no transfer in progress") answers ABOR alone: nothing follows.
        if first.code != 225 {
            match backend.reply_within(ABORT_REPLY_TIMEOUT).await {
                Ok(second) => debug!(
                    transfer = first.code,
                    abor = second.code,
                    "backend aborted the transfer"
                ),
                Err(e) => {
                    debug!(transfer = first.code, error = %e, "no second reply after ABOR")
                }
            }
        }
        reset(leg);
        Ok(())
    }

    /// Telnet IP, Synch (IAC as urgent data, then DM), then ABOR.
    async fn send_abor(&mut self) -> Result<(), SessionError> {
        debug!("to backend: IAC IP, Synch, ABOR");
        self.backend.write(&[IAC, IP]).await?;
        let _ = socket2::SockRef::from(&self.backend.stream).send_out_of_band(&[IAC]);
        self.backend.write(&[DM]).await?;
        self.backend
            .send_unchecked(&Command::new(crate::ftp::command::Verb::Abor, ""))
            .await
    }
}

/// Closes a backend data connection with RST, never with a clean FIN.
fn reset(leg: Option<TcpStream>) {
    if let Some(s) = leg {
        let _ = s.set_zero_linger();
        drop(s);
    }
}
