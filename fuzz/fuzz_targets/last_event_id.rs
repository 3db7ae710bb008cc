//! cargo-fuzz target `last_event_id`: see `harness::last_event_id` (fuzz/harness/mod.rs) for what it checks.
#![no_main]

#[path = "../harness/mod.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::last_event_id(data));
