//! A deterministic in-memory network for the sans-IO engines.
//!
//! Virtual time, seeded impairments (random and bursty loss, delay with jitter that reorders,
//! duplication) per directed link, and the engines of sources and receivers running on it.
//! Every run is a pure function of its seed: a failing seed replays exactly.
//!
//! The network is one broadcast domain: a packet to the group reaches every other node, a
//! unicast packet reaches the node with that address; each (from, to) pair has its own
//! [`LinkModel`], which can be changed during a run.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::proto::receiver::{Event, Receiver};
use crate::proto::source::{SendError, Source};
use crate::proto::{Destination, RecvMeta, Transmit};
use crate::wire::Sqn;

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
        }
    }
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
        backlog: std::collections::VecDeque<Vec<u8>>,
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
}

/// A node: an address and an engine.
#[derive(Debug)]
pub struct Node {
    /// The node's unicast address.
    pub addr: IpAddr,
    /// Its engine.
    pub engine: Engine,
}

#[derive(Debug)]
struct InFlight {
    to: usize,
    meta: RecvMeta,
    bytes: Vec<u8>,
}

/// The simulated network.
#[derive(Debug)]
pub struct Sim {
    now: Instant,
    rng: ChaCha8Rng,
    nodes: Vec<Node>,
    links: HashMap<(usize, usize), LinkModel>,
    burst: HashMap<(usize, usize), bool>,
    default_link: LinkModel,
    queue: BinaryHeap<Reverse<(Instant, u64)>>,
    flights: HashMap<u64, InFlight>,
    seq: u64,
    /// Packets handed to links, lost, duplicated.
    pub counters: SimCounters,
}

/// What the network did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
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
}

impl Sim {
    /// An empty network at virtual time `start`, impairments drawn from `seed`.
    pub fn new(seed: u64, start: Instant, default_link: LinkModel) -> Self {
        Self {
            now: start,
            rng: ChaCha8Rng::seed_from_u64(seed),
            nodes: Vec::new(),
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

    /// Adds a node and returns its index.
    pub fn add(&mut self, addr: IpAddr, engine: Engine) -> usize {
        self.nodes.push(Node { addr, engine });
        self.nodes.len() - 1
    }

    /// A source node whose application will send `messages`, then close if asked.
    pub fn add_source(
        &mut self,
        addr: IpAddr,
        source: Source,
        messages: Vec<Vec<u8>>,
        close: bool,
    ) -> usize {
        self.add(
            addr,
            Engine::Source {
                source: Box::new(source),
                backlog: messages.into(),
                close_when_done: close,
                sent: Vec::new(),
            },
        )
    }

    /// A receiver node.
    pub fn add_receiver(&mut self, addr: IpAddr, receiver: Receiver) -> usize {
        self.add(
            addr,
            Engine::Receiver {
                receiver: Box::new(receiver),
                events: Vec::new(),
            },
        )
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
            let next = self.next_wakeup();
            let Some(next) = next.filter(|t| *t <= deadline) else {
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

    fn next_wakeup(&self) -> Option<Instant> {
        let mut t = self.queue.peek().map(|Reverse((at, _))| *at);
        for n in &self.nodes {
            let nt = match &n.engine {
                Engine::Source { source, .. } => source.poll_timeout(),
                Engine::Receiver { receiver, .. } => receiver.poll_timeout(),
            };
            if let Some(nt) = nt {
                t = Some(t.map_or(nt, |t| t.min(nt)));
            }
        }
        t
    }

    fn step(&mut self) {
        let now = self.now;
        // Deliver everything due.
        while let Some(&Reverse((at, id))) = self.queue.peek() {
            if at > now {
                break;
            }
            self.queue.pop();
            let Some(f) = self.flights.remove(&id) else {
                continue;
            };
            match &mut self.nodes[f.to].engine {
                Engine::Source { source, .. } => source.handle_packet(now, f.meta, &f.bytes),
                Engine::Receiver { receiver, .. } => receiver.handle_packet(now, f.meta, &f.bytes),
            }
            self.service(f.to);
        }
        for i in 0..self.nodes.len() {
            let due = match &self.nodes[i].engine {
                Engine::Source { source, .. } => source.poll_timeout(),
                Engine::Receiver { receiver, .. } => receiver.poll_timeout(),
            };
            if due.is_some_and(|t| t <= now) {
                match &mut self.nodes[i].engine {
                    Engine::Source { source, .. } => source.handle_timeout(now),
                    Engine::Receiver { receiver, .. } => receiver.handle_timeout(now),
                }
            }
            self.service(i);
        }
    }

    /// Feeds the application's backlog, drains transmits and events of node `i`.
    fn service(&mut self, i: usize) {
        let now = self.now;
        let mut out = Vec::new();
        let mut buf = Vec::new();
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
                out.push((t, buf[..t.len].to_vec()));
            },
            Engine::Receiver { receiver, events } => {
                while let Some(t) = receiver.poll_transmit(now, &mut buf) {
                    out.push((t, buf[..t.len].to_vec()));
                }
                while let Some(e) = receiver.poll_event() {
                    events.push(e);
                }
            }
        }
        for (t, bytes) in out {
            self.transmit(i, t, bytes);
        }
    }

    fn transmit(&mut self, from: usize, t: Transmit, bytes: Vec<u8>) {
        let src = self.nodes[from].addr;
        let targets: Vec<usize> = match t.destination {
            Destination::Group(_) => (0..self.nodes.len()).filter(|&j| j != from).collect(),
            Destination::Unicast(a) => (0..self.nodes.len())
                .filter(|&j| self.nodes[j].addr == a && j != from)
                .collect(),
        };
        for to in targets {
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
            if self.rng.random_bool(p.clamp(0.0, 1.0)) {
                self.counters.lost += 1;
                continue;
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
                        meta: RecvMeta {
                            source: src,
                            destination: t.destination.addr(),
                        },
                        bytes: bytes.clone(),
                    },
                );
                self.queue.push(Reverse((at, self.seq)));
            }
        }
    }
}
