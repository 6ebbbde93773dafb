//! Target `config`: `config::file::parse`, the YAML configuration text (the
//! one serde_yaml user) with its per-key error reporting.
//!
//! Input: the file text (UTF-8, lossily). Invariants:
//! - nothing panics, overflows the stack or runs away (libFuzzer's timeout);
//! - an error names the file, a key (empty only for an unknown empty key
//!   name) and a non-empty message, and a line, when given, lies within the
//!   text as libyaml counts lines (CR, LF, CRLF, NEL, LS, PS), or one past
//!   it: at the end of input libyaml starts a new line before it reports a
//!   syntax error there.

use ftpsgate::config::file;

/// The name errors must carry.
const NAME: &str = "fuzz.yaml";

/// The target body.
pub fn run(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Err(e) = file::parse(NAME, &text) {
        assert_eq!(e.source_name, NAME);
        // An empty key name (`"": 1`, `!!: x`) is reported as it is.
        let empty_key = e.message.starts_with("unknown key");
        assert!(!e.key.is_empty() || empty_key, "error without a key: {e}");
        assert!(!e.message.is_empty(), "error without a message: {e}");
        if let Some(line) = e.line {
            let lines = yaml_lines(&text);
            assert!(
                (1..=lines + 1).contains(&line),
                "line {line} of {lines}: {e}"
            );
        }
        let shown = e.to_string();
        assert!(shown.starts_with(NAME), "{shown}");
    }
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
