//! PGMCC congestion control (draft-ietf-rmt-bb-pgmcc-03), sans-IO: the source's window of
//! tokens, acker election and timeout (`Controller`), and a receiver's loss measurement
//! and ACK bitmap (`Feedback`).
//!
//! Heads up! Read the draft's §2.2 (window), §2.3 (acker selection), §2.7 (timeouts) and §3/§4
//! (procedures), and `docs/pgmcc.md` for the wire format (OpenPGM's) and the decisions below.
//!
//! Where this departs from the draft, and why:
//!
//! - **No acker: an initial window, then the rate limit.** The draft holds a source with no
//!   acker to one packet per timeout. Here, before the first election and after an acker is
//!   dropped for silence, the source sends `initial_window` packets (10) naming no acker,
//!   which asks receivers to volunteer, and waits for feedback up to `election_wait` (250
//!   ms); then it sends under its rate limit alone. Receivers that do not speak PGMCC
//!   (OpenPGM's without `PGM_USE_PGMCC`, older stacks) never volunteer, and a session with
//!   only them would otherwise crawl at one packet per timeout. (Measured with the
//!   fairness harness before the initial window: 1,773 to 4,641 ODATA went into an
//!   84-packet bottleneck queue before the first feedback arrived.)
//! - **Tokens during the suspension.** After a loss halves the window, window changes are
//!   suspended for one round trip (§2.2), but acknowledged packets still return one token
//!   each: a halving takes W/2 tokens, usually below zero, and if ACKs gave none back the
//!   source could send nothing, the acker would have nothing to acknowledge, and the
//!   session would wait for the timeout.
//! - **The loss rate's filter.** §2.6 prints `p_i = c_p*p_{i-1} + (1-c_p)*p_i`, with `p_i`
//!   on both sides. The reading that filters is `p ← p + c·(x − p)` with c = 500/65536,
//!   used here.
//! - **RTT for the timeout** comes from when the acknowledged packet was sent (µs precision,
//!   §2.5.3's "sequence numbers" method); RTT for acker selection from the echoed
//!   millisecond timestamp (§2.5.1), the same method for every receiver.
//! - **Never an empty flight without a token.** Once the acker has reported the last packet
//!   sent, nothing is in flight and no ACK will return a token; packets lost in the window
//!   took theirs with them. T is then raised to 1, or the ACK clock would stop for good.
//! - **A probe when the ACK clock stops short.** If the last packets sent are lost, the
//!   acker has nothing newer to acknowledge, and the source, without tokens, nothing to
//!   send: the clock waits for their repair (a NAK back-off) or the timeout. After twice the
//!   smoothed round trip without news, one token is given (TCP's tail loss probe, RFC 8985),
//!   so the next packet's ACK shows the hole. Measured on a veth at 5% loss: 1,400
//!   messages/s without it.
//! - **The window grows only when it limits.** An ACK opens W only if data is waiting to be
//!   sent, or waited for a token since the previous ACK; otherwise it just returns tokens (RFC 7661's congestion
//!   window validation, for TCP). A source sending below its window (a fixed-rate
//!   application) would otherwise grow W without bound and later burst that much at once.
//! - **Only ODATA spends tokens.** RDATA reuses its packet's sequence number, so no ACK
//!   would ever return its token; it stays under the rate limit alone. Measured both ways
//!   on a veth at 5% random loss (`throughput --loss 5 --hogs 1`, 300,000 messages): with
//!   RDATA waiting for tokens, transfers stalled (a lost repair left nothing in flight to
//!   return one); with RDATA spending tokens without waiting, 7k messages/s; without, 30k.
//!   The storm of repairs the fairness harness saw at start-up came from the open-loop
//!   burst, which the initial window removed.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::rtt::RttEstimate;
use crate::wire::Sqn;

/// Configuration of a source's PGMCC. Defaults ([`PgmccConfig::new`]) are documented per
/// field.
#[derive(Debug, Clone, PartialEq)]
pub struct PgmccConfig {
    /// Whether the source runs PGMCC at all. Default true.
    pub enabled: bool,
    /// C, the hysteresis of acker selection (§2.3): a receiver replaces the acker when its
    /// expected throughput is below C times the acker's. Default 0.75, the draft's.
    pub hysteresis: f64,
    /// SSTHRESH in packets (§2.2): the window opens exponentially up to here, then by one
    /// packet per round trip. Default 4, the draft's.
    pub ssthresh: u32,
    /// Packets sent while no acker is elected (at the start, or after one was dropped),
    /// until feedback elects one or `election_wait` passes. Default 10, TCP's initial
    /// window (RFC 6928): a source does not flood an unknown path at line rate while
    /// receivers volunteer.
    pub initial_window: u32,
    /// How long a source without an acker holds to `initial_window` before it sends under
    /// its rate limit alone, for receivers that do not speak PGMCC and will never volunteer.
    /// Default 250 ms: five times our receivers' volunteer back-off.
    pub election_wait: Duration,
    /// The largest window in packets. Default 65536. The source also never lets it exceed
    /// its transmit window.
    pub max_window: u32,
    /// The retransmission timeout before any round trip is measured (§2.7). Default 1 s,
    /// RFC 6298's initial RTO (the draft suggests TCP's older 3 s).
    pub initial_rto: Duration,
    /// The least timeout. Default 200 ms, Linux TCP's: an acker's ACKs can be held up by a
    /// busy host for tens of milliseconds, and a spurious timeout collapses the window.
    pub min_rto: Duration,
    /// The least wait before a probe (see [`PgmccStats::probes`]): with no token and
    /// packets unacknowledged for twice the smoothed round trip, one packet goes out.
    /// Default 1 ms, about a timer's granularity.
    pub min_probe: Duration,
    /// The greatest timeout. Default 3 s.
    pub max_rto: Duration,
    /// How long an acker dropped for silence cannot be elected again. Default 30 s: a
    /// receiver that never ACKs (a stack without PGMCC that sends feedback in NAKs, or a
    /// host that means harm) would otherwise stall the session for `retry_max` timeouts
    /// after each election. At most 16 such receivers are remembered.
    pub silent_hold: Duration,
    /// RETRY_MAX (§3): successive timeouts after which the acker is dropped. Default 2, the
    /// draft's recommendation (§2.7).
    pub retry_max: u32,
    /// An acker to prefer: named from the first data packet on, without waiting for its
    /// feedback, and never replaced while it ACKs; after `retry_max` timeouts it is dropped
    /// like any other, and named again after `silent_hold`. For receivers that never
    /// volunteer (OpenPGM's, `docs/pgmcc.md`). Default none.
    pub acker: Option<IpAddr>,
}

impl PgmccConfig {
    /// The documented defaults.
    pub fn new() -> Self {
        Self {
            enabled: true,
            hysteresis: 0.75,
            ssthresh: 4,
            initial_window: 10,
            election_wait: Duration::from_millis(250),
            max_window: 65_536,
            initial_rto: Duration::from_secs(1),
            min_rto: Duration::from_millis(200),
            min_probe: Duration::from_millis(1),
            max_rto: Duration::from_secs(3),
            silent_hold: Duration::from_secs(30),
            retry_max: 2,
            acker: None,
        }
    }

    /// PGMCC switched off.
    pub fn disabled() -> Self {
        Self {
            enabled: false,
            ..Self::new()
        }
    }
}

impl Default for PgmccConfig {
    fn default() -> Self {
        Self::new()
    }
}

/// Counters of a source's PGMCC.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PgmccStats {
    /// ACKs taken from the acker.
    pub acks: u64,
    /// ACKs from receivers other than the acker (they take part in the election only).
    pub acks_other: u64,
    /// ACKs dropped: no feedback option, an address other than the packet's source, or
    /// acknowledging data never sent.
    pub acks_invalid: u64,
    /// Reports (ACKs and NAKs with OPT_PGMCC_FEEDBACK) taken.
    pub reports: u64,
    /// Reports dropped because the receiver they name cannot be an acker: an address of
    /// another family than the source's, unspecified, or multicast.
    pub reports_invalid: u64,
    /// Ackers elected (the first, and each change).
    pub elections: u64,
    /// Window halvings on a loss the acker reported.
    pub halvings: u64,
    /// Timeouts of the acker's ACKs.
    pub timeouts: u64,
    /// Ackers dropped after `retry_max` successive timeouts.
    pub ackers_dropped: u64,
    /// Reports of receivers not elected because they were dropped for silence within
    /// `silent_hold`.
    pub reports_held: u64,
    /// Probes: a token given when the acker had reported nothing new for twice the
    /// smoothed round trip while the source had none, so that a lost last packet is found
    /// by the ACK of the next one rather than after its repair or a timeout (TCP's tail
    /// loss probe, RFC 8985 §7).
    pub probes: u64,
}

/// A snapshot of the controller's state, for metrics and tests.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PgmccState {
    /// The elected acker.
    pub acker: Option<IpAddr>,
    /// W, the window in packets.
    pub window: f64,
    /// T, the tokens (may be below zero after a halving).
    pub tokens: f64,
    /// The current retransmission timeout.
    pub rto: Duration,
    /// Whether window changes are suspended after a halving.
    pub suspended: bool,
}

/// What a feedback report carries (OPT_PGMCC_FEEDBACK).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Report {
    /// The reporting receiver's address.
    pub receiver: IpAddr,
    /// The echoed timestamp, in the source's milliseconds.
    pub tstamp: u32,
    /// The loss rate, 0 to 65535.
    pub loss: u16,
}

/// Ackers dropped for silence that are remembered (see [`PgmccConfig::silent_hold`]).
const SILENT_MAX: usize = 16;

/// The acker and what is known of it.
#[derive(Debug, Clone, Copy)]
struct Acker {
    addr: IpAddr,
    /// M² of §2.4 from its last report.
    m2: f64,
}

/// The acker's acknowledgements: which of the last 64 sequence numbers up to the highest
/// RX_MAX it has reported, and up to where each packet has been judged acknowledged or lost.
#[derive(Debug, Clone, Copy)]
struct Scoreboard {
    /// The highest RX_MAX.
    max: Sqn,
    /// Bit `i`: `max - i` acknowledged.
    bits: u64,
    /// Every sequence number up to this one has been judged.
    judged: Sqn,
    /// The first packet sent naming this acker: older ones are never judged (they went
    /// out before the election, in open loop, and the acker did not ACK them).
    first: Sqn,
}

impl Scoreboard {
    fn new(rx_max: Sqn, bitmap: u32, first: Sqn) -> Self {
        Self {
            max: rx_max,
            bits: u64::from(bitmap),
            // Only RX_MAX itself counts from a new acker's first ACK: its older bits
            // acknowledge packets sent before it was the acker.
            judged: rx_max - 1,
            first,
        }
    }

    /// Merges an ACK; returns (packets newly acknowledged, whether a loss was found).
    /// O(1): at most 64 sequence numbers are judged.
    fn merge(&mut self, rx_max: Sqn, bitmap: u32) -> (u32, bool) {
        if let Some(d) = rx_max.since(self.max).filter(|d| *d > 0) {
            self.bits = if d >= 64 { 0 } else { self.bits << d };
            self.max = rx_max;
            self.bits |= u64::from(bitmap);
        } else if let Some(d) = self.max.since(rx_max).filter(|d| *d < 64) {
            self.bits |= u64::from(bitmap) << d;
        }
        let mut acked = 0;
        let mut lost = false;
        if self.judged.lt(self.first - 1) {
            self.judged = self.first - 1;
        }
        // What fell off the board unacknowledged was lost.
        if self.max.since(self.judged).is_some_and(|d| d > 64) {
            lost = true;
            self.judged = self.max - 64;
        }
        while let Some(pos) = self.max.since(self.judged.next()) {
            let s = self.judged.next();
            if self.bits >> pos & 1 == 1 {
                acked += 1;
            } else if (self.bits & ((1u64 << pos) - 1)).count_ones() >= 3 {
                // PGMCC draft §2.2:
                // A packet unacknowledged and followed by at least 3 acknowledged ones is
                // lost.
                lost = true;
            } else {
                break;
            }
            self.judged = s;
        }
        (acked, lost)
    }
}

/// The source's PGMCC: the acker, the window W and the tokens T (§2.2, §3).
#[derive(Debug, Clone)]
pub(crate) struct Controller {
    cfg: PgmccConfig,
    /// The millisecond clock's origin.
    epoch: Instant,
    acker: Option<Acker>,
    window: f64,
    tokens: f64,
    board: Option<Scoreboard>,
    /// Window changes are suspended until the acker acknowledges this sequence number.
    suspend_until: Option<Sqn>,
    /// The acker's round trip, for the timeout and the probe (reset with each election).
    rtt: RttEstimate,
    /// When the acker's silence becomes a timeout (armed while packets are unacknowledged).
    deadline: Option<Instant>,
    /// When a probe goes out (armed while there is no token and packets are unacknowledged).
    probe_at: Option<Instant>,
    /// A probe went out since the acker's last ACK: no other until the next one.
    probed: bool,
    /// Data waited for a token since the last ACK: the window limited the source.
    limited: bool,
    retry: u32,
    /// The highest sequence number sent as ODATA.
    lead: Option<Sqn>,
    /// The first ODATA sent naming the current acker.
    named_from: Sqn,
    /// Since when there has been no acker, while the election wait runs (`None` while
    /// there is an acker, and once the wait is over).
    no_acker_since: Option<Instant>,
    /// Packets that may still go out before an election (see `initial_window`).
    unclocked: u32,
    /// Ackers dropped for silence, and until when they are not elected again (at most
    /// [`SILENT_MAX`], oldest first).
    silent: std::collections::VecDeque<(IpAddr, Instant)>,
}

impl Controller {
    pub(crate) fn new(cfg: PgmccConfig, now: Instant) -> Self {
        Self {
            unclocked: cfg.initial_window,
            cfg,
            epoch: now,
            acker: None,
            window: 1.0,
            tokens: 1.0,
            board: None,
            suspend_until: None,
            rtt: RttEstimate::default(),
            deadline: None,
            probe_at: None,
            probed: false,
            limited: false,
            retry: 0,
            lead: None,
            named_from: Sqn(0),
            no_acker_since: Some(now),
            silent: std::collections::VecDeque::new(),
        }
    }

    pub(crate) fn state(&self) -> PgmccState {
        PgmccState {
            acker: self.acker.map(|a| a.addr),
            window: self.window,
            tokens: self.tokens,
            rto: self.rto(),
            suspended: self.suspend_until.is_some(),
        }
    }

    /// The timestamp for a data packet sent at `now`: milliseconds since the engine began,
    /// wrapping (§2.1.3).
    pub(crate) fn tstamp(&self, now: Instant) -> u32 {
        now.saturating_duration_since(self.epoch).as_millis() as u32
    }

    /// The acker named in data packets.
    pub(crate) fn acker(&self) -> Option<IpAddr> {
        self.acker.map(|a| a.addr)
    }

    /// Whether ODATA may go out: there is a token; or, with no acker to clock the window,
    /// the initial window is not spent or the election wait is over.
    pub(crate) fn may_send(&self, now: Instant) -> bool {
        match (self.acker, self.no_acker_since) {
            (Some(_), _) => self.tokens >= 1.0,
            (None, Some(since)) => self.unclocked > 0 || now >= since + self.cfg.election_wait,
            (None, None) => true,
        }
    }

    /// Before data goes out: with no acker, a configured one is named without waiting for
    /// its feedback (receivers that never volunteer, such as OpenPGM's, ACK once named),
    /// unless it was dropped for silence within `silent_hold`.
    pub(crate) fn before_data(&mut self, now: Instant, st: &mut PgmccStats) {
        if self.acker.is_none()
            && let Some(a) = self.cfg.acker
            && !self.held(now, a)
        {
            self.elect(a, 0.0, st);
        }
    }

    /// Data or repairs are waiting and there is no token: the window is what limits the
    /// source. If nothing armed will bring a token (no packet in flight, no probe), a probe
    /// is armed, or after one the timeout, so that the clock never waits on nothing.
    pub(crate) fn on_blocked(&mut self, now: Instant) {
        self.limited = true;
        if self.acker.is_some() && self.deadline.is_none() && self.probe_at.is_none() {
            if self.probed {
                self.deadline = Some(now + self.rto());
            } else {
                self.probe_at = Some(now + self.pto());
            }
        }
    }

    /// The retransmission timeout (§2.7): RFC 6298's from the acker's round trips, within
    /// `[min_rto, max_rto]`, or `initial_rto` before any was measured.
    fn rto(&self) -> Duration {
        match self.rtt.srtt() {
            None => self.cfg.initial_rto,
            Some(_) => self.rtt.wait(self.cfg.min_rto, self.cfg.max_rto),
        }
    }

    /// The wait before a probe: twice the smoothed round trip, at least `min_probe`
    /// (`min_rto` before any round trip was measured).
    fn pto(&self) -> Duration {
        self.rtt
            .srtt()
            .map_or(self.cfg.min_rto, |s| s * 2)
            .max(self.cfg.min_probe)
    }

    /// One ODATA went out.
    pub(crate) fn on_odata_sent(&mut self, now: Instant, sqn: Sqn) {
        self.lead = Some(sqn);
        if self.acker.is_none() {
            self.unclocked = self.unclocked.saturating_sub(1);
            return;
        }
        self.tokens -= 1.0;
        if self.deadline.is_none() {
            self.deadline = Some(now + self.rto());
        }
        self.arm_probe(now, true);
    }

    /// Arms the probe while there is no token and packets are unacknowledged (`outstanding`);
    /// disarms it otherwise. An armed probe is not pushed back by sends, only by ACKs.
    fn arm_probe(&mut self, now: Instant, outstanding: bool) {
        if self.tokens >= 1.0 || !outstanding || self.acker.is_none() || self.probed {
            self.probe_at = None;
        } else if self.probe_at.is_none() {
            self.probe_at = Some(now + self.pto());
        }
    }

    /// The next deadline (timeout, probe, or the end of the election wait while data
    /// waits), if any.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        let wait = match (self.acker, self.no_acker_since) {
            (None, Some(since)) if self.unclocked == 0 => Some(since + self.cfg.election_wait),
            _ => None,
        };
        [self.deadline, self.probe_at, wait]
            .into_iter()
            .flatten()
            .min()
    }

    /// The acker's ACKs stopped (§2.7, §3 "on timeout expiration"), a probe is due, or the
    /// election wait is over (from then on, with no acker, the rate limit alone).
    pub(crate) fn handle_timeout(&mut self, now: Instant, st: &mut PgmccStats) {
        if self.acker.is_none()
            && self
                .no_acker_since
                .is_some_and(|since| since + self.cfg.election_wait <= now)
        {
            self.no_acker_since = None;
        }
        if self.probe_at.is_some_and(|p| p <= now) {
            self.probe_at = None;
            if self.tokens < 1.0 && self.acker.is_some() {
                st.probes += 1;
                self.tokens = 1.0;
                self.probed = true;
            }
        }
        if self.deadline.is_none_or(|d| d > now) {
            return;
        }
        st.timeouts += 1;
        self.window = 1.0;
        self.tokens = 1.0;
        self.suspend_until = None;
        self.deadline = None;
        if let Some(b) = &mut self.board {
            // Whatever was in flight is forgotten: late ACKs for it open nothing.
            if let Some(lead) = self.lead {
                b.judged = lead;
                b.max = lead;
                b.bits = 0;
                b.first = lead.next();
            }
        }
        if self.retry < self.cfg.retry_max {
            self.retry += 1;
        } else {
            // PGMCC draft §2.7:
            // After a number of successive timeouts the sender MUST force the election of
            // a new ACKER.
            st.ackers_dropped += 1;
            if let Some(a) = self.acker {
                if self.silent.len() == SILENT_MAX {
                    self.silent.pop_front();
                }
                self.silent.push_back((a.addr, now + self.cfg.silent_hold));
            }
            self.acker = None;
            self.board = None;
            self.retry = 0;
            self.no_acker_since = Some(now);
            self.unclocked = self.cfg.initial_window;
        }
    }

    fn m2(&self, now: Instant, r: &Report) -> f64 {
        // RTT in ms from the echoed timestamp; half a millisecond for a round trip below the
        // clock's resolution, so that a loss still orders receivers.
        let rtt_ms = self.tstamp(now).wrapping_sub(r.tstamp);
        let rtt = if rtt_ms > 1 << 31 {
            0.5
        } else {
            f64::from(rtt_ms).max(0.5)
        };
        let p = f64::from(r.loss) / 65535.0;
        let f = 1.0 + 9.0 * p * (1.0 + 32.0 * p * p);
        rtt * rtt * p * f * f
    }

    /// Whether `addr` was dropped for silence within `silent_hold`. O(16).
    fn held(&mut self, now: Instant, addr: IpAddr) -> bool {
        while self.silent.front().is_some_and(|(_, until)| *until <= now) {
            self.silent.pop_front();
        }
        self.silent.iter().any(|(a, _)| *a == addr)
    }

    fn elect(&mut self, addr: IpAddr, m2: f64, st: &mut PgmccStats) {
        self.acker = Some(Acker { addr, m2 });
        self.no_acker_since = None;
        self.named_from = self.lead.map_or(Sqn(0), Sqn::next);
        st.elections += 1;
        self.board = None;
        self.rtt = RttEstimate::default();
        self.suspend_until = None;
        self.deadline = None;
        self.probe_at = None;
        self.retry = 0;
        self.window = 1.0;
        // PGMCC draft §3:
        // if (ACKER == NO_ACKER) { ACKER = I ; T = T + 1 ; }
        self.tokens = 1.0;
    }

    /// A report from a receiver, in an ACK (`ack` = RX_MAX and bitmap) or a NAK. `backlog`:
    /// data is waiting to be sent; `st`: the counters, which the source keeps. `sent_at` gives when a sequence number was sent, if the
    /// window still holds it. The caller has checked that RX_MAX was sent.
    pub(crate) fn on_report(
        &mut self,
        now: Instant,
        r: Report,
        ack: Option<(Sqn, u32)>,
        backlog: bool,
        st: &mut PgmccStats,
        sent_at: impl Fn(Sqn) -> Option<Instant>,
    ) {
        st.reports += 1;
        let m2 = self.m2(now, &r);
        let preferred = self.cfg.acker == Some(r.receiver);
        let current = self.acker.is_some_and(|a| a.addr == r.receiver);
        // A receiver dropped for silence is not elected again for `silent_hold`, unless an
        // ACK shows it alive while there is no acker (a lone receiver that was starved of
        // CPU for a second would otherwise leave its session without congestion control).
        let revived = self.acker.is_none() && ack.is_some();
        if !current && !revived && self.held(now, r.receiver) {
            st.reports_held += 1;
            return;
        }
        match self.acker {
            None => self.elect(r.receiver, m2, st),
            Some(a) if a.addr != r.receiver => {
                // PGMCC draft §2.3:
                // Node i is selected as the new acker if T_i < C * T_acker, that is
                // M_i² · C² > M_acker².
                let c = self.cfg.hysteresis;
                let fixed = self.cfg.acker == Some(a.addr);
                if preferred || (!fixed && m2 * c * c > a.m2) {
                    self.elect(r.receiver, m2, st);
                } else {
                    if ack.is_some() {
                        st.acks_other += 1;
                    }
                    return;
                }
            }
            Some(_) => {
                if let Some(a) = &mut self.acker {
                    a.m2 = m2;
                }
            }
        }
        self.retry = 0;
        let Some((rx_max, bitmap)) = ack else {
            return;
        };
        st.acks += 1;
        if let Some(sent) = sent_at(rx_max) {
            self.rtt.sample(now.saturating_duration_since(sent));
        }
        let (acked, lost) = match &mut self.board {
            Some(b) => b.merge(rx_max, bitmap),
            None => {
                let mut b = Scoreboard::new(rx_max, bitmap, self.named_from);
                let first = b.merge(rx_max, bitmap);
                self.board = Some(b);
                first
            }
        };
        self.update_window(acked, lost, backlog, st);
        // Re-armed while packets remain unacknowledged (§3 "update_timeout").
        let max = self.board.map(|b| b.max);
        let outstanding = matches!((self.lead, max), (Some(l), Some(m)) if l.gt(m));
        self.deadline = outstanding.then(|| now + self.rto());
        self.probe_at = None;
        self.probed = false;
        self.arm_probe(now, outstanding);
        if !outstanding && self.tokens < 1.0 {
            // The acker has reported the last packet sent: nothing is in flight, and no
            // ACK will come to return a token. Packets lost in this window took theirs
            // with them; without one to spend, the ACK clock would stop for good (the
            // draft's pseudo-code stalls here until a timeout that it never arms).
            self.tokens = 1.0;
        }
    }

    fn update_window(&mut self, acked: u32, lost: bool, backlog: bool, st: &mut PgmccStats) {
        let max = self.board.map(|b| b.max);
        if let (Some(until), Some(max)) = (self.suspend_until, max) {
            if max.lt(until) {
                // Suspended: no window change, but each acknowledged packet returns its token.
                self.tokens = (self.tokens + f64::from(acked)).min(self.window);
                return;
            }
            self.suspend_until = None;
        }
        if lost {
            // PGMCC draft §2.2:
            // T = T - W/2 , W = W/2; then window changes are suspended for one RTT.
            st.halvings += 1;
            self.tokens -= self.window / 2.0;
            self.window = (self.window / 2.0).max(1.0);
            self.suspend_until = Some(self.lead.map_or(Sqn(0), Sqn::next));
            self.tokens = (self.tokens + f64::from(acked)).min(self.window);
            return;
        }
        if !std::mem::take(&mut self.limited) && !backlog {
            // The source did not use its window (it had fewer packets to send than
            // tokens): each acknowledged packet returns its token, and W does not grow on
            // a rate it never tried (RFC 7661's reasoning for TCP).
            self.tokens = (self.tokens + f64::from(acked)).min(self.window);
            return;
        }
        let mut n = f64::from(acked);
        let ss = f64::from(self.cfg.ssthresh);
        if self.window < ss {
            let d = n.min(ss - self.window);
            n -= d;
            self.tokens += 2.0 * d;
            self.window += d;
        }
        self.tokens += n * (1.0 + 1.0 / self.window);
        self.window += n / self.window;
        self.window = self.window.min(f64::from(self.cfg.max_window.max(1)));
        self.tokens = self.tokens.min(self.window);
    }
}

/// A receiver's PGMCC state for one source: the loss rate (§2.6), the last timestamp (§2.5),
/// the ACK bitmap (§2.1.2) and whether an ACK is due.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Feedback {
    /// The loss rate in 16.16 fixed point: 0 (none) to 65536 (all).
    loss: u32,
    /// The timestamp of the most recent data packet, and when it arrived.
    tstamp: Option<(u32, Instant)>,
    /// The highest ODATA sequence number received, and the status of the 31 before it.
    rx_max: Option<Sqn>,
    bitmap: u32,
    /// The volunteer ACK's deadline (data named no acker).
    pub(crate) volunteer: Option<Instant>,
}

/// c of §2.6, in 16.16: 500/65536.
const LOSS_C: u64 = 500;

impl Feedback {
    /// An ODATA `sqn` arrived with OPT_PGMCC_DATA `tstamp` at `now`.
    pub(crate) fn on_odata(&mut self, now: Instant, sqn: Sqn, tstamp: u32) {
        self.tstamp = Some((tstamp, now));
        match self.rx_max {
            None => {
                self.rx_max = Some(sqn);
                // Sequence numbers before the first one heard count as received (OpenPGM
                // does the same), or the source would see losses at every join.
                self.bitmap = u32::MAX;
                self.sample(false, 1);
            }
            Some(max) => match sqn.since(max) {
                Some(0) => {}
                Some(d) => {
                    let missed = d - 1;
                    self.bitmap = if d >= 32 { 0 } else { self.bitmap << d } | 1;
                    self.rx_max = Some(sqn);
                    self.sample(true, missed);
                    self.sample(false, 1);
                }
                None => {
                    // Older than RX_MAX: a reordered packet, already counted as lost.
                    if let Some(back) = max.since(sqn).filter(|b| *b < 32) {
                        self.bitmap |= 1 << back;
                    }
                }
            },
        }
    }

    /// An RDATA `sqn` arrived: the packet is marked received in the bitmap (the source has
    /// judged its loss already, if it was ever going to), so that an ACK after a repair of
    /// the last packet sent lets the source see its flight empty without a timeout. A
    /// repair beyond RX_MAX counts its ODATA, and those before it, as lost.
    pub(crate) fn on_rdata(&mut self, sqn: Sqn) {
        let Some(max) = self.rx_max else { return };
        match sqn.since(max) {
            Some(0) => {}
            Some(d) => {
                self.bitmap = if d >= 32 { 0 } else { self.bitmap << d } | 1;
                self.rx_max = Some(sqn);
                self.sample(true, d);
            }
            None => {
                if let Some(back) = max.since(sqn).filter(|b| *b < 32) {
                    self.bitmap |= 1 << back;
                }
            }
        }
    }

    /// Applies `n` samples of x (lost or received) to the EWMA `p ← p + c(x − p)`, in
    /// O(1): n steps of the filter give `p ← x + (p − x)(1 − c)^n`.
    fn sample(&mut self, lost: bool, n: u32) {
        if n == 0 {
            return;
        }
        let keep = (1.0 - LOSS_C as f64 / 65536.0).powi(n.min(1 << 20) as i32);
        let x = if lost { 65536.0 } else { 0.0 };
        let p = x + (f64::from(self.loss) - x) * keep;
        self.loss = p.round().clamp(0.0, 65536.0) as u32;
    }

    /// The loss rate as carried on the wire, 0 to 65535.
    pub(crate) fn loss_rate(&self) -> u16 {
        self.loss.min(65535) as u16
    }

    /// RX_MAX and the bitmap, once ODATA has arrived.
    pub(crate) fn ack(&self) -> Option<(Sqn, u32)> {
        self.rx_max.map(|m| (m, self.bitmap))
    }

    /// The timestamp to echo at `now`: the last one received plus the milliseconds it was
    /// held (§2.5.1), if any data carried one.
    pub(crate) fn echo(&self, now: Instant) -> Option<u32> {
        self.tstamp
            .map(|(t, at)| t.wrapping_add(now.saturating_duration_since(at).as_millis() as u32))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_loss_filter_in_closed_form_matches_step_by_step() {
        let mut a = Feedback::default();
        let mut b = Feedback::default();
        a.sample(true, 37);
        for _ in 0..37 {
            b.sample(true, 1);
        }
        assert!(a.loss.abs_diff(b.loss) <= 37, "{} vs {}", a.loss, b.loss);
        // One step from zero: c·65536 = 500.
        let mut c = Feedback::default();
        c.sample(true, 1);
        assert_eq!(c.loss, 500);
    }

    #[test]
    fn the_scoreboard_judges_a_hole_only_behind_three_acknowledged_packets() {
        let mut b = Scoreboard::new(Sqn(10), 1, Sqn(0));
        assert_eq!(b.merge(Sqn(10), 1), (1, false));
        // 11 missing, 12 and 13 acknowledged: not yet a loss.
        assert_eq!(b.merge(Sqn(13), 0b011), (0, false));
        // 14 too: 11 is lost, 12..14 acknowledged.
        assert_eq!(b.merge(Sqn(14), 0b0111), (3, true));
        // An old ACK changes nothing.
        assert_eq!(b.merge(Sqn(12), 0b1), (0, false));
    }
}
