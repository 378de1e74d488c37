#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| llmhop::fuzzing::response_head(data));
