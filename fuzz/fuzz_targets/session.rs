#![no_main]
//! See wsclient::fuzzing::session.
libfuzzer_sys::fuzz_target!(|data: &[u8]| wsclient::fuzzing::session(data));
