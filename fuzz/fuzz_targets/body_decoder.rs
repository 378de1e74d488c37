#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| llmhop::fuzzing::body_decoder(data));
