//! cargo-fuzz target `credentials`: see `harness::credentials` (fuzz/harness/mod.rs) for what it checks.
#![no_main]

#[path = "../harness/mod.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::credentials(data));
