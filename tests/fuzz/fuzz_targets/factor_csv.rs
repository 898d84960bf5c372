//! Fuzz target `factor_csv`: see `cambio_fuzz::factor_csv`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| cambio_fuzz::factor_csv(data));
