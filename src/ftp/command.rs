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

/// One parsed client command.
#[derive(Clone, PartialEq, Eq)]
pub struct Command {
    /// Upper-cased verb.
    pub verb: String,
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
            verb: String::from_utf8_lossy(verb).to_ascii_uppercase(),
            arg: arg.to_vec(),
        })
    }

    /// A command built by the proxy (for the backend).
    pub fn new(verb: &str, arg: &str) -> Command {
        Command {
            verb: verb.to_string(),
            arg: arg.as_bytes().to_vec(),
        }
    }

    /// The argument as text (lossy), trimmed of surrounding spaces.
    pub fn arg_str(&self) -> String {
        String::from_utf8_lossy(&self.arg).trim().to_string()
    }

    /// The proxy's view of this verb.
    pub fn class(&self) -> Class {
        match self.verb.as_str() {
            "AUTH" | "ADAT" | "PBSZ" | "PROT" | "CCC" | "MIC" | "CONF" | "ENC" => Class::Security,
            "RETR" | "LIST" | "NLST" | "MLSD" => Class::Transfer { upload: false },
            "STOR" | "STOU" | "APPE" => Class::Transfer { upload: true },
            "PASV" | "EPSV" | "PORT" | "EPRT" => Class::DataSetup,
            "LPRT" | "LPSV" | "SPSV" | "ESTA" | "ESTP" => Class::UnsupportedDataSetup,
            "USER" | "PASS" | "ACCT" => Class::Login,
            _ => Class::Other,
        }
    }

    /// The wire form sent to the backend: `VERB[ SP arg] CRLF`, 0xFF doubled.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.verb.len() + self.arg.len() + 3);
        out.extend_from_slice(self.verb.as_bytes());
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
        match (self.verb.as_str(), self.arg.is_empty()) {
            (_, true) => f.write_str(&self.verb),
            ("PASS" | "ACCT", false) => write!(f, "{} ****", self.verb),
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
            assert_eq!(c.verb, "AUTH");
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
