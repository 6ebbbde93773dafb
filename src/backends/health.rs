//! Health checks: every `backend_health_interval` each backend of the pool
//! in force is connected to and must greet with 220 within
//! [`CHECK_TIMEOUT`] (a server that accepts TCP but hangs is down too); the
//! check then says QUIT. Only changes are logged (down at WARN with the
//! reason, up again at INFO), so a dead backend is one line, not one per
//! check. A session that cannot connect marks its backend down at once
//! (`Member::set_health`), and the next check can bring it back.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::{Health, Member};
use crate::config::BackendProxyProtocol;
use crate::ftp::reply::ReplyParser;
use crate::live::LiveState;
use crate::proxy_protocol::encode_local;

/// Time for one check: connect and the greeting.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(3);
/// The greeting may be this large (a long banner), no larger.
const GREETING_CAP: usize = 16 * 1024;

/// Checks the pool in force, round after round, until `stop`. A single
/// backend is checked only when `single` is set (the metrics endpoint's
/// `/readyz` needs it); there is nothing to fail over to otherwise, and a
/// legacy server need not log a check every few seconds.
pub async fn run(live: Arc<LiveState>, single: bool, stop: CancellationToken) {
    loop {
        let state = live.snapshot();
        let members = state.pool.members();
        let mut checks = JoinSet::new();
        if members.len() > 1 || single {
            let proxy = state.settings.backend_proxy_protocol;
            for member in members {
                checks.spawn(check_and_record(member.clone(), proxy));
            }
        }
        while checks.join_next().await.is_some() {}
        tokio::select! {
            _ = tokio::time::sleep(state.settings.backends.health_interval) => {}
            _ = stop.cancelled() => return,
        }
    }
}

/// Checks one member and logs a change of its health.
async fn check_and_record(member: Arc<Member>, proxy: BackendProxyProtocol) {
    let result = check(&member, proxy).await;
    note(&member, result);
}

/// Records `result` for `member`, logging only a change.
pub fn note(member: &Member, result: Result<(), String>) {
    let error = result.as_ref().err().cloned();
    let before = member.set_health(result);
    match (before, error) {
        (Health::Up | Health::Unknown, Some(error)) => {
            warn!(backend = %member.name, addr = %member.addr, %error, "backend down")
        }
        (Health::Down, None) => {
            info!(backend = %member.name, addr = %member.addr, "backend up again")
        }
        _ => {}
    }
}

/// Connects (with a PROXY `LOCAL` header when the backend expects headers),
/// reads the greeting (220 is healthy), says QUIT.
pub async fn check(member: &Member, proxy: BackendProxyProtocol) -> Result<(), String> {
    let greeted = async {
        let mut tcp = super::connect(&member.addr, CHECK_TIMEOUT)
            .await
            .map_err(|e| e.to_string())?;
        if let Some(header) = encode_local(proxy).map_err(|e| e.to_string())? {
            tcp.write_all(&header).await.map_err(|e| e.to_string())?;
        }
        let mut parser = ReplyParser::with_max_bytes(GREETING_CAP);
        let mut buf = [0u8; 2048];
        loop {
            if let Some(reply) = parser.next_reply().map_err(|e| e.to_string())? {
                match reply.code {
                    100..=199 => continue,
                    220 => break,
                    code => return Err(format!("greeted with {code} {}", reply.text())),
                }
            }
            match tcp.read(&mut buf).await {
                Ok(0) => return Err("closed before greeting".to_string()),
                Ok(n) => parser.push(&buf[..n]),
                Err(e) => return Err(e.to_string()),
            }
        }
        let _ = tcp.write_all(b"QUIT\r\n").await;
        Ok(())
    };
    tokio::time::timeout(CHECK_TIMEOUT, greeted)
        .await
        .unwrap_or_else(|_| Err(format!("no greeting within {CHECK_TIMEOUT:?}")))
}
