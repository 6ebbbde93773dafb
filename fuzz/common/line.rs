//! Target `line`: [`LineDecoder`] (control-line framing, Telnet stripping, caps).
//!
//! Input: a [`Stream`] (bytes plus read sizes; run escapes reach
//! [`MAX_LINE`] and [`HARD_CAP`] cheaply); its [`Stream::extra`] bits pick
//! the decoder's line cap ([`CAPS`]: the default, `max_command_line`'s
//! range, and the edges of `LineDecoder::with_max_line`). Invariants:
//! - `decode` consumes at least one byte and never more than it was given,
//!   and stops early only at an event;
//! - the events do not depend on how the bytes are split into reads;
//! - a line holds no LF and at most `cap - 1` bytes;
//! - for Telnet-free input (no 0xFF) the events are exactly those of the
//!   framing rule written out plainly in [`plain_framing`] (which does not
//!   depend on reads either).

use ftpsgate::ftp::line::{LineDecoder, LineEvent, HARD_CAP, MAX_LINE};

use super::{brief, Stream};

/// Streams are capped a little above the line cap (enough for `TooLong`),
/// or, in long mode, a little above the hard cap (enough for `Overflow`).
const SHORT: usize = MAX_LINE + 64;
const LONG: usize = HARD_CAP + 256;

/// Line caps for `LineDecoder::with_max_line`: the default, the config's
/// `max_command_line` bounds (512, and 64 KiB = [`HARD_CAP`]) and the
/// degenerate ones (0 and 1; above `HARD_CAP` is `HARD_CAP`).
pub const CAPS: [usize; 8] = [MAX_LINE, 0, 1, 2, 512, MAX_LINE + 1, HARD_CAP, HARD_CAP + 1];

/// The target body.
pub fn run(data: &[u8]) {
    let stream = Stream::decode(data, SHORT, LONG);
    let asked = CAPS[usize::from(stream.extra)];
    // The documented range of the cap (line.rs `with_max_line`).
    let cap = asked.clamp(1, HARD_CAP);
    let split = decode(stream.reads(), asked);
    for event in &split {
        if let LineEvent::Line(line) = event {
            assert!(!line.contains(&b'\n'), "LF inside {}", brief(line));
            assert!(line.len() < cap, "line of {} bytes", line.len());
        }
    }
    // Telnet-free input has a reference that does not depend on reads (and
    // costs less than a second decoder pass); otherwise decode it in one read.
    let (reference, what) = if stream.bytes.contains(&0xFF) {
        (
            decode(std::iter::once(&stream.bytes[..]), asked),
            "one read",
        )
    } else {
        (plain_framing(&stream.bytes, cap), "the plain framing rule")
    };
    assert!(split == reference, "events differ from {what}");
}

/// Feeds the reads to one decoder and collects the events.
fn decode<'a>(reads: impl Iterator<Item = &'a [u8]>, cap: usize) -> Vec<LineEvent> {
    let mut decoder = LineDecoder::with_max_line(cap);
    let mut events = Vec::new();
    for read in reads {
        let mut rest = read;
        while !rest.is_empty() {
            let (n, event) = decoder.decode(rest);
            assert!(0 < n && n <= rest.len(), "consumed {n} of {}", rest.len());
            assert!(
                n == rest.len() || event.is_some(),
                "stopped early without an event"
            );
            rest = &rest[n..];
            events.extend(event);
        }
    }
    events
}

/// The framing rule without Telnet (line.rs docs, PROTOCOL.md §1.1): LF ends
/// a line and one CR before it is dropped; a line of `cap` bytes or more
/// before its LF (CR included) is `TooLong`; the `HARD_CAP + 1`-th byte
/// without an LF is `Overflow`, and framing starts afresh after it.
fn plain_framing(bytes: &[u8], cap: usize) -> Vec<LineEvent> {
    let mut events = Vec::new();
    let mut line = Vec::new();
    let mut seen = 0usize;
    for &b in bytes {
        if b == b'\n' {
            events.push(if seen >= cap {
                LineEvent::TooLong
            } else {
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                LineEvent::Line(std::mem::take(&mut line))
            });
            line.clear();
            seen = 0;
            continue;
        }
        seen += 1;
        if seen > HARD_CAP {
            events.push(LineEvent::Overflow);
            line.clear();
            seen = 0;
        } else if seen < cap {
            line.push(b);
        }
    }
    events
}
