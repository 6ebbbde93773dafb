//! Client commands (RFC 959 §4.1, §5.3): parsing a framed line into a
//! [`Command`], classifying the verb, and re-serialising it for the backend.
//!
//! Commands are never relayed raw (PROTOCOL.md §10.4): the proxy parses each
//! line, rejects NUL and bare CR (501), and writes `VERB SP arg CRLF` itself,
//! re-escaping 0xFF as `IAC IAC` (RFC 3659 §2.2).

use std::fmt;

/// Longest verb accepted (RFC 959 verbs are 3-4 letters; some vendors use more).
const MAX_VERB: usize = 8;

/// Why a line is not a command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// Empty line or a verb that is not ASCII letters (500).
    #[error("syntax error, command unrecognized")]
    BadVerb,
    /// NUL or bare CR in the argument (501).
    #[error("syntax error in parameters: control characters are not allowed")]
    ControlChar,
}

/// The verbs ftpsgate acts on; every other verb is [`Verb::Other`], kept
/// (upper-cased) and forwarded verbatim.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Verb {
    /// RFC 2228 AUTH.
    Auth,
    /// RFC 2228 ADAT.
    Adat,
    /// RFC 2228 PBSZ.
    Pbsz,
    /// RFC 2228 PROT.
    Prot,
    /// RFC 2228 CCC.
    Ccc,
    /// RFC 2228 MIC.
    Mic,
    /// RFC 2228 CONF.
    Conf,
    /// RFC 2228 ENC.
    Enc,
    /// USER.
    User,
    /// PASS.
    Pass,
    /// ACCT.
    Acct,
    /// REIN.
    Rein,
    /// QUIT.
    Quit,
    /// RFC 2389 FEAT.
    Feat,
    /// RFC 7151 HOST.
    Host,
    /// RFC 2389 OPTS.
    Opts,
    /// SYST.
    Syst,
    /// HELP.
    Help,
    /// NOOP.
    Noop,
    /// MODE.
    Mode,
    /// STRU.
    Stru,
    /// TYPE (recorded for the transfer log).
    Type,
    /// ABOR.
    Abor,
    /// STAT.
    Stat,
    /// PASV.
    Pasv,
    /// RFC 2428 EPSV.
    Epsv,
    /// PORT.
    Port,
    /// RFC 2428 EPRT.
    Eprt,
    /// RFC 1639 LPRT (not rewritable).
    Lprt,
    /// RFC 1639 LPSV (not rewritable).
    Lpsv,
    /// SPSV (not rewritable).
    Spsv,
    /// ESTA (not rewritable).
    Esta,
    /// ESTP (not rewritable).
    Estp,
    /// RETR.
    Retr,
    /// LIST.
    List,
    /// NLST.
    Nlst,
    /// RFC 3659 MLSD.
    Mlsd,
    /// STOR.
    Stor,
    /// STOU.
    Stou,
    /// APPE.
    Appe,
    /// Anything else, upper-cased.
    Other(String),
}

/// The named verbs and their wire spelling (one table for parse and encode).
const VERBS: &[(Verb, &str)] = &[
    (Verb::Auth, "AUTH"),
    (Verb::Adat, "ADAT"),
    (Verb::Pbsz, "PBSZ"),
    (Verb::Prot, "PROT"),
    (Verb::Ccc, "CCC"),
    (Verb::Mic, "MIC"),
    (Verb::Conf, "CONF"),
    (Verb::Enc, "ENC"),
    (Verb::User, "USER"),
    (Verb::Pass, "PASS"),
    (Verb::Acct, "ACCT"),
    (Verb::Rein, "REIN"),
    (Verb::Quit, "QUIT"),
    (Verb::Feat, "FEAT"),
    (Verb::Host, "HOST"),
    (Verb::Opts, "OPTS"),
    (Verb::Syst, "SYST"),
    (Verb::Help, "HELP"),
    (Verb::Noop, "NOOP"),
    (Verb::Mode, "MODE"),
    (Verb::Stru, "STRU"),
    (Verb::Type, "TYPE"),
    (Verb::Abor, "ABOR"),
    (Verb::Stat, "STAT"),
    (Verb::Pasv, "PASV"),
    (Verb::Epsv, "EPSV"),
    (Verb::Port, "PORT"),
    (Verb::Eprt, "EPRT"),
    (Verb::Lprt, "LPRT"),
    (Verb::Lpsv, "LPSV"),
    (Verb::Spsv, "SPSV"),
    (Verb::Esta, "ESTA"),
    (Verb::Estp, "ESTP"),
    (Verb::Retr, "RETR"),
    (Verb::List, "LIST"),
    (Verb::Nlst, "NLST"),
    (Verb::Mlsd, "MLSD"),
    (Verb::Stor, "STOR"),
    (Verb::Stou, "STOU"),
    (Verb::Appe, "APPE"),
];

impl Verb {
    /// The verb for an upper-case word.
    pub fn from_word(word: &str) -> Verb {
        VERBS
            .iter()
            .find(|(_, w)| *w == word)
            .map_or_else(|| Verb::Other(word.to_string()), |(v, _)| v.clone())
    }

    /// The wire spelling.
    pub fn as_str(&self) -> &str {
        match self {
            Verb::Other(w) => w,
            known => VERBS
                .iter()
                .find(|(v, _)| v == known)
                .map_or("", |(_, w)| w),
        }
    }

    /// The proxy's view of this verb.
    pub fn class(&self) -> Class {
        use Verb::*;
        match self {
            Auth | Adat | Pbsz | Prot | Ccc | Mic | Conf | Enc => Class::Security,
            Retr | List | Nlst | Mlsd => Class::Transfer { upload: false },
            Stor | Stou | Appe => Class::Transfer { upload: true },
            Pasv | Epsv | Port | Eprt => Class::DataSetup,
            Lprt | Lpsv | Spsv | Esta | Estp => Class::UnsupportedDataSetup,
            User | Pass | Acct => Class::Login,
            _ => Class::Other,
        }
    }
}

impl fmt::Display for Verb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One parsed client command.
#[derive(Clone, PartialEq, Eq)]
pub struct Command {
    /// The verb.
    pub verb: Verb,
    /// Argument bytes after the first space, verbatim (pathnames may be any bytes).
    pub arg: Vec<u8>,
}

/// What kind of command this is, as far as the proxy is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// RFC 2228 security verbs answered by the proxy itself.
    Security,
    /// Opens a data connection; `upload` is true for STOR/STOU/APPE.
    Transfer {
        /// Data flows client → backend.
        upload: bool,
    },
    /// PASV, EPSV, PORT, EPRT: rewritten by the proxy.
    DataSetup,
    /// Data-setup verbs the proxy cannot rewrite (LPRT, LPSV, SPSV, ESTA, ESTP).
    UnsupportedDataSetup,
    /// USER, PASS, ACCT.
    Login,
    /// Everything else: forwarded.
    Other,
}

impl Command {
    /// Parses one framed line (no terminator, Telnet already stripped).
    pub fn parse(line: &[u8]) -> Result<Command, CommandError> {
        let (verb, arg) = match line.iter().position(|&b| b == b' ') {
            Some(i) => (&line[..i], &line[i + 1..]),
            None => (line, &[][..]),
        };
        if verb.is_empty() || verb.len() > MAX_VERB || !verb.iter().all(u8::is_ascii_alphabetic) {
            return Err(CommandError::BadVerb);
        }
        if arg.iter().any(|&b| b == 0 || b == b'\r' || b == b'\n') {
            return Err(CommandError::ControlChar);
        }
        Ok(Command {
            verb: Verb::from_word(&String::from_utf8_lossy(verb).to_ascii_uppercase()),
            arg: arg.to_vec(),
        })
    }

    /// A command built by the proxy (for the backend).
    pub fn new(verb: Verb, arg: &str) -> Command {
        Command {
            verb,
            arg: arg.as_bytes().to_vec(),
        }
    }

    /// The argument as text (lossy), trimmed of surrounding spaces.
    pub fn arg_str(&self) -> String {
        String::from_utf8_lossy(&self.arg).trim().to_string()
    }

    /// The proxy's view of this verb.
    pub fn class(&self) -> Class {
        self.verb.class()
    }

    /// The wire form sent to the backend: `VERB[ SP arg] CRLF`, 0xFF doubled.
    pub fn encode(&self) -> Vec<u8> {
        let verb = self.verb.as_str();
        let mut out = Vec::with_capacity(verb.len() + self.arg.len() + 3);
        out.extend_from_slice(verb.as_bytes());
        if !self.arg.is_empty() {
            out.push(b' ');
            for &b in &self.arg {
                out.push(b);
                if b == 0xFF {
                    out.push(0xFF);
                }
            }
        }
        out.extend_from_slice(b"\r\n");
        out
    }
}

/// Logs never show credentials: PASS and ACCT arguments are masked.
impl fmt::Debug for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.verb, self.arg.is_empty()) {
            (_, true) => f.write_str(self.verb.as_str()),
            (Verb::Pass | Verb::Acct, false) => write!(f, "{} ****", self.verb),
            _ => write!(f, "{} {}", self.verb, String::from_utf8_lossy(&self.arg)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn verbs_are_case_insensitive() {
        for line in [&b"auth tls"[..], b"Auth TLS", b"AUTH TLS"] {
            let c = Command::parse(line).unwrap();
            assert_eq!(c.verb, Verb::Auth);
            assert_eq!(c.arg_str().to_ascii_uppercase(), "TLS");
        }
    }

    #[test]
    fn arguments_keep_their_bytes_and_spaces() {
        let c = Command::parse(b"RETR  two  spaces ").unwrap();
        assert_eq!(c.arg, b" two  spaces ");
        assert_eq!(c.encode(), b"RETR  two  spaces \r\n");
    }

    #[test]
    fn control_characters_are_rejected() {
        assert_eq!(Command::parse(b"MKD a\rb"), Err(CommandError::ControlChar));
        assert_eq!(Command::parse(b"MKD a\0b"), Err(CommandError::ControlChar));
    }

    #[test]
    fn bad_verbs_are_rejected() {
        for line in [&b""[..], b" NOOP", b"NO0P", b"ABCDEFGHIJ x", b"\xffNOOP"] {
            assert_eq!(Command::parse(line), Err(CommandError::BadVerb), "{line:?}");
        }
    }

    #[test]
    fn iac_is_re_escaped_toward_the_backend() {
        let c = Command::parse(b"RETR a\xffb").unwrap();
        assert_eq!(c.encode(), b"RETR a\xff\xffb\r\n");
    }

    #[test]
    fn passwords_are_masked_in_logs() {
        let c = Command::parse(b"PASS hunter2").unwrap();
        assert_eq!(format!("{c} {c:?}"), "PASS **** PASS ****");
        assert_eq!(
            Command::parse(b"USER alice").unwrap().to_string(),
            "USER alice"
        );
    }

    #[test]
    fn classes() {
        let class = |s: &[u8]| Command::parse(s).unwrap().class();
        assert_eq!(class(b"stor x"), Class::Transfer { upload: true });
        assert_eq!(class(b"MLSD"), Class::Transfer { upload: false });
        assert_eq!(class(b"LPSV"), Class::UnsupportedDataSetup);
        assert_eq!(class(b"ccc"), Class::Security);
        assert_eq!(class(b"XMKD d"), Class::Other);
    }

    #[test]
    fn verbs_round_trip_and_others_stay_verbatim() {
        for (verb, word) in VERBS {
            assert_eq!(Verb::from_word(word), *verb);
            assert_eq!(verb.as_str(), *word);
        }
        let c = Command::parse(b"xmkd dir").unwrap();
        assert_eq!(c.verb, Verb::Other("XMKD".into()));
        assert_eq!(c.encode(), b"XMKD dir\r\n");
    }

    proptest! {
        #[test]
        fn parse_never_panics_and_round_trips(line in proptest::collection::vec(any::<u8>(), 0..200)) {
            if let Ok(c) = Command::parse(&line) {
                let wire = c.encode();
                // Decoding the wire form the way a backend would gives the same command.
                let mut d = super::super::line::LineDecoder::new();
                let (_, ev) = d.decode(&wire);
                match ev {
                    Some(super::super::line::LineEvent::Line(l)) => {
                        prop_assert_eq!(Command::parse(&l).unwrap(), c)
                    }
                    other => prop_assert!(false, "unexpected {:?}", other),
                }
            }
        }
    }
}
