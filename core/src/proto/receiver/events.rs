//! What the receiver tells the application, and what it counts.

use crate::proto::source::MalformedCounts;
use crate::wire::{Sqn, Tsi};

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
    /// A session heard of only once (one packet, no second packet or SPM from its source)
    /// was forgotten to make room for a new one at `max_sources`.
    Evicted,
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
    /// PGMCC ACKs sent (as acker, or volunteering).
    pub acks_sent: u64,
    /// Messages delivered.
    pub messages_delivered: u64,
    /// Bytes delivered.
    pub bytes_delivered: u64,
    /// Sequence numbers reported lost.
    pub sqns_lost: u64,
    /// Loss events reported.
    pub loss_events: u64,
    /// Packets of sources beyond `max_sources` (every tracked source confirmed by a second
    /// packet or an SPM).
    pub sources_refused: u64,
    /// Sources heard of only once forgotten to make room for a new one at `max_sources`.
    pub sources_evicted: u64,
    /// Fragments that did not fit their message (bad offsets or lengths).
    pub bad_fragments: u64,
    /// Packets of other ports, or of types a receiver does not handle.
    pub ignored: u64,
    /// Packets of sessions the [`SessionFilter`](super::SessionFilter) does not take.
    pub other_sessions: u64,
    /// RDATA, NCFs, NAKs, SPMRs and POLLs of sessions not tracked (a session starts with
    /// its ODATA or SPM).
    pub no_session: u64,
    /// ODATA, SPMs and POLLs of a session from an address other than its source's.
    pub wrong_source: u64,
    /// Data beyond the receive window (`rxw_sqns` past the next sequence number to
    /// deliver), not stored.
    pub beyond_window: u64,
    /// Packets that asked the window to jump (a trail past missing data, or a lead beyond
    /// the window) and were held until a second packet agrees.
    pub jumps_held: u64,
    /// Window jumps taken, two packets agreeing.
    pub jumps: u64,
    /// Data dropped because the windows hold `max_buffer_bytes`.
    pub buffer_full: u64,
    /// SPMRs delayed by `max_spmr_rate`.
    pub spmrs_limited: u64,
    /// NAK packets not sent because their session had drawn as many as its source sent
    /// packets (plus 64, at most 1,024 in hand): the sequence numbers wait and retry as if the
    /// NAK was lost. A real session hardly ever reaches it; a made-up one that names a third
    /// party as its NAK target does.
    pub naks_limited: u64,
    /// Packets dropped as malformed, by reason.
    pub malformed: MalformedCounts,
}
