//! cargo-fuzz target `proxy_header`: a thin wrapper; the body and its
//! invariants are in `fuzz/common/proxy_header.rs`, which
//! `tests/fuzz_corpus.rs` replays on stable.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ftpsgate_fuzz::proxy_header::run(data));
