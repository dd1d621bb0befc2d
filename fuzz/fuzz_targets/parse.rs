//! Fuzz target `parse`: [`harness::parse`] (see fuzz/harness.rs and README.md, "Fuzzing").
#![no_main]

#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::parse(data));
