#!/usr/bin/env bash
# Installs the system packages the tests and the lab need, when they are missing.
#
# Debian/Ubuntu only (apt). Needs root to install; without root it lists what is missing and
# exits non-zero if anything is.
#
#   tshark       the independent decoder the wire-format tests check our packets against
#   libpgm-dev   OpenPGM 5.3, the reference peer of the interop tests (C API, built by the tests)
#   pkg-config   to find OpenPGM's compile flags
#   gcc          to build the OpenPGM peer
#   g++          to build libFuzzer for the engine fuzz targets (scripts/fuzz.sh)
#   iproute2     `ip netns`, veth, bridges for the namespace topologies
#   nftables     random loss and PGM-type filtering in the namespace tests
#   iptables     the same, for the rules that use it
#   smcroute     kernel multicast routing baseline beside the router daemon
#   tcpdump      packet captures in the namespace tests
#   prometheus   promtool (checks deploy/prometheus and the daemons' /metrics) and the server the
#                ops tests scrape the router with
#   systemd      systemd-analyze and systemd-sysusers, to check deploy/systemd (deploy/check.sh)
#   jq           JSON checks of the Grafana dashboard (deploy/check.sh)
#
# and, from crates.io with cargo (into $CARGO_HOME/bin, root not needed), when the pinned version
# is not there yet:
#
#   duvet        RFC 3208 compliance: every `//#` quote is RFC text (scripts/duvet.sh)
#   cargo-fuzz   coverage-guided fuzzing of the engines on stable (scripts/fuzz.sh)
set -euo pipefail

# Pinned: its requirement extraction and quote matching decide what scripts/duvet.sh accepts and
# what docs/rfc3208-compliance.md lists. Bump it with a check of the report's diff.
duvet_version=0.4.3

# duvet: `cargo install --list` prints "duvet v0.4.3:" when that version is installed (duvet
# itself has no --version). A fresh build takes 3 to 6 minutes on 2 cores; later runs skip it.
if ! cargo install --list 2>/dev/null | grep -qx "duvet v${duvet_version}:"; then
    echo "installing: duvet ${duvet_version} (cargo install)" >&2
    cargo install duvet --version "=${duvet_version}" --locked --quiet
fi

# Pinned like duvet: scripts/fuzz.sh depends on its command line. A fresh build takes about a
# minute on 2 cores; later runs skip it.
cargo_fuzz_version=0.13.2
if ! cargo install --list 2>/dev/null | grep -qx "cargo-fuzz v${cargo_fuzz_version}:"; then
    echo "installing: cargo-fuzz ${cargo_fuzz_version} (cargo install)" >&2
    cargo install cargo-fuzz --version "=${cargo_fuzz_version}" --locked --quiet
fi

packages=(tshark libpgm-dev pkg-config gcc g++ iproute2 nftables iptables smcroute tcpdump
    prometheus systemd jq)

missing=()
for p in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done

if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "missing system packages: ${missing[*]}" >&2
    echo "install them as root: apt-get install ${missing[*]}" >&2
    exit 1
fi

echo "installing: ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
# tshark asks whether non-root users may capture; answer no without a prompt.
echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
