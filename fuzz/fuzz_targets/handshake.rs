#![no_main]
//! See wsclient::fuzzing::handshake.
libfuzzer_sys::fuzz_target!(|data: &[u8]| wsclient::fuzzing::handshake(data));
