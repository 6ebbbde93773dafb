//! Replays the saved fuzz inputs on stable: every file in `fuzz/corpus/<target>/`
//! and `fuzz/artifacts/<target>/` goes through the same target body as under
//! `cargo +nightly fuzz run <target>` (`fuzz/common/`, included here), so
//! `cargo test` re-checks every saved input and its invariants on every run.
//! A target with an empty corpus fails: the replay cannot pass vacuously.
//! docs/fuzzing.md says how the corpus is grown and minimised.

use std::fs;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};

#[path = "../fuzz/common/mod.rs"]
mod common;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// The files directly under `dir`, sorted; none when it does not exist.
fn inputs(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

/// Runs every corpus and artifact input of `target`, naming the one that fails.
fn replay(target: &str) {
    let run = common::TARGETS
        .iter()
        .find(|(name, _)| *name == target)
        .map(|(_, run)| *run)
        .expect("known target");
    let corpus = inputs(&fuzz_dir().join("corpus").join(target));
    assert!(
        !corpus.is_empty(),
        "fuzz/corpus/{target} is empty: the replay would check nothing"
    );
    let artifacts = inputs(&fuzz_dir().join("artifacts").join(target));
    for path in corpus.iter().chain(&artifacts) {
        let data = fs::read(path).expect("readable input");
        if panic::catch_unwind(AssertUnwindSafe(|| run(&data))).is_err() {
            panic!("fuzz target `{target}` fails on {}", path.display());
        }
    }
}

#[test]
fn line() {
    replay("line");
}

#[test]
fn command() {
    replay("command");
}

#[test]
fn reply() {
    replay("reply");
}

#[test]
fn addr() {
    replay("addr");
}

#[test]
fn config() {
    replay("config");
}

#[test]
fn session() {
    replay("session");
}

#[test]
fn proxy_header() {
    replay("proxy_header");
}

#[test]
fn record() {
    replay("record");
}

/// Every corpus directory belongs to a target the replay knows (and each
/// target has a `#[test]` above).
#[test]
fn corpus_directories_match_the_targets() {
    let mut dirs: Vec<String> = fs::read_dir(fuzz_dir().join("corpus"))
        .expect("fuzz/corpus")
        .map(|e| {
            e.expect("directory entry")
                .file_name()
                .into_string()
                .expect("UTF-8 name")
        })
        .collect();
    dirs.sort();
    let mut targets: Vec<String> = common::TARGETS.iter().map(|(n, _)| n.to_string()).collect();
    targets.sort();
    assert_eq!(dirs, targets);
}

/// The reply-cap finding (docs/fuzzing.md, "Findings"), fixed: a backend
/// line the parser accepts at the cap used to come out of `Reply::encode`
/// one byte longer (the pad space before a digit) and be refused by a
/// client with the same cap; now it is cut to fit.
#[test]
fn a_padded_line_at_the_reply_line_cap_still_fits_it() {
    use ftpsgate::ftp::reply::{ReplyParser, MAX_REPLY_LINE};

    let mut backend = b"211-status\r\n".to_vec();
    backend.extend_from_slice(&vec![b'9'; MAX_REPLY_LINE - 1]);
    backend.extend_from_slice(b"\r\n211 End\r\n");
    let mut parser = ReplyParser::new();
    parser.push(&backend);
    let reply = parser.next_reply().expect("accepted").expect("complete");
    let mut client = ReplyParser::new();
    client.push(&reply.encode());
    let back = client
        .next_reply()
        .expect("a client with the same cap accepts it");
    assert_eq!(back.map(|r| r.code), Some(211));
}
