//! Data set-up for PASV/EPSV/PORT/EPRT: the backend side first (so REST
//! stays adjacent to RETR/STOR, PROTOCOL.md §6.3), then the client side: a
//! passive listener from the pool or the client's checked PORT/EPRT target.
//! The result goes to the session as its prepared [`DataSetup`].

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use tracing::warn;

use super::Driver;
use crate::config::BackendData;
use crate::data::connect::{Balancer, DataTls, Expected, PassiveAccept};
use crate::data::ports::listen_on;
use crate::data::transfer::{BackendLeg, ClientData, DataSetup};
use crate::data::DataError;
use crate::error::{Failure, SessionError};
use crate::ftp::rewrite::{self, BackendPassive};

impl Driver<'_> {
    /// PASV/EPSV: a backend leg, then a passive port for the client (227/229).
    pub(super) async fn passive(&mut self, extended: bool) -> Result<(), SessionError> {
        let Some(backend) = self.backend_leg().await? else {
            return Ok(());
        };
        // PASV on an IPv6 control connection (possible with an IPv4 public
        // address): the client comes back over IPv4 from an address the
        // control peer cannot vouch for, so any IPv4 peer may connect and the
        // transfer must prove itself with the TLS session binding instead.
        let cross_family = !extended && self.front.ctx.local.is_ipv6();
        let (bind_ip, peer) = if cross_family {
            (IpAddr::V4(Ipv4Addr::UNSPECIFIED), None)
        } else {
            (
                self.front.ctx.local.ip(),
                Some(self.front.ctx.info.client.ip()),
            )
        };
        let (listener, lease) = match self.front.ctx.pool.bind(bind_ip) {
            Ok(x) => x,
            Err(e) => {
                warn!(error = %e, "no passive port");
                return self
                    .fail(Failure::Transfer(&DataError::NoPassivePort))
                    .await;
            }
        };
        let port = listener
            .local_addr()
            .map_err(SessionError::InternalIo)?
            .port();
        let accept = PassiveAccept::spawn(
            listener,
            lease,
            Expected {
                peer,
                balancer: self.balancer(),
            },
            self.data_state.subscribe(),
            self.data_tls(),
        );
        self.front.session.set_data(DataSetup {
            client: ClientData::Passive(accept),
            backend,
            binding_required: cross_family,
        });
        let ctx = &self.front.ctx;
        let s = &ctx.live.settings;
        let configured = ctx.configured_address();
        let advertised = rewrite::advertised_v4(configured, ctx.seen_as.ip());
        let port = rewrite::advertised_port(port, s.passive_ports, s.public_passive_ports);
        self.front
            .client
            .send(&rewrite::passive_reply(extended, advertised, port))
            .await
    }

    /// The session's balancer and how long its header may take on a data connection.
    fn balancer(&self) -> Option<Balancer> {
        let ctx = &self.front.ctx;
        ctx.balancer.clone().map(|trust| Balancer {
            trust,
            limit: ctx.live.settings.proxy_protocol_timeout,
        })
    }

    /// PORT/EPRT (target already checked by the session): a backend leg, then 200.
    pub(super) async fn active(&mut self, target: SocketAddr) -> Result<(), SessionError> {
        let Some(backend) = self.backend_leg().await? else {
            return Ok(());
        };
        self.front.session.set_data(DataSetup {
            client: ClientData::Active(target),
            backend,
            binding_required: false,
        });
        self.reply(200, "Active data connection target accepted.")
            .await
    }

    /// The data TLS acceptor and this session's reuse binding.
    pub(super) fn data_tls(&self) -> DataTls {
        let live = &self.front.ctx.live;
        DataTls {
            config: live.tls.data.clone(),
            ticketed: live
                .settings
                .require_session_reuse
                .is_checked()
                .then(|| live.tls.data_ticketed.clone()),
            binding: self.front.binding.clone(),
        }
    }

    /// Prepares the backend side of a data connection. When the backend
    /// refuses, its reply is relayed (or 425 sent) and the result is `None`.
    async fn backend_leg(&mut self) -> Result<Option<BackendLeg>, SessionError> {
        match self.front.ctx.live.settings.backend_data {
            BackendData::Passive => {
                let cmd = rewrite::backend_passive_command(self.backend.peer);
                self.backend.send(&cmd).await?;
                let r = self.backend.reply().await?;
                match rewrite::backend_passive(&r, self.backend.peer) {
                    BackendPassive::Connect(a) => Ok(Some(BackendLeg::Passive(a))),
                    BackendPassive::Refused => self.relay(r).await.map(|()| None),
                    BackendPassive::Unusable => {
                        warn!(reply = %r.text(), "unusable backend passive reply");
                        let e = DataError::BackendPassiveReply;
                        self.fail(Failure::Transfer(&e)).await.map(|()| None)
                    }
                }
            }
            BackendData::Active => {
                let listener = match listen_on(SocketAddr::new(self.backend.local.ip(), 0), 8) {
                    Ok(l) => l,
                    Err(e) => {
                        warn!(error = %e, "cannot listen for backend data");
                        let e = DataError::BackendConnect;
                        return self.fail(Failure::Transfer(&e)).await.map(|()| None);
                    }
                };
                let laddr = listener.local_addr().map_err(SessionError::InternalIo)?;
                self.backend
                    .send(&rewrite::backend_active_command(laddr))
                    .await?;
                let r = self.backend.reply().await?;
                if !r.is_success() {
                    return self.relay(r).await.map(|()| None);
                }
                Ok(Some(BackendLeg::Active(listener)))
            }
        }
    }
}
