#!/usr/bin/env bash
# Runs one case of the interop matrix (netns-tests/tests/interop_openpgm.rs) by hand with an
# OpenPGM receiver, records it, and summarises it with pgmtrace.py: the tool for finding out
# why an OpenPGM receiver declared loss.
#
#   ./interop-capture.sh ours|openpgm udp|ip LOSS OUTDIR [extra sender options...]
#
# As the test does: two namespaces joined by a veth, an OpenPGM receiver (pgmpeer recv, its
# default windows and NAK timers), the sender (`pgm send`, ours, or `pgmpeer send` with
# --txw-sqns 32768) at --rate 10000000 with 20,000 mixed-size messages (COUNT=... to change),
# ports 3056/3056 over PGM/UDP, and LOSS percent of the receiver's inbound data dropped by
# nftables (UDP to 3056, or PGM/IP to a group). In addition, each dropped packet is logged to
# NFLOG group 5, and two captures are kept in OUTDIR:
#   rcv.pcap    the receiver's veth, first 400 bytes of each packet (tcpdump sees a packet
#               before the loss rule drops it, so this is everything that arrived or was lost);
#   drops.pcap  packets the loss rule dropped (tcpdump -i nflog:5). NFLOG delivers only some
#               of them (about 15% at this rate in our runs, with or without a larger buffer
#               or queue-threshold): a packet listed there was dropped, one not listed may have
#               been too; the rule's counter is the total;
# with rx.out/rx.err (pgmpeer, --verbose: "gap: expected N got M" names lost messages) and
# tx.err. Then:
#   ./pgmtrace.py summary OUTDIR/rcv.pcap OUTDIR/drops.pcap
#   ./pgmtrace.py message OUTDIR/rcv.pcap N OUTDIR/drops.pcap    # N from a "gap" line
# Needs root, nftables, tcpdump; PGM=path/to/pgm (default: the workspace's target/debug/pgm).
# Namespaces pgmcap-$$-{s,r}, addresses 10.79.0.1-2/24, group 239.192.79.1; all removed on exit.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
[ $# -ge 4 ] || { sed -n '2,22p' "$0" >&2; exit 2; }
SND="$1" ENC="$2" LOSS="$3" OUT="$4"
shift 4
[ "$(id -u)" = 0 ] || { echo "interop-capture.sh: needs root" >&2; exit 2; }
case "$SND" in ours | openpgm) ;; *) echo "sender: ours or openpgm" >&2; exit 2 ;; esac
case "$ENC" in udp | ip) ;; *) echo "encapsulation: udp or ip" >&2; exit 2 ;; esac
COUNT="${COUNT:-20000}"
PGM="${PGM:-$here/../../../target/debug/pgm}"
[ "$SND" = openpgm ] || [ -x "$PGM" ] || { echo "no $PGM: cargo build -p pgm-core --bin pgm" >&2; exit 2; }
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
PEER="$OUT/pgmpeer"
"$here/build.sh" "$PEER" >/dev/null

T="pgmcap_$$" S="pgmcap-$$-s" R="pgmcap-$$-r"
PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    ip netns del "$S" 2>/dev/null || true
    ip netns del "$R" 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ip netns add "$S"
ip netns add "$R"
ip link add eth0 netns "$S" type veth peer name eth0 netns "$R"
ip -n "$S" addr add 10.79.0.1/24 dev eth0
ip -n "$R" addr add 10.79.0.2/24 dev eth0
for ns in "$S" "$R"; do
    ip -n "$ns" link set lo up
    ip -n "$ns" link set eth0 up
    ip -n "$ns" route add 224.0.0.0/4 dev eth0
    ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1
    # UDP GSO trains would cross the veth whole (one drop = up to 64 packets): cut them first.
    ip -n "$ns" link set dev eth0 gso_max_segs 1
done
GROUP=239.192.79.1
if [ "$LOSS" -gt 0 ]; then
    if [ "$ENC" = udp ]; then sel="udp dport 3056"; else sel="ip protocol 113 ip daddr 224.0.0.0/4"; fi
    ip netns exec "$R" nft -f - <<EOF
table inet $T {
    chain in {
        type filter hook prerouting priority -300; policy accept;
        iifname "eth0" $sel numgen random mod 100 < $LOSS counter log group 5 drop
    }
}
EOF
fi
ip netns exec "$R" tcpdump -i eth0 -w "$OUT/rcv.pcap" -U -n -Z root -s 400 2>"$OUT/tcpdump-rcv.err" &
td1=$!
PIDS+=($td1)
ip netns exec "$R" tcpdump -i nflog:5 -w "$OUT/drops.pcap" -U -n -Z root -s 400 2>"$OUT/tcpdump-drops.err" &
td2=$!
PIDS+=($td2)
sleep 1

if [ "$ENC" = udp ]; then
    peer_encap=(--udp --ucast-port 3056 --mcast-port 3056)
    ours_encap=(--unicast-port 3056 --multicast-port 3056)
else
    peer_encap=()
    ours_encap=(--ip)
fi
ip netns exec "$R" "$PEER" recv --network "10.79.0.2;$GROUP" --count "$COUNT" --timeout 150 \
    --verbose "${peer_encap[@]}" >"$OUT/rx.out" 2>"$OUT/rx.err" &
rx=$!
PIDS+=($rx)
sleep 0.5
if [ "$SND" = ours ]; then
    ip netns exec "$S" "$PGM" send --network "10.79.0.1;$GROUP" --count "$COUNT" --rate 10000000 \
        --linger 10 "${ours_encap[@]}" "$@" >"$OUT/tx.out" 2>"$OUT/tx.err" &
else
    bus=()
    [ "$ENC" = ip ] && bus=(--bus)   # as the test: over PGM/IP a send-only socket takes no NAKs
    ip netns exec "$S" "$PEER" send --network "10.79.0.1;$GROUP" --count "$COUNT" --rate 10000000 \
        --linger 10 --txw-sqns 32768 "${peer_encap[@]}" "${bus[@]}" "$@" >"$OUT/tx.out" 2>"$OUT/tx.err" &
fi
tx=$!
PIDS+=($tx)
status=0
wait "$rx" || status=$?
sleep 0.3
kill -INT "$tx" "$td1" "$td2" 2>/dev/null || true
wait "$tx" "$td1" "$td2" 2>/dev/null || true
cat "$OUT/rx.out"
grep -m 5 "gap:" "$OUT/rx.err" || true
if [ "$LOSS" -gt 0 ]; then
    ip netns exec "$R" nft list table inet "$T" | grep -o "counter packets [0-9]*" || true
fi
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 "$here/pgmtrace.py" summary "$OUT/rcv.pcap" "$OUT/drops.pcap" || true
exit "$status"
