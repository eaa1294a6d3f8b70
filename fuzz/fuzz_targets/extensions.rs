#![no_main]
//! See wsclient::fuzzing::extensions.
libfuzzer_sys::fuzz_target!(|data: &[u8]| wsclient::fuzzing::extensions(data));
