#!/usr/bin/env bash
# Self-test of the OpenPGM peer: OpenPGM send -> OpenPGM recv between two network namespaces
# joined by a veth pair, over PGM/UDP and PGM/IP, with and without random loss on everything the
# receiver gets (nftables, in the receiver's namespace: no netem on this kernel).
#
# Usage (root):  ./selftest.sh [options]
#   --count N        messages per run (default 20000, mixed sizes 1..8192 bytes)
#   --modes "udp ip" encapsulations to test (default both)
#   --losses "0 5"   loss percentages to test (default "0 5")
#   --rate B         sender PGM_TXW_MAX_RTE in bytes/s for lossless runs (default 20000000)
#   --loss-rate B    the same for runs with loss (default 10000000)
#                    0 = uncapped.  Measured on a 2-core VM (README.md, "Self-test results"):
#                    uncapped mostly fails even without loss (the OpenPGM receiver overruns its
#                    socket buffer), 20 MB/s always passed without loss; with 5% loss 10 MB/s
#                    passes, 20 MB/s is marginal, 40 MB/s fails.
#                    Between ~1.5 MB/s and ~8.7 MB/s an 8 KiB message never fits OpenPGM's
#                    per-millisecond rate bucket and the sender stalls (pgmpeer reports it).
#   --timeout S      receiver timeout per run (default 120)
#   --pcap DIR       also capture each run (headers only) into DIR
#   --peer PATH      pgmpeer binary (default: build it into build/pgmpeer)
#   --send-opts "..." / --recv-opts "..."   extra pgmpeer options (e.g. "--txw-sqns 16384")
# Prints one line per run:  MATRIX mode=.. loss=..% rate=.. RESULT ...   and exits non-zero if
# any run failed.  Everything it creates (namespaces opgm-<pid>-*, processes, nft tables inside
# those namespaces) is removed on exit, also on failure or ^C.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
COUNT=20000 MODES="udp ip" LOSSES="0 5" RATE=20000000 LOSS_RATE=10000000 TIMEOUT=120 PCAP_DIR="" PEER=""
SEND_OPTS="" RECV_OPTS=""
while [ $# -gt 0 ]; do
    case "$1" in
        --count) COUNT=$2; shift 2 ;;
        --modes) MODES=$2; shift 2 ;;
        --losses) LOSSES=$2; shift 2 ;;
        --rate) RATE=$2; shift 2 ;;
        --loss-rate) LOSS_RATE=$2; shift 2 ;;
        --timeout) TIMEOUT=$2; shift 2 ;;
        --pcap) PCAP_DIR=$2; shift 2 ;;
        --peer) PEER=$2; shift 2 ;;
        --send-opts) SEND_OPTS=$2; shift 2 ;;
        --recv-opts) RECV_OPTS=$2; shift 2 ;;
        -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done
[ "$(id -u)" = 0 ] || { echo "selftest.sh: needs root (namespaces, PGM/IP raw sockets)" >&2; exit 2; }
if [ -z "$PEER" ]; then
    "$here/build.sh" >/dev/null
    PEER="$here/build/pgmpeer"
fi

P="opgm-$$"
NS_S="$P-s" NS_R="$P-r"
PIDS=()
WORK="$(mktemp -d)"
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    ip netns del "$NS_S" 2>/dev/null || true
    ip netns del "$NS_R" 2>/dev/null || true   # also drops its nft tables
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ip netns add "$NS_S"
ip netns add "$NS_R"
ip link add veth-s netns "$NS_S" type veth peer name veth-r netns "$NS_R"
ip -n "$NS_S" addr add 10.77.0.2/24 dev veth-s
ip -n "$NS_R" addr add 10.77.0.3/24 dev veth-r
for ns in "$NS_S" "$NS_R"; do ip -n "$ns" link set lo up; done
ip -n "$NS_S" link set veth-s up
ip -n "$NS_R" link set veth-r up
ip -n "$NS_S" route add 224.0.0.0/4 dev veth-s
ip -n "$NS_R" route add 224.0.0.0/4 dev veth-r
GROUP=239.192.77.1

set_loss() {   # $1 = percent of inbound PGM packets (any type) the receiver loses
    ip netns exec "$NS_R" nft delete table inet opgmloss 2>/dev/null || true
    [ "$1" = 0 ] && return 0
    ip netns exec "$NS_R" nft -f - <<EOF
table inet opgmloss {
    chain in {
        type filter hook prerouting priority -300; policy accept;
        ip protocol 113 numgen random mod 100 < $1 counter drop
        udp dport { 3055, 3056 } numgen random mod 100 < $1 counter drop
    }
}
EOF
}

FAILED=0
for mode in $MODES; do
    case "$mode" in
        # OpenPGM receives PGM/UDP only on its multicast encapsulation port, so its sources never see
        # NAKs sent to a different unicast port: run both on 3056 (see WIRE-NOTES.md).
        udp) ENC=(--udp --ucast-port 3056 --mcast-port 3056) ;;
        ip) ENC=() ;;
        *) echo "unknown mode $mode" >&2; exit 2 ;;
    esac
    for loss in $LOSSES; do
        rate=$RATE; [ "$loss" != 0 ] && rate=$LOSS_RATE
        set_loss "$loss"
        tcpd=""
        if [ -n "$PCAP_DIR" ]; then
            mkdir -p "$PCAP_DIR"
            ip netns exec "$NS_R" tcpdump -Z root -q -i veth-r -s 128 -w "$PCAP_DIR/selftest-$mode-loss$loss.pcap" 2>/dev/null &
            tcpd=$!; PIDS+=("$tcpd"); sleep 0.5
        fi
        rcvbuf_before=$(ip netns exec "$NS_R" nstat -az 2>/dev/null | awk '$1 ~ /RcvbufErrors/ {s+=$2} END{print s+0}' || true)
        ip netns exec "$NS_R" "$PEER" recv --network "10.77.0.3;$GROUP" "${ENC[@]}" \
            --count "$COUNT" --timeout "$TIMEOUT" $RECV_OPTS >"$WORK/recv.out" 2>"$WORK/recv.err" &
        rpid=$!; PIDS+=("$rpid")
        sleep 0.5
        ip netns exec "$NS_S" "$PEER" send --network "10.77.0.2;$GROUP" "${ENC[@]}" \
            --count "$COUNT" --rate "$rate" --linger "$TIMEOUT" $SEND_OPTS >"$WORK/send.out" 2>"$WORK/send.err" &
        spid=$!; PIDS+=("$spid")
        rc=0; wait "$rpid" || rc=$?
        kill -INT "$spid" 2>/dev/null || true   # ends the sender's linger
        wait "$spid" || true
        if [ -n "$tcpd" ]; then kill "$tcpd" 2>/dev/null || true; wait "$tcpd" 2>/dev/null || true; fi
        drops=$(ip netns exec "$NS_R" nft list table inet opgmloss 2>/dev/null | grep -o 'packets [0-9]*' | awk '{s+=$2} END{print s+0}' || true)
        rcvbuf_err=$(ip netns exec "$NS_R" nstat -az 2>/dev/null | awk -v b="$rcvbuf_before" '$1 ~ /RcvbufErrors/ {s+=$2} END{print s-b}' || true)
        result=$(grep '^RESULT' "$WORK/recv.out" || echo "RESULT none")
        sent=$(grep '^SENT' "$WORK/send.out" || echo "SENT none")
        echo "MATRIX mode=$mode loss=${loss}% rate=$rate dropped_pkts=$drops udp_rcvbuf_errors=$rcvbuf_err rc=$rc $result | $sent"
        if [ "$rc" != 0 ]; then
            FAILED=1
            sed 's/^/  recv: /' "$WORK/recv.err" | grep -v 'reports as' | tail -5 || true
            sed 's/^/  send: /' "$WORK/send.err" | grep -v 'reports as' | tail -5 || true
        fi
    done
done
exit $FAILED
