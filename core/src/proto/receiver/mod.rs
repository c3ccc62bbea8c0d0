//! The PGM receiver engine (§6, §9.2–§9.8, §13.5, Appendix D children), sans-IO.
//!
//! Heads up! Read RFC 3208 §6 first, and §6.3's state machine above [`NakState`].
//!
//! One engine serves one data-destination port on one group, for any number of sources
//! (TSIs), each with its own receive window. Data is delivered in order, without duplicates,
//! one event per application message (APDU, reassembled from OPT_FRAGMENT). What cannot be
//! recovered is reported as an explicit [`Event::Loss`] with its sequence-number range, and
//! delivery continues after it.
//!
//! Nothing a packet says can make the engine exceed its bounds (see [`ReceiverConfig`]):
//! at most `max_sources` sources, each with a window of at most `rxw_sqns` sequence
//! numbers, all of them together holding at most `max_buffer_bytes`. A packet costs O(1)
//! work beyond the window slots it adds (at most `rxw_sqns`); a packet from an address
//! other than the session's source cannot move its window, end it, or be delivered as its
//! data (only RDATA, which a repairer may send from its own address, can fill a missing
//! slot); and a packet that would move the window far or give data up is held until a
//! second packet agrees (see [`window`]). PGM has no authentication: a host that forges the
//! source's own address and sequence numbers can still disturb a session.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use rand::Rng;

use super::rotation::{Candidate, evict_in_rotation};
use super::{Destination, EngineRng, KeyedHasher, RecvMeta, Transmit, keyed_hasher, rng_from_seed};
use crate::wire::{
    AckRepr, Body, DataPacket, MAX_NAK_LIST, NakPacket, NakRepr, Nla, OptionList, OptionValue,
    Packet, PacketType, PgmOption, PollPacket, PollSubtype, PolrRepr, Repr, SpmPacket, Sqn,
    SqnList, Tsi,
};

mod config;
mod events;
mod nak;
mod timers;
pub mod window;

pub use config::{ReceiverConfig, SessionFilter};
pub use events::{EndReason, Event, ReceiverStats};

pub use nak::{NakAction, NakInput, NakState};
use nak::{backed_off, nak_waits, random_upto};
use window::{Observed, Peer, PendingPolr, SLOT_COST, Slot, SpmrState, join_point};

#[derive(Debug, Clone)]
enum PendingTx {
    Nak {
        tsi: Tsi,
        sqns: Vec<Sqn>,
    },
    Spmr {
        tsi: Tsi,
        multicast: bool,
    },
    Polr {
        tsi: Tsi,
        polr: PendingPolr,
    },
    /// A PGMCC ACK (as acker, or volunteering), built from the source's state when sent.
    Ack {
        tsi: Tsi,
    },
}

/// Queues one ACK for `peer` unless one already waits: an ACK is built when it is sent, so
/// one covers every packet that arrived before.
fn queue_ack(tx: &mut VecDeque<PendingTx>, peer: &mut Peer, tsi: Tsi) {
    if !peer.ack_queued {
        peer.ack_queued = true;
        tx.push_back(PendingTx::Ack { tsi });
    }
}

/// The receiver engine for one port and group. See the [module documentation](self).
///
/// Bounded work per call: `handle_packet` costs O(1) plus the window slots it adds or
/// gives up (at most `rxw_sqns`, when the window grows or jumps), and O(log n) to schedule
/// the source's next timer; `handle_timeout` is bounded by the timers that expired;
/// `poll_timeout` is O(1).
#[derive(Debug)]
pub struct Receiver {
    config: ReceiverConfig,
    peers: HashMap<Tsi, Peer, KeyedHasher>,
    /// Each source's next deadline (its [`Peer::wake`]); entries whose source moved on are
    /// dropped when they come due, and the queue is rebuilt when they outnumber the live
    /// ones.
    wakeups: BinaryHeap<Reverse<(Instant, Tsi)>>,
    /// The session chosen by [`SessionFilter::One`].
    chosen: Option<Tsi>,
    /// Every tracked source once (and some gone since), in the order they are examined to
    /// make room; rebuilt when stale entries outnumber the live ones.
    rotation: VecDeque<Tsi>,
    /// Bytes all windows hold (the sum of [`Peer::bytes`]).
    buffered: usize,
    /// SPMRs that may still be sent in the current second, and when it started.
    spmr_budget: (u32, Option<Instant>),
    rng: EngineRng,
    rand_node_id: u32,
    events: VecDeque<Event>,
    tx: VecDeque<PendingTx>,
    stats: ReceiverStats,
}

impl Receiver {
    /// A receiver.
    pub fn new(mut config: ReceiverConfig) -> Self {
        config.rxw_sqns = config.rxw_sqns.clamp(1, 1 << 30);
        let mut rng = rng_from_seed(config.rng_seed);
        //= https://www.rfc-editor.org/rfc/rfc3208#section-14.5
        //# PGM receivers and network elements MUST compute a 32-bit random node
        //# identifier (RAND_NODE_ID) at startup time.
        let rand_node_id = rng.random();
        Self {
            config,
            peers: HashMap::with_hasher(keyed_hasher()),
            wakeups: BinaryHeap::new(),
            chosen: None,
            rotation: VecDeque::new(),
            buffered: 0,
            spmr_budget: (0, None),
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

    /// Bytes the receive windows hold (bounded by `max_buffer_bytes`, plus at most one
    /// message being reassembled per source).
    pub fn buffered_bytes(&self) -> usize {
        self.buffered
    }

    /// Sequence numbers the windows hold over all sources (each at most `rxw_sqns`).
    pub fn window_slots(&self) -> usize {
        self.peers.values().map(|p| p.slots.len()).sum()
    }

    /// Entries in the engine's timer queues (bounded by twice the sources and slots, plus
    /// a constant per source).
    pub fn timer_entries(&self) -> usize {
        self.wakeups.len() + self.peers.values().map(|p| p.timers.len()).sum::<usize>()
    }

    /// Where NAKs for `tsi` go: SPM_PATH of the last in-sequence SPM (the nearest network
    /// element, else the source), or `None` before any SPM (no NAK is sent then).
    pub fn nak_target(&self, tsi: &Tsi) -> Option<IpAddr> {
        self.peers.get(tsi).and_then(|p| p.nak_target)
    }

    /// The address of `tsi`'s source (the IP source of its first ODATA or SPM), if tracked.
    pub fn source_addr(&self, tsi: &Tsi) -> Option<IpAddr> {
        self.peers.get(tsi).map(|p| p.source_addr)
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
        let tsi = packet.tsi();
        match ty {
            PacketType::Odata | PacketType::Rdata => self.on_data(now, meta, bytes),
            PacketType::Spm => self.on_spm(now, meta, bytes),
            PacketType::Ncf | PacketType::Nak => self.on_ncf_or_nak(now, bytes),
            PacketType::Spmr => self.on_spmr(now, &packet),
            PacketType::Poll => self.on_poll(now, meta, bytes),
            // POLRs among them: every redirecting POLR is ignored (§9.5.4 allows it).
            //= https://www.rfc-editor.org/rfc/rfc3208#section-9.5.4
            //# So, receivers MUST ignore a redirecting POLR
            //# from a DLR on the same IP subnet that the receiver resides on, since
            //# this is likely to suffer identical loss to the receiver and so be
            //# useless.
            _ => {
                self.stats.ignored += 1;
                return;
            }
        }
        self.schedule(tsi);
    }

    /// Whether the filter takes a new session `tsi` from `source`; counted if not.
    fn takes(&mut self, tsi: Tsi, source: IpAddr) -> bool {
        let ok = match self.config.sessions {
            SessionFilter::All => true,
            SessionFilter::One { tsi: t, source: s } => {
                self.chosen.is_none() && t.is_none_or(|t| t == tsi) && s.is_none_or(|s| s == source)
            }
        };
        if !ok {
            self.stats.other_sessions += 1;
        }
        ok
    }

    /// Whether `tsi` is tracked, created (with a session-start event) if `create` and
    /// there is room and the filter takes it.
    fn has_peer(&mut self, now: Instant, tsi: Tsi, source: IpAddr, create: bool) -> bool {
        if self.peers.contains_key(&tsi) {
            return true;
        }
        if !create {
            self.stats.no_session += 1;
            return false;
        }
        if !self.takes(tsi, source) {
            return false;
        }
        if self.peers.len() >= self.config.max_sources && !self.make_room() {
            self.stats.sources_refused += 1;
            return false;
        }
        if let SessionFilter::One { .. } = self.config.sessions {
            self.chosen = Some(tsi);
        }
        self.events.push_back(Event::SessionStart { tsi });
        self.peers.insert(tsi, Peer::new(tsi, source, now));
        self.rotation.push_back(tsi);
        if self.rotation.len() > 2 * self.peers.len() + 64 {
            self.rotation = self.peers.keys().copied().collect();
        }
        true
    }

    /// At `max_sources`: forgets one source heard of only once (a made-up TSI costs one
    /// packet; a real source confirms itself with its next packet or SPM), looking at no more
    /// than 8 in rotation. Whether one went.
    fn make_room(&mut self) -> bool {
        let peers = &self.peers;
        let Some(tsi) = evict_in_rotation(&mut self.rotation, |t| match peers.get(t) {
            None => Candidate::Gone,
            Some(p) if p.heard < 2 => Candidate::Evict,
            Some(_) => Candidate::Keep,
        }) else {
            return false;
        };
        let Some(p) = self.peers.remove(&tsi) else {
            return false;
        };
        self.buffered -= p.bytes;
        self.stats.sources_evicted += 1;
        if !p.end_sent {
            self.events.push_back(Event::SessionEnd {
                tsi,
                reason: EndReason::Evicted,
            });
        }
        true
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
        let mut pgmcc = None;
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
                OptionValue::PgmccData { tstamp, acker } => pgmcc = Some((tstamp, acker.0)),
                _ => {}
            }
        }
        let payload = pkt.payload();
        // A session starts with its ODATA (or SPM): RDATA answers someone's NAK.
        if !self.has_peer(now, tsi, meta.source, !rdata) {
            return;
        }
        let Some(peer) = self.peers.get_mut(&tsi) else {
            return;
        };
        let from_source = meta.source == peer.source_addr;
        if peer.ended || (!peer.started && rdata) {
            return;
        }
        if !from_source && !rdata {
            self.stats.wrong_source += 1;
            return;
        }
        peer.last_heard = now;
        if from_source {
            peer.heard = peer.heard.saturating_add(1);
            peer.earn_nak_credit();
        }
        let before = peer.bytes;
        let cfg = &self.config;
        let (nak_bo, rxw) = (cfg.nak_bo_ivl, cfg.rxw_sqns);
        let mut events = Vec::new();
        if !peer.started {
            peer.started = true;
            //= https://www.rfc-editor.org/rfc/rfc3208#section-6.1
            //# That
            //# is, it is assigned to RXW_TRAIL_INIT within the receiver, and until
            //# the trailing edge sequence number advertised in subsequent packets
            //# (SPMs or ODATA or RDATA) increments past RXW_TRAIL_INIT, the receiver
            //# MUST only request repairs for sequence numbers subsequent to
            //# RXW_TRAIL_INIT.
            peer.next = join_point(sqn, trail, join, rxw);
            peer.skip_mid_message(sqn, fragment);
            if !syn && peer.next != trail {
                peer.hold(now, cfg.join_hold);
            }
        } else if peer.hold_until.is_some()
            && !rdata
            && peer.rewind_to(
                sqn,
                trail,
                now,
                (nak_bo, rxw),
                cfg.max_buffer_bytes.saturating_sub(self.buffered),
                &mut self.rng,
            )
        {
            // Older ODATA of a session still in its join hold: it was sent before the
            // packet that started the window, and reordered behind it.
            peer.skip_mid_message(sqn, fragment);
        }
        if syn && peer.next == sqn {
            // The session's first packet (§9.4): nothing older will come.
            peer.hold_until = None;
        }
        if from_source {
            match peer.observe(sqn, trail, now, rxw, cfg.peer_expiry) {
                Observed::InWindow => {}
                Observed::Held => self.stats.jumps_held += 1,
                Observed::Jump(start) => {
                    self.stats.jumps += 1;
                    peer.skip_to(start, cfg.max_apdu, &mut events, &mut self.stats);
                }
            }
            if fin {
                peer.fin_lead = Some(sqn);
            }
            if let (Some((tstamp, acker)), Some(me), true) = (pgmcc, cfg.local_addr, cfg.pgmcc) {
                if rdata {
                    peer.cc.on_rdata(sqn);
                } else {
                    peer.cc.on_odata(now, sqn, tstamp);
                }
                // PGMCC draft §4:
                // if (ACKER == this_node) { send an immediate ACK }
                if acker == me {
                    peer.cc.volunteer = None;
                    queue_ack(&mut self.tx, peer, tsi);
                } else if acker.is_unspecified() {
                    // No acker (§2.3.1): volunteer after a random back-off.
                    if peer.cc.volunteer.is_none() && !peer.ack_queued {
                        peer.cc.volunteer = Some(now + random_upto(&mut self.rng, cfg.ack_bo_ivl));
                    }
                } else {
                    peer.cc.volunteer = None;
                }
            }
        }
        //= https://www.rfc-editor.org/rfc/rfc3208#section-6.1
        //# Within a given transport session, a receiver MUST accept any ODATA or
        //# RDATA packets within the receive window.  A receiver MUST discard any
        //# data packet that duplicates one already received in the transmit
        //# window.  A receiver MUST discard any data packet outside of the
        //# receive window.
        // What the windows hold now, this packet's changes so far included.
        let used = (self.buffered + peer.bytes).saturating_sub(before);
        let dup = match peer.growth_for(sqn, rxw) {
            None if sqn.lt(peer.next) => true,
            None => {
                self.stats.beyond_window += 1;
                false
            }
            // RDATA from another address (a repairer's) only fills what we miss.
            Some(grow) if !from_source => {
                let fits = grow == 0 && used.saturating_add(payload.len()) <= cfg.max_buffer_bytes;
                !fits || !peer.store(sqn, payload, fragment, rdata, true, now)
            }
            //= https://www.rfc-editor.org/rfc/rfc3208#section-6.3
            //# Receivers MUST detect gaps in the expected data sequence in the
            //# following manners:
            //#
            //#    by comparing the sequence number on the most recently received
            //#    ODATA or RDATA packet with the leading edge of contiguous data
            Some(grow) => {
                let need = grow * SLOT_COST + payload.len();
                if used.saturating_add(need) > cfg.max_buffer_bytes {
                    self.stats.buffer_full += 1;
                    false
                } else {
                    peer.extend_to(sqn, now, nak_bo, rxw, &mut self.rng);
                    !peer.store(sqn, payload, fragment, rdata, false, now)
                }
            }
        };
        if dup {
            self.stats.duplicates += 1;
        }
        // Timers of slots given up or jumped over are stale: bounded here, not only when a
        // timer fires (amortized O(1)).
        peer.compact_timers();
        let after = peer.bytes;
        self.buffered = self.buffered + after - before;
        self.want_spmr(tsi, now);
        self.deliver(tsi, events);
    }

    /// Schedules an SPMR for `tsi` if it misses data and knows no NAK target yet (§13.1:
    /// SPMRs let a receiver "NAK for missing packets without having to wait for a regularly
    /// scheduled SPM").
    fn want_spmr(&mut self, tsi: Tsi, now: Instant) {
        let bo = self.config.spmr_bo_ivl;
        let Some(peer) = self.peers.get_mut(&tsi) else {
            return;
        };
        if peer.spmr == SpmrState::Idle && peer.has_parked() {
            //= https://www.rfc-editor.org/rfc/rfc3208#section-13.5
            //# before unicasting a given SPMR, receivers MUST
            //# choose a random delay on SPMR_BO_IVL (~250 msecs) during which they
            //# listen for a multicast of an identical SPMR.
            peer.spmr = SpmrState::BackOff(now + random_upto(&mut self.rng, bo));
        }
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
        if !self.has_peer(now, tsi, meta.source, true) {
            return;
        }
        let Some(peer) = self.peers.get_mut(&tsi) else {
            return;
        };
        if meta.source != peer.source_addr {
            self.stats.wrong_source += 1;
            return;
        }
        peer.last_heard = now;
        //= https://www.rfc-editor.org/rfc/rfc3208#section-6.2
        //# Receivers MUST receive and sequence SPMs for any TSI they are
        //# receiving.  An SPM is in sequence if its sequence number is greater
        //# than that of the most recent in-sequence SPM and within half the PGM
        //# number space.  Out-of-sequence SPMs MUST be discarded.
        if peer.last_spm_sqn.is_some_and(|last| !sqn.gt(last)) {
            return;
        }
        peer.last_spm_sqn = Some(sqn);
        peer.heard = peer.heard.saturating_add(1);
        peer.earn_nak_credit();
        //= https://www.rfc-editor.org/rfc/rfc3208#section-6.2
        //# For each TSI, receivers MUST use the most recent SPM to determine the
        //# NLA of the upstream PGM network element for use in NAK addressing.
        let first_spm = peer.nak_target.is_none();
        peer.nak_target = Some(path.0);
        peer.spmr = SpmrState::Idle;
        peer.spmr_attempts = 0;
        let before = peer.bytes;
        let cfg = &self.config;
        let (nak_bo, rxw) = (cfg.nak_bo_ivl, cfg.rxw_sqns);
        if first_spm {
            peer.unpark(now, nak_bo, &mut self.rng);
        }
        let mut events = Vec::new();
        if !peer.ended && has_window {
            if !peer.started {
                // The window starts after the SPM's lead: data sent before we joined is not
                // ours to recover (§9.4's default).
                peer.started = true;
                peer.next = join_point(lead.next(), trail, join, rxw);
                if peer.next != trail {
                    peer.hold(now, cfg.join_hold);
                }
            }
            //= https://www.rfc-editor.org/rfc/rfc3208#section-6.2
            //# Receivers SHOULD expect
            //# this to be the case and SHOULD detect it by comparing the packet lead
            //# and trail values with the values the receivers have stored for lead
            //# and trail.  If the SPM packet values are less, they SHOULD be
            //# ignored, but the rest of the packet SHOULD be processed as normal.
            match peer.observe(lead, trail, now, rxw, cfg.peer_expiry) {
                Observed::InWindow => {}
                Observed::Held => self.stats.jumps_held += 1,
                Observed::Jump(start) => {
                    self.stats.jumps += 1;
                    peer.skip_to(start, cfg.max_apdu, &mut events, &mut self.stats);
                }
            }
            //= https://www.rfc-editor.org/rfc/rfc3208#section-6.3
            //# by comparing SPM_LEAD of the most recently received SPM with the
            //# leading edge of contiguous data
            //= https://www.rfc-editor.org/rfc/rfc3208#section-6.3
            //# The leading edge field in SPMs
            //# SHOULD also be taken into account in the loss detection algorithm.
            //= https://www.rfc-editor.org/rfc/rfc3208#section-6.3
            //# This method SHOULD be complemented with a timeout based mechanism
            //# that handles the loss of the last packet before a pause in the
            //# transmission of the data stream.
            // Mis-ordering is tempered by time, not by counting later packets: every gap waits
            // a random NAK_RB_IVL (`Peer::missing`) whatever follows it. The loss of the last
            // packet before a pause shows here, in SPM_LEAD of the heartbeat SPMs the source
            // sends IHB_MIN after its last data (§5.1.5).
            // Data up to SPM_LEAD was sent: what we lack of it is missing (§6.3).
            if let Some(grow) = peer.growth_for(lead, rxw) {
                if self.buffered.saturating_add(grow * SLOT_COST) <= cfg.max_buffer_bytes {
                    peer.extend_to(lead.next(), now, nak_bo, rxw, &mut self.rng);
                } else {
                    self.stats.buffer_full += 1;
                }
            }
            if fin || rst {
                peer.fin_lead = Some(lead);
            }
            //= https://www.rfc-editor.org/rfc/rfc3208#section-9.8.1
            //# Receivers SHOULD treat the reception of OPT_RST in an SPM as an abort
            //# of the session.
            //= https://www.rfc-editor.org/rfc/rfc3208#section-9.8.1
            //# A receiver that receives an SPM with an OPT_RST with the N bit set
            //# SHOULD not send any more NAKs for the said session towards the
            //# source.
            if rst {
                // What the window holds is delivered or reported lost first (`deliver`),
                // then the session ends: no event of it comes after its end.
                peer.reset();
                peer.hold_until = None;
                peer.ended = true;
                peer.end = Some(EndReason::Reset);
            }
        }
        let after = peer.bytes;
        self.buffered = self.buffered + after - before;
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
            self.stats.no_session += 1;
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
            //= https://www.rfc-editor.org/rfc/rfc3208#section-6.3
            //# A receiver MUST suspend NAK generation if a duplicate of the NAK is
            //# already pending from this receiver or the NAK is already outstanding
            //# from this or another receiver.
            //= https://www.rfc-editor.org/rfc/rfc3208#section-9.3.2
            //# Reception of an NCF or multicast NAK containing the NAK List option
            //# suspends generation of NAKs for all sequence numbers within the NAK
            //# list, as well as the sequence number within the NAK header.
            if let NakAction::Enter(next) = state.on(input, true, true) {
                let (rpt, rdata) = nak_waits(&self.config, &peer.ncf_rtt, &peer.rdata_rtt);
                let at = now
                    + match next {
                        NakState::WaitNcf => rpt,
                        _ => rdata,
                    };
                *state = next;
                *since = now;
                *deadline = Some(at);
                peer.timers.push(Reverse((at, sqn.0)));
            }
        }
        peer.compact_timers();
        self.stats.naks_suppressed += suppressed;
    }

    fn on_spmr(&mut self, now: Instant, packet: &Packet<&[u8]>) {
        // A multicast SPMR from another receiver on our subnet suppresses ours (§13.5).
        let wait = self.config.spmr_spm_ivl;
        let Some(peer) = self.peers.get_mut(&packet.tsi()) else {
            self.stats.no_session += 1;
            return;
        };
        if matches!(peer.spmr, SpmrState::BackOff(_)) {
            peer.spmr = SpmrState::Wait(now + wait);
        }
    }

    fn on_poll(&mut self, now: Instant, meta: RecvMeta, bytes: &[u8]) {
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
        let Some(peer) = self.peers.get_mut(&tsi) else {
            self.stats.no_session += 1;
            return;
        };
        //= https://www.rfc-editor.org/rfc/rfc3208#section-14.4
        //# Nota Bene: POLLs transmitted by network elements MUST bear the
        //# ODATA source's network-header source address, not the network
        //# element's NLA.
        // A POLL from any other address would have us send POLRs where a stranger chose.
        if meta.source != peer.source_addr {
            self.stats.wrong_source += 1;
            return;
        }
        //= https://www.rfc-editor.org/rfc/rfc3208#section-14.5
        //# A PGM receiver or network element MUST cancel any pending
        //# transmission of POLRs if a new POLL is received with POLL_SQN
        //# different from POLR_SQN of the poll that scheduled POLRs.
        //= https://www.rfc-editor.org/rfc/rfc3208#section-14.3.1
        //# PGM children that receive a
        //# POLL MUST cancel any pending reply for POLLs with POLL_SQN different
        //# from the one of the last POLL received.
        if peer.polr.is_some_and(|p| p.sqn != sqn) {
            peer.polr = None;
        }
        if round == 0 {
            peer.poll_round0 = Some(sqn);
        }
        //= https://www.rfc-editor.org/rfc/rfc3208#section-14.5
        //# When a PGM child
        //# (receiver or network element) receives a POLL it MUST use its
        //# RAND_NODE_ID to match POLL_RAND of incoming POLLs.  The match is
        //# limited to the bits specified by POLL_MASK.  If the incoming POLL
        //# contain a POLL_MASK made of all zeroes, the match is successful
        //# despite the content of POLL_RAND (deterministic reply).  If the match
        //# fails, then the receiver or network element MUST discard the POLL
        //# without any further action
        if node & mask != rand & mask {
            return;
        }
        //= https://www.rfc-editor.org/rfc/rfc3208#section-14.5
        //# If POLL_ROUND is non-zero and the PGM receiver has not received a
        //# previous poll with the same POLL_SQN and a zero POLL_ROUND, it MUST
        //# discard the poll without further action.
        if round != 0 && peer.poll_round0 != Some(sqn) {
            return;
        }
        //= https://www.rfc-editor.org/rfc/rfc3208#section-14.5
        //# If POLL_S_TYPE is equal to PGM_POLL_GENERAL, the PGM child MUST
        //# schedule a reply to the POLL despite the presence of PGM options on
        //# the POLL packet.
        //= https://www.rfc-editor.org/rfc/rfc3208#section-14.5
        //# If POLL_S_TYPE is unknown to the recipient of the POLL, it MUST NOT
        //# reply and ignore the poll.
        //= https://www.rfc-editor.org/rfc/rfc3208#section-14.3.2
        //# PGM children MUST ignore a POLL packet if they do not understand
        //# POLL_S_TYPE.
        // Receivers answer general polls only; DLR polls are for repairers and unknown
        // sub-types MUST be ignored.
        if poll.subtype() != PollSubtype::General {
            return;
        }
        //= https://www.rfc-editor.org/rfc/rfc3208#section-14.5
        //# If a PGM receiver or network element has decided to reply to a POLL,
        //# it MUST schedule the transmission of a single POLR at a random time
        //# in the future.  The random delay is chosen in the interval [0,
        //# POLL_BO_IVL].
        //= https://www.rfc-editor.org/rfc/rfc3208#section-14.3.1
        //# In addition to this PGM children MUST observe a random back-off in
        //# replying to a poll.
        //= https://www.rfc-editor.org/rfc/rfc3208#section-14.2.1
        //# POLL_BO_IVL    the back-off interval that MUST be used to compute the
        //#                random back-off time to wait before sending the
        //#                response to a poll.
        let d = random_upto(&mut self.rng, bo + Duration::from_nanos(1));
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
        if peer.end_sent {
            // Nothing of a session comes after its end.
            events.clear();
        } else if peer.hold_until.is_none() {
            let before = peer.bytes;
            //= https://www.rfc-editor.org/rfc/rfc3208#section-6.1
            //# As its default mode of operation, a receiver MUST deliver only
            //# contiguous data packets to the application, and it MUST do so in the
            //# order defined by those data packets' sequence numbers.
            //= https://www.rfc-editor.org/rfc/rfc3208#section-6.1
            //# However, the implementation MUST only deliver complete
            //# application protocol data units (APDUs) to the application.  That is,
            //# APDUs that have been fragmented into different TPDUs MUST be
            //# reassembled before delivery to the application.
            peer.drain(max_apdu, &mut events, &mut self.stats);
            self.buffered = self.buffered + peer.bytes - before;
            //= https://www.rfc-editor.org/rfc/rfc3208#section-9.7.1
            //# A receiver SHOULD use receipt of a FIN to let it know that it can
            //# tear down its data structures for the said session once a suitable
            //# time period has expired (TXW_SECS).
            // Once everything up to the FIN's lead is delivered or reported lost, the session
            // ends: its window is empty and nothing of it is taken any more. The remaining
            // record (which keeps late packets from starting the session anew) goes when the
            // source has been silent for `peer_expiry` (default 30 s, the source's default
            // TXW_SECS; a receiver does not know the source's own): a lingering source's SPMs
            // keep it until then (`peer_timeout`).
            let fin_done = peer.fin_lead.is_some_and(|f| peer.next == f.next());
            if !peer.ended && peer.slots.is_empty() && fin_done {
                peer.ended = true;
                peer.end = Some(EndReason::Fin);
            }
            if let Some(reason) = peer.end.take() {
                peer.end_sent = true;
                events.push(Event::SessionEnd { tsi, reason });
            }
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
}
