//! cargo-fuzz target `route_path`: see `harness::route_path` (fuzz/harness/mod.rs) for what it checks.
#![no_main]

#[path = "../harness/mod.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::route_path(data));
