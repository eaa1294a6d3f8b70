#![no_main]
//! See wsclient::fuzzing::config.
libfuzzer_sys::fuzz_target!(|data: &[u8]| wsclient::fuzzing::config(data));
