//! TLS session reuse between the control connection and its data
//! connections (RFC 4217 §10.2, PROTOCOL.md §5.3): the session-ID cache and
//! ticketer both configurations share, and the check that a data handshake
//! resumed *this* control session.
//!
//! Binding: every control handshake attaches a random per-session token as
//! its resumption data. TLS 1.3 reports a resumed session's data directly;
//! TLS 1.2 does not, so the cache and the ticketer are wrapped to record the
//! session state they hand back during a data handshake, and the caller
//! checks that state carries the token.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::sync::Arc;

use rustls::server::{ProducesTickets, ServerSessionMemoryCache, StoresServerSessions};
use rustls::ServerConnection;

/// Session-ID cache entries shared by control and data connections.
const SESSION_CACHE_SIZE: usize = 16 * 1024;

/// The stores that make resumption work; they outlive configuration reloads.
#[derive(Debug, Clone)]
pub struct Stores {
    /// TLS 1.2 session IDs.
    pub sessions: Arc<dyn StoresServerSessions>,
    /// TLS 1.2 and 1.3 tickets.
    pub ticketer: Arc<dyn ProducesTickets>,
}

impl Stores {
    /// A fresh cache and ticketer (with a random key).
    pub fn new() -> Result<Stores, rustls::Error> {
        Ok(Stores {
            sessions: Arc::new(ObservedStore(ServerSessionMemoryCache::new(
                SESSION_CACHE_SIZE,
            ))),
            ticketer: Arc::new(ObservedTicketer(rustls::crypto::aws_lc_rs::Ticketer::new()?)),
        })
    }
}

/// True when a completed data handshake resumed the control session that
/// carries `token`. `observed` is what [`observe_resumption`] saw.
pub fn resumed_this_session(
    conn: &ServerConnection,
    observed: Option<&[u8]>,
    token: &[u8],
) -> bool {
    if !matches!(conn.handshake_kind(), Some(rustls::HandshakeKind::Resumed)) {
        return false;
    }
    match conn.received_resumption_data() {
        // TLS 1.3 reports the resumed session's application data directly.
        Some(data) => data == token,
        // TLS 1.2 does not: check the session state the handshake resumed from.
        None => observed.is_some_and(|state| session_carries(state, token)),
    }
}

thread_local! {
    /// While a data handshake is being polled on this thread: the encoded
    /// session state rustls looked up to resume (see [`observe_resumption`]).
    static OBSERVED: RefCell<Option<Vec<u8>>> = const { RefCell::new(None) };
    static OBSERVING: Cell<bool> = const { Cell::new(false) };
}

fn observed(value: &Option<Vec<u8>>) {
    if OBSERVING.with(Cell::get) {
        OBSERVED.with(|o| *o.borrow_mut() = value.clone());
    }
}

#[derive(Debug)]
struct ObservedStore(Arc<dyn StoresServerSessions>);

impl StoresServerSessions for ObservedStore {
    fn put(&self, key: Vec<u8>, value: Vec<u8>) -> bool {
        self.0.put(key, value)
    }
    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        let v = self.0.get(key);
        observed(&v);
        v
    }
    fn take(&self, key: &[u8]) -> Option<Vec<u8>> {
        let v = self.0.take(key);
        observed(&v);
        v
    }
    fn can_cache(&self) -> bool {
        self.0.can_cache()
    }
}

#[derive(Debug)]
struct ObservedTicketer(Arc<dyn ProducesTickets>);

impl ProducesTickets for ObservedTicketer {
    fn enabled(&self) -> bool {
        self.0.enabled()
    }
    fn lifetime(&self) -> u32 {
        self.0.lifetime()
    }
    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        self.0.encrypt(plain)
    }
    fn decrypt(&self, cipher: &[u8]) -> Option<Vec<u8>> {
        let v = self.0.decrypt(cipher);
        observed(&v);
        v
    }
}

/// Polls `handshake` with resumption observation on and returns its output
/// plus the session state the handshake resumed from, if any.
pub async fn observe_resumption<F: Future>(handshake: F) -> (F::Output, Option<Vec<u8>>) {
    let mut handshake = std::pin::pin!(handshake);
    let mut seen = None;
    let out = std::future::poll_fn(|cx| {
        OBSERVING.with(|o| o.set(true));
        let r = handshake.as_mut().poll(cx);
        OBSERVING.with(|o| o.set(false));
        if let Some(v) = OBSERVED.with(|o| o.borrow_mut().take()) {
            seen = Some(v);
        }
        r
    })
    .await;
    (out, seen)
}

/// True when an encoded session state carries `token` as its application data.
pub fn session_carries(state: &[u8], token: &[u8]) -> bool {
    !token.is_empty() && state.windows(token.len()).any(|w| w == token)
}
