//! The netdev data plane: multicast forwarding and the PGM intercept in one nftables table of
//! the `netdev` family, with no kernel multicast routing (`CONFIG_IP_MROUTE` not needed).
//!
//! An ingress chain on each interface sends IPv4 multicast to a shared chain. The PGM type is
//! read at the transport header, so packets with IP options (Router Alert) are handled like
//! the others:
//!
//! ```text
//! chain in_<if>   hook ingress device <if>, priority 100:
//!     meta protocol ip ip daddr 224.0.0.0/4 jump mc
//! chain mc:
//!     meta l4proto 113 goto pgm
//!     meta l4proto igmp limit 1000/s log group G counter "igmp" return  # memberships
//!     goto route                                                       # other protocols
//! chain pgm:
//!     @th,32,8 0x04 goto route                                         # ODATA
//!     ip daddr @assisted log group G counter "intercepted" drop        # other types: to
//!     goto route                                                       #   the daemon
//! chain route:
//!     meta iif . ip saddr . ip daddr vmap @routes                      # (S,G) from its iif
//!     meta iif . ip daddr vmap @groutes                                # (*,G) from its iif
//!     ip saddr . ip daddr @sg_any counter "rpf_drop" drop              # wrong interface
//!     ip daddr @g_any counter "rpf_drop" drop
//!     meta l4proto 113 @th,32,8 0x04 ip daddr @learn                   # new source: the
//!         limit R/s log group G counter "learn" drop                   #   daemon routes it
//!     meta l4proto 113 @th,32,8 0x04 ip daddr @learn counter "learn_limited" drop
//! chain f<n>, one per set of outgoing interfaces (the routes' verdicts go there):
//!     ip ttl set ip ttl map @ttl                                       # TTL - 1, checksum
//!         ether saddr set <mac of o1> dup to o1 ... counter "forwarded" drop
//!     counter "ttl_expired" drop                                       # TTL <= 1
//! ```
//!
//! ODATA takes the same path with the intercept as without it (two compares to reach the
//! routes); the intercept's rules (IGMP, the other PGM types, learning) lie off that path.
//!
//! So ODATA of a route (and any other multicast of it, PGM/UDP or plain UDP) is forwarded by
//! the kernel only (never copied to user space), from its upstream interface only, with its
//! TTL decremented and its source MAC address that of the outgoing interface, as a router
//! sends it; a packet whose TTL would reach 0 is dropped.
//! Every other PGM type of an assisted group is logged once to `nfnetlink_log` group `G` and
//! dropped, so the daemon forwards it per RFC 3208 §7, and IGMP is logged (and delivered as
//! usual) so that the daemon learns memberships. Packets the daemon sends leave through its
//! raw sockets and never pass an ingress hook of its own namespace.
//!
//! The table is owned by the plane's netlink socket ([`super::nftables::TABLE_F_OWNER`]): it
//! disappears with the process, `kill -9` included. Each change is one transaction
//! ([`NetdevPlane::apply`]). The plane forwards between Ethernet interfaces only (a `dup`
//! sends the frame with its link-layer header).
//!
//! With `intercept` off ([`NetdevConfig::intercept`]) the table holds the forwarding rules
//! alone: the baseline the router benchmark compares the daemon with.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::io;
use std::net::Ipv4Addr;

use super::nftables::{
    Base, Batch, CmpOp, ElemData, Expr, FAMILY_NETDEV, HOOK_INGRESS, Hook, MetaKey, NftError,
    NftSocket, Reg, SetSpec, TABLE_F_OWNER, Verdict, types,
};
use super::plane::{PlaneChanges, PlaneRoute, PlaneState, RouteKey};

const ETH_P_IP: [u8; 2] = [0x08, 0x00];
const IPPROTO_IGMP: u8 = 2;
const PGM_ODATA: u8 = 0x04;
/// Offsets in the IPv4 header.
const IP_TTL: u32 = 8;
const IP_CHECKSUM: u32 = 10;
const IP_SADDR: u32 = 12;
const IP_DADDR: u32 = 16;
/// Offset of the source address in the Ethernet header.
const ETH_SOURCE: u32 = 6;
/// The base chains' priority: after filters at the default priority 0.
pub const PRIORITY: i32 = 100;
/// IGMP messages logged per second at most (bursts of 100).
const IGMP_RATE: u64 = 1000;

/// The names of the named counters, in the order [`NetdevCounters`] holds them.
pub const COUNTERS: [&str; 7] = [
    "forwarded",
    "ttl_expired",
    "rpf_drop",
    "intercepted",
    "learn",
    "learn_limited",
    "igmp",
];

/// An interface of the plane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlaneIface {
    /// Its name.
    pub name: String,
    /// Its index.
    pub index: u32,
    /// Its MAC address: the source address of the frames forwarded out of it.
    pub mac: [u8; 6],
}

/// How the plane is set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetdevConfig {
    /// The table's name.
    pub table: String,
    /// The interfaces it forwards between (Ethernet).
    pub interfaces: Vec<PlaneIface>,
    /// The `nfnetlink_log` group of the intercept.
    pub log_group: u16,
    /// Whether to intercept (PGM types but ODATA, learning, IGMP); off: forwarding only.
    pub intercept: bool,
    /// New-source ODATA logged for learning, per second at most.
    pub learn_rate: u32,
    /// Burst above `learn_rate`.
    pub learn_burst: u32,
    /// Whether the table is owned by the plane's socket (deleted with it).
    pub owner: bool,
}

/// The plane's named counters, packets each (see [`COUNTERS`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetdevCounters {
    /// ODATA forwarded (once per packet, whatever the number of outgoing interfaces).
    pub forwarded: u64,
    /// ODATA not forwarded: TTL 1 or 0.
    pub ttl_expired: u64,
    /// ODATA of a route that came in on another interface than the route's.
    pub rpf_drop: u64,
    /// Other PGM packets of assisted groups handed to the daemon.
    pub intercepted: u64,
    /// ODATA of a new source handed to the daemon to make its route.
    pub learn: u64,
    /// ODATA of a new source dropped over the learning rate.
    pub learn_limited: u64,
    /// IGMP messages handed to the daemon.
    pub igmp: u64,
}

impl NetdevCounters {
    /// Each counter with its name, in the order of [`COUNTERS`].
    pub fn named(&self) -> [(&'static str, u64); 7] {
        let v = [
            self.forwarded,
            self.ttl_expired,
            self.rpf_drop,
            self.intercepted,
            self.learn,
            self.learn_limited,
            self.igmp,
        ];
        let mut out = [("", 0); 7];
        for ((o, name), value) in out.iter_mut().zip(COUNTERS).zip(v) {
            *o = (name, value);
        }
        out
    }
}

/// A chain forwarding to one set of interfaces.
#[derive(Debug, Clone)]
struct FwdChain {
    name: String,
    refs: usize,
}

/// What is in the kernel.
#[derive(Debug, Clone, Default)]
struct Installed {
    routes: HashMap<RouteKey, PlaneRoute>,
    assisted: HashSet<Ipv4Addr>,
    learn: HashSet<Ipv4Addr>,
    chains: HashMap<Vec<u32>, FwdChain>,
    next_chain: u64,
}

/// The netdev data plane. See the [module documentation](self).
#[derive(Debug)]
pub struct NetdevPlane {
    sock: NftSocket,
    config: NetdevConfig,
    installed: Installed,
}

impl NetdevPlane {
    /// Creates the table with its chains and no route, replacing an unowned leftover of the
    /// same name (a crashed run of a daemon whose kernel lacked owned tables).
    pub fn install(config: NetdevConfig) -> Result<Self, NftError> {
        let mut sock = NftSocket::open().map_err(|e| NftError::new("open a netlink socket", e))?;
        let mut cleanup = Batch::new(FAMILY_NETDEV);
        cleanup.add_table(&config.table, 0);
        cleanup.del_table(&config.table);
        // Fails only if a table of that name is owned by another process.
        sock.commit(&mut cleanup).map_err(|e| {
            if e.errno() == Some(libc::EPERM) {
                NftError::new(
                    &format!("replace table netdev {}", config.table),
                    io::Error::new(
                        io::ErrorKind::AddrInUse,
                        "another process owns it (is another pgm-routerd running?)",
                    ),
                )
            } else {
                e
            }
        })?;
        let mut plane = Self {
            sock,
            config,
            installed: Installed::default(),
        };
        let mut b = Batch::new(FAMILY_NETDEV);
        write_base(&plane.config, &mut b);
        match plane.sock.commit(&mut b) {
            // A kernel before 5.12 has no owned tables: the table is then deleted on drop,
            // and a leftover of a killed process is replaced at the next start (above).
            Err(e) if plane.config.owner && refuses_owner(&e) => {
                plane.config.owner = false;
                let mut b = Batch::new(FAMILY_NETDEV);
                write_base(&plane.config, &mut b);
                plane.sock.commit(&mut b)?;
            }
            r => r?,
        }
        Ok(plane)
    }

    /// Whether the table is owned by the plane's socket (it goes with the process, `kill -9`
    /// included); `false` on kernels without owned tables (before 5.12).
    pub fn owned(&self) -> bool {
        self.config.owner
    }

    /// Checks, without changing anything, that the kernel can hold the plane's table on
    /// `interfaces` (the kernel validates a batch sent without its end, then drops it).
    pub fn check(config: &NetdevConfig) -> Result<(), NftError> {
        let mut sock = NftSocket::open().map_err(|e| NftError::new("open a netlink socket", e))?;
        let config = NetdevConfig {
            table: format!("{}_check", config.table),
            ..config.clone()
        };
        let mut b = Batch::new(FAMILY_NETDEV);
        write_base(&config, &mut b);
        // One forwarding chain too: the dup and the TTL map are what a kernel may lack.
        let oifs: Vec<u32> = config.interfaces.iter().map(|i| i.index).collect();
        write_fwd_chain(&config, &mut b, "f_check", &oifs);
        sock.check(&mut b)
    }

    /// The configuration.
    pub fn config(&self) -> &NetdevConfig {
        &self.config
    }

    /// Applies `changes` in one transaction. On error nothing changed; the caller should ask
    /// for a full resynchronisation.
    pub fn apply(&mut self, changes: &PlaneChanges) -> Result<(), NftError> {
        if let Some(full) = &changes.full {
            return self.replace(full);
        }
        let mut next = self.installed.clone();
        let mut b = Batch::new(FAMILY_NETDEV);
        let mut dead_chains = BTreeSet::new();
        for (key, route) in &changes.routes {
            if let Some(old) = next.routes.remove(key) {
                if route.as_ref() == Some(&old) {
                    next.routes.insert(*key, old);
                    continue;
                }
                self.write_route(&mut b, &mut next, *key, &old, false, &mut dead_chains);
            }
            if let Some(r) = route {
                self.write_route(&mut b, &mut next, *key, r, true, &mut dead_chains);
                next.routes.insert(*key, r.clone());
            }
        }
        let t = self.config.table.clone();
        for (set, changes, have) in [
            ("assisted", &changes.assisted, &mut next.assisted),
            ("learn", &changes.learn, &mut next.learn),
        ] {
            let add: Vec<[u8; 4]> = changes
                .iter()
                .filter(|&(g, &on)| on && have.insert(*g))
                .map(|(g, _)| g.octets())
                .collect();
            let del: Vec<[u8; 4]> = changes
                .iter()
                .filter(|&(g, &on)| !on && have.remove(g))
                .map(|(g, _)| g.octets())
                .collect();
            if !del.is_empty() {
                b.del_elems(&t, set, del.iter().map(|k| &k[..]));
            }
            if !add.is_empty() {
                b.add_elems(&t, set, add.iter().map(|k| (&k[..], None)));
            }
        }
        for oifs in dead_chains {
            if let Some(c) = next.chains.get(&oifs).filter(|c| c.refs == 0) {
                b.del_chain(&t, &c.name);
                next.chains.remove(&oifs);
            }
        }
        self.sock.commit(&mut b)?;
        self.installed = next;
        Ok(())
    }

    /// Writes the elements of one route (adding or deleting), creating or releasing the
    /// forwarding chain of its interfaces.
    fn write_route(
        &self,
        b: &mut Batch,
        next: &mut Installed,
        key: RouteKey,
        route: &PlaneRoute,
        add: bool,
        dead_chains: &mut BTreeSet<Vec<u32>>,
    ) {
        let t = self.config.table.as_str();
        let verdict_chain = if route.oifs.is_empty() {
            None
        } else if add {
            if !next.chains.contains_key(&route.oifs) {
                next.next_chain += 1;
                let name = format!("f{}", next.next_chain);
                write_fwd_chain(&self.config, b, &name, &route.oifs);
                next.chains
                    .insert(route.oifs.clone(), FwdChain { name, refs: 0 });
            }
            let c = next.chains.get_mut(&route.oifs);
            c.map(|c| {
                c.refs += 1;
                c.name.clone()
            })
        } else {
            if let Some(c) = next.chains.get_mut(&route.oifs) {
                c.refs = c.refs.saturating_sub(1);
                if c.refs == 0 {
                    dead_chains.insert(route.oifs.clone());
                }
            }
            None
        };
        let iif = route.iif.to_ne_bytes();
        let g = key.group.octets();
        let (map, map_key, any, any_key): (&str, Vec<u8>, &str, Vec<u8>) = match key.source {
            Some(s) => {
                let s = s.octets();
                (
                    "routes",
                    [&iif[..], &s, &g].concat(),
                    "sg_any",
                    [&s[..], &g].concat(),
                )
            }
            None => ("groutes", [&iif[..], &g].concat(), "g_any", g.to_vec()),
        };
        if add {
            let verdict = match &verdict_chain {
                Some(c) => Verdict::Goto(c),
                None => Verdict::Drop,
            };
            b.add_elems(t, map, [(&map_key[..], Some(ElemData::Verdict(verdict)))]);
            b.add_elems(t, any, [(&any_key[..], None)]);
        } else {
            b.del_elems(t, map, [&map_key[..]]);
            b.del_elems(t, any, [&any_key[..]]);
        }
    }

    /// Replaces the whole table with `state`, in one transaction.
    pub fn replace(&mut self, state: &PlaneState) -> Result<(), NftError> {
        let mut b = Batch::new(FAMILY_NETDEV);
        b.del_table(&self.config.table);
        write_base(&self.config, &mut b);
        let mut next = Installed {
            next_chain: self.installed.next_chain,
            ..Installed::default()
        };
        let mut dead = BTreeSet::new();
        for (key, route) in &state.routes {
            self.write_route(&mut b, &mut next, *key, route, true, &mut dead);
            next.routes.insert(*key, route.clone());
        }
        let t = self.config.table.clone();
        for (set, groups, have) in [
            ("assisted", &state.assisted, &mut next.assisted),
            ("learn", &state.learn, &mut next.learn),
        ] {
            let keys: Vec<[u8; 4]> = groups.iter().map(|g| g.octets()).collect();
            have.extend(groups.iter().copied());
            if !keys.is_empty() {
                b.add_elems(&t, set, keys.iter().map(|k| (&k[..], None)));
            }
        }
        self.sock.commit(&mut b)?;
        self.installed = next;
        Ok(())
    }

    /// Reads the named counters.
    pub fn counters(&mut self) -> io::Result<NetdevCounters> {
        let all = self.sock.counters(FAMILY_NETDEV, &self.config.table)?;
        let get = |n: &str| all.iter().find(|c| c.0 == n).map_or(0, |c| c.1);
        Ok(NetdevCounters {
            forwarded: get("forwarded"),
            ttl_expired: get("ttl_expired"),
            rpf_drop: get("rpf_drop"),
            intercepted: get("intercepted"),
            learn: get("learn"),
            learn_limited: get("learn_limited"),
            igmp: get("igmp"),
        })
    }

    /// Routes in the kernel.
    pub fn route_count(&self) -> usize {
        self.installed.routes.len()
    }

    /// Forwarding chains in the kernel (one per distinct set of outgoing interfaces).
    pub fn chain_count(&self) -> usize {
        self.installed.chains.len()
    }

    /// Deletes the table now (it would go with the socket anyway if owned).
    pub fn remove(&mut self) -> Result<(), NftError> {
        let mut b = Batch::new(FAMILY_NETDEV);
        b.del_table(&self.config.table);
        self.sock.commit(&mut b)
    }
}

/// The table, its counters, sets, maps and fixed chains.
fn write_base(config: &NetdevConfig, b: &mut Batch) {
    let t = config.table.as_str();
    b.add_table(t, if config.owner { TABLE_F_OWNER } else { 0 });
    for c in COUNTERS {
        b.add_counter(t, c);
    }
    let ipv4 = types::IPV4_ADDR;
    let sets = [
        (
            "routes",
            (
                types::concat(types::concat(types::IFACE_INDEX, ipv4), ipv4),
                12,
            ),
            true,
        ),
        (
            "groutes",
            (types::concat(types::IFACE_INDEX, ipv4), 8),
            true,
        ),
        ("sg_any", (types::concat(ipv4, ipv4), 8), false),
        ("g_any", (ipv4, 4), false),
        ("assisted", (ipv4, 4), false),
        ("learn", (ipv4, 4), false),
    ];
    for (id, (name, key, verdict)) in (1u32..).zip(sets) {
        b.add_set(
            t,
            &SetSpec {
                name,
                key,
                data: None,
                verdict,
            },
            id,
        );
    }
    b.add_set(
        t,
        &SetSpec {
            name: "ttl",
            key: (types::INTEGER, 1),
            data: Some((types::INTEGER, 1)),
            verdict: false,
        },
        7,
    );
    // TTL -> TTL - 1 from 2 up: a TTL of 1 or 0 has no element, so such a packet is not
    // forwarded.
    let ttl: Vec<([u8; 1], [u8; 1])> = (2..=255u8).map(|t| ([t], [t - 1])).collect();
    b.add_elems(
        t,
        "ttl",
        ttl.iter()
            .map(|(k, v)| (&k[..], Some(ElemData::Value(&v[..])))),
    );

    for chain in ["mc", "pgm", "route"] {
        b.add_chain(t, chain, None);
    }
    let (r0, r1) = (Reg(0), Reg(1));
    let eq = |sreg, data| Expr::Cmp {
        sreg,
        op: CmpOp::Eq,
        data,
    };
    let meta = |key| Expr::Meta { key, dreg: r0 };
    let load = |offset: u32, len: u32, dreg: Reg| Expr::Payload {
        base: Base::Network,
        offset,
        len,
        dreg,
    };
    let pgm_type = Expr::Payload {
        base: Base::Transport,
        offset: 4,
        len: 1,
        dreg: r0,
    };
    for i in &config.interfaces {
        let chain = base_chain(&i.name);
        b.add_chain(
            t,
            &chain,
            Some(Hook {
                num: HOOK_INGRESS,
                priority: PRIORITY,
                device: Some(&i.name),
            }),
        );
        // IPv4 multicast: the first byte of the destination in 224..=239.
        b.add_rule(
            t,
            &chain,
            &[
                meta(MetaKey::Protocol),
                eq(r0, &ETH_P_IP),
                load(IP_DADDR, 1, r0),
                Expr::Cmp {
                    sreg: r0,
                    op: CmpOp::Gte,
                    data: &[224],
                },
                Expr::Cmp {
                    sreg: r0,
                    op: CmpOp::Lte,
                    data: &[239],
                },
                Expr::Verdict(Verdict::Jump("mc")),
            ],
            "IPv4 multicast",
        );
    }
    let lookup = |set, sreg| Expr::Lookup {
        set,
        sreg,
        dreg: None,
        verdict: false,
    };
    let vmap = |set, sreg| Expr::Lookup {
        set,
        sreg,
        dreg: None,
        verdict: true,
    };
    let drop = Expr::Verdict(Verdict::Drop);
    let log = Expr::Log {
        group: config.log_group,
        prefix: "",
    };
    // PGM first: ODATA takes one compare here and one in `pgm` to reach the routes, with the
    // intercept or without it (the benchmark's baseline has the same path).
    b.add_rule(
        t,
        "mc",
        &[
            meta(MetaKey::L4Proto),
            eq(r0, &[113]),
            Expr::Verdict(Verdict::Goto("pgm")),
        ],
        "PGM",
    );
    if config.intercept {
        // IGMP reports, to learn memberships (delivered as usual as well).
        b.add_rule(
            t,
            "mc",
            &[
                meta(MetaKey::L4Proto),
                eq(r0, &[IPPROTO_IGMP]),
                Expr::Limit {
                    rate: IGMP_RATE,
                    burst: 100,
                },
                Expr::Log {
                    group: config.log_group,
                    prefix: "igmp",
                },
                Expr::NamedCounter("igmp"),
                Expr::Verdict(Verdict::Return),
            ],
            "IGMP log",
        );
    }
    b.add_rule(
        t,
        "mc",
        &[Expr::Verdict(Verdict::Goto("route"))],
        "other protocols",
    );
    b.add_rule(
        t,
        "pgm",
        &[
            pgm_type,
            eq(r0, &[PGM_ODATA]),
            Expr::Verdict(Verdict::Goto("route")),
        ],
        "ODATA",
    );
    if config.intercept {
        // Every other PGM type of an assisted group: to the daemon, not forwarded.
        b.add_rule(
            t,
            "pgm",
            &[
                load(IP_DADDR, 4, r0),
                lookup("assisted", r0),
                log,
                Expr::NamedCounter("intercepted"),
                drop,
            ],
            "intercept",
        );
    }
    b.add_rule(
        t,
        "pgm",
        &[Expr::Verdict(Verdict::Goto("route"))],
        "other types",
    );
    let iif = meta(MetaKey::Iif);
    b.add_rule(
        t,
        "route",
        &[iif, load(IP_SADDR, 8, r1), vmap("routes", r0)],
        "(S,G) routes",
    );
    b.add_rule(
        t,
        "route",
        &[iif, load(IP_DADDR, 4, r1), vmap("groutes", r0)],
        "(*,G) routes",
    );
    b.add_rule(
        t,
        "route",
        &[
            load(IP_SADDR, 8, r0),
            lookup("sg_any", r0),
            Expr::NamedCounter("rpf_drop"),
            drop,
        ],
        "(S,G) reverse path",
    );
    b.add_rule(
        t,
        "route",
        &[
            load(IP_DADDR, 4, r0),
            lookup("g_any", r0),
            Expr::NamedCounter("rpf_drop"),
            drop,
        ],
        "(*,G) reverse path",
    );
    if config.intercept {
        // ODATA of a new source of a learning group: to the daemon, which makes its route.
        let new_source = [
            meta(MetaKey::L4Proto),
            eq(r0, &[113]),
            pgm_type,
            eq(r0, &[PGM_ODATA]),
            load(IP_DADDR, 4, r0),
            lookup("learn", r0),
        ];
        let mut r = new_source.to_vec();
        r.extend([
            Expr::Limit {
                rate: u64::from(config.learn_rate.max(1)),
                burst: config.learn_burst.max(1),
            },
            log,
            Expr::NamedCounter("learn"),
            drop,
        ]);
        b.add_rule(t, "route", &r, "learn");
        let mut r = new_source.to_vec();
        r.extend([Expr::NamedCounter("learn_limited"), drop]);
        b.add_rule(t, "route", &r, "learn over the rate");
    }
}

/// A chain forwarding to `oifs`.
fn write_fwd_chain(config: &NetdevConfig, b: &mut Batch, name: &str, oifs: &[u32]) {
    let t = config.table.as_str();
    b.add_chain(t, name, None);
    let (r0, r1, r3) = (Reg(0), Reg(1), Reg(3));
    let macs: Vec<(u32, [u8; 6], [u8; 4])> = oifs
        .iter()
        .filter_map(|&o| {
            let i = config.interfaces.iter().find(|i| i.index == o)?;
            Some((o, i.mac, o.to_ne_bytes()))
        })
        .collect();
    let mut r = vec![
        Expr::Payload {
            base: Base::Network,
            offset: IP_TTL,
            len: 1,
            dreg: r0,
        },
        Expr::Lookup {
            set: "ttl",
            sreg: r0,
            dreg: Some(r0),
            verdict: false,
        },
        // The TTL sits at an even offset, the high byte of its 16-bit word: the checksum
        // update of that one byte is exact (RFC 1624).
        Expr::PayloadSet {
            base: Base::Network,
            offset: IP_TTL,
            len: 1,
            sreg: r0,
            csum_offset: Some(IP_CHECKSUM),
        },
    ];
    for (_, mac, index) in &macs {
        r.extend([
            Expr::Immediate {
                dreg: r1,
                data: mac,
            },
            Expr::PayloadSet {
                base: Base::Link,
                offset: ETH_SOURCE,
                len: 6,
                sreg: r1,
                csum_offset: None,
            },
            Expr::Immediate {
                dreg: r3,
                data: index,
            },
            Expr::Dup { sreg_dev: r3 },
        ]);
    }
    r.extend([
        Expr::NamedCounter("forwarded"),
        Expr::Verdict(Verdict::Drop),
    ]);
    b.add_rule(t, name, &r, "forward");
    b.add_rule(
        t,
        name,
        &[
            Expr::NamedCounter("ttl_expired"),
            Expr::Verdict(Verdict::Drop),
        ],
        "TTL expired",
    );
}

impl Drop for NetdevPlane {
    fn drop(&mut self) {
        // An owned table goes with the socket; an unowned one is deleted here.
        if !self.config.owner {
            let _ = self.remove();
        }
    }
}

/// Whether `e` is a kernel refusing `NFT_TABLE_F_OWNER` (unknown table flag).
pub(crate) fn refuses_owner(e: &NftError) -> bool {
    e.errno() == Some(libc::EOPNOTSUPP) && e.what.starts_with("create table")
}

/// The ingress chain of interface `name`.
fn base_chain(name: &str) -> String {
    format!("in_{name}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_names_are_per_interface() {
        assert_eq!(base_chain("eth0"), "in_eth0");
    }
}
