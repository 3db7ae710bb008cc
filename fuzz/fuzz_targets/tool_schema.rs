//! cargo-fuzz target `tool_schema`: see `harness::tool_schema` (fuzz/harness/mod.rs) for what it checks.
#![no_main]

#[path = "../harness/mod.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::tool_schema(data));
