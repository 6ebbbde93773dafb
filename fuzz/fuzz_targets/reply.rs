//! cargo-fuzz target `reply`: a thin wrapper; the body and its invariants are
//! in `fuzz/common/reply.rs`, which `tests/fuzz_corpus.rs` replays on stable.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ftpsgate_fuzz::reply::run(data));
