//! Fuzz target bodies, shared by the cargo-fuzz binaries (`fuzz/fuzz_targets/*.rs`,
//! nightly, libFuzzer) and the stable replay test (`tests/fuzz_corpus.rs`, which
//! includes this file with `#[path]`), so every saved corpus input is re-checked
//! by plain `cargo test`.
//!
//! Each target is one module with `pub fn run(data: &[u8])`: it derives its
//! input from the bytes, drives the pure ftpsgate API, and asserts the
//! target's invariants with `assert!` (a failed assertion is a crash to
//! libFuzzer). Nothing here does I/O. docs/fuzzing.md lists the invariants.
//!
//! The helpers below are the input reader every target shares ([`Input`]),
//! the run-length expansion that lets short inputs reach the line caps
//! ([`expand`]), and the reply well-formedness check ([`assert_well_formed`]).

pub mod addr;
pub mod command;
pub mod config;
pub mod line;
pub mod proxy_header;
pub mod record;
pub mod reply;
pub mod session;

use ftpsgate::ftp::reply::{Reply, ReplyError, ReplyParser};

/// A target body: derives its input from the bytes, panics on a broken invariant.
pub type Body = fn(&[u8]);

/// The fuzz targets, by name (the directory under `fuzz/corpus/`).
pub const TARGETS: &[(&str, Body)] = &[
    ("line", line::run),
    ("command", command::run),
    ("reply", reply::run),
    ("addr", addr::run),
    ("config", config::run),
    ("session", session::run),
    ("proxy_header", proxy_header::run),
    ("record", record::run),
];

/// Reads structured choices from fuzz bytes; past the end it yields zeros
/// (and [`Input::is_empty`] turns true), so every derivation is total.
#[derive(Debug, Clone)]
pub struct Input<'a> {
    data: &'a [u8],
}

impl<'a> Input<'a> {
    /// Reads from `data`.
    pub fn new(data: &'a [u8]) -> Input<'a> {
        Input { data }
    }

    /// True when every byte has been read.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The next byte, 0 past the end.
    pub fn byte(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }

    /// The next byte's low bit.
    pub fn bool(&mut self) -> bool {
        self.byte() & 1 == 1
    }

    /// A big-endian u16.
    pub fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.byte(), self.byte()])
    }

    /// An index below `n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        usize::from(self.byte()) % n
    }

    /// One element of `items`.
    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }

    /// Up to `n` bytes.
    pub fn take(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.data.split_at(n.min(self.data.len()));
        self.data = rest;
        head
    }

    /// A length byte, then that many bytes.
    pub fn chunk(&mut self) -> &'a [u8] {
        let n = usize::from(self.byte());
        self.take(n)
    }

    /// Everything left.
    pub fn rest(&mut self) -> &'a [u8] {
        self.take(self.data.len())
    }
}

/// Reads per stream, about. Both decoders are linear in their input
/// (`ReplyParser` remembers how far it has looked for an LF), so this only
/// bounds the per-read overhead of a long stream cut into tiny reads.
pub const MAX_READS: usize = 1024;

/// Long mode needs an input length that is a multiple of this.
pub const LONG_EVERY: usize = 16;

/// A byte stream plus the read sizes it is delivered in, decoded from fuzz
/// bytes as `flags, n, size * n, payload`.
///
/// `flags` bit 0 turns on run escapes in the payload (see [`expand`]), and
/// bit 4 long mode (long runs, a cap of `long` rather than `short` bytes)
/// for inputs whose length is a multiple of [`LONG_EVERY`]. Bits 1-3 scale
/// the read sizes (`(size + 1) << scale`), so long streams can also arrive in
/// long reads. Bits 5-7 are left to the target ([`Stream::extra`]).
#[derive(Debug, Clone)]
pub struct Stream {
    /// The bytes, expanded.
    pub bytes: Vec<u8>,
    /// `flags >> 5`: a choice of the target's own (0-7).
    pub extra: u8,
    /// Read sizes, used in turn (cycled); never empty, never zero.
    pub reads: Vec<usize>,
}

impl Stream {
    /// Decodes a stream whose expanded payload is at most `short` bytes, or
    /// `long` bytes in long mode.
    pub fn decode(data: &[u8], short: usize, long: usize) -> Stream {
        let mut input = Input::new(data);
        let flags = input.byte();
        let scale = (flags >> 1) & 7;
        let n = input.below(8);
        let mut reads: Vec<usize> = (0..n)
            .map(|_| (usize::from(input.byte()) + 1) << scale)
            .collect();
        if reads.is_empty() {
            reads.push(usize::MAX);
        }
        let payload = input.rest();
        // Long streams cost a thousand times a short one; sampling them by
        // input length keeps the fuzzer fast, as most mutants of a long input
        // change its length and run short.
        let long_mode = flags & 0x10 != 0 && data.len() % LONG_EVERY == 0;
        let cap = if long_mode { long } else { short };
        let bytes = if flags & 1 == 1 {
            expand(payload, cap, long_mode)
        } else {
            payload[..payload.len().min(cap)].to_vec()
        };
        Stream {
            bytes,
            extra: flags >> 5,
            reads,
        }
    }

    /// The payload cut into reads of the chosen sizes, but no more than about
    /// [`MAX_READS`] of them.
    pub fn reads(&self) -> impl Iterator<Item = &[u8]> {
        let mut rest = &self.bytes[..];
        let mut sizes = self.reads.iter().cycle();
        let floor = self.bytes.len() / MAX_READS;
        std::iter::from_fn(move || {
            if rest.is_empty() {
                return None;
            }
            let n = (*sizes.next()?).max(floor).min(rest.len());
            let (head, tail) = rest.split_at(n);
            rest = tail;
            Some(head)
        })
    }
}

/// Run escapes: `FE FE n b` stands for `b` repeated `n` times (n a byte);
/// with `long`, `FE FD hi lo b` stands for `b` repeated `u16(hi, lo)` times
/// and `FE FC hi lo b` for `64 * u16(hi, lo)` times. Every other byte is
/// itself. Output stops at `cap` bytes. A few input bytes thus reach
/// [`ftpsgate::ftp::line::MAX_LINE`], and in long mode
/// [`ftpsgate::ftp::line::HARD_CAP`] (the caps are the callers').
pub fn expand(data: &[u8], cap: usize, long: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len().min(cap));
    let mut rest = data;
    while out.len() < cap {
        let (count, b, used) = match *rest {
            [0xFE, 0xFE, n, b, ..] => (usize::from(n), b, 4),
            [0xFE, unit @ (0xFD | 0xFC), hi, lo, b, ..] if long => {
                let count = usize::from(u16::from_be_bytes([hi, lo]));
                (if unit == 0xFD { count } else { count * 64 }, b, 5)
            }
            [b, ..] => (1, b, 1),
            [] => break,
        };
        out.resize((out.len() + count).min(cap), b);
        rest = &rest[used..];
    }
    out
}

/// Asserts that `reply`, as sent to a client, is well formed: code 100-599,
/// and its wire form parses back (with ftpsgate's own [`ReplyParser`]) to
/// exactly one reply with the same code and the same lines, intermediate
/// lines allowed one leading pad space (reply.rs); re-encoding that is a
/// fixpoint.
///
/// Every line of the wire form fits `MAX_REPLY_LINE`; the one exception
/// allowed is a wire form over the totals ([`over_totals`]).
pub fn assert_well_formed(reply: &Reply) {
    assert!(
        (100..=599).contains(&reply.code),
        "reply code {} out of range",
        reply.code
    );
    let wire = reply.encode();
    let mut parser = ReplyParser::new();
    parser.push(&wire);
    let back = match parser.next_reply() {
        Ok(Some(back)) => back,
        Err(ReplyError::TooLong) if over_totals(&wire) => return,
        other => panic!(
            "reply {} {} encodes to {}, which parses as {other:?}",
            reply.code,
            brief(&reply.lines.concat()),
            brief(&wire)
        ),
    };
    assert_eq!(
        parser.next_reply(),
        Ok(None),
        "reply encodes to more than one reply: {}",
        brief(&wire)
    );
    assert!(parser.is_idle(), "trailing bytes after {}", brief(&wire));
    assert_eq!(back.code, reply.code);
    let want: &[Vec<u8>] = if reply.lines.is_empty() {
        &[Vec::new()]
    } else {
        &reply.lines
    };
    assert_eq!(back.lines.len(), want.len(), "{}", brief(&wire));
    let last = want.len() - 1;
    for (i, (got, want)) in back.lines.iter().zip(want).enumerate() {
        // A line that would not fit MAX_REPLY_LINE was cut, to just within it.
        let cut = ftpsgate::ftp::reply::MAX_REPLY_LINE - 6;
        let fits = |g: &[u8], w: &[u8]| g == w || (g.len() >= cut && w.starts_with(g));
        let padded = 0 < i
            && i < last
            && is_padded(want, reply.code)
            && got.first() == Some(&b' ')
            && fits(&got[1..], want);
        assert!(
            fits(got, want) || padded,
            "line {i}: {} for {}",
            brief(got),
            brief(want)
        );
    }
    assert!(back.encode() == wire, "re-encoding is not a fixpoint");
}

/// A reply may grow on its way out (a pad space on digit-led lines, FEAT's
/// leading spaces and added lines, a longer address put in by
/// `rewrite::hide_backend`). `Reply::encode` keeps every line within
/// [`MAX_REPLY_LINE`] (what a client such as CPython ftplib enforces), so a
/// line is never too long. Only the totals may then pass ftpsgate's own
/// backend-side budget ([`MAX_REPLY_BYTES`], `MAX_REPLY_LINES`), which no
/// client enforces; a round trip may refuse a wire form only for that.
///
/// [`MAX_REPLY_LINE`]: ftpsgate::ftp::reply::MAX_REPLY_LINE
/// [`MAX_REPLY_BYTES`]: ftpsgate::ftp::reply::MAX_REPLY_BYTES
/// Whether `encode` pads this intermediate line (reply.rs).
fn is_padded(line: &[u8], code: u16) -> bool {
    let continuation =
        line.len() >= 4 && line[..3] == *format!("{code:03}").as_bytes() && line[3] == b'-';
    !continuation && line.first().is_some_and(u8::is_ascii_digit)
}

/// Whether a reply's wire form is over the totals [`ReplyParser`] allows:
/// more than `MAX_REPLY_BYTES` of lines without their CRLF, or
/// `MAX_REPLY_LINES` lines. (No line may be over `MAX_REPLY_LINE`.)
pub fn over_totals(wire: &[u8]) -> bool {
    use ftpsgate::ftp::reply::{MAX_REPLY_BYTES, MAX_REPLY_LINES};
    let mut total = 0;
    let mut lines = 0;
    for line in wire.split_inclusive(|&b| b == b'\n') {
        lines += 1;
        total += line.len() - 1 - usize::from(line.ends_with(b"\r\n"));
    }
    total > MAX_REPLY_BYTES || lines >= MAX_REPLY_LINES
}

/// A short, printable description of possibly huge bytes for failure messages.
pub fn brief(bytes: &[u8]) -> String {
    let head = &bytes[..bytes.len().min(80)];
    format!(
        "{:?}{} ({} bytes)",
        String::from_utf8_lossy(head),
        if head.len() < bytes.len() { "..." } else { "" },
        bytes.len()
    )
}
