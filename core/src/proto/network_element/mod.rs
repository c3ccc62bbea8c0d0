//! The PGM network-element engine (§7, §9.3.3, §9.5.3.2, Appendix D), sans-IO: the protocol
//! half of PGM Router Assist.
//!
//! Heads up! Read RFC 3208 §7 first. The engine sees only the packets a router punts to it:
//! SPMs, NCFs, RDATA and POLLs that travel down the tree (Router Alert, or intercepted), and
//! NAKs, NNAKs and POLRs unicast to one of its interfaces. ODATA never reaches it: the kernel
//! forwards ODATA. The driver tells the engine which interfaces exist ([`NeConfig::interfaces`])
//! and, per (source, group), which interfaces the tree leaves by ([`NetworkElement::set_route`]).
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
//! - RDATA forwarded only on the interfaces that asked for it, dropped without state (§7.8);
//! - NNAKs per §9.5.3.2 (forwarded unless state exists; never confirmed nor retried);
//! - unknown options handled by their OPX bits (§9);
//! - general POLLs on downstream interfaces, counting PGM children (Appendix D);
//! - every table bounded, with evictions counted.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use rand::Rng;

use super::slab::Slab;
use super::source::MalformedCounts;
use super::timers::{Clock, Fifo, Tick, Ticks, TimerLanes};
use super::{EngineRng, rng_from_seed};
use super::{KeyedHasher, keyed_hasher};
use crate::wire::{
    Body, MAX_NAK_LIST, NakPacket, NakRepr, Nla, OptionList, OptionType, OptionValue, Opx, Packet,
    PacketType, PgmOption, PollRepr, PollSubtype, PolrPacket, Repr, SpmPacket, Sqn, SqnList, Tsi,
};

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
    /// heard. Default 4096.
    pub max_tsis: usize,
    /// Most repair states over all TSIs; beyond it the oldest is evicted. Default 65536.
    pub max_repair_states: usize,
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
    /// Packets dropped for other reasons (wrong interface, no route, TTL expired, types we do
    /// not handle).
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

/// Repair state for one (TSI, SQN). Kept small (56 bytes; times are engine [`Tick`]s, not
/// `Instant`s): there may be `max_repair_states` of them.
#[derive(Debug, Clone, Copy)]
struct RepairState {
    /// Interfaces (positions in `NeConfig::interfaces`) that asked for the repair.
    ifaces: u64,
    /// The interfaces an NCF went to within `ncf_holdoff` of `ncf_at` (the NCF storm limit
    /// is tracked coarsely, per state rather than per interface).
    ncf_mask: u64,
    /// Pending: NAK_RPT_IVL expiry. Outstanding: NAK_RDATA_IVL expiry.
    deadline: Tick,
    /// Pending: next repeat. Outstanding: end of NAK elimination.
    aux: Tick,
    /// When the last NCF went out, if `ncf_sent`.
    ncf_at: Tick,
    /// Creation order, for eviction.
    seq_no: u64,
    phase: RepairPhase,
    /// An NCF was sent for it (`ncf_at` is valid).
    ncf_sent: bool,
    /// Created by an NNAK: the next NAK is not eliminated, and the state lives only
    /// NAK_ELIM_IVL (§9.5.3.2).
    nnak: bool,
    /// The pending NAK went to a DLR (§9.5.3.2).
    via_dlr: bool,
    /// Never send this sequence number to the DLR again: it NAKed it itself, or did not
    /// answer.
    no_dlr: bool,
}

impl RepairState {
    /// A new state, outstanding until `deadline`, NAKs eliminated until `aux`.
    fn new(deadline: Tick, aux: Tick, nnak: bool, seq_no: u64) -> Self {
        Self {
            ifaces: 0,
            ncf_mask: 0,
            deadline,
            aux,
            ncf_at: Tick::default(),
            seq_no,
            phase: RepairPhase::Outstanding,
            ncf_sent: false,
            nnak,
            via_dlr: false,
            no_dlr: false,
        }
    }

    /// Whether an NCF went out on the interface of `bit` within `holdoff` of `now`.
    fn ncf_recent(&self, now: Tick, holdoff: Ticks, bit: u64) -> bool {
        self.ncf_sent && now.since(self.ncf_at) < holdoff && self.ncf_mask & bit != 0
    }

    /// Records an NCF sent at `now` on the interface of `bit`.
    fn stamp_ncf(&mut self, now: Tick, holdoff: Ticks, bit: u64) {
        if self.ncf_sent && now.since(self.ncf_at) < holdoff {
            self.ncf_mask |= bit;
        } else {
            self.ncf_sent = true;
            self.ncf_at = now;
            self.ncf_mask = bit;
        }
    }

    /// Whether a timer entry due at `at` is one the state still needs: its next repeat or
    /// its deadline.
    fn wakes_at(&self, at: Tick) -> bool {
        at == self.deadline || (self.phase == RepairPhase::Pending && at == self.aux)
    }
}

/// A repair state in the engine's slab, with its key. The TSI's table maps the sequence
/// number to the slot; timers and the eviction queue refer to the slot.
#[derive(Debug, Clone, Copy)]
struct RepairSlot {
    st: RepairState,
    tsi: Tsi,
    sqn: u32,
}

// The memory target of BENCHMARKS.md (at most 256 bytes per repair state, tables and queues
// included) rests on these sizes.
const _: () = assert!(size_of::<Option<RepairSlot>>() <= 72);

/// The engine's intervals in ticks, from the configuration.
#[derive(Debug, Clone, Copy)]
struct Intervals {
    rpt: Ticks,
    /// At least one tick: a zero repeat interval would repeat forever within one call.
    rte: Ticks,
    rdata: Ticks,
    elim: Ticks,
    holdoff: Ticks,
}

impl Intervals {
    fn new(c: &NeConfig) -> Self {
        Self {
            rpt: c.nak_rpt_ivl.into(),
            rte: Ticks::from(c.nak_rpt_rte_ivl).max(Ticks(1)),
            rdata: c.nak_rdata_ivl.into(),
            elim: c.nak_elim_ivl.into(),
            holdoff: c.ncf_holdoff.into(),
        }
    }

    /// Whether repair-state timers may still be set for `ivl`.
    fn in_use(&self, ivl: Ticks) -> bool {
        [self.rpt, self.rte, self.rdata, self.elim].contains(&ivl)
    }
}

/// Makes a repair state pending at `now` (§7.3): NAK_RPT_IVL starts, the first repeat is due
/// after the repeat interval. Timers are set for both: per-interval queues need each
/// deadline pushed when its interval starts.
fn pend(timers: &mut TimerLanes<u32>, iv: &Intervals, slot: u32, st: &mut RepairState, now: Tick) {
    st.phase = RepairPhase::Pending;
    st.nnak = false;
    st.deadline = timers.push(now, iv.rpt, slot);
    st.aux = now.after(iv.rte);
    if st.aux < st.deadline {
        timers.push(now, iv.rte, slot);
    }
}

/// The repair state of `sqn` in `t`.
fn state<'a>(slab: &'a Slab<RepairSlot>, t: &TsiState, sqn: u32) -> Option<&'a RepairState> {
    Some(&slab.get(*t.repairs.get(&sqn)?)?.st)
}

/// The repair state of `sqn` in `t`.
fn state_mut<'a>(
    slab: &'a mut Slab<RepairSlot>,
    t: &TsiState,
    sqn: u32,
) -> Option<&'a mut RepairState> {
    Some(&mut slab.get_mut(*t.repairs.get(&sqn)?)?.st)
}

/// Source path state of one TSI (§7.1).
#[derive(Debug)]
struct TsiState {
    /// The ODATA source's address (IP source of its SPMs).
    source: IpAddr,
    group: IpAddr,
    /// The data-destination port (NAK_SPORT), learned from SPMs.
    dport: u16,
    upstream_if: IfIndex,
    /// SPM_PATH of the last in-sequence SPM: the upstream PGM neighbour.
    upstream_nbr: IpAddr,
    last_spm_sqn: Sqn,
    last_heard: Instant,
    /// Repair states: sequence number -> slot in the engine's slab.
    repairs: HashMap<u32, u32, KeyedHasher>,
    /// Our polls: next poll time, POLL_SQN, and replies counted per interface position in
    /// the current and the last completed poll.
    next_poll: Instant,
    poll_sqn: Sqn,
    poll_replies: [u32; 64],
    children: [Option<u32>; 64],
    /// A DLR NAKs are redirected to (§9.5.3.2).
    dlr: Option<DlrRedirect>,
    /// When our last poll went out.
    last_poll: Option<Instant>,
}

/// Where a TSI's NAKs are redirected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct DlrRedirect {
    addr: IpAddr,
    /// The interface the DLR is reached by.
    ifindex: IfIndex,
    /// Found by a PGM_POLL_DLR on a downstream interface (off-tree) rather than announced
    /// upstream.
    off_tree: bool,
}

#[derive(Debug, Clone)]
enum Tx {
    /// Forward a received packet (possibly rewritten) as is.
    Raw(NeTransmit, Vec<u8>),
    /// Build an NCF for these sequence numbers, sent down `ifindex`.
    Ncf {
        tsi: Tsi,
        sqns: Vec<Sqn>,
        ifindex: IfIndex,
    },
    /// Build a NAK repeat for these sequence numbers, sent upstream.
    NakRepeat { tsi: Tsi, sqns: Vec<Sqn> },
}

/// The network-element engine. See the [module documentation](self) and the engine contract
/// in [`proto`](super).
///
/// Bounded work: `handle_packet` touches at most 63 repair states (a NAK list) and emits at
/// most one copy per interface; `handle_timeout` processes the expired timers.
#[derive(Debug)]
pub struct NetworkElement {
    config: NeConfig,
    /// `config`'s repair-state intervals in ticks.
    iv: Intervals,
    /// The time base of repair-state deadlines.
    clock: Clock,
    hasher: KeyedHasher,
    tsis: HashMap<Tsi, TsiState, KeyedHasher>,
    /// (source or any source, group) -> route.
    routes: HashMap<(Option<IpAddr>, IpAddr), NeRoute>,
    /// Every TSI's repair states.
    repairs: Slab<RepairSlot>,
    /// Repair-state wake-ups by slot, one FIFO per interval. An entry is only a wake-up: the
    /// state's own times decide what is due, and an entry whose state is gone or has moved
    /// on (or whose slot was reused) finds nothing to do. Each live state has an entry at
    /// each of its deadlines.
    timers: TimerLanes<u32>,
    /// `timers` is compacted when it holds more entries than this.
    timers_compact_at: usize,
    /// Repair states in creation order, as (slot, `seq_no`), for eviction (lazy: entries
    /// whose state is gone are skipped).
    order: Fifo<(u32, u64)>,
    repair_count: usize,
    seq_no: u64,
    rng: EngineRng,
    tx: VecDeque<Tx>,
    stats: NeStats,
}

impl NetworkElement {
    /// A network element.
    pub fn new(mut config: NeConfig) -> Self {
        config.interfaces.truncate(64);
        let hasher = keyed_hasher();
        Self {
            rng: rng_from_seed(config.rng_seed),
            iv: Intervals::new(&config),
            config,
            clock: Clock::default(),
            tsis: HashMap::with_hasher(hasher.clone()),
            hasher,
            routes: HashMap::new(),
            repairs: Slab::default(),
            timers: TimerLanes::default(),
            timers_compact_at: 0,
            order: Fifo::default(),
            repair_count: 0,
            seq_no: 0,
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
    /// deadlines run out as they were set; new ones use the new values. Lower limits take
    /// effect at once, evicting (and counting) what no longer fits.
    pub fn reconfigure(&mut self, mut config: NeConfig) {
        config.interfaces = core::mem::take(&mut self.config.interfaces);
        self.iv = Intervals::new(&config);
        self.config = config;
        while self.tsis.len() > self.config.max_tsis {
            self.evict_tsi();
        }
        self.enforce_bounds();
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
        self.repair_count
    }

    /// A snapshot of one TSI's state, for the admin API (`show ip pgm router state`).
    pub fn tsi_snapshot(&self, tsi: &Tsi) -> Option<TsiSnapshot> {
        let t = self.tsis.get(tsi)?;
        let mut repairs: Vec<RepairSnapshot> = t
            .repairs
            .iter()
            .filter_map(|(&sqn, &slot)| {
                let r = &self.repairs.get(slot)?.st;
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
            repairs,
            children: self
                .config
                .interfaces
                .iter()
                .enumerate()
                .filter_map(|(i, f)| t.children[i].map(|c| (f.index, c)))
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
            t.repairs.clear();
        }
        self.repairs.clear();
        self.repair_count = 0;
        self.order.clear();
        self.timers.clear();
        self.timers_compact_at = 0;
    }

    /// Zeroes the counters.
    pub fn clear_stats(&mut self) {
        self.stats = NeStats::default();
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
            PacketType::Nak => self.on_nak(now, meta, bytes, false),
            PacketType::Nnak => self.on_nak(now, meta, bytes, true),
            PacketType::Ncf => self.on_ncf(now, meta, bytes),
            PacketType::Rdata => self.on_rdata(now, meta, bytes),
            PacketType::Polr => self.on_polr(meta, bytes),
            _ => self.stats.ignored += 1,
        }
    }

    /// Applies the OPX rules (§9) to a copy about to be forwarded: returns `None` if an
    /// unknown option says "discard", otherwise the bytes with "invalidate" options
    /// rewritten to OPT_INVALID and the checksum updated.
    fn apply_opx(&mut self, bytes: &[u8]) -> Option<Vec<u8>> {
        let mut out = bytes.to_vec();
        let p = Packet::new_unchecked(bytes);
        let mut discard = false;
        let mut invalidate = Vec::new();
        if p.options_flags() & crate::wire::flags::OPT_PRESENT != 0 {
            // Walk the chain by offset so the type bytes can be rewritten in place.
            let start = bytes.len() - usize::from(p.tsdu_length()) - p.options().wire_len();
            let mut at = start + 4;
            for o in p.options() {
                if let OptionType::Unknown(_) = o.option_type() {
                    match o.flags.opx() {
                        Opx::Discard => discard = true,
                        Opx::Invalidate => invalidate.push(at),
                        Opx::Ignore | Opx::Reserved => {}
                    }
                }
                at += o.wire_len();
            }
        }
        if discard {
            self.stats.opx_discarded += 1;
            return None;
        }
        for at in invalidate {
            // Keep the OPT_END bit; the type byte is the high byte of the 16-bit word at an
            // even offset (options are 4-byte aligned after the fixed header).
            let old = [out[at], out[at + 1]];
            out[at] = (out[at] & 0x80) | 0x7F;
            let new = [out[at], out[at + 1]];
            let c = Packet::new_unchecked(&out[..]).checksum();
            let c = crate::wire::checksum_update(c, &old, &new);
            Packet::new_unchecked(&mut out[..]).set_checksum(c);
            self.stats.opx_invalidated += 1;
        }
        Some(out)
    }

    fn on_spm(&mut self, now: Instant, meta: NeRecvMeta, bytes: &[u8]) {
        let Ok(spm) = SpmPacket::new_checked(bytes) else {
            return;
        };
        self.stats.spms_received += 1;
        let tsi = spm.tsi();
        let (sqn, path) = (spm.sqn(), spm.path());
        let source = meta.source;
        let group = meta.destination;
        let Some(oifs) = self.route(source, group).map(|r| {
            if r.upstream == meta.ifindex {
                Ok(r.downstream.clone())
            } else {
                Err(())
            }
        }) else {
            self.stats.spms_no_route += 1;
            return;
        };
        let Ok(oifs) = oifs else {
            self.stats.spms_wrong_interface += 1;
            return;
        };
        if let Some(t) = self.tsis.get(&tsi) {
            //= https://www.rfc-editor.org/rfc/rfc3208#section-7.1
            //# Upon receipt of an in-sequence SPM, a network element records the
            //# Source Path Address SPM_PATH with the multicast routing information
            //# for the TSI.
            if !sqn.gt(t.last_spm_sqn) {
                self.stats.spms_out_of_sequence += 1;
                return;
            }
        } else if self.tsis.len() >= self.config.max_tsis {
            self.evict_tsi();
        }
        let poll_at = now + self.config.poll_ivl.unwrap_or(Duration::MAX / 4);
        let hasher = &self.hasher;
        let t = self.tsis.entry(tsi).or_insert_with(|| TsiState {
            source,
            group,
            dport: spm.dest_port(),
            upstream_if: meta.ifindex,
            upstream_nbr: path.0,
            last_spm_sqn: sqn,
            last_heard: now,
            repairs: HashMap::with_hasher(hasher.clone()),
            next_poll: poll_at,
            poll_sqn: Sqn(0),
            poll_replies: [0; 64],
            children: [None; 64],
            dlr: None,
            last_poll: None,
        });
        t.source = source;
        t.group = group;
        t.dport = spm.dest_port();
        t.upstream_if = meta.ifindex;
        t.upstream_nbr = path.0;
        t.last_spm_sqn = sqn;
        t.last_heard = now;
        if meta.ttl <= 1 {
            self.stats.ignored += 1;
            return;
        }
        let Some(copy) = self.apply_opx(bytes) else {
            return;
        };
        for oif in oifs {
            if oif == meta.ifindex {
                continue;
            }
            let Some(addr) = self.iface_addr(oif) else {
                continue;
            };
            let mut out = copy.clone();
            //= https://www.rfc-editor.org/rfc/rfc3208#section-7.1
            //# As it does so, it encodes the network address of the
            //# outgoing interface in SPM_PATH in each copy of the SPM it forwards.
            if !SpmPacket::new_unchecked(&mut out[..]).rewrite_path(Nla(addr)) {
                // Address family differs from the source's: rebuild the SPM.
                let Ok(mut repr) = Repr::parse_bytes(&copy) else {
                    continue;
                };
                if let Body::Spm(s) = &mut repr.body {
                    s.path = Nla(addr);
                }
                out = vec![0; repr.buffer_len()];
                if repr.emit(&mut out).is_err() {
                    continue;
                }
            }
            self.stats.spms_forwarded += 1;
            let len = out.len();
            self.tx.push_back(Tx::Raw(
                NeTransmit {
                    ifindex: oif,
                    source,
                    destination: group,
                    router_alert: true,
                    ttl: meta.ttl - 1,
                    packet_type: PacketType::Spm,
                    len,
                },
                out,
            ));
        }
    }

    fn on_nak(&mut self, now: Instant, meta: NeRecvMeta, bytes: &[u8], nnak: bool) {
        let Ok(nak) = NakPacket::new_checked(bytes) else {
            return;
        };
        if nnak {
            self.stats.nnaks_received += 1;
        } else {
            self.stats.naks_received += 1;
        }
        let tsi = nak.tsi();
        let Some(pos) = self.pos(meta.ifindex) else {
            return;
        };
        if !self.tsis.contains_key(&tsi) {
            // Without source path state there is no upstream to forward to.
            self.stats.naks_no_state += 1;
            return;
        }
        let mut buf = [Sqn(0); 1 + MAX_NAK_LIST];
        let mut n = 0;
        for (slot, sqn) in buf.iter_mut().zip(nak.sqns()) {
            *slot = sqn;
            n += 1;
        }
        let sqns = &buf[..n];
        let now_t = self.clock.tick(now);
        if nnak {
            return self.on_nnak(now_t, meta, tsi, sqns, bytes);
        }
        let iv = self.iv;
        let Some(t) = self.tsis.get_mut(&tsi) else {
            return;
        };
        //= https://www.rfc-editor.org/rfc/rfc3208#section-9.5.3.1
        //# When a PGM router receives notification of a loss via a NAK, it
        //# SHOULD first try to use a known DLR to recover the loss.  If such a
        //# DLR is not known it SHOULD initiate DLR discovery.
        if self.config.dlr_discovery && self.config.poll_ivl.is_some() {
            let bo = self.config.poll_bo_ivl.saturating_mul(4);
            let recent = t
                .last_poll
                .is_some_and(|at| now.saturating_duration_since(at) < bo);
            if t.dlr.is_none() && !recent {
                t.next_poll = now;
            }
        }
        let upstream_if = t.upstream_if;
        //= https://www.rfc-editor.org/rfc/rfc3208#section-9.5.3.2
        //# If a NAK is received from the DLR for a requested SQN, the network
        //# element MUST discard the redirecting information for the SQN and re-
        //# attempt to forward the NAK towards the PGM upstream neighbor.
        if t.dlr.is_some_and(|d| d.addr == meta.source) {
            for s in sqns {
                if let Some(r) = state_mut(&mut self.repairs, t, s.0) {
                    r.no_dlr = true;
                    r.via_dlr = false;
                    // Re-attempt: the duplicate is not eliminated.
                    r.phase = RepairPhase::Outstanding;
                    r.aux = now_t;
                }
            }
        }
        //= https://www.rfc-editor.org/rfc/rfc3208#section-7.2
        //# Network elements MUST immediately transmit an NCF in response to any
        //# unicast NAK they receive.  The NCF MUST be multicast to the group on
        //# the interface on which the NAK was received.
        //
        // One lookup per sequence number in the common case. An NCF goes out unless every
        // sequence number had one on this interface within `ncf_holdoff`; a state that had
        // not is stamped at once (stamping one that had changes nothing). The NAK is
        // forwarded unless every sequence number is eliminated; a state that is not
        // eliminated is made pending at once (forwarding is then sure), an eliminated
        // pending one only if the NAK is forwarded for another (§9.3.3).
        let mut need_ncf = false;
        let mut forward = false;
        let mut eliminated_pending = false;
        let bit = 1u64 << pos;
        for &sqn in sqns {
            let slot = match t.repairs.entry(sqn.0) {
                Entry::Occupied(e) => *e.get(),
                Entry::Vacant(e) => {
                    //# Simultaneously, network elements MUST establish repair state for the
                    //# NAK if such state does not already exist, and add the interface on
                    //# which the NAK was received to the corresponding repair interface list
                    let seq_no = self.seq_no;
                    // Outstanding with its elimination over: never eliminated, made pending
                    // below.
                    let st = RepairState::new(now_t, now_t, false, seq_no);
                    let Some(slot) = self.repairs.insert(RepairSlot {
                        st,
                        tsi,
                        sqn: sqn.0,
                    }) else {
                        // 2^32 - 1 states in memory: not reached before memory runs out.
                        continue;
                    };
                    e.insert(slot);
                    self.seq_no += 1;
                    self.repair_count += 1;
                    self.order.push_back((slot, seq_no));
                    slot
                }
            };
            let Some(RepairSlot { st, .. }) = self.repairs.get_mut(slot) else {
                continue;
            };
            if meta.ifindex != upstream_if {
                st.ifaces |= bit;
            }
            if !st.ncf_recent(now_t, iv.holdoff, bit) {
                need_ncf = true;
                st.stamp_ncf(now_t, iv.holdoff, bit);
            }
            //= https://www.rfc-editor.org/rfc/rfc3208#section-9.3.3
            //# Network elements MUST forward a NAK containing a NAK List option if
            //# any one sequence number specified by the NAK (including that in the
            //# main NAK header) is not currently outstanding.
            let eliminated = !st.nnak
                && match st.phase {
                    RepairPhase::Pending => true,
                    RepairPhase::Outstanding => now_t < st.aux,
                };
            if eliminated {
                eliminated_pending |= st.phase == RepairPhase::Pending;
            } else {
                forward = true;
                pend(&mut self.timers, &iv, slot, st, now_t);
            }
        }
        if need_ncf {
            self.tx.push_back(Tx::Ncf {
                tsi,
                sqns: sqns.to_vec(),
                ifindex: meta.ifindex,
            });
        } else {
            self.stats.ncfs_rate_limited += 1;
        }
        if forward {
            self.stats.naks_forwarded += 1;
            if eliminated_pending {
                // Forwarded for the others: the pending ones restart their repeats too.
                for &sqn in sqns {
                    let Some(&slot) = t.repairs.get(&sqn.0) else {
                        continue;
                    };
                    if let Some(RepairSlot { st, .. }) = self.repairs.get_mut(slot) {
                        let outstanding_now =
                            st.phase == RepairPhase::Outstanding && now_t < st.aux && !st.nnak;
                        if !outstanding_now {
                            pend(&mut self.timers, &iv, slot, st, now_t);
                        }
                    }
                }
            }
            self.forward_upstream(tsi, bytes, PacketType::Nak, sqns, meta.source);
        } else {
            //= https://www.rfc-editor.org/rfc/rfc3208#section-7.4
            //# Network elements MUST discard all duplicates of a NAK that
            //# is pending.
            self.stats.naks_eliminated += 1;
        }
        self.enforce_bounds();
    }

    /// NNAKs (§9.5.3.2): forwarded only if no matching repair state exists; never confirmed
    /// nor retried; never adds an interface. State they create lives NAK_ELIM_IVL and does
    /// not eliminate the next real NAK.
    fn on_nnak(&mut self, now: Tick, meta: NeRecvMeta, tsi: Tsi, sqns: &[Sqn], bytes: &[u8]) {
        let elim = self.iv.elim;
        let Some(t) = self.tsis.get_mut(&tsi) else {
            return;
        };
        //= https://www.rfc-editor.org/rfc/rfc3208#section-9.5.3.2
        //# NULL NAKs from an off-tree DLR for an RDATA packet requested from
        //# that off-tree DLR MUST always be forwarded upstream.
        let mut forward = t.dlr.is_some_and(|d| d.off_tree && d.addr == meta.source);
        for &sqn in sqns {
            let Entry::Vacant(e) = t.repairs.entry(sqn.0) else {
                continue;
            };
            forward = true;
            let seq_no = self.seq_no;
            let end = now.after(elim);
            let st = RepairState::new(end, end, true, seq_no);
            let Some(slot) = self.repairs.insert(RepairSlot {
                st,
                tsi,
                sqn: sqn.0,
            }) else {
                continue;
            };
            e.insert(slot);
            self.seq_no += 1;
            self.repair_count += 1;
            self.order.push_back((slot, seq_no));
            self.timers.push(now, elim, slot);
        }
        if forward {
            self.stats.nnaks_forwarded += 1;
            self.forward_upstream(
                tsi,
                bytes,
                PacketType::Nnak,
                sqns,
                IpAddr::from([0, 0, 0, 0]),
            );
        }
        self.enforce_bounds();
    }

    /// Queues a NAK or NNAK (as received, intact) to the upstream neighbour (§7.7), or to the
    /// session's DLR (§9.5.3.2) when every sequence number may go there.
    fn forward_upstream(
        &mut self,
        tsi: Tsi,
        bytes: &[u8],
        ty: PacketType,
        sqns: &[Sqn],
        from: IpAddr,
    ) {
        let Some(t) = self.tsis.get(&tsi) else { return };
        let mut dest = (t.upstream_if, t.upstream_nbr);
        let mut to_dlr = false;
        if let (Some(d), PacketType::Nak) = (t.dlr, ty) {
            let bit = self.pos(d.ifindex).map_or(0, |p| 1u64 << p);
            //= https://www.rfc-editor.org/rfc/rfc3208#section-9.5.3.2
            //# No NAK for a specific SQN SHOULD be sent to an off-tree DLR if
            //# a NAK for the SQN has been seen on the interface associated with the
            //# DLR.  Instead the NAK SHOULD be forwarded upstream.
            let ok = from != d.addr
                && sqns.iter().all(|s| {
                    state(&self.repairs, t, s.0)
                        .is_some_and(|r| !(r.no_dlr || (d.off_tree && r.ifaces & bit != 0)))
                });
            if ok {
                dest = (d.ifindex, d.addr);
                to_dlr = true;
            }
        }
        let Some(src) = self.iface_addr(dest.0) else {
            return;
        };
        if to_dlr {
            self.stats.naks_redirected += 1;
            if let Some(t) = self.tsis.get(&tsi) {
                for s in sqns {
                    if let Some(r) = state_mut(&mut self.repairs, t, s.0) {
                        r.via_dlr = true;
                    }
                }
            }
        }
        //= https://www.rfc-editor.org/rfc/rfc3208#section-7.3
        //# A Network element MUST forward NAKs only to the upstream PGM network
        //# element for the TSI.
        let tx = NeTransmit {
            ifindex: dest.0,
            source: src,
            destination: dest.1,
            router_alert: false,
            ttl: 255,
            packet_type: ty,
            len: bytes.len(),
        };
        let Some(mut out) = self.apply_opx(bytes) else {
            return;
        };
        // NAK_SRC must be the ODATA source (§8.3): OpenPGM 5.3 receivers put the SPM_PATH
        // they NAK there instead, and an OpenPGM source drops such NAKs. Put it right.
        if let Some(t) = self.tsis.get(&tsi) {
            let mut nak = NakPacket::new_unchecked(&mut out[..]);
            if nak.source_nla() != Nla(t.source) && nak.rewrite_source(Nla(t.source)) {
                self.stats.nak_sources_rewritten += 1;
            }
        }
        self.tx.push_back(Tx::Raw(tx, out));
    }

    fn on_ncf(&mut self, now: Instant, meta: NeRecvMeta, bytes: &[u8]) {
        let Ok(ncf) = NakPacket::new_checked(bytes) else {
            return;
        };
        self.stats.ncfs_received += 1;
        let tsi = ncf.tsi();
        let (rdata, elim) = (self.iv.rdata, self.iv.elim);
        let Some(t) = self.tsis.get_mut(&tsi) else {
            self.stats.ignored += 1;
            return;
        };
        let from_dlr = t.dlr.is_some_and(|d| d.off_tree && d.addr == meta.source);
        if meta.ifindex != t.upstream_if && !from_dlr {
            // Another element's NCF to its own subtree: neither a confirmation of ours nor
            // grounds for anticipation (§7.5).
            self.stats.ignored += 1;
            return;
        }

        let now = self.clock.tick(now);
        for sqn in ncf.sqns() {
            match t.repairs.entry(sqn.0) {
                Entry::Occupied(e) => {
                    //= https://www.rfc-editor.org/rfc/rfc3208#section-7.4
                    //# NAK_RDATA_IVL MUST be reset each time a NAK
                    //# for the corresponding TSI/SQN is confirmed (i.e., each time
                    //# NAK_ELIM_IVL is reset).
                    let slot = *e.get();
                    if let Some(RepairSlot { st, .. }) = self.repairs.get_mut(slot) {
                        st.phase = RepairPhase::Outstanding;
                        st.deadline = self.timers.push(now, rdata, slot);
                        st.aux = now.after(elim);
                    }
                }
                Entry::Vacant(e) => {
                    //= https://www.rfc-editor.org/rfc/rfc3208#section-7.5
                    //# If the interface on which an NCF is received is the same interface
                    //# the network element would use to reach the upstream PGM network
                    //# element, the network element simply establishes repair state for
                    //# NCF_TSI and NCF_SQN without adding the interface to the repair
                    //# interface list, and discards the NCF.
                    let seq_no = self.seq_no;
                    let st = RepairState::new(now.after(rdata), now.after(elim), false, seq_no);
                    let Some(slot) = self.repairs.insert(RepairSlot {
                        st,
                        tsi,
                        sqn: sqn.0,
                    }) else {
                        continue;
                    };
                    e.insert(slot);
                    self.seq_no += 1;
                    self.repair_count += 1;
                    self.order.push_back((slot, seq_no));
                    self.timers.push(now, rdata, slot);
                    self.stats.naks_anticipated += 1;
                }
            }
        }
        self.enforce_bounds();
    }

    fn on_rdata(&mut self, _now: Instant, meta: NeRecvMeta, bytes: &[u8]) {
        let Ok(data) = crate::wire::DataPacket::new_checked(bytes) else {
            return;
        };
        let tsi = data.tsi();
        let sqn = data.sqn();
        let Some(t) = self.tsis.get_mut(&tsi) else {
            self.stats.rdata_no_state += 1;
            return;
        };
        //= https://www.rfc-editor.org/rfc/rfc3208#section-7.8
        //# Network elements SHOULD discard and not forward RDATA packets for
        //# which they have no repair state.
        let Some(RepairSlot { st, .. }) = t
            .repairs
            .remove(&sqn.0)
            .and_then(|slot| self.repairs.remove(slot))
        else {
            self.stats.rdata_no_state += 1;
            return;
        };
        self.repair_count = self.repair_count.saturating_sub(1);
        let (source, group) = (t.source, t.group);
        let mask = st.ifaces;
        if mask == 0 || meta.ttl <= 1 {
            self.stats.rdata_no_state += u64::from(mask == 0);
            return;
        }
        let Some(copy) = self.apply_opx(bytes) else {
            return;
        };
        self.stats.rdata_forwarded += 1;
        //= https://www.rfc-editor.org/rfc/rfc3208#section-7.8
        //# Network elements MUST then use this list of interfaces to constrain the
        //# forwarding of the corresponding RDATA packet only to those interfaces in
        //# the list.
        for oif in self.mask_ifaces(mask) {
            if oif == meta.ifindex {
                continue;
            }
            self.stats.rdata_copies += 1;
            self.tx.push_back(Tx::Raw(
                NeTransmit {
                    ifindex: oif,
                    source,
                    destination: group,
                    router_alert: true,
                    ttl: meta.ttl - 1,
                    packet_type: PacketType::Rdata,
                    len: copy.len(),
                },
                copy.clone(),
            ));
        }
    }

    fn on_polr(&mut self, meta: NeRecvMeta, bytes: &[u8]) {
        let Ok(polr) = PolrPacket::new_checked(bytes) else {
            return;
        };
        let Some(pos) = self.pos(meta.ifindex) else {
            return;
        };
        let Some(t) = self.tsis.get_mut(&polr.tsi()) else {
            self.stats.ignored += 1;
            return;
        };
        let redirect = polr.options().iter().find_map(|o| match o.value {
            OptionValue::Redirect(n) => Some(n.0),
            _ => None,
        });
        if let Some(addr) = redirect {
            //= https://www.rfc-editor.org/rfc/rfc3208#section-9.5.3.2
            //# Upon receiving a redirecting POLR, network elements SHOULD record the
            //# redirecting information for the TSI
            let upstream = meta.destination.is_multicast() && meta.ifindex == t.upstream_if;
            let off_tree = !meta.destination.is_multicast() && meta.ifindex != t.upstream_if;
            // "When it can, a network element SHOULD use upstream DLRs."
            let keep_upstream = t.dlr.is_some_and(|d| !d.off_tree) && off_tree;
            if (upstream || off_tree) && !keep_upstream {
                let new = DlrRedirect {
                    addr,
                    ifindex: meta.ifindex,
                    off_tree,
                };
                if t.dlr != Some(new) {
                    self.stats.dlrs_learned += 1;
                }
                t.dlr = Some(new);
            } else {
                self.stats.ignored += 1;
            }
            return;
        }
        if polr.sqn() == t.poll_sqn {
            self.stats.polrs_received += 1;
            t.poll_replies[pos] = t.poll_replies[pos].saturating_add(1);
        } else {
            self.stats.ignored += 1;
        }
    }

    /// Evicts the least recently heard TSI.
    fn evict_tsi(&mut self) {
        let Some((&victim, _)) = self
            .tsis
            .iter()
            .min_by_key(|&(tsi, t)| (t.last_heard, *tsi))
        else {
            return;
        };
        if let Some(t) = self.tsis.remove(&victim) {
            self.drop_repairs(&t);
        }
        self.stats.tsis_evicted += 1;
    }

    /// Frees the repair states of a TSI whose state is gone.
    fn drop_repairs(&mut self, t: &TsiState) {
        for &slot in t.repairs.values() {
            self.repairs.remove(slot);
        }
        self.repair_count = self.repair_count.saturating_sub(t.repairs.len());
    }

    /// Evicts the oldest repair states while over the bound, and keeps the lazy queues from
    /// growing without bound with stale entries.
    fn enforce_bounds(&mut self) {
        while self.repair_count > self.config.max_repair_states {
            let Some((slot, seq_no)) = self.order.pop_front() else {
                break;
            };
            let Some(&RepairSlot { tsi, sqn, .. }) =
                self.repairs.get(slot).filter(|r| r.st.seq_no == seq_no)
            else {
                continue;
            };
            self.repairs.remove(slot);
            if let Some(t) = self.tsis.get_mut(&tsi) {
                t.repairs.remove(&sqn);
            }
            self.repair_count = self.repair_count.saturating_sub(1);
            self.stats.repair_states_evicted += 1;
        }
        if self.order.len() > 2 * self.config.max_repair_states + 64 {
            let repairs = &self.repairs;
            self.order
                .retain(|&(slot, seq_no)| repairs.get(slot).is_some_and(|r| r.st.seq_no == seq_no));
        }
        // A live state needs at most two timer entries (pending: next repeat and
        // NAK_RPT_IVL); the others are stale, and normally leave when they come due. Should
        // the driver not call `handle_timeout`, drop them here (amortized O(1) per entry).
        let bound = self
            .config
            .max_repair_states
            .saturating_mul(4)
            .saturating_add(1024);
        if self.timers.len() > self.timers_compact_at.max(bound) {
            let repairs = &self.repairs;
            self.timers
                .retain(|at, &slot| repairs.get(slot).is_some_and(|r| r.st.wakes_at(at)));
            self.timers_compact_at = self.timers.len().saturating_mul(2);
        }
    }

    /// Handles timer expiry: NAK repeats and cancellation, repair-state expiry, TSI expiry,
    /// polls.
    pub fn handle_timeout(&mut self, now: Instant) {
        let now_t = self.clock.tick(now);
        let iv = self.iv;
        let mut repeat: Vec<(Tsi, u32)> = Vec::new();
        while let Some((_, slot)) = self.timers.pop_due(now_t) {
            let Some(RepairSlot { st, tsi, sqn }) = self.repairs.get_mut(slot) else {
                continue;
            };
            let (tsi, sqn) = (*tsi, *sqn);
            let remove = match st.phase {
                RepairPhase::Pending if now_t >= st.deadline && st.via_dlr => {
                    //= https://www.rfc-editor.org/rfc/rfc3208#section-9.5.3.2
                    //# If a corresponding NCF is not received from the DLR within
                    //# NAK_RPT_IVL, the network element MUST discard the redirecting
                    //# information for the TSI and re-attempt to forward the NAK towards the
                    //# PGM upstream neighbor.
                    if let Some(t) = self.tsis.get_mut(&tsi) {
                        t.dlr = None;
                    }
                    st.via_dlr = false;
                    st.no_dlr = true;
                    pend(&mut self.timers, &iv, slot, st, now_t);
                    self.stats.dlr_fallbacks += 1;
                    repeat.push((tsi, sqn));
                    false
                }
                RepairPhase::Pending if now_t >= st.deadline => {
                    //= https://www.rfc-editor.org/rfc/rfc3208#section-7.3
                    //# Expiry of NAK_RPT_IVL cancels NAK forwarding (due to
                    //# missing NCF).
                    self.stats.naks_unconfirmed += 1;
                    true
                }
                RepairPhase::Pending if now_t >= st.aux => {
                    // The NAK_RPT_IVL entry pushed with the deadline covers the rest.
                    st.aux = now_t.after(iv.rte);
                    if st.aux < st.deadline {
                        self.timers.push(now_t, iv.rte, slot);
                    }
                    repeat.push((tsi, sqn));
                    false
                }
                RepairPhase::Outstanding if now_t >= st.deadline => {
                    //= https://www.rfc-editor.org/rfc/rfc3208#section-7.3
                    //# Expiry of NAK_RDATA_IVL causes the network element to
                    //# discard the corresponding repair state (due to missing RDATA).
                    self.stats.repair_states_expired += 1;
                    true
                }
                _ => false,
            };
            if remove {
                self.repairs.remove(slot);
                if let Some(t) = self.tsis.get_mut(&tsi) {
                    t.repairs.remove(&sqn);
                }
                self.repair_count = self.repair_count.saturating_sub(1);
            }
        }
        // One repeat per TSI per NAK list's worth of sequence numbers, in order. The lanes
        // pop in creation order, mostly sorted already: the stable sort takes such runs in
        // linear time.
        repeat.sort();
        for group in repeat.chunk_by(|a, b| a.0 == b.0) {
            let Some(&(tsi, _)) = group.first() else {
                continue;
            };
            for chunk in group.chunks(1 + MAX_NAK_LIST) {
                self.stats.naks_repeated += 1;
                self.tx.push_back(Tx::NakRepeat {
                    tsi,
                    sqns: chunk.iter().map(|&(_, s)| Sqn(s)).collect(),
                });
            }
        }
        self.timers.prune(|ivl| iv.in_use(ivl));
        // TSI expiry and polls.
        let expiry = self.config.tsi_expiry;
        let expired: Vec<Tsi> = self
            .tsis
            .iter()
            .filter(|(_, t)| now.saturating_duration_since(t.last_heard) >= expiry)
            .map(|(k, _)| *k)
            .collect();
        for tsi in expired {
            if let Some(t) = self.tsis.remove(&tsi) {
                self.drop_repairs(&t);
                self.stats.tsis_expired += 1;
            }
        }
        if let Some(ivl) = self.config.poll_ivl {
            let mut due: Vec<Tsi> = self
                .tsis
                .iter()
                .filter(|(_, t)| t.next_poll <= now)
                .map(|(k, _)| *k)
                .collect();
            // In TSI order, not the hash table's (random) order: runs replay exactly.
            due.sort_unstable();
            for tsi in due {
                self.start_poll(now, tsi, ivl);
            }
        }
    }

    /// Closes the previous poll of `tsi` (recording the children counted) and sends a new
    /// general poll on each downstream interface (§14.4).
    fn start_poll(&mut self, now: Instant, tsi: Tsi, ivl: Duration) {
        let bits = self.config.poll_mask_bits.min(31);
        let mask: u32 = if bits == 0 { 0 } else { (1u32 << bits) - 1 };
        let rand: u32 = self.rng.random();
        let bo_us = self
            .config
            .poll_bo_ivl
            .as_micros()
            .min(u128::from(u32::MAX)) as u32;
        let Some(t) = self.tsis.get_mut(&tsi) else {
            return;
        };
        let oifs = self
            .routes
            .get(&(Some(t.source), t.group))
            .or_else(|| self.routes.get(&(None, t.group)))
            .map(|r| r.downstream.clone())
            .unwrap_or_default();
        for (i, c) in t.children.iter_mut().enumerate() {
            *c = if t.poll_sqn == Sqn(0) && t.poll_replies[i] == 0 {
                *c
            } else {
                Some(t.poll_replies[i] << bits)
            };
        }
        t.poll_replies = [0; 64];
        t.poll_sqn = t.poll_sqn.next();
        t.next_poll = now + ivl;
        t.last_poll = Some(now);
        let (source, group, sport, dport, sqn) =
            (t.source, t.group, tsi.sport, t.dport, t.poll_sqn);
        let upstream_if = t.upstream_if;
        // A DLR poll goes with the general one, under the same POLL_SQN: receivers cancel
        // pending replies to a POLL_SQN other than the last one (App. D), so a separate
        // number would cancel their general replies (§9.5.3.1 discovery).
        let mut subtypes = vec![PollSubtype::General];
        if self.config.dlr_discovery {
            subtypes.push(PollSubtype::Dlr);
        }
        for oif in oifs {
            let Some(addr) = self.iface_addr(oif) else {
                continue;
            };
            if oif == upstream_if {
                continue;
            }
            for &subtype in &subtypes {
                let repr = Repr {
                    sport,
                    dport,
                    gsi: tsi.gsi,
                    parity: false,
                    var_pktlen: false,
                    body: Body::Poll(PollRepr {
                        sqn,
                        round: 0,
                        subtype,
                        path: Nla(addr),
                        backoff_ivl_us: bo_us,
                        rand: rand.to_be_bytes(),
                        mask,
                    }),
                    options: OptionList::EMPTY,
                };
                let mut out = vec![0; repr.buffer_len()];
                if repr.emit(&mut out).is_err() {
                    continue;
                }
                self.stats.polls_sent += 1;
                //= https://www.rfc-editor.org/rfc/rfc3208#section-14.4
                //# Nota Bene: POLLs transmitted by network elements MUST bear the
                //# ODATA source's network-header source address, not the network
                //# element's NLA.  POLLs MUST also be transmitted with the IP
                //# Router Alert Option [6]
                self.tx.push_back(Tx::Raw(
                    NeTransmit {
                        ifindex: oif,
                        source,
                        destination: group,
                        router_alert: true,
                        ttl: 1,
                        packet_type: PacketType::Poll,
                        len: out.len(),
                    },
                    out,
                ));
            }
        }
    }

    /// The earliest deadline.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut t = self.timers.next().and_then(|at| self.clock.instant(at));
        for s in self.tsis.values() {
            let mut take = |x: Instant| t = Some(t.map_or(x, |t| t.min(x)));
            take(s.last_heard + self.config.tsi_expiry);
            if self.config.poll_ivl.is_some() {
                take(s.next_poll);
            }
        }
        t
    }

    /// The next packet to send, written into `buf`.
    pub fn poll_transmit(&mut self, _now: Instant, buf: &mut Vec<u8>) -> Option<NeTransmit> {
        while let Some(tx) = self.tx.pop_front() {
            match tx {
                Tx::Raw(t, bytes) => {
                    buf.clear();
                    buf.extend_from_slice(&bytes);
                    return Some(NeTransmit {
                        len: bytes.len(),
                        ..t
                    });
                }
                Tx::Ncf { tsi, sqns, ifindex } => {
                    let Some(t) = self.tsis.get(&tsi) else {
                        continue;
                    };
                    let Some(len) = emit_nak_like(buf, tsi, t, &sqns, true) else {
                        continue;
                    };
                    self.stats.ncfs_sent += 1;
                    //= https://www.rfc-editor.org/rfc/rfc3208#section-7.2
                    //# the network-header source address of NCFs transmitted by network
                    //# elements MUST be set to the ODATA source's NLA
                    return Some(NeTransmit {
                        ifindex,
                        source: t.source,
                        destination: t.group,
                        router_alert: true,
                        ttl: 255,
                        packet_type: PacketType::Ncf,
                        len,
                    });
                }
                Tx::NakRepeat { tsi, sqns } => {
                    let Some(t) = self.tsis.get(&tsi) else {
                        continue;
                    };
                    let via_dlr = t.dlr.filter(|_| {
                        sqns.iter()
                            .all(|s| state(&self.repairs, t, s.0).is_some_and(|r| r.via_dlr))
                    });
                    let (ifindex, nbr) = match via_dlr {
                        Some(d) => (d.ifindex, d.addr),
                        None => (t.upstream_if, t.upstream_nbr),
                    };
                    let Some(src) = self.iface_addr(ifindex) else {
                        continue;
                    };
                    let Some(len) = emit_nak_like(buf, tsi, t, &sqns, false) else {
                        continue;
                    };
                    return Some(NeTransmit {
                        ifindex,
                        source: src,
                        destination: nbr,
                        router_alert: false,
                        ttl: 255,
                        packet_type: PacketType::Nak,
                        len,
                    });
                }
            }
        }
        None
    }
}

/// Emits an NCF (downstream ports) or a NAK (upstream ports) for `sqns` of `tsi` into `buf`.
fn emit_nak_like(
    buf: &mut Vec<u8>,
    tsi: Tsi,
    t: &TsiState,
    sqns: &[Sqn],
    ncf: bool,
) -> Option<usize> {
    let (&first, rest) = sqns.split_first()?;
    let nak = NakRepr {
        sqn: first,
        source: Nla(t.source),
        group: Nla(t.group),
    };
    let opts = [PgmOption::from(OptionValue::NakList(SqnList::Slice(rest)))];
    let (sport, dport, body) = if ncf {
        (tsi.sport, t.dport, Body::Ncf(nak))
    } else {
        (t.dport, tsi.sport, Body::Nak(nak))
    };
    let repr = Repr {
        sport,
        dport,
        gsi: tsi.gsi,
        parity: false,
        var_pktlen: false,
        body,
        options: if rest.is_empty() {
            OptionList::EMPTY
        } else {
            OptionList::Slice(&opts)
        },
    };
    buf.resize(repr.buffer_len(), 0);
    repr.emit(buf).ok()
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

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::wire::Gsi;

    const SRC: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 1, 1, 2));
    const GROUP: IpAddr = IpAddr::V4(Ipv4Addr::new(239, 192, 0, 1));
    const UPSTREAM: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 1, 2, 1));
    const IF_UP: IfIndex = IfIndex(1);
    const IF_A: IfIndex = IfIndex(2);
    const RCV_A: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 1, 3, 11));

    fn t0() -> Instant {
        #[expect(clippy::disallowed_methods, reason = "the test's epoch")]
        Instant::now()
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn emit(gsi: u8, sport: u16, dport: u16, body: Body<'_>, options: &[PgmOption<'_>]) -> Vec<u8> {
        let repr = Repr {
            sport,
            dport,
            gsi: Gsi([1, 2, 3, 4, 5, gsi]),
            parity: false,
            var_pktlen: false,
            body,
            options: if options.is_empty() {
                OptionList::EMPTY
            } else {
                OptionList::Slice(options)
            },
        };
        let mut b = vec![0; repr.buffer_len()];
        repr.emit(&mut b).expect("emit");
        b
    }

    fn spm(gsi: u8) -> Vec<u8> {
        let body = Body::Spm(crate::wire::SpmRepr {
            sqn: Sqn(1),
            trail: Sqn(0),
            lead: Sqn(100),
            path: Nla(UPSTREAM),
        });
        emit(gsi, 4000, 7500, body, &[])
    }

    fn nak(gsi: u8, sqns: &[u32]) -> Vec<u8> {
        let rest: Vec<Sqn> = sqns[1..].iter().map(|&s| Sqn(s)).collect();
        let opts = [PgmOption::from(OptionValue::NakList(SqnList::Slice(&rest)))];
        let body = Body::Nak(NakRepr {
            sqn: Sqn(sqns[0]),
            source: Nla(SRC),
            group: Nla(GROUP),
        });
        emit(
            gsi,
            7500,
            4000,
            body,
            if rest.is_empty() { &[] } else { &opts },
        )
    }

    fn ncf(gsi: u8, sqn: u32) -> Vec<u8> {
        let body = Body::Ncf(NakRepr {
            sqn: Sqn(sqn),
            source: Nla(SRC),
            group: Nla(GROUP),
        });
        emit(gsi, 4000, 7500, body, &[])
    }

    fn rdata(gsi: u8, sqn: u32) -> Vec<u8> {
        let body = Body::Rdata(crate::wire::DataRepr {
            sqn: Sqn(sqn),
            trail: Sqn(0),
            payload: b"repair",
        });
        emit(gsi, 4000, 7500, body, &[])
    }

    fn from_upstream() -> NeRecvMeta {
        NeRecvMeta {
            ifindex: IF_UP,
            source: SRC,
            destination: GROUP,
            ttl: 64,
        }
    }

    fn nak_on_a() -> NeRecvMeta {
        NeRecvMeta {
            ifindex: IF_A,
            source: RCV_A,
            destination: IpAddr::V4(Ipv4Addr::new(10, 1, 3, 1)),
            ttl: 64,
        }
    }

    /// An element with interfaces up (1) and A (2), source path state for the TSIs of
    /// `gsis` (learned at `now`), no polls.
    fn element(now: Instant, gsis: &[u8], f: impl FnOnce(&mut NeConfig)) -> NetworkElement {
        let mut cfg = NeConfig::new(vec![
            NeInterface {
                index: IF_UP,
                addr: IpAddr::V4(Ipv4Addr::new(10, 1, 2, 2)),
            },
            NeInterface {
                index: IF_A,
                addr: IpAddr::V4(Ipv4Addr::new(10, 1, 3, 1)),
            },
        ]);
        cfg.poll_ivl = None;
        f(&mut cfg);
        let mut ne = NetworkElement::new(cfg);
        ne.set_route(
            Some(SRC),
            GROUP,
            NeRoute {
                upstream: IF_UP,
                downstream: vec![IF_A],
            },
        );
        for &g in gsis {
            ne.handle_packet(now, from_upstream(), &spm(g));
        }
        drain(&mut ne, now);
        ne
    }

    /// The NAKs sent upstream, as (GSI's last byte, sequence numbers).
    fn drain(ne: &mut NetworkElement, now: Instant) -> Vec<(u8, Vec<u32>)> {
        let mut out = Vec::new();
        let mut buf = Vec::new();
        while let Some(t) = ne.poll_transmit(now, &mut buf) {
            if t.packet_type != PacketType::Nak {
                continue;
            }
            let p = NakPacket::new_checked(&buf[..t.len]).expect("a NAK");
            out.push((p.tsi().gsi.0[5], p.sqns().map(|s| s.0).collect()));
        }
        out
    }

    /// The instants (offsets from `start`) at which NAK repeats go out up to `until`,
    /// driving the element by its `poll_timeout`.
    fn repeat_times(ne: &mut NetworkElement, start: Instant, until: Duration) -> Vec<Duration> {
        let mut times = Vec::new();
        while let Some(at) = ne.poll_timeout().filter(|&at| at <= start + until) {
            ne.handle_timeout(at);
            if !drain(ne, at).is_empty() {
                times.push(at - start);
            }
        }
        times
    }

    #[test]
    fn zero_repeat_interval_repeats_once_per_call_instead_of_hanging() {
        // A zero NAK_RPT_RTE interval used to re-arm the repeat at `now` itself, so
        // `handle_timeout` popped it again forever. It is now one tick (1 ns).
        let now = t0();
        let mut ne = element(now, &[6], |c| c.nak_rpt_rte_ivl = Duration::ZERO);
        ne.handle_packet(now, nak_on_a(), &nak(6, &[5]));
        assert_eq!(drain(&mut ne, now), [(6, vec![5])]);
        for i in 1..=3 {
            let at = now + ms(i);
            ne.handle_timeout(at);
            assert_eq!(drain(&mut ne, at), [(6, vec![5])], "one repeat at {i} ms");
        }
        ne.handle_timeout(now + ms(500));
        assert_eq!(ne.stats().naks_unconfirmed, 1);
        assert_eq!(ne.repair_state_count(), 0);
    }

    #[test]
    fn deadlines_are_exact_below_a_millisecond() {
        let now = t0();
        let rte = Duration::from_micros(1_500);
        let mut ne = element(now, &[6], |c| c.nak_rpt_rte_ivl = rte);
        ne.handle_packet(now, nak_on_a(), &nak(6, &[5]));
        drain(&mut ne, now);
        assert_eq!(ne.poll_timeout(), Some(now + rte));
        let early = now + rte - Duration::from_nanos(1);
        ne.handle_timeout(early);
        assert!(drain(&mut ne, early).is_empty(), "not before its time");
        ne.handle_timeout(now + rte);
        assert_eq!(drain(&mut ne, now + rte), [(6, vec![5])]);
    }

    #[test]
    fn repeats_keep_their_interval_across_a_reconfiguration() {
        let now = t0();
        let mut ne = element(now, &[6], |_| {});
        ne.handle_packet(now, nak_on_a(), &nak(6, &[5]));
        drain(&mut ne, now);
        let mut cfg = ne.config().clone();
        cfg.nak_rpt_rte_ivl = ms(30);
        cfg.nak_rpt_ivl = ms(200);
        ne.reconfigure(cfg);
        // Set before: first repeat at 100 ms, cancelled at 500 ms. Later repeats every 30 ms.
        let t = repeat_times(&mut ne, now, ms(1000));
        let want: Vec<Duration> = (0..14).map(|i| ms(100 + 30 * i)).collect();
        assert_eq!(t, want);
        assert_eq!(ne.stats().naks_unconfirmed, 1);
        // Set after: repeats every 30 ms, cancelled at 200 ms.
        let later = now + ms(1000);
        ne.handle_packet(later, nak_on_a(), &nak(6, &[7]));
        drain(&mut ne, later);
        let t = repeat_times(&mut ne, later, ms(1000));
        let want: Vec<Duration> = (1..=6).map(|i| ms(30 * i)).collect();
        assert_eq!(t, want);
        assert_eq!(ne.stats().naks_unconfirmed, 2);
        assert_eq!(ne.repair_state_count(), 0);
        assert!(ne.timers.next().is_none(), "nothing left to wake up for");
    }

    #[test]
    fn repeats_come_out_in_tsi_then_sequence_order() {
        let now = t0();
        let mut ne = element(now, &[9, 3, 6], |_| {});
        for (g, s) in [(9, 2), (6, 8), (3, 4), (6, 1), (9, 1)] {
            ne.handle_packet(now, nak_on_a(), &nak(g, &[s]));
        }
        drain(&mut ne, now);
        ne.handle_timeout(now + ms(100));
        assert_eq!(
            drain(&mut ne, now + ms(100)),
            [(3, vec![4]), (6, vec![1, 8]), (9, vec![1, 2])]
        );
    }

    #[test]
    fn eviction_takes_the_oldest_even_when_slots_are_reused() {
        let now = t0();
        let mut ne = element(now, &[6], |c| c.max_repair_states = 3);
        let sqns = |ne: &NetworkElement| -> Vec<u32> {
            let snap = ne.tsi_snapshot(&nak_tsi()).expect("tsi");
            snap.repairs.iter().map(|r| r.sqn.0).collect()
        };
        for s in 1..=3 {
            ne.handle_packet(now, nak_on_a(), &nak(6, &[s]));
        }
        // 2 is repaired: its slot is freed, and 4 takes it.
        ne.handle_packet(now, from_upstream(), &ncf(6, 2));
        ne.handle_packet(now, from_upstream(), &rdata(6, 2));
        ne.handle_packet(now, nak_on_a(), &nak(6, &[4]));
        assert_eq!(sqns(&ne), [1, 3, 4]);
        for (s, held) in [(5, [3, 4, 5]), (6, [4, 5, 6]), (7, [5, 6, 7])] {
            ne.handle_packet(now, nak_on_a(), &nak(6, &[s]));
            assert_eq!(sqns(&ne), held, "after NAK {s}: the oldest went");
        }
        assert_eq!(ne.stats().repair_states_evicted, 3);
        assert_eq!(ne.repair_state_count(), 3);
    }

    fn nak_tsi() -> Tsi {
        Tsi {
            gsi: Gsi([1, 2, 3, 4, 5, 6]),
            sport: 4000,
        }
    }

    #[test]
    fn timer_entries_stay_bounded_without_handle_timeout() {
        // States evicted by the bound leave their timer entries behind; if the driver never
        // calls `handle_timeout`, they are compacted away rather than piling up.
        let now = t0();
        let mut ne = element(now, &[6], |c| c.max_repair_states = 100);
        for i in 0..50_000u32 {
            let at = now + Duration::from_micros(u64::from(i));
            ne.handle_packet(at, nak_on_a(), &nak(6, &[i]));
            drain(&mut ne, at);
        }
        assert_eq!(ne.repair_state_count(), 100);
        assert_eq!(ne.stats().repair_states_evicted, 49_900);
        assert!(ne.timers.len() <= 4 * 100 + 1024, "{}", ne.timers.len());
        assert!(ne.order.len() <= 2 * 100 + 64, "{}", ne.order.len());
        // The live states still repeat and are cancelled on time.
        let last = now + Duration::from_micros(49_999);
        ne.handle_timeout(last + ms(100));
        let repeated: usize = drain(&mut ne, last + ms(100))
            .iter()
            .map(|(_, s)| s.len())
            .sum();
        assert_eq!(repeated, 100);
        ne.handle_timeout(last + ms(500));
        assert_eq!(ne.stats().naks_unconfirmed, 100);
        assert_eq!(ne.repair_state_count(), 0);
    }
}
