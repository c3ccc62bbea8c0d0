//! The source engine driven by operation sequences decoded from the input (see
//! `pgm_fuzz_harness`).

#![no_main]

// Counts the heap in use, so that the harness checks it against the engine's bounds.
#[global_allocator]
static ALLOC: pgm_fuzz_harness::CountingAlloc = pgm_fuzz_harness::CountingAlloc;

libfuzzer_sys::fuzz_target!(|data: &[u8]| pgm_fuzz_harness::source(data));
