#!/usr/bin/env bash
# Builds the OpenPGM peer.  Usage: ./build.sh [OUTPUT]   (default: build/pgmpeer next to this script)
# Needs: gcc, pkg-config, Debian's libpgm-dev (pkg-config name openpgm-5.3).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="${1:-$here/build/pgmpeer}"
mkdir -p "$(dirname "$out")"
# shellcheck disable=SC2046
gcc -std=gnu11 -O2 -g -Wall -Wextra -Wno-unused-parameter \
    -o "$out" "$here/pgmpeer.c" "$here/latency.c" $(pkg-config --cflags --libs openpgm-5.3) -lpthread
echo "built $out"
