//! Target `config`: the YAML configuration file, first as text
//! (`config::file::parse`, the one serde_yaml user, with its per-key error
//! reporting), then, when that parses, resolved as `serve --config` and
//! `check` resolve it ([`Settings::resolve`]: the checks that span keys,
//! such as `backends`/`user_routes`, `backend: original-destination` and
//! `original_destination_allow`, listener mappings and their balancers,
//! `public_passive_ports` against `passive_ports`).
//!
//! Input: the file text (UTF-8, lossily). `Settings::resolve` reads a file,
//! so a text that parses is written to a scratch file first (the only I/O
//! of any target; see [`scratch`]). Invariants:
//! - nothing panics, overflows the stack or runs away (libFuzzer's timeout);
//! - an error names the file, a key (empty only for an unknown empty key
//!   name) and a non-empty message, and a line, when given, lies within the
//!   text as libyaml counts lines (CR, LF, CRLF, NEL, LS, PS), or one past
//!   it: at the end of input libyaml starts a new line before it reports a
//!   syntax error there;
//! - resolved settings hold only usable values ([`check_settings`]): a
//!   listener; a valid backend pool, or original-destination with an allow
//!   list and no routing by user; user routes only to named backends; no
//!   routing by user with `backend_connect: on-accept`; cert and key
//!   together, `client_cert` only with `client_ca`; public passive ports
//!   only 1:1 onto `passive_ports`; every listener that expects a PROXY
//!   header trusts some balancer, and every listener mapping is a listener;
//!   no zero timeout; limits within their bounds.

use std::path::PathBuf;

use ftpsgate::cli::ServeArgs;
use ftpsgate::config::{file, BackendConnect, ConfigError, Requirement, Settings, Target};

/// The name errors of the text must carry.
const NAME: &str = "fuzz.yaml";

/// The target body.
pub fn run(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    match file::parse(NAME, &text) {
        Err(e) => check_error(&e, NAME, &text),
        Ok(_) => resolve(&text),
    }
}

/// A file of this process and thread (the stable replay runs targets on
/// several threads), rewritten for each input.
fn scratch() -> PathBuf {
    let thread: String = format!("{:?}", std::thread::current().id())
        .chars()
        .filter(char::is_ascii_digit)
        .collect();
    let name = format!("ftpsgate-fuzz-config-{}-{thread}.yaml", std::process::id());
    std::env::temp_dir().join(name)
}

/// `serve --config <the text>`.
fn resolve(text: &str) {
    let path = scratch();
    std::fs::write(&path, text).expect("scratch file written");
    let args = ServeArgs {
        config: Some(path.clone()),
        ..ServeArgs::default()
    };
    let resolved = Settings::resolve(&args);
    let _ = std::fs::remove_file(&path);
    match resolved {
        Err(e) => {
            check_error(&e, &path.display().to_string(), text);
            assert!(!e.key.is_empty(), "error without a key: {e}");
        }
        Ok(s) => check_settings(&s),
    }
}

fn check_error(e: &ConfigError, name: &str, text: &str) {
    assert_eq!(e.source_name, name);
    // An empty key name (`"": 1`, `!!: x`) is reported as it is.
    let empty_key = e.message.starts_with("unknown key");
    assert!(!e.key.is_empty() || empty_key, "error without a key: {e}");
    assert!(!e.message.is_empty(), "error without a message: {e}");
    if let Some(line) = e.line {
        let lines = yaml_lines(text);
        assert!(
            (1..=lines + 1).contains(&line),
            "line {line} of {lines}: {e}"
        );
    }
    let shown = e.to_string();
    assert!(shown.starts_with(name), "{shown}");
}

/// What resolved settings promise (config/mod.rs `Settings`: "every field
/// holds a value that is known to be usable").
fn check_settings(s: &Settings) {
    assert!(!s.listen.is_empty() || !s.implicit_listen.is_empty());
    let b = &s.backends;
    assert_eq!(b.validate(), Ok(()));
    match &b.target {
        Target::Pool(members) => {
            assert!(!members.is_empty(), "an empty pool");
            for name in b.user_routes.values() {
                assert!(members.iter().any(|m| &m.name == name), "route to {name}");
            }
        }
        Target::OriginalDestination { allow, .. } => {
            assert!(!allow.is_empty(), "original-destination relays anywhere");
            assert!(!b.routes_by_user(), "routing by user without a pool");
        }
    }
    if b.routes_by_user() {
        assert_ne!(s.backend_connect, BackendConnect::OnAccept);
    }
    assert!(!b.health_interval.is_zero());
    assert_eq!(s.cert.is_some(), s.key.is_some(), "cert without key");
    if s.client_ca.is_none() {
        assert_eq!(
            s.client_cert,
            Requirement::Optional,
            "client_cert without CA"
        );
    }
    if let Some(public) = s.public_passive_ports {
        let bound = s
            .passive_ports
            .expect("public_passive_ports needs passive_ports");
        assert_eq!(public.len(), bound.len(), "{public} onto {bound}");
    }
    assert!(
        !s.proxy.is_on() || !s.proxy.from.is_empty(),
        "PROXY from anyone"
    );
    for l in &s.listener_proxy {
        assert!(
            !l.trust.is_on() || !l.trust.from.is_empty(),
            "PROXY from anyone"
        );
        let listeners = if l.implicit {
            &s.implicit_listen
        } else {
            &s.listen
        };
        assert!(
            listeners.contains(&l.address),
            "{} is no listener",
            l.address
        );
    }
    for t in [
        s.proxy_protocol_timeout,
        s.handshake_timeout,
        s.idle_timeout,
        s.data_timeout,
        s.stall_timeout,
        s.ban_window,
        s.ban_duration,
        s.shutdown_grace,
    ] {
        assert!(t.as_secs() >= 1, "a timeout of {t:?}");
    }
    assert!(s.max_sessions >= 1);
    assert!((512..=64 * 1024).contains(&s.max_command_line));
    assert!(s.max_reply >= 64 * 1024);
    for rate in [s.rate_session, s.rate_total].into_iter().flatten() {
        assert!(rate >= 1024, "rate {rate}");
    }
    assert!(s.max_upload.map_or(true, |m| m >= 1));
    assert!(s.needs_restart(s).is_empty());
}

/// Lines as libyaml counts them: one more than the line breaks, which are
/// LF, CR, CRLF (one break), NEL (U+0085), LS (U+2028) and PS (U+2029).
fn yaml_lines(text: &str) -> usize {
    let breaks = text.matches("\r\n").count();
    let single = text
        .chars()
        .filter(|c| matches!(c, '\r' | '\n' | '\u{85}' | '\u{2028}' | '\u{2029}'))
        .count();
    single - breaks + 1
}
