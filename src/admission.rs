//! Who may open a session (issue 9, "Abuse control"): the global session
//! limit, the per-address limit, and bans after repeated login failures.
//! A session holds an [`Admitted`] ticket for its whole life; dropping it
//! frees both limits. Bans expire on their own; a sweep logs each expiry.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::info;

use crate::config::Settings;

/// Why a connection was turned away at connect (421).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Turned {
    /// `max_sessions` sessions are open.
    MaxSessions,
    /// `max_sessions_per_ip` sessions are open from this address.
    MaxSessionsPerIp,
    /// The address is banned after repeated login failures.
    Banned,
}

impl Turned {
    /// The metric and log label.
    pub fn reason(self) -> &'static str {
        match self {
            Turned::MaxSessions => "max_sessions",
            Turned::MaxSessionsPerIp => "max_sessions_per_ip",
            Turned::Banned => "banned",
        }
    }

    /// The line a plaintext client gets before the connection closes.
    pub fn reply(self) -> &'static [u8] {
        match self {
            Turned::MaxSessions => b"421 Too many connections; try again later.\r\n",
            Turned::MaxSessionsPerIp => {
                b"421 Too many connections from your address; try again later.\r\n"
            }
            Turned::Banned => b"421 Too many failed logins from your address; try again later.\r\n",
        }
    }
}

/// Admission state shared by every listener.
#[derive(Debug)]
pub struct Admission {
    sessions: Arc<Semaphore>,
    max_sessions: usize,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    per_ip: HashMap<IpAddr, usize>,
    failures: HashMap<IpAddr, VecDeque<Instant>>,
    bans: HashMap<IpAddr, Instant>,
}

/// A session's place; dropping it frees the global and the per-address slot.
#[derive(Debug)]
pub struct Admitted {
    admission: Arc<Admission>,
    ip: IpAddr,
    _permit: OwnedSemaphorePermit,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.admission.with(|s| {
            if let Some(n) = s.per_ip.get_mut(&self.ip) {
                *n -= 1;
                if *n == 0 {
                    s.per_ip.remove(&self.ip);
                }
            }
        });
    }
}

impl Admission {
    /// Admission with `max_sessions` places in all.
    pub fn new(max_sessions: usize) -> Arc<Admission> {
        Arc::new(Admission {
            sessions: Arc::new(Semaphore::new(max_sessions)),
            max_sessions,
            state: Mutex::new(State::default()),
        })
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        // The lock guards plain map updates; a poisoned map is still consistent.
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut state)
    }

    /// Admits a connection from `ip` under `settings`' limits, or says why not.
    pub fn admit(self: &Arc<Self>, ip: IpAddr, settings: &Settings) -> Result<Admitted, Turned> {
        let now = Instant::now();
        let permit = self.with(|s| {
            if s.bans.get(&ip).is_some_and(|&until| until > now) {
                return Err(Turned::Banned);
            }
            let open = s.per_ip.get(&ip).copied().unwrap_or(0);
            if settings.max_sessions_per_ip > 0 && open >= settings.max_sessions_per_ip {
                return Err(Turned::MaxSessionsPerIp);
            }
            let permit = self
                .sessions
                .clone()
                .try_acquire_owned()
                .map_err(|_| Turned::MaxSessions)?;
            *s.per_ip.entry(ip).or_insert(0) += 1;
            Ok(permit)
        })?;
        Ok(Admitted {
            admission: self.clone(),
            ip,
            _permit: permit,
        })
    }

    /// Counts a failed login from `ip`; returns when its ban ends if this
    /// failure reaches `ban_failures` within `ban_window`.
    pub fn login_failed(&self, ip: IpAddr, settings: &Settings) -> Option<SystemTime> {
        if settings.ban_failures == 0 {
            return None;
        }
        let now = Instant::now();
        let limit = settings.ban_failures as usize;
        self.with(|s| {
            let recent = s.failures.entry(ip).or_default();
            recent.retain(|&t| now.duration_since(t) < settings.ban_window);
            recent.push_back(now);
            if recent.len() < limit {
                return None;
            }
            s.failures.remove(&ip);
            s.bans.insert(ip, now + settings.ban_duration);
            Some(SystemTime::now() + settings.ban_duration)
        })
    }

    /// Sessions open now.
    pub fn sessions_open(&self) -> usize {
        self.max_sessions - self.sessions.available_permits()
    }

    /// Addresses banned now.
    pub fn bans_active(&self) -> usize {
        let now = Instant::now();
        self.with(|s| s.bans.values().filter(|&&until| until > now).count())
    }

    /// Forgets expired bans (logging each) and stale failure counts.
    pub fn sweep(&self, window: Duration) {
        let now = Instant::now();
        let expired: Vec<IpAddr> = self.with(|s| {
            let expired = s
                .bans
                .iter()
                .filter(|(_, &until)| until <= now)
                .map(|(ip, _)| *ip)
                .collect::<Vec<_>>();
            for ip in &expired {
                s.bans.remove(ip);
            }
            s.failures.retain(|_, recent| {
                recent
                    .back()
                    .is_some_and(|&t| now.duration_since(t) < window)
            });
            expired
        });
        for ip in expired {
            info!(client = %ip, "ban expired");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(f: impl FnOnce(&mut Settings)) -> Settings {
        let mut s = Settings::new(
            vec!["127.0.0.1:21".parse().unwrap()],
            "127.0.0.1:2121".parse().unwrap(),
        );
        f(&mut s);
        s
    }

    #[test]
    fn per_address_and_global_limits() {
        let s = settings(|s| s.max_sessions_per_ip = 2);
        let a = Admission::new(3);
        let (x, y): (IpAddr, IpAddr) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        let one = a.admit(x, &s).unwrap();
        let _two = a.admit(x, &s).unwrap();
        assert_eq!(a.admit(x, &s).unwrap_err(), Turned::MaxSessionsPerIp);
        let _three = a.admit(y, &s).unwrap();
        assert_eq!(a.admit(y, &s).unwrap_err(), Turned::MaxSessions);
        drop(one);
        assert_eq!(a.sessions_open(), 2);
        assert!(a.admit(x, &s).is_ok());
    }

    #[test]
    fn failures_within_the_window_ban_and_bans_expire() {
        let s = settings(|s| {
            s.ban_failures = 3;
            s.ban_duration = Duration::from_millis(50);
        });
        let a = Admission::new(10);
        let ip: IpAddr = "192.0.2.9".parse().unwrap();
        assert!(a.login_failed(ip, &s).is_none());
        assert!(a.login_failed(ip, &s).is_none());
        assert!(a.login_failed(ip, &s).is_some());
        assert_eq!(a.admit(ip, &s).unwrap_err(), Turned::Banned);
        assert_eq!(a.bans_active(), 1);
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(a.bans_active(), 0);
        assert!(a.admit(ip, &s).is_ok());
        a.sweep(s.ban_window);
        let off = settings(|s| s.ban_failures = 0);
        for _ in 0..10 {
            assert!(a.login_failed(ip, &off).is_none());
        }
    }
}
