//! Fuzz target `inspect`: [`harness::inspect`] (see fuzz/harness.rs and README.md, "Fuzzing").
#![no_main]

#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::inspect(data));
