//! The mroute plane's intercept: the nftables table through which the network element
//! assists sources that omit Router Alert (OpenPGM's default) while the kernel's multicast
//! routing forwards ODATA. Two rules match every PGM type but ODATA (`@th,32,8` is the PGM
//! type byte) sent to an assisted group:
//!
//! ```text
//! prerouting: ip protocol 113 @th,32,8 != 4 ip daddr @groups ip option ra missing
//!                 log group G queue-threshold 1
//! forward:    ip protocol 113 @th,32,8 != 4 ip daddr @groups counter "stopped" drop
//! ```
//!
//! The first hands each such packet, once and as it arrived (TTL not yet decremented, whether
//! or not the kernel would forward it), to `nfnetlink_log` group `G`, where the daemon's
//! [`super::nflog::NflogSocket`] receives it; packets with Router Alert are left to the
//! daemon's Router Alert socket. The second stops the kernel forwarding them (once per
//! outgoing interface), so the daemon forwards them per RFC 3208 §7. Local delivery is left
//! alone. The type is tested before the set lookup, so an ODATA packet costs two compares in
//! each hook.
//!
//! The table is written over netlink ([`super::nftables`]), one transaction per change, and
//! owned by its socket: it goes with the process, `kill -9` included.

use std::net::Ipv4Addr;

use super::nftables::{
    Base, Batch, CmpOp, Expr, FAMILY_IPV4, HOOK_FORWARD, HOOK_PREROUTING, Hook, NftError,
    NftSocket, Reg, SetSpec, TABLE_F_OWNER, Verdict, types,
};

/// IP option type of Router Alert (RFC 2113).
const IPOPT_RA: u8 = 148;

/// The daemon's intercept table (family `ip`).
#[derive(Debug)]
pub struct InterceptTable {
    sock: NftSocket,
    name: String,
    owner: bool,
}

impl InterceptTable {
    /// Creates table `ip <name>` with an empty `groups` set and the two rules, logging to
    /// `nfnetlink_log` group `log_group`; an unowned leftover of the same name is replaced.
    /// With `owner`, the table lives as long as this object's socket.
    pub fn install(name: &str, log_group: u16, owner: bool) -> Result<Self, NftError> {
        let mut sock = NftSocket::open().map_err(|e| NftError::new("open a netlink socket", e))?;
        let mut b = Batch::new(FAMILY_IPV4);
        b.add_table(name, 0);
        b.del_table(name);
        sock.commit(&mut b)?;
        let mut b = Batch::new(FAMILY_IPV4);
        write(&mut b, name, log_group, owner);
        let owner = match sock.commit(&mut b) {
            // A kernel before 5.12 has no owned tables: deleted on drop instead.
            Err(e) if owner && super::netdev::refuses_owner(&e) => {
                let mut b = Batch::new(FAMILY_IPV4);
                write(&mut b, name, log_group, false);
                sock.commit(&mut b)?;
                false
            }
            r => r.map(|()| owner)?,
        };
        Ok(Self {
            sock,
            name: name.to_owned(),
            owner,
        })
    }

    /// Whether the table is owned by its socket (see [`super::netdev::NetdevPlane::owned`]).
    pub fn owned(&self) -> bool {
        self.owner
    }

    /// The table's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Adds and removes assisted groups, in one transaction.
    pub fn update(&mut self, add: &[Ipv4Addr], remove: &[Ipv4Addr]) -> Result<(), NftError> {
        let mut b = Batch::new(FAMILY_IPV4);
        let del: Vec<[u8; 4]> = remove.iter().map(|g| g.octets()).collect();
        let put: Vec<[u8; 4]> = add.iter().map(|g| g.octets()).collect();
        if !del.is_empty() {
            b.del_elems(&self.name, "groups", del.iter().map(|k| &k[..]));
        }
        if !put.is_empty() {
            b.add_elems(&self.name, "groups", put.iter().map(|k| (&k[..], None)));
        }
        self.sock.commit(&mut b)
    }

    /// Replaces the assisted groups with `groups`, in one transaction.
    pub fn replace(&mut self, groups: &[Ipv4Addr]) -> Result<(), NftError> {
        let mut b = Batch::new(FAMILY_IPV4);
        b.flush_set(&self.name, "groups");
        let put: Vec<[u8; 4]> = groups.iter().map(|g| g.octets()).collect();
        if !put.is_empty() {
            b.add_elems(&self.name, "groups", put.iter().map(|k| (&k[..], None)));
        }
        self.sock.commit(&mut b)
    }

    /// The packets the forward rule has stopped so far.
    pub fn stopped_packets(&mut self) -> std::io::Result<u64> {
        let c = self.sock.counters(FAMILY_IPV4, &self.name)?;
        Ok(c.iter().find(|c| c.0 == "stopped").map_or(0, |c| c.1))
    }

    /// Deletes the table.
    pub fn remove(&mut self) -> Result<(), NftError> {
        let mut b = Batch::new(FAMILY_IPV4);
        b.del_table(&self.name);
        self.sock.commit(&mut b)
    }
}

impl Drop for InterceptTable {
    fn drop(&mut self) {
        if !self.owner {
            let _ = self.remove();
        }
    }
}

/// The table's requests.
fn write(b: &mut Batch, name: &str, log_group: u16, owner: bool) {
    b.add_table(name, if owner { TABLE_F_OWNER } else { 0 });
    b.add_counter(name, "stopped");
    b.add_set(
        name,
        &SetSpec {
            name: "groups",
            key: (types::IPV4_ADDR, 4),
            data: None,
            verdict: false,
        },
        1,
    );
    let r0 = Reg(0);
    // ip protocol 113, @th,32,8 != 4, ip daddr @groups
    let matches = [
        Expr::Payload {
            base: Base::Network,
            offset: 9,
            len: 1,
            dreg: r0,
        },
        Expr::Cmp {
            sreg: r0,
            op: CmpOp::Eq,
            data: &[113],
        },
        Expr::Payload {
            base: Base::Transport,
            offset: 4,
            len: 1,
            dreg: r0,
        },
        Expr::Cmp {
            sreg: r0,
            op: CmpOp::Neq,
            data: &[0x04],
        },
        Expr::Payload {
            base: Base::Network,
            offset: 16,
            len: 4,
            dreg: r0,
        },
        Expr::Lookup {
            set: "groups",
            sreg: r0,
            dreg: None,
            verdict: false,
        },
    ];
    b.add_chain(
        name,
        "prerouting",
        Some(Hook {
            num: HOOK_PREROUTING,
            priority: -140,
            device: None,
        }),
    );
    let mut log = matches.to_vec();
    log.extend([
        Expr::Ipv4OptionPresent {
            option: IPOPT_RA,
            dreg: r0,
        },
        Expr::Cmp {
            sreg: r0,
            op: CmpOp::Eq,
            data: &[0],
        },
        Expr::Log {
            group: log_group,
            prefix: "",
        },
    ]);
    b.add_rule(name, "prerouting", &log, "log");
    b.add_chain(
        name,
        "forward",
        Some(Hook {
            num: HOOK_FORWARD,
            priority: -10,
            device: None,
        }),
    );
    let mut stop = matches.to_vec();
    stop.extend([Expr::NamedCounter("stopped"), Expr::Verdict(Verdict::Drop)]);
    b.add_rule(name, "forward", &stop, "stop forwarding");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_has_its_set_chains_and_rules() {
        let mut b = Batch::new(FAMILY_IPV4);
        write(&mut b, "pgm_routerd", 113, true);
        // table, counter, set, chain + rule twice
        assert_eq!(b.len(), 7);
    }
}
