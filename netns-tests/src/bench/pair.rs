//! The lab of one benchmark run: namespaces `snd` and `rcv` joined by a veth pair.

use std::net::Ipv4Addr;

use anyhow::Result;

use crate::lab::{Lab, Ns};

/// Two namespaces, `snd` and `rcv`, each with `eth0` of one veth pair, addressed in the
/// lab's block, with `224.0.0.0/4` routed to `eth0` on both. Everything goes with the lab.
#[derive(Debug)]
pub struct PairLab {
    /// The lab (namespaces, links, rules), removed when dropped.
    pub lab: Lab,
    /// The sender's namespace.
    pub snd: Ns,
    /// The receiver's namespace.
    pub rcv: Ns,
    /// `eth0`'s address in `snd`.
    pub snd_addr: Ipv4Addr,
    /// `eth0`'s address in `rcv`.
    pub rcv_addr: Ipv4Addr,
    /// A multicast group of the lab's block, for the run's traffic.
    pub group: Ipv4Addr,
}

impl PairLab {
    /// Builds the pair for a run of the harness called `tag`. Needs root.
    pub fn new(tag: &str) -> Result<Self> {
        let lab = Lab::new(tag)?;
        let b = lab.block();
        let (snd, rcv) = (lab.add_ns("snd")?, lab.add_ns("rcv")?);
        lab.add_veth(&snd, "eth0", &rcv, "eth0")?;
        let (snd_addr, rcv_addr) = (b.addr(1, 1), b.addr(1, 2));
        lab.add_addr(&snd, "eth0", snd_addr, 24)?;
        lab.add_addr(&rcv, "eth0", rcv_addr, 24)?;
        for ns in [&snd, &rcv] {
            lab.route_dev(ns, "224.0.0.0/4", "eth0")?;
        }
        Ok(Self {
            group: b.group(1),
            lab,
            snd,
            rcv,
            snd_addr,
            rcv_addr,
        })
    }
}
