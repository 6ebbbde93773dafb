//! One transfer as a value (STYLE.md 2.14): a [`DataSetup`] (where each leg
//! comes from) plus a [`Plan`] (direction, protection, limits) become a
//! running [`Transfer`] that connects both legs, checks the client leg's
//! protection and session binding, runs the relay, and hands back one
//! [`TransferOutcome`]. The control loop awaits it alongside ABOR and the
//! backend's replies and never touches a data socket itself.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_util::sync::{CancellationToken, DropGuard};
use tracing::Instrument;

use super::connect::{self, ClientLeg, DataTls, PassiveAccept};
use super::relay;
use super::DataError;
use crate::config::{Requirement, Reuse};
use crate::events::{DataMode, Direction, TlsDetails};
use crate::session::policy::{self, Verdict};
use crate::session::Refusal;

/// Where the client side of the next transfer comes from.
#[derive(Debug)]
pub enum ClientData {
    /// PASV/EPSV: a listener is already accepting.
    Passive(PassiveAccept),
    /// PORT/EPRT: connect to the client here.
    Active(SocketAddr),
}

/// Where the backend side of the next transfer comes from.
#[derive(Debug)]
pub enum BackendLeg {
    /// The backend listens here (it answered PASV/EPSV).
    Passive(SocketAddr),
    /// ftpsgate listens here (the backend accepted PORT/EPRT).
    Active(TcpListener),
}

/// A prepared data path: both legs known, neither necessarily connected.
#[derive(Debug)]
pub struct DataSetup {
    /// The client side.
    pub client: ClientData,
    /// The backend side.
    pub backend: BackendLeg,
    /// The client leg must resume a bound TLS session whatever the settings
    /// (its peer address could not be checked).
    pub binding_required: bool,
}

impl DataSetup {
    /// Passive or active on the client side.
    pub fn mode(&self) -> DataMode {
        match self.client {
            ClientData::Passive(_) => DataMode::Passive,
            ClientData::Active(_) => DataMode::Active,
        }
    }
}

/// Everything a transfer needs besides its set-up.
#[derive(Clone)]
pub struct Plan {
    /// Download or upload.
    pub direction: Direction,
    /// TLS on the client leg (PROT P).
    pub protect: bool,
    /// Whether a protected client leg must resume the control session.
    pub reuse: Reuse,
    /// `client_cert`: whether a client certificate mismatch is refused or audited.
    pub client_cert: Requirement,
    /// The client leg's peer address was not checked: it must be protected
    /// and resume the control session whatever the settings.
    pub peer_unchecked: bool,
    /// How long the client has to open its data connection.
    pub data_timeout: Duration,
    /// Stall timeout, bandwidth caps, upload size and EOF rules.
    pub limits: relay::Limits,
    /// Source address for active connects to the client.
    pub client_facing_ip: IpAddr,
    /// Source address for connects to the backend (its control connection's).
    pub backend_facing_ip: IpAddr,
    /// The backend's address: the only peer accepted on an active backend leg.
    pub backend_ip: IpAddr,
    /// The data TLS acceptor and the control session's binding.
    pub tls: DataTls,
    /// The control connection's client certificate (leaf, DER), if any.
    pub control_cert: Option<Vec<u8>>,
}

/// The backend leg once it can be used: connected (backend passive, done
/// before the transfer command, as a plain client would) or listening.
#[derive(Debug)]
pub enum BackendReady {
    /// Connected to the backend's passive port.
    Connected(TcpStream),
    /// Waiting for the backend to connect.
    Listening(TcpListener),
}

/// What one transfer did: the relay's outcome plus the client leg's TLS.
#[derive(Debug)]
pub struct TransferOutcome {
    /// Bytes, result, and the backend leg handed back on failure.
    pub relay: relay::Outcome,
    /// The client leg's TLS, when PROT P.
    pub tls: Option<TlsDetails>,
    /// What audit mode let through on the client leg ("would refuse").
    pub audits: Vec<Refusal>,
}

impl TransferOutcome {
    /// A transfer that failed before any byte moved; `backend` is kept for the abort.
    pub fn failed(error: DataError, backend: Option<TcpStream>) -> TransferOutcome {
        TransferOutcome {
            relay: relay::Outcome {
                bytes: 0,
                result: Err(error),
                backend,
                lenient_eof: false,
            },
            tls: None,
            audits: Vec::new(),
        }
    }
}

/// Connects a passive backend leg; an active one is returned listening.
pub async fn prepare_backend(leg: BackendLeg, from: IpAddr) -> Result<BackendReady, DataError> {
    match leg {
        BackendLeg::Passive(a) => connect::connect_from(from, a)
            .await
            .map(BackendReady::Connected)
            .map_err(|e| {
                tracing::warn!(error = %e, "backend data connect failed");
                DataError::BackendConnect
            }),
        BackendLeg::Active(l) => Ok(BackendReady::Listening(l)),
    }
}

/// A running transfer.
pub struct Transfer {
    handle: JoinHandle<TransferOutcome>,
    cancel: CancellationToken,
    confirm: Option<oneshot::Sender<bool>>,
    direction: Direction,
    done: bool,
    _stop: DropGuard,
}

impl Transfer {
    /// Starts the transfer on its own task (in the caller's tracing span).
    pub fn start(client: ClientData, backend: BackendReady, plan: Plan) -> Transfer {
        let cancel = CancellationToken::new();
        let direction = plan.direction;
        let (confirm, confirmed) = oneshot::channel();
        let handle =
            tokio::spawn(run(client, backend, plan, cancel.clone(), confirmed).in_current_span());
        Transfer {
            handle,
            _stop: cancel.clone().drop_guard(),
            cancel,
            confirm: Some(confirm),
            direction,
            done: false,
        }
    }

    /// Download or upload.
    pub fn direction(&self) -> Direction {
        self.direction
    }

    /// Stops the transfer (ABOR, the backend gave up, the session ends).
    pub fn cancel(&self) {
        self.cancel.cancel();
    }

    /// The backend's final reply arrived: a download's client leg gets its
    /// close_notify only once the backend confirmed the file (`ok`).
    pub fn confirm(&mut self, ok: bool) {
        if let Some(c) = self.confirm.take() {
            let _ = c.send(ok);
        }
    }

    /// True once [`Transfer::outcome`] has returned.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// The outcome; cancel-safe, call until it returns once.
    pub async fn outcome(&mut self) -> TransferOutcome {
        let outcome = (&mut self.handle)
            .await
            .unwrap_or_else(|_| TransferOutcome::failed(DataError::Aborted, None));
        self.done = true;
        outcome
    }
}

async fn run(
    client: ClientData,
    backend: BackendReady,
    plan: Plan,
    cancel: CancellationToken,
    confirmed: oneshot::Receiver<bool>,
) -> TransferOutcome {
    let backend = match backend {
        BackendReady::Connected(s) => Ok(s),
        BackendReady::Listening(l) => tokio::select! {
            r = tokio::time::timeout(plan.data_timeout, connect::accept_from(&l, Some(plan.backend_ip))) => {
                r.map_err(|_| DataError::BackendConnect)
                    .and_then(|r| r.map_err(|_| DataError::BackendConnect))
            }
            _ = cancel.cancelled() => Err(DataError::Aborted),
        },
    };
    // ABOR (or the session ending) while waiting for the client's connection.
    let leg = tokio::select! {
        leg = async {
            let leg = client_leg(client, &plan).await?;
            let audits = check_leg(&leg, &plan).await?;
            Ok::<_, DataError>((leg, audits))
        } => leg,
        _ = cancel.cancelled() => Err(DataError::Aborted),
    };
    // A connected backend leg is handed back unclosed on failure: a clean
    // close would tell the backend an upload is complete.
    let ((leg, audits), backend) = match (leg, backend) {
        (Ok(leg), Ok(backend)) => (leg, backend),
        (Err(e), backend) => return TransferOutcome::failed(e, backend.ok()),
        (Ok(_), Err(e)) => return TransferOutcome::failed(e, None),
    };
    let upload = plan.direction == Direction::Upload;
    let confirmed = (!upload).then_some(confirmed);
    let tls = leg.tls.clone();
    let out = relay::relay(leg.stream, backend, upload, &plan.limits, cancel, confirmed).await;
    TransferOutcome {
        relay: out,
        tls,
        audits,
    }
}

async fn client_leg(client: ClientData, plan: &Plan) -> Result<ClientLeg, DataError> {
    match client {
        ClientData::Passive(accept) => accept.wait(plan.data_timeout).await,
        ClientData::Active(target) => {
            match connect::connect_from(plan.client_facing_ip, target).await {
                Ok(tcp) => {
                    let download = plan.direction == Direction::Download;
                    connect::secure(tcp, plan.protect, download, &plan.tls).await
                }
                Err(_) => Err(DataError::ClientConnect),
            }
        }
    }
}

/// How long a data connection waits for the sibling control session whose
/// TLS session it resumed to finish logging in (parallel control connections
/// of one client log in at the same moment; see `tls::reuse`).
const SIBLING_LOGIN_WAIT: Duration = Duration::from_secs(2);

/// The client leg must match the PROT level and, when protected, the
/// control session: its reuse binding when required, and its client
/// certificate (PROTOCOL.md §5.3, §10.2, §15). Returns what audit mode let
/// through.
async fn check_leg(leg: &ClientLeg, plan: &Plan) -> Result<Vec<Refusal>, DataError> {
    if leg.tls.is_some() != plan.protect {
        return Err(DataError::ProtMismatch);
    }
    if !plan.protect && !plan.peer_unchecked {
        return Ok(Vec::new());
    }
    let bound = match leg.resumed_from {
        Some(token) => {
            plan.tls
                .binding
                .accepts_within(token, SIBLING_LOGIN_WAIT)
                .await
        }
        None => false,
    };
    // An unchecked peer must be bound whatever the settings.
    let reuse = if plan.peer_unchecked {
        Reuse::Required
    } else {
        plan.reuse
    };
    let mut audits = Vec::new();
    for verdict in [
        policy::data_session(reuse, bound),
        policy::data_client_cert(
            plan.client_cert,
            plan.control_cert.as_deref(),
            leg.client_cert.as_deref(),
        ),
    ] {
        match verdict {
            Verdict::Allow => {}
            Verdict::Refuse(r) => return Err(DataError::Policy(r)),
            Verdict::Audit(r) => audits.push(r),
        }
    }
    Ok(audits)
}
