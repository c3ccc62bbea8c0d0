//! Repair state per (TSI, SQN) (§7.2–§7.4, §7.8, §9.5.3.2) and the tables that hold it.
//!
//! States live in a slab; each TSI indexes its own by sequence number. Timer and eviction
//! entries name the slot together with the state's creation number, so an entry left behind
//! by a state that is gone (or whose slot was reused) is recognised as stale. Both queues are
//! lazy: stale entries leave when they reach the front, or in a compaction once they
//! outnumber the live states, so their length follows the live states (at most 2 eviction
//! entries and 4 timer entries per live state, plus a constant), amortized O(1) per entry.

use super::super::slab::Slab;
use super::super::timers::{Fifo, Tick, Ticks, TimerLanes};
use super::tsi::TsiState;
use super::{NeConfig, RepairPhase};
use crate::wire::Tsi;

/// Repair state for one (TSI, SQN). Kept small (56 bytes; times are engine [`Tick`]s, not
/// `Instant`s): there may be `max_repair_states` of them.
#[derive(Debug, Clone, Copy)]
pub(super) struct RepairState {
    /// Interfaces (positions in `NeConfig::interfaces`) that asked for the repair.
    pub(super) ifaces: u64,
    /// The interfaces an NCF went to within `ncf_holdoff` of `ncf_at` (the NCF storm limit
    /// is tracked coarsely, per state rather than per interface).
    ncf_mask: u64,
    /// Pending: NAK_RPT_IVL expiry. Outstanding: NAK_RDATA_IVL expiry.
    pub(super) deadline: Tick,
    /// Pending: next repeat. Outstanding: end of NAK elimination.
    pub(super) aux: Tick,
    /// When the last NCF went out, if `ncf_sent`.
    ncf_at: Tick,
    /// Creation order, for eviction; its low 32 bits tell the state's timer entries apart
    /// from those of an earlier state in the same slot.
    seq_no: u64,
    pub(super) phase: RepairPhase,
    /// An NCF was sent for it (`ncf_at` is valid).
    ncf_sent: bool,
    /// Created by an NNAK: the next NAK is not eliminated, and the state lives only
    /// NAK_ELIM_IVL (§9.5.3.2).
    pub(super) nnak: bool,
    /// The pending NAK went to a DLR (§9.5.3.2).
    pub(super) via_dlr: bool,
    /// Never send this sequence number to the DLR again: it NAKed it itself, or did not
    /// answer.
    pub(super) no_dlr: bool,
}

impl RepairState {
    /// A new state, outstanding until `deadline`, NAKs eliminated until `aux`.
    pub(super) fn new(deadline: Tick, aux: Tick, nnak: bool) -> Self {
        Self {
            ifaces: 0,
            ncf_mask: 0,
            deadline,
            aux,
            ncf_at: Tick::default(),
            seq_no: 0,
            phase: RepairPhase::Outstanding,
            ncf_sent: false,
            nnak,
            via_dlr: false,
            no_dlr: false,
        }
    }

    /// Whether an NCF went out on the interface of `bit` within `holdoff` of `now`.
    pub(super) fn ncf_recent(&self, now: Tick, holdoff: Ticks, bit: u64) -> bool {
        self.ncf_sent && now.since(self.ncf_at) < holdoff && self.ncf_mask & bit != 0
    }

    /// Records an NCF sent at `now` on the interface of `bit`.
    pub(super) fn stamp_ncf(&mut self, now: Tick, holdoff: Ticks, bit: u64) {
        if self.ncf_sent && now.since(self.ncf_at) < holdoff {
            self.ncf_mask |= bit;
        } else {
            self.ncf_sent = true;
            self.ncf_at = now;
            self.ncf_mask = bit;
        }
    }

    /// Whether NAKs for it are eliminated at `now` (§7.4, §9.3.3): pending, or outstanding
    /// within NAK_ELIM_IVL of its confirmation. A state an NNAK created never eliminates.
    //= https://www.rfc-editor.org/rfc/rfc3208#section-7.4
    //# Once a NAK is outstanding, network elements MUST discard all
    //# duplicates of that NAK for NAK_ELIM_IVL.
    //= https://www.rfc-editor.org/rfc/rfc3208#section-7.4
    //# Upon expiry of
    //# NAK_ELIM_IVL, network elements MUST suspend NAK elimination for that
    //# TSI/SQN until the first duplicate of that NAK is seen after the
    //# expiry of NAK_ELIM_IVL.
    //= https://www.rfc-editor.org/rfc/rfc3208#section-7.5
    //# Upon expiry of NAK_ELIM_IVL, network elements MUST
    //# suspend NAK elimination for that TSI/SQN until the first duplicate of
    //# that NAK is seen after the expiry of NAK_ELIM_IVL.
    // `aux` is the end of NAK_ELIM_IVL for an outstanding state, confirmed (§7.4) or
    // anticipated (§7.5); past it nothing is eliminated until a NAK makes the state pending.
    pub(super) fn eliminates(&self, now: Tick) -> bool {
        !self.nnak
            && match self.phase {
                RepairPhase::Pending => true,
                RepairPhase::Outstanding => now < self.aux,
            }
    }

    /// Whether a timer entry due at `at` is one the state still needs: its next repeat or
    /// its deadline.
    fn wakes_at(&self, at: Tick) -> bool {
        at == self.deadline || (self.phase == RepairPhase::Pending && at == self.aux)
    }

    /// The key of the state's timer entries in `slot`.
    fn key(&self, slot: u32) -> TimerKey {
        TimerKey {
            slot,
            // Truncated on purpose: only told apart from the slot's earlier occupants.
            generation: self.seq_no as u32,
        }
    }
}

/// A repair state in the engine's slab, with its key. The TSI's index maps the sequence
/// number to the slot; timers and the eviction queue refer to the slot.
#[derive(Debug, Clone, Copy)]
pub(super) struct RepairSlot {
    pub(super) st: RepairState,
    pub(super) tsi: Tsi,
    pub(super) sqn: u32,
}

// The memory target of BENCHMARKS.md (at most 256 bytes per repair state, tables and queues
// included) rests on these sizes.
const _: () = assert!(size_of::<Option<RepairSlot>>() <= 72);
const _: () = assert!(size_of::<(Tick, TimerKey)>() <= 16);

/// What a repair-state timer entry names: a slot, and which of its occupants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct TimerKey {
    slot: u32,
    generation: u32,
}

/// The engine's repair-state intervals in ticks, from the configuration.
#[derive(Debug, Clone, Copy)]
pub(super) struct Intervals {
    rpt: Ticks,
    /// At least one tick: a zero repeat interval would repeat forever within one call.
    pub(super) rte: Ticks,
    pub(super) rdata: Ticks,
    pub(super) elim: Ticks,
    pub(super) holdoff: Ticks,
}

impl Intervals {
    pub(super) fn new(c: &NeConfig) -> Self {
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

/// Every TSI's repair states, their wake-ups and their eviction order.
#[derive(Debug, Default)]
pub(super) struct RepairTable {
    slab: Slab<RepairSlot>,
    /// Wake-ups, one FIFO per interval. An entry is only a wake-up: the state's own times
    /// decide what is due, and an entry whose state is gone or has moved on finds nothing to
    /// do. Each live state has an entry at each of its deadlines, and at most one per
    /// deadline: a timer is not pushed again for a deadline the state already has.
    timers: TimerLanes<TimerKey>,
    /// States in creation order, as (slot, `seq_no`), for eviction.
    order: Fifo<(u32, u64)>,
    count: usize,
    seq_no: u64,
}

impl RepairTable {
    /// Live states.
    pub(super) fn len(&self) -> usize {
        self.count
    }

    /// Stores a new state for (`tsi`, `sqn`); `None` only if 2^32 - 1 states are in memory
    /// (memory runs out first).
    pub(super) fn insert(&mut self, tsi: Tsi, sqn: u32, mut st: RepairState) -> Option<u32> {
        st.seq_no = self.seq_no;
        let slot = self.slab.insert(RepairSlot { st, tsi, sqn })?;
        self.order.push_back((slot, self.seq_no));
        self.seq_no += 1;
        self.count += 1;
        Some(slot)
    }

    /// The state in `slot`.
    pub(super) fn get(&self, slot: u32) -> Option<&RepairState> {
        self.slab.get(slot).map(|r| &r.st)
    }

    /// The state in `slot`.
    pub(super) fn get_mut(&mut self, slot: u32) -> Option<&mut RepairState> {
        self.slab.get_mut(slot).map(|r| &mut r.st)
    }

    /// The state of `sqn` in `t`.
    pub(super) fn of(&self, t: &TsiState, sqn: u32) -> Option<&RepairState> {
        self.get(*t.repairs.get(&sqn)?)
    }

    /// The state of `sqn` in `t`.
    pub(super) fn of_mut(&mut self, t: &TsiState, sqn: u32) -> Option<&mut RepairState> {
        self.get_mut(*t.repairs.get(&sqn)?)
    }

    /// Frees the states of a TSI that is gone.
    pub(super) fn drop_tsi(&mut self, t: &TsiState) {
        for &slot in t.repairs.values() {
            self.remove(slot);
        }
    }

    /// Frees `slot`; its timer and eviction entries become stale.
    pub(super) fn remove(&mut self, slot: u32) -> Option<RepairSlot> {
        let r = self.slab.remove(slot)?;
        self.count = self.count.saturating_sub(1);
        Some(r)
    }

    /// Schedules a wake-up of the state in `slot` at `now + ivl` unless it has one at that
    /// instant already (`current` is the deadline the state had); returns the deadline.
    fn wake(&mut self, slot: u32, now: Tick, ivl: Ticks, current: Option<Tick>) -> Tick {
        let at = now.after(ivl);
        if current == Some(at) {
            return at;
        }
        match self.slab.get(slot) {
            Some(r) => self.timers.push(now, ivl, r.st.key(slot)),
            None => at,
        }
    }

    /// Makes the state in `slot` pending at `now` (§7.3): NAK_RPT_IVL starts, the first
    /// repeat is due after the repeat interval. Timers are set for both: per-interval queues
    /// need each deadline pushed when its interval starts.
    pub(super) fn pend(&mut self, slot: u32, iv: &Intervals, now: Tick) {
        let Some(st) = self.get(slot).copied() else {
            return;
        };
        let pending = st.phase == RepairPhase::Pending;
        let deadline = self.wake(slot, now, iv.rpt, pending.then_some(st.deadline));
        let aux = now.after(iv.rte);
        if aux < deadline {
            self.wake(slot, now, iv.rte, pending.then_some(st.aux));
        }
        if let Some(st) = self.get_mut(slot) {
            st.phase = RepairPhase::Pending;
            st.nnak = false;
            st.deadline = deadline;
            st.aux = aux;
        }
    }

    /// Confirms the state in `slot` by an NCF at `now` (§7.4): outstanding, NAK_RDATA_IVL
    /// and NAK_ELIM_IVL (re)started.
    //= https://www.rfc-editor.org/rfc/rfc3208#section-7.4
    //# Once this duplicate NAK is outstanding, network
    //# elements MUST once again discard all duplicates of that NAK for
    //# NAK_ELIM_IVL, and so on.
    //= https://www.rfc-editor.org/rfc/rfc3208#section-7.5
    //# Once this duplicate NAK is
    //# outstanding, network elements MUST once again discard all duplicates
    //# of that NAK for NAK_ELIM_IVL, and so on.
    pub(super) fn confirm(&mut self, slot: u32, iv: &Intervals, now: Tick) {
        let Some(st) = self.get(slot).copied() else {
            return;
        };
        let current = (st.phase == RepairPhase::Outstanding).then_some(st.deadline);
        let deadline = self.wake(slot, now, iv.rdata, current);
        if let Some(st) = self.get_mut(slot) {
            st.phase = RepairPhase::Outstanding;
            st.deadline = deadline;
            st.aux = now.after(iv.elim);
        }
    }

    /// After a repeat of the pending state in `slot` at `now`: the next one is due after the
    /// repeat interval, unless NAK_RPT_IVL ends first (its own entry covers that).
    pub(super) fn next_repeat(&mut self, slot: u32, iv: &Intervals, now: Tick) {
        let Some(st) = self.get(slot).copied() else {
            return;
        };
        let aux = now.after(iv.rte);
        if aux < st.deadline {
            self.wake(slot, now, iv.rte, Some(st.aux));
        }
        if let Some(st) = self.get_mut(slot) {
            st.aux = aux;
        }
    }

    /// Schedules the expiry of a state that only waits for its deadline (an NNAK's or an
    /// anticipated one), pushed at `now` for `ivl`.
    pub(super) fn expire_after(&mut self, slot: u32, now: Tick, ivl: Ticks) {
        self.wake(slot, now, ivl, None);
    }

    /// Pops the next timer entry due at `now` whose state is still there, as (due time,
    /// slot). Stale entries on the way are dropped.
    pub(super) fn pop_due(&mut self, now: Tick) -> Option<(Tick, u32)> {
        while let Some((at, key)) = self.timers.pop_due(now) {
            if self
                .slab
                .get(key.slot)
                .is_some_and(|r| r.st.key(key.slot) == key)
            {
                return Some((at, key.slot));
            }
        }
        None
    }

    /// The slot's key, (TSI, SQN).
    pub(super) fn owner(&self, slot: u32) -> Option<(Tsi, u32)> {
        self.slab.get(slot).map(|r| (r.tsi, r.sqn))
    }

    /// The earliest wake-up, stale ones included (a stale one only wakes the engine early).
    pub(super) fn next_wakeup(&self) -> Option<Tick> {
        self.timers.next()
    }

    /// Removes and returns the oldest live state.
    pub(super) fn pop_oldest(&mut self) -> Option<RepairSlot> {
        while let Some((slot, seq_no)) = self.order.pop_front() {
            if self.slab.get(slot).is_some_and(|r| r.st.seq_no == seq_no) {
                return self.remove(slot);
            }
        }
        None
    }

    /// Compacts the lazy queues once stale entries outnumber the live states: each
    /// compaction drops at least as many entries as it keeps, so the cost is amortized O(1)
    /// per entry pushed, and the queues shrink with the live states (whether or not the
    /// driver calls `handle_timeout`).
    pub(super) fn tidy(&mut self) {
        if self.order.len() > 2 * self.count + 64 {
            let slab = &self.slab;
            self.order
                .retain(|&(slot, seq_no)| slab.get(slot).is_some_and(|r| r.st.seq_no == seq_no));
        }
        // A live state has at most two entries (pending: next repeat and NAK_RPT_IVL).
        if self.timers.len() > 4 * self.count + 1024 {
            let slab = &self.slab;
            self.timers.retain(|at, &key| {
                slab.get(key.slot)
                    .is_some_and(|r| r.st.key(key.slot) == key && r.st.wakes_at(at))
            });
        }
    }

    /// Drops the empty timer lanes of intervals no longer configured.
    pub(super) fn prune(&mut self, iv: &Intervals) {
        self.timers.prune(|ivl| iv.in_use(ivl));
    }

    /// Drops every state, wake-up and eviction entry.
    pub(super) fn clear(&mut self) {
        self.slab.clear();
        self.timers.clear();
        self.order.clear();
        self.count = 0;
    }

    /// Entries of the eviction queue.
    pub(super) fn order_len(&self) -> usize {
        self.order.len()
    }

    /// Timer entries.
    pub(super) fn timer_len(&self) -> usize {
        self.timers.len()
    }
}
