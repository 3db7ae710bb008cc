//! cargo-fuzz target `http_head`: see `harness::http_head` (fuzz/harness/mod.rs) for what it checks.
#![no_main]

#[path = "../harness/mod.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::http_head(data));
