//! cargo-fuzz target `config`: a thin wrapper; the body and its invariants are
//! in `fuzz/common/config.rs`, which `tests/fuzz_corpus.rs` replays on stable.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ftpsgate_fuzz::config::run(data));
