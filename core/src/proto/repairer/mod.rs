//! The Designated Local Repairer engine (§9.5.2, §9.7.3, Appendix D), sans-IO.
//!
//! Heads up! Read RFC 3208 §9.5 first.
//!
//! A DLR is an ordinary receiver of the sessions it serves (it embeds a [`Receiver`], which
//! NAKs its own losses), plus a cache of their ODATA and RDATA, bounded by bytes and by age,
//! from which it repairs for others:
//!
//! - **upstream DLR** (§9.5.2.1): an NCF from its parent that does not complete a NAK of its
//!   own draws a redirecting POLR (OPT_REDIRECT with the DLR's address), multicast with the
//!   source's address as IP source and Router Alert. NAKs directed to it from downstream are
//!   answered like a source would (NCF, then RDATA, both multicast with the source's address
//!   and Router Alert), plus an NNAK upstream so the source keeps its flow control; NAKs it
//!   cannot serve are forwarded to its parent;
//! - **off-tree DLR** (§9.5.2.2): a POLL of sub-type PGM_POLL_DLR is answered with a unicast
//!   redirecting POLR after the POLL's back-off. NAKs from its parent are answered with a
//!   unicast NCF, an NNAK first, then unicast RDATA, all from the DLR's own address without
//!   Router Alert; for what it cannot serve, a unicast NCF and then a NAK back to the parent;
//! - both at once (§9.5.2.3): the role is chosen per NAK by comparing its IP source with the
//!   parent's address, known from SPM_PATH.
//!
//! The DLR never sets OPT_PARITY in its POLRs: it cannot serve FEC repairs (§9.5.2).

mod cache;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use rand::Rng;

use self::cache::{Cache, Recent};
use super::receiver::{Event, Receiver, ReceiverConfig};
use super::rotation::{Candidate, evict_in_rotation};
use super::source::MalformedCounts;
use super::{Destination, EngineRng, RecvMeta, rng_from_seed};
use crate::wire::{
    Body, DataPacket, NakPacket, NakRepr, Nla, OptionList, OptionType, OptionValue, Packet,
    PacketType, PgmOption, PollPacket, PollSubtype, PolrRepr, Repr, SpmPacket, Sqn, SqnList, Tsi,
};

/// Sequence numbers of its own NAKs a session remembers (their NCFs draw no POLR), at most.
const OWN_NAKS: usize = 4096;

/// Longest back-off before answering a PGM_POLL_DLR, whatever the POLL asks (its
/// POLL_BO_IVL field allows over an hour).
const MAX_POLR_BACKOFF: Duration = Duration::from_secs(10);

/// Configuration of a DLR. Defaults ([`DlrConfig::new`]) are documented per field.
#[derive(Debug, Clone)]
pub struct DlrConfig {
    /// The receiver it embeds (port, group, NAK timers).
    pub receiver: ReceiverConfig,
    /// The DLR's own unicast address: OPT_REDIRECT, and the IP source of its off-tree
    /// repairs.
    pub addr: IpAddr,
    /// Cache bound in bytes of packets over all sessions. Default 64 MiB.
    pub cache_bytes: usize,
    /// Cached packets older than this are dropped. Default 60 s.
    pub cache_age: Duration,
    /// Act as an upstream DLR (announce on parent NCFs). Default true.
    pub upstream: bool,
    /// Act as an off-tree DLR (answer PGM_POLL_DLR). Default true.
    pub off_tree: bool,
    /// Least interval between two redirecting POLRs multicast for one session. Default
    /// 1 s: enough for downstream elements to learn the redirection, without flooding.
    pub redirect_holdoff: Duration,
    /// Sessions to serve: `None` serves every session heard; otherwise only these TSIs.
    pub serve: Option<Vec<Tsi>>,
    /// Most sessions (TSIs) tracked at once. A session is tracked only once the embedded
    /// receiver tracks it. When full, a session the embedded receiver no longer tracks
    /// (expired, or heard of only once and evicted) makes room, its cached packets dead with
    /// it (at most 8 are examined per packet); otherwise
    /// packets of a new session are neither cached nor served, and counted in
    /// [`DlrStats::sessions_refused`]. Default 1024, the embedded receiver's default
    /// `max_sources`.
    pub max_sessions: usize,
    /// How far past the session's leading edge a NAK's sequence numbers may lie and still be
    /// served or forwarded. The window (trailing and leading edges) is learnt from the
    /// source's SPMs and ODATA; NAKs for sequence numbers outside it, or of a session whose
    /// window is not known yet, are dropped and counted in
    /// [`DlrStats::naks_outside_window`] (the source would not repair them either, §5.3).
    /// Default 64.
    pub nak_window_slack: u32,
}

impl DlrConfig {
    /// A configuration with the documented defaults.
    pub fn new(receiver: ReceiverConfig, addr: IpAddr) -> Self {
        Self {
            receiver,
            addr,
            cache_bytes: 64 << 20,
            cache_age: Duration::from_secs(60),
            upstream: true,
            off_tree: true,
            redirect_holdoff: Duration::from_secs(1),
            serve: None,
            max_sessions: 1024,
            nak_window_slack: 64,
        }
    }
}

/// A packet the DLR asks the driver to send; the driver builds the IP header from these
/// fields (the source's address is used as IP source where §9.5.2.1 requires it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DlrTransmit {
    /// IP source address.
    pub source: IpAddr,
    /// Where to send it.
    pub destination: Destination,
    /// Whether to set IP Router Alert.
    pub router_alert: bool,
    /// Multicast TTL override.
    pub ttl: Option<u8>,
    /// The PGM type.
    pub packet_type: PacketType,
    /// Length of the packet in the buffer given to `poll_transmit`.
    pub len: usize,
}

/// Counters of a DLR.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DlrStats {
    /// Packets in the cache.
    pub cache_entries: u64,
    /// Bytes in the cache.
    pub cache_bytes: u64,
    /// Requested sequence numbers found in the cache.
    pub cache_hits: u64,
    /// Requested sequence numbers not in the cache.
    pub cache_misses: u64,
    /// Packets evicted from the cache (bytes bound or age).
    pub cache_evictions: u64,
    /// RDATA sent from the cache.
    pub repairs_served: u64,
    /// NNAKs sent.
    pub nnaks_sent: u64,
    /// NCFs sent.
    pub ncfs_sent: u64,
    /// NAKs forwarded to the parent (could not serve).
    pub naks_forwarded: u64,
    /// Redirecting POLRs multicast as an upstream DLR.
    pub redirects_announced: u64,
    /// PGM_POLL_DLR polls answered as an off-tree DLR.
    pub polls_answered: u64,
    /// NAKs and polls of sessions not served.
    pub ignored: u64,
    /// Packets of new sessions not tracked because `max_sessions` were (see
    /// [`DlrConfig::max_sessions`]).
    pub sessions_refused: u64,
    /// Sessions forgotten to make room for new ones (no longer tracked by the embedded
    /// receiver; their cached packets die with them).
    pub sessions_evicted: u64,
    /// NAKs dropped whole because none of their sequence numbers lies in the session's
    /// transmit window, or the window is not known yet (see
    /// [`DlrConfig::nak_window_slack`]).
    pub naks_outside_window: u64,
    /// Sequence numbers dropped from NAKs because they lie outside the session's window.
    pub nak_sqns_outside_window: u64,
    /// ODATA, RDATA and SPMs of a tracked session from another address than its source's:
    /// not cached, not used for the window.
    pub wrong_source: u64,
    /// PGM_POLL_DLR polls not answered: not from the session's source address (network
    /// elements send them with the source's address, §14.4), or not matching our random
    /// node identifier.
    pub polls_ignored: u64,
    /// Malformed packets by reason.
    pub malformed: MalformedCounts,
}

/// What the DLR knows of one session it serves.
#[derive(Debug)]
struct Session {
    /// The source's address: the IP source of the session's first ODATA or SPM as the
    /// embedded receiver took it.
    source: IpAddr,
    group: Option<IpAddr>,
    dport: u16,
    /// Unique to this session and renewed by OPT_RST: cached packets of another epoch (an
    /// earlier life of the TSI) are dead.
    epoch: u32,
    /// Transmit window (trail, lead) from the source's SPMs and ODATA.
    window: Option<(Sqn, Sqn)>,
    /// The last SPM sequence number taken.
    spm_sqn: Option<Sqn>,
    last_redirect: Option<Instant>,
    /// POLL_SQN of the last PGM_POLL_DLR of round 0 heard (Appendix D).
    poll_round0: Option<Sqn>,
    /// Sequence numbers our own receiver NAKed recently: their NCFs draw no POLR.
    own_naks: Recent<u32>,
}

impl Session {
    fn new(source: IpAddr, epoch: u32) -> Self {
        Self {
            source,
            group: None,
            dport: 0,
            epoch,
            window: None,
            spm_sqn: None,
            last_redirect: None,
            poll_round0: None,
            own_naks: Recent::new(OWN_NAKS),
        }
    }

    /// Moves the leading edge forward to `lead` and the trailing edge to `trail` (never
    /// back), keeping the window under half the sequence space.
    fn advance(&mut self, trail: Sqn, lead: Sqn) {
        if lead.0.wrapping_sub(trail.0) >= 1 << 31 {
            return;
        }
        let (t, l) = match self.window {
            None => (trail, lead),
            Some((t, l)) => (
                if trail.gt(t) { trail } else { t },
                if lead.gt(l) { lead } else { l },
            ),
        };
        if l.0.wrapping_sub(t.0) < 1 << 31 {
            self.window = Some((t, l));
        } else {
            self.window = Some((trail, lead));
        }
    }

    /// Whether `sqn` lies in the window, up to `slack` past its leading edge.
    fn in_window(&self, sqn: Sqn, slack: u32) -> bool {
        let Some((trail, lead)) = self.window else {
            return false;
        };
        let span = lead.0.wrapping_sub(trail.0);
        sqn.0.wrapping_sub(trail.0) <= span.saturating_add(slack)
    }
}

#[derive(Debug, Clone, Copy)]
struct PendingPolr {
    sqn: Sqn,
    round: u16,
    dest: IpAddr,
    at: Instant,
}

/// The DLR engine. See the [module documentation](self) and the contract in
/// [`proto`](super).
#[derive(Debug)]
pub struct Repairer {
    config: DlrConfig,
    receiver: Receiver,
    sessions: HashMap<Tsi, Session>,
    /// Every tracked session once, in the order they are examined to make room.
    rotation: VecDeque<Tsi>,
    cache: Cache,
    rng: EngineRng,
    rand_node_id: u32,
    /// The last session epoch handed out.
    next_epoch: u32,
    /// One pending POLR per session (a new POLL of another POLL_SQN replaces it).
    polrs: HashMap<Tsi, PendingPolr>,
    /// Their deadlines; entries no longer in `polrs` are skipped when due.
    polr_heap: BinaryHeap<Reverse<(Instant, Tsi)>>,
    tx: VecDeque<(DlrTransmit, Vec<u8>)>,
    stats: DlrStats,
}

impl Repairer {
    /// A DLR.
    pub fn new(config: DlrConfig) -> Self {
        let mut rng = rng_from_seed(config.receiver.rng_seed ^ 0xD1A0);
        let rand_node_id = rng.random();
        Self {
            receiver: Receiver::new(config.receiver.clone()),
            config,
            sessions: HashMap::new(),
            rotation: VecDeque::new(),
            cache: Cache::default(),
            rng,
            rand_node_id,
            next_epoch: 0,
            polrs: HashMap::new(),
            polr_heap: BinaryHeap::new(),
            tx: VecDeque::new(),
            stats: DlrStats::default(),
        }
    }

    /// Changes the cache bounds of a running DLR (a daemon's SIGHUP). A lower bound takes
    /// effect at `now`, evicting (and counting) what no longer fits; the cache is kept
    /// otherwise.
    pub fn set_cache_limits(&mut self, now: Instant, bytes: usize, age: Duration) {
        self.config.cache_bytes = bytes;
        self.config.cache_age = age;
        self.evict(now);
    }

    /// Counters.
    pub fn stats(&self) -> &DlrStats {
        &self.stats
    }

    /// Sessions tracked (at most [`DlrConfig::max_sessions`]).
    pub fn sessions(&self) -> usize {
        self.sessions.len()
    }

    /// POLRs waiting for their back-off (at most one per session).
    pub fn pending_polrs(&self) -> usize {
        self.polrs.len()
    }

    /// Sequence numbers of its own NAKs remembered over all sessions (each session at most
    /// 4096, and each for NAK_RPT_IVL + NAK_RDATA_IVL). O(sessions): for tests and audits.
    pub fn remembered_naks(&self) -> usize {
        self.sessions.values().map(|s| s.own_naks.len()).sum()
    }

    /// Packets queued for [`Repairer::poll_transmit`].
    pub fn queued_transmits(&self) -> usize {
        self.tx.len()
    }

    /// When the oldest packet in the cache was cached, `None` if the cache is empty. With
    /// [`Repairer::evict_oldest`], lets a driver that runs several engines bound their caches
    /// together, oldest first over all of them. O(1).
    pub fn oldest_cached(&self) -> Option<Instant> {
        self.cache.oldest()
    }

    /// Evicts the oldest packet in the cache (counted in `cache_evictions`) and returns its
    /// size in bytes; 0 if the cache is empty. O(1).
    pub fn evict_oldest(&mut self) -> usize {
        let freed = match self.cache.pop_oldest() {
            Some(popped) => self.evicted(popped),
            None => 0,
        };
        self.update_cache_stats();
        freed
    }

    /// Accounts for a packet gone from the cache.
    fn evicted(&mut self, (_, len): (Tsi, usize)) -> usize {
        self.stats.cache_evictions += 1;
        len
    }

    /// The state of session `tsi` whose source is at `source`, created if there is room (see
    /// [`DlrConfig::max_sessions`]); `None`, counted, if there is not.
    fn session(&mut self, tsi: Tsi, source: IpAddr) -> Option<&mut Session> {
        if !self.sessions.contains_key(&tsi) {
            if self.sessions.len() >= self.config.max_sessions && !self.make_room() {
                self.stats.sessions_refused += 1;
                return None;
            }
            let epoch = self.new_epoch();
            self.sessions.insert(tsi, Session::new(source, epoch));
            self.rotation.push_back(tsi);
        }
        self.sessions.get_mut(&tsi)
    }

    fn new_epoch(&mut self) -> u32 {
        self.next_epoch = self.next_epoch.wrapping_add(1);
        self.next_epoch
    }

    /// Forgets one session that the receiver has let go of, looking
    /// at no more than [`EVICTION_CANDIDATES`](super::rotation::EVICTION_CANDIDATES) in rotation. Whether one went.
    fn make_room(&mut self) -> bool {
        let (sessions, receiver) = (&self.sessions, &self.receiver);
        // A session the receiver let go of (expired, or heard of only once and evicted): its
        // cached packets can serve no one and die with it (another epoch).
        let victim = evict_in_rotation(&mut self.rotation, |t| {
            if !sessions.contains_key(t) {
                Candidate::Gone
            } else if receiver.source_addr(t).is_none() {
                Candidate::Evict
            } else {
                Candidate::Keep
            }
        });
        let Some(tsi) = victim else {
            return false;
        };
        self.sessions.remove(&tsi);
        self.polrs.remove(&tsi);
        self.stats.sessions_evicted += 1;
        true
    }

    /// The embedded receiver (its own delivery and NAK counters).
    pub fn receiver(&self) -> &Receiver {
        &self.receiver
    }

    /// Application events of the embedded receiver (a DLR may also deliver data).
    pub fn poll_event(&mut self) -> Option<Event> {
        self.receiver.poll_event()
    }

    fn serves(&self, tsi: &Tsi) -> bool {
        self.config.serve.as_ref().is_none_or(|s| s.contains(tsi))
    }

    /// The session `tsi` if `source` is its source's address, created if the embedded
    /// receiver tracks it with that source and there is room. Packets of a tracked session
    /// from elsewhere are counted in `wrong_source`.
    fn session_from(&mut self, tsi: Tsi, source: IpAddr) -> Option<&mut Session> {
        if !self.serves(&tsi) {
            return None;
        }
        let known = self.sessions.get(&tsi).map(|s| s.source);
        let expected = known.or_else(|| self.receiver.source_addr(&tsi))?;
        if expected != source {
            self.stats.wrong_source += 1;
            return None;
        }
        self.session(tsi, source)
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
        let tsi = packet.tsi();
        match packet.packet_type() {
            PacketType::Odata | PacketType::Rdata => {
                //= https://www.rfc-editor.org/rfc/rfc3208#section-9.5
                //# A DLR MUST receive any PGM sessions for which it wishes to provide
                //# retransmissions.
                //= https://www.rfc-editor.org/rfc/rfc3208#section-9.5.2
                //# A DLR MUST receive any PGM sessions for which it wishes to provide a
                //# source of repairs.
                // The receiver first: it decides whether this is a session at all. Only the
                // sessions it receives are cached (`session_from`) and so served.
                self.receiver.handle_packet(now, meta, bytes);
                self.cache(now, meta, bytes);
            }
            // NAKs unicast to us: repair requests. Multicast NAKs go to the receiver.
            PacketType::Nak | PacketType::Nnak if meta.destination == self.config.addr => {
                if packet.packet_type() == PacketType::Nak && self.serves(&tsi) {
                    self.on_nak(meta, bytes);
                } else {
                    self.stats.ignored += 1;
                }
            }
            PacketType::Ncf => {
                self.on_ncf(now, bytes);
                self.receiver.handle_packet(now, meta, bytes);
            }
            PacketType::Poll => {
                let dlr_poll =
                    PollPacket::new_checked(bytes).is_ok_and(|p| p.subtype() == PollSubtype::Dlr);
                if dlr_poll {
                    self.on_dlr_poll(now, meta, bytes);
                } else {
                    self.receiver.handle_packet(now, meta, bytes);
                }
            }
            PacketType::Spm => {
                self.receiver.handle_packet(now, meta, bytes);
                self.on_spm(meta, bytes);
            }
            _ => self.receiver.handle_packet(now, meta, bytes),
        }
        self.collect_receiver_tx(now);
    }

    fn on_spm(&mut self, meta: RecvMeta, bytes: &[u8]) {
        let Ok(spm) = SpmPacket::new_checked(bytes) else {
            return;
        };
        let rst = spm.options().find(OptionType::Rst).is_some();
        let Some(sess) = self.session_from(spm.tsi(), meta.source) else {
            return;
        };
        // An SPM older than the last one taken says nothing new (§6.2: SPMs out of
        // sequence are ignored).
        if sess.spm_sqn.is_some_and(|last| !spm.sqn().gt(last)) {
            return;
        }
        sess.spm_sqn = Some(spm.sqn());
        sess.group = Some(meta.destination);
        sess.dport = spm.dest_port();
        if rst {
            // §9.8.3: a reset session's cache is of no more use. Its packets are dead from
            // now on and age out of the cache: O(1) whatever was cached.
            sess.window = None;
            let epoch = self.new_epoch();
            if let Some(sess) = self.sessions.get_mut(&spm.tsi()) {
                sess.epoch = epoch;
            }
            return;
        }
        sess.advance(spm.trail(), spm.lead());
    }

    fn cache(&mut self, now: Instant, meta: RecvMeta, bytes: &[u8]) {
        let Ok(d) = DataPacket::new_checked(bytes) else {
            return;
        };
        let tsi = d.tsi();
        let odata = d.packet_type() == PacketType::Odata;
        let too_big = bytes.len() > self.config.cache_bytes;
        let Some(sess) = self.session_from(tsi, meta.source) else {
            return;
        };
        sess.group.get_or_insert(meta.destination);
        sess.dport = d.dest_port();
        let sqn = d.sqn();
        if odata {
            sess.advance(d.trail(), sqn);
        } else if !sess.in_window(sqn, 0) {
            // RDATA outside what the source's ODATA and SPMs announced.
            return;
        }
        let epoch = sess.epoch;
        if too_big {
            return;
        }
        self.cache.insert(now, tsi, sqn.0, epoch, bytes);
        self.evict(now);
    }

    /// Evicts by age, then oldest first while over the byte bound. O(1) amortised: each
    /// packet leaves the cache once.
    fn evict(&mut self, now: Instant) {
        let age = self.config.cache_age;
        while let Some(popped) = self.cache.pop_aged(now, age) {
            self.evicted(popped);
        }
        while self.cache.bytes() > self.config.cache_bytes {
            match self.cache.pop_oldest() {
                Some(popped) => self.evicted(popped),
                None => break,
            };
        }
        self.update_cache_stats();
    }

    fn update_cache_stats(&mut self) {
        self.stats.cache_bytes = self.cache.bytes() as u64;
        self.stats.cache_entries = self.cache.len() as u64;
    }

    /// The session's parent: SPM_PATH of its last SPM, as the embedded receiver knows it.
    fn parent(&self, tsi: &Tsi) -> Option<IpAddr> {
        self.receiver.nak_target(tsi)
    }

    fn on_ncf(&mut self, now: Instant, bytes: &[u8]) {
        if !self.config.upstream {
            return;
        }
        let Ok(ncf) = NakPacket::new_checked(bytes) else {
            return;
        };
        let tsi = ncf.tsi();
        if !self.serves(&tsi) {
            return;
        }
        let holdoff = self.config.redirect_holdoff;
        let rpt = self.config.receiver.nak_rpt_ivl + self.config.receiver.nak_rdata_ivl;
        // NCFs of sessions not tracked create nothing.
        let Some(sess) = self.sessions.get_mut(&tsi) else {
            return;
        };
        //= https://www.rfc-editor.org/rfc/rfc3208#section-9.5.2.1
        //# If the NCF completes NAK transmission initiated by the DLR itself,
        //# the DLR MUST NOT send a redirecting POLR.
        sess.own_naks.expire(now, rpt);
        if sess.own_naks.contains(&ncf.sqn().0) {
            return;
        }
        if sess
            .last_redirect
            .is_some_and(|t| now.saturating_duration_since(t) < holdoff)
        {
            return;
        }
        let Some(group) = sess.group else {
            return;
        };
        sess.last_redirect = Some(now);
        let (source, dport) = (sess.source, sess.dport);
        //= https://www.rfc-editor.org/rfc/rfc3208#section-9.5.2.1
        //# When a DLR receives an NCF from its upstream PGM parent, it SHOULD
        //# send a redirecting POLR, multicast to the group.
        let polr = self.redirect_polr(tsi, dport, Sqn(0), 0);
        self.stats.redirects_announced += 1;
        //= https://www.rfc-editor.org/rfc/rfc3208#section-9.5.2.1
        //# Note that this POLR MUST have both the data source's source address
        //# and the router alert option in its network header.
        self.push(
            DlrTransmit {
                source,
                destination: Destination::Group(group),
                router_alert: true,
                ttl: None,
                packet_type: PacketType::Polr,
                len: polr.len(),
            },
            polr,
        );
    }

    //= https://www.rfc-editor.org/rfc/rfc3208#section-9.5
    //# A DLR SHOULD respond to NCFs or POLLs sourced by
    //# its PGM parent with a redirecting POLR response packet containing an
    //# OPT_REDIRECT which provides its own network layer address.
    // Sent on its parent's NCFs (`on_ncf`, upstream DLR) and PGM_POLL_DLR polls
    // (`on_dlr_poll`, off-tree DLR); general polls get the embedded receiver's plain POLR.
    fn redirect_polr(&self, tsi: Tsi, dport: u16, sqn: Sqn, round: u16) -> Vec<u8> {
        let opts = [PgmOption::from(OptionValue::Redirect(Nla(self
            .config
            .addr)))];
        let repr = Repr {
            sport: dport,
            dport: tsi.sport,
            gsi: tsi.gsi,
            parity: false,
            var_pktlen: false,
            body: Body::Polr(PolrRepr { sqn, round }),
            options: OptionList::Slice(&opts),
        };
        let mut out = vec![0; repr.buffer_len()];
        match repr.emit(&mut out) {
            Ok(_) => out,
            Err(_) => Vec::new(),
        }
    }

    fn on_dlr_poll(&mut self, now: Instant, meta: RecvMeta, bytes: &[u8]) {
        if !self.config.off_tree {
            return;
        }
        let Ok(poll) = PollPacket::new_checked(bytes) else {
            return;
        };
        let tsi = poll.tsi();
        let Some(sess) = self.sessions.get(&tsi).filter(|_| self.serves(&tsi)) else {
            self.stats.ignored += 1;
            return;
        };
        //= https://www.rfc-editor.org/rfc/rfc3208#section-14.4
        //# Nota Bene: POLLs transmitted by network elements MUST bear the
        //# ODATA source's network-header source address, not the network
        //# element's NLA.
        if sess.source != meta.source {
            // Anyone else would have us unicast POLRs wherever its POLL_PATH says.
            self.stats.polls_ignored += 1;
            return;
        }
        //= https://www.rfc-editor.org/rfc/rfc3208#section-9.5.2.2
        //# The DLR SHOULD respond using the rules outlined for polling
        //# in Appendix D of this text.
        // Appendix D's rules: random match on POLL_MASK, rounds other than 0 only after
        // round 0 of the same POLL_SQN, cancel replies to other POLL_SQNs, one POLR after a
        // random back-off in POLL_BO_IVL (capped at MAX_POLR_BACKOFF), sent to POLL_PATH with
        // POLL_SQN and POLL_ROUND (`handle_timeout`).
        let (sqn, round, mask) = (poll.sqn(), poll.round(), poll.mask());
        let rand = u32::from_be_bytes(poll.rand());
        if self.polrs.get(&tsi).is_some_and(|p| p.sqn != sqn) {
            self.polrs.remove(&tsi);
        }
        if round == 0 {
            if let Some(s) = self.sessions.get_mut(&tsi) {
                s.poll_round0 = Some(sqn);
            }
        }
        //= https://www.rfc-editor.org/rfc/rfc3208#section-14.3.2
        //# The
        //# random condition MUST be interpreted as an additional condition to be
        //# satisfied.
        // A PGM_POLL_DLR poll is answered only if this DLR provides the service (off-tree
        // role on, session served) and the random match succeeds.
        if self.rand_node_id & mask != rand & mask {
            self.stats.polls_ignored += 1;
            return;
        }
        //= https://www.rfc-editor.org/rfc/rfc3208#section-14.5
        //# If POLL_ROUND is non-zero and the PGM receiver has not received a
        //# previous poll with the same POLL_SQN and a zero POLL_ROUND, it MUST
        //# discard the poll without further action.
        if round != 0 && self.sessions.get(&tsi).and_then(|s| s.poll_round0) != Some(sqn) {
            self.stats.polls_ignored += 1;
            return;
        }
        if self.polrs.contains_key(&tsi) {
            // Already answering this POLL_SQN.
            return;
        }
        let bo = Duration::from_micros(u64::from(poll.backoff_ivl_us())).min(MAX_POLR_BACKOFF);
        let nanos = bo.as_nanos() as u64;
        let d = if nanos == 0 {
            0
        } else {
            self.rng.random_range(0..nanos)
        };
        let at = now + Duration::from_nanos(d);
        self.polrs.insert(
            tsi,
            PendingPolr {
                sqn,
                round,
                dest: poll.path().0,
                at,
            },
        );
        self.polr_heap.push(Reverse((at, tsi)));
        if self.polr_heap.len() > 2 * self.polrs.len() + 64 {
            self.polr_heap = self
                .polrs
                .iter()
                .map(|(t, p)| Reverse((p.at, *t)))
                .collect();
        }
    }

    fn on_nak(&mut self, meta: RecvMeta, bytes: &[u8]) {
        let Ok(nak) = NakPacket::new_checked(bytes) else {
            return;
        };
        let tsi = nak.tsi();
        let parent = self.parent(&tsi);
        //= https://www.rfc-editor.org/rfc/rfc3208#section-9.5.2.3
        //# Note that a DLR differentiates between NAKs from an NE downstream or
        //# from its parent by comparing the network-header source address of the
        //# NAK with it's upstream PGM parent's NLA.
        let from_parent = parent == Some(meta.source);
        let Some(sess) = self.sessions.get(&tsi) else {
            self.stats.ignored += 1;
            return;
        };
        let Some(group) = sess.group else {
            self.stats.ignored += 1;
            return;
        };
        let (source, dport, epoch) = (sess.source, sess.dport, sess.epoch);
        let slack = self.config.nak_window_slack;
        // At most 63 sequence numbers (the NAK and its OPT_NAK_LIST).
        let (mut have, mut miss) = (Vec::new(), Vec::new());
        let mut outside = 0;
        for s in nak.sqns() {
            if !sess.in_window(s, slack) {
                outside += 1;
            } else if self.cache.contains(tsi, s.0, epoch) {
                have.push(s);
            } else {
                miss.push(s);
            }
        }
        self.stats.nak_sqns_outside_window += outside;
        if have.is_empty() && miss.is_empty() {
            self.stats.naks_outside_window += 1;
            return;
        }
        self.stats.cache_hits += have.len() as u64;
        self.stats.cache_misses += miss.len() as u64;
        let me = self.config.addr;
        // The NCF confirms the whole NAK (what lies in the window), served or not.
        let all: Vec<Sqn> = have.iter().chain(miss.iter()).copied().collect();
        let ncf = nak_like(tsi, dport, source, group, &all, PacketType::Ncf);
        self.stats.ncfs_sent += 1;
        //= https://www.rfc-editor.org/rfc/rfc3208#section-9.5.2.1
        //# An upstream DLR MUST act as an ordinary PGM source in responding to
        //# any NAK it receives (i.e., directed to it).  That is, it SHOULD
        //# respond first with a normal NCF and then RDATA as usual.
        //= https://www.rfc-editor.org/rfc/rfc3208#section-9.5.2.2
        //# It MUST respond to a NAK directed
        //# to it from its parent by unicasting an NCF and RDATA to its parent.
        //= https://www.rfc-editor.org/rfc/rfc3208#section-9.5.2.2
        //# The unicast NCF and RDATA packets SHOULD not have the router alert
        //# option.
        // The NCF is queued first, the RDATA after it. From downstream (upstream role): both
        // multicast as the source would, with its address and Router Alert (the DLR has no
        // transmit rate of its own to respect). From the parent (off-tree role): both unicast
        // to it from our own address, without Router Alert.
        let (ncf_src, ncf_dst, ra) = if from_parent {
            // Off-tree: unicast to the parent from our own address, no Router Alert.
            (me, Destination::Unicast(meta.source), false)
        } else {
            (source, Destination::Group(group), true)
        };
        self.push(
            DlrTransmit {
                source: ncf_src,
                destination: ncf_dst,
                router_alert: ra,
                ttl: None,
                packet_type: PacketType::Ncf,
                len: ncf.len(),
            },
            ncf,
        );
        if !have.is_empty() {
            //= https://www.rfc-editor.org/rfc/rfc3208#section-9.5.2.2
            //# It MUST originate the NULL NAK before originating
            //# the RDATA.
            //= https://www.rfc-editor.org/rfc/rfc3208#section-9.5
            //# In addition, DLRs that receive redirected NAKs for which they have
            //# RDATA MUST send a NULL NAK to provide flow control to the original
            //# source without also provoking a repair from that source.
            //= https://www.rfc-editor.org/rfc/rfc3208#section-9.5.2.1
            //# In
            //# addition, an upstream DLR that receives redirected NAKs for which it
            //# has RDATA MUST send a NULL NAK to provide flow control to the
            //# original source.
            //= https://www.rfc-editor.org/rfc/rfc3208#section-9.5.2.2
            //# Again, an off-tree DLR that receives redirected NAKs for which it has
            //# RDATA MUST originate a NULL NAK to provide flow control to the
            //# original source.
            // In both roles, for the sequence numbers served, unicast to the parent (known
            // from the session's SPMs, as NAKs need it too).
            if let Some(up) = parent {
                let nnak = nak_like(tsi, dport, source, group, &have, PacketType::Nnak);
                self.stats.nnaks_sent += 1;
                self.push(
                    DlrTransmit {
                        source: me,
                        destination: Destination::Unicast(up),
                        router_alert: false,
                        ttl: None,
                        packet_type: PacketType::Nnak,
                        len: nnak.len(),
                    },
                    nnak,
                );
            }
            for s in &have {
                let Some(c) = self.cache.get(tsi, s.0, epoch) else {
                    continue;
                };
                let rdata = to_rdata(&c.bytes);
                self.stats.repairs_served += 1;
                let t = if from_parent {
                    DlrTransmit {
                        source: me,
                        destination: Destination::Unicast(meta.source),
                        router_alert: false,
                        ttl: None,
                        packet_type: PacketType::Rdata,
                        len: rdata.len(),
                    }
                } else {
                    //= https://www.rfc-editor.org/rfc/rfc3208#section-9.5.2.1
                    //# RDATA and POLR  packets transmitted by DLRs MUST
                    //# bear the ODATA source's NLA as the network-header source address
                    DlrTransmit {
                        source,
                        destination: Destination::Group(group),
                        router_alert: true,
                        ttl: None,
                        packet_type: PacketType::Rdata,
                        len: rdata.len(),
                    }
                };
                self.push(t, rdata);
            }
        }
        if !miss.is_empty() {
            //= https://www.rfc-editor.org/rfc/rfc3208#section-9.5.2.2
            //# If it cannot provide the RDATA for a given NAK, an off-tree DLR
            //# SHOULD confirm the NAK with a unicast NCF as normal, then immediately
            //# send a NAK for the said data packet back to its parent.
            // The NCF above confirmed these too.
            if let Some(up) = parent {
                // What we cannot serve goes on to the parent (§9.5.2.1), or back to it
                // (§9.5.2.2).
                let nak = nak_like(tsi, dport, source, group, &miss, PacketType::Nak);
                self.stats.naks_forwarded += 1;
                self.push(
                    DlrTransmit {
                        source: me,
                        destination: Destination::Unicast(up),
                        router_alert: false,
                        ttl: None,
                        packet_type: PacketType::Nak,
                        len: nak.len(),
                    },
                    nak,
                );
            }
        }
    }

    fn push(&mut self, t: DlrTransmit, bytes: Vec<u8>) {
        if !bytes.is_empty() {
            self.tx.push_back((t, bytes));
        }
    }

    /// Moves the embedded receiver's transmits (its own NAKs, SPMRs, POLRs) to our queue,
    /// remembering the sequence numbers it NAKed.
    fn collect_receiver_tx(&mut self, now: Instant) {
        let mut buf = Vec::new();
        while let Some(t) = self.receiver.poll_transmit(now, &mut buf) {
            let bytes = buf[..t.len].to_vec();
            if t.packet_type == PacketType::Nak {
                if let Ok(n) = NakPacket::new_checked(&bytes[..]) {
                    if let Some(s) = self.sessions.get_mut(&n.tsi()) {
                        // Bounded in count (OWN_NAKS) and by time (expired at each NCF).
                        for q in n.sqns() {
                            s.own_naks.insert(now, q.0);
                        }
                    }
                }
            }
            self.tx.push_back((
                DlrTransmit {
                    source: self.config.addr,
                    destination: t.destination,
                    router_alert: t.router_alert,
                    ttl: t.ttl,
                    packet_type: t.packet_type,
                    len: t.len,
                },
                bytes,
            ));
        }
    }

    /// Handles timer expiry: the receiver's timers, POLR back-offs, cache ageing. Work is
    /// bounded by what expired.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.receiver.handle_timeout(now);
        self.collect_receiver_tx(now);
        while let Some(&Reverse((at, tsi))) = self.polr_heap.peek() {
            if at > now {
                break;
            }
            self.polr_heap.pop();
            // An entry superseded by a later POLL of the session is skipped.
            if self.polrs.get(&tsi).is_none_or(|p| p.at != at) {
                continue;
            }
            let Some(p) = self.polrs.remove(&tsi) else {
                continue;
            };
            let dport = self.sessions.get(&tsi).map_or(0, |s| s.dport);
            //= https://www.rfc-editor.org/rfc/rfc3208#section-9.5.2.2
            //# A DLR that receives a POLL with sub-type PGM_POLL_DLR MUST respond
            //# with a unicast redirecting POLR if it provides the appropriate
            //# service.
            let polr = self.redirect_polr(tsi, dport, p.sqn, p.round);
            self.stats.polls_answered += 1;
            self.push(
                DlrTransmit {
                    source: self.config.addr,
                    destination: Destination::Unicast(p.dest),
                    router_alert: false,
                    ttl: None,
                    packet_type: PacketType::Polr,
                    len: polr.len(),
                },
                polr,
            );
        }
        self.evict(now);
    }

    /// The earliest deadline. O(1).
    pub fn poll_timeout(&self) -> Option<Instant> {
        let polr = self.polr_heap.peek().map(|Reverse((at, _))| *at);
        let aged = self
            .cache
            .oldest()
            .and_then(|at| at.checked_add(self.config.cache_age));
        [self.receiver.poll_timeout(), polr, aged]
            .into_iter()
            .flatten()
            .min()
    }

    /// The next packet to send, written into `buf`.
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut Vec<u8>) -> Option<DlrTransmit> {
        self.collect_receiver_tx(now);
        let (t, bytes) = self.tx.pop_front()?;
        buf.clear();
        buf.extend_from_slice(&bytes);
        Some(DlrTransmit {
            len: bytes.len(),
            ..t
        })
    }
}

/// An NCF, NAK or NNAK for `sqns` of `tsi`.
fn nak_like(
    tsi: Tsi,
    dport: u16,
    source: IpAddr,
    group: IpAddr,
    sqns: &[Sqn],
    ty: PacketType,
) -> Vec<u8> {
    let Some((&first, rest)) = sqns.split_first() else {
        return Vec::new();
    };
    let nak = NakRepr {
        sqn: first,
        source: Nla(source),
        group: Nla(group),
    };
    let (sport, dp, body) = match ty {
        PacketType::Ncf => (tsi.sport, dport, Body::Ncf(nak)),
        PacketType::Nnak => (dport, tsi.sport, Body::Nnak(nak)),
        _ => (dport, tsi.sport, Body::Nak(nak)),
    };
    let opts = [PgmOption::from(OptionValue::NakList(SqnList::Slice(rest)))];
    let repr = Repr {
        sport,
        dport: dp,
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
    let mut out = vec![0; repr.buffer_len()];
    match repr.emit(&mut out) {
        Ok(_) => out,
        Err(_) => Vec::new(),
    }
}

/// The RDATA for a cached ODATA or RDATA: the same packet with the RDATA type, its checksum
/// updated incrementally. Options (OPT_FRAGMENT, OPT_FIN: §9.7.3) are kept as they were.
//= https://www.rfc-editor.org/rfc/rfc3208#section-9.6.3
//# In an identical manner to sources, DLRs MUST provide OPT_SYN in any
//# retransmitted data that is at the start of a session.
//= https://www.rfc-editor.org/rfc/rfc3208#section-9.7.3
//# In an identical manner to sources, DLRs MUST provide OPT_FIN in any
//# retransmitted data that is at the end of a session.
// The source's own OPT_SYN and OPT_FIN travel in the cached packet, so the repair carries
// them exactly where the source's RDATA would.
fn to_rdata(cached: &[u8]) -> Vec<u8> {
    let mut out = cached.to_vec();
    let old = [out[4], out[5]];
    out[4] = PacketType::Rdata.code();
    let new = [out[4], out[5]];
    let c = Packet::new_unchecked(&out[..]).checksum();
    Packet::new_unchecked(&mut out[..]).set_checksum(crate::wire::checksum_update(c, &old, &new));
    out
}
