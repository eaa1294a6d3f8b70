#![no_main]
//! See wsclient::fuzzing::url.
libfuzzer_sys::fuzz_target!(|data: &[u8]| wsclient::fuzzing::url(data));
