#!/usr/bin/env python3
"""Reads PGM captures (PGM/IP or PGM/UDP) and explains repairs: what each source does on the
wire, and the full history of one lost message.

  pgmtrace.py summary CAPTURE [DROPS]
      packet counts by type, TXW_LEAD - TXW_TRAIL as the ODATA show it (the repair window in
      sequence numbers, and in seconds at the capture's ODATA rate), the SPMs (times, SPM_SQN,
      trail, lead), the options on ODATA and on RDATA, the largest TSDU, NCFs per NAK, and the
      time from a NAK to the RDATA that answers it.
  pgmtrace.py message CAPTURE INDEX [DROPS]
      every ODATA, RDATA, NAK and NCF of the sequence numbers of pattern message INDEX
      (PATTERN.md: its first fragment starts with the index), then the first packet whose trail
      passes them.

CAPTURE is a pcap taken where every packet is seen (the receiver's veth, before its nftables
loss rule: tcpdump taps a packet before netfilter drops it); DROPS is an optional pcap of
packets the loss rule dropped, logged by the rule to NFLOG (`... log group 5 drop`) and
captured with `tcpdump -i nflog:5`: those packets are marked DROPPED (NFLOG misses many, so
ODATA or RDATA that the receiver NAKs again before another copy arrives are marked lost too). `interop-capture.sh`
records both. Decoding is done here rather than with tshark, whose NAK-list field is unreliable
(core/tests/data/openpgm/WIRE-NOTES.md). Needs only the Python standard library.
"""

import statistics
import struct
import sys

NAMES = {0x00: "SPM", 0x04: "ODATA", 0x05: "RDATA", 0x08: "NAK", 0x09: "NNAK", 0x0A: "NCF",
         0x0C: "SPMR"}
OPTS = {0x01: "FRAGMENT", 0x02: "NAK_LIST", 0x03: "JOIN", 0x0D: "SYN", 0x0E: "FIN"}
UDP_PORTS = (3055, 3056)


def frames(path):
    """Yields (time, IPv4 packet) for each frame of an Ethernet, raw-IP or NFLOG pcap."""
    with open(path, "rb") as f:
        head = f.read(24)
        if len(head) < 24:
            return
        magic = struct.unpack("<I", head[:4])[0]
        end = "<" if magic in (0xA1B2C3D4, 0xA1B23C4D) else ">"
        nano = magic in (0xA1B23C4D, 0x4D3CB2A1)
        link = struct.unpack(end + "I", head[20:24])[0]
        while True:
            rec = f.read(16)
            if len(rec) < 16:
                return
            sec, frac, incl, _ = struct.unpack(end + "IIII", rec)
            data = f.read(incl)
            t = sec + frac / (1e9 if nano else 1e6)
            if link == 1:  # Ethernet
                if data[12:14] == b"\x08\x00":
                    yield t, data[14:]
            elif link == 239:  # NFLOG: TLVs, type 9 is the payload (the IP packet)
                off = 4
                while off + 4 <= len(data):
                    length, kind = struct.unpack("<HH", data[off:off + 4])
                    if length < 4:
                        break
                    if kind == 9:
                        yield t, data[off + 4:off + length]
                        break
                    off += (length + 3) & ~3
            elif link in (101, 228):  # raw IPv4
                yield t, data


def u32(b, o):
    return struct.unpack(">I", b[o:o + 4])[0] if len(b) >= o + 4 else None


def decode(t, ip):
    """One PGM packet as a dict, or None. Truncated captures (snaplen) decode what is there."""
    if len(ip) < 20 or ip[0] >> 4 != 4:
        return None
    ihl = (ip[0] & 15) * 4
    p = ip[ihl:]
    if ip[9] == 17:
        if len(p) < 8 or not set(struct.unpack(">HH", p[:4])) & set(UDP_PORTS):
            return None
        p = p[8:]
    elif ip[9] != 113:
        return None
    if len(p) < 16:
        return None
    r = {"t": t, "src": ".".join(map(str, ip[12:16])), "dst": ".".join(map(str, ip[16:20])),
         "type": p[4], "ra": ihl > 20, "tsdu": struct.unpack(">H", p[14:16])[0], "opts": []}
    b = p[16:]
    if r["type"] == 0x00:
        r.update(sqn=u32(b, 0), trail=u32(b, 4), lead=u32(b, 8))
        o = 20
    elif r["type"] in (0x04, 0x05):
        r.update(sqn=u32(b, 0), trail=u32(b, 4))
        o = 8
    elif r["type"] in (0x08, 0x09, 0x0A):
        r.update(sqn=u32(b, 0))
        o = 20
    else:
        return r
    if p[5] & 0x01 and len(b) >= o + 4:
        total = struct.unpack(">H", b[o + 2:o + 4])[0]
        q, stop = o + 4, min(o + total, len(b))
        while q + 3 <= stop:
            kind, length = b[q] & 0x7F, b[q + 1]
            body = b[q + 3:q + length]
            if kind == 0x01:
                r["frag"] = (u32(body, 1), u32(body, 5), u32(body, 9))
            elif kind == 0x02:
                r["list"] = [x for x in (u32(body, 1 + 4 * i) for i in range((length - 4) // 4))
                             if x is not None]
            r["opts"].append(OPTS.get(kind, "0x%02x" % kind))
            if b[q] & 0x80 or length == 0:
                break
            q += length
        o += total
    r["payload"] = b[o:]
    return r


def load(path):
    return [r for r in (decode(t, ip) for t, ip in frames(path)) if r]


def dropped_set(path):
    return {(r["type"], r.get("sqn"), r.get("trail"), tuple(r.get("list", ()))) for r in load(path)}


def key(r):
    return (r["type"], r.get("sqn"), r.get("trail"), tuple(r.get("list", ())))


def nak_sqns(r):
    return [r["sqn"]] + r.get("list", [])


def after(a, b):
    """Serial-number a > b (§ sequence arithmetic, 32 bits)."""
    return a != b and (a - b) % (1 << 32) < (1 << 31)


def summary(path, drops):
    pk = load(path)
    if not pk:
        sys.exit("no PGM packets in %s" % path)
    t0 = pk[0]["t"]
    counts = {}
    for r in pk:
        name = NAMES.get(r["type"], "0x%02x" % r["type"])
        counts[name] = counts.get(name, 0) + 1
    print("packets:", ", ".join("%s %d" % kv for kv in sorted(counts.items())))
    if drops:
        d = load(drops)
        dc = {}
        for r in d:
            name = NAMES.get(r["type"], "0x%02x" % r["type"])
            dc[name] = dc.get(name, 0) + 1
        print("dropped by the loss rule (as logged):", ", ".join("%s %d" % kv for kv in sorted(dc.items())))
    od = [r for r in pk if r["type"] == 0x04 and r.get("trail") is not None]
    if od:
        span = [(r["sqn"] - r["trail"]) % (1 << 32) for r in od]
        secs = od[-1]["t"] - od[0]["t"]
        rate = len(od) / secs if secs > 0 else 0
        med = statistics.median(span)
        print("ODATA lead - trail (window held, sqns): min %d, median %d, max %d; ODATA rate %.0f/s,"
              " so the median window is %.2f s" % (min(span), med, max(span), rate,
                                                     med / rate if rate else 0))
    spm = [r for r in pk if r["type"] == 0x00]
    print("SPMs (%d): " % len(spm) + ", ".join("%.3fs sqn %s trail %s lead %s" % (
        r["t"] - t0, r["sqn"], r["trail"], r["lead"]) for r in spm[:10]) + (" ..." if len(spm) > 10 else ""))
    for ty in (0x04, 0x05):
        ds = [r for r in pk if r["type"] == ty]
        if ds:
            sets = {}
            for r in ds:
                sets[tuple(r["opts"])] = sets.get(tuple(r["opts"]), 0) + 1
            print("%s options: %s; largest TSDU %d; Router Alert on %d of %d" % (
                NAMES[ty], ", ".join("%s x%d" % ("+".join(k) or "none", v) for k, v in sorted(sets.items())),
                max(r["tsdu"] for r in ds), sum(r["ra"] for r in ds), len(ds)))
    naks = [r for r in pk if r["type"] == 0x08]
    ncfs = [r for r in pk if r["type"] == 0x0A]
    if naks:
        print("NAKs %d (%d sqns), NCFs %d (%d sqns): %.2f NCF per NAK" % (
            len(naks), sum(len(nak_sqns(r)) for r in naks), len(ncfs),
            sum(len(nak_sqns(r)) for r in ncfs), len(ncfs) / len(naks)))
        # Time from each NAK'd sqn to the next RDATA of it.
        pending, delays = {}, []
        for r in pk:
            if r["type"] == 0x08:
                for s in nak_sqns(r):
                    pending.setdefault(s, r["t"])
            elif r["type"] == 0x05 and r["sqn"] in pending:
                delays.append(r["t"] - pending.pop(r["sqn"]))
        if delays:
            delays.sort()
            print("NAK -> RDATA: %d answered, median %.1f ms, 99th percentile %.1f ms, max %.1f ms;"
                  " %d NAK'd sqns never answered" % (
                      len(delays), 1e3 * statistics.median(delays),
                      1e3 * delays[int(0.99 * (len(delays) - 1))], 1e3 * delays[-1], len(pending)))


def message(path, index, drops):
    pk = load(path)
    gone = dropped_set(drops) if drops else set()
    t0 = pk[0]["t"]
    tag = struct.pack(">Q", index)
    first = next((r for r in pk if r["type"] in (0x04, 0x05) and r["payload"][:8] == tag
                  and ("frag" not in r or r["frag"][1] == 0)), None)
    if first is None:
        sys.exit("message %d: no ODATA or RDATA starts with its index" % index)
    if "frag" in first:
        sqns = sorted({r["sqn"] for r in pk if r["type"] in (0x04, 0x05) and r.get("frag", (None,))[0] == first["frag"][0]})
    else:
        sqns = [first["sqn"]]
    print("message %d: sqns %s%s" % (index, sqns, ", APDU %d bytes" % first["frag"][2] if "frag" in first else ""))
    want, lowest, passed = set(sqns), min(sqns), False
    # A data packet was lost if the receiver NAKs its sqn again before another copy arrives.
    renaked, waiting = set(), {}
    for i, r in enumerate(pk):
        if r["type"] in (0x04, 0x05) and r["sqn"] in want:
            waiting[r["sqn"]] = i
        elif r["type"] == 0x08:
            for s in want & set(nak_sqns(r)):
                if s in waiting:
                    renaked.add(waiting.pop(s))
    for i, r in enumerate(pk):
        hit = (r["type"] in (0x04, 0x05) and r["sqn"] in want) or (
            r["type"] in (0x08, 0x0A) and want & set(nak_sqns(r)))
        trail = r.get("trail")
        if not passed and r["type"] in (0x00, 0x04, 0x05) and trail is not None and after(trail, lowest):
            passed = hit = True
            note = "  <- the trail passes the message"
        else:
            note = ""
        if hit:
            extra = ""
            if r["type"] in (0x08, 0x0A):
                extra = " sqns %s" % nak_sqns(r)
            elif "frag" in r:
                extra = " frag %s" % (r["frag"],)
            print("%9.4f %-5s sqn %s trail %s%s%s%s" % (
                r["t"] - t0, NAMES.get(r["type"], r["type"]), r.get("sqn"), trail, extra,
                "  DROPPED" if key(r) in gone else "  (lost: NAK'd again)" if i in renaked else "",
                note))


def main(argv):
    if len(argv) >= 2 and argv[0] == "summary":
        return summary(argv[1], argv[2] if len(argv) > 2 else None)
    if len(argv) >= 3 and argv[0] == "message":
        return message(argv[1], int(argv[2]), argv[3] if len(argv) > 3 else None)
    sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
