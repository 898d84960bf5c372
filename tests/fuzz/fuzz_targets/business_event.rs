//! Fuzz target `business_event`: see `cambio_fuzz::business_event`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| cambio_fuzz::business_event(data));
