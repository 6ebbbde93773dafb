//! Control-connection line framing for client commands (RFC 959 §4.1, RFC 1123
//! §4.1.2.10, RFC 3659 §2.2): splits on CRLF or bare LF independently of read
//! boundaries, strips Telnet sequences (keeping `IAC IAC` as a literal 0xFF),
//! and caps line length.
//!
//! A line longer than [`MAX_LINE`] is reported once its terminator arrives
//! ([`LineEvent::TooLong`], the session continues); if no terminator shows up
//! within [`HARD_CAP`] bytes the peer is cut off ([`LineEvent::Overflow`]).

/// Longest accepted command line by default, CRLF included (PROTOCOL.md §1.1).
pub const MAX_LINE: usize = 4096;
/// Bytes discarded while looking for the end of an over-long line before giving up.
pub const HARD_CAP: usize = 64 * 1024;

const IAC: u8 = 255;
const SB: u8 = 250;
const SE: u8 = 240;
const WILL: u8 = 251;
const DONT: u8 = 254;

/// One framing result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineEvent {
    /// A complete line without its terminator, Telnet sequences removed.
    Line(Vec<u8>),
    /// A line exceeded [`MAX_LINE`]; it was discarded through its terminator.
    TooLong,
    /// No terminator within [`HARD_CAP`] bytes: the connection must be closed.
    Overflow,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Telnet {
    #[default]
    Data,
    /// Saw IAC.
    Iac,
    /// Saw IAC WILL/WONT/DO/DONT; the next byte is the option.
    Option,
    /// Inside IAC SB ... ; waiting for IAC SE.
    Sub,
    /// Saw IAC inside a subnegotiation.
    SubIac,
}

/// Incremental command-line decoder. Feed it bytes with [`LineDecoder::decode`].
#[derive(Debug)]
pub struct LineDecoder {
    /// Longest line accepted, CRLF included.
    max_line: usize,
    line: Vec<u8>,
    telnet: Telnet,
    /// Bytes seen for the current line (including discarded ones).
    seen: usize,
    overlong: bool,
}

impl Default for LineDecoder {
    fn default() -> Self {
        LineDecoder::with_max_line(MAX_LINE)
    }
}

impl LineDecoder {
    /// A fresh decoder with the default line cap.
    pub fn new() -> Self {
        Self::default()
    }

    /// A fresh decoder accepting lines up to `max_line` bytes (CRLF
    /// included; at least 1, the LF alone, and at most [`HARD_CAP`]).
    pub fn with_max_line(max_line: usize) -> Self {
        LineDecoder {
            max_line: max_line.clamp(1, HARD_CAP),
            line: Vec::new(),
            telnet: Telnet::default(),
            seen: 0,
            overlong: false,
        }
    }

    /// True when part of a line (or a Telnet sequence) is buffered.
    pub fn has_partial(&self) -> bool {
        self.seen > 0 || self.telnet != Telnet::Data
    }

    /// Consumes bytes from `input` up to and including the first complete event.
    /// Returns how many bytes were consumed and the event, if one completed.
    pub fn decode(&mut self, input: &[u8]) -> (usize, Option<LineEvent>) {
        for (i, &b) in input.iter().enumerate() {
            if let Some(ev) = self.push(b) {
                return (i + 1, Some(ev));
            }
        }
        (input.len(), None)
    }

    fn push(&mut self, b: u8) -> Option<LineEvent> {
        match self.telnet {
            Telnet::Data => {
                if b == IAC {
                    self.telnet = Telnet::Iac;
                    return None;
                }
                if b == b'\n' {
                    return Some(self.finish());
                }
                self.data(b)
            }
            Telnet::Iac => {
                self.telnet = Telnet::Data;
                match b {
                    IAC => self.data(IAC),
                    WILL..=DONT => {
                        self.telnet = Telnet::Option;
                        None
                    }
                    SB => {
                        self.telnet = Telnet::Sub;
                        None
                    }
                    // IP, DM, AO, AYT, NOP, EC, EL, GA, BRK, SE...: dropped.
                    _ => None,
                }
            }
            Telnet::Option => {
                self.telnet = Telnet::Data;
                None
            }
            Telnet::Sub => {
                if b == IAC {
                    self.telnet = Telnet::SubIac;
                }
                self.count()
            }
            Telnet::SubIac => {
                self.telnet = if b == SE { Telnet::Data } else { Telnet::Sub };
                self.count()
            }
        }
    }

    fn data(&mut self, b: u8) -> Option<LineEvent> {
        if let Some(ev) = self.count() {
            return Some(ev);
        }
        if self.seen > self.max_line - 1 {
            self.overlong = true;
            self.line.clear();
        } else if !self.overlong {
            self.line.push(b);
        }
        None
    }

    /// Counts a byte against the caps; reports overflow past the hard cap.
    fn count(&mut self) -> Option<LineEvent> {
        self.seen += 1;
        if self.seen > HARD_CAP {
            *self = Self::with_max_line(self.max_line);
            return Some(LineEvent::Overflow);
        }
        None
    }

    fn finish(&mut self) -> LineEvent {
        let overlong = self.overlong;
        let mut line = std::mem::take(&mut self.line);
        self.seen = 0;
        self.overlong = false;
        if overlong {
            return LineEvent::TooLong;
        }
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        LineEvent::Line(line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn all(input: &[u8]) -> Vec<LineEvent> {
        let mut d = LineDecoder::new();
        let mut out = Vec::new();
        let mut rest = input;
        while !rest.is_empty() {
            let (n, ev) = d.decode(rest);
            rest = &rest[n..];
            out.extend(ev);
        }
        out
    }

    #[test]
    fn crlf_and_bare_lf_both_terminate() {
        assert_eq!(
            all(b"NOOP\r\nUSER a\n"),
            vec![
                LineEvent::Line(b"NOOP".to_vec()),
                LineEvent::Line(b"USER a".to_vec())
            ]
        );
    }

    #[test]
    fn bare_cr_stays_inside_the_line() {
        assert_eq!(
            all(b"MKD a\rb\r\n"),
            vec![LineEvent::Line(b"MKD a\rb".to_vec())]
        );
    }

    #[test]
    fn telnet_sequences_are_stripped_and_iac_iac_is_literal() {
        // IAC IP IAC DM ABOR, then a name containing 0xFF escaped as IAC IAC.
        assert_eq!(
            all(b"\xff\xf4\xff\xf2ABOR\r\nRETR a\xff\xffb\r\n\xff\xfb\x01NOOP\r\n"),
            vec![
                LineEvent::Line(b"ABOR".to_vec()),
                LineEvent::Line(b"RETR a\xffb".to_vec()),
                LineEvent::Line(b"NOOP".to_vec()),
            ]
        );
        assert_eq!(
            all(b"\xff\xfa\x18abc\xff\xf0PWD\n"),
            vec![LineEvent::Line(b"PWD".to_vec())]
        );
    }

    #[test]
    fn overlong_line_is_reported_at_its_terminator_and_decoding_continues() {
        let mut input = vec![b'A'; 5000];
        input.extend_from_slice(b"\r\nNOOP\r\n");
        assert_eq!(
            all(&input),
            vec![LineEvent::TooLong, LineEvent::Line(b"NOOP".to_vec())]
        );
    }

    #[test]
    fn line_of_exactly_the_cap_is_accepted() {
        let mut input = vec![b'A'; MAX_LINE - 2];
        input.extend_from_slice(b"\r\n");
        assert_eq!(all(&input), vec![LineEvent::Line(vec![b'A'; MAX_LINE - 2])]);
        let mut input = vec![b'A'; MAX_LINE];
        input.extend_from_slice(b"\r\n");
        assert_eq!(all(&input), vec![LineEvent::TooLong]);
    }

    #[test]
    fn the_cap_is_configurable() {
        let mut d = LineDecoder::with_max_line(600);
        let mut input = vec![b'A'; 700];
        input.extend_from_slice(b"\r\nNOOP\r\n");
        let (n, ev) = d.decode(&input);
        assert_eq!(ev, Some(LineEvent::TooLong));
        assert_eq!(
            d.decode(&input[n..]).1,
            Some(LineEvent::Line(b"NOOP".to_vec()))
        );
    }

    /// Found by the `line` fuzz target: a cap of 0 made the length check
    /// `seen > max_line - 1` underflow (a panic with overflow checks, no cap
    /// at all without). It is raised to 1: only an empty line fits.
    #[test]
    fn a_zero_cap_is_one_byte() {
        for cap in [0, 1] {
            let mut d = LineDecoder::with_max_line(cap);
            let input = b"\na\n\r\nNOOP\r\n";
            let mut rest = &input[..];
            let mut events = Vec::new();
            while !rest.is_empty() {
                let (n, ev) = d.decode(rest);
                rest = &rest[n..];
                events.extend(ev);
            }
            let mut want = vec![LineEvent::Line(Vec::new())];
            want.extend(vec![LineEvent::TooLong; 3]);
            assert_eq!(events, want, "cap {cap}");
        }
    }

    #[test]
    fn no_terminator_within_hard_cap_overflows() {
        let input = vec![b'A'; 100 * 1024];
        assert_eq!(all(&input)[0], LineEvent::Overflow);
    }

    proptest! {
        #[test]
        fn split_points_do_not_matter(data in proptest::collection::vec(any::<u8>(), 0..600), cut in 0usize..600) {
            let cut = cut.min(data.len());
            let whole = all(&data);
            let mut d = LineDecoder::new();
            let mut split = Vec::new();
            for part in [&data[..cut], &data[cut..]] {
                let mut rest = part;
                while !rest.is_empty() {
                    let (n, ev) = d.decode(rest);
                    rest = &rest[n..];
                    split.extend(ev);
                }
            }
            prop_assert_eq!(whole, split);
        }
    }
}
