//! Fuzz target `checkpoint`: see `cambio_fuzz::checkpoint`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| cambio_fuzz::checkpoint(data));
