//! The receiver's configuration, and which sessions it takes.

use std::net::IpAddr;
use std::time::Duration;

use crate::wire::Tsi;

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
    /// default transmit window. At least 1.
    pub rxw_sqns: u32,
    /// Most sources tracked at once; packets of further sources are dropped and counted.
    /// Default 1024.
    pub max_sources: usize,
    /// Which sessions to take (see [`SessionFilter`]). Default: all.
    pub sessions: SessionFilter,
    /// Bound on the bytes all windows hold together: data waiting for delivery, messages
    /// being reassembled, and the slots themselves (about 100 bytes per sequence number
    /// in a window). A packet that would exceed it is dropped and counted (its data is
    /// NAKed later, as if lost). Default 256 MiB.
    pub max_buffer_bytes: usize,
    /// Most SPMRs sent per second over all sources (§13: a receiver solicits an SPM only to
    /// learn where to NAK data it misses); further ones wait. Default 10.
    pub max_spmr_rate: u32,
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
    /// Take part in PGMCC (draft-ietf-rmt-bb-pgmcc-03) when a source runs it: measure the
    /// loss rate, put OPT_PGMCC_FEEDBACK in NAKs, ACK data that names this receiver as
    /// acker, and volunteer when data names none. Needs `local_addr`. A source that sends no
    /// OPT_PGMCC_DATA draws nothing of this. Default true.
    pub pgmcc: bool,
    /// This receiver's unicast address: the acker named in data is compared with it, and
    /// feedback carries it. `None` leaves PGMCC out. Default none (the host receiver sets
    /// its interface's address).
    pub local_addr: Option<IpAddr>,
    /// ACK_BO_IVL: after data that names no acker, a receiver volunteers with an ACK after a
    /// random wait in `[0, ack_bo_ivl)`, cancelled when data names an acker first (§2.3.1).
    /// Default 50 ms, OpenPGM's: the source does not wait for the election.
    pub ack_bo_ivl: Duration,
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
            sessions: SessionFilter::All,
            max_buffer_bytes: 256 << 20,
            max_spmr_rate: 10,
            peer_expiry: Duration::from_secs(30),
            spmr_bo_ivl: Duration::from_millis(250),
            spmr_spm_ivl: Duration::from_secs(1),
            max_apdu: 128 * 1024,
            adaptive_nak_timers: true,
            nak_ivl_floor: Duration::from_millis(10),
            answer_polls: true,
            join_hold: Duration::from_millis(20),
            pgmcc: true,
            local_addr: None,
            ack_bo_ivl: Duration::from_millis(50),
            rng_seed: 0,
        }
    }
}

/// Which sessions a receiver takes. Packets of the others are dropped and counted in
/// [`ReceiverStats::other_sessions`](super::ReceiverStats::other_sessions).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum SessionFilter {
    /// Every session heard, up to `max_sources`.
    #[default]
    All,
    /// One session: the first heard whose TSI is `tsi` and whose source address is `source`
    /// (each if given). Once it is chosen, no other session is taken, even after it ends.
    One {
        /// Only this TSI.
        tsi: Option<Tsi>,
        /// Only a session whose ODATA and SPMs come from this address.
        source: Option<IpAddr>,
    },
}
