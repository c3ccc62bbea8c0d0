//! The PGM network-element engine (§7, §9.3.3, §9.5.3.2, Appendix D), sans-IO: the protocol
//! half of PGM Router Assist.
//!
//! Heads up! Read RFC 3208 §7 first. The engine sees only the packets a router punts to it:
//! SPMs, NCFs, RDATA and POLLs that travel down the tree (Router Alert, or intercepted), and
//! NAKs, NNAKs and POLRs unicast to one of its interfaces. ODATA does not need it: the kernel
//! forwards ODATA (one punted all the same only shows the transmit window). The driver tells
//! the engine which interfaces exist ([`NeConfig::interfaces`]) and, per (source, group),
//! which interfaces the tree leaves by ([`NetworkElement::set_route`]).
//!
//! What the engine does:
//!
//! - source path state per TSI from in-sequence SPMs (§7.1); SPMs forwarded on each
//!   outgoing interface with SPM_PATH rewritten to that interface's address (§7.1);
//! - an NCF multicast on the NAK's interface for every NAK (§7.2), identical NCFs rate
//!   limited; repair state per (TSI, SQN) with its interface list (§7.2, §7.8);
//! - NAKs forwarded to the upstream neighbour only (§7.3, §7.7), repeated until an NCF,
//!   duplicates eliminated while pending and for NAK_ELIM_IVL once outstanding (§7.4), with
//!   the NAK-list rules of §9.3.3; NAK anticipation from unsolicited upstream NCFs (§7.5);
//! - NAKs and NNAKs for sequence numbers outside the session's transmit window, as SPMs and
//!   upstream data show it, dropped and counted, whole or entry by entry: the source could
//!   not repair them, and reflecting them would let any host draw NCFs and upstream NAKs at
//!   will ([`NeConfig::nak_window_slack`]);
//! - RDATA forwarded only on the interfaces that asked for it, dropped without state (§7.8);
//! - NNAKs per §9.5.3.2 (forwarded unless state exists; never confirmed nor retried);
//! - unknown options handled by their OPX bits (§9);
//! - general POLLs on downstream interfaces, counting PGM children (Appendix D);
//! - every table and queue bounded, with evictions and drops counted.
//!
//! The work per call does not grow with the tables: a packet touches its TSI, at most 63
//! repair states, and the heads of the lazy queues; `poll_timeout` reads the heads of the
//! queues; `handle_timeout` handles what came due. Stale queue entries are dropped once each,
//! at the head or in a compaction (amortized O(1) per entry). The modules:
//!
//! - `tsi`: source path state and the TSI table (recency, expiry and poll queues);
//! - `window`: the transmit window and the NAK filter;
//! - `repair`: repair states, their wake-ups and eviction order;
//! - `naks`: NAKs, NNAKs and NCFs; `tree`: SPMs, data and polls;
//! - `rewrite`: OPX and NAK rewriting; `transmit`: the bounded transmit queue;
//! - `expiry`: timers, expiry and eviction.

mod expiry;
mod naks;
mod repair;
mod rewrite;
mod transmit;
mod tree;
mod tsi;
mod window;

#[cfg(test)]
mod tests;

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use self::repair::{Intervals, RepairTable};
use self::transmit::Tx;
use self::tsi::TsiTable;
use super::source::MalformedCounts;
use super::timers::Clock;
use super::{EngineRng, rng_from_seed};
use crate::wire::{Packet, PacketType, Sqn, Tsi};

/// An interface, by the driver's index (the kernel's ifindex in the daemon).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IfIndex(pub u32);

/// A PGM-enabled interface: its index and its address (SPM_PATH as forwarded on it, the
/// source of NAKs sent out of it, POLL_PATH).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NeInterface {
    /// The interface.
    pub index: IfIndex,
    /// Its unicast address.
    pub addr: IpAddr,
}

/// Configuration of a network element. Defaults ([`NeConfig::new`]) are documented per field.
#[derive(Debug, Clone)]
pub struct NeConfig {
    /// The PGM-enabled interfaces (the `ip pgm router` of each). At most 64.
    pub interfaces: Vec<NeInterface>,
    /// NAK_RPT_IVL: how long a forwarded NAK is repeated waiting for an NCF before NAK
    /// forwarding is cancelled (§7.3). Default 500 ms.
    pub nak_rpt_ivl: Duration,
    /// The interval between repeats of a pending NAK (1 / NAK_RPT_RTE). Default 100 ms.
    pub nak_rpt_rte_ivl: Duration,
    /// NAK_RDATA_IVL: how long repair state waits for RDATA after an NCF (§7.3, §7.8).
    /// Default 2 s: longer than a receiver's own wait, so the state outlives its retries.
    pub nak_rdata_ivl: Duration,
    /// NAK_ELIM_IVL: how long duplicates of an outstanding NAK are discarded (§7.4); "some
    /// small fraction of NAK_RDATA_IVL". Default 100 ms.
    pub nak_elim_ivl: Duration,
    /// Identical NCFs on one interface are not repeated within this interval (§7.2's NAK
    /// storm countermeasure). Default 10 ms.
    pub ncf_holdoff: Duration,
    /// Most TSIs with source path state; SPMs of further TSIs evict the least recently
    /// heard. Default 4096. With 0 no state is kept and no SPM forwarded.
    pub max_tsis: usize,
    /// Most repair states over all TSIs; beyond it the oldest is evicted. Default 65536.
    pub max_repair_states: usize,
    /// How far past the leading edge of a session's transmit window NAKs are still let
    /// through, in sequence numbers. The window is learned from SPMs (SPM_TRAIL, SPM_LEAD) and
    /// from ODATA/RDATA that come from upstream; NAKs and NNAKs for sequence numbers before
    /// the trailing edge or past the leading edge plus this slack are dropped (entries of a
    /// NAK list one by one) and counted, as the source could not repair them. Nothing is
    /// filtered until an SPM with window information has arrived. The slack applied is the
    /// larger of this and twice the lead's advance between the last two SPMs, and never
    /// reaches behind the trailing edge.
    ///
    /// Default 2^20 (1 048 576). The window an SPM shows lags the data by up to an SPM
    /// interval, and at the start of a burst that is the ambient interval (heartbeat SPMs
    /// only follow pauses in the data, §5.1.6), before two SPMs of the burst show its rate:
    /// 2^20 covers 100 000 packets/s for ten seconds (our source's ambient interval is 5 s).
    /// It still stops all but 1 in 4096 NAKs for random sequence numbers. Lower it for
    /// slow sessions to filter more; 0 admits only the window itself.
    pub nak_window_slack: u32,
    /// Source path state not refreshed by an SPM for this long is dropped. Default 60 s:
    /// twelve ambient SPM intervals of our source's default.
    pub tsi_expiry: Duration,
    /// Interval between general polls on each downstream interface of each TSI; `None`
    /// disables polling. Default 30 s.
    pub poll_ivl: Option<Duration>,
    /// POLL_BO_IVL of our polls. Default 1 s.
    pub poll_bo_ivl: Duration,
    /// Bits set in POLL_MASK (reply probability 1 / 2^bits; §14.4). Default 0: every child
    /// replies, which suits LANs of up to a few hundred receivers.
    pub poll_mask_bits: u32,
    /// Send PGM_POLL_DLR polls with the general polls, to discover off-tree DLRs
    /// (§9.5.3.1). Default true.
    pub dlr_discovery: bool,
    /// Seed of the generator for POLL_RAND.
    pub rng_seed: u64,
}

impl NeConfig {
    /// A configuration with the documented defaults.
    pub fn new(interfaces: Vec<NeInterface>) -> Self {
        Self {
            interfaces,
            nak_rpt_ivl: Duration::from_millis(500),
            nak_rpt_rte_ivl: Duration::from_millis(100),
            nak_rdata_ivl: Duration::from_secs(2),
            nak_elim_ivl: Duration::from_millis(100),
            ncf_holdoff: Duration::from_millis(10),
            max_tsis: 4096,
            max_repair_states: 65_536,
            nak_window_slack: 1 << 20,
            tsi_expiry: Duration::from_secs(60),
            poll_ivl: Some(Duration::from_secs(30)),
            poll_bo_ivl: Duration::from_secs(1),
            poll_mask_bits: 0,
            dlr_discovery: true,
            rng_seed: 0,
        }
    }
}

/// What the driver knows of a punted packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NeRecvMeta {
    /// The interface it arrived on.
    pub ifindex: IfIndex,
    /// IP source address.
    pub source: IpAddr,
    /// IP destination address.
    pub destination: IpAddr,
    /// IP TTL as received.
    pub ttl: u8,
}

/// A route of the distribution tree: where a (source, group)'s packets come in, and the
/// interfaces they leave by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NeRoute {
    /// The interface towards the source: the only one SPMs, NCFs and RDATA of the route are
    /// accepted from.
    pub upstream: IfIndex,
    /// The interfaces the tree leaves by (never `upstream`).
    pub downstream: Vec<IfIndex>,
}

/// A packet the engine asks the driver to send, built whole: the driver writes the IP
/// header (with these addresses, TTL and Router Alert) and sends it out of `ifindex`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NeTransmit {
    /// The interface to send on.
    pub ifindex: IfIndex,
    /// IP source: the ODATA source's address for SPM, NCF, RDATA and POLL (§7.2, §14.4),
    /// our interface's address for NAKs.
    pub source: IpAddr,
    /// IP destination: the group, or the upstream neighbour for NAKs.
    pub destination: IpAddr,
    /// Whether to set IP Router Alert.
    pub router_alert: bool,
    /// IP TTL.
    pub ttl: u8,
    /// PGM type, for accounting.
    pub packet_type: PacketType,
    /// Length of the PGM packet in the buffer given to `poll_transmit`.
    pub len: usize,
}

/// Counters of a network element, one per event and per drop reason.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct NeStats {
    /// SPMs received.
    pub spms_received: u64,
    /// SPMs forwarded (copies).
    pub spms_forwarded: u64,
    /// SPMs dropped as out of sequence.
    pub spms_out_of_sequence: u64,
    /// SPMs dropped because no route was known for their (source, group): without one, the
    /// interface they may come in on is unknown, so they set no path state.
    pub spms_no_route: u64,
    /// SPMs dropped because they came in on another interface than their route's upstream
    /// interface (a host below cannot take over a session's path).
    pub spms_wrong_interface: u64,
    /// SPMs of a TSI with path state from another address than its source's (a host that
    /// is a source itself, on a route of its own, cannot take another session's path over).
    pub spms_wrong_source: u64,
    /// NAKs received.
    pub naks_received: u64,
    /// NAKs forwarded upstream (first transmissions).
    pub naks_forwarded: u64,
    /// NAK repeats while waiting for an NCF.
    pub naks_repeated: u64,
    /// NAKs eliminated as duplicates (§7.4, §9.3.3).
    pub naks_eliminated: u64,
    /// NAKs of TSIs without source path state (no SPM seen), dropped.
    pub naks_no_state: u64,
    /// NAKs and NNAKs dropped because none of their sequence numbers lies in the session's
    /// transmit window (plus [`NeConfig::nak_window_slack`]): no NCF, no state, nothing
    /// forwarded.
    pub naks_outside_window: u64,
    /// Sequence numbers of NAKs and NNAKs outside the window, left out of the NCF and the
    /// forwarded NAK (those of the NAKs dropped whole included).
    pub nak_sqns_outside_window: u64,
    /// NAK forwarding cancelled: no NCF within NAK_RPT_IVL.
    pub naks_unconfirmed: u64,
    /// Forwarded NAKs whose NAK_SRC was not the session's source and was rewritten to it.
    pub nak_sources_rewritten: u64,
    /// NNAKs received.
    pub nnaks_received: u64,
    /// NNAKs forwarded upstream.
    pub nnaks_forwarded: u64,
    /// NCFs sent.
    pub ncfs_sent: u64,
    /// NCFs not sent by the storm rate limit.
    pub ncfs_rate_limited: u64,
    /// NCFs received.
    pub ncfs_received: u64,
    /// Repair states created from unsolicited upstream NCFs (§7.5).
    pub naks_anticipated: u64,
    /// RDATA packets forwarded (each to one or more interfaces).
    pub rdata_forwarded: u64,
    /// RDATA copies sent.
    pub rdata_copies: u64,
    /// RDATA dropped for lack of repair state (§7.8).
    pub rdata_no_state: u64,
    /// Repair states that expired without RDATA.
    pub repair_states_expired: u64,
    /// Repair states evicted by the `max_repair_states` bound.
    pub repair_states_evicted: u64,
    /// TSIs evicted by the `max_tsis` bound.
    pub tsis_evicted: u64,
    /// TSIs expired for lack of SPMs.
    pub tsis_expired: u64,
    /// Packets discarded because of an unknown option with OPX "discard".
    pub opx_discarded: u64,
    /// Unknown options invalidated (type rewritten to OPT_INVALID).
    pub opx_invalidated: u64,
    /// POLLs sent.
    pub polls_sent: u64,
    /// POLRs received in answer to our polls.
    pub polrs_received: u64,
    /// Redirections to a DLR learned from redirecting POLRs (§9.5.3.2).
    pub dlrs_learned: u64,
    /// NAKs sent to a DLR instead of upstream.
    pub naks_redirected: u64,
    /// Redirections dropped because the DLR did not confirm within NAK_RPT_IVL.
    pub dlr_fallbacks: u64,
    /// Transmits dropped because the driver left too many queued (see
    /// [`NetworkElement::poll_transmit`]).
    pub transmits_dropped: u64,
    /// Packets dropped for other reasons (wrong interface, no route, TTL expired, types we do
    /// not handle, SPMs with `max_tsis` 0).
    pub ignored: u64,
    /// Malformed packets by reason.
    pub malformed: MalformedCounts,
}

/// Where a repair state stands (§7.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RepairPhase {
    /// A NAK was forwarded and is repeated until an NCF (NAK_RPT_IVL running).
    Pending,
    /// Confirmed by an NCF: waiting for RDATA (NAK_RDATA_IVL), duplicates eliminated until
    /// the elimination deadline.
    Outstanding,
}

/// The network-element engine. See the [module documentation](self) and the engine contract
/// in [`proto`](super).
///
/// Bounded work: `handle_packet` touches at most 63 repair states (a NAK list) and emits at
/// most one copy per interface; `handle_timeout` processes the expired timers; neither walks
/// a table. The transmit queue holds at most what one call can queue (a repeat per repair
/// state, two polls per interface per TSI) plus 1024; beyond that transmits are dropped and
/// counted ([`NeStats::transmits_dropped`]).
#[derive(Debug)]
pub struct NetworkElement {
    config: NeConfig,
    /// `config`'s repair-state intervals in ticks.
    iv: Intervals,
    /// The time base of every deadline.
    clock: Clock,
    tsis: TsiTable,
    /// (source or any source, group) -> route.
    routes: HashMap<(Option<IpAddr>, IpAddr), NeRoute>,
    /// Every TSI's repair states.
    repairs: RepairTable,
    rng: EngineRng,
    tx: VecDeque<Tx>,
    stats: NeStats,
}

impl NetworkElement {
    /// A network element.
    pub fn new(mut config: NeConfig) -> Self {
        config.interfaces.truncate(64);
        Self {
            rng: rng_from_seed(config.rng_seed),
            iv: Intervals::new(&config),
            config,
            clock: Clock::default(),
            tsis: TsiTable::default(),
            routes: HashMap::new(),
            repairs: RepairTable::default(),
            tx: VecDeque::new(),
            stats: NeStats::default(),
        }
    }

    /// Counters.
    pub fn stats(&self) -> &NeStats {
        &self.stats
    }

    /// The configuration.
    pub fn config(&self) -> &NeConfig {
        &self.config
    }

    /// Applies a new configuration's timers, limits and poll settings without losing state
    /// (a daemon's SIGHUP). Interfaces are kept: changing them needs a new engine. Existing
    /// deadlines run out as they were set; new ones use the new values (polls turned on start
    /// at each TSI's next SPM). Lower limits take effect at once, evicting (and counting) what
    /// no longer fits. O(TSIs) at most.
    pub fn reconfigure(&mut self, mut config: NeConfig) {
        config.interfaces = core::mem::take(&mut self.config.interfaces);
        self.iv = Intervals::new(&config);
        if config.poll_ivl.is_none() && self.config.poll_ivl.is_some() {
            self.tsis.clear_polls();
        }
        self.config = config;
        while self.tsis.len() > self.config.max_tsis && self.evict_tsi() {}
        self.evict_repairs();
        self.tidy();
    }

    /// Sets the route of (`source`, `group`), or of every source of `group` without a route
    /// of its own if `source` is `None`, as the multicast routing table has it (the driver
    /// keeps this current). Path state is accepted only from the route's upstream interface.
    pub fn set_route(&mut self, source: Option<IpAddr>, group: IpAddr, route: NeRoute) {
        self.routes.insert((source, group), route);
    }

    /// Forgets the route of (`source`, `group`).
    pub fn remove_route(&mut self, source: Option<IpAddr>, group: IpAddr) {
        self.routes.remove(&(source, group));
    }

    /// The route of (`source`, `group`): its own, else its group's.
    fn route(&self, source: IpAddr, group: IpAddr) -> Option<&NeRoute> {
        self.routes
            .get(&(Some(source), group))
            .or_else(|| self.routes.get(&(None, group)))
    }

    /// TSIs with source path state.
    pub fn tsi_count(&self) -> usize {
        self.tsis.len()
    }

    /// Repair states over all TSIs.
    pub fn repair_state_count(&self) -> usize {
        self.repairs.len()
    }

    /// A snapshot of one TSI's state, for the admin API (`show ip pgm router state`).
    pub fn tsi_snapshot(&self, tsi: &Tsi) -> Option<TsiSnapshot> {
        let t = self.tsis.get(tsi)?;
        let mut repairs: Vec<RepairSnapshot> = t
            .repairs
            .iter()
            .filter_map(|(&sqn, &slot)| {
                let r = self.repairs.get(slot)?;
                Some(RepairSnapshot {
                    sqn: Sqn(sqn),
                    phase: r.phase,
                    interfaces: self.mask_ifaces(r.ifaces),
                })
            })
            .collect();
        repairs.sort_by_key(|r| r.sqn.0);
        Some(TsiSnapshot {
            tsi: *tsi,
            source: t.source,
            group: t.group,
            upstream_interface: t.upstream_if,
            upstream_neighbour: t.upstream_nbr,
            last_spm_sqn: t.last_spm_sqn,
            window: t.window.edges(),
            repairs,
            children: self
                .config
                .interfaces
                .iter()
                .zip(&t.children)
                .filter_map(|(f, c)| c.map(|c| (f.index, c)))
                .collect(),
        })
    }

    /// Every TSI with state.
    pub fn tsi_list(&self) -> Vec<Tsi> {
        let mut v: Vec<Tsi> = self.tsis.keys().copied().collect();
        v.sort();
        v
    }

    /// Drops every repair state (the admin API's "clear repair state").
    pub fn clear_repair_state(&mut self) {
        for t in self.tsis.values_mut() {
            t.repairs = HashMap::with_hasher(t.repairs.hasher().clone());
        }
        self.repairs.clear();
    }

    /// Zeroes the counters.
    pub fn clear_stats(&mut self) {
        self.stats = NeStats::default();
    }

    /// Sizes of the internal queues, for tests and diagnostics. O(TSIs).
    pub fn internals(&self) -> NeInternals {
        NeInternals {
            tsi_queue_len: self.tsis.heard_len(),
            poll_queue_len: self.tsis.polls_len(),
            tsi_entries_visited: self.tsis.visited(),
            repair_order_len: self.repairs.order_len(),
            repair_timer_len: self.repairs.timer_len(),
            repair_map_capacity: self.tsis.values().map(|t| t.repairs.capacity()).sum(),
            queued_transmits: self.tx.len(),
        }
    }

    fn mask_ifaces(&self, mask: u64) -> Vec<IfIndex> {
        self.config
            .interfaces
            .iter()
            .enumerate()
            .filter(|(i, _)| mask & (1 << i) != 0)
            .map(|(_, f)| f.index)
            .collect()
    }

    fn pos(&self, ifindex: IfIndex) -> Option<usize> {
        self.config
            .interfaces
            .iter()
            .position(|f| f.index == ifindex)
    }

    fn iface_addr(&self, ifindex: IfIndex) -> Option<IpAddr> {
        self.config
            .interfaces
            .iter()
            .find(|f| f.index == ifindex)
            .map(|f| f.addr)
    }

    /// Handles a punted packet.
    pub fn handle_packet(&mut self, now: Instant, meta: NeRecvMeta, bytes: &[u8]) {
        let packet = match Packet::new_checked(bytes) {
            Ok(p) => p,
            Err(e) => return self.stats.malformed.add(e),
        };
        if let Err(e) = packet.verify_checksum() {
            return self.stats.malformed.add(e);
        }
        if self.pos(meta.ifindex).is_none() {
            // PGM is not enabled on that interface.
            self.stats.ignored += 1;
            return;
        }
        match packet.packet_type() {
            PacketType::Spm => self.on_spm(now, meta, bytes),
            PacketType::Odata => self.on_odata(meta, bytes),
            PacketType::Nak => self.on_nak(now, meta, bytes, false),
            PacketType::Nnak => self.on_nak(now, meta, bytes, true),
            PacketType::Ncf => self.on_ncf(now, meta, bytes),
            PacketType::Rdata => self.on_rdata(meta, bytes),
            PacketType::Polr => self.on_polr(meta, bytes),
            _ => self.stats.ignored += 1,
        }
        self.tidy();
    }
}

/// One TSI's state, for display.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TsiSnapshot {
    /// The TSI.
    pub tsi: Tsi,
    /// The ODATA source's address.
    pub source: IpAddr,
    /// The group.
    pub group: IpAddr,
    /// The interface SPMs arrive on.
    pub upstream_interface: IfIndex,
    /// The upstream PGM neighbour (SPM_PATH).
    pub upstream_neighbour: IpAddr,
    /// SPM_SQN of the last in-sequence SPM.
    pub last_spm_sqn: Sqn,
    /// The transmit window as learned, (trailing edge, leading edge); `None` until an SPM
    /// with window information.
    pub window: Option<(Sqn, Sqn)>,
    /// Repair states, by sequence number.
    pub repairs: Vec<RepairSnapshot>,
    /// PGM children counted by the last completed poll, per interface.
    pub children: Vec<(IfIndex, u32)>,
}

/// One repair state, for display.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RepairSnapshot {
    /// The sequence number.
    pub sqn: Sqn,
    /// Pending or outstanding.
    pub phase: RepairPhase,
    /// Interfaces the repair will be forwarded on.
    pub interfaces: Vec<IfIndex>,
}

/// Sizes of the engine's internal queues and the work done on them, for tests and
/// diagnostics. Each bound holds after every call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct NeInternals {
    /// Entries of the TSI recency queue (eviction and expiry order): at most 2 × TSIs + 64.
    pub tsi_queue_len: usize,
    /// Entries of the poll deadline heap: at most 2 × TSIs + 64.
    pub poll_queue_len: usize,
    /// TSI queue and heap entries examined since the engine was created (popped, checked,
    /// or visited by a compaction): amortized O(1) per packet and per TSI removed.
    pub tsi_entries_visited: u64,
    /// Entries of the repair-state eviction queue: at most 2 × repair states + 64.
    pub repair_order_len: usize,
    /// Repair-state timer entries: at most 4 × repair states + 1024.
    pub repair_timer_len: usize,
    /// Capacity of the per-TSI repair indexes, summed: at most 4 × repair states + 64 per
    /// TSI.
    pub repair_map_capacity: usize,
    /// Transmits queued for `poll_transmit`.
    pub queued_transmits: usize,
}
