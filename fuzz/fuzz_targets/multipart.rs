#![no_main]
#[global_allocator]
static ALLOC: llmhop_fuzz::Counting = llmhop_fuzz::Counting;
libfuzzer_sys::fuzz_target!(|data: &[u8]| llmhop::fuzzing::multipart(data, &llmhop_fuzz::live_bytes));
