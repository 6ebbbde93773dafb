//! cargo-fuzz target `record`: a thin wrapper; the body and its invariants
//! are in `fuzz/common/record.rs`, which `tests/fuzz_corpus.rs` replays on
//! stable.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ftpsgate_fuzz::record::run(data));
