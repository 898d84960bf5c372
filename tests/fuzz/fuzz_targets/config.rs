//! Fuzz target `config`: see `cambio_fuzz::config`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| cambio_fuzz::config(data));
