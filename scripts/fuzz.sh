#!/usr/bin/env bash
# Coverage-guided fuzzing of the protocol engines: the cargo-fuzz targets in fuzz/ (libFuzzer),
# on the stable toolchain (no sanitizer: ASan needs nightly), each driving one engine with
# operation sequences decoded from the input (fuzz-harness/). Bounded by time per target.
#
#   scripts/fuzz.sh                    every target for PGM_FUZZ_SECONDS (the test command's run)
#   scripts/fuzz.sh receiver 600       one target for ten minutes
#
# Targets: receiver, source, network_element, repairer. Needs cargo-fuzz
# (scripts/install-deps.sh installs it) and a C++ compiler (libFuzzer is built from source).
# Builds go to fuzz/target; each target's corpus grows in fuzz/corpus/TARGET across runs, and a
# failing input is saved in fuzz/artifacts/TARGET with the command that replays it.
#
# Environment:
#   PGM_FUZZ_SECONDS   seconds per target when none is given (default 15)
#   PGM_FUZZ_KNOWN     checks of known, not yet fixed engine bugs to switch off (comma-separated
#                      ids; see fuzz-harness/tests/regressions.rs)
set -euo pipefail
cd "$(dirname "$0")/.."

targets=(receiver source network_element repairer)
seconds=${PGM_FUZZ_SECONDS:-15}
if [ $# -ge 1 ]; then
    targets=("$1")
fi
if [ $# -ge 2 ]; then
    seconds=$2
fi

# cargo fuzz has no --locked: check here that fuzz/Cargo.lock needs no change.
cargo fetch --locked --quiet --manifest-path fuzz/Cargo.toml

build_args=(--sanitizer none)
if [ ${#targets[@]} -eq 1 ]; then
    build_args+=("${targets[0]}")
fi
cargo fuzz build "${build_args[@]}"

for t in "${targets[@]}"; do
    echo "-- $t: ${seconds} s"
    mkdir -p "fuzz/corpus/$t"
    # libFuzzer prints a status line per new input; keep the last lines (and all of a failure).
    log=$(mktemp)
    if ! cargo fuzz run --sanitizer none "$t" -- -max_total_time="$seconds" -max_len=8192 \
        -timeout=20 -print_final_stats=1 >"$log" 2>&1; then
        cat "$log"
        rm -f "$log"
        echo "fuzz target $t failed: the input is in fuzz/artifacts/$t" >&2
        exit 1
    fi
    grep -E '^(#[0-9]+[[:space:]]+DONE|stat::number_of_executed_units|stat::peak_rss_mb)' "$log" || true
    rm -f "$log"
done
