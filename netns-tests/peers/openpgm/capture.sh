#!/usr/bin/env bash
# Records the reference captures of real OpenPGM 5.3 traffic kept in core/tests/data/openpgm/
# (see WIRE-NOTES.md there).  Each capture is a short session between two network namespaces
# joined by a veth pair, taken on the sender's side of the veth with full packets:
#   - the sender starts first and the receiver joins ~1 s later (so the receiver meets ODATA of
#     an unknown source and sends an SPMR);
#   - 200 messages of 1..2000 bytes (pattern of PATTERN.md, seed 7): about a quarter are longer
#     than one TPDU, so OPT_FRAGMENT appears;
#   - nftables, in the receiver's namespace (after the capture point, so the capture still shows
#     the lost packets), drops bursts of 10 ODATA out of every 80 and 5% of all PGM packets at
#     random, so NAKs (with OPT_NAK_LIST: OpenPGM batches), NCFs and RDATA appear;
#   - the sender closes with pgm_close(sock, TRUE) while the capture still runs (SPM with OPT_FIN).
# Captures:  pgm-ip.pcap (PGM/IP, no Router Alert: OpenPGM's default)
#            pgm-ip-ra.pcap (PGM/IP with PGM_IP_ROUTER_ALERT on at both ends)
#            pgm-udp.pcap (PGM/UDP, both encapsulation ports 3056, repairs work)
#            pgm-udp-default-ports.pcap (PGM/UDP with OpenPGM's default ports 3055/3056: the
#              sender only listens on 3056, so NAKs sent to 3055 bounce with ICMP port unreachable;
#              first 450 packets)
# Usage (root):  ./capture.sh [OUTDIR]     (default: <repo>/core/tests/data/openpgm)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
OUT="${1:-$here/../../../core/tests/data/openpgm}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
[ "$(id -u)" = 0 ] || { echo "capture.sh: needs root" >&2; exit 2; }
"$here/build.sh" >/dev/null
PEER="$here/build/pgmpeer"

P="opgm-$$"
NS_S="$P-s" NS_R="$P-r"
PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    ip netns del "$NS_S" 2>/dev/null || true
    ip netns del "$NS_R" 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ip netns add "$NS_S"
ip netns add "$NS_R"
ip link add veth-s netns "$NS_S" type veth peer name veth-r netns "$NS_R"
ip -n "$NS_S" addr add 10.78.0.2/24 dev veth-s
ip -n "$NS_R" addr add 10.78.0.3/24 dev veth-r
for ns in "$NS_S" "$NS_R"; do ip -n "$ns" link set lo up; done
ip -n "$NS_S" link set veth-s up
ip -n "$NS_R" link set veth-r up
ip -n "$NS_S" route add 224.0.0.0/4 dev veth-s
ip -n "$NS_R" route add 224.0.0.0/4 dev veth-r
# no IPv6 chatter in the captures
for ns in "$NS_S" "$NS_R"; do ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1; done
ip netns exec "$NS_R" nft -f - <<'EOF'
table inet opgmloss {
    chain in {
        type filter hook prerouting priority -300; policy accept;
        # bursts: 10 consecutive ODATA (PGM type byte 0x04) lost out of every 80, so that the
        # receiver batches NAKs into OPT_NAK_LIST; then 5% random loss of every PGM packet.
        ip protocol 113 @th,32,8 4 numgen inc mod 80 < 10 counter drop
        udp dport { 3055, 3056 } @th,96,8 4 numgen inc mod 80 < 10 counter drop
        ip protocol 113 numgen random mod 100 < 5 counter drop
        udp dport { 3055, 3056 } numgen random mod 100 < 5 counter drop
    }
}
EOF
GROUP=239.192.78.1
sleep 1   # let DAD/IGMP settle before capturing

run() {   # $1 = file name, $2 = max packets (0 = all), rest = options for both peers
    local file="$1" maxpkts="$2"; shift 2
    local cnt=(); [ "$maxpkts" != 0 ] && cnt=(-c "$maxpkts")
    ip netns exec "$NS_S" tcpdump -Z root -q -U -i veth-s -s 0 "${cnt[@]}" -w "$OUT/$file" 'ip and (proto 113 or udp or icmp)' 2>/dev/null &
    local td=$!; PIDS+=("$td")
    sleep 1
    ip netns exec "$NS_S" "$PEER" send --network "10.78.0.2;$GROUP" "$@" --count 200 --max-size 2000 \
        --seed 7 --interval 15 --linger 30 >/dev/null 2>&1 &
    local sp=$!; PIDS+=("$sp")
    sleep 1.2
    ip netns exec "$NS_R" "$PEER" recv --network "10.78.0.3;$GROUP" "$@" --count 200 --max-size 2000 \
        --seed 7 --any-start --timeout 20 $RECV_EXTRA 2>/dev/null || true
    sleep 0.5
    kill -INT "$sp" 2>/dev/null || true   # ends the linger: pgm_close (flush) sends SPM + OPT_FIN
    wait "$sp" 2>/dev/null || true
    sleep 1
    kill "$td" 2>/dev/null || true
    wait "$td" 2>/dev/null || true
    echo "$file: $(stat -c %s "$OUT/$file") bytes"
}

RECV_EXTRA=""
run pgm-ip.pcap 0
# OpenPGM sizes TPDUs from PGM_MTU assuming a 20-byte IP header: with Router Alert a full-size
# packet is PGM_MTU + 4 bytes, which a receiver with the same PGM_MTU discards (its repairs of
# full-size fragments never complete).  So the receiver gets a PGM_MTU 12 bytes larger here.
RECV_EXTRA="--mtu 1500"
run pgm-ip-ra.pcap 0 --router-alert on
RECV_EXTRA=""
run pgm-udp.pcap 0 --udp --ucast-port 3056 --mcast-port 3056
# NAKs go to port 3055 where nobody listens: the receiver NAKs until its timeout (first 450 packets).
run pgm-udp-default-ports.pcap 450 --udp
