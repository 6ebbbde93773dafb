//! The backends one edge serves, at run time: the [`Pool`] of named servers
//! with each one's health and session count, the order a session tries
//! them in ([`select`]), routing by user ([`route`]), the health checks
//! ([`health`]) and the transparent mode's original destination
//! ([`original`]). A pool belongs to one generation of the live state; a
//! reload builds a new one that keeps the health of unchanged members.

pub mod health;
pub mod original;
pub mod route;
pub mod select;

use std::io;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpStream;

use crate::config::{BackendAddr, Backends, Selection};

/// Connects to `addr` (every address its name resolves to, in order)
/// within `limit`.
pub async fn connect(addr: &BackendAddr, limit: Duration) -> io::Result<TcpStream> {
    let target = addr.to_string();
    let connect = async {
        let mut last = io::Error::new(io::ErrorKind::NotFound, "the name has no address");
        for a in tokio::net::lookup_host(&target).await? {
            match TcpStream::connect(a).await {
                Ok(s) => return Ok(s),
                Err(e) => last = e,
            }
        }
        Err(last)
    };
    tokio::time::timeout(limit, connect)
        .await
        .unwrap_or_else(|_| Err(io::Error::new(io::ErrorKind::TimedOut, "connect timed out")))
}

/// What the latest check said of a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// Not checked yet (tried like a healthy one).
    Unknown,
    /// It greeted with 220.
    Up,
    /// It did not (or a session could not connect since).
    Down,
}

/// One backend of the pool.
#[derive(Debug)]
pub struct Member {
    /// The configured name (the address for a single `backend:`).
    pub name: String,
    /// Where it listens.
    pub addr: BackendAddr,
    health: AtomicU8,
    sessions: AtomicUsize,
    last_error: Mutex<Option<String>>,
}

impl Member {
    fn new(name: String, addr: BackendAddr) -> Member {
        Member {
            name,
            addr,
            health: AtomicU8::new(0),
            sessions: AtomicUsize::new(0),
            last_error: Mutex::new(None),
        }
    }

    /// The latest check's verdict.
    pub fn health(&self) -> Health {
        match self.health.load(Ordering::Relaxed) {
            1 => Health::Up,
            2 => Health::Down,
            _ => Health::Unknown,
        }
    }

    /// Records a verdict; returns the previous one.
    pub fn set_health(&self, result: Result<(), String>) -> Health {
        let before = self.health();
        let code = if result.is_ok() { 1 } else { 2 };
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = result.err();
        self.health.store(code, Ordering::Relaxed);
        before
    }

    /// Why the latest check failed.
    pub fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Sessions connected to it now.
    pub fn sessions(&self) -> usize {
        self.sessions.load(Ordering::Relaxed)
    }
}

/// A session's hold on a member: counted while it lives.
#[derive(Debug)]
pub struct Slot(Arc<Member>);

impl Slot {
    /// Counts one more session on `member`.
    pub fn take(member: Arc<Member>) -> Slot {
        member.sessions.fetch_add(1, Ordering::Relaxed);
        Slot(member)
    }

    /// The member held.
    pub fn member(&self) -> &Member {
        &self.0
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.sessions.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The named backends of one generation of the settings.
#[derive(Debug)]
pub struct Pool {
    members: Vec<Arc<Member>>,
    selection: Selection,
    turn: AtomicUsize,
}

impl Pool {
    /// The pool `settings` names; members unchanged since `previous` (same
    /// name and address) keep their health and session count.
    pub fn new(settings: &Backends, previous: Option<&Pool>) -> Pool {
        let members = settings
            .members()
            .iter()
            .map(|m| {
                previous
                    .and_then(|p| {
                        p.members
                            .iter()
                            .find(|o| o.name == m.name && o.addr == m.address)
                    })
                    .cloned()
                    .unwrap_or_else(|| Arc::new(Member::new(m.name.clone(), m.address.clone())))
            })
            .collect();
        Pool {
            members,
            selection: settings.selection,
            turn: AtomicUsize::new(0),
        }
    }

    /// Every member, in the configured order.
    pub fn members(&self) -> &[Arc<Member>] {
        &self.members
    }

    /// The member called `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<Member>> {
        self.members.iter().find(|m| m.name == name)
    }

    /// The members in the order a new session tries them.
    pub fn candidates(&self) -> Vec<Arc<Member>> {
        let states: Vec<select::Candidate> = self
            .members
            .iter()
            .map(|m| select::Candidate {
                down: m.health() == Health::Down,
                sessions: m.sessions(),
            })
            .collect();
        let turn = self.turn.fetch_add(1, Ordering::Relaxed);
        select::order(self.selection, &states, turn)
            .into_iter()
            .map(|i| self.members[i].clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{NamedBackend, Target};

    fn settings(names: &[(&str, &str)]) -> Backends {
        let mut b = Backends::single("127.0.0.1:21".parse().unwrap());
        b.selection = Selection::RoundRobin;
        b.target = Target::Pool(
            names
                .iter()
                .map(|(n, a)| NamedBackend {
                    name: n.to_string(),
                    address: a.parse().unwrap(),
                })
                .collect(),
        );
        b
    }

    #[test]
    fn slots_count_sessions_and_a_reload_keeps_unchanged_members() {
        let old = Pool::new(
            &settings(&[("a", "10.0.0.1:21"), ("b", "10.0.0.2:21")]),
            None,
        );
        let slot = Slot::take(old.get("a").unwrap().clone());
        old.get("b").unwrap().set_health(Err("refused".into()));
        let new = Pool::new(
            &settings(&[("a", "10.0.0.1:21"), ("b", "10.0.0.9:21")]),
            Some(&old),
        );
        assert_eq!(new.get("a").unwrap().sessions(), 1);
        assert_eq!(
            new.get("b").unwrap().health(),
            Health::Unknown,
            "moved: checked anew"
        );
        drop(slot);
        assert_eq!(new.get("a").unwrap().sessions(), 0);
    }

    #[test]
    fn candidates_rotate_and_put_the_down_last() {
        let pool = Pool::new(
            &settings(&[("a", "10.0.0.1:21"), ("b", "10.0.0.2:21")]),
            None,
        );
        let names = |p: &Pool| {
            p.candidates()
                .iter()
                .map(|m| m.name.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(names(&pool), ["a", "b"]);
        assert_eq!(names(&pool), ["b", "a"]);
        pool.get("b").unwrap().set_health(Err("down".into()));
        assert_eq!(names(&pool), ["a", "b"]);
        assert_eq!(names(&pool), ["a", "b"]);
        assert_eq!(pool.get("b").unwrap().last_error().as_deref(), Some("down"));
    }
}
