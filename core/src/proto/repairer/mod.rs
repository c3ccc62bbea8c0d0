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

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use rand::Rng;

use super::receiver::{Event, Receiver, ReceiverConfig};
use super::source::MalformedCounts;
use super::{Destination, EngineRng, RecvMeta, rng_from_seed};
use crate::wire::{
    Body, DataPacket, NakPacket, NakRepr, Nla, OptionList, OptionValue, Packet, PacketType,
    PgmOption, PollPacket, PollSubtype, PolrRepr, Repr, Sqn, SqnList, Tsi,
};

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
    /// Most sessions (TSIs) tracked at once. When full, a session with nothing cached that
    /// the embedded receiver no longer tracks makes room; otherwise packets of a new session
    /// are neither cached nor served, and counted in [`DlrStats::sessions_refused`]. Default
    /// 1024, the embedded receiver's default `max_sources`.
    pub max_sessions: usize,
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
    /// Sessions forgotten to make room for new ones (nothing cached, no longer tracked by
    /// the embedded receiver).
    pub sessions_evicted: u64,
    /// Malformed packets by reason.
    pub malformed: MalformedCounts,
}

#[derive(Debug)]
struct Cached {
    at: Instant,
    /// The packet as received (ODATA or RDATA), checksum valid.
    bytes: Box<[u8]>,
}

#[derive(Debug, Default)]
struct Session {
    cache: HashMap<u32, Cached>,
    order: VecDeque<u32>,
    source: Option<IpAddr>,
    group: Option<IpAddr>,
    dport: u16,
    last_redirect: Option<Instant>,
    /// Sequence numbers our own receiver NAKed recently: their NCFs draw no POLR.
    own_naks: HashMap<u32, Instant>,
}

#[derive(Debug, Clone, Copy)]
struct PendingPolr {
    tsi: Tsi,
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
    total_bytes: usize,
    rng: EngineRng,
    rand_node_id: u32,
    polrs: Vec<PendingPolr>,
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
            total_bytes: 0,
            rng,
            rand_node_id,
            polrs: Vec::new(),
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

    /// When the oldest packet in the cache was cached, `None` if the cache is empty. With
    /// [`Repairer::evict_oldest`], lets a driver that runs several engines bound their caches
    /// together, oldest first over all of them.
    pub fn oldest_cached(&self) -> Option<Instant> {
        self.sessions
            .values()
            .filter_map(|s| s.order.front().and_then(|q| s.cache.get(q)))
            .map(|c| c.at)
            .min()
    }

    /// Evicts the oldest packet in the cache (counted in `cache_evictions`) and returns its
    /// size in bytes; 0 if the cache is empty.
    pub fn evict_oldest(&mut self) -> usize {
        let freed = self.evict_oldest_entry();
        self.update_cache_stats();
        freed
    }

    fn evict_oldest_entry(&mut self) -> usize {
        let victim = self
            .sessions
            .iter()
            .filter_map(|(t, s)| {
                s.order
                    .front()
                    .and_then(|q| s.cache.get(q))
                    .map(|c| (*t, c.at))
            })
            .min_by_key(|(_, at)| *at)
            .map(|(t, _)| t);
        let Some(s) = victim.and_then(|t| self.sessions.get_mut(&t)) else {
            return 0;
        };
        let Some(c) = s.order.pop_front().and_then(|sqn| s.cache.remove(&sqn)) else {
            return 0;
        };
        self.total_bytes -= c.bytes.len();
        self.stats.cache_evictions += 1;
        c.bytes.len()
    }

    /// The state of session `tsi`, created if there is room (see
    /// [`DlrConfig::max_sessions`]); `None`, counted, if there is not.
    fn session(&mut self, tsi: Tsi) -> Option<&mut Session> {
        if !self.sessions.contains_key(&tsi) && self.sessions.len() >= self.config.max_sessions {
            // Forget sessions that hold nothing and that the receiver has let go of.
            let live: std::collections::HashSet<Tsi> = self.receiver.tsis().into_iter().collect();
            let before = self.sessions.len();
            self.sessions
                .retain(|t, s| !s.cache.is_empty() || live.contains(t));
            self.stats.sessions_evicted += (before - self.sessions.len()) as u64;
            if self.sessions.len() >= self.config.max_sessions {
                self.stats.sessions_refused += 1;
                return None;
            }
        }
        Some(self.sessions.entry(tsi).or_default())
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
                if self.serves(&tsi) {
                    self.cache(now, meta, bytes);
                }
                self.receiver.handle_packet(now, meta, bytes);
            }
            // NAKs unicast to us: repair requests. Multicast NAKs go to the receiver.
            PacketType::Nak | PacketType::Nnak if meta.destination == self.config.addr => {
                if packet.packet_type() == PacketType::Nak && self.serves(&tsi) {
                    self.on_nak(now, meta, bytes);
                } else {
                    self.stats.ignored += 1;
                }
            }
            PacketType::Ncf => {
                self.on_ncf(now, meta, bytes);
                self.receiver.handle_packet(now, meta, bytes);
            }
            PacketType::Poll => {
                let dlr_poll =
                    PollPacket::new_checked(bytes).is_ok_and(|p| p.subtype() == PollSubtype::Dlr);
                if dlr_poll {
                    self.on_dlr_poll(now, bytes);
                } else {
                    self.receiver.handle_packet(now, meta, bytes);
                }
            }
            PacketType::Spm => {
                if let Ok(s) = crate::wire::SpmPacket::new_checked(bytes) {
                    if packet
                        .options()
                        .find(crate::wire::OptionType::Rst)
                        .is_some()
                    {
                        // §9.8.3: a reset session's cache is of no more use.
                        self.drop_session(&tsi);
                    }
                    if let Some(sess) = self.session(tsi) {
                        sess.source = Some(meta.source);
                        sess.group = Some(meta.destination);
                        sess.dport = s.dest_port();
                    }
                }
                self.receiver.handle_packet(now, meta, bytes);
            }
            _ => self.receiver.handle_packet(now, meta, bytes),
        }
        self.collect_receiver_tx(now);
    }

    fn drop_session(&mut self, tsi: &Tsi) {
        if let Some(s) = self.sessions.get_mut(tsi) {
            for (_, c) in s.cache.drain() {
                self.total_bytes -= c.bytes.len();
                self.stats.cache_evictions += 1;
            }
            s.order.clear();
        }
        self.update_cache_stats();
    }

    fn cache(&mut self, now: Instant, meta: RecvMeta, bytes: &[u8]) {
        let Ok(d) = DataPacket::new_checked(bytes) else {
            return;
        };
        let tsi = d.tsi();
        let too_big = bytes.len() > self.config.cache_bytes;
        let Some(sess) = self.session(tsi) else {
            return;
        };
        sess.source.get_or_insert(meta.source);
        sess.group.get_or_insert(meta.destination);
        sess.dport = d.dest_port();
        let sqn = d.sqn().0;
        if sess.cache.contains_key(&sqn) || too_big {
            return;
        }
        sess.cache.insert(
            sqn,
            Cached {
                at: now,
                bytes: bytes.into(),
            },
        );
        sess.order.push_back(sqn);
        self.total_bytes += bytes.len();
        self.evict(now);
    }

    /// Evicts by age, then oldest first while over the byte bound.
    fn evict(&mut self, now: Instant) {
        let age = self.config.cache_age;
        for s in self.sessions.values_mut() {
            while let Some(&sqn) = s.order.front() {
                let old = s
                    .cache
                    .get(&sqn)
                    .is_none_or(|c| now.saturating_duration_since(c.at) >= age);
                if !old {
                    break;
                }
                s.order.pop_front();
                if let Some(c) = s.cache.remove(&sqn) {
                    self.total_bytes -= c.bytes.len();
                    self.stats.cache_evictions += 1;
                }
            }
        }
        // Then the oldest entry over all sessions, while over the byte bound.
        while self.total_bytes > self.config.cache_bytes {
            if self.evict_oldest_entry() == 0 {
                break;
            }
        }
        self.update_cache_stats();
    }

    fn update_cache_stats(&mut self) {
        self.stats.cache_bytes = self.total_bytes as u64;
        self.stats.cache_entries = self.sessions.values().map(|s| s.cache.len() as u64).sum();
    }

    /// The session's parent: SPM_PATH of its last SPM, as the embedded receiver knows it.
    fn parent(&self, tsi: &Tsi) -> Option<IpAddr> {
        self.receiver.nak_target(tsi)
    }

    fn on_ncf(&mut self, now: Instant, _meta: RecvMeta, bytes: &[u8]) {
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
        let Some(sess) = self.session(tsi) else {
            return;
        };
        //= https://www.rfc-editor.org/rfc/rfc3208#section-9.5.2.1
        //# If the NCF completes NAK transmission initiated by the DLR itself,
        //# the DLR MUST NOT send a redirecting POLR.
        sess.own_naks
            .retain(|_, at| now.saturating_duration_since(*at) < rpt);
        if sess.own_naks.contains_key(&ncf.sqn().0) {
            return;
        }
        if sess
            .last_redirect
            .is_some_and(|t| now.saturating_duration_since(t) < holdoff)
        {
            return;
        }
        sess.last_redirect = Some(now);
        let (Some(source), Some(group)) = (sess.source, sess.group) else {
            return;
        };
        let dport = sess.dport;
        //= https://www.rfc-editor.org/rfc/rfc3208#section-9.5.2.1
        //# When a DLR receives an NCF from its upstream PGM parent, it SHOULD
        //# send a redirecting POLR, multicast to the group.
        let polr = self.redirect_polr(tsi, dport, Sqn(0), 0);
        self.stats.redirects_announced += 1;
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

    fn on_dlr_poll(&mut self, now: Instant, bytes: &[u8]) {
        if !self.config.off_tree {
            return;
        }
        let Ok(poll) = PollPacket::new_checked(bytes) else {
            return;
        };
        let tsi = poll.tsi();
        if !self.serves(&tsi) || !self.sessions.contains_key(&tsi) {
            self.stats.ignored += 1;
            return;
        }
        // Appendix D's rules: random match on POLL_MASK, round 0 only (no multi-round DLR
        // polls are sent by our network element), cancel replies to other POLL_SQNs.
        let (sqn, round, mask) = (poll.sqn(), poll.round(), poll.mask());
        let rand = u32::from_be_bytes(poll.rand());
        self.polrs.retain(|p| p.tsi != tsi || p.sqn == sqn);
        if self.rand_node_id & mask != rand & mask {
            return;
        }
        let bo = Duration::from_micros(u64::from(poll.backoff_ivl_us()));
        let nanos = bo.as_nanos().min(u128::from(u64::MAX)) as u64;
        let d = if nanos == 0 {
            0
        } else {
            self.rng.random_range(0..nanos)
        };
        self.polrs.push(PendingPolr {
            tsi,
            sqn,
            round,
            dest: poll.path().0,
            at: now + Duration::from_nanos(d),
        });
    }

    fn on_nak(&mut self, now: Instant, meta: RecvMeta, bytes: &[u8]) {
        let Ok(nak) = NakPacket::new_checked(bytes) else {
            return;
        };
        let tsi = nak.tsi();
        let sqns: Vec<Sqn> = nak.sqns().collect();
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
        let (Some(source), Some(group)) = (sess.source, sess.group) else {
            return;
        };
        let dport = sess.dport;
        let (mut have, mut miss) = (Vec::new(), Vec::new());
        for s in sqns {
            if sess.cache.contains_key(&s.0) {
                have.push(s);
            } else {
                miss.push(s);
            }
        }
        self.stats.cache_hits += have.len() as u64;
        self.stats.cache_misses += miss.len() as u64;
        let me = self.config.addr;
        // The NCF confirms the whole NAK, served or not.
        let all: Vec<Sqn> = have.iter().chain(miss.iter()).copied().collect();
        let ncf = nak_like(tsi, dport, source, group, &all, PacketType::Ncf);
        self.stats.ncfs_sent += 1;
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
                let Some(c) = self.sessions.get(&tsi).and_then(|x| x.cache.get(&s.0)) else {
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
        let _ = now;
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
                    let rpt = self.config.receiver.nak_rpt_ivl + self.config.receiver.nak_rdata_ivl;
                    if let Some(s) = self.session(n.tsi()) {
                        // Bounded by what is still awaiting its NCF.
                        s.own_naks
                            .retain(|_, at| now.saturating_duration_since(*at) < rpt);
                        for q in n.sqns() {
                            s.own_naks.insert(q.0, now);
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

    /// Handles timer expiry: the receiver's timers, POLR back-offs, cache ageing.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.receiver.handle_timeout(now);
        self.collect_receiver_tx(now);
        let due: Vec<PendingPolr> = self.polrs.iter().filter(|p| p.at <= now).copied().collect();
        self.polrs.retain(|p| p.at > now);
        for p in due {
            let dport = self.sessions.get(&p.tsi).map_or(0, |s| s.dport);
            //= https://www.rfc-editor.org/rfc/rfc3208#section-9.5.2.2
            //# A DLR that receives a POLL with sub-type PGM_POLL_DLR MUST respond
            //# with a unicast redirecting POLR if it provides the appropriate
            //# service.
            let polr = self.redirect_polr(p.tsi, dport, p.sqn, p.round);
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

    /// The earliest deadline.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut t = self.receiver.poll_timeout();
        let mut take = |x: Instant| t = Some(t.map_or(x, |t| t.min(x)));
        for p in &self.polrs {
            take(p.at);
        }
        for s in self.sessions.values() {
            if let Some(c) = s.order.front().and_then(|q| s.cache.get(q)) {
                take(c.at + self.config.cache_age);
            }
        }
        t
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
fn to_rdata(cached: &[u8]) -> Vec<u8> {
    let mut out = cached.to_vec();
    let old = [out[4], out[5]];
    out[4] = PacketType::Rdata.code();
    let new = [out[4], out[5]];
    let c = Packet::new_unchecked(&out[..]).checksum();
    Packet::new_unchecked(&mut out[..]).set_checksum(crate::wire::checksum_update(c, &old, &new));
    out
}
