//! Choosing and connecting a session's backend: the original destination
//! (transparent mode), the backend its login is routed to, or the pool's
//! members in the selection policy's order, falling over to the next when
//! one cannot be reached (and marking it down for the sessions after). Each
//! attempt is reported; when none answers, the client gets 421.

use std::sync::Arc;

use super::control::BackendCtl;
use super::SessionContext;
use crate::backends::{health, Member, Slot};
use crate::config::BackendAddr;
use crate::error::SessionError;
use crate::events::SessionEvent;
use crate::proxy_protocol::Outbound;

/// The backend a session is connected to.
pub(super) struct Connected {
    pub(super) ctl: BackendCtl,
    /// Its name (the address in transparent mode).
    pub(super) name: String,
    /// The DNS name it was reached by, hidden from replies like its address.
    pub(super) host_name: Option<String>,
    /// Counts this session on the pool member while it lives.
    pub(super) slot: Option<Slot>,
}

/// One backend to try.
struct Attempt {
    name: String,
    addr: BackendAddr,
    member: Option<Arc<Member>>,
}

impl Attempt {
    fn member(m: &Arc<Member>) -> Attempt {
        Attempt {
            name: m.name.clone(),
            addr: m.addr.clone(),
            member: Some(m.clone()),
        }
    }
}

/// What to try, in order: `routed` names a pool member the login must go to.
fn attempts(ctx: &SessionContext, routed: Option<&str>) -> Vec<Attempt> {
    if let Some(dest) = ctx.destination {
        return vec![Attempt {
            name: "original-destination".into(),
            addr: dest.into(),
            member: None,
        }];
    }
    let pool = &ctx.live.pool;
    match routed {
        Some(name) => pool.get(name).map(Attempt::member).into_iter().collect(),
        None => pool.candidates().iter().map(Attempt::member).collect(),
    }
}

/// Connects to the first backend that answers.
pub(super) async fn connect(
    ctx: &mut SessionContext,
    routed: Option<&str>,
) -> Result<Connected, SessionError> {
    let max_reply = ctx.live.settings.max_reply;
    let proxy = Outbound {
        version: ctx.live.settings.backend_proxy_protocol,
        client: ctx.info.client,
    };
    let mut last = SessionError::Internal("no backend to connect to");
    for a in attempts(ctx, routed) {
        match BackendCtl::connect(&a.addr, max_reply, &proxy).await {
            Ok((ctl, elapsed)) => {
                ctx.info.backend = Some(a.name.clone());
                tracing::Span::current().record("backend", a.name.as_str());
                ctx.emit(SessionEvent::BackendConnected {
                    name: a.name.clone(),
                    backend: ctl.peer,
                    elapsed,
                });
                return Ok(Connected {
                    ctl,
                    host_name: a.addr.name().map(str::to_string),
                    name: a.name,
                    slot: a.member.map(Slot::take),
                });
            }
            Err(e) => {
                ctx.emit(SessionEvent::BackendUnreachable {
                    backend: a.name.clone(),
                    error: e.to_string(),
                });
                if let Some(m) = &a.member {
                    health::note(m, Err(e.to_string()));
                }
                last = e;
            }
        }
    }
    Err(last)
}
