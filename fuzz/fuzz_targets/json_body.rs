//! cargo-fuzz target `json_body`: see `harness::json_body` (fuzz/harness/mod.rs) for what it checks.
#![no_main]

#[path = "../harness/mod.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::json_body(data));
