//! The PGM source engine (§5, §9.2, §9.6, §9.7, §13.4), sans-IO.
//!
//! Heads up! Read RFC 3208 §5 first. Outgoing order follows §5.1.3: pending NCFs first, then
//! SPMs, then RDATA before ODATA (repairs are preferred, the choice §5.1.3 leaves to the
//! implementation). ODATA and RDATA go through a token bucket at `txw_max_rte` (§5.1.2);
//! NCFs and SPMs are charged to it too, but never wait for it.
//!
//! The transmit window (§3.3, §5) is what was sent and is still held for repair: TXW_TRAIL to
//! TXW_LEAD, bounded by `txw_sqns`, `txw_secs` and `txw_bytes`. Messages accepted but not yet
//! sent wait in a send queue behind TXW_LEAD, bounded by `send_queue_sqns`, and `send` returns
//! [`SendError::WouldBlock`] when it is full. Queued data never takes room from the window:
//! an application that keeps the queue full (any sender faster than `txw_max_rte`) would
//! otherwise evict what it sent the moment it was sent, the trail would run just behind the
//! lead, and receivers would lose every repair that needs more than one round trip.

use std::collections::{HashSet, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::pgmcc::{Controller, PgmccConfig, PgmccState, PgmccStats, Report};
use super::{Destination, RecvMeta, Transmit};
use crate::wire::{
    AckPacket, Body, DataRepr, Gsi, NakPacket, NakRepr, Nla, OptionList, OptionValue, Packet,
    PacketType, PgmOption, Repr, SpmRepr, Sqn, SqnList, Tsi, WireError,
};

/// Configuration of a source. Every field has a default ([`SourceConfig::new`]); the
/// defaults are documented on each field with the reason for their value.
#[derive(Debug, Clone)]
pub struct SourceConfig {
    /// The Global Source ID.
    pub gsi: Gsi,
    /// The data-source port; with the GSI it forms the TSI.
    pub sport: u16,
    /// The data-destination port (the application's well-known port).
    pub dport: u16,
    /// The multicast group the session is sent to.
    pub group: IpAddr,
    /// This host's unicast address: SPM_PATH as sent, and NAK_SRC in NCFs.
    pub source_addr: IpAddr,
    /// Largest PGM packet (TPDU) sent, header and options included, IP and UDP headers
    /// excluded. Default 1400: fits a 1500-byte MTU with IPv4, UDP encapsulation and the
    /// Router Alert option, with room to spare for tunnels.
    pub max_tpdu: usize,
    /// Largest application message. Default 65535 bytes plus 64 KiB: at least 64 KiB as
    /// the end-host issue requires, fragmented with OPT_FRAGMENT (§9.2).
    pub max_apdu: usize,
    /// Transmit window size in sequence numbers (TXW_SQNS): how many sent packets are held
    /// for repair. Default 32768: at 1400-byte TPDUs, ~45 MB of repair history, about 0.4 s
    /// of a saturated gigabit link.
    pub txw_sqns: u32,
    /// Bound of the send queue, in packets accepted by `send` and not yet sent as ODATA
    /// (they are not part of the transmit window and never evict from it). A message that
    /// does not fit waits ([`SendError::WouldBlock`]), except into an empty queue, so one
    /// message of more fragments than this still goes out. Default 4096: several of the
    /// host sender's batches, ~5.7 MB at 1400-byte TPDUs, small beside the window.
    pub send_queue_sqns: u32,
    /// Transmit window size in seconds (TXW_SECS): packets sent longer ago than this leave
    /// the window even if `txw_sqns` is not reached. Default 30 s.
    pub txw_secs: Duration,
    /// Transmit window size in bytes of TSDU held for repair (sent packets; the send queue
    /// is bounded by `send_queue_sqns` alone); zero means no byte bound. Default zero:
    /// `txw_sqns` and `txw_secs` bound the window.
    pub txw_bytes: usize,
    /// TXW_MAX_RTE in bytes per second over ODATA, RDATA, SPM and NCF (§5.1.1); zero means
    /// no limit. Default zero: the application or operator chooses a rate.
    pub txw_max_rte: u64,
    /// Bytes added to each PGM packet for the rate computation (IP and UDP headers).
    /// Default 28 (IPv4 + UDP).
    pub rate_overhead: usize,
    /// How many SPMs open the session, back to back before the first ODATA, each with its own
    /// SPM_SQN. Default 3: a receiver "MUST NOT initiate repair requests until it has
    /// received at least one SPM" (§6.2), and OpenPGM 5.3's receiver does not keep a loss
    /// it detects before then: it is declared unrecoverable when its NAK back-off expires
    /// (seen in captures: with our single opening SPM lost at 5% loss, every packet lost in
    /// the ~250 ms before its SPMR was answered was given up without a NAK). Three copies
    /// make that as unlikely as OpenPGM's own source, which opens with three SPMs, makes it.
    /// Zero is taken as one.
    pub initial_spms: u8,
    /// Interval of ambient SPMs (§5.1.4). Default 5 s: keeps network-element path state
    /// fresh well within typical expiry times (tens of seconds) at negligible cost.
    pub spm_ambient_ivl: Duration,
    /// IHB_MIN, the first heartbeat interval after data (§5.1.5), and the least interval
    /// between SPMs sent in answer to SPMRs (§13.4). Default 50 ms: the receivers learn of
    /// a lost last packet within that, while the heartbeat costs little.
    pub ihb_min: Duration,
    /// IHB_MAX, where the doubling heartbeat interval stops (§5.1.5). Default 5 s.
    pub ihb_max: Duration,
    /// Identical NCFs for the same sequence number are not repeated within this interval
    /// (§5.2 NAK storm countermeasure). Default 10 ms.
    pub ncf_holdoff: Duration,
    /// The first sequence number. Default 0.
    pub initial_sqn: u32,
    /// Bound on queued NCFs; beyond it NAKs are answered without an NCF and counted.
    /// Default 1024.
    pub max_pending_ncfs: usize,
    /// Carry OPT_JOIN (§9.4) with the window's trailing edge in SPMs and ODATA, so that
    /// receivers joining late, or whose first packets were lost, may recover the whole
    /// transmit window. Default false: §9.4's default is to deliver from the first packet a
    /// receiver gets.
    pub late_join: bool,
    /// PGMCC congestion control (see [`PgmccConfig`]).
    pub pgmcc: PgmccConfig,
}

impl SourceConfig {
    /// A configuration with the documented defaults.
    pub fn new(gsi: Gsi, sport: u16, dport: u16, group: IpAddr, source_addr: IpAddr) -> Self {
        Self {
            gsi,
            sport,
            dport,
            group,
            source_addr,
            max_tpdu: 1400,
            max_apdu: 128 * 1024,
            txw_sqns: 32_768,
            send_queue_sqns: 4096,
            txw_secs: Duration::from_secs(30),
            txw_bytes: 0,
            txw_max_rte: 0,
            rate_overhead: 28,
            initial_spms: 3,
            spm_ambient_ivl: Duration::from_secs(5),
            ihb_min: Duration::from_millis(50),
            ihb_max: Duration::from_secs(5),
            ncf_holdoff: Duration::from_millis(10),
            initial_sqn: 0,
            max_pending_ncfs: 1024,
            late_join: false,
            pgmcc: PgmccConfig::new(),
        }
    }
}

/// Why [`Source::send`] refused a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// The send queue is full of data not yet sent; retry after draining transmits.
    #[error("send queue full of unsent data")]
    WouldBlock,
    /// The message is larger than `max_apdu`.
    #[error("message larger than the configured maximum")]
    TooLarge,
    /// The session was closed.
    #[error("session closed")]
    Closed,
}

/// Counters of a source, one per event and one per drop reason.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SourceStats {
    /// Application messages accepted.
    pub messages_sent: u64,
    /// ODATA packets sent.
    pub odata_sent: u64,
    /// RDATA packets sent.
    pub rdata_sent: u64,
    /// SPMs sent.
    pub spm_sent: u64,
    /// NCFs sent.
    pub ncf_sent: u64,
    /// PGM bytes sent, all types.
    pub bytes_sent: u64,
    /// NAKs received for this session.
    pub naks_received: u64,
    /// Sequence numbers requested by those NAKs (NAK lists included).
    pub nak_sqns_received: u64,
    /// Requested sequence numbers outside the transmit window (not repaired).
    pub nak_sqns_outside_window: u64,
    /// Requested sequence numbers whose RDATA was already queued (merged).
    pub nak_sqns_merged: u64,
    /// Parity NAKs, ignored: this source sends no FEC.
    pub parity_naks_ignored: u64,
    /// NCFs not sent because an identical one went out within `ncf_holdoff`.
    pub ncfs_held_off: u64,
    /// NCFs not sent because the NCF queue was full.
    pub ncfs_dropped: u64,
    /// NNAKs received (§9.5: a DLR repaired on our behalf).
    pub nnaks_received: u64,
    /// SPMRs received.
    pub spmrs_received: u64,
    /// Packets of other sessions or of types a source does not handle.
    pub ignored: u64,
    /// Packets dropped as malformed, by reason.
    pub malformed: MalformedCounts,
    /// PGMCC's counters.
    pub pgmcc: PgmccStats,
}

/// Malformed packets by [`WireError`] reason.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MalformedCounts(Vec<(&'static str, u64)>);

impl MalformedCounts {
    pub(crate) fn add(&mut self, e: WireError) {
        let r = e.reason();
        match self.0.iter_mut().find(|(k, _)| *k == r) {
            Some((_, n)) => *n += 1,
            None => self.0.push((r, 1)),
        }
    }

    /// The count for one reason label.
    pub fn get(&self, reason: &str) -> u64 {
        self.0
            .iter()
            .find(|(k, _)| *k == reason)
            .map_or(0, |(_, n)| *n)
    }

    /// Every (reason, count) seen.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        self.0.iter().copied()
    }

    /// The total over all reasons.
    pub fn total(&self) -> u64 {
        self.0.iter().map(|(_, n)| n).sum()
    }
}

/// One packet of the transmit window.
#[derive(Debug)]
struct TxEntry {
    sqn: Sqn,
    tsdu: Box<[u8]>,
    /// OPT_FRAGMENT: (first sqn of the APDU, offset, APDU length).
    fragment: Option<(Sqn, u32, u32)>,
    syn: bool,
    fin: bool,
    /// When the ODATA went out; `None` while queued.
    sent_at: Option<Instant>,
    /// The last NCF sent for this sequence number.
    last_ncf: Option<Instant>,
}

/// The source engine of one transport session.
///
/// See the [module documentation](super) for the driving contract. Bounded work per call:
/// `handle_packet` is O(63) (a NAK list's length), `poll_transmit` emits one packet and
/// evicts at most the packets that left the window, `send` is O(fragments).
#[derive(Debug)]
pub struct Source {
    config: SourceConfig,
    /// The transmit window (sent, from TXW_TRAIL to TXW_LEAD) followed by the send queue
    /// (from `next_odata` to `next_sqn`).
    window: VecDeque<TxEntry>,
    /// TSDU bytes of the sent packets held in the window (not of the send queue).
    window_bytes: usize,
    /// The next sequence number to assign.
    next_sqn: Sqn,
    /// The next sequence number to send as ODATA.
    next_odata: Sqn,
    repairs: VecDeque<Sqn>,
    repair_set: HashSet<u32>,
    ncfs: VecDeque<(Sqn, Vec<Sqn>)>,
    spm_sqn: Sqn,
    spm_due: bool,
    /// Opening SPMs still to send after the first (`initial_spms` - 1 at the start).
    opening_spms: u8,
    next_ambient: Instant,
    next_heartbeat: Option<Instant>,
    ihb: Duration,
    last_spmr_answer: Option<Instant>,
    tokens: i64,
    last_refill: Instant,
    closing: bool,
    /// PGMCC, when enabled.
    cc: Option<Controller>,
    stats: SourceStats,
}

impl Source {
    /// A source that starts at `now`. Its first transmits are `initial_spms` SPMs announcing
    /// the empty window, so receivers learn where the session starts, and where to send
    /// NAKs, before data arrives.
    pub fn new(config: SourceConfig, now: Instant) -> Self {
        let first = Sqn(config.initial_sqn);
        let opening_spms = config.initial_spms.saturating_sub(1);
        let cc = config
            .pgmcc
            .enabled
            .then(|| Controller::new(config.pgmcc.clone(), now));
        Self {
            next_ambient: now + config.spm_ambient_ivl,
            ihb: config.ihb_min,
            tokens: Self::bucket_size(&config),
            config,
            window: VecDeque::new(),
            window_bytes: 0,
            next_sqn: first,
            next_odata: first,
            repairs: VecDeque::new(),
            repair_set: HashSet::new(),
            ncfs: VecDeque::new(),
            spm_sqn: Sqn(0),
            spm_due: true,
            opening_spms,
            next_heartbeat: None,
            last_spmr_answer: None,
            last_refill: now,
            closing: false,
            cc,
            stats: SourceStats::default(),
        }
    }

    // The configuration is fixed for the engine's life: the TSI never changes in a session.
    //= https://www.rfc-editor.org/rfc/rfc3208#section-8
    //# This ID MUST NOT change
    //# throughout the duration of the transport session.
    /// The session's TSI.
    pub fn tsi(&self) -> Tsi {
        Tsi::new(self.config.gsi, self.config.sport)
    }

    /// The configuration.
    pub fn config(&self) -> &SourceConfig {
        &self.config
    }

    /// Counters.
    pub fn stats(&self) -> &SourceStats {
        &self.stats
    }

    /// PGMCC's state (acker, window, tokens), when it is enabled.
    pub fn pgmcc_state(&self) -> Option<PgmccState> {
        self.cc.as_ref().map(Controller::state)
    }

    /// TXW_TRAIL: the oldest sequence number still in the window (lead + 1 when empty).
    pub fn trail(&self) -> Sqn {
        self.window
            .front()
            .filter(|e| e.sent_at.is_some())
            .map_or(self.next_odata, |e| e.sqn)
    }

    /// TXW_LEAD: the last sequence number sent as ODATA.
    pub fn lead(&self) -> Sqn {
        self.next_odata - 1
    }

    /// The sequence number the next queued packet will get.
    pub fn next_sqn(&self) -> Sqn {
        self.next_sqn
    }

    /// Whether every accepted message has been sent as ODATA.
    pub fn is_drained(&self) -> bool {
        self.next_odata == self.next_sqn
    }

    /// Packets queued and not yet sent as ODATA.
    pub fn queued(&self) -> usize {
        self.next_sqn.since(self.next_odata).unwrap_or(0) as usize
    }

    /// Largest TSDU of an unfragmented packet: room is kept for OPT_LENGTH, OPT_JOIN,
    /// OPT_SYN, OPT_FIN and OPT_PGMCC_DATA.
    fn max_tsdu(&self) -> usize {
        self.config
            .max_tpdu
            .saturating_sub(16 + 8 + 4 + 8 + 8 + self.pgmcc_len())
    }

    /// Largest TSDU of a fragment: room for OPT_LENGTH, OPT_FRAGMENT, OPT_JOIN, OPT_SYN,
    /// OPT_FIN and OPT_PGMCC_DATA.
    fn max_fragment(&self) -> usize {
        self.config
            .max_tpdu
            .saturating_sub(16 + 8 + 4 + 16 + 8 + 8 + self.pgmcc_len())
    }

    /// Bytes of OPT_PGMCC_DATA on each data packet (an NLA of the source's family).
    fn pgmcc_len(&self) -> usize {
        match (&self.cc, self.config.source_addr) {
            (None, _) => 0,
            (Some(_), IpAddr::V4(_)) => 16,
            (Some(_), IpAddr::V6(_)) => 28,
        }
    }

    fn bucket_size(config: &SourceConfig) -> i64 {
        let one = (config.max_tpdu + config.rate_overhead) as i64;
        // 10 ms worth of tokens, and never less than one whole packet.
        (config.txw_max_rte as i64 / 100).max(one)
    }

    /// Queues an application message (APDU), fragmenting it with OPT_FRAGMENT when it does
    /// not fit one packet (§9.2). All or nothing: a message is never partly queued.
    pub fn send(&mut self, data: &[u8]) -> Result<(), SendError> {
        if self.closing {
            return Err(SendError::Closed);
        }
        if data.len() > self.config.max_apdu || data.len() > u32::MAX as usize {
            return Err(SendError::TooLarge);
        }
        let single = data.len() <= self.max_tsdu();
        let frag = self.max_fragment().max(1);
        let count = if single { 1 } else { data.len().div_ceil(frag) };
        if count > self.config.txw_sqns as usize {
            // More fragments than the window holds: its first fragments would leave the
            // window before its last were sent, beyond repair.
            return Err(SendError::TooLarge);
        }
        let queued = self.queued();
        if queued > 0 && queued + count > self.config.send_queue_sqns as usize {
            return Err(SendError::WouldBlock);
        }
        let first = self.next_sqn;
        let syn = first == Sqn(self.config.initial_sqn);
        if single {
            self.push(data, None, syn);
        } else {
            for (i, chunk) in data.chunks(frag).enumerate() {
                let fragment = Some((first, (i * frag) as u32, data.len() as u32));
                self.push(chunk, fragment, syn && i == 0);
            }
        }
        self.stats.messages_sent += 1;
        Ok(())
    }

    fn push(&mut self, tsdu: &[u8], fragment: Option<(Sqn, u32, u32)>, syn: bool) {
        //= https://www.rfc-editor.org/rfc/rfc3208#section-5.1.1
        //# A source MUST number ODATA packets in the order in which they are
        //# submitted for transmission by the application.
        self.window.push_back(TxEntry {
            sqn: self.next_sqn,
            tsdu: tsdu.into(),
            fragment,
            syn,
            fin: false,
            sent_at: None,
            last_ncf: None,
        });
        self.next_sqn = self.next_sqn.next();
    }

    /// Closes the session (§9.7): the last queued ODATA carries OPT_FIN, or, if everything
    /// was sent, the SPMs that follow do. Heartbeat SPMs keep going so receivers learn of the
    /// end; the driver decides how long to linger for repairs before dropping the engine.
    pub fn close(&mut self, now: Instant) {
        if self.closing {
            return;
        }
        //= https://www.rfc-editor.org/rfc/rfc3208#section-9.7.1
        //# When a source detects that it needs to send an OPT_FIN it SHOULD
        //# immediately send it.  This is done either by appending it to the last
        //# data packet or transmission group or by immediately sending an SPM
        self.closing = true;
        if let Some(last) = self.window.back_mut().filter(|e| e.sent_at.is_none()) {
            last.fin = true;
        }
        self.spm_due = true;
        self.ihb = self.config.ihb_min;
        self.next_heartbeat = Some(now + self.config.ihb_min);
    }

    /// Handles a packet addressed to the source: NAKs (repair), NNAKs (counted), SPMRs
    /// (answered with an SPM). Bounded: one NAK's list of at most 62 entries.
    pub fn handle_packet(&mut self, now: Instant, meta: RecvMeta, bytes: &[u8]) {
        let packet = match Packet::new_checked(bytes) {
            Ok(p) => p,
            Err(e) => return self.stats.malformed.add(e),
        };
        if let Err(e) = packet.verify_checksum() {
            return self.stats.malformed.add(e);
        }
        if packet.tsi() != self.tsi() {
            self.stats.ignored += 1;
            return;
        }
        match packet.packet_type() {
            PacketType::Nak => self.on_nak(now, bytes),
            PacketType::Ack => self.on_ack(now, meta, bytes),
            PacketType::Nnak => self.stats.nnaks_received += 1,
            PacketType::Spmr => {
                self.stats.spmrs_received += 1;
                //= https://www.rfc-editor.org/rfc/rfc3208#section-13.4
                //# A source MUST respond immediately to an SPMR with the corresponding
                //# SPM rate limited to once per IHB_MIN per TSI.
                let recent = self
                    .last_spmr_answer
                    .is_some_and(|t| now.saturating_duration_since(t) < self.config.ihb_min);
                if !recent {
                    self.last_spmr_answer = Some(now);
                    self.spm_due = true;
                }
            }
            _ => self.stats.ignored += 1,
        }
    }

    fn on_nak(&mut self, now: Instant, bytes: &[u8]) {
        let Ok(nak) = NakPacket::new_checked(bytes) else {
            return;
        };
        self.stats.naks_received += 1;
        if nak.options_flags() & crate::wire::flags::OPT_PARITY != 0 {
            self.stats.parity_naks_ignored += 1;
            return;
        }
        // A NAK's OPT_PGMCC_FEEDBACK takes part in acker selection (draft §2.3).
        if let Some(report) = feedback(nak.options()) {
            self.report(now, report, None);
        }
        let mut confirmed: Vec<Sqn> = Vec::new();
        let trail = self.trail();
        for sqn in nak.sqns() {
            self.stats.nak_sqns_received += 1;
            // Only data already sent and still in the window can be repaired (§5.3). An NCF
            // for data we cannot repair would only hold receivers in WAIT_DATA, so none is
            // sent: receivers learn of the loss from the advancing trail.
            let Some(idx) = sqn.since(trail).map(|i| i as usize) else {
                self.stats.nak_sqns_outside_window += 1;
                continue;
            };
            let Some(entry) = self.window.get_mut(idx).filter(|e| e.sent_at.is_some()) else {
                self.stats.nak_sqns_outside_window += 1;
                continue;
            };
            //= https://www.rfc-editor.org/rfc/rfc3208#section-5.2
            //# A source MUST immediately multicast an NCF in response to any NAK it
            //# receives.
            //= https://www.rfc-editor.org/rfc/rfc3208#section-5.2
            //# A source SHOULD be able to detect a NAK storm and adopt
            //# countermeasure to protect the network against a denial of service.
            let held = entry
                .last_ncf
                .is_some_and(|t| now.saturating_duration_since(t) < self.config.ncf_holdoff);
            if held {
                self.stats.ncfs_held_off += 1;
            } else {
                entry.last_ncf = Some(now);
                confirmed.push(sqn);
            }
            //= https://www.rfc-editor.org/rfc/rfc3208#section-5.3
            //# After multicasting an NCF in response to a NAK, a source MUST then
            //# multicast RDATA (while respecting TXW_MAX_RTE) in response to any NAK
            //# it receives for data packets within the transmit window.
            //= https://www.rfc-editor.org/rfc/rfc3208#section-9.3.4
            //# It MUST then multicast RDATA (while respecting TXW_MAX_RTE) for every
            //# requested sequence number.
            //= https://www.rfc-editor.org/rfc/rfc3208#section-5.3
            //# This delay SHOULD
            //# not exceed twice the greatest propagation delay in the loss
            //# neighborhood.
            // No delay is added (the MAY is not taken): the repair is queued at once and goes
            // out at the next transmit the rate allows, behind pending NCFs and SPMs.
            if self.repair_set.insert(sqn.0) {
                self.repairs.push_back(sqn);
            } else {
                self.stats.nak_sqns_merged += 1;
            }
        }
        //= https://www.rfc-editor.org/rfc/rfc3208#section-5.2
        //# The NCF is REQUIRED since the alternative of responding
        //# immediately with RDATA would not allow other PGM network elements on
        //# the same subnet to do NAK anticipation, nor would it allow DLRs on
        //# the same subnet to provide repairs.
        // The NCF is queued here and goes out before the RDATA (§5.1.3's order); the
        // exception for §5.2's first sentence lists when none is sent.
        if let Some((&first, rest)) = confirmed.split_first() {
            if self.ncfs.len() < self.config.max_pending_ncfs {
                self.ncfs.push_back((first, rest.to_vec()));
            } else {
                self.stats.ncfs_dropped += 1;
            }
        }
    }

    /// An ACK (PGMCC): feedback, and from the acker, the window's clock.
    fn on_ack(&mut self, now: Instant, meta: RecvMeta, bytes: &[u8]) {
        let Ok(ack) = AckPacket::new_checked(bytes) else {
            return;
        };
        if self.cc.is_none() {
            self.stats.ignored += 1;
            return;
        }
        let rx_max = ack.rx_max();
        // Feedback must name the host that sent it (an ACK comes straight from its
        // receiver), and acknowledge only data sent.
        let report = feedback(ack.options()).filter(|r| r.receiver == meta.source);
        let sent = self.next_odata != Sqn(self.config.initial_sqn) && rx_max.lt(self.next_odata);
        match report {
            Some(r) if sent => self.report(now, r, Some((rx_max, ack.bitmap()))),
            _ => self.stats.pgmcc.acks_invalid += 1,
        }
    }

    /// Hands a report to PGMCC.
    fn report(&mut self, now: Instant, r: Report, ack: Option<(Sqn, u32)>) {
        let Some(cc) = &mut self.cc else { return };
        // The acker is named in every data packet: an address of the source's family, so
        // that data packets keep their size.
        let same_family = r.receiver.is_ipv4() == self.config.source_addr.is_ipv4();
        if !same_family || r.receiver.is_unspecified() || r.receiver.is_multicast() {
            self.stats.pgmcc.reports_invalid += 1;
            return;
        }
        let window = &self.window;
        let front = window.front().map(|e| e.sqn);
        let backlog = self.next_odata != self.next_sqn;
        cc.on_report(now, r, ack, backlog, &mut self.stats.pgmcc, |s| {
            let idx = s.since(front?)?;
            window.get(idx as usize)?.sent_at
        });
    }

    /// Handles timer expiry. Deadlines are also checked in `poll_transmit`, so this only
    /// evicts packets that aged out of the window.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.evict(now);
        if let Some(cc) = &mut self.cc {
            if cc.poll_timeout().is_some_and(|d| d <= now) {
                cc.handle_timeout(now, &mut self.stats.pgmcc);
            }
        }
        //= https://www.rfc-editor.org/rfc/rfc3208#section-5.1.4
        //# Interleaved with ODATA and RDATA, a source MUST transmit SPMs at a
        //# rate at least sufficient to maintain current source path state in PGM
        //# network elements.
        //= https://www.rfc-editor.org/rfc/rfc3208#section-5.1.6
        //# At the same time however, ambient SPMs MUST be
        //# interleaved into the data as a matter of course, not necessarily as a
        //# heartbeat mechanism.  This ambient transmission of SPMs is REQUIRED
        //# to keep the distribution tree information in the network current and
        //# to allow new receivers to synchronize with the session.
        //= https://www.rfc-editor.org/rfc/rfc3208#section-5.1.6
        //# An implementation SHOULD de-couple ambient and heartbeat SPM timers
        //# sufficiently to permit them to be configured independently of each
        //# other.
        if now >= self.next_ambient {
            self.spm_due = true;
            self.next_ambient = now + self.config.spm_ambient_ivl;
        }
        //= https://www.rfc-editor.org/rfc/rfc3208#section-5.1.5
        //# In the absence of data to transmit, a source SHOULD transmit SPMs at
        //# a decaying rate in order to assist early detection of lost data, to
        //# maintain current source path state in PGM network elements, and to
        //# maintain current receive window state in the receivers.
        if self.next_heartbeat.is_some_and(|t| now >= t) {
            self.spm_due = true;
            self.ihb = (self.ihb * 2).min(self.config.ihb_max);
            self.next_heartbeat = Some(now + self.ihb);
        }
    }

    /// Drops sent packets that left the window by count, age or bytes. Only sent packets
    /// count: the send queue behind TXW_LEAD never pushes repair data out.
    fn evict(&mut self, now: Instant) {
        while let Some(front) = self.window.front() {
            let Some(sent) = front.sent_at else { break };
            let held = self.next_odata.since(front.sqn).unwrap_or(0);
            let over_count = held > self.config.txw_sqns;
            let too_old = now.saturating_duration_since(sent) >= self.config.txw_secs;
            let over_bytes = self.config.txw_bytes > 0 && self.window_bytes > self.config.txw_bytes;
            if !(over_count || too_old || over_bytes) {
                break;
            }
            let sqn = front.sqn;
            self.window_bytes -= front.tsdu.len();
            self.window.pop_front();
            if self.repair_set.remove(&sqn.0) {
                self.repairs.retain(|s| *s != sqn);
            }
        }
    }

    //= https://www.rfc-editor.org/rfc/rfc3208#section-5.1.2
    //# To regulate its transmit rate, a source MUST use a token bucket
    //# scheme or any other traffic management scheme that yields equivalent
    //# behavior.
    //= https://www.rfc-editor.org/rfc/rfc3208#section-5.1.2
    //# Over any arbitrarily chosen interval, the number
    //# of bytes the source may transmit MUST NOT exceed the token bucket
    //# size plus the product of the token rate and the chosen interval.
    // (A packet goes out while tokens remain and is charged whole: the bound is exceeded
    // by at less than one packet, as if the bucket were a packet deeper.)
    fn refill(&mut self, now: Instant) {
        if self.config.txw_max_rte == 0 {
            return;
        }
        let elapsed = now.saturating_duration_since(self.last_refill);
        let add = (elapsed.as_nanos() * u128::from(self.config.txw_max_rte) / 1_000_000_000)
            .min(i64::MAX as u128) as i64;
        if add > 0 {
            self.tokens = (self.tokens + add).min(Self::bucket_size(&self.config));
            // Advance by the time the added tokens represent, keeping the remainder.
            let used = Duration::from_nanos(
                (add as u128 * 1_000_000_000 / u128::from(self.config.txw_max_rte)) as u64,
            );
            self.last_refill += used;
        }
    }

    fn charge(&mut self, len: usize) {
        if self.config.txw_max_rte > 0 {
            self.tokens -= (len + self.config.rate_overhead) as i64;
        }
        self.stats.bytes_sent += len as u64;
    }

    fn may_send_data(&self) -> bool {
        self.config.txw_max_rte == 0 || self.tokens > 0
    }

    /// The next packet to send, written into `buf` (resized as needed). One packet per call,
    /// in the order of §5.1.3.
    //= https://www.rfc-editor.org/rfc/rfc3208#section-5.1
    //# These techniques are the minimum REQUIRED of a PGM source.
    // All of §5.1.1-§5.1.6 meet here: ODATA in sequence within the window, the token bucket
    // at TXW_MAX_RTE (see the exception for the leaky bucket of §5.1.2), NCFs before SPMs
    // before data, ambient and heartbeat SPMs (`handle_timeout`).
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut Vec<u8>) -> Option<Transmit> {
        self.handle_timeout(now);
        self.refill(now);
        //= https://www.rfc-editor.org/rfc/rfc3208#section-5.1.3
        //# To preserve the logic of PGM's transmit window, a source MUST
        //# strictly prioritize sending of pending NCFs first, pending SPMs
        //# second, and only send ODATA or RDATA when no NCFs or SPMs are
        //# pending.
        if let Some((first, rest)) = self.ncfs.pop_front() {
            let t = self.emit_ncf(first, &rest, buf);
            self.stats.ncf_sent += 1;
            self.charge(t.len);
            return Some(t);
        }
        if self.spm_due || self.opening_spms > 0 {
            if self.spm_due {
                self.spm_due = false;
            } else {
                self.opening_spms -= 1;
            }
            let t = self.emit_spm(buf);
            self.spm_sqn = self.spm_sqn.next();
            self.stats.spm_sent += 1;
            self.charge(t.len);
            return Some(t);
        }
        if !self.may_send_data() {
            return None;
        }
        while let Some(sqn) = self.repairs.pop_front() {
            self.repair_set.remove(&sqn.0);
            let Some(idx) = sqn.since(self.trail()) else {
                continue;
            };
            if self.window.get(idx as usize).is_none() {
                continue;
            }
            let t = self.emit_data(idx as usize, PacketType::Rdata, buf, now);
            self.stats.rdata_sent += 1;
            self.charge(t.len);
            self.on_data_sent(now);
            return Some(t);
        }
        //= https://www.rfc-editor.org/rfc/rfc3208#section-5.1.1
        //# A source MUST
        //# transmit ODATA packets in sequence and only within the transmit
        //# window beginning with TXW_TRAIL at no greater a rate than
        //# TXW_MAX_RTE.
        // PGMCC draft §3:
        // send_packet(): if (QUEUED > 0 && T >= 1) { transmit one packet; T = T - 1 }
        if self.next_odata != self.next_sqn
            && let Some(cc) = self.cc.as_mut()
        {
            cc.before_data(now, &mut self.stats.pgmcc);
            if !cc.may_send(now) {
                cc.on_blocked(now);
            }
        }
        if self.next_odata != self.next_sqn && self.cc.as_ref().is_none_or(|cc| cc.may_send(now)) {
            let idx = self.next_odata.since(self.window.front()?.sqn)? as usize;
            let t = self.emit_data(idx, PacketType::Odata, buf, now);
            if let Some(cc) = &mut self.cc {
                cc.on_odata_sent(now, self.next_odata);
            }
            if let Some(e) = self.window.get_mut(idx) {
                e.sent_at = Some(now);
                self.window_bytes += e.tsdu.len();
            }
            self.next_odata = self.next_odata.next();
            self.stats.odata_sent += 1;
            self.charge(t.len);
            self.on_data_sent(now);
            self.evict(now);
            return Some(t);
        }
        None
    }

    fn on_data_sent(&mut self, now: Instant) {
        //= https://www.rfc-editor.org/rfc/rfc3208#section-5.1.5
        //# The transmission of any data packet initializes IHB_TMR to IHB_MIN once
        //# again.
        self.ihb = self.config.ihb_min;
        self.next_heartbeat = Some(now + self.config.ihb_min);
    }

    /// When the engine next needs `handle_timeout` or can send again.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut t = self.next_ambient;
        if let Some(h) = self.next_heartbeat {
            t = t.min(h);
        }
        if let Some(front) = self.window.front().and_then(|e| e.sent_at) {
            t = t.min(front + self.config.txw_secs);
        }
        if let Some(d) = self.cc.as_ref().and_then(Controller::poll_timeout) {
            t = t.min(d);
        }
        let data_waiting = !self.repairs.is_empty() || self.next_odata != self.next_sqn;
        if data_waiting && self.config.txw_max_rte > 0 && self.tokens <= 0 {
            let missing = (1 - self.tokens) as u128;
            let wait = missing * 1_000_000_000 / u128::from(self.config.txw_max_rte) + 1;
            t = t.min(self.last_refill + Duration::from_nanos(wait as u64));
        }
        Some(t)
    }

    fn emit(&self, repr: &Repr<'_>, buf: &mut Vec<u8>) -> usize {
        buf.resize(repr.buffer_len(), 0);
        // The buffer was sized from the same repr and every value we build is representable,
        // so emit cannot fail; a failure would yield an empty (dropped) packet, never a panic.
        repr.emit(buf).unwrap_or(0)
    }

    fn emit_spm(&self, buf: &mut Vec<u8>) -> Transmit {
        //= https://www.rfc-editor.org/rfc/rfc3208#section-9.7.1
        //# Sources MUST include OPT_FIN in every SPM sent after it has been
        //# determined that the application has closed gracefully.
        //= https://www.rfc-editor.org/rfc/rfc3208#section-9.7
        //# The FIN PGM option MUST appear in every SPM sent after the last ODATA
        //# for a session.
        let fin = self.closing && self.is_drained();
        let mut opts = [PgmOption::from(OptionValue::Fin); 2];
        let mut n = 0;
        if self.config.late_join {
            opts[n] = OptionValue::Join {
                min_sqn: self.trail(),
            }
            .into();
            n += 1;
        }
        if fin {
            opts[n] = OptionValue::Fin.into();
            n += 1;
        }
        let repr = Repr {
            sport: self.config.sport,
            dport: self.config.dport,
            gsi: self.config.gsi,
            parity: false,
            var_pktlen: false,
            body: Body::Spm(SpmRepr {
                sqn: self.spm_sqn,
                trail: self.trail(),
                lead: self.lead(),
                path: Nla(self.config.source_addr),
            }),
            options: if n == 0 {
                OptionList::EMPTY
            } else {
                OptionList::Slice(&opts[..n])
            },
        };
        let len = self.emit(&repr, buf);
        Transmit {
            destination: Destination::Group(self.config.group),
            packet_type: PacketType::Spm,
            router_alert: true,
            ttl: None,
            len,
        }
    }

    fn emit_ncf(&self, first: Sqn, rest: &[Sqn], buf: &mut Vec<u8>) -> Transmit {
        let opts = [PgmOption::from(OptionValue::NakList(SqnList::Slice(rest)))];
        let repr = Repr {
            sport: self.config.sport,
            dport: self.config.dport,
            gsi: self.config.gsi,
            parity: false,
            var_pktlen: false,
            body: Body::Ncf(NakRepr {
                sqn: first,
                source: Nla(self.config.source_addr),
                group: Nla(self.config.group),
            }),
            options: if rest.is_empty() {
                OptionList::EMPTY
            } else {
                OptionList::Slice(&opts)
            },
        };
        let len = self.emit(&repr, buf);
        Transmit {
            destination: Destination::Group(self.config.group),
            packet_type: PacketType::Ncf,
            router_alert: true,
            ttl: None,
            len,
        }
    }

    //= https://www.rfc-editor.org/rfc/rfc3208#section-9.1
    //# All network-significant options MUST be appended before any
    //# exclusively receiver-significant options.
    // The options are written in the order given. Data packets (here) and SPMs
    // (`emit_spm`) carry only receiver-significant ones (OPT_JOIN, OPT_FRAGMENT, OPT_SYN,
    // OPT_FIN); the one network-significant option a source sends, OPT_NAK_LIST, is alone
    // in its NCF (`emit_ncf`). Network elements, receivers and DLRs likewise send
    // OPT_NAK_LIST or OPT_REDIRECT alone, and forward options in the order received.
    fn emit_data(&self, idx: usize, ty: PacketType, buf: &mut Vec<u8>, now: Instant) -> Transmit {
        let e = &self.window[idx];
        let mut opts: [PgmOption<'_>; 5] = [PgmOption::from(OptionValue::Syn); 5];
        let mut n = 0;
        if self.config.late_join && ty == PacketType::Odata {
            opts[n] = OptionValue::Join {
                min_sqn: self.trail(),
            }
            .into();
            n += 1;
        }
        if let Some((first_sqn, offset, length)) = e.fragment {
            opts[n] = OptionValue::Fragment {
                first_sqn,
                offset,
                length,
            }
            .into();
            n += 1;
        }
        if e.syn {
            opts[n] = OptionValue::Syn.into();
            n += 1;
        }
        if e.fin {
            opts[n] = OptionValue::Fin.into();
            n += 1;
        }
        if let Some(cc) = &self.cc {
            // PGMCC draft §2.1.1:
            // Every data packet carries a timestamp and the acker's identity; the
            // unspecified address asks receivers to elect one.
            let unspecified = match self.config.source_addr {
                IpAddr::V4(_) => IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
                IpAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
            };
            opts[n] = OptionValue::PgmccData {
                tstamp: cc.tstamp(now),
                acker: Nla(cc.acker().unwrap_or(unspecified)),
            }
            .into();
            n += 1;
        }
        let data = DataRepr {
            sqn: e.sqn,
            trail: self.trail(),
            payload: &e.tsdu,
        };
        let repr = Repr {
            sport: self.config.sport,
            dport: self.config.dport,
            gsi: self.config.gsi,
            parity: false,
            var_pktlen: false,
            body: if ty == PacketType::Rdata {
                Body::Rdata(data)
            } else {
                Body::Odata(data)
            },
            options: if n == 0 {
                OptionList::EMPTY
            } else {
                OptionList::Slice(&opts[..n])
            },
        };
        let len = self.emit(&repr, buf);
        Transmit {
            destination: Destination::Group(self.config.group),
            packet_type: ty,
            //= https://www.rfc-editor.org/rfc/rfc3208#section-8
            //# Recall from General Procedures that, for PGM over IP multicast, SPMs,
            //# NCFs, and RDATA MUST also bear the IP Router Alert Option.
            router_alert: ty == PacketType::Rdata,
            ttl: None,
            len,
        }
    }
}

/// The OPT_PGMCC_FEEDBACK among `options`, if any.
fn feedback(options: OptionList<'_>) -> Option<Report> {
    options.iter().find_map(|o| match o.value {
        OptionValue::PgmccFeedback {
            tstamp,
            loss_rate,
            receiver,
        } => Some(Report {
            receiver: receiver.0,
            tstamp,
            loss: loss_rate,
        }),
        _ => None,
    })
}
