//! A deterministic in-memory network for the sans-IO engines.
//!
//! Virtual time, seeded impairments (random and bursty loss, delay with jitter that reorders,
//! duplication) per directed (sender, receiver) pair, and the engines of sources, receivers
//! and network elements running on it. Every run is a pure function of its seed: a failing
//! seed replays exactly.
//!
//! # Topology
//!
//! Nodes sit on **segments** (broadcast domains, like a LAN or a point-to-point link).
//! Multicast sent on a segment reaches every other node on it. Hosts (sources, receivers)
//! have one interface; **routers** have several and forward ODATA along their configured
//! `(source, group)` routes the way a kernel does, without their engine seeing it. A router
//! with a [`NetworkElement`] engine hands it every other PGM multicast (SPM, NCF, RDATA,
//! POLL) and the unicast addressed to it, as `pgm-routerd` gets them from the kernel; a
//! router without one forwards every PGM multicast like ODATA (plain multicast routing).
//!
//! Unicast to an address on the sender's segment is delivered there; unicast to any other
//! address is delivered straight to its owner (the simulator does not route unicast hop by
//! hop; no router in these topologies inspects unicast not addressed to it).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::proto::network_element::{IfIndex, NeRecvMeta, NeRoute, NetworkElement};
use crate::proto::receiver::{Event, Receiver};
use crate::proto::repairer::Repairer;
use crate::proto::source::{SendError, Source};
use crate::proto::{Destination, RecvMeta};
use crate::wire::{Packet, PacketType, Sqn};

/// Impairments of one directed link.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinkModel {
    /// Probability that a packet is lost in the good state.
    pub loss: f64,
    /// Probability of entering the bad (burst) state, per packet (Gilbert–Elliott).
    pub burst_enter: f64,
    /// Probability of leaving the bad state, per packet.
    pub burst_exit: f64,
    /// Probability that a packet is lost in the bad state.
    pub burst_loss: f64,
    /// Fixed one-way delay.
    pub delay: Duration,
    /// Extra delay drawn uniformly in `[0, jitter)`: packets overtake each other.
    pub jitter: Duration,
    /// Probability that a packet is delivered twice.
    pub duplicate: f64,
    /// Loss applies only to these PGM types (all types if empty), e.g. only ODATA.
    pub loss_only: &'static [PacketType],
}

impl Default for LinkModel {
    fn default() -> Self {
        Self {
            loss: 0.0,
            burst_enter: 0.0,
            burst_exit: 1.0,
            burst_loss: 0.0,
            delay: Duration::from_millis(1),
            jitter: Duration::ZERO,
            duplicate: 0.0,
            loss_only: &[],
        }
    }
}

/// A segment (broadcast domain).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SegmentId(pub usize);

/// One interface of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SimIface {
    /// The segment it is attached to.
    pub segment: SegmentId,
    /// Its address.
    pub addr: IpAddr,
    /// Its index (what a network element knows it by).
    pub index: IfIndex,
}

/// A multicast route of a router: ODATA (and, without a network element, every PGM
/// multicast) arriving on `upstream` from `source` to `group` leaves on `downstream`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimRoute {
    /// The ODATA source.
    pub source: IpAddr,
    /// The group.
    pub group: IpAddr,
    /// The interface towards the source.
    pub upstream: IfIndex,
    /// The interfaces the tree leaves by.
    pub downstream: Vec<IfIndex>,
}

/// A node's engine.
#[derive(Debug)]
#[non_exhaustive]
pub enum Engine {
    /// A source, with the messages its application still has to send.
    Source {
        /// The engine.
        source: Box<Source>,
        /// Messages not yet accepted by the engine, in order.
        backlog: VecDeque<Vec<u8>>,
        /// Close the session once the backlog is empty.
        close_when_done: bool,
        /// The sequence-number range each accepted message got: (first, last).
        sent: Vec<(Sqn, Sqn)>,
    },
    /// A receiver, with the events it produced.
    Receiver {
        /// The engine.
        receiver: Box<Receiver>,
        /// Every event, in order.
        events: Vec<Event>,
    },
    /// A Designated Local Repairer, with the events of its embedded receiver.
    Repairer {
        /// The engine.
        dlr: Box<Repairer>,
        /// Every event of its receiver.
        events: Vec<Event>,
    },
    /// A router: kernel multicast forwarding along `routes`, and PGM Router Assist if `ne`
    /// is present.
    Router {
        /// The network-element engine, if PGM is enabled on this router.
        ne: Option<Box<NetworkElement>>,
        /// The multicast routes.
        routes: Vec<SimRoute>,
    },
}

/// A node: its interfaces and its engine.
#[derive(Debug)]
pub struct Node {
    /// Interfaces; hosts have one.
    pub ifaces: Vec<SimIface>,
    /// Its engine.
    pub engine: Engine,
}

impl Node {
    /// The node's first address.
    pub fn addr(&self) -> IpAddr {
        self.ifaces[0].addr
    }
}

#[derive(Debug)]
struct InFlight {
    to: usize,
    iface: usize,
    meta: RecvMeta,
    ttl: u8,
    bytes: Vec<u8>,
}

/// What the network did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SimCounters {
    /// Packet copies put on links.
    pub sent: u64,
    /// Copies lost.
    pub lost: u64,
    /// Extra copies from duplication.
    pub duplicated: u64,
    /// The run stopped because the engines kept asking to be woken at the same instant
    /// without progress: an engine bug (a deadline that `handle_timeout` does not clear).
    pub stalled: bool,
    /// Packets transmitted onto each segment, by PGM type (once per transmit).
    pub on_segment: HashMap<(SegmentId, PacketType), u64>,
    /// Packets delivered to each node, by PGM type.
    pub delivered: HashMap<(usize, PacketType), u64>,
    /// Sequence numbers of ODATA copies lost on some link.
    pub lost_odata: std::collections::BTreeSet<u32>,
}

/// A transmit of a node, before it is put on the network: out interface (hosts: their only
/// one), IP source, destination, TTL, type and bytes.
type Outgoing = (
    Option<IfIndex>,
    IpAddr,
    Destination,
    u8,
    PacketType,
    Vec<u8>,
);

/// The simulated network.
#[derive(Debug)]
pub struct Sim {
    now: Instant,
    rng: ChaCha8Rng,
    nodes: Vec<Node>,
    segments: usize,
    links: HashMap<(usize, usize), LinkModel>,
    burst: HashMap<(usize, usize), bool>,
    default_link: LinkModel,
    queue: BinaryHeap<Reverse<(Instant, u64)>>,
    flights: HashMap<u64, InFlight>,
    seq: u64,
    /// What the network did.
    pub counters: SimCounters,
}

impl Sim {
    /// A network with one segment (segment 0) at virtual time `start`, impairments drawn
    /// from `seed`.
    pub fn new(seed: u64, start: Instant, default_link: LinkModel) -> Self {
        Self {
            now: start,
            rng: ChaCha8Rng::seed_from_u64(seed),
            nodes: Vec::new(),
            segments: 1,
            links: HashMap::new(),
            burst: HashMap::new(),
            default_link,
            queue: BinaryHeap::new(),
            flights: HashMap::new(),
            seq: 0,
            counters: SimCounters::default(),
        }
    }

    /// The current virtual time.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Adds a segment.
    pub fn add_segment(&mut self) -> SegmentId {
        self.segments += 1;
        SegmentId(self.segments - 1)
    }

    /// Adds a node and returns its index.
    pub fn add(&mut self, ifaces: Vec<SimIface>, engine: Engine) -> usize {
        self.nodes.push(Node { ifaces, engine });
        self.nodes.len() - 1
    }

    fn host_iface(segment: SegmentId, addr: IpAddr) -> Vec<SimIface> {
        vec![SimIface {
            segment,
            addr,
            index: IfIndex(1),
        }]
    }

    /// A source on segment 0 whose application will send `messages`, then close if asked.
    pub fn add_source(
        &mut self,
        addr: IpAddr,
        source: Source,
        messages: Vec<Vec<u8>>,
        close: bool,
    ) -> usize {
        self.add_source_at(SegmentId(0), addr, source, messages, close)
    }

    /// A source on `segment`.
    pub fn add_source_at(
        &mut self,
        segment: SegmentId,
        addr: IpAddr,
        source: Source,
        messages: Vec<Vec<u8>>,
        close: bool,
    ) -> usize {
        self.add(
            Self::host_iface(segment, addr),
            Engine::Source {
                source: Box::new(source),
                backlog: messages.into(),
                close_when_done: close,
                sent: Vec::new(),
            },
        )
    }

    /// A receiver on segment 0.
    pub fn add_receiver(&mut self, addr: IpAddr, receiver: Receiver) -> usize {
        self.add_receiver_at(SegmentId(0), addr, receiver)
    }

    /// A receiver on `segment`.
    pub fn add_receiver_at(
        &mut self,
        segment: SegmentId,
        addr: IpAddr,
        receiver: Receiver,
    ) -> usize {
        self.add(
            Self::host_iface(segment, addr),
            Engine::Receiver {
                receiver: Box::new(receiver),
                events: Vec::new(),
            },
        )
    }

    /// A DLR on `segment`.
    pub fn add_repairer_at(&mut self, segment: SegmentId, addr: IpAddr, dlr: Repairer) -> usize {
        self.add(
            Self::host_iface(segment, addr),
            Engine::Repairer {
                dlr: Box::new(dlr),
                events: Vec::new(),
            },
        )
    }

    /// A router with these interfaces and routes; a network element if `ne` is given (its
    /// routes are set from `routes`).
    pub fn add_router(
        &mut self,
        ifaces: Vec<SimIface>,
        ne: Option<NetworkElement>,
        routes: Vec<SimRoute>,
    ) -> usize {
        let ne = ne.map(|mut ne| {
            for r in &routes {
                ne.set_route(
                    Some(r.source),
                    r.group,
                    NeRoute {
                        upstream: r.upstream,
                        downstream: r.downstream.clone(),
                    },
                );
            }
            Box::new(ne)
        });
        self.add(ifaces, Engine::Router { ne, routes })
    }

    /// Sets the model of the link from node `from` to node `to`.
    pub fn set_link(&mut self, from: usize, to: usize, model: LinkModel) {
        self.links.insert((from, to), model);
    }

    /// The nodes.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// Runs until `deadline` or until `done` holds, whichever first. Returns whether `done`
    /// held.
    pub fn run_until(&mut self, deadline: Instant, mut done: impl FnMut(&Self) -> bool) -> bool {
        for i in 0..self.nodes.len() {
            self.service(i);
        }
        let mut same_instant = 0u32;
        loop {
            if done(self) {
                return true;
            }
            let Some(next) = self.next_wakeup().filter(|t| *t <= deadline) else {
                self.now = deadline;
                return done(self);
            };
            if next <= self.now {
                same_instant += 1;
                if same_instant > 100_000 {
                    self.counters.stalled = true;
                    return done(self);
                }
            } else {
                same_instant = 0;
            }
            self.now = self.now.max(next);
            self.step();
        }
    }

    fn poll_timeout(engine: &Engine) -> Option<Instant> {
        match engine {
            Engine::Source { source, .. } => source.poll_timeout(),
            Engine::Receiver { receiver, .. } => receiver.poll_timeout(),
            Engine::Repairer { dlr, .. } => dlr.poll_timeout(),
            Engine::Router { ne, .. } => ne.as_ref().and_then(|n| n.poll_timeout()),
        }
    }

    fn next_wakeup(&self) -> Option<Instant> {
        let mut t = self.queue.peek().map(|Reverse((at, _))| *at);
        for n in &self.nodes {
            if let Some(nt) = Self::poll_timeout(&n.engine) {
                t = Some(t.map_or(nt, |t| t.min(nt)));
            }
        }
        t
    }

    fn step(&mut self) {
        let now = self.now;
        while let Some(&Reverse((at, id))) = self.queue.peek() {
            if at > now {
                break;
            }
            self.queue.pop();
            let Some(f) = self.flights.remove(&id) else {
                continue;
            };
            self.deliver(f);
        }
        for i in 0..self.nodes.len() {
            if Self::poll_timeout(&self.nodes[i].engine).is_some_and(|t| t <= now) {
                match &mut self.nodes[i].engine {
                    Engine::Source { source, .. } => source.handle_timeout(now),
                    Engine::Receiver { receiver, .. } => receiver.handle_timeout(now),
                    Engine::Repairer { dlr, .. } => dlr.handle_timeout(now),
                    Engine::Router { ne: Some(ne), .. } => ne.handle_timeout(now),
                    Engine::Router { ne: None, .. } => {}
                }
            }
            self.service(i);
        }
    }

    fn deliver(&mut self, f: InFlight) {
        let now = self.now;
        let ty = Packet::new_checked(&f.bytes[..])
            .map_or(PacketType::Unknown(0xFF), |p| p.packet_type());
        *self.counters.delivered.entry((f.to, ty)).or_default() += 1;
        let iface = self.nodes[f.to].ifaces[f.iface];
        match &mut self.nodes[f.to].engine {
            Engine::Source { source, .. } => source.handle_packet(now, f.meta, &f.bytes),
            Engine::Receiver { receiver, .. } => receiver.handle_packet(now, f.meta, &f.bytes),
            Engine::Repairer { dlr, .. } => dlr.handle_packet(now, f.meta, &f.bytes),
            Engine::Router { ne, routes } => {
                let multicast = f.meta.destination.is_multicast();
                let punted = ne.is_some() && (!multicast || ty != PacketType::Odata);
                if punted {
                    if let Some(ne) = ne {
                        let meta = NeRecvMeta {
                            ifindex: iface.index,
                            source: f.meta.source,
                            destination: f.meta.destination,
                            ttl: f.ttl,
                        };
                        ne.handle_packet(now, meta, &f.bytes);
                    }
                } else if multicast && f.ttl > 1 {
                    // Kernel multicast forwarding along the route.
                    let oifs: Vec<IfIndex> = routes
                        .iter()
                        .find(|r| {
                            r.source == f.meta.source
                                && r.group == f.meta.destination
                                && r.upstream == iface.index
                        })
                        .map(|r| r.downstream.clone())
                        .unwrap_or_default();
                    for oif in oifs {
                        self.send_on(
                            f.to,
                            oif,
                            f.meta.source,
                            f.meta.destination,
                            f.ttl - 1,
                            ty,
                            &f.bytes,
                        );
                    }
                }
            }
        }
        self.service(f.to);
    }

    /// Feeds the application's backlog, drains transmits and events of node `i`.
    fn service(&mut self, i: usize) {
        let now = self.now;
        let mut out: Vec<Outgoing> = Vec::new();
        let mut buf = Vec::new();
        let addr = self.nodes[i].addr();
        match &mut self.nodes[i].engine {
            Engine::Source {
                source,
                backlog,
                close_when_done,
                sent,
            } => loop {
                while let Some(m) = backlog.front() {
                    let first = source.next_sqn();
                    match source.send(m) {
                        Ok(()) => {
                            sent.push((first, source.next_sqn() - 1));
                            backlog.pop_front();
                        }
                        Err(SendError::WouldBlock) => break,
                        Err(_) => {
                            backlog.pop_front();
                        }
                    }
                }
                if backlog.is_empty() && *close_when_done {
                    source.close(now);
                }
                let Some(t) = source.poll_transmit(now, &mut buf) else {
                    break;
                };
                out.push((
                    None,
                    addr,
                    t.destination,
                    t.ttl.unwrap_or(64),
                    t.packet_type,
                    buf[..t.len].to_vec(),
                ));
            },
            Engine::Receiver { receiver, events } => {
                while let Some(t) = receiver.poll_transmit(now, &mut buf) {
                    out.push((
                        None,
                        addr,
                        t.destination,
                        t.ttl.unwrap_or(64),
                        t.packet_type,
                        buf[..t.len].to_vec(),
                    ));
                }
                while let Some(e) = receiver.poll_event() {
                    events.push(e);
                }
            }
            Engine::Repairer { dlr, events } => {
                while let Some(t) = dlr.poll_transmit(now, &mut buf) {
                    out.push((
                        None,
                        t.source,
                        t.destination,
                        t.ttl.unwrap_or(64),
                        t.packet_type,
                        buf[..t.len].to_vec(),
                    ));
                }
                while let Some(e) = dlr.poll_event() {
                    events.push(e);
                }
            }
            Engine::Router { ne: Some(ne), .. } => {
                while let Some(t) = ne.poll_transmit(now, &mut buf) {
                    let dest = if t.destination.is_multicast() {
                        Destination::Group(t.destination)
                    } else {
                        Destination::Unicast(t.destination)
                    };
                    out.push((
                        Some(t.ifindex),
                        t.source,
                        dest,
                        t.ttl,
                        t.packet_type,
                        buf[..t.len].to_vec(),
                    ));
                }
            }
            Engine::Router { ne: None, .. } => {}
        }
        for (ifindex, src, dest, ttl, ty, bytes) in out {
            let oif = ifindex.unwrap_or(self.nodes[i].ifaces[0].index);
            match dest {
                Destination::Group(g) => self.send_on(i, oif, src, g, ttl, ty, &bytes),
                Destination::Unicast(a) => self.send_unicast(i, oif, src, a, ttl, ty, &bytes),
            }
        }
    }

    fn iface_pos(&self, node: usize, index: IfIndex) -> Option<usize> {
        self.nodes[node]
            .ifaces
            .iter()
            .position(|f| f.index == index)
    }

    /// Multicast from `from` out of its interface `oif`: every other node on the segment.
    #[allow(clippy::too_many_arguments)]
    fn send_on(
        &mut self,
        from: usize,
        oif: IfIndex,
        src: IpAddr,
        group: IpAddr,
        ttl: u8,
        ty: PacketType,
        bytes: &[u8],
    ) {
        let Some(pos) = self.iface_pos(from, oif) else {
            return;
        };
        let seg = self.nodes[from].ifaces[pos].segment;
        *self.counters.on_segment.entry((seg, ty)).or_default() += 1;
        let targets: Vec<(usize, usize)> = self
            .nodes
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != from)
            .flat_map(|(j, n)| {
                n.ifaces
                    .iter()
                    .enumerate()
                    .filter(|(_, f)| f.segment == seg)
                    .map(move |(k, _)| (j, k))
            })
            .collect();
        for (to, k) in targets {
            self.put(
                from,
                to,
                k,
                RecvMeta {
                    source: src,
                    destination: group,
                },
                ttl,
                ty,
                bytes,
            );
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn send_unicast(
        &mut self,
        from: usize,
        oif: IfIndex,
        src: IpAddr,
        dst: IpAddr,
        ttl: u8,
        ty: PacketType,
        bytes: &[u8],
    ) {
        if let Some(pos) = self.iface_pos(from, oif) {
            let seg = self.nodes[from].ifaces[pos].segment;
            *self.counters.on_segment.entry((seg, ty)).or_default() += 1;
        }
        let Some((to, k)) = self
            .nodes
            .iter()
            .enumerate()
            .find_map(|(j, n)| n.ifaces.iter().position(|f| f.addr == dst).map(|k| (j, k)))
        else {
            return;
        };
        if to == from {
            return;
        }
        self.put(
            from,
            to,
            k,
            RecvMeta {
                source: src,
                destination: dst,
            },
            ttl,
            ty,
            bytes,
        );
    }

    /// Puts one copy on the link from `from` to `to`'s interface `k`, through its model.
    #[allow(clippy::too_many_arguments)]
    fn put(
        &mut self,
        from: usize,
        to: usize,
        k: usize,
        meta: RecvMeta,
        ttl: u8,
        ty: PacketType,
        bytes: &[u8],
    ) {
        let model = *self.links.get(&(from, to)).unwrap_or(&self.default_link);
        self.counters.sent += 1;
        let bad = self.burst.entry((from, to)).or_insert(false);
        if *bad {
            if self.rng.random_bool(model.burst_exit.clamp(0.0, 1.0)) {
                *bad = false;
            }
        } else if self.rng.random_bool(model.burst_enter.clamp(0.0, 1.0)) {
            *bad = true;
        }
        let p = if *bad { model.burst_loss } else { model.loss };
        let applies = model.loss_only.is_empty() || model.loss_only.contains(&ty);
        if self.rng.random_bool(p.clamp(0.0, 1.0)) && applies {
            self.counters.lost += 1;
            if ty == PacketType::Odata {
                if let Ok(d) = crate::wire::DataPacket::new_checked(bytes) {
                    self.counters.lost_odata.insert(d.sqn().0);
                }
            }
            return;
        }
        let copies = if self.rng.random_bool(model.duplicate.clamp(0.0, 1.0)) {
            self.counters.duplicated += 1;
            2
        } else {
            1
        };
        for _ in 0..copies {
            let jitter = if model.jitter.is_zero() {
                Duration::ZERO
            } else {
                Duration::from_nanos(self.rng.random_range(0..model.jitter.as_nanos() as u64))
            };
            let at = self.now + model.delay + jitter;
            self.seq += 1;
            self.flights.insert(
                self.seq,
                InFlight {
                    to,
                    iface: k,
                    meta,
                    ttl,
                    bytes: bytes.to_vec(),
                },
            );
            self.queue.push(Reverse((at, self.seq)));
        }
    }
}
