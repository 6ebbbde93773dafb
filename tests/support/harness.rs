//! In-process test harness: [`Proxy`] runs ftpsgate on its own runtime on
//! 127.0.0.1:0 (ready when `spawn` returns, no sleeps), [`Client`] is a
//! small blocking FTPS client on rustls that trusts any certificate and
//! returns exact replies, and [`Scripted`] is a plaintext backend that
//! records every line it receives and answers from a script.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::Duration;

use ftpsgate::config::Settings;
use ftpsgate::events::{
    Ended, EventSink, Events, SessionEvent, SessionInfo, TracingSink, TransferRecord,
};
use ftpsgate::session::Refusal;
use ftpsgate::{Mode, Server, Status};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, SignatureScheme, StreamOwned};
use tokio_util::sync::CancellationToken;

use super::tools::PyFtpd;

/// A running in-process proxy.
pub struct Proxy {
    /// Explicit listener address.
    pub addr: SocketAddr,
    /// Implicit listener address, when configured.
    pub implicit: Option<SocketAddr>,
    /// Every session event the proxy emitted.
    pub events: Arc<Recorder>,
    /// The proxy's own view of its sessions and ports.
    pub status: Status,
    runtime: tokio::runtime::Handle,
    metrics: Option<SocketAddr>,
    stop: CancellationToken,
    thread: Option<thread::JoinHandle<()>>,
}

/// An event sink that keeps every event, for assertions; waits are bounded
/// and signalled (a condition variable), never slept.
#[derive(Default)]
pub struct Recorder {
    events: Mutex<Vec<(SessionInfo, SessionEvent)>>,
    changed: Condvar,
}

impl EventSink for Recorder {
    fn event(&self, session: &SessionInfo, event: &SessionEvent) {
        self.events
            .lock()
            .unwrap()
            .push((session.clone(), event.clone()));
        self.changed.notify_all();
    }
}

impl Recorder {
    /// Everything recorded so far.
    pub fn all(&self) -> Vec<(SessionInfo, SessionEvent)> {
        self.events.lock().unwrap().clone()
    }

    /// Waits (up to `limit`) until `done` holds for the events, and returns them.
    pub fn wait_until(
        &self,
        limit: Duration,
        done: impl Fn(&[(SessionInfo, SessionEvent)]) -> bool,
    ) -> Vec<(SessionInfo, SessionEvent)> {
        let guard = self.events.lock().unwrap();
        let (guard, _) = self
            .changed
            .wait_timeout_while(guard, limit, |evs| !done(evs))
            .unwrap();
        guard.clone()
    }

    /// Waits until `n` transfer records exist and returns them.
    pub fn transfers(&self, n: usize) -> Vec<TransferRecord> {
        let evs = self.wait_until(Duration::from_secs(30), |evs| {
            evs.iter()
                .filter(|(_, e)| matches!(e, SessionEvent::TransferFinished(_)))
                .count()
                >= n
        });
        evs.into_iter()
            .filter_map(|(_, e)| match e {
                SessionEvent::TransferFinished(r) => Some(r),
                _ => None,
            })
            .collect()
    }

    /// Waits until `n` sessions have closed and returns why each ended.
    pub fn closed(&self, n: usize, limit: Duration) -> Vec<Option<Ended>> {
        let evs = self.wait_until(limit, |evs| {
            evs.iter()
                .filter(|(_, e)| matches!(e, SessionEvent::Closed { .. }))
                .count()
                >= n
        });
        evs.into_iter()
            .filter_map(|(_, e)| match e {
                SessionEvent::Closed { error, .. } => Some(error),
                _ => None,
            })
            .collect()
    }

    /// How many sessions were opened.
    pub fn opened(&self) -> usize {
        self.all()
            .iter()
            .filter(|(_, e)| matches!(e, SessionEvent::Opened))
            .count()
    }

    /// Every policy refusal so far.
    pub fn refusals(&self) -> Vec<Refusal> {
        self.all()
            .into_iter()
            .filter_map(|(_, e)| match e {
                SessionEvent::PolicyRefused(r) => Some(r),
                _ => None,
            })
            .collect()
    }
}

impl Proxy {
    /// Starts a proxy for `backend` with `tweak` applied to default settings.
    pub fn spawn(backend: SocketAddr, tweak: impl FnOnce(&mut Settings)) -> Proxy {
        if let Ok(filter) = std::env::var("FTPSGATE_TEST_LOG") {
            // Opt-in proxy logs for debugging a test: FTPSGATE_TEST_LOG=debug cargo test ...
            let _ = tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_test_writer()
                .try_init();
        }
        let mut settings = Settings::new(vec!["127.0.0.1:0".parse().unwrap()], backend.into());
        tweak(&mut settings);
        let stop = CancellationToken::new();
        let (tx, rx) = std::sync::mpsc::channel();
        let stop2 = stop.clone();
        let events = Arc::new(Recorder::default());
        let sinks = Events::new(vec![Arc::new(TracingSink), events.clone()]);
        let thread = thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let server = Server::bind_with(settings, sinks)
                    .await
                    .expect("bind proxy");
                let handle = tokio::runtime::Handle::current();
                let bound = (server.local_addrs(), server.metrics_addr());
                tx.send((bound, server.status(), handle)).unwrap();
                server.run(stop2).await;
            });
        });
        let ((addrs, metrics), status, runtime) = rx.recv().expect("proxy started");
        let addr = addrs
            .iter()
            .find(|(m, _)| *m == Mode::Explicit)
            .map(|(_, a)| *a);
        let implicit = addrs
            .iter()
            .find(|(m, _)| *m == Mode::Implicit)
            .map(|(_, a)| *a);
        Proxy {
            addr: addr.or(implicit).unwrap(),
            implicit,
            events,
            status,
            runtime,
            metrics,
            stop,
            thread: Some(thread),
        }
    }
}

impl Proxy {
    /// Tasks alive on the proxy's runtime (listeners, sessions, transfers).
    pub fn alive_tasks(&self) -> usize {
        self.runtime.metrics().num_alive_tasks()
    }

    /// The metrics endpoint's address, when `metrics` was set.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.cancel();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[derive(Debug)]
struct AnyCert;

impl ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        rustls::crypto::aws_lc_rs::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A client TLS configuration that trusts any certificate (tests only).
pub fn client_config() -> Arc<ClientConfig> {
    any_cert_config(rustls::crypto::aws_lc_rs::default_provider())
}

/// A client configuration with `provider` that trusts any certificate.
fn any_cert_config(provider: rustls::crypto::CryptoProvider) -> Arc<ClientConfig> {
    let cfg = ClientConfig::builder_with_provider(Arc::new(provider))
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCert))
        .with_no_client_auth();
    Arc::new(cfg)
}

/// The control stream of [`Client`].
pub enum Ctl {
    /// Before AUTH TLS.
    Plain(BufReader<TcpStream>),
    /// After AUTH TLS.
    Tls(Box<BufReader<StreamOwned<ClientConnection, TcpStream>>>),
    /// Taken out for a handshake done by hand.
    Taken,
}

/// A reply as the client saw it: code and every raw line.
#[derive(Debug, Clone)]
pub struct Got {
    /// The code.
    pub code: u16,
    /// All lines, raw, without CRLF.
    pub lines: Vec<String>,
}

impl Got {
    /// The first line's text after the code.
    pub fn text(&self) -> &str {
        self.lines[0].get(4..).unwrap_or("")
    }
}

/// A blocking FTPS test client.
pub struct Client {
    /// Control stream.
    pub ctl: Ctl,
    /// TLS config (shared so data connections can resume).
    pub tls: Arc<ClientConfig>,
    /// Proxy address.
    pub addr: SocketAddr,
    /// The local address every connection is made from (`None`: the OS picks).
    pub source: Option<IpAddr>,
    /// A PROXY header written first on every connection, control and data
    /// (playing a balancer; `source` is then the balancer's address).
    pub header: Option<Vec<u8>>,
}

/// Connects to `addr` from `source` (another loopback address plays another host).
pub fn connect_from(addr: SocketAddr, source: Option<IpAddr>) -> TcpStream {
    let tcp = match source {
        None => TcpStream::connect(addr).unwrap(),
        Some(ip) => {
            let domain = socket2::Domain::for_address(addr);
            let s = socket2::Socket::new(domain, socket2::Type::STREAM, None).unwrap();
            s.bind(&SocketAddr::new(ip, 0).into()).unwrap();
            s.connect(&addr.into()).unwrap();
            s.into()
        }
    };
    tcp.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    tcp
}

impl Client {
    /// Connects and reads the greeting (explicit listener).
    pub fn connect(addr: SocketAddr) -> (Client, Got) {
        Self::connect_from(addr, None)
    }

    /// Connects from `source` and reads the greeting (explicit listener).
    pub fn connect_from(addr: SocketAddr, source: Option<IpAddr>) -> (Client, Got) {
        let tcp = connect_from(addr, source);
        let mut c = Client {
            ctl: Ctl::Plain(BufReader::new(tcp)),
            tls: client_config(),
            addr,
            source,
            header: None,
        };
        let g = c.read();
        (c, g)
    }

    /// Connects from `source` as a balancer would: `header` (a PROXY
    /// header) first on this and every data connection. Returns the greeting,
    /// or `None` when the proxy closed the connection without one.
    pub fn connect_proxied(
        addr: SocketAddr,
        source: IpAddr,
        header: &[u8],
    ) -> (Client, Option<Got>) {
        let mut tcp = connect_from(addr, Some(source));
        let _ = tcp.write_all(header);
        let mut c = Client {
            ctl: Ctl::Plain(BufReader::new(tcp)),
            tls: client_config(),
            addr,
            source: Some(source),
            header: Some(header.to_vec()),
        };
        let g = c.try_read();
        (c, g)
    }

    /// Connects to an implicit listener: TLS first, then the greeting.
    pub fn connect_implicit(addr: SocketAddr) -> (Client, Got) {
        let tcp = connect_from(addr, None);
        let tls = client_config();
        let conn =
            ClientConnection::new(tls.clone(), ServerName::try_from("localhost").unwrap()).unwrap();
        let mut c = Client {
            ctl: Ctl::Tls(Box::new(BufReader::new(StreamOwned::new(conn, tcp)))),
            tls,
            addr,
            source: None,
            header: None,
        };
        let g = c.read();
        (c, g)
    }

    /// Takes the plaintext control socket out (for a handshake done by hand).
    pub fn take_plain(&mut self) -> TcpStream {
        match std::mem::replace(&mut self.ctl, Ctl::Taken) {
            Ctl::Plain(r) => r.into_inner(),
            _ => panic!("the control connection is not plaintext"),
        }
    }

    /// Sends raw bytes on the control connection.
    pub fn send_raw(&mut self, bytes: &[u8]) {
        match &mut self.ctl {
            Ctl::Plain(r) => r.get_mut().write_all(bytes).unwrap(),
            Ctl::Tls(r) => {
                r.get_mut().write_all(bytes).unwrap();
                r.get_mut().flush().unwrap();
            }
            Ctl::Taken => panic!("control connection taken"),
        }
    }

    /// Reads one reply (multi-line aware). Panics on EOF.
    pub fn read(&mut self) -> Got {
        self.try_read().expect("reply")
    }

    /// Reads one reply; None on EOF or error.
    pub fn try_read(&mut self) -> Option<Got> {
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            let n = match &mut self.ctl {
                Ctl::Plain(r) => r.read_line(&mut line),
                Ctl::Tls(r) => r.read_line(&mut line),
                Ctl::Taken => return None,
            }
            .ok()?;
            if n == 0 {
                return None;
            }
            let line = line.trim_end_matches(['\r', '\n']).to_string();
            lines.push(line.clone());
            let first = &lines[0];
            let code: u16 = first.get(..3)?.parse().ok()?;
            if first.as_bytes().get(3) != Some(&b'-') {
                return Some(Got { code, lines });
            }
            if lines.len() > 1
                && line.starts_with(&first[..3])
                && line.as_bytes().get(3) == Some(&b' ')
            {
                return Some(Got { code, lines });
            }
        }
    }

    /// Sends a command and reads its reply.
    pub fn cmd(&mut self, line: &str) -> Got {
        self.send_raw(format!("{line}\r\n").as_bytes());
        self.read()
    }

    /// AUTH TLS and the handshake.
    pub fn auth_tls(&mut self) {
        let g = self.cmd("AUTH TLS");
        assert_eq!(g.code, 234, "{g:?}");
        let tcp = self.take_plain();
        let conn =
            ClientConnection::new(self.tls.clone(), ServerName::try_from("localhost").unwrap())
                .unwrap();
        let mut s = StreamOwned::new(conn, tcp);
        while s.conn.is_handshaking() {
            s.conn.complete_io(&mut s.sock).unwrap();
        }
        self.ctl = Ctl::Tls(Box::new(BufReader::new(s)));
    }

    /// AUTH TLS, login, PBSZ 0, PROT P.
    pub fn login_secure(&mut self, user: &str, pass: &str) {
        self.auth_tls();
        assert_eq!(self.cmd(&format!("USER {user}")).code, 331);
        assert_eq!(self.cmd(&format!("PASS {pass}")).code, 230);
        assert_eq!(self.cmd("PBSZ 0").code, 200);
        assert_eq!(self.cmd("PROT P").code, 200);
    }

    /// Connects to `addr`, expects 220, logs in securely as `b`'s user and
    /// sets TYPE I: the start of most data-path tests.
    pub fn logged_in(addr: SocketAddr, b: &PyFtpd) -> Client {
        let (mut c, g) = Client::connect(addr);
        assert_eq!(g.code, 220);
        c.login_secure(&b.user, &b.pass);
        assert_eq!(c.cmd("TYPE I").code, 200);
        c
    }

    /// EPSV and the data address it names.
    pub fn epsv(&mut self) -> SocketAddr {
        let g = self.cmd("EPSV");
        assert_eq!(g.code, 229, "{g:?}");
        let port = ftpsgate::ftp::addr::parse_epsv_reply(g.text()).unwrap();
        SocketAddr::new(self.addr.ip(), port)
    }

    /// Opens a TLS data connection to `addr` (resuming the client's session cache).
    pub fn data_tls(&self, addr: SocketAddr) -> StreamOwned<ClientConnection, TcpStream> {
        self.data_tls_with(addr, self.tls.clone())
    }

    /// Opens a TLS data connection to `addr` with `config` (its own session cache).
    pub fn data_tls_with(
        &self,
        addr: SocketAddr,
        config: Arc<ClientConfig>,
    ) -> StreamOwned<ClientConnection, TcpStream> {
        let mut tcp = connect_from(addr, self.source);
        if let Some(h) = &self.header {
            tcp.write_all(h).unwrap();
        }
        let conn =
            ClientConnection::new(config, ServerName::try_from("localhost").unwrap()).unwrap();
        let mut s = StreamOwned::new(conn, tcp);
        while s.conn.is_handshaking() {
            s.conn.complete_io(&mut s.sock).unwrap();
        }
        s
    }

    /// EPSV, send `verb_line`, open the TLS data connection and read the 1xx:
    /// the start every transfer test shares. Returns the data stream and the 1xx.
    pub fn start(&mut self, verb_line: &str) -> (StreamOwned<ClientConnection, TcpStream>, Got) {
        let data_addr = self.epsv();
        self.send_raw(format!("{verb_line}\r\n").as_bytes());
        let data = self.data_tls(data_addr);
        let prelim = self.read();
        assert_eq!(prelim.code / 100, 1, "{verb_line}: {prelim:?}");
        (data, prelim)
    }

    /// [`Client::start`] and read everything: returns (1xx reply, data, final reply).
    pub fn download(&mut self, verb_line: &str) -> (Got, Vec<u8>, Got) {
        let (mut data, prelim) = self.start(verb_line);
        let mut buf = Vec::new();
        data.read_to_end(&mut buf)
            .expect("download ends with close_notify");
        let fin = self.read();
        (prelim, buf, fin)
    }

    /// [`Client::start`], write `bytes` and close_notify: returns (1xx, final).
    pub fn upload(&mut self, verb_line: &str, bytes: &[u8]) -> (Got, Got) {
        let (mut data, prelim) = self.start(verb_line);
        data.write_all(bytes).unwrap();
        data.conn.send_close_notify();
        data.flush().unwrap();
        let mut rest = Vec::new();
        let _ = data.read_to_end(&mut rest);
        let fin = self.read();
        (prelim, fin)
    }
}

/// How a [`Scripted`] backend answers one line; `None` = default rules.
pub type Rule = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// A scripted plaintext FTP backend on 127.0.0.1:0 that records every line.
pub struct Scripted {
    /// Listening address.
    pub addr: SocketAddr,
    open: Arc<(Mutex<usize>, Condvar)>,
    seen: Arc<Mutex<Vec<String>>>,
}

impl Scripted {
    /// Starts with `greeting` (full reply text incl. CRLF) and `rule` for answers.
    /// Default answers: USER 331, PASS 230, FEAT a small 211 list, QUIT 221, else 200.
    pub fn start(greeting: &str, rule: Rule) -> Scripted {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let open = Arc::new((Mutex::new(0usize), Condvar::new()));
        let (seen2, open2) = (seen.clone(), open.clone());
        let greeting = greeting.to_string();
        thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { return };
                let seen = seen2.clone();
                let open = open2.clone();
                let rule = rule.clone();
                let greeting = greeting.clone();
                *open.0.lock().unwrap() += 1;
                open.1.notify_all();
                thread::spawn(move || {
                    let _ = serve(conn, &greeting, &rule, &seen);
                    *open.0.lock().unwrap() -= 1;
                    open.1.notify_all();
                });
            }
        });
        Scripted { addr, seen, open }
    }

    /// Waits (up to `limit`) until exactly `n` backend connections are open;
    /// false if that did not happen in time.
    pub fn wait_open(&self, n: usize, limit: Duration) -> bool {
        let (lock, cv) = &*self.open;
        let guard = lock.lock().unwrap();
        let (guard, _) = cv
            .wait_timeout_while(guard, limit, |open| *open != n)
            .unwrap();
        *guard == n
    }

    /// Every line received so far, across connections.
    pub fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }

    /// True if any received line starts with `verb` (case-insensitive).
    pub fn saw(&self, verb: &str) -> bool {
        self.seen().iter().any(|l| {
            l.to_ascii_uppercase()
                .starts_with(&verb.to_ascii_uppercase())
        })
    }
}

fn serve(
    conn: TcpStream,
    greeting: &str,
    rule: &Rule,
    seen: &Mutex<Vec<String>>,
) -> io::Result<()> {
    let mut w = conn.try_clone()?;
    w.write_all(greeting.as_bytes())?;
    let mut r = BufReader::new(conn);
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let line = line.trim_end_matches(['\r', '\n']).to_string();
        seen.lock().unwrap().push(line.clone());
        let verb = line.split(' ').next().unwrap_or("").to_ascii_uppercase();
        let answer = rule(&line).unwrap_or_else(|| match verb.as_str() {
            "USER" => "331 Password required\r\n".into(),
            "PASS" => "230 Logged in\r\n".into(),
            "FEAT" => "211-Features:\r\n MDTM\r\n SIZE\r\n211 End\r\n".into(),
            "QUIT" => "221 Bye\r\n".into(),
            _ => "200 OK\r\n".into(),
        });
        w.write_all(answer.as_bytes())?;
        if verb == "QUIT" {
            return Ok(());
        }
    }
}

/// A closed port on 127.0.0.1 (bound then dropped).
pub fn dead_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// The loopback address `127.0.0.N`.
pub fn lo(n: u8) -> IpAddr {
    IpAddr::from([127, 0, 0, n])
}

/// A client session store (rustls' memory cache) that counts the TLS 1.3
/// tickets it receives. rustls clients use each TLS 1.3 ticket once.
#[derive(Debug)]
pub struct CountingStore {
    inner: rustls::client::ClientSessionMemoryCache,
    /// TLS 1.3 tickets received so far.
    pub tickets: std::sync::atomic::AtomicUsize,
}

impl Default for CountingStore {
    fn default() -> Self {
        CountingStore {
            inner: rustls::client::ClientSessionMemoryCache::new(32),
            tickets: Default::default(),
        }
    }
}

impl rustls::client::ClientSessionStore for CountingStore {
    fn set_kx_hint(&self, n: ServerName<'static>, g: rustls::NamedGroup) {
        self.inner.set_kx_hint(n, g)
    }
    fn kx_hint(&self, n: &ServerName<'_>) -> Option<rustls::NamedGroup> {
        self.inner.kx_hint(n)
    }
    fn set_tls12_session(
        &self,
        n: ServerName<'static>,
        v: rustls::client::Tls12ClientSessionValue,
    ) {
        self.inner.set_tls12_session(n, v)
    }
    fn tls12_session(&self, n: &ServerName<'_>) -> Option<rustls::client::Tls12ClientSessionValue> {
        self.inner.tls12_session(n)
    }
    fn remove_tls12_session(&self, n: &ServerName<'static>) {
        self.inner.remove_tls12_session(n)
    }
    fn insert_tls13_ticket(
        &self,
        n: ServerName<'static>,
        v: rustls::client::Tls13ClientSessionValue,
    ) {
        self.tickets
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.insert_tls13_ticket(n, v)
    }
    fn take_tls13_ticket(
        &self,
        n: &ServerName<'static>,
    ) -> Option<rustls::client::Tls13ClientSessionValue> {
        self.inner.take_tls13_ticket(n)
    }
}

/// A client config using `store`, optionally limited to TLS 1.2.
pub fn client_config_with(store: Arc<CountingStore>, tls12_only: bool) -> Arc<ClientConfig> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let versions: &[&rustls::SupportedProtocolVersion] = if tls12_only {
        &[&rustls::version::TLS12]
    } else {
        &[&rustls::version::TLS13, &rustls::version::TLS12]
    };
    let mut cfg = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCert))
        .with_no_client_auth();
    cfg.resumption = rustls::client::Resumption::store(store);
    Arc::new(cfg)
}

/// A client config offering only `suite` (and so only its TLS version).
pub fn client_config_suite(suite: rustls::SupportedCipherSuite) -> Arc<ClientConfig> {
    any_cert_config(rustls::crypto::CryptoProvider {
        cipher_suites: vec![suite],
        ..rustls::crypto::aws_lc_rs::default_provider()
    })
}

/// A client config presenting `chain`/`key` as its client certificate.
pub fn client_config_with_cert(
    chain: Vec<CertificateDer<'static>>,
    key: rustls::pki_types::PrivateKeyDer<'static>,
) -> Arc<ClientConfig> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let cfg = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCert))
        .with_client_auth_cert(chain, key)
        .unwrap();
    Arc::new(cfg)
}
