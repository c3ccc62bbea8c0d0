//! The project's reference topology, on which the router and DLR tests run.
//!
//! ```text
//!                                                      +------ namespace "swa" ------+
//!  src ------------- r1 ------------- r2 ---- lana ----|- p-r2    [br0]    p-rcv1 -|---- rcv1
//!  eth0      to-src    to-r2     to-r1    |            |                   p-rcv2 -|---- rcv2
//!                                         |            +-----------------------------+
//!                                         +-- lanb ------------------------------------- rcv3
//! ```
//!
//! Every host is its own namespace (`src`, `r1`, `r2`, `rcv1`, `rcv2`, `rcv3`). Point-to-point
//! links and LAN B are veth pairs. LAN A is a Linux bridge `br0` in a namespace of its own
//! (`swa`, a switch), so R2 sees LAN A through one ordinary interface (`lana`) on which loss
//! rules, captures and mroute VIFs work exactly as on LAN B; IGMP snooping on `br0` is off
//! unless [`RefTopologyBuilder::lan_a_snooping`] turns it on.
//!
//! Addresses come from the lab's block `10.B.0.0/16` ([`AddrBlock`](super::AddrBlock)):
//!
//! | link        | subnet       | addresses                                   |
//! |-------------|--------------|---------------------------------------------|
//! | src - r1    | 10.B.1.0/24  | r1 `to-src` .1, src `eth0` .2               |
//! | r1 - r2     | 10.B.2.0/24  | r1 `to-r2` .1, r2 `to-r1` .2                |
//! | LAN A       | 10.B.3.0/24  | r2 `lana` .1, rcv1 .11, rcv2 .12            |
//! | LAN B       | 10.B.4.0/24  | r2 `lanb` .1, rcv3 .13                      |
//!
//! Hosts route `10.B.0.0/16` via their router and `224.0.0.0/4` out of `eth0`; they have no
//! default route, so nothing can leave the lab. R1 and R2 have static routes to every subnet and
//! unicast forwarding on, so receivers reach the source and both routers (NAKs are unicast
//! upstream). Multicast forwarding is left to the test: plain forwarding without PGM assist
//! ([`RefTopology::start_baseline_forwarding`], netdev rules, any kernel;
//! [`RefTopology::start_smcroute`], the kernel's multicast routing, `CONFIG_IP_MROUTE`), or the
//! PGM network element ([`RefTopology::start_routers`]).

use std::net::Ipv4Addr;

use anyhow::Result;

use super::forward::Forwarding;
use super::mroute::{McRoute, Smcroute};
use super::{Lab, Ns, Process};
use crate::daemon::{Daemon, RouterConfig};

/// An interface with its IPv4 address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Iface {
    /// Interface name inside its namespace.
    pub name: String,
    /// Its address.
    pub addr: Ipv4Addr,
    /// Prefix length of its subnet.
    pub prefix_len: u8,
}

impl Iface {
    fn new(name: &str, addr: Ipv4Addr) -> Self {
        Self {
            name: name.to_owned(),
            addr,
            prefix_len: 24,
        }
    }
}

/// An end host with one interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Host {
    /// Its namespace.
    pub ns: Ns,
    /// Its only interface.
    pub iface: Iface,
    /// Its router's address on the host's subnet.
    pub gateway: Ipv4Addr,
}

impl Host {
    /// The host's address.
    pub fn addr(&self) -> Ipv4Addr {
        self.iface.addr
    }
}

/// A router: one interface towards the source, the others away from it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Router {
    /// Its namespace.
    pub ns: Ns,
    /// The interface towards the source.
    pub upstream: Iface,
    /// The interfaces away from the source.
    pub downstream: Vec<Iface>,
}

/// A bridge in a namespace of its own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Switch {
    /// Its namespace.
    pub ns: Ns,
    /// The bridge device.
    pub bridge: String,
    /// The bridge ports, in the order they were attached.
    pub ports: Vec<String>,
}

/// Options for [`RefTopology`].
#[derive(Clone, Debug)]
pub struct RefTopologyBuilder {
    tag: String,
    lan_a_snooping: bool,
}

impl RefTopologyBuilder {
    /// Turns IGMP snooping on LAN A's bridge on or off (default off: LAN A floods multicast).
    pub fn lan_a_snooping(mut self, on: bool) -> Self {
        self.lan_a_snooping = on;
        self
    }

    /// Creates the lab and the topology.
    pub fn build(self) -> Result<RefTopology> {
        let lab = Lab::new(&self.tag)?;
        let b = lab.block();

        let src = lab.add_ns("src")?;
        let r1 = lab.add_ns("r1")?;
        let r2 = lab.add_ns("r2")?;
        let swa = lab.add_ns("swa")?;
        let rcv = [
            lab.add_ns("rcv1")?,
            lab.add_ns("rcv2")?,
            lab.add_ns("rcv3")?,
        ];

        let source = Host {
            ns: src.clone(),
            iface: Iface::new("eth0", b.addr(1, 2)),
            gateway: b.addr(1, 1),
        };
        let r1 = Router {
            ns: r1,
            upstream: Iface::new("to-src", b.addr(1, 1)),
            downstream: vec![Iface::new("to-r2", b.addr(2, 1))],
        };
        let r2 = Router {
            ns: r2,
            upstream: Iface::new("to-r1", b.addr(2, 2)),
            downstream: vec![
                Iface::new("lana", b.addr(3, 1)),
                Iface::new("lanb", b.addr(4, 1)),
            ],
        };
        let [rcv1, rcv2, rcv3] = rcv;
        let receivers = [
            Host {
                ns: rcv1,
                iface: Iface::new("eth0", b.addr(3, 11)),
                gateway: b.addr(3, 1),
            },
            Host {
                ns: rcv2,
                iface: Iface::new("eth0", b.addr(3, 12)),
                gateway: b.addr(3, 1),
            },
            Host {
                ns: rcv3,
                iface: Iface::new("eth0", b.addr(4, 13)),
                gateway: b.addr(4, 1),
            },
        ];
        let lan_a = Switch {
            ns: swa,
            bridge: "br0".to_owned(),
            ports: vec!["p-r2".to_owned(), "p-rcv1".to_owned(), "p-rcv2".to_owned()],
        };

        // Links.
        lab.add_veth(&source.ns, "eth0", &r1.ns, "to-src")?;
        lab.add_veth(&r1.ns, "to-r2", &r2.ns, "to-r1")?;
        lab.add_bridge(&lan_a.ns, &lan_a.bridge, self.lan_a_snooping)?;
        lab.add_veth(&r2.ns, "lana", &lan_a.ns, "p-r2")?;
        lab.add_veth(&receivers[0].ns, "eth0", &lan_a.ns, "p-rcv1")?;
        lab.add_veth(&receivers[1].ns, "eth0", &lan_a.ns, "p-rcv2")?;
        for port in &lan_a.ports {
            lab.bridge_attach(&lan_a.ns, &lan_a.bridge, port)?;
        }
        lab.add_veth(&r2.ns, "lanb", &receivers[2].ns, "eth0")?;

        // Addresses.
        for router in [&r1, &r2] {
            for iface in std::iter::once(&router.upstream).chain(&router.downstream) {
                lab.add_addr(&router.ns, &iface.name, iface.addr, iface.prefix_len)?;
            }
        }
        for host in std::iter::once(&source).chain(&receivers) {
            lab.add_addr(
                &host.ns,
                &host.iface.name,
                host.iface.addr,
                host.iface.prefix_len,
            )?;
            lab.route_via(&host.ns, &b.cidr(), host.gateway)?;
            lab.route_dev(&host.ns, "224.0.0.0/4", &host.iface.name)?;
        }

        // Unicast routing between the routers.
        lab.route_via(&r1.ns, &b.subnet(3), r2.upstream.addr)?;
        lab.route_via(&r1.ns, &b.subnet(4), r2.upstream.addr)?;
        lab.route_via(&r2.ns, &b.subnet(1), r1.downstream[0].addr)?;
        lab.enable_forwarding(&r1.ns)?;
        lab.enable_forwarding(&r2.ns)?;

        Ok(RefTopology {
            lab,
            source,
            r1,
            r2,
            lan_a,
            receivers,
        })
    }
}

/// The reference topology `source - R1 - R2 - {LAN A: rcv1, rcv2; LAN B: rcv3}` (see the
/// [module docs](self) for the picture and the addresses).
#[derive(Debug)]
pub struct RefTopology {
    /// The lab owning every namespace; dropping the topology removes them all.
    pub lab: Lab,
    /// The multicast source.
    pub source: Host,
    /// The router next to the source: upstream `to-src`, downstream `[to-r2]`.
    pub r1: Router,
    /// The router next to the receivers: upstream `to-r1`, downstream `[lana, lanb]`.
    pub r2: Router,
    /// LAN A's switch.
    pub lan_a: Switch,
    /// `rcv1` and `rcv2` on LAN A, then `rcv3` on LAN B.
    pub receivers: [Host; 3],
}

impl RefTopology {
    /// Builds the topology with default options (IGMP snooping off).
    pub fn build(tag: &str) -> Result<Self> {
        Self::builder(tag).build()
    }

    /// Options for the topology of the test called `tag`.
    pub fn builder(tag: &str) -> RefTopologyBuilder {
        RefTopologyBuilder {
            tag: tag.to_owned(),
            lan_a_snooping: false,
        }
    }

    /// Multicast group `239.192.B.n` of this lab's block.
    pub fn group(&self, n: u8) -> Ipv4Addr {
        self.lab.block().group(n)
    }

    /// R2's interface on LAN A (`lana`).
    pub fn r2_lan_a(&self) -> &Iface {
        &self.r2.downstream[0]
    }

    /// R2's interface on LAN B (`lanb`).
    pub fn r2_lan_b(&self) -> &Iface {
        &self.r2.downstream[1]
    }

    /// The receivers on LAN A (`rcv1`, `rcv2`).
    pub fn lan_a_receivers(&self) -> &[Host] {
        &self.receivers[..2]
    }

    /// The receiver on LAN B (`rcv3`).
    pub fn lan_b_receiver(&self) -> &Host {
        &self.receivers[2]
    }

    /// The static `(source, group)` routes of plain forwarding: R1 `to-src` to `to-r2`, R2
    /// `to-r1` to `lana` and `lanb`.
    fn baseline_routes(&self, group: Ipv4Addr) -> [McRoute; 2] {
        let s = self.source.addr();
        let r1_out: Vec<&str> = self.r1.downstream.iter().map(|i| i.name.as_str()).collect();
        let r2_out: Vec<&str> = self.r2.downstream.iter().map(|i| i.name.as_str()).collect();
        [
            McRoute::sg(&self.r1.upstream.name, s, group, &r1_out),
            McRoute::sg(&self.r2.upstream.name, s, group, &r2_out),
        ]
    }

    /// Plain multicast forwarding of `(source, group)` by netdev rules on R1 and R2 (see
    /// [`Lab::start_forwarding`]): no PGM assist, no kernel multicast routing needed.
    pub fn start_baseline_forwarding(&self, group: Ipv4Addr) -> Result<[Forwarding; 2]> {
        let [r1, r2] = self.baseline_routes(group);
        Ok([
            self.lab.start_forwarding(&self.r1.ns, &[r1])?,
            self.lab.start_forwarding(&self.r2.ns, &[r2])?,
        ])
    }

    /// Plain kernel multicast routing of `(source, group)`: smcroute on R1 and R2 with the
    /// routes of [`RefTopology::start_baseline_forwarding`]. Needs `CONFIG_IP_MROUTE`.
    pub fn start_smcroute(&self, group: Ipv4Addr) -> Result<[Smcroute; 2]> {
        let [r1, r2] = self.baseline_routes(group);
        Ok([
            self.lab.start_smcroute(&self.r1.ns, &[r1])?,
            self.lab.start_smcroute(&self.r2.ns, &[r2])?,
        ])
    }

    /// `base` with R1's interfaces (`to-src`, then `to-r2`) and, for `Some(group)`, a static
    /// route for (source, `group`) from `to-src` to `to-r2`.
    pub fn r1_config(&self, base: &RouterConfig, route: Option<Ipv4Addr>) -> RouterConfig {
        self.router_config(&self.r1, base, route)
    }

    /// `base` with R2's interfaces (`to-r1`, then `lana`, `lanb`) and, for `Some(group)`, a
    /// static route for (source, `group`) from `to-r1` to `lana` and `lanb`.
    pub fn r2_config(&self, base: &RouterConfig, route: Option<Ipv4Addr>) -> RouterConfig {
        self.router_config(&self.r2, base, route)
    }

    fn router_config(
        &self,
        router: &Router,
        base: &RouterConfig,
        route: Option<Ipv4Addr>,
    ) -> RouterConfig {
        let up = router.upstream.name.as_str();
        let down: Vec<&str> = router.downstream.iter().map(|i| i.name.as_str()).collect();
        let mut config = base.clone().interfaces(&[up]).interfaces(&down);
        if let Some(group) = route {
            config = config.route(group, self.source.addr(), up, &down);
        }
        config
    }

    /// Starts `routerd` (a [`Daemon`] for `pgm-routerd`) on R1 with the configuration `r1`
    /// and on R2 with `r2` (see [`RefTopology::r1_config`]), in that order; their processes
    /// are labelled `routerd-r1` and `routerd-r2`.
    pub fn start_routers(
        &self,
        routerd: &Daemon,
        r1: &RouterConfig,
        r2: &RouterConfig,
    ) -> Result<[Process; 2]> {
        let r1 = routerd.start(&self.lab, &self.r1.ns, "routerd-r1", &r1.to_string())?;
        let r2 = routerd.start(&self.lab, &self.r2.ns, "routerd-r2", &r2.to_string())?;
        Ok([r1, r2])
    }
}
