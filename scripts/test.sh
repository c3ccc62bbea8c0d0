#!/usr/bin/env bash
# The project's one test command: installs what the tests need, then runs every check and
# every test. `.ci/run` calls exactly this. Run it as root so the namespace tests run too.
#
#   scripts/test.sh
#
# Environment:
#   PGM_FUZZ_ITERATIONS   inputs for the no-panic fuzz test (default 200000)
#   PGM_FUZZ_SECONDS      seconds of coverage-guided fuzzing per engine (default 15)
#   PGM_ENGINE_FUZZ_ITERATIONS  seeded inputs per engine in fuzz-harness/tests (default 300)
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh

export CARGO_TERM_COLOR=never

echo "== format"
cargo fmt --all --check

echo "== RFC 3208 compliance: every //# quote verbatim, docs/rfc3208-compliance.md"
scripts/duvet.sh

echo "== lints"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== layering: wire and proto build without net/host"
cargo check -p pgm-core --no-default-features --locked

echo "== docs"
RUSTDOCFLAGS="-D warnings" cargo doc -p pgm-core --no-deps --locked -q

echo "== binaries the namespace tests run"
cargo build --workspace --bins --locked

echo "== tests"
cargo test --workspace --locked

echo "== engine fuzzing: cargo-fuzz on stable, bounded (scripts/fuzz.sh)"
scripts/fuzz.sh
