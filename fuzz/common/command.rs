//! Target `command`: [`Command::parse`] and [`Command::encode`] on one framed line.
//!
//! Input: the line, as is. Invariants:
//! - parse accepts exactly the lines whose verb (up to the first space) is
//!   1-8 ASCII letters and whose argument has no NUL, CR or LF; a bad verb is
//!   `BadVerb` whatever the argument;
//! - the verb is the upper-cased word and round-trips through
//!   `Verb::from_word`; the argument is kept byte for byte;
//! - `encode` is one CRLF-terminated line that a [`LineDecoder`] reads back
//!   into the same command (or reports `TooLong` exactly when the line is
//!   over [`MAX_LINE`]);
//! - Display and Debug never show a PASS or ACCT argument.

use ftpsgate::ftp::command::{Command, CommandError, Verb};
use ftpsgate::ftp::line::{LineDecoder, LineEvent, MAX_LINE};

/// Longer lines would meet the decoder's hard cap (its own target covers that).
const MAX_INPUT: usize = 4 * MAX_LINE;

/// The target body.
pub fn run(data: &[u8]) {
    if data.len() > MAX_INPUT {
        return;
    }
    let (verb, arg) = match data.iter().position(|&b| b == b' ') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let verb_ok = (1..=8).contains(&verb.len()) && verb.iter().all(u8::is_ascii_alphabetic);
    let arg_ok = !arg.iter().any(|&b| b == 0 || b == b'\r' || b == b'\n');
    let command = match Command::parse(data) {
        Err(CommandError::BadVerb) => return assert!(!verb_ok, "{data:?} refused as BadVerb"),
        Err(CommandError::ControlChar) => {
            return assert!(verb_ok && !arg_ok, "{data:?} refused as ControlChar")
        }
        Ok(command) => command,
    };
    assert!(verb_ok && arg_ok, "{data:?} accepted");
    let word = String::from_utf8(verb.to_ascii_uppercase()).expect("ASCII verb");
    assert_eq!(command.verb.as_str(), word);
    assert_eq!(Verb::from_word(&word), command.verb);
    assert_eq!(command.arg, arg);
    let _ = (command.class(), command.arg_str());

    check_masking(&command);
    check_wire(&command, word.len() + arg.len());
}

/// The wire form reads back as the same command through the line decoder.
fn check_wire(command: &Command, text_len: usize) {
    let wire = command.encode();
    assert!(wire.ends_with(b"\r\n"));
    assert!(
        !wire[..wire.len() - 2].contains(&b'\n'),
        "LF inside {wire:?}"
    );
    let mut decoder = LineDecoder::new();
    let (n, event) = decoder.decode(&wire);
    assert_eq!(n, wire.len(), "the wire form is more than one line");
    // Decoded length: verb, SP when there is an argument, argument, CRLF.
    let sp = usize::from(!command.arg.is_empty());
    if text_len + sp + 2 > MAX_LINE {
        assert_eq!(event, Some(LineEvent::TooLong));
        return;
    }
    match event {
        Some(LineEvent::Line(line)) => assert_eq!(Command::parse(&line), Ok(command.clone())),
        other => panic!("{wire:?} decodes as {other:?}"),
    }
}

/// Credentials never reach a log line.
fn check_masking(command: &Command) {
    if matches!(command.verb, Verb::Pass | Verb::Acct) && !command.arg.is_empty() {
        let masked = format!("{} ****", command.verb);
        assert_eq!(command.to_string(), masked);
        assert_eq!(format!("{command:?}"), masked);
    }
}
