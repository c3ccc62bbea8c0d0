//! The PGM receiver engine (§6, §9.2–§9.8, §13.5, Appendix D children), sans-IO.
//!
//! Heads up! Read RFC 3208 §6 first, and §6.3's state machine above [`NakState`].
//!
//! One engine serves one data-destination port on one group, for any number of sources
//! (TSIs), each with its own receive window. Data is delivered in order, without duplicates,
//! one event per application message (APDU, reassembled from OPT_FRAGMENT). What cannot be
//! recovered is reported as an explicit [`Event::Loss`] with its sequence-number range, and
//! delivery continues after it.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use rand::Rng;

use super::source::MalformedCounts;
use super::{Destination, EngineRng, KeyedHasher, RecvMeta, Transmit, keyed_hasher, rng_from_seed};
use crate::wire::{
    Body, DataPacket, MAX_NAK_LIST, NakPacket, NakRepr, Nla, OptionList, OptionValue, Packet,
    PacketType, PgmOption, PollPacket, PollSubtype, PolrRepr, Repr, SpmPacket, Sqn, SqnList, Tsi,
};

/// Configuration of a receiver. Defaults ([`ReceiverConfig::new`]) are documented per field.
#[derive(Debug, Clone)]
pub struct ReceiverConfig {
    /// The data-destination port this receiver listens to.
    pub dport: u16,
    /// The multicast group (NAK_GRP in NAKs).
    pub group: IpAddr,
    /// NAK_BO_IVL: NAKs wait a random time in `[0, nak_bo_ivl)` after a loss is detected, so
    /// that one receiver's NAK (or the NCF it draws) suppresses the others' (§6.3). Default
    /// 50 ms: long enough to spread the NAKs of a LAN's receivers, short against typical
    /// transmit windows.
    pub nak_bo_ivl: Duration,
    /// NAK_RPT_IVL: how long to wait for an NCF after sending a NAK. Default 200 ms: above
    /// the round trip to the nearest PGM parent on campus and metro paths.
    pub nak_rpt_ivl: Duration,
    /// NAK_RDATA_IVL: how long to wait for the repair after an NCF. Default 500 ms: the
    /// source may queue repairs behind rate-limited data.
    pub nak_rdata_ivl: Duration,
    /// NAK_NCF_RETRIES: NAKs sent without an NCF before giving the data up. Default 50, as
    /// OpenPGM: a source starved of CPU (OpenPGM answers NAKs only inside its application's
    /// receive calls) may take seconds to confirm, and giving up is unrecoverable loss.
    pub nak_ncf_retries: u32,
    /// NAK_DATA_RETRIES: NCF-confirmed waits that time out before giving the data up.
    /// Default 50, as OpenPGM, for the same reason.
    pub nak_data_retries: u32,
    /// Receive window bound per source, in sequence numbers. Default 32768, as the source's
    /// default transmit window.
    pub rxw_sqns: u32,
    /// Most sources tracked at once; packets of further sources are dropped and counted.
    /// Default 1024.
    pub max_sources: usize,
    /// A source not heard from for this long is dropped (its session ends as expired).
    /// Default 30 s: six ambient SPM intervals of our source's default.
    pub peer_expiry: Duration,
    /// SPMR_BO_IVL (§13.5): random back-off before an SPMR. Default 250 ms, the RFC's value.
    pub spmr_bo_ivl: Duration,
    /// SPMR_SPM_IVL (§13.5): least wait before repeating an SPMR. Default 1 s.
    pub spmr_spm_ivl: Duration,
    /// Largest message reassembled; larger ones are dropped and reported lost. Default
    /// 128 KiB.
    pub max_apdu: usize,
    /// Adapt the waits for an NCF and for the repair to each source's measured times.
    /// NAK_RPT_IVL and NAK_RDATA_IVL above are then ceilings: after a NAK, a receiver waits
    /// the smoothed NAK-to-NCF time plus four times its deviation (TCP's retransmission
    /// timer, RFC 6298, with Karn's rule: only first attempts are measured), and after an
    /// NCF the smoothed NCF-to-RDATA time likewise, never less than `nak_ivl_floor`. A lost
    /// NCF or RDATA on a LAN is then retried in milliseconds instead of half a second, which
    /// keeps repairs inside a fast source's transmit window. Loss is still declared only
    /// once both the retry count and the time the configured intervals allow for it are
    /// exhausted, so a slow source is given as long as without adaptation. Default true.
    pub adaptive_nak_timers: bool,
    /// The shortest adapted wait. Default 10 ms: above timer granularity and scheduling
    /// jitter of a busy host.
    pub nak_ivl_floor: Duration,
    /// Answer general POLLs (Appendix D). Default true.
    pub answer_polls: bool,
    /// How long a new session's delivery waits for data sent before the first packet heard
    /// to arrive out of order. A session's first packets can be reordered on the way (a
    /// router forwarding the packets it queued while its multicast route was being
    /// resolved beside newer ones, on another CPU): without the wait, a receiver that hears
    /// sequence number 4 first starts its window there and takes 0 to 3, arriving
    /// microseconds later, for data sent before it joined. During the wait, ODATA older
    /// than the window's start (and not behind the source's trail) moves the start back;
    /// the gaps this opens are NAKed as usual. There is no wait when the first packet
    /// carries OPT_SYN (§9.4: it is the session's first) or is at the source's trailing
    /// edge (nothing older can be repaired), and the wait ends early when OPT_SYN arrives.
    /// Default 20 ms: far above the reordering of a path, far below what an application
    /// notices at a session's start. Zero disables it.
    pub join_hold: Duration,
    /// Seed of the back-off generator.
    pub rng_seed: u64,
}

impl ReceiverConfig {
    /// A configuration with the documented defaults.
    pub fn new(dport: u16, group: IpAddr) -> Self {
        Self {
            dport,
            group,
            nak_bo_ivl: Duration::from_millis(50),
            nak_rpt_ivl: Duration::from_millis(200),
            nak_rdata_ivl: Duration::from_millis(500),
            nak_ncf_retries: 50,
            nak_data_retries: 50,
            rxw_sqns: 32_768,
            max_sources: 1024,
            peer_expiry: Duration::from_secs(30),
            spmr_bo_ivl: Duration::from_millis(250),
            spmr_spm_ivl: Duration::from_secs(1),
            max_apdu: 128 * 1024,
            adaptive_nak_timers: true,
            nak_ivl_floor: Duration::from_millis(10),
            answer_polls: true,
            join_hold: Duration::from_millis(20),
            rng_seed: 0,
        }
    }
}

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum EndReason {
    /// The source closed it with OPT_FIN and everything up to its last data was delivered
    /// or reported lost (§9.7).
    Fin,
    /// The source reset it with OPT_RST (§9.8).
    Reset,
    /// Nothing was heard from the source for `peer_expiry`.
    Expired,
}

/// What the receiver tells the application.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A new source was heard.
    SessionStart {
        /// Its TSI.
        tsi: Tsi,
    },
    /// One application message, in order.
    Data {
        /// Its source.
        tsi: Tsi,
        /// The message.
        data: Vec<u8>,
    },
    /// Sequence numbers whose data could not be recovered; the messages they held are not
    /// delivered. Delivery continues after them.
    Loss {
        /// The source.
        tsi: Tsi,
        /// The first lost sequence number.
        first: Sqn,
        /// How many consecutive sequence numbers were lost.
        count: u32,
    },
    /// The session ended.
    SessionEnd {
        /// Its source.
        tsi: Tsi,
        /// Why.
        reason: EndReason,
    },
}

/// Counters of a receiver.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReceiverStats {
    /// ODATA packets received.
    pub odata_received: u64,
    /// RDATA packets received.
    pub rdata_received: u64,
    /// Data packets already received or delivered (duplicates).
    pub duplicates: u64,
    /// SPMs received.
    pub spm_received: u64,
    /// NCFs received.
    pub ncf_received: u64,
    /// NAK packets sent.
    pub naks_sent: u64,
    /// Sequence numbers requested by those NAKs (the repairs requested).
    pub nak_sqns_sent: u64,
    /// Back-offs cut short by a heard NCF or NAK (suppression, §6.3).
    pub naks_suppressed: u64,
    /// SPMRs sent (multicast and unicast counted once per attempt).
    pub spmrs_sent: u64,
    /// POLRs sent in answer to POLLs.
    pub polrs_sent: u64,
    /// Messages delivered.
    pub messages_delivered: u64,
    /// Bytes delivered.
    pub bytes_delivered: u64,
    /// Sequence numbers reported lost.
    pub sqns_lost: u64,
    /// Loss events reported.
    pub loss_events: u64,
    /// Packets of sources beyond `max_sources`.
    pub sources_refused: u64,
    /// Fragments that did not fit their message (bad offsets or lengths).
    pub bad_fragments: u64,
    /// Packets of other ports, or of types a receiver does not handle.
    pub ignored: u64,
    /// Packets dropped as malformed, by reason.
    pub malformed: MalformedCounts,
}

/// The repair state of one missing sequence number (§6.3):
///
/// ```text
///   detect missing ──> BACK-OFF ──timer: send NAK──> WAIT_NCF ──NCF──> WAIT_DATA
///                        │  ^                          │    ^             │
///                        │  └──timer (ncf retry)───────┘    │             │
///                        │  └──timer (data retry)───────────┼─────────────┘
///                        └──NCF or NAK heard────────────────┴──> WAIT_DATA
///   data in any state: done.   retries exceeded or trail passes: lost.
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NakState {
    /// Waiting a random NAK_RB_IVL before NAKing.
    BackOff,
    /// NAK sent; waiting NAK_RPT_IVL for an NCF.
    WaitNcf,
    /// NCF heard; waiting NAK_RDATA_IVL for the data.
    WaitData,
}

/// What happens to a [`NakState`] (the transition table of §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NakInput {
    /// The state's timer expired.
    Timeout,
    /// A matching NCF was heard.
    Ncf,
    /// A matching NAK from another receiver was heard.
    Nak,
}

/// The result of a transition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NakAction {
    /// Enter this state (restarting its timer).
    Enter(NakState),
    /// Send a NAK, then wait for an NCF.
    SendNak,
    /// A retry count is now exceeded: the data is lost.
    GiveUp,
}

impl NakState {
    /// The §6.3 transition for `input`, given the retry counts *after* counting this
    /// timeout. Every (state, input) pair has a defined outcome; none panics.
    pub fn on(self, input: NakInput, ncf_retries_left: bool, data_retries_left: bool) -> NakAction {
        use NakAction::*;
        use NakInput::*;
        match (self, input) {
            (Self::BackOff, Timeout) => SendNak,
            //= https://www.rfc-editor.org/rfc/rfc3208#section-6.3
            //# A receiver MUST suppress NAK generation and wait at least
            //# NAK_RDATA_IVL before recommencing NAK generation if it hears a
            //# matching NCF or NAK during NAK_RB_IVL.
            (Self::BackOff, Ncf | Nak) => Enter(Self::WaitData),
            (Self::WaitNcf, Timeout) if ncf_retries_left => Enter(Self::BackOff),
            (Self::WaitNcf, Timeout) => GiveUp,
            (Self::WaitNcf, Ncf) => Enter(Self::WaitData),
            // A matching NAK restarts NAK_RPT_IVL.
            (Self::WaitNcf, Nak) => Enter(Self::WaitNcf),
            (Self::WaitData, Timeout) if data_retries_left => Enter(Self::BackOff),
            (Self::WaitData, Timeout) => GiveUp,
            // Matching NCFs and NAKs restart NAK_RDATA_IVL.
            (Self::WaitData, Ncf | Nak) => Enter(Self::WaitData),
        }
    }
}

#[derive(Debug)]
enum Slot {
    Missing {
        state: NakState,
        deadline: Instant,
        /// When the current state was entered (the NAK sent, the NCF heard).
        since: Instant,
        /// When the loss was detected: the retry budget in time runs from here.
        detected: Instant,
        ncf_retries: u32,
        data_retries: u32,
    },
    Have {
        tsdu: Box<[u8]>,
        fragment: Option<(Sqn, u32, u32)>,
    },
    Lost,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SpmrState {
    /// An SPM was heard: no SPMR needed.
    Idle,
    /// Backing off before an SPMR.
    BackOff(Instant),
    /// An SPMR went out or was heard; wait until then before another.
    Wait(Instant),
}

/// A smoothed round-trip estimate (RFC 6298's SRTT and RTTVAR), in nanoseconds.
#[derive(Debug, Clone, Copy, Default)]
struct RttEstimate {
    srtt: Option<(u64, u64)>,
}

impl RttEstimate {
    fn sample(&mut self, d: Duration) {
        let r = d.as_nanos().min(u128::from(u64::MAX)) as u64;
        self.srtt = Some(match self.srtt {
            None => (r, r / 2),
            Some((srtt, var)) => {
                let var = (3 * (var / 4)).saturating_add(srtt.abs_diff(r) / 4);
                let srtt = (7 * (srtt / 8)).saturating_add(r / 8);
                (srtt, var)
            }
        });
    }

    /// The wait: SRTT + 4·RTTVAR within `[floor, ceiling]`, or `ceiling` before any sample.
    fn wait(&self, floor: Duration, ceiling: Duration) -> Duration {
        match self.srtt {
            None => ceiling,
            Some((srtt, var)) => Duration::from_nanos(srtt.saturating_add(var.saturating_mul(4)))
                .max(floor)
                .min(ceiling),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct PendingPolr {
    sqn: Sqn,
    round: u16,
    dest: IpAddr,
    deadline: Instant,
}

/// One source's state.
#[derive(Debug)]
struct Peer {
    tsi: Tsi,
    /// The source's unicast address: NAK_SRC, and the SPMR destination.
    source_addr: IpAddr,
    /// SPM_PATH of the last in-sequence SPM: where NAKs go.
    nak_target: Option<IpAddr>,
    last_spm_sqn: Option<Sqn>,
    last_heard: Instant,
    /// The next sequence number to deliver; `slots[i]` is `next + i`.
    next: Sqn,
    started: bool,
    /// While set, the session is new and delivery waits until then for older ODATA that
    /// arrives out of order (see [`ReceiverConfig::join_hold`]).
    hold_until: Option<Instant>,
    slots: VecDeque<Slot>,
    timers: BinaryHeap<Reverse<(Instant, u32)>>,
    /// A message being reassembled: its first sqn, length, and bytes so far.
    apdu: Option<(Sqn, u32, Vec<u8>)>,
    /// Fragments of this message are dropped (its start was lost).
    skip_apdu: Option<Sqn>,
    /// A pending loss range, reported when delivery passes it.
    loss: Option<(Sqn, u32)>,
    /// The last sequence number of the session, once OPT_FIN was seen.
    fin_lead: Option<Sqn>,
    ended: bool,
    spmr: SpmrState,
    polr: Option<PendingPolr>,
    /// POLL_SQN of the last POLL seen with POLL_ROUND 0 (App. D).
    poll_round0: Option<Sqn>,
    /// NAK to NCF, and NCF to RDATA, as measured (see `adaptive_nak_timers`).
    ncf_rtt: RttEstimate,
    rdata_rtt: RttEstimate,
}

#[derive(Debug, Clone)]
enum PendingTx {
    Nak { tsi: Tsi, sqns: Vec<Sqn> },
    Spmr { tsi: Tsi, multicast: bool },
    Polr { tsi: Tsi, polr: PendingPolr },
}

/// The receiver engine for one port and group. See the [module documentation](super).
///
/// Bounded work per call: `handle_packet` touches at most `rxw_sqns` slots (a jump of the
/// leading edge), usually O(1); `handle_timeout` processes the expired timers.
#[derive(Debug)]
pub struct Receiver {
    config: ReceiverConfig,
    peers: HashMap<Tsi, Peer, KeyedHasher>,
    rng: EngineRng,
    rand_node_id: u32,
    events: VecDeque<Event>,
    tx: VecDeque<PendingTx>,
    stats: ReceiverStats,
}

impl Receiver {
    /// A receiver.
    pub fn new(config: ReceiverConfig) -> Self {
        let mut rng = rng_from_seed(config.rng_seed);
        //= https://www.rfc-editor.org/rfc/rfc3208#section-14.5
        //# PGM receivers and network elements MUST compute a 32-bit random node
        //# identifier (RAND_NODE_ID) at startup time.
        let rand_node_id = rng.random();
        Self {
            config,
            peers: HashMap::with_hasher(keyed_hasher()),
            rng,
            rand_node_id,
            events: VecDeque::new(),
            tx: VecDeque::new(),
            stats: ReceiverStats::default(),
        }
    }

    /// Counters.
    pub fn stats(&self) -> &ReceiverStats {
        &self.stats
    }

    /// The configuration.
    pub fn config(&self) -> &ReceiverConfig {
        &self.config
    }

    /// Sources currently tracked.
    pub fn sources(&self) -> usize {
        self.peers.len()
    }

    /// Where NAKs for `tsi` go: SPM_PATH of the last in-sequence SPM (the nearest network
    /// element, else the source), or `None` before any SPM (NAKs then go to the source).
    pub fn nak_target(&self, tsi: &Tsi) -> Option<IpAddr> {
        self.peers.get(tsi).and_then(|p| p.nak_target)
    }

    /// The TSIs of the sources tracked.
    pub fn tsis(&self) -> Vec<Tsi> {
        self.peers.keys().copied().collect()
    }

    /// The next application event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Handles an arriving packet.
    pub fn handle_packet(&mut self, now: Instant, meta: RecvMeta, bytes: &[u8]) {
        let packet = match Packet::new_checked(bytes) {
            Ok(p) => p,
            Err(e) => return self.stats.malformed.add(e),
        };
        if let Err(e) = packet.verify_checksum() {
            return self.stats.malformed.add(e);
        }
        let ty = packet.packet_type();
        // Downstream packets carry our port as destination; multicast NAKs and SPMRs from
        // other receivers carry it as source (§8.3).
        let port = if ty.is_upstream() {
            packet.source_port()
        } else {
            packet.dest_port()
        };
        if port != self.config.dport {
            self.stats.ignored += 1;
            return;
        }
        match ty {
            PacketType::Odata | PacketType::Rdata => self.on_data(now, meta, bytes),
            PacketType::Spm => self.on_spm(now, meta, bytes),
            PacketType::Ncf | PacketType::Nak => self.on_ncf_or_nak(now, bytes),
            PacketType::Spmr => self.on_spmr(now, &packet),
            PacketType::Poll => self.on_poll(now, bytes),
            _ => self.stats.ignored += 1,
        }
    }

    fn on_data(&mut self, now: Instant, meta: RecvMeta, bytes: &[u8]) {
        let Ok(pkt) = DataPacket::new_checked(bytes) else {
            return;
        };
        let rdata = pkt.packet_type() == PacketType::Rdata;
        if rdata {
            self.stats.rdata_received += 1;
        } else {
            self.stats.odata_received += 1;
        }
        let (sqn, trail, tsi) = (pkt.sqn(), pkt.trail(), pkt.tsi());
        let mut fragment = None;
        let mut fin = false;
        let mut syn = false;
        let mut join = None;
        for o in pkt.options() {
            match o.value {
                OptionValue::Fragment {
                    first_sqn,
                    offset,
                    length,
                } => fragment = Some((first_sqn, offset, length)),
                OptionValue::Fin => fin = true,
                OptionValue::Syn => syn = true,
                OptionValue::Join { min_sqn } => join = Some(min_sqn),
                _ => {}
            }
        }
        let cfg = &self.config;
        let (nak_bo, rxw, spmr_bo) = (cfg.nak_bo_ivl, cfg.rxw_sqns, cfg.spmr_bo_ivl);
        let join_hold = cfg.join_hold;
        let rng = &mut self.rng;
        let Some(peer) = peer_entry(
            &mut self.peers,
            &mut self.events,
            &mut self.stats,
            cfg.max_sources,
            now,
            tsi,
            meta.source,
        ) else {
            return;
        };
        if peer.ended {
            return;
        }
        if !peer.started {
            peer.started = true;
            peer.next = join_point(sqn, trail, join, rxw);
            peer.skip_mid_message(sqn, fragment);
            if !syn && peer.next != trail {
                peer.hold(now, join_hold);
            }
        } else if peer.hold_until.is_some()
            && !rdata
            && peer.rewind_to(sqn, trail, now, nak_bo, rxw, rng)
        {
            // Older ODATA of a session still in its join hold: it was sent before the
            // packet that started the window, and reordered behind it.
            peer.skip_mid_message(sqn, fragment);
        }
        if syn && peer.next == sqn {
            // The session's first packet (§9.4): nothing older will come.
            peer.hold_until = None;
        }
        if peer.nak_target.is_none() && peer.spmr == SpmrState::Idle {
            //= https://www.rfc-editor.org/rfc/rfc3208#section-13.5
            //# before unicasting a given SPMR, receivers MUST
            //# choose a random delay on SPMR_BO_IVL (~250 msecs) during which they
            //# listen for a multicast of an identical SPMR.
            peer.spmr = SpmrState::BackOff(now + random_upto(rng, spmr_bo));
        }
        if fin {
            peer.fin_lead = Some(sqn);
        }
        peer.advance_trail(trail, rxw);
        let dup = match sqn.since(peer.next) {
            None => true,
            Some(_) => {
                peer.extend_to(sqn, now, nak_bo, rxw, rng);
                let off = sqn.since(peer.next).unwrap_or(0) as usize;
                let have = Slot::Have {
                    tsdu: pkt.payload().into(),
                    fragment,
                };
                match peer.slots.get_mut(off) {
                    Some(slot @ Slot::Missing { .. }) => {
                        if let Slot::Missing {
                            state: NakState::WaitData,
                            since,
                            data_retries: 0,
                            ..
                        } = slot
                        {
                            if rdata {
                                // The repair after a first NCF (Karn: no retried waits).
                                peer.rdata_rtt.sample(now.saturating_duration_since(*since));
                            }
                        }
                        *slot = have;
                        false
                    }
                    Some(_) => true,
                    None => {
                        peer.slots.push_back(have);
                        false
                    }
                }
            }
        };
        if dup {
            self.stats.duplicates += 1;
        }
        self.deliver(tsi, Vec::new());
    }

    fn on_spm(&mut self, now: Instant, meta: RecvMeta, bytes: &[u8]) {
        let Ok(spm) = SpmPacket::new_checked(bytes) else {
            return;
        };
        self.stats.spm_received += 1;
        let tsi = spm.tsi();
        let (sqn, trail, lead, path) = (spm.sqn(), spm.trail(), spm.lead(), spm.path());
        let mut fin = false;
        let mut rst = false;
        let mut join = None;
        for o in spm.options() {
            match o.value {
                OptionValue::Fin => fin = true,
                OptionValue::Rst { .. } => rst = true,
                OptionValue::Join { min_sqn } => join = Some(min_sqn),
                _ => {}
            }
        }
        let has_window = spm.has_window();
        let cfg = &self.config;
        let (nak_bo, rxw, join_hold) = (cfg.nak_bo_ivl, cfg.rxw_sqns, cfg.join_hold);
        let rng = &mut self.rng;
        let Some(peer) = peer_entry(
            &mut self.peers,
            &mut self.events,
            &mut self.stats,
            cfg.max_sources,
            now,
            tsi,
            meta.source,
        ) else {
            return;
        };
        //= https://www.rfc-editor.org/rfc/rfc3208#section-6.2
        //# Receivers MUST use SPMs to learn the source path NLA
        // Only in-sequence SPMs update path state: an older SPM may carry a stale path.
        if peer.last_spm_sqn.is_some_and(|last| !sqn.gt(last)) {
            return;
        }
        peer.last_spm_sqn = Some(sqn);
        peer.nak_target = Some(path.0);
        peer.source_addr = meta.source;
        peer.spmr = SpmrState::Idle;
        let mut events = Vec::new();
        if !peer.ended && has_window {
            if !peer.started {
                // The window starts after the SPM's lead: data sent before we joined is not
                // ours to recover (§9.4's default).
                peer.started = true;
                peer.next = join_point(lead.next(), trail, join, rxw);
                if peer.next != trail {
                    peer.hold(now, join_hold);
                }
            }
            peer.advance_trail(trail, rxw);
            // Data up to SPM_LEAD was sent: what we lack of it is missing (§6.3).
            peer.extend_to(lead.next(), now, nak_bo, rxw, rng);
            if fin || rst {
                peer.fin_lead = Some(lead);
            }
            if rst {
                peer.reset();
                peer.ended = true;
                events.push(Event::SessionEnd {
                    tsi,
                    reason: EndReason::Reset,
                });
            }
        }
        self.deliver(tsi, events);
    }

    fn on_ncf_or_nak(&mut self, now: Instant, bytes: &[u8]) {
        let Ok(pkt) = NakPacket::new_checked(bytes) else {
            return;
        };
        let is_ncf = pkt.packet_type() == PacketType::Ncf;
        if is_ncf {
            self.stats.ncf_received += 1;
        }
        let tsi = pkt.tsi();
        let input = if is_ncf { NakInput::Ncf } else { NakInput::Nak };
        let Some(peer) = self.peers.get_mut(&tsi) else {
            return;
        };
        let mut suppressed = 0;
        for sqn in pkt.sqns() {
            //= https://www.rfc-editor.org/rfc/rfc3208#section-6.3
            //# A receiver MUST discard any NCFs or NAKs it hears for data packets
            //# outside the transmit window or for data packets it has received.
            let Some(off) = sqn.since(peer.next) else {
                continue;
            };
            let Some(Slot::Missing {
                state,
                deadline,
                since,
                ncf_retries,
                ..
            }) = peer.slots.get_mut(off as usize)
            else {
                continue;
            };
            if *state == NakState::BackOff {
                suppressed += 1;
            }
            if is_ncf && *state == NakState::WaitNcf && *ncf_retries == 0 {
                // Our first NAK's confirmation (Karn: retried NAKs are not measured).
                peer.ncf_rtt.sample(now.saturating_duration_since(*since));
            }
            if let NakAction::Enter(next) = state.on(input, true, true) {
                let (rpt, rdata) = nak_waits(&self.config, &peer.ncf_rtt, &peer.rdata_rtt);
                *state = next;
                *since = now;
                *deadline = now
                    + match next {
                        NakState::WaitNcf => rpt,
                        _ => rdata,
                    };
                peer.timers.push(Reverse((*deadline, sqn.0)));
            }
        }
        self.stats.naks_suppressed += suppressed;
    }

    fn on_spmr(&mut self, now: Instant, packet: &Packet<&[u8]>) {
        // A multicast SPMR from another receiver on our subnet suppresses ours (§13.5).
        let wait = self.config.spmr_spm_ivl;
        if let Some(peer) = self.peers.get_mut(&packet.tsi()) {
            if matches!(peer.spmr, SpmrState::BackOff(_)) {
                peer.spmr = SpmrState::Wait(now + wait);
            }
        }
    }

    fn on_poll(&mut self, now: Instant, bytes: &[u8]) {
        if !self.config.answer_polls {
            return;
        }
        let Ok(poll) = PollPacket::new_checked(bytes) else {
            return;
        };
        let tsi = poll.tsi();
        let (sqn, round, mask) = (poll.sqn(), poll.round(), poll.mask());
        let rand = u32::from_be_bytes(poll.rand());
        let node = self.rand_node_id;
        let bo = Duration::from_micros(u64::from(poll.backoff_ivl_us()));
        let d = random_upto(&mut self.rng, bo + Duration::from_nanos(1));
        let Some(peer) = self.peers.get_mut(&tsi) else {
            return;
        };
        //= https://www.rfc-editor.org/rfc/rfc3208#section-14.5
        //# A PGM receiver or network element MUST cancel any pending
        //# transmission of POLRs if a new POLL is received with POLL_SQN
        //# different from POLR_SQN of the poll that scheduled POLRs.
        if peer.polr.is_some_and(|p| p.sqn != sqn) {
            peer.polr = None;
        }
        if round == 0 {
            peer.poll_round0 = Some(sqn);
        }
        //# If the incoming POLL
        //# contain a POLL_MASK made of all zeroes, the match is successful
        //# despite the content of POLL_RAND (deterministic reply).
        if node & mask != rand & mask {
            return;
        }
        //# If POLL_ROUND is non-zero and the PGM receiver has not received a
        //# previous poll with the same POLL_SQN and a zero POLL_ROUND, it MUST
        //# discard the poll without further action.
        if round != 0 && peer.poll_round0 != Some(sqn) {
            return;
        }
        // Receivers answer general polls only; DLR polls are for repairers and unknown
        // sub-types MUST be ignored.
        if poll.subtype() != PollSubtype::General {
            return;
        }
        peer.polr = Some(PendingPolr {
            sqn,
            round,
            dest: poll.path().0,
            deadline: now + d,
        });
    }

    /// Delivers what became deliverable for `tsi`, after `events` already produced.
    fn deliver(&mut self, tsi: Tsi, mut events: Vec<Event>) {
        let max_apdu = self.config.max_apdu;
        let Some(peer) = self.peers.get_mut(&tsi) else {
            return;
        };
        if peer.hold_until.is_some() {
            self.count_events(&events);
            self.events.extend(events);
            return;
        }
        peer.drain(max_apdu, &mut events, &mut self.stats);
        let fin_done = peer.fin_lead.is_some_and(|f| peer.next == f.next());
        if !peer.ended && peer.slots.is_empty() && fin_done {
            peer.ended = true;
            events.push(Event::SessionEnd {
                tsi,
                reason: EndReason::Fin,
            });
        }
        self.count_events(&events);
        self.events.extend(events);
    }

    fn count_events(&mut self, events: &[Event]) {
        for e in events {
            match e {
                Event::Loss { count, .. } => {
                    self.stats.loss_events += 1;
                    self.stats.sqns_lost += u64::from(*count);
                }
                Event::Data { data, .. } => {
                    self.stats.messages_delivered += 1;
                    self.stats.bytes_delivered += data.len() as u64;
                }
                _ => {}
            }
        }
    }

    /// Handles timer expiry: NAK back-offs and waits, SPMR back-offs, POLR back-offs and
    /// source expiry. Work is bounded by the timers that expired.
    pub fn handle_timeout(&mut self, now: Instant) {
        let tsis: Vec<Tsi> = self.peers.keys().copied().collect();
        for tsi in tsis {
            self.peer_timeout(now, tsi);
        }
    }

    fn peer_timeout(&mut self, now: Instant, tsi: Tsi) {
        let cfg = &self.config;
        let rng = &mut self.rng;
        let Some(peer) = self.peers.get_mut(&tsi) else {
            return;
        };
        let mut events = Vec::new();
        if now.saturating_duration_since(peer.last_heard) >= cfg.peer_expiry {
            peer.reset();
            peer.drain(cfg.max_apdu, &mut events, &mut self.stats);
            peer.flush_loss(&mut events);
            let ended = peer.ended;
            self.peers.remove(&tsi);
            self.count_events(&events);
            if !ended {
                events.push(Event::SessionEnd {
                    tsi,
                    reason: EndReason::Expired,
                });
            }
            self.events.extend(events);
            return;
        }
        if peer.hold_until.is_some_and(|at| at <= now) {
            peer.hold_until = None;
        }
        // NAK timers.
        let mut to_nak: Vec<Sqn> = Vec::new();
        while let Some(&Reverse((at, raw))) = peer.timers.peek() {
            if at > now {
                break;
            }
            peer.timers.pop();
            let sqn = Sqn(raw);
            let Some(off) = sqn.since(peer.next) else {
                continue;
            };
            let (rpt, rdata) = nak_waits(cfg, &peer.ncf_rtt, &peer.rdata_rtt);
            let Some(Slot::Missing {
                state,
                deadline,
                since,
                detected,
                ncf_retries,
                data_retries,
            }) = peer.slots.get_mut(off as usize)
            else {
                continue;
            };
            if *deadline != at {
                continue; // a stale timer: the state moved on since
            }
            match *state {
                NakState::WaitNcf => *ncf_retries += 1,
                NakState::WaitData => *data_retries += 1,
                NakState::BackOff => {}
            }
            // Retries are left while under the count, or, with adapted (shorter) waits,
            // while the time the configured intervals allow has not run out.
            let waited = now.saturating_duration_since(*detected);
            let ncf_left = *ncf_retries <= cfg.nak_ncf_retries
                || waited < cfg.nak_rpt_ivl.saturating_mul(cfg.nak_ncf_retries);
            let data_left = *data_retries <= cfg.nak_data_retries
                || waited < cfg.nak_rdata_ivl.saturating_mul(cfg.nak_data_retries);
            let action = state.on(NakInput::Timeout, ncf_left, data_left);
            // Each retry doubles the adapted wait, up to the configured one (RFC 6298's
            // back-off): a source that stopped answering is not NAKed every few
            // milliseconds.
            let rpt = backed_off(rpt, *ncf_retries, cfg.nak_rpt_ivl);
            let rdata = backed_off(rdata, *data_retries, cfg.nak_rdata_ivl);
            match action {
                NakAction::SendNak => {
                    *state = NakState::WaitNcf;
                    *since = now;
                    *deadline = now + rpt;
                    peer.timers.push(Reverse((*deadline, raw)));
                    to_nak.push(sqn);
                }
                NakAction::Enter(next) => {
                    *state = next;
                    *since = now;
                    *deadline = now
                        + match next {
                            NakState::BackOff => random_upto(rng, cfg.nak_bo_ivl),
                            NakState::WaitNcf => rpt,
                            NakState::WaitData => rdata,
                        };
                    peer.timers.push(Reverse((*deadline, raw)));
                }
                NakAction::GiveUp => {
                    //= https://www.rfc-editor.org/rfc/rfc3208#section-6.3
                    //# Cancellation of NAK generation indicates unrecoverable
                    //# data loss.
                    peer.slots[off as usize] = Slot::Lost;
                }
            }
        }
        //= https://www.rfc-editor.org/rfc/rfc3208#section-6.3
        //# When a receiver has to transmit a sequence of NAKs, it SHOULD
        //# transmit the NAKs in order from oldest to most recent.
        to_nak.sort_by_key(|s| s.since(peer.next).unwrap_or(u32::MAX));
        for chunk in to_nak.chunks(1 + MAX_NAK_LIST) {
            self.tx.push_back(PendingTx::Nak {
                tsi,
                sqns: chunk.to_vec(),
            });
        }
        match peer.spmr {
            SpmrState::BackOff(at) if at <= now => {
                //# If a receiver does not see a matching multicast SPMR within its chosen
                //# random interval, it MUST first multicast its own SPMR to the group
                //# with a TTL of 1 before then unicasting its own SPMR to the source.
                self.tx.push_back(PendingTx::Spmr {
                    tsi,
                    multicast: true,
                });
                self.tx.push_back(PendingTx::Spmr {
                    tsi,
                    multicast: false,
                });
                peer.spmr = SpmrState::Wait(now + cfg.spmr_spm_ivl);
            }
            SpmrState::Wait(at) if at <= now && peer.nak_target.is_none() => {
                peer.spmr = SpmrState::BackOff(now + random_upto(rng, cfg.spmr_bo_ivl));
            }
            _ => {}
        }
        if let Some(p) = peer.polr.filter(|p| p.deadline <= now) {
            peer.polr = None;
            self.tx.push_back(PendingTx::Polr { tsi, polr: p });
        }
        self.deliver(tsi, events);
    }

    /// The earliest deadline of any source.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut t: Option<Instant> = None;
        let mut take = |x: Instant| t = Some(t.map_or(x, |t| t.min(x)));
        for p in self.peers.values() {
            take(p.last_heard + self.config.peer_expiry);
            if let Some(at) = p.hold_until {
                take(at);
            }
            if let Some(Reverse((at, _))) = p.timers.peek() {
                take(*at);
            }
            match p.spmr {
                SpmrState::BackOff(at) => take(at),
                SpmrState::Wait(at) if p.nak_target.is_none() => take(at),
                _ => {}
            }
            if let Some(polr) = p.polr {
                take(polr.deadline);
            }
        }
        t
    }

    /// The next packet to send (NAKs, SPMRs, POLRs), written into `buf`.
    pub fn poll_transmit(&mut self, _now: Instant, buf: &mut Vec<u8>) -> Option<Transmit> {
        while let Some(tx) = self.tx.pop_front() {
            let (tsi, body, opts_rest, dest, ttl, ty) = match &tx {
                PendingTx::Nak { tsi, sqns } => {
                    let Some(peer) = self.peers.get(tsi) else {
                        continue;
                    };
                    let Some((&first, rest)) = sqns.split_first() else {
                        continue;
                    };
                    //= https://www.rfc-editor.org/rfc/rfc3208#section-6.3
                    //# Upon expiry of NAK_RB_IVL, a receiver MUST unicast a NAK to the
                    //# upstream PGM network element for the TSI
                    let dest = peer.nak_target.unwrap_or(peer.source_addr);
                    let body = Body::Nak(NakRepr {
                        sqn: first,
                        source: Nla(peer.source_addr),
                        group: Nla(self.config.group),
                    });
                    self.stats.naks_sent += 1;
                    self.stats.nak_sqns_sent += sqns.len() as u64;
                    (
                        *tsi,
                        body,
                        rest,
                        Destination::Unicast(dest),
                        None,
                        PacketType::Nak,
                    )
                }
                PendingTx::Spmr { tsi, multicast } => {
                    let Some(peer) = self.peers.get(tsi) else {
                        continue;
                    };
                    let (dest, ttl) = if *multicast {
                        (Destination::Group(self.config.group), Some(1))
                    } else {
                        (Destination::Unicast(peer.source_addr), None)
                    };
                    self.stats.spmrs_sent += u64::from(!*multicast);
                    (*tsi, Body::Spmr, &[][..], dest, ttl, PacketType::Spmr)
                }
                PendingTx::Polr { tsi, polr } => {
                    self.stats.polrs_sent += 1;
                    let body = Body::Polr(PolrRepr {
                        sqn: polr.sqn,
                        round: polr.round,
                    });
                    (
                        *tsi,
                        body,
                        &[][..],
                        Destination::Unicast(polr.dest),
                        None,
                        PacketType::Polr,
                    )
                }
            };
            let opts = [PgmOption::from(OptionValue::NakList(SqnList::Slice(
                opts_rest,
            )))];
            let repr = Repr {
                sport: self.config.dport,
                dport: tsi.sport,
                gsi: tsi.gsi,
                parity: false,
                var_pktlen: false,
                body,
                options: if opts_rest.is_empty() {
                    OptionList::EMPTY
                } else {
                    OptionList::Slice(&opts)
                },
            };
            buf.resize(repr.buffer_len(), 0);
            let Ok(len) = repr.emit(buf) else { continue };
            return Some(Transmit {
                destination: dest,
                packet_type: ty,
                router_alert: false,
                ttl,
                len,
            });
        }
        None
    }
}

/// The peer for `tsi`, created (with a session-start event) if there is room.
fn peer_entry<'a>(
    peers: &'a mut HashMap<Tsi, Peer, KeyedHasher>,
    events: &mut VecDeque<Event>,
    stats: &mut ReceiverStats,
    max_sources: usize,
    now: Instant,
    tsi: Tsi,
    source_addr: IpAddr,
) -> Option<&'a mut Peer> {
    let known = peers.len();
    let p = match peers.entry(tsi) {
        std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
        std::collections::hash_map::Entry::Vacant(v) => {
            if known >= max_sources {
                stats.sources_refused += 1;
                return None;
            }
            events.push_back(Event::SessionStart { tsi });
            v.insert(Peer {
                tsi,
                source_addr,
                nak_target: None,
                last_spm_sqn: None,
                last_heard: now,
                next: Sqn(0),
                started: false,
                hold_until: None,
                slots: VecDeque::new(),
                timers: BinaryHeap::new(),
                apdu: None,
                skip_apdu: None,
                loss: None,
                fin_lead: None,
                ended: false,
                spmr: SpmrState::Idle,
                polr: None,
                poll_round0: None,
                ncf_rtt: RttEstimate::default(),
                rdata_rtt: RttEstimate::default(),
            })
        }
    };
    p.last_heard = now;
    Some(p)
}

/// The wait after a NAK (for the NCF) and after an NCF (for the repair), for `peer`.
fn nak_waits(
    cfg: &ReceiverConfig,
    ncf_rtt: &RttEstimate,
    rdata_rtt: &RttEstimate,
) -> (Duration, Duration) {
    if !cfg.adaptive_nak_timers {
        return (cfg.nak_rpt_ivl, cfg.nak_rdata_ivl);
    }
    let rpt = ncf_rtt.wait(cfg.nak_ivl_floor, cfg.nak_rpt_ivl);
    let rdata = if rdata_rtt.srtt.is_none() && ncf_rtt.srtt.is_some() {
        // No repair measured yet (a session's first losses, whose repair may itself be
        // lost): the repair follows the NCF over at most the same path again, so twice the
        // NCF wait until the first repair is measured.
        rpt.saturating_mul(2).min(cfg.nak_rdata_ivl)
    } else {
        rdata_rtt.wait(cfg.nak_ivl_floor, cfg.nak_rdata_ivl)
    };
    (rpt, rdata)
}

/// `wait` doubled `retries` times, at most `ceiling` (and `wait` itself if larger).
fn backed_off(wait: Duration, retries: u32, ceiling: Duration) -> Duration {
    wait.saturating_mul(1 << retries.min(16))
        .min(ceiling.max(wait))
}

/// Where a new session's window starts, given the first sequence number a receiver can take
/// (`first`), the source's trailing edge, and OPT_JOIN's minimum if the source offers one
/// (§9.4: "receivers that join a transport session in progress MAY request repair of all
/// data as far back as the given minimum sequence number"). Never more than `rxw` back.
fn join_point(first: Sqn, trail: Sqn, join: Option<Sqn>, rxw: u32) -> Sqn {
    let Some(min) = join else { return first };
    let start = if min.lt(trail) { trail } else { min };
    match first.since(start) {
        Some(back) if back < rxw => start,
        _ => first,
    }
}

fn random_upto(rng: &mut EngineRng, ivl: Duration) -> Duration {
    let max = ivl.as_nanos().min(u128::from(u64::MAX)) as u64;
    if max == 0 {
        return Duration::ZERO;
    }
    Duration::from_nanos(rng.random_range(0..max))
}

impl Peer {
    /// Starts the join hold (see [`ReceiverConfig::join_hold`]).
    fn hold(&mut self, now: Instant, hold: Duration) {
        if !hold.is_zero() {
            self.hold_until = Some(now + hold);
        }
    }

    /// When the window starts at `sqn` in the middle of a message, the message's start is
    /// not ours to get: its fragments are skipped.
    fn skip_mid_message(&mut self, sqn: Sqn, fragment: Option<(Sqn, u32, u32)>) {
        self.skip_apdu = match fragment {
            Some((first, _, _)) if first != sqn && self.next == sqn => Some(first),
            _ => None,
        };
    }

    /// Moves the start of a held window back to `sqn`, older than it, when the source still
    /// holds `sqn` (not behind `trail`) and the window stays within `rxw`. Everything from
    /// `sqn` to the old start becomes Missing (in BACK-OFF); the caller fills `sqn` itself.
    fn rewind_to(
        &mut self,
        sqn: Sqn,
        trail: Sqn,
        now: Instant,
        nak_bo: Duration,
        rxw: u32,
        rng: &mut EngineRng,
    ) -> bool {
        let Some(back) = self.next.since(sqn) else {
            return false;
        };
        if back == 0 || sqn.lt(trail) || self.slots.len() as u64 + u64::from(back) > u64::from(rxw)
        {
            return false;
        }
        for i in (0..back).rev() {
            let deadline = now + random_upto(rng, nak_bo);
            self.timers.push(Reverse((deadline, (sqn + i).0)));
            self.slots.push_front(Slot::Missing {
                state: NakState::BackOff,
                deadline,
                since: now,
                detected: now,
                ncf_retries: 0,
                data_retries: 0,
            });
        }
        self.next = sqn;
        true
    }

    /// Creates Missing slots (in BACK-OFF, §6.3) for every sequence number from the end of the
    /// window up to, not including, `end`. If that would make the window longer than `rxw`,
    /// what falls out of it is lost at once.
    fn extend_to(
        &mut self,
        end: Sqn,
        now: Instant,
        nak_bo: Duration,
        rxw: u32,
        rng: &mut EngineRng,
    ) {
        let Some(ahead) = end.since(self.next) else {
            return;
        };
        if ahead > rxw {
            self.advance_trail(end - rxw, rxw);
        }
        let Some(ahead) = end.since(self.next) else {
            return;
        };
        for i in self.slots.len() as u32..ahead {
            let deadline = now + random_upto(rng, nak_bo);
            self.timers.push(Reverse((deadline, (self.next + i).0)));
            self.slots.push_back(Slot::Missing {
                state: NakState::BackOff,
                deadline,
                since: now,
                detected: now,
                ncf_retries: 0,
                data_retries: 0,
            });
        }
    }

    /// The source's trailing edge moved to `trail`: data before it can no longer be
    /// repaired (§6.3: "if the trailing edge of the window moves beyond the sequence number,
    /// data recovery for that sequence number terminates"). At most `rxw` sequence numbers
    /// are given up per call, so a wild trail costs bounded work.
    fn advance_trail(&mut self, trail: Sqn, rxw: u32) {
        if !self.started {
            return;
        }
        let Some(behind) = trail.since(self.next) else {
            return;
        };
        for i in 0..behind.min(rxw) as usize {
            match self.slots.get_mut(i) {
                Some(slot @ Slot::Missing { .. }) => *slot = Slot::Lost,
                Some(_) => {}
                None => self.slots.push_back(Slot::Lost),
            }
        }
    }

    /// Gives up every pending repair: what is missing is lost.
    fn reset(&mut self) {
        for s in self.slots.iter_mut() {
            if let Slot::Missing { .. } = s {
                *s = Slot::Lost;
            }
        }
    }

    /// Adds `sqn` to the pending loss range, reporting the previous range if not adjacent.
    fn note_loss(&mut self, sqn: Sqn, events: &mut Vec<Event>) {
        match &mut self.loss {
            Some((first, count)) if *first + *count == sqn => *count += 1,
            _ => {
                self.flush_loss(events);
                self.loss = Some((sqn, 1));
            }
        }
    }

    fn flush_loss(&mut self, events: &mut Vec<Event>) {
        if let Some((first, count)) = self.loss.take() {
            events.push(Event::Loss {
                tsi: self.tsi,
                first,
                count,
            });
        }
    }

    /// A message being reassembled from `first` is lost: every sequence number from `first`
    /// to `upto` (inclusive) is reported lost, and its later fragments will be skipped.
    fn lose_apdu(&mut self, first: Sqn, upto: Sqn, events: &mut Vec<Event>) {
        self.skip_apdu = Some(first);
        let Some(n) = upto.since(first) else {
            return self.note_loss(upto, events);
        };
        for i in 0..=n {
            self.note_loss(first + i, events);
        }
    }

    /// Delivers every contiguous received or lost slot at the front of the window.
    fn drain(&mut self, max_apdu: usize, events: &mut Vec<Event>, stats: &mut ReceiverStats) {
        loop {
            let sqn = self.next;
            match self.slots.pop_front() {
                None => break,
                Some(slot @ Slot::Missing { .. }) => {
                    self.slots.push_front(slot);
                    break;
                }
                Some(Slot::Lost) => {
                    self.next = sqn.next();
                    match self.apdu.take() {
                        // The message this sqn belonged to is lost whole.
                        Some((first, _, _)) => self.lose_apdu(first, sqn, events),
                        None => self.note_loss(sqn, events),
                    }
                }
                Some(Slot::Have { tsdu, fragment }) => {
                    self.next = sqn.next();
                    self.take_data(sqn, tsdu, fragment, max_apdu, events, stats);
                }
            }
        }
        // Delivery stopped at a gap or the end: the loss range so far is complete.
        if self.apdu.is_none() {
            self.flush_loss(events);
        }
    }

    fn take_data(
        &mut self,
        sqn: Sqn,
        tsdu: Box<[u8]>,
        fragment: Option<(Sqn, u32, u32)>,
        max_apdu: usize,
        events: &mut Vec<Event>,
        stats: &mut ReceiverStats,
    ) {
        let Some((first, offset, length)) = fragment else {
            if let Some((first, _, _)) = self.apdu.take() {
                // A message cut short by an unfragmented packet: the sender broke it.
                stats.bad_fragments += 1;
                self.lose_apdu(first, sqn - 1, events);
            }
            self.skip_apdu = None;
            self.flush_loss(events);
            events.push(Event::Data {
                tsi: self.tsi,
                data: tsdu.into_vec(),
            });
            return;
        };
        if self.skip_apdu == Some(first) {
            return self.note_loss(sqn, events);
        }
        if offset != 0 && self.apdu.is_none() {
            // The rest of a message whose first fragment was lost.
            self.skip_apdu = Some(first);
            return self.note_loss(sqn, events);
        }
        if offset == 0 {
            if let Some((prev, _, _)) = self.apdu.take() {
                stats.bad_fragments += 1;
                self.lose_apdu(prev, sqn - 1, events);
            }
            if first != sqn || length as usize > max_apdu {
                stats.bad_fragments += u64::from(first != sqn);
                self.skip_apdu = Some(first);
                return self.note_loss(sqn, events);
            }
            self.skip_apdu = None;
            self.apdu = Some((first, length, Vec::with_capacity(length as usize)));
        }
        let fits = match &mut self.apdu {
            Some((f, len, buf))
                if *f == first
                    && *len == length
                    && buf.len() == offset as usize
                    && buf.len() + tsdu.len() <= *len as usize =>
            {
                buf.extend_from_slice(&tsdu);
                true
            }
            _ => false,
        };
        if !fits {
            stats.bad_fragments += 1;
            match self.apdu.take() {
                Some((f, _, _)) => self.lose_apdu(f, sqn, events),
                None => {
                    self.skip_apdu = Some(first);
                    self.note_loss(sqn, events);
                }
            }
            return;
        }
        if let Some((_, len, buf)) = &self.apdu {
            if buf.len() == *len as usize {
                if let Some((_, _, data)) = self.apdu.take() {
                    self.flush_loss(events);
                    events.push(Event::Data {
                        tsi: self.tsi,
                        data,
                    });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The whole §6.3 transition table, written out: a change to any transition fails here.
    #[test]
    fn nak_transition_table() {
        use NakAction::*;
        use NakInput::*;
        use NakState::*;
        //= https://www.rfc-editor.org/rfc/rfc3208#section-6.3
        //= type=test
        //# The entire generation process can be summarized by the following
        //# state machine:
        let table = [
            (BackOff, Timeout, true, true, SendNak),
            (BackOff, Ncf, true, true, Enter(WaitData)),
            (BackOff, Nak, true, true, Enter(WaitData)),
            (WaitNcf, Timeout, true, true, Enter(BackOff)),
            (WaitNcf, Timeout, false, true, GiveUp),
            (WaitNcf, Ncf, true, true, Enter(WaitData)),
            (WaitNcf, Nak, true, true, Enter(WaitNcf)),
            (WaitData, Timeout, true, true, Enter(BackOff)),
            (WaitData, Timeout, true, false, GiveUp),
            (WaitData, Ncf, true, true, Enter(WaitData)),
            (WaitData, Nak, true, true, Enter(WaitData)),
        ];
        for (state, input, ncf_left, data_left, want) in table {
            assert_eq!(
                state.on(input, ncf_left, data_left),
                want,
                "{state:?} on {input:?}"
            );
        }
    }

    #[test]
    fn join_point_honours_opt_join_within_the_window() {
        // No OPT_JOIN: from the first packet (§9.4 default).
        assert_eq!(join_point(Sqn(100), Sqn(10), None, 1000), Sqn(100));
        // OPT_JOIN older than the trail: from the trail.
        assert_eq!(join_point(Sqn(100), Sqn(10), Some(Sqn(5)), 1000), Sqn(10));
        // OPT_JOIN newer than the trail: from OPT_JOIN.
        assert_eq!(join_point(Sqn(100), Sqn(10), Some(Sqn(50)), 1000), Sqn(50));
        // Too far back for the receive window: from the first packet.
        assert_eq!(join_point(Sqn(5000), Sqn(0), Some(Sqn(0)), 1000), Sqn(5000));
    }
}
