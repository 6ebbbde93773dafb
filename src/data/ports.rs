//! The client-facing passive port pool: random ports from the configured
//! range (RFC 2577 §8), each leased while its listener lives, plus the one
//! listening-socket constructor every listener uses.

use std::collections::HashSet;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use rand::Rng;
use tokio::net::{TcpListener, TcpSocket};
use tracing::debug;

use crate::config::PortRange;

/// Client-facing passive ports. Without a range the OS picks ephemeral ports.
#[derive(Debug)]
pub struct PortPool {
    range: Option<PortRange>,
    used: Mutex<HashSet<u16>>,
}

/// A port taken from the pool; it goes back when this is dropped.
#[derive(Debug)]
pub struct PortLease {
    pool: Arc<PortPool>,
    port: u16,
}

impl Drop for PortLease {
    fn drop(&mut self) {
        // The lock only guards a HashSet insert/remove; poisoning would need a panic inside it.
        if let Ok(mut used) = self.pool.used.lock() {
            used.remove(&self.port);
        }
    }
}

impl PortPool {
    /// A pool over `range` (or OS-chosen ports).
    pub fn new(range: Option<PortRange>) -> Arc<PortPool> {
        Arc::new(PortPool {
            range,
            used: Mutex::new(HashSet::new()),
        })
    }

    /// Binds a listener on `ip` at a free port from the pool, starting at a random port.
    /// Fails with `AddrInUse` when the range is exhausted.
    pub fn bind(self: &Arc<Self>, ip: IpAddr) -> io::Result<(TcpListener, Option<PortLease>)> {
        let Some(range) = self.range else {
            return Ok((listen_on(SocketAddr::new(ip, 0), 8)?, None));
        };
        let span = u32::from(range.high - range.low) + 1;
        let start = rand::thread_rng().gen_range(0..span);
        for i in 0..span {
            let port = range.low + ((start + i) % span) as u16;
            {
                let mut used = self
                    .used
                    .lock()
                    .map_err(|_| io::Error::other("port pool lock poisoned"))?;
                if !used.insert(port) {
                    continue;
                }
            }
            let lease = PortLease {
                pool: self.clone(),
                port,
            };
            match listen_on(SocketAddr::new(ip, port), 8) {
                Ok(l) => return Ok((l, Some(lease))),
                Err(e) => debug!(port, error = %e, "passive port busy"),
            }
        }
        Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            "passive port range exhausted",
        ))
    }
}

/// A listening socket with SO_REUSEADDR (so a restart does not wait for
/// TIME_WAIT) and the given accept backlog.
pub fn listen_on(addr: SocketAddr, backlog: u32) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(backlog)
}
