//! Fuzz target `tick_json`: see `cambio_fuzz::tick_json_target`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| cambio_fuzz::tick_json_target(data));
