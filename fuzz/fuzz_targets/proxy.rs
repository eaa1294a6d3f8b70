#![no_main]
//! See wsclient::fuzzing::proxy.
libfuzzer_sys::fuzz_target!(|data: &[u8]| wsclient::fuzzing::proxy(data));
