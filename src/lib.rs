//! ftpsgate: an FTPS edge in front of a legacy plaintext FTP server.
//!
//! Clients speak FTPS (explicit `AUTH TLS`, RFC 4217, or implicit) to
//! ftpsgate; ftpsgate terminates TLS, speaks plain FTP to the unchanged
//! backend, rewrites PASV/EPSV/PORT/EPRT so every data connection flows
//! through it, protects the client side of every data connection with TLS,
//! and enforces policy at the edge (no login before TLS, PROT P required,
//! CCC denied).
//!
//! ```text
//!  FTPS client ══TLS══▶ listener ─▶ session::driver ──plain──▶ legacy FTP server
//!                                    │  ▲                         (backend)
//!                            Command │  │ Action
//!                                    ▼  │
//!                               session (pure) ── ftp::{line,command,reply,addr}
//!  data: client ══TLS══▶ data::broker ─▶ data::relay ──plain──▶ backend data port
//! ```
//!
//! Glossary: *client* = the FTPS client; *backend* = the plaintext server;
//! *control* = the command connection; *data* = a per-transfer connection;
//! *passive* = the server side listens (PASV/EPSV); *active* = the client
//! side listens (PORT/EPRT). The client leg and backend leg of each data
//! transfer are chosen independently.
//!
//! Module map: [`cli`] flags, [`config`] YAML + flags → [`config::Settings`],
//! [`live`] the swappable running state, [`tls`] certificates, rustls
//! configs and session-reuse binding, [`ftp`] the sans-IO protocol
//! vocabulary and rewriting rules, [`session`] the pure state machine, its
//! policy and its async driver, [`data`] data connections and transfers,
//! [`events`] the session event stream, [`listener`] accept loops and
//! shutdown, [`error`] errors → replies, [`stream`] plain-or-TLS streams.
//! ARCHITECTURE.md draws one session and one transfer through them.

pub mod admission;
pub mod backends;
pub mod cli;
pub mod config;
pub mod data;
pub mod error;
pub mod events;
pub mod ftp;
pub mod listener;
pub mod live;
pub mod logging;
pub mod metrics;
pub mod proxy_protocol;
pub mod reload;
pub mod session;
pub mod stream;
pub mod systemd;
pub mod tls;
pub mod transfer_log;

pub use config::Settings;
pub use listener::{Server, Status};
pub use session::Mode;
