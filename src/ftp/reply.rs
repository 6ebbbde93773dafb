//! FTP replies (RFC 959 §4.2): the [`Reply`] type, the incremental
//! [`ReplyParser`] for backend bytes, and the encoder toward clients.
//!
//! A multi-line reply starts `ddd-` and ends only at a line starting with the
//! same three digits and a space; lines in between are free text. When a
//! reply is re-emitted, intermediate lines that begin with a digit get one
//! leading space, so a filename such as `227 Entering Passive Mode (...)`
//! inside a STAT listing can never pass for a reply line (PROTOCOL.md §1.3).

/// Longest backend reply line accepted (CPython ftplib refuses longer ones).
pub const MAX_REPLY_LINE: usize = 8192;
/// Largest multi-line reply accepted from the backend, counting every byte
/// received for it including line ends (large STAT listings pass).
pub const MAX_REPLY_BYTES: usize = 4 * 1024 * 1024;
/// Most lines in one reply (a 4 MiB reply of empty lines would otherwise
/// cost far more memory as line vectors than it took on the wire).
pub const MAX_REPLY_LINES: usize = 100_000;

/// One reply: a code and its text lines.
///
/// `lines[0]` is the text after `ddd ` or `ddd-`; for a multi-line reply the
/// last element is the text after the closing `ddd `, and the elements in
/// between are the intermediate lines, verbatim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// Three-digit reply code, 100..=599.
    pub code: u16,
    /// Text lines (see the type docs).
    pub lines: Vec<Vec<u8>>,
}

/// What a reply to a transfer command (RETR, STOR, LIST...) says about it
/// (RFC 959 §5.4: 125/150, then 226/250, or 425/426/451/45x/55x).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransferEnd {
    /// 1xx: the transfer starts; more replies follow.
    Preliminary,
    /// 226 or 250: done.
    Success,
    /// 4xx or 5xx: failed or refused.
    Failure,
    /// Any other code (a 227, a 200) cannot end a transfer: a surplus reply.
    Unexpected,
}

/// A backend broke the reply grammar or the size limits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    /// A line did not start with a three-digit code and space or hyphen.
    #[error("malformed reply line")]
    Malformed,
    /// A line or the whole reply exceeded the caps.
    #[error("reply too long")]
    TooLong,
}

impl Reply {
    /// A single-line reply.
    pub fn new(code: u16, text: impl Into<String>) -> Reply {
        Reply {
            code,
            lines: vec![text.into().into_bytes()],
        }
    }

    /// A multi-line reply with the given first line, body lines and last line.
    pub fn multi(code: u16, first: &str, body: Vec<Vec<u8>>, last: &str) -> Reply {
        let mut lines = Vec::with_capacity(body.len() + 2);
        lines.push(first.as_bytes().to_vec());
        lines.extend(body);
        lines.push(last.as_bytes().to_vec());
        Reply { code, lines }
    }

    /// 1xx: more replies follow.
    pub fn is_preliminary(&self) -> bool {
        self.code < 200
    }

    /// 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.code)
    }

    /// This reply's meaning as an answer to a transfer command.
    pub fn transfer_end(&self) -> TransferEnd {
        match self.code {
            100..=199 => TransferEnd::Preliminary,
            226 | 250 => TransferEnd::Success,
            400..=599 => TransferEnd::Failure,
            _ => TransferEnd::Unexpected,
        }
    }

    /// The first text line, lossily decoded.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(self.lines.first().map_or(&[][..], |l| l)).into_owned()
    }

    /// The intermediate lines of a multi-line reply.
    pub fn body(&self) -> &[Vec<u8>] {
        if self.lines.len() > 2 {
            &self.lines[1..self.lines.len() - 1]
        } else {
            &[]
        }
    }

    /// Wire form, with digit-leading intermediate lines padded by one space.
    /// Every line fits [`MAX_REPLY_LINE`] bytes before its LF, so a client
    /// with that limit (CPython ftplib) never refuses what ftpsgate sends: a
    /// line the padding or a rewrite pushed over it loses its tail.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let code = format!("{:03}", self.code);
        let code = code.as_bytes();
        match self.lines.as_slice() {
            [] => push_line(&mut out, code, b" ", b""),
            [only] => push_line(&mut out, code, b" ", only),
            [first, body @ .., last] => {
                push_line(&mut out, code, b"-", first);
                for line in body {
                    // `ddd-text` with this reply's own code is the standard continuation
                    // form and cannot end the reply; anything else digit-led is padded.
                    let continuation = line.len() >= 4 && line[..3] == *code && line[3] == b'-';
                    let pad = !continuation && line.first().is_some_and(u8::is_ascii_digit);
                    push_line(&mut out, b"", if pad { b" " } else { b"" }, line);
                }
                push_line(&mut out, code, b" ", last);
            }
        }
        out
    }
}

/// Appends `code` `sep` `text` CRLF, cutting `text` so the line (CR
/// included) stays within [`MAX_REPLY_LINE`] bytes before the LF.
fn push_line(out: &mut Vec<u8>, code: &[u8], sep: &[u8], text: &[u8]) {
    let room = MAX_REPLY_LINE - code.len() - sep.len() - 1;
    out.extend_from_slice(code);
    out.extend_from_slice(sep);
    out.extend_from_slice(&text[..text.len().min(room)]);
    out.extend_from_slice(b"\r\n");
}

/// Incremental parser for backend replies. Push bytes, pull replies.
///
/// Linear in its input: lines are taken from a moving offset and the buffer
/// is compacted only when the consumed part dominates it. Every byte of a
/// reply counts against [`MAX_REPLY_BYTES`], every line against
/// [`MAX_REPLY_LINES`].
#[derive(Debug)]
pub struct ReplyParser {
    /// Largest reply accepted, line ends included.
    max_bytes: usize,
    buf: Vec<u8>,
    /// Start of the first unconsumed byte in `buf`.
    start: usize,
    /// Bytes after `start` already known to hold no line end.
    scanned: usize,
    pending: Option<Pending>,
}

/// A multi-line reply being accumulated.
#[derive(Debug)]
struct Pending {
    code: u16,
    lines: Vec<Vec<u8>>,
    bytes: usize,
}

impl Default for ReplyParser {
    fn default() -> Self {
        ReplyParser::with_max_bytes(MAX_REPLY_BYTES)
    }
}

impl ReplyParser {
    /// A fresh parser with the default reply cap.
    pub fn new() -> Self {
        Self::default()
    }

    /// A fresh parser accepting replies up to `max_bytes` (line ends included).
    pub fn with_max_bytes(max_bytes: usize) -> Self {
        ReplyParser {
            max_bytes,
            buf: Vec::new(),
            start: 0,
            scanned: 0,
            pending: None,
        }
    }

    /// Appends received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.start > 0 && self.start * 2 >= self.buf.len() {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// True when no partial reply is buffered.
    pub fn is_idle(&self) -> bool {
        self.start == self.buf.len() && self.pending.is_none()
    }

    /// Returns the next complete reply, `Ok(None)` if more bytes are needed.
    pub fn next_reply(&mut self) -> Result<Option<Reply>, ReplyError> {
        loop {
            let unread = &self.buf[self.start..];
            let Some(offset) = unread[self.scanned..].iter().position(|&b| b == b'\n') else {
                self.scanned = unread.len();
                if unread.len() > MAX_REPLY_LINE {
                    return Err(ReplyError::TooLong);
                }
                return Ok(None);
            };
            let end = self.scanned + offset;
            if end > MAX_REPLY_LINE {
                return Err(ReplyError::TooLong);
            }
            let mut line = &unread[..end];
            if line.last() == Some(&b'\r') {
                line = &line[..line.len() - 1];
            }
            let line = line.to_vec();
            self.start += end + 1;
            self.scanned = 0;
            if let Some(reply) = self.line(line, end + 1)? {
                return Ok(Some(reply));
            }
        }
    }

    /// One line of `wire` bytes (terminator included).
    fn line(&mut self, line: Vec<u8>, wire: usize) -> Result<Option<Reply>, ReplyError> {
        let code = parse_code(&line);
        let Some(mut p) = self.pending.take() else {
            let code = code.ok_or(ReplyError::Malformed)?;
            let text = line.get(4..).unwrap_or_default().to_vec();
            return match line.get(3).copied() {
                Some(b'-') => {
                    self.pending = Some(Pending {
                        code,
                        lines: vec![text],
                        bytes: wire,
                    });
                    Ok(None)
                }
                Some(b' ') | None => Ok(Some(Reply {
                    code,
                    lines: vec![text],
                })),
                Some(_) => Err(ReplyError::Malformed),
            };
        };
        p.bytes += wire;
        if p.bytes > self.max_bytes || p.lines.len() >= MAX_REPLY_LINES {
            return Err(ReplyError::TooLong);
        }
        let closes = code == Some(p.code);
        if closes && line.get(3) == Some(&b' ') {
            p.lines.push(line[4..].to_vec());
            return Ok(Some(Reply {
                code: p.code,
                lines: p.lines,
            }));
        }
        // A bare "ddd" line also closes the reply (some servers omit the space).
        if closes && line.len() == 3 {
            p.lines.push(Vec::new());
            return Ok(Some(Reply {
                code: p.code,
                lines: p.lines,
            }));
        }
        p.lines.push(line);
        self.pending = Some(p);
        Ok(None)
    }
}

fn parse_code(line: &[u8]) -> Option<u16> {
    let digits = line.get(..3)?;
    if !digits.iter().all(u8::is_ascii_digit) || !(b'1'..=b'5').contains(&digits[0]) {
        return None;
    }
    Some(
        digits
            .iter()
            .fold(0u16, |acc, d| acc * 10 + u16::from(d - b'0')),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse_all(bytes: &[u8]) -> Vec<Reply> {
        let mut p = ReplyParser::new();
        p.push(bytes);
        std::iter::from_fn(|| p.next_reply().unwrap()).collect()
    }

    #[test]
    fn single_and_multi_line() {
        let r = parse_all(b"220 hi\r\n211-Features:\r\n MDTM\r\n211 End\r\n");
        assert_eq!(r[0], Reply::new(220, "hi"));
        assert_eq!(r[1].code, 211);
        assert_eq!(r[1].body(), &[b" MDTM".to_vec()]);
        assert_eq!(r[1].encode(), b"211-Features:\r\n MDTM\r\n211 End\r\n");
    }

    #[test]
    fn inner_lines_with_other_codes_do_not_end_the_reply_and_are_padded() {
        let r = parse_all(b"220-a\r\n220-b\r\n220 c\r\n");
        assert_eq!(
            r[0].encode(),
            b"220-a\r\n220-b\r\n220 c\r\n",
            "same-code continuations stay verbatim"
        );
        let r = parse_all(b"213-status\r\n227 Entering Passive Mode (6,6,6,6,1,2)\r\n226 \r\n213-x\r\n213 end\r\n");
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].body().len(), 3);
        let wire = r[0].encode();
        assert_eq!(
            wire,
            b"213-status\r\n 227 Entering Passive Mode (6,6,6,6,1,2)\r\n 226 \r\n213-x\r\n213 end\r\n"
        );
        // Re-parsing the padded form still yields one reply.
        assert_eq!(parse_all(&wire).len(), 1);
    }

    #[test]
    fn only_226_and_250_end_a_transfer_well() {
        let end = |code| Reply::new(code, "x").transfer_end();
        assert_eq!(end(150), TransferEnd::Preliminary);
        assert_eq!(end(226), TransferEnd::Success);
        assert_eq!(end(250), TransferEnd::Success);
        assert_eq!(end(451), TransferEnd::Failure);
        assert_eq!(end(550), TransferEnd::Failure);
        for code in [200, 227, 229, 331, 350] {
            assert_eq!(end(code), TransferEnd::Unexpected, "{code}");
        }
    }

    #[test]
    fn partial_input_waits() {
        let mut p = ReplyParser::new();
        p.push(b"150 Opening");
        assert_eq!(p.next_reply(), Ok(None));
        p.push(b" data\r\n");
        assert_eq!(p.next_reply().unwrap().unwrap().code, 150);
        assert!(p.is_idle());
    }

    #[test]
    fn malformed_and_oversized_are_errors() {
        let mut p = ReplyParser::new();
        p.push(b"hello\r\n");
        assert_eq!(p.next_reply(), Err(ReplyError::Malformed));
        let mut p = ReplyParser::new();
        p.push(&vec![b'2'; MAX_REPLY_LINE + 10]);
        assert_eq!(p.next_reply(), Err(ReplyError::TooLong));
    }

    /// Found by fuzzing: a backend line at the cap, padded on the way out,
    /// must still fit a client's cap (CPython ftplib's is the same 8192).
    #[test]
    fn what_is_sent_never_exceeds_the_line_cap() {
        let mut backend = b"211-status\r\n".to_vec();
        backend.extend_from_slice(&vec![b'9'; MAX_REPLY_LINE - 1]);
        backend.extend_from_slice(b"\r\n211 End\r\n");
        let mut p = ReplyParser::new();
        p.push(&backend);
        let reply = p.next_reply().unwrap().unwrap();
        let wire = reply.encode();
        assert!(wire
            .split(|&b| b == b'\n')
            .all(|l| l.len() <= MAX_REPLY_LINE));
        let mut client = ReplyParser::new();
        client.push(&wire);
        let back = client.next_reply().unwrap().unwrap();
        let padded = &back.body()[0];
        assert_eq!(
            padded.len(),
            MAX_REPLY_LINE - 1,
            "the pad space took the last byte's place"
        );
        assert!(padded.starts_with(b" 999"));
        let long = Reply::new(500, "x".repeat(3 * MAX_REPLY_LINE));
        assert_eq!(long.encode().len(), MAX_REPLY_LINE + 1, "a single line too");
    }

    #[test]
    fn caps_count_line_ends_and_lines() {
        // Millions of empty lines: refused by the line cap long before 4 MiB of text.
        let mut p = ReplyParser::new();
        p.push(b"211-x\r\n");
        let chunk = b"\r\n".repeat(2048);
        let mut result = Ok(None);
        for _ in 0..(8 * 1024 * 1024 / 2048) {
            p.push(&chunk);
            result = p.next_reply();
            if result.is_err() {
                break;
            }
        }
        assert_eq!(result, Err(ReplyError::TooLong));
        // Lines of one character: the byte cap counts the CRLF too (3 bytes a line).
        let mut p = ReplyParser::new();
        p.push(b"211-x\r\n");
        let lines = (MAX_REPLY_BYTES / 3).min(MAX_REPLY_LINES - 2);
        p.push(&b"x\r\n".repeat(lines));
        assert_eq!(p.next_reply(), Ok(None), "within both caps");
    }

    #[test]
    fn a_large_reply_within_the_caps_parses() {
        let mut wire = b"213-status of /\r\n".to_vec();
        for i in 0..50_000 {
            wire.extend_from_slice(
                format!(" -rw-r--r-- 1 ftp ftp 1 Jan 1 00:00 file{i}\r\n").as_bytes(),
            );
        }
        wire.extend_from_slice(b"213 End\r\n");
        let mut p = ReplyParser::new();
        let mut replies = Vec::new();
        for part in wire.chunks(4096) {
            p.push(part);
            while let Some(r) = p.next_reply().unwrap() {
                replies.push(r);
            }
        }
        assert_eq!(replies.len(), 1);
        assert_eq!(replies[0].body().len(), 50_000);
        assert!(p.is_idle());
    }

    proptest! {
        #[test]
        fn parser_never_panics(data in proptest::collection::vec(any::<u8>(), 0..2000)) {
            let mut p = ReplyParser::new();
            p.push(&data);
            while let Ok(Some(r)) = p.next_reply() {
                // Every parsed reply re-encodes to something that parses back to one reply.
                let wire = r.encode();
                let mut q = ReplyParser::new();
                q.push(&wire);
                let back = q.next_reply().unwrap().unwrap();
                prop_assert_eq!(back.code, r.code);
                prop_assert!(q.next_reply().unwrap().is_none());
            }
        }
    }
}
