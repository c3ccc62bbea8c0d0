//! Random packet loss with nftables inside a lab namespace.
//!
//! Each [`LossSpec`] becomes one nftables table, named after the lab prefix, with one base
//! chain and one rule:
//!
//! ```text
//! <iifname|oifname> "<iface>" <selector> counter numgen random mod 100 < <percent> counter drop
//! ```
//!
//! The table is of the `ip` family (IPv4 only), except for [`Hook::Egress`]: a `netdev` table
//! whose chain hooks the interface's egress, where every frame leaving the interface passes,
//! whether the IP stack sent it, the kernel's multicast routing forwarded it or an nftables
//! `dup` of the netdev data plane copied it there (`meta protocol ip` then restricts it to
//! IPv4).
//!
//! The first counter counts the packets the rule looked at, the second those it dropped
//! ([`LossRule::counters`]). The table stays until [`LossRule::remove`] or until the lab is
//! dropped; dropping the [`LossRule`] handle alone does not remove it.

use std::fmt;
use std::fs;

use anyhow::{Context, Result, bail, ensure};

use super::util::{SETUP_TIMEOUT, run_checked};
use super::{Lab, Ns};

/// Where in a namespace's IPv4 path a loss rule applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Hook {
    /// Every IPv4 packet leaving through the interface: forwarded by the IP stack, sent
    /// locally, or copied out by a netdev `dup` (netdev `egress` hook of the interface).
    Egress,
    /// Packets the namespace forwards out of the interface (`forward`, `oifname`). Multicast
    /// routed by the kernel (MFC) passes this hook once per outgoing interface.
    Forward,
    /// Packets arriving on the interface, to be forwarded or delivered locally (`prerouting`,
    /// `iifname`).
    Ingress,
    /// Packets the namespace itself sends out of the interface (`output`, `oifname`).
    Output,
}

impl Hook {
    fn nft_hook(self) -> &'static str {
        match self {
            Self::Egress => "postrouting",
            Self::Forward => "forward",
            Self::Ingress => "prerouting",
            Self::Output => "output",
        }
    }

    fn iface_key(self) -> &'static str {
        match self {
            Self::Ingress => "iifname",
            Self::Egress | Self::Forward | Self::Output => "oifname",
        }
    }
}

/// Which packets on the hooked interface a loss rule may drop.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Selector {
    /// Every IPv4 packet.
    All,
    /// An nftables match expression written by the caller, e.g. `ip daddr 239.192.0.0/16`.
    Nft(String),
    /// PGM over IP (IP protocol 113).
    Pgm,
    /// PGM/IP packets of one PGM type (the header's type byte, `@th,32,8`): 0x00 SPM,
    /// 0x04 ODATA, 0x05 RDATA, 0x08 NAK, 0x09 NNAK, 0x0a NCF, 0x0c SPMR, 0x01 POLL, 0x02 POLR.
    PgmType(u8),
    /// PGM/UDP packets of one PGM type sent to UDP port `port` (type byte at `@th,96,8`).
    PgmUdpType {
        /// UDP destination port.
        port: u16,
        /// PGM type byte.
        pgm_type: u8,
    },
    /// UDP packets to destination port `port`.
    Udp(u16),
}

impl fmt::Display for Selector {
    /// The nftables match expression (empty for [`Selector::All`]).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::All => Ok(()),
            Self::Nft(expr) => f.write_str(expr),
            Self::Pgm => f.write_str("ip protocol 113"),
            Self::PgmType(t) => write!(f, "ip protocol 113 @th,32,8 {t}"),
            Self::PgmUdpType { port, pgm_type } => {
                write!(f, "udp dport {port} @th,96,8 {pgm_type}")
            }
            Self::Udp(port) => write!(f, "udp dport {port}"),
        }
    }
}

/// A random-loss rule to install with [`Lab::add_loss`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LossSpec {
    /// Where the rule applies.
    pub hook: Hook,
    /// The interface it matches (`iifname` for [`Hook::Ingress`], else `oifname`).
    pub iface: String,
    /// Percentage of matching packets dropped, 0 to 100.
    pub percent: u8,
    /// Which packets match.
    pub selector: Selector,
}

impl LossSpec {
    /// Drops `percent`% of all IPv4 packets at `hook` on `iface`.
    pub fn new(hook: Hook, iface: &str, percent: u8) -> Self {
        Self {
            hook,
            iface: iface.to_owned(),
            percent,
            selector: Selector::All,
        }
    }

    /// Loss on packets arriving on `iface` ([`Hook::Ingress`]).
    pub fn ingress(iface: &str, percent: u8) -> Self {
        Self::new(Hook::Ingress, iface, percent)
    }

    /// Loss on packets forwarded out of `iface` ([`Hook::Forward`]).
    pub fn forward(iface: &str, percent: u8) -> Self {
        Self::new(Hook::Forward, iface, percent)
    }

    /// Loss on every packet leaving through `iface` ([`Hook::Egress`]).
    pub fn egress(iface: &str, percent: u8) -> Self {
        Self::new(Hook::Egress, iface, percent)
    }

    /// Restricts the rule to the packets `selector` matches.
    pub fn only(mut self, selector: Selector) -> Self {
        self.selector = selector;
        self
    }

    /// The nftables family of the spec's table.
    fn family(&self) -> &'static str {
        match self.hook {
            Hook::Egress => "netdev",
            _ => "ip",
        }
    }

    /// The nftables ruleset that implements this spec in `table`.
    fn ruleset(&self, table: &str) -> Result<String> {
        ensure!(
            self.percent <= 100,
            "loss percentage {} > 100",
            self.percent
        );
        ensure!(
            !self.iface.is_empty()
                && self
                    .iface
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)),
            "interface name {:?} cannot be used in a loss rule",
            self.iface
        );
        let priority = match self.hook {
            // Before NAT and conntrack would see it; loss happens "on the wire".
            Hook::Ingress => -300,
            Hook::Egress => 300,
            Hook::Forward | Hook::Output => 0,
        };
        // `numgen random mod 100` yields 0..=99 and nft rejects the constant 100.
        let cmp = match self.percent {
            100 => "<= 99".to_owned(),
            p => format!("< {p}"),
        };
        if self.hook == Hook::Egress {
            let mut matches = "meta protocol ip".to_owned();
            if self.selector != Selector::All {
                matches = format!("{matches} {}", self.selector);
            }
            return Ok(format!(
                "table netdev {table} {{\n  chain loss {{\n    type filter hook egress device \
                 \"{}\" priority {priority}; policy accept;\n    {matches} counter numgen \
                 random mod 100 {cmp} counter drop\n  }}\n}}\n",
                self.iface
            ));
        }
        let mut matches = format!("{} \"{}\"", self.hook.iface_key(), self.iface);
        if self.selector != Selector::All {
            matches = format!("{matches} {}", self.selector);
        }
        Ok(format!(
            "table ip {table} {{\n  chain loss {{\n    type filter hook {} priority {priority}; \
             policy accept;\n    {matches} counter numgen random mod 100 {cmp} counter drop\n  \
             }}\n}}\n",
            self.hook.nft_hook(),
        ))
    }
}

/// Packet counts of a loss rule.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LossCounters {
    /// Packets that matched the interface and selector.
    pub matched: u64,
    /// Packets the rule dropped.
    pub dropped: u64,
}

impl LossCounters {
    /// Matching packets that were let through.
    pub fn passed(&self) -> u64 {
        self.matched.saturating_sub(self.dropped)
    }
}

/// An installed loss rule (one nftables table in one namespace).
#[derive(Debug)]
pub struct LossRule {
    ns: Ns,
    table: String,
    spec: LossSpec,
}

impl LossRule {
    /// The namespace the rule lives in.
    pub fn ns(&self) -> &Ns {
        &self.ns
    }

    /// The nftables table name (family `ip`, or `netdev` for [`Hook::Egress`]).
    pub fn table(&self) -> &str {
        &self.table
    }

    /// The spec it was built from.
    pub fn spec(&self) -> &LossSpec {
        &self.spec
    }

    /// Reads the rule's counters (`nft list table`).
    pub fn counters(&self) -> Result<LossCounters> {
        let out = run_checked(
            nft_cmd(
                &self.ns,
                &["list", "table", self.spec.family(), &self.table],
            ),
            SETUP_TIMEOUT,
        )?;
        let text = String::from_utf8_lossy(&out.stdout);
        parse_counters(&text)
            .with_context(|| format!("unexpected `nft list table {}` output:\n{text}", self.table))
    }

    /// Deletes the table now (the lab would otherwise do it on drop).
    pub fn remove(self) -> Result<()> {
        run_checked(
            nft_cmd(
                &self.ns,
                &["delete", "table", self.spec.family(), &self.table],
            ),
            SETUP_TIMEOUT,
        )?;
        Ok(())
    }
}

impl Lab {
    /// Installs a random-loss rule in `ns` (its own nftables table, deleted when the lab drops).
    pub fn add_loss(&self, ns: &Ns, spec: &LossSpec) -> Result<LossRule> {
        let seq = self.next_seq();
        let table = format!("{}_loss{seq}", self.prefix()).replace('-', "_");
        let ruleset = spec.ruleset(&table)?;
        let path = self.dir().join(format!("{seq:03}-loss.nft"));
        fs::write(&path, &ruleset).with_context(|| format!("cannot write {}", path.display()))?;
        let path = path.to_string_lossy().into_owned();
        run_checked(nft_cmd(ns, &["-f", &path]), SETUP_TIMEOUT)
            .with_context(|| format!("loading loss rule into {ns}:\n{ruleset}"))?;
        self.record_table(ns, spec.family(), &table);
        Ok(LossRule {
            ns: ns.clone(),
            table,
            spec: spec.clone(),
        })
    }
}

fn nft_cmd(ns: &Ns, args: &[&str]) -> std::process::Command {
    let mut cmd = std::process::Command::new("ip");
    cmd.args(["netns", "exec", ns.name(), "nft"]).args(args);
    cmd
}

/// Parses `counter packets A bytes B ... counter packets C bytes D drop` from `nft list` output.
fn parse_counters(text: &str) -> Result<LossCounters> {
    let Some(line) = text.lines().find(|l| l.contains("numgen random")) else {
        bail!("no loss rule found");
    };
    let words: Vec<&str> = line.split_whitespace().collect();
    let counts: Vec<u64> = words
        .windows(3)
        .filter(|w| w[0] == "counter" && w[1] == "packets")
        .filter_map(|w| w[2].parse().ok())
        .collect();
    let [matched, dropped] = counts[..] else {
        bail!("expected two counters, found {}", counts.len());
    };
    Ok(LossCounters { matched, dropped })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_counters() {
        let text = "table ip t {\n\tchain loss {\n\t\ttype filter hook forward priority filter; \
                    policy accept;\n\t\toifname \"lana\" udp dport 5000 counter packets 200 bytes \
                    9000 numgen random mod 100 < 30 counter packets 61 bytes 2745 drop\n\t}\n}\n";
        assert_eq!(
            parse_counters(text).unwrap(),
            LossCounters {
                matched: 200,
                dropped: 61
            }
        );
    }

    #[test]
    fn ruleset_for_pgm_type() {
        let spec = LossSpec::forward("lana", 5).only(Selector::PgmType(0x04));
        let r = spec.ruleset("t").unwrap();
        assert!(r.contains("hook forward priority 0;"), "{r}");
        assert!(
            r.contains(
                "oifname \"lana\" ip protocol 113 @th,32,8 4 counter numgen random mod 100 < 5 \
                 counter drop"
            ),
            "{r}"
        );
        let out = LossSpec::egress("lana", 5)
            .only(Selector::Pgm)
            .ruleset("t")
            .unwrap();
        assert!(out.starts_with("table netdev t"), "{out}");
        assert!(
            out.contains("hook egress device \"lana\" priority 300;"),
            "{out}"
        );
        assert!(
            out.contains("meta protocol ip ip protocol 113 counter numgen"),
            "{out}"
        );
        let all = LossSpec::ingress("eth0", 100).ruleset("t").unwrap();
        assert!(all.contains("hook prerouting priority -300;"), "{all}");
        assert!(
            all.contains("iifname \"eth0\" counter numgen random mod 100 <= 99 counter drop"),
            "{all}"
        );
        assert!(LossSpec::forward("a\"b", 5).ruleset("t").is_err());
        assert!(LossSpec::forward("x", 101).ruleset("t").is_err());
    }
}
