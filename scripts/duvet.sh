#!/usr/bin/env bash
# RFC 3208 compliance: runs duvet (https://github.com/awslabs/duvet, installed by
# scripts/install-deps.sh) over the sources, as configured in .duvet/config.toml, then
# scripts/rfc3208_compliance.py over its JSON report.
#
#   scripts/duvet.sh
#
# Fails when
#   - a `//#` quote is not in the section its `//=` names (duvet's own error: "could not find text
#     in section ..."), or names a section the RFC does not have;
#   - a quote duvet accepted is still not verbatim RFC text: duvet forgives one edited character
#     and spacing around punctuation, the Python check does not (it compares the text with only
#     the line breaks and runs of spaces made equal, and a break after a hyphen joined);
#   - a `//#` block has no `//=` line (duvet skips it without a word), an exception has no
#     reason, or a Rust file outside .duvet/config.toml's [[source]] patterns has annotations.
#
# Annotations (duvet 0.4, pinned in scripts/install-deps.sh):
#   //= https://www.rfc-editor.org/rfc/rfc3208#section-6.3
#   //= type=test                   (in core/src unit tests; files under */tests/ are tests)
#   //# Upon expiry of NAK_RB_IVL, a receiver MUST unicast a NAK to the
#   //# upstream PGM network element for the TSI
# An exception (the code deliberately does otherwise) is `//= type=exception` plus
# `//= reason=...` at the code, or an [[exception]] with quote and reason in
# .duvet/exceptions/*.toml.
#
# Writes
#   .duvet/reports/report.html        duvet's browsable report (not checked in)
#   .duvet/reports/report.json        its data (not checked in)
#   docs/rfc3208-compliance.md        counts per section and every MUST/SHOULD of §§5-9 and
#                                     Appendix D (§14) with its citations, tests and exceptions
#                                     (checked in: commit it when it changes)
#
# Runs offline: the RFC is vendored in .duvet/specifications/ (see .duvet/config.toml).
#
# Environment:
#   DUVET   the duvet binary (default: duvet on PATH, else $CARGO_HOME/bin/duvet)
set -euo pipefail
cd "$(dirname "$0")/.."

cargo_bin="${CARGO_HOME:-$HOME/.cargo}/bin"
duvet="${DUVET:-$(command -v duvet || echo "$cargo_bin/duvet")}"
if [ ! -x "$duvet" ]; then
    echo "duvet not found (looked for $duvet): run scripts/install-deps.sh" >&2
    exit 1
fi

spec=.duvet/specifications/www.rfc-editor.org/rfc/rfc3208.txt
if [ ! -s "$spec" ]; then
    # duvet would try to download it, which CI cannot.
    echo "missing $spec (the vendored RFC 3208)" >&2
    exit 1
fi

# Requirements are extracted afresh from the RFC on every run; drop a previous run's files so
# that nothing stale (another duvet version's extraction) is read.
rm -rf .duvet/requirements .duvet/reports

log=$(mktemp)
trap 'rm -f "$log"' EXIT
# Uncoloured diagnostics: they are read in CI logs.
if ! NO_COLOR=1 "$duvet" report >"$log" 2>&1; then
    cat "$log" >&2
    echo "duvet: failed (above): every //# quote must be verbatim text of the section its //= names" >&2
    exit 1
fi

python3 scripts/rfc3208_compliance.py \
    --report .duvet/reports/report.json \
    --out docs/rfc3208-compliance.md
