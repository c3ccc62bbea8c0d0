//! The fairness lab: hosts on one Linux bridge, bottlenecks on the bridge's ports.
//!
//! ```text
//!   s1 eth0 ---- p-s1 -+                       +- p-r1 [TBF] ---- eth0 r1
//!   s2 eth0 ---- p-s2 -+-- br0 (namespace sw) -+- p-r2 [TBF] ---- eth0 r2
//!                                              +- ...
//! ```
//!
//! Every host is a namespace with one interface `eth0` on the subnet `10.B.1.0/24` of the
//! lab's block, with a route for `224.0.0.0/4` out of it and no other route. The bridge
//! `br0` lives in its own namespace `sw` with IGMP snooping off, so multicast floods every
//! port (the kernel has no multicast routing to do it otherwise). A receiver's bottleneck is
//! a TBF on the egress of its bridge port (`p-<name>`), the queue every packet towards that
//! host waits in: data of every flow crosses it, while ACKs and NAKs go the other way and
//! cross none. Everything is removed when the [`Star`] (its [`Lab`]) is dropped.

use std::net::Ipv4Addr;

use anyhow::{Context, Result, ensure};
use pgm_netns_tests::lab::{Lab, Ns};

/// The bridge's namespace name and device.
const SWITCH: &str = "sw";
const BRIDGE: &str = "br0";

/// A host of the star: a namespace with `eth0` on the bridge.
#[derive(Clone, Debug)]
pub(crate) struct Host {
    /// Node name (`s1`, `r1`, ...).
    pub(crate) name: String,
    /// Its namespace.
    pub(crate) ns: Ns,
    /// The address of its `eth0`.
    pub(crate) addr: Ipv4Addr,
}

impl Host {
    /// The bridge port facing this host.
    pub(crate) fn port(&self) -> String {
        format!("p-{}", self.name)
    }
}

/// A token bucket filter on a bridge port's egress.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Tbf {
    /// Rate in Mbit/s (10^6 bit/s, as `tc` reads `mbit`).
    pub(crate) mbit: u32,
    /// Queue in milliseconds at that rate: TBF's `limit` is `mbit * queue_ms / 8` kB.
    pub(crate) queue_ms: u32,
}

impl Tbf {
    /// The rate in bytes per second.
    pub(crate) fn bytes_per_sec(self) -> u64 {
        u64::from(self.mbit) * 1_000_000 / 8
    }

    /// TBF's `limit`: bytes that may wait in the queue.
    pub(crate) fn limit(self) -> u64 {
        self.bytes_per_sec() * u64::from(self.queue_ms) / 1000
    }

    /// TBF's `burst`: bytes that may leave back to back. Ten milliseconds at the rate, and
    /// at least ten full Ethernet frames: TBF's timer fires late on a busy two-core VM, and
    /// with a bucket of two frames every late millisecond was rate lost (a 20 Mbit/s TBF
    /// passed 10 Mbit/s).
    pub(crate) fn burst(self) -> u64 {
        (self.bytes_per_sec() / 100).max(10 * 1514)
    }

    /// The `tc qdisc` arguments after `dev <port> root`.
    pub(crate) fn tc_args(self) -> Vec<String> {
        vec![
            "tbf".to_owned(),
            "rate".to_owned(),
            format!("{}mbit", self.mbit),
            "burst".to_owned(),
            self.burst().to_string(),
            "limit".to_owned(),
            self.limit().to_string(),
        ]
    }
}

/// Counters of a qdisc (`tc -s qdisc show`): cumulative since it was installed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct QdiscStats {
    /// Bytes sent (as the qdisc counts them: with the Ethernet header).
    pub(crate) bytes: u64,
    /// Packets sent.
    pub(crate) packets: u64,
    /// Packets dropped (queue full).
    pub(crate) dropped: u64,
    /// Times a packet had to wait for tokens.
    pub(crate) overlimits: u64,
}

impl QdiscStats {
    /// The counts from `earlier` to `self`.
    pub(crate) fn since(self, earlier: Self) -> Self {
        Self {
            bytes: self.bytes.saturating_sub(earlier.bytes),
            packets: self.packets.saturating_sub(earlier.packets),
            dropped: self.dropped.saturating_sub(earlier.dropped),
            overlimits: self.overlimits.saturating_sub(earlier.overlimits),
        }
    }

    /// Parses the first qdisc's `Sent B bytes P pkt (dropped D, overlimits O requeues R)`.
    pub(crate) fn parse(text: &str) -> Option<Self> {
        let line = text.lines().find_map(|l| l.trim().strip_prefix("Sent "))?;
        let words: Vec<&str> = line
            .split(|c: char| c.is_whitespace() || c == ',' || c == '(' || c == ')')
            .filter(|w| !w.is_empty())
            .collect();
        let after = |key: &str| -> Option<u64> {
            let i = words.iter().position(|w| *w == key)?;
            words.get(i + 1)?.parse().ok()
        };
        Some(Self {
            bytes: words.first()?.parse().ok()?,
            packets: words.get(2)?.parse().ok()?,
            dropped: after("dropped")?,
            overlimits: after("overlimits")?,
        })
    }
}

/// The lab of one run (see the [module docs](self)).
#[derive(Debug)]
pub(crate) struct Star {
    /// The lab; dropping it removes every namespace, link and process.
    pub(crate) lab: Lab,
    sw: Ns,
    next_host: u8,
}

impl Star {
    /// A lab with the bridge and no hosts yet.
    pub(crate) fn new(tag: &str) -> Result<Self> {
        let lab = Lab::new(tag)?;
        let sw = lab.add_ns(SWITCH)?;
        lab.add_bridge(&sw, BRIDGE, false)?;
        Ok(Self {
            lab,
            sw,
            next_host: 1,
        })
    }

    /// Adds the host `name` (1 to 8 characters of `[a-z0-9]`) on the bridge.
    pub(crate) fn host(&mut self, name: &str) -> Result<Host> {
        ensure!(name.len() <= 8, "host name {name:?} too long");
        let ns = self.lab.add_ns(name)?;
        let port = format!("p-{name}");
        self.lab.add_veth(&ns, "eth0", &self.sw, &port)?;
        self.lab.bridge_attach(&self.sw, BRIDGE, &port)?;
        let addr = self.lab.block().addr(1, 10 + self.next_host);
        self.next_host += 1;
        self.lab.add_addr(&ns, "eth0", addr, 24)?;
        self.lab.route_dev(&ns, "224.0.0.0/4", "eth0")?;
        Ok(Host {
            name: name.to_owned(),
            ns,
            addr,
        })
    }

    /// Installs `tbf` as the root qdisc of the bridge port facing `host`.
    pub(crate) fn bottleneck(&self, host: &Host, tbf: Tbf) -> Result<()> {
        let port = host.port();
        let mut args: Vec<String> = ["tc", "qdisc", "replace", "dev", &port, "root"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        args.extend(tbf.tc_args());
        self.lab
            .exec(&self.sw, &args)
            .with_context(|| format!("TBF on {port}"))?;
        Ok(())
    }

    /// The counters of the root qdisc of the bridge port facing `host`.
    pub(crate) fn qdisc(&self, host: &Host) -> Result<QdiscStats> {
        let out = self.lab.exec(
            &self.sw,
            &["tc", "-s", "qdisc", "show", "dev", &host.port()],
        )?;
        let text = String::from_utf8_lossy(&out.stdout);
        QdiscStats::parse(&text).with_context(|| format!("cannot read tc output: {text}"))
    }

    /// Counts, in `at`'s namespace, the IP bytes arriving from each of `sources` (all, and
    /// PGM/UDP RDATA alone: the PGM type byte, 0x05, follows the UDP header by 4 bytes), in
    /// an nftables table `fair` at prerouting. The table goes with the namespace.
    pub(crate) fn count_arrivals(&self, at: &Host, sources: &[&Host]) -> Result<()> {
        let mut script = String::from("table ip fair {\n");
        for s in sources {
            script.push_str(&format!(
                "  counter {n} {{}}\n  counter {n}rd {{}}\n",
                n = s.name
            ));
        }
        script.push_str(
            "  chain pre {\n    type filter hook prerouting priority -300; policy accept;\n",
        );
        for s in sources {
            script.push_str(&format!(
                "    ip saddr {a} counter name {n}\n    ip saddr {a} udp dport 3055-3056 @th,96,8 0x05 counter name {n}rd\n",
                a = s.addr,
                n = s.name
            ));
        }
        script.push_str("  }\n}\n");
        let path = self.lab.file("arrivals", "nft");
        std::fs::write(&path, &script)?;
        let path = path.to_string_lossy().into_owned();
        self.lab
            .exec(&at.ns, &["nft", "-f", &path])
            .with_context(|| format!("nft counters in {}:\n{script}", at.name))?;
        Ok(())
    }

    /// IP bytes that have arrived at `at` from `source` so far, all and RDATA alone (see
    /// [`Star::count_arrivals`]).
    pub(crate) fn arrivals(&self, at: &Host, source: &Host) -> Result<(u64, u64)> {
        let read = |name: &str| -> Result<u64> {
            let out = self
                .lab
                .exec(&at.ns, &["nft", "list", "counter", "ip", "fair", name])?;
            let text = String::from_utf8_lossy(&out.stdout);
            let words: Vec<&str> = text.split_whitespace().collect();
            let i = words
                .iter()
                .position(|w| *w == "bytes")
                .with_context(|| format!("no byte count in {text}"))?;
            words
                .get(i + 1)
                .and_then(|b| b.parse().ok())
                .with_context(|| format!("bad byte count in {text}"))
        };
        Ok((read(&source.name)?, read(&format!("{}rd", source.name))?))
    }

    /// `tc -s qdisc show` of the bridge port facing `host`, as printed.
    pub(crate) fn qdisc_text(&self, host: &Host) -> Result<String> {
        let out = self.lab.exec(
            &self.sw,
            &["tc", "-s", "qdisc", "show", "dev", &host.port()],
        )?;
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tc_counters_are_parsed() {
        let text = "qdisc tbf 8001: root refcnt 2 rate 20Mbit burst 3028b lat 50ms \n \
                    Sent 123456 bytes 789 pkt (dropped 12, overlimits 345 requeues 0) \n \
                    backlog 0b 0p requeues 0\n";
        assert_eq!(
            QdiscStats::parse(text),
            Some(QdiscStats {
                bytes: 123_456,
                packets: 789,
                dropped: 12,
                overlimits: 345,
            })
        );
    }

    #[test]
    fn tbf_parameters() {
        let t = Tbf {
            mbit: 20,
            queue_ms: 50,
        };
        assert_eq!(t.bytes_per_sec(), 2_500_000);
        assert_eq!(t.limit(), 125_000);
        assert_eq!(t.burst(), 25_000);
        let t80 = Tbf {
            mbit: 80,
            queue_ms: 50,
        };
        assert_eq!(t80.burst(), 100_000);
    }
}
