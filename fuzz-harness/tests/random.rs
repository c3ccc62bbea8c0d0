//! The engine harness on the stable toolchain without cargo-fuzz: a seeded generator makes
//! inputs of every length for each engine, for a bounded count. `PGM_ENGINE_FUZZ_ITERATIONS`
//! sets the count per engine (default 300: a few seconds); `PGM_ENGINE_FUZZ_SEED` the seed.
//! A failing input is printed in hex, ready for `tests/regressions.rs`. `PGM_FUZZ_KNOWN`
//! switches off the checks of known engine bugs, as for the fuzz targets (`scripts/test.sh`
//! sets it).
//!
//! This is the fallback and smoke test; the coverage-guided runs are the cargo-fuzz targets
//! in `fuzz/` (see the README's "Fuzzing").

use std::panic::{AssertUnwindSafe, catch_unwind};

/// splitmix64.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn run(engine: &str) {
    let (_, f) = pgm_fuzz_harness::ENGINES
        .iter()
        .find(|(n, _)| *n == engine)
        .expect("engine");
    let iterations = env("PGM_ENGINE_FUZZ_ITERATIONS", 300);
    let seed = env("PGM_ENGINE_FUZZ_SEED", 0x5EED);
    let mut rng = Rng(seed ^ engine.len() as u64);
    let mut input = Vec::new();
    for i in 0..iterations {
        input.clear();
        // Short inputs are a few operations, long ones a few hundred.
        let len = match rng.next() % 4 {
            0 => rng.next() % 64,
            1 => rng.next() % 512,
            _ => rng.next() % 4096,
        };
        input.extend((0..len).map(|_| rng.next() as u8));
        if catch_unwind(AssertUnwindSafe(|| f(&input))).is_err() {
            let path = std::env::temp_dir().join(format!("pgm-{engine}-{seed:x}-{i}.bin"));
            let _ = std::fs::write(&path, &input);
            panic!(
                "{engine}: input {i} of seed {seed:#x} failed, written to {} (minimise it \
                 with `cargo fuzz tmin {engine} <file>`, replay it with PGM_FUZZ_TRACE=1); \
                 hex: {}",
                path.display(),
                hex(&input)
            );
        }
    }
}

#[test]
fn receiver() {
    run("receiver");
}

#[test]
fn source() {
    run("source");
}

#[test]
fn network_element() {
    run("network_element");
}

#[test]
fn repairer() {
    run("repairer");
}
