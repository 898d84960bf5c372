//! Fuzz target `csv_ticks`: see `cambio_fuzz::csv_ticks`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| cambio_fuzz::csv_ticks(data));
