//! Fuzz target `factor_json`: see `cambio_fuzz::factor_json_target`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| cambio_fuzz::factor_json_target(data));
