//! The client-facing passive port pool: random ports from the configured
//! range (RFC 2577 §8), each leased while its listener lives, plus the one
//! listening-socket constructor every listener uses.

use std::collections::HashSet;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
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
    /// Passive listeners alive now (with or without a range).
    leased: AtomicUsize,
}

/// A passive port in use; it goes back to the pool when this is dropped.
#[derive(Debug)]
pub struct PortLease {
    pool: Arc<PortPool>,
    /// The port, when it came from the configured range.
    port: Option<u16>,
}

impl Drop for PortLease {
    fn drop(&mut self) {
        self.pool.leased.fetch_sub(1, Ordering::Relaxed);
        if let Some(port) = self.port {
            // The lock only guards a HashSet insert/remove; a poisoned set is still consistent.
            let mut used = self.pool.used.lock().unwrap_or_else(|p| p.into_inner());
            used.remove(&port);
        }
    }
}

impl PortPool {
    /// A pool over `range` (or OS-chosen ports).
    pub fn new(range: Option<PortRange>) -> Arc<PortPool> {
        Arc::new(PortPool {
            range,
            used: Mutex::new(HashSet::new()),
            leased: AtomicUsize::new(0),
        })
    }

    /// Passive listeners alive now.
    pub fn in_use(&self) -> usize {
        self.leased.load(Ordering::Relaxed)
    }

    /// Ports of the configured range not in use (`None` without a range).
    pub fn free(&self) -> Option<usize> {
        let range = self.range?;
        let span = usize::from(range.high - range.low) + 1;
        Some(span.saturating_sub(self.in_use()))
    }

    fn lease(self: &Arc<Self>, port: Option<u16>) -> PortLease {
        self.leased.fetch_add(1, Ordering::Relaxed);
        PortLease {
            pool: self.clone(),
            port,
        }
    }

    /// Binds a listener on `ip` at a free port from the pool, starting at a random port.
    /// Fails with `AddrInUse` when the range is exhausted.
    pub fn bind(self: &Arc<Self>, ip: IpAddr) -> io::Result<(TcpListener, PortLease)> {
        let Some(range) = self.range else {
            let listener = listen_on(SocketAddr::new(ip, 0), 8)?;
            return Ok((listener, self.lease(None)));
        };
        let span = u32::from(range.high - range.low) + 1;
        let start = rand::thread_rng().gen_range(0..span);
        for i in 0..span {
            let port = range.low + ((start + i) % span) as u16;
            {
                let mut used = self.used.lock().unwrap_or_else(|p| p.into_inner());
                if !used.insert(port) {
                    continue;
                }
            }
            let lease = self.lease(Some(port));
            match listen_on(SocketAddr::new(ip, port), 8) {
                Ok(l) => return Ok((l, lease)),
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
