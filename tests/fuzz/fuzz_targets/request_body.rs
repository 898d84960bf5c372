//! Fuzz target `request_body`: see `cambio_fuzz::request_body`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| cambio_fuzz::request_body(data));
