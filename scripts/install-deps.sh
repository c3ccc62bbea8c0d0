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
#   iproute2     `ip netns`, veth, bridges for the namespace topologies
#   nftables     random loss and PGM-type filtering in the namespace tests
#   iptables     the same, for the rules that use it
#   smcroute     kernel multicast routing baseline beside the router daemon
#   tcpdump      packet captures in the namespace tests
#   prometheus   promtool (checks deploy/prometheus and the daemons' /metrics) and the server the
#                ops tests scrape the router with
#   systemd      systemd-analyze and systemd-sysusers, to check deploy/systemd (deploy/check.sh)
#   jq           JSON checks of the Grafana dashboard (deploy/check.sh)
set -euo pipefail

packages=(tshark libpgm-dev pkg-config gcc iproute2 nftables iptables smcroute tcpdump prometheus
    systemd jq)

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
