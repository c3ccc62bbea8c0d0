//! One source's receive window: which sequence numbers are held, missing or lost, how the
//! window moves, and how messages are reassembled and delivered in order.
//!
//! The window never holds more than `rxw_sqns` slots, whatever a packet says: a packet
//! beyond it is not stored, and a jump of the window (a trailing edge past data still
//! missing, or data or an SPM lead beyond the window) is taken only when a second packet of
//! the session's source agrees with it (see `Peer::observe`). A jump then costs one loss
//! event, not one slot per skipped sequence number.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::nak::{NakState, RttEstimate, random_upto};
use super::{EndReason, Event, ReceiverStats};
use crate::proto::EngineRng;
use crate::proto::pgmcc::Feedback;
use crate::wire::{Sqn, Tsi};

/// What one slot of the window costs besides its data, for the buffer bound: the slot and
/// its timer entry.
/// NAK packets a new session may draw before its source has sent more packets.
pub(super) const NAK_CREDIT_START: u32 = 64;
/// Most NAK packets a session may have in hand: what a burst loss of 64k sequence numbers
/// takes (1,024 NAKs of 64), after a session has sent at least as many packets.
pub(super) const NAK_CREDIT_MAX: u32 = 1024;

pub(super) const SLOT_COST: usize = size_of::<Slot>() + size_of::<Reverse<(Instant, u32)>>();

/// One sequence number of the window.
#[derive(Debug)]
pub(super) enum Slot {
    Missing {
        state: NakState,
        /// When the state's timer expires; `None` while parked: NAKs wait for the
        /// session's first SPM (§6.2).
        deadline: Option<Instant>,
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
pub(super) enum SpmrState {
    /// No SPMR needed (an SPM was heard, or nothing is missing yet).
    Idle,
    /// Backing off before an SPMR.
    BackOff(Instant),
    /// An SPMR went out or was heard; wait until then before another.
    Wait(Instant),
}

#[derive(Debug, Clone, Copy)]
pub(super) struct PendingPolr {
    pub(super) sqn: Sqn,
    pub(super) round: u16,
    pub(super) dest: IpAddr,
    pub(super) deadline: Instant,
}

/// A window jump one packet asked for, waiting for a second packet to agree.
#[derive(Debug, Clone, Copy)]
pub(super) struct Jump {
    lead: Sqn,
    trail: Sqn,
    at: Instant,
}

/// What the window does about a packet's lead and trail (see [`Peer::observe`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Observed {
    /// Nothing to do: the packet is within the window and its trail loses nothing.
    InWindow,
    /// The jump is held until a second packet agrees.
    Held,
    /// Two packets agree: move the window start to this sequence number.
    Jump(Sqn),
}

/// One source's state.
#[derive(Debug)]
pub(super) struct Peer {
    pub(super) tsi: Tsi,
    /// The source's unicast address: the IP source of the session's first ODATA or SPM.
    /// ODATA, SPMs and POLLs of the session from any other address are dropped; it is
    /// NAK_SRC and the SPMR destination.
    pub(super) source_addr: IpAddr,
    /// SPM_PATH of the last in-sequence SPM: where NAKs go. `None` before the first SPM,
    /// and then no NAK is sent (§6.2).
    pub(super) nak_target: Option<IpAddr>,
    pub(super) last_spm_sqn: Option<Sqn>,
    pub(super) last_heard: Instant,
    /// Packets taken from the source's address (ODATA, SPMs), saturating: a source heard
    /// of only once may be forgotten to make room for another.
    pub(super) heard: u32,
    /// NAK packets this source's session may still draw: [`NAK_CREDIT_START`] at first, one
    /// more per packet taken from its source, at most [`NAK_CREDIT_MAX`].
    pub(super) nak_credit: u32,
    /// The next sequence number to deliver; `slots[i]` is `next + i`.
    pub(super) next: Sqn,
    pub(super) started: bool,
    /// While set, the session is new and delivery waits until then for older ODATA that
    /// arrives out of order (see [`super::ReceiverConfig::join_hold`]).
    pub(super) hold_until: Option<Instant>,
    pub(super) slots: VecDeque<Slot>,
    pub(super) timers: BinaryHeap<Reverse<(Instant, u32)>>,
    /// A message being reassembled: its first sqn, length, and bytes so far.
    pub(super) apdu: Option<(Sqn, u32, Vec<u8>)>,
    /// Fragments of this message are dropped (its start was lost).
    pub(super) skip_apdu: Option<Sqn>,
    /// A pending loss range, reported when delivery passes it.
    pub(super) loss: Option<(Sqn, u32)>,
    /// The last sequence number of the session, once OPT_FIN was seen.
    pub(super) fin_lead: Option<Sqn>,
    pub(super) ended: bool,
    /// Why the session ended, until the event is queued (after the window's last events).
    pub(super) end: Option<EndReason>,
    /// The session's `SessionEnd` was queued: no event of it may follow.
    pub(super) end_sent: bool,
    pub(super) spmr: SpmrState,
    /// SPMRs sent for this source without an SPM in answer (their spacing doubles).
    pub(super) spmr_attempts: u32,
    pub(super) polr: Option<PendingPolr>,
    /// POLL_SQN of the last POLL seen with POLL_ROUND 0 (App. D).
    pub(super) poll_round0: Option<Sqn>,
    /// NAK to NCF, and NCF to RDATA, as measured (see `adaptive_nak_timers`).
    pub(super) ncf_rtt: RttEstimate,
    pub(super) rdata_rtt: RttEstimate,
    /// A jump waiting for a second packet to agree.
    jump: Option<Jump>,
    /// Bytes this source holds: its slots (at [`SLOT_COST`] each), their data and the
    /// message being reassembled.
    pub(super) bytes: usize,
    /// The time of this source's entry in the engine's wake-up queue, if it has one.
    pub(super) wake: Option<Instant>,
    /// PGMCC: the loss rate, the ACK bitmap and the ACK's schedule.
    pub(super) cc: Feedback,
    /// An ACK for this source waits in the transmit queue.
    pub(super) ack_queued: bool,
}

impl Peer {
    /// One packet taken from the source: one more NAK it may draw.
    pub(super) fn earn_nak_credit(&mut self) {
        self.nak_credit = (self.nak_credit + 1).min(NAK_CREDIT_MAX);
    }

    pub(super) fn new(tsi: Tsi, source_addr: IpAddr, now: Instant) -> Self {
        Self {
            tsi,
            source_addr,
            nak_target: None,
            last_spm_sqn: None,
            last_heard: now,
            heard: 0,
            nak_credit: NAK_CREDIT_START,
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
            end: None,
            end_sent: false,
            spmr: SpmrState::Idle,
            spmr_attempts: 0,
            polr: None,
            poll_round0: None,
            ncf_rtt: RttEstimate::default(),
            rdata_rtt: RttEstimate::default(),
            jump: None,
            bytes: 0,
            wake: None,
            cc: Feedback::default(),
            ack_queued: false,
        }
    }

    /// The earliest instant this source has something to do, given `expiry`.
    pub(super) fn next_deadline(&self, expiry: Duration) -> Instant {
        let mut t = self.last_heard + expiry;
        let mut take = |x: Instant| t = t.min(x);
        if let Some(at) = self.hold_until {
            take(at);
        }
        if let Some(Reverse((at, _))) = self.timers.peek() {
            take(*at);
        }
        match self.spmr {
            SpmrState::BackOff(at) => take(at),
            SpmrState::Wait(at) if self.nak_target.is_none() => take(at),
            _ => {}
        }
        if let Some(polr) = self.polr {
            take(polr.deadline);
        }
        if let Some(at) = self.cc.volunteer {
            take(at);
        }
        t
    }

    /// Starts the join hold (see [`super::ReceiverConfig::join_hold`]).
    pub(super) fn hold(&mut self, now: Instant, hold: Duration) {
        if !hold.is_zero() {
            self.hold_until = Some(now + hold);
        }
    }

    /// When the window starts at `sqn` in the middle of a message, the message's start is
    /// not ours to get: its fragments are skipped.
    pub(super) fn skip_mid_message(&mut self, sqn: Sqn, fragment: Option<(Sqn, u32, u32)>) {
        self.skip_apdu = match fragment {
            Some((first, _, _)) if first != sqn && self.next == sqn => Some(first),
            _ => None,
        };
    }

    /// A new Missing slot, in BACK-OFF (§6.3); parked until an SPM names a NAK target.
    fn missing(&mut self, sqn: Sqn, now: Instant, nak_bo: Duration, rng: &mut EngineRng) -> Slot {
        let deadline = self.nak_target.map(|_| {
            let at = now + random_upto(rng, nak_bo);
            self.timers.push(Reverse((at, sqn.0)));
            at
        });
        Slot::Missing {
            state: NakState::BackOff,
            deadline,
            since: now,
            detected: now,
            ncf_retries: 0,
            data_retries: 0,
        }
    }

    /// Whether any missing sequence number waits for the session's first SPM to be NAKed.
    pub(super) fn has_parked(&self) -> bool {
        self.nak_target.is_none()
            && self
                .slots
                .iter()
                .any(|s| matches!(s, Slot::Missing { deadline: None, .. }))
    }

    /// The session's first SPM arrived: the missing sequence numbers parked until then
    /// start their back-off now.
    pub(super) fn unpark(&mut self, now: Instant, nak_bo: Duration, rng: &mut EngineRng) {
        for (i, s) in self.slots.iter_mut().enumerate() {
            if let Slot::Missing {
                deadline: deadline @ None,
                since,
                detected,
                ..
            } = s
            {
                let at = now + random_upto(rng, nak_bo);
                *deadline = Some(at);
                *since = now;
                *detected = now;
                self.timers.push(Reverse((at, (self.next + i as u32).0)));
            }
        }
    }

    /// Keeps the timer queue within twice the slots (plus a constant): stale entries (of
    /// delivered slots, or states that moved on) are dropped by rebuilding it from the
    /// slots. Amortised O(1) per entry pushed.
    pub(super) fn compact_timers(&mut self) {
        if self.timers.len() <= 2 * self.slots.len() + 64 {
            return;
        }
        let next = self.next;
        self.timers = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| match s {
                Slot::Missing {
                    deadline: Some(at), ..
                } => Some(Reverse((*at, (next + i as u32).0))),
                _ => None,
            })
            .collect();
    }

    /// Decides what the window does about a packet of the session's source that says data up
    /// to `lead` was sent and data before `trail` can no longer be repaired.
    ///
    /// A packet that would make the receiver give up data (a trail past `next`) or move the
    /// window (a lead `rxw` or more past `next`) is not acted on alone: a corrupt or forged
    /// packet must not make the receiver declare lost what the source still holds, nor
    /// skip the data it still sends. It is held until a second packet within `confirm`
    /// agrees: a lead within `rxw` of the first one's. The window then starts at the
    /// earlier of the two trails, or later if the later lead needs it to fit within `rxw`.
    pub(super) fn observe(
        &mut self,
        lead: Sqn,
        trail: Sqn,
        now: Instant,
        rxw: u32,
        confirm: Duration,
    ) -> Observed {
        if !self.started {
            return Observed::InWindow;
        }
        let far = lead.since(self.next).is_some_and(|d| d >= rxw);
        if !far && !trail.gt(self.next) {
            return Observed::InWindow;
        }
        match self.jump.take() {
            Some(j)
                if now.saturating_duration_since(j.at) <= confirm && near(j.lead, lead, rxw) =>
            {
                let trail = if j.trail.lt(trail) { j.trail } else { trail };
                let lead = if j.lead.gt(lead) { j.lead } else { lead };
                let floor = lead - (rxw - 1);
                let start = if floor.gt(trail) { floor } else { trail };
                if start.gt(self.next) {
                    Observed::Jump(start)
                } else {
                    Observed::InWindow
                }
            }
            _ => {
                self.jump = Some(Jump {
                    lead,
                    trail,
                    at: now,
                });
                Observed::Held
            }
        }
    }

    /// Moves the start of a held window back to `sqn`, older than it, when the source still
    /// holds `sqn` (not behind `trail`) and the window stays within `rxw`. Everything from
    /// `sqn` to the old start becomes Missing (in BACK-OFF); the caller fills `sqn` itself.
    pub(super) fn rewind_to(
        &mut self,
        sqn: Sqn,
        trail: Sqn,
        now: Instant,
        (nak_bo, rxw): (Duration, u32),
        budget: usize,
        rng: &mut EngineRng,
    ) -> bool {
        let Some(back) = self.next.since(sqn) else {
            return false;
        };
        if back == 0
            || sqn.lt(trail)
            || self.slots.len() as u64 + u64::from(back) > u64::from(rxw)
            || (back as usize).saturating_mul(SLOT_COST) > budget
        {
            return false;
        }
        self.next = sqn;
        for i in (0..back).rev() {
            let slot = self.missing(sqn + i, now, nak_bo, rng);
            self.slots.push_front(slot);
            self.bytes += SLOT_COST;
        }
        true
    }

    /// How many slots the window would need to hold `sqn`, beyond those it has; `None` if
    /// `sqn` is before the window or `rxw` or more past its start.
    pub(super) fn growth_for(&self, sqn: Sqn, rxw: u32) -> Option<usize> {
        let off = sqn.since(self.next)?;
        (off < rxw).then(|| (off as usize + 1).saturating_sub(self.slots.len()))
    }

    /// Creates Missing slots (in BACK-OFF, §6.3) for every sequence number from the end of the
    /// window up to, not including, `end`, which must be at most `rxw` past `next` (the
    /// caller checks with [`Peer::growth_for`]).
    pub(super) fn extend_to(
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
        for i in self.slots.len() as u32..ahead.min(rxw) {
            let slot = self.missing(self.next + i, now, nak_bo, rng);
            self.slots.push_back(slot);
            self.bytes += SLOT_COST;
        }
    }

    /// Stores the data of `sqn`, within the window (after [`Peer::extend_to`]). With
    /// `missing_only`, only a Missing slot is filled. Returns whether it was new.
    pub(super) fn store(
        &mut self,
        sqn: Sqn,
        tsdu: &[u8],
        fragment: Option<(Sqn, u32, u32)>,
        rdata: bool,
        missing_only: bool,
        now: Instant,
    ) -> bool {
        let Some(off) = sqn.since(self.next) else {
            return false;
        };
        let have = Slot::Have {
            tsdu: tsdu.into(),
            fragment,
        };
        let len = self.slots.len();
        match self.slots.get_mut(off as usize) {
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
                        self.rdata_rtt.sample(now.saturating_duration_since(*since));
                    }
                }
                *slot = have;
                self.bytes += tsdu.len();
                true
            }
            Some(_) => false,
            None if !missing_only && off as usize == len => {
                self.slots.push_back(have);
                self.bytes += SLOT_COST + tsdu.len();
                true
            }
            None => false,
        }
    }

    /// Gives up every missing sequence number before `start` and moves the window there (a
    /// jump two packets agreed on). Work is bounded by the slots held: what lies beyond
    /// them is reported lost as one range.
    pub(super) fn skip_to(
        &mut self,
        start: Sqn,
        max_apdu: usize,
        events: &mut Vec<Event>,
        stats: &mut ReceiverStats,
    ) {
        let Some(b) = start.since(self.next) else {
            return;
        };
        self.hold_until = None;
        for s in self.slots.iter_mut().take(b as usize) {
            if let Slot::Missing { .. } = s {
                *s = Slot::Lost;
            }
        }
        if b as usize <= self.slots.len() {
            return; // delivery passes the lost slots
        }
        self.drain(max_apdu, events, stats);
        let Some(gap) = start.since(self.next).filter(|g| *g > 0) else {
            return;
        };
        match self.apdu.take() {
            Some((first, _, buf)) => {
                self.bytes -= buf.capacity();
                self.lose_apdu(first, start - 1, events);
            }
            None => self.note_loss_range(self.next, gap, events),
        }
        self.next = start;
        self.skip_apdu = None;
    }

    /// Gives up every pending repair: what is missing is lost.
    pub(super) fn reset(&mut self) {
        for s in self.slots.iter_mut() {
            if let Slot::Missing { .. } = s {
                *s = Slot::Lost;
            }
        }
    }

    /// Adds `count` sequence numbers from `first` to the pending loss range, reporting the
    /// previous range if not adjacent.
    fn note_loss_range(&mut self, first: Sqn, count: u32, events: &mut Vec<Event>) {
        match &mut self.loss {
            Some((f, c)) if *f + *c == first && c.checked_add(count).is_some() => *c += count,
            _ => {
                self.flush_loss(events);
                self.loss = Some((first, count));
            }
        }
    }

    pub(super) fn flush_loss(&mut self, events: &mut Vec<Event>) {
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
        match upto.since(first) {
            Some(n) if n < u32::MAX => self.note_loss_range(first, n + 1, events),
            _ => self.note_loss_range(upto, 1, events),
        }
    }

    /// Delivers every contiguous received or lost slot at the front of the window.
    pub(super) fn drain(
        &mut self,
        max_apdu: usize,
        events: &mut Vec<Event>,
        stats: &mut ReceiverStats,
    ) {
        loop {
            let sqn = self.next;
            match self.slots.pop_front() {
                None => break,
                Some(slot @ Slot::Missing { .. }) => {
                    self.slots.push_front(slot);
                    break;
                }
                Some(Slot::Lost) => {
                    self.bytes -= SLOT_COST;
                    self.next = sqn.next();
                    match self.apdu.take() {
                        // The message this sqn belonged to is lost whole.
                        Some((first, _, buf)) => {
                            self.bytes -= buf.capacity();
                            self.lose_apdu(first, sqn, events);
                        }
                        None => self.note_loss_range(sqn, 1, events),
                    }
                }
                Some(Slot::Have { tsdu, fragment }) => {
                    self.bytes -= SLOT_COST + tsdu.len();
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

    /// The message being reassembled is dropped: its bytes leave the account.
    fn take_apdu(&mut self) -> Option<(Sqn, u32, Vec<u8>)> {
        let a = self.apdu.take()?;
        self.bytes -= a.2.capacity();
        Some(a)
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
            if let Some((first, _, _)) = self.take_apdu() {
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
            return self.note_loss_range(sqn, 1, events);
        }
        if offset != 0 && self.apdu.is_none() {
            // The rest of a message whose first fragment was lost.
            self.skip_apdu = Some(first);
            return self.note_loss_range(sqn, 1, events);
        }
        if offset == 0 {
            if let Some((prev, _, _)) = self.take_apdu() {
                stats.bad_fragments += 1;
                self.lose_apdu(prev, sqn - 1, events);
            }
            if first != sqn || length as usize > max_apdu {
                stats.bad_fragments += u64::from(first != sqn);
                self.skip_apdu = Some(first);
                return self.note_loss_range(sqn, 1, events);
            }
            self.skip_apdu = None;
            // Grown as fragments arrive, never reserved from the length a packet claims.
            self.apdu = Some((first, length, Vec::new()));
        }
        let before = self.apdu.as_ref().map_or(0, |a| a.2.capacity());
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
        let after = self.apdu.as_ref().map_or(0, |a| a.2.capacity());
        self.bytes = self.bytes + after - before;
        if !fits {
            stats.bad_fragments += 1;
            match self.take_apdu() {
                Some((f, _, _)) => self.lose_apdu(f, sqn, events),
                None => {
                    self.skip_apdu = Some(first);
                    self.note_loss_range(sqn, 1, events);
                }
            }
            return;
        }
        if let Some((_, len, buf)) = &self.apdu {
            if buf.len() == *len as usize {
                if let Some((_, _, data)) = self.take_apdu() {
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

/// `a` and `b` lie within `rxw` of each other, either way round.
fn near(a: Sqn, b: Sqn, rxw: u32) -> bool {
    a.0.wrapping_sub(b.0) < rxw || b.0.wrapping_sub(a.0) < rxw
}

/// Where a new session's window starts, given the first sequence number a receiver can take
/// (`first`), the source's trailing edge, and OPT_JOIN's minimum if the source offers one
/// (§9.4: "receivers that join a transport session in progress MAY request repair of all
/// data as far back as the given minimum sequence number"). Never more than `rxw` back.
pub(super) fn join_point(first: Sqn, trail: Sqn, join: Option<Sqn>, rxw: u32) -> Sqn {
    let Some(min) = join else { return first };
    let start = if min.lt(trail) { trail } else { min };
    match first.since(start) {
        Some(back) if back < rxw => start,
        _ => first,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn near_is_symmetric_and_wraps() {
        assert!(near(Sqn(u32::MAX), Sqn(2), 4));
        assert!(near(Sqn(2), Sqn(u32::MAX), 4));
        assert!(!near(Sqn(0), Sqn(1 << 30), 1 << 15));
    }
}
