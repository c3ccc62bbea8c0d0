#!/usr/bin/env bash
# The lab demo: builds the reference topology in network namespaces (source, two routers
# running pgm-routerd, two receiver LANs, one lossy, a DLR running pgm-dlrd), runs a transfer
# and prints what the routers and the DLR did. Run as root; it installs missing system
# packages itself. Options are passed on to pgm-lab (--keep, --count N, --loss PCT, --no-dlr).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -eq 0 ]; then
    scripts/install-deps.sh
fi
exec cargo run --quiet -p pgm-netns-tests --bin pgm-lab -- "$@"
