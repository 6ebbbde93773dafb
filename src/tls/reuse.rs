//! TLS session reuse between a control connection and its data connections
//! (RFC 4217 §10.2, PROTOCOL.md §5.3): the session-ID cache and ticketer all
//! configurations share, the token that binds a resumable session to the
//! control session that minted it, and the rules that keep a data
//! connection from minting resumable state an attacker could use.
//!
//! **Binding.** Every control handshake embeds its session's [`Token`] as
//! rustls resumption data, so every ticket and cached session it issues
//! carries it. A data connection is *bound* when its handshake resumed a
//! session whose token [`Binding::accepts`]: its own control session's, or a
//! sibling control session's of the same authenticated user from the same
//! client address (rclone and other clients with parallel control
//! connections share one session cache; someone holding that user's
//! password at that address can open their own session anyway, so the
//! sibling rule gives an attacker nothing; see docs/session-reuse.md).
//!
//! **Minting.** Data connections never store a session (the TLS 1.2 cache
//! is read-only for them) and issue a ticket only when they are bound, and
//! only when reuse is required (then OpenSSL clients, which use a TLS 1.3
//! ticket once, need a fresh one for the next data connection). A data
//! connection that is refused can therefore never leave behind state that
//! carries the control session's binding.
//!
//! rustls reports a resumed session's application data only for TLS 1.3;
//! for TLS 1.2 the cache and the ticketer record the session state they hand
//! out while a data handshake is polled ([`observe`]).

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use rustls::server::{ProducesTickets, ServerSessionMemoryCache, StoresServerSessions};
use rustls::ServerConnection;

/// Session-ID cache entries shared by control and data connections.
const SESSION_CACHE_SIZE: usize = 16 * 1024;
/// Tokens start with this tag so one can be found inside an encoded session.
const TOKEN_TAG: &[u8; 4] = b"FGB1";
/// Tag plus 16 random bytes.
pub const TOKEN_LEN: usize = 20;

/// A control session's binding token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Token([u8; TOKEN_LEN]);

impl Token {
    fn random() -> Token {
        let mut t = [0u8; TOKEN_LEN];
        t[..4].copy_from_slice(TOKEN_TAG);
        t[4..].copy_from_slice(&rand::random::<[u8; 16]>());
        Token(t)
    }

    /// The bytes embedded as resumption data.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The token carried by resumption data or an encoded session state.
    pub fn find_in(state: &[u8]) -> Option<Token> {
        let at = state
            .windows(TOKEN_TAG.len())
            .position(|w| w == TOKEN_TAG)?;
        let bytes = state.get(at..at + TOKEN_LEN)?;
        Some(Token(bytes.try_into().ok()?))
    }
}

/// Who minted the sessions that carry a token.
#[derive(Debug, Clone)]
struct Minter {
    client: IpAddr,
    user: Option<String>,
}

/// Every live control session's token, for the sibling rule.
#[derive(Debug, Default)]
pub struct Bindings {
    live: Mutex<HashMap<Token, Minter>>,
    /// Signalled on every login, for checks waiting on a sibling.
    logins: tokio::sync::Notify,
}

/// What a binding says about a session minted under another token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Accept,
    Refuse,
    /// A sibling from the same address that has not logged in yet (parallel
    /// control connections log in at the same moment).
    Pending,
}

impl Bindings {
    /// A new registry.
    pub fn new() -> Arc<Bindings> {
        Arc::new(Bindings::default())
    }

    /// Registers a control session from `client`; dropping the binding removes it.
    pub fn register(self: &Arc<Self>, client: IpAddr) -> Binding {
        let token = Token::random();
        self.with(|live| {
            live.insert(token, Minter { client, user: None });
        });
        Binding {
            bindings: self.clone(),
            token,
        }
    }

    /// Control sessions registered now.
    pub fn len(&self) -> usize {
        self.with(|live| live.len())
    }

    /// True when none is registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn with<T>(&self, f: impl FnOnce(&mut HashMap<Token, Minter>) -> T) -> T {
        // The lock guards plain map operations; a poisoned map is still consistent.
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut live)
    }
}

/// One control session's entry in [`Bindings`].
#[derive(Debug)]
pub struct Binding {
    bindings: Arc<Bindings>,
    token: Token,
}

impl Binding {
    /// This session's token.
    pub fn token(&self) -> Token {
        self.token
    }

    /// The backend accepted `user`'s login on this session.
    pub fn logged_in(&self, user: &str) {
        self.bindings.with(|live| {
            if let Some(m) = live.get_mut(&self.token) {
                m.user = Some(user.to_string());
            }
        });
        self.bindings.logins.notify_waiters();
    }

    /// True when a session minted under `other` may carry this session's
    /// data: it is this session's, or a live sibling's of the same logged-in
    /// user from the same client address.
    pub fn accepts(&self, other: Token) -> bool {
        self.verdict(other) == Verdict::Accept
    }

    /// As [`Binding::accepts`], but a sibling from the same address that is
    /// still logging in gets up to `limit` to finish.
    pub async fn accepts_within(&self, other: Token, limit: std::time::Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let login = self.bindings.logins.notified();
            tokio::pin!(login);
            login.as_mut().enable();
            match self.verdict(other) {
                Verdict::Accept => return true,
                Verdict::Refuse => return false,
                Verdict::Pending => {}
            }
            if tokio::time::timeout_at(deadline, login).await.is_err() {
                return false;
            }
        }
    }

    fn verdict(&self, other: Token) -> Verdict {
        if other == self.token {
            return Verdict::Accept;
        }
        self.bindings
            .with(|live| match (live.get(&self.token), live.get(&other)) {
                (Some(me), Some(them)) if me.client == them.client && me.user.is_some() => {
                    match &them.user {
                        None => Verdict::Pending,
                        Some(u) if Some(u) == me.user.as_ref() => Verdict::Accept,
                        Some(_) => Verdict::Refuse,
                    }
                }
                _ => Verdict::Refuse,
            })
    }
}

impl Drop for Binding {
    fn drop(&mut self) {
        self.bindings.with(|live| live.remove(&self.token));
    }
}

/// The stores that make resumption work; they outlive configuration reloads.
#[derive(Debug, Clone)]
pub struct Stores {
    cache: Arc<ObservedCache>,
    ticketer: Arc<dyn ProducesTickets>,
}

impl Stores {
    /// A fresh cache and ticketer (with a random key).
    pub fn new() -> Result<Stores, rustls::Error> {
        Ok(Stores {
            cache: Arc::new(ObservedCache(ServerSessionMemoryCache::new(
                SESSION_CACHE_SIZE,
            ))),
            ticketer: rustls::crypto::aws_lc_rs::Ticketer::new()?,
        })
    }

    /// For control connections: the shared cache and ticketer.
    pub fn control(&self) -> (Arc<dyn StoresServerSessions>, Arc<dyn ProducesTickets>) {
        (self.cache.clone(), self.ticketer.clone())
    }

    /// For data connections: the cache read-only, tickets only when bound.
    pub fn data(&self) -> (Arc<dyn StoresServerSessions>, Arc<dyn ProducesTickets>) {
        (
            Arc::new(ReadOnlyCache(self.cache.clone())),
            Arc::new(BoundTicketer(self.ticketer.clone())),
        )
    }
}

/// The token of the session a completed data handshake resumed, if it
/// resumed one that carries a token. `observed` is what [`observe`] saw.
pub fn resumed_token(conn: &ServerConnection, observed: Option<&[u8]>) -> Option<Token> {
    if !matches!(conn.handshake_kind(), Some(rustls::HandshakeKind::Resumed)) {
        return None;
    }
    // TLS 1.3 reports the resumed session's data; TLS 1.2 only the state handed out.
    conn.received_resumption_data()
        .or(observed)
        .and_then(Token::find_in)
}

/// The data handshake being polled on this thread, if any.
struct Observation {
    binding: Arc<Binding>,
    resumed_from: Option<Vec<u8>>,
}

thread_local! {
    static CURRENT: RefCell<Option<Observation>> = const { RefCell::new(None) };
}

fn record(value: &Option<Vec<u8>>) {
    CURRENT.with(|c| {
        if let Some(o) = c.borrow_mut().as_mut() {
            o.resumed_from.clone_from(value);
        }
    });
}

fn current_is_bound() -> bool {
    CURRENT.with(|c| {
        c.borrow().as_ref().is_some_and(|o| {
            o.resumed_from
                .as_deref()
                .and_then(Token::find_in)
                .is_some_and(|t| o.binding.accepts(t))
        })
    })
}

/// Polls the data `handshake` for `binding` and returns its output plus the
/// session state it resumed from, if any. The observation lives across polls
/// (the ClientHello and the client's Finished arrive in different reads).
pub async fn observe<F: Future>(
    handshake: F,
    binding: Arc<Binding>,
) -> (F::Output, Option<Vec<u8>>) {
    let mut handshake = std::pin::pin!(handshake);
    let mut observation = Some(Observation {
        binding,
        resumed_from: None,
    });
    let out = std::future::poll_fn(|cx| {
        CURRENT.with(|c| *c.borrow_mut() = observation.take());
        let r = handshake.as_mut().poll(cx);
        observation = CURRENT.with(|c| c.borrow_mut().take());
        r
    })
    .await;
    (out, observation.and_then(|o| o.resumed_from))
}

/// The shared TLS 1.2 session-ID cache, recording what it hands out.
#[derive(Debug)]
struct ObservedCache(Arc<ServerSessionMemoryCache>);

impl StoresServerSessions for ObservedCache {
    fn put(&self, key: Vec<u8>, value: Vec<u8>) -> bool {
        self.0.put(key, value)
    }
    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        let v = self.0.get(key);
        record(&v);
        v
    }
    fn take(&self, key: &[u8]) -> Option<Vec<u8>> {
        let v = self.0.take(key);
        record(&v);
        v
    }
    fn can_cache(&self) -> bool {
        self.0.can_cache()
    }
}

/// The cache as data connections see it: they resume from it, never add to it.
#[derive(Debug)]
struct ReadOnlyCache(Arc<ObservedCache>);

impl StoresServerSessions for ReadOnlyCache {
    fn put(&self, _key: Vec<u8>, _value: Vec<u8>) -> bool {
        false
    }
    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.0.get(key)
    }
    fn take(&self, key: &[u8]) -> Option<Vec<u8>> {
        // Clients present one session for every data connection: never consume it.
        self.0.get(key)
    }
    fn can_cache(&self) -> bool {
        self.0.can_cache()
    }
}

/// The ticketer as data connections see it: it opens any ticket (recording
/// the state) but seals one only for a bound handshake.
#[derive(Debug)]
struct BoundTicketer(Arc<dyn ProducesTickets>);

impl ProducesTickets for BoundTicketer {
    fn enabled(&self) -> bool {
        self.0.enabled()
    }
    fn lifetime(&self) -> u32 {
        self.0.lifetime()
    }
    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        current_is_bound().then(|| self.0.encrypt(plain)).flatten()
    }
    fn decrypt(&self, cipher: &[u8]) -> Option<Vec<u8>> {
        let v = self.0.decrypt(cipher);
        record(&v);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_found_inside_encoded_state() {
        let t = Token::random();
        let mut state = b"\x00\x14prefix".to_vec();
        state.extend_from_slice(t.as_bytes());
        state.extend_from_slice(b"suffix");
        assert_eq!(Token::find_in(&state), Some(t));
        assert_eq!(Token::find_in(b"no token here"), None);
        assert_eq!(Token::find_in(&t.as_bytes()[..10]), None);
    }

    #[test]
    fn siblings_need_the_same_user_and_address() {
        let bindings = Bindings::new();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let me = bindings.register(a);
        let sibling = bindings.register(a);
        let other_user = bindings.register(a);
        let other_host = bindings.register(b);
        assert!(me.accepts(me.token()));
        assert!(!me.accepts(sibling.token()), "nobody logged in yet");
        me.logged_in("alice");
        assert_eq!(me.verdict(sibling.token()), Verdict::Pending);
        sibling.logged_in("alice");
        other_user.logged_in("bob");
        other_host.logged_in("alice");
        assert!(me.accepts(sibling.token()));
        assert!(!me.accepts(other_user.token()));
        assert!(!me.accepts(other_host.token()));
        let gone = sibling.token();
        drop(sibling);
        assert!(
            !me.accepts(gone),
            "an ended session's tokens are no longer accepted"
        );
        assert_eq!(bindings.len(), 3);
    }

    #[tokio::test]
    async fn a_sibling_still_logging_in_gets_a_moment() {
        let bindings = Bindings::new();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let me = bindings.register(ip);
        let sibling = Arc::new(bindings.register(ip));
        me.logged_in("alice");
        let token = sibling.token();
        let s = sibling.clone();
        let login = tokio::spawn(async move { s.logged_in("alice") });
        assert!(
            me.accepts_within(token, std::time::Duration::from_secs(5))
                .await
        );
        login.await.unwrap();
        let stranger = bindings.register(ip);
        let t = stranger.token();
        let started = std::time::Instant::now();
        assert!(
            !me.accepts_within(t, std::time::Duration::from_millis(200))
                .await
        );
        assert!(started.elapsed() >= std::time::Duration::from_millis(200));
    }
}
