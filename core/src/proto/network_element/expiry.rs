//! Time and bounds: NAK repeats and cancellation, repair-state and TSI expiry, polls that
//! fall due (§7.3, §9.5.3.2, Appendix D), and eviction at the configured limits.

use std::time::Instant;

use super::super::timers::Ticks;
use super::transmit::Tx;
use super::{NetworkElement, RepairPhase};
use crate::wire::{MAX_NAK_LIST, Sqn, Tsi};

impl NetworkElement {
    /// Handles timer expiry: NAK repeats and cancellation, repair-state expiry, TSI expiry,
    /// polls. Work: the timer entries and TSIs that came due (stale entries included, each
    /// dropped once), a repeat per pending repair state due.
    pub fn handle_timeout(&mut self, now: Instant) {
        let now_t = self.clock.tick(now);
        let iv = self.iv;
        let mut repeat: Vec<(Tsi, u32)> = Vec::new();
        while let Some((_, slot)) = self.repairs.pop_due(now_t) {
            let Some(((tsi, sqn), st)) = self.repairs.owner(slot).zip(self.repairs.get(slot))
            else {
                continue;
            };
            let (phase, deadline, aux, via_dlr) = (st.phase, st.deadline, st.aux, st.via_dlr);
            let remove = match phase {
                RepairPhase::Pending if now_t >= deadline && via_dlr => {
                    //= https://www.rfc-editor.org/rfc/rfc3208#section-9.5.3.2
                    //# If a corresponding NCF is not received from the DLR within
                    //# NAK_RPT_IVL, the network element MUST discard the redirecting
                    //# information for the TSI and re-attempt to forward the NAK towards the
                    //# PGM upstream neighbor.
                    if let Some(t) = self.tsis.get_mut(&tsi) {
                        t.dlr = None;
                    }
                    if let Some(st) = self.repairs.get_mut(slot) {
                        st.via_dlr = false;
                        st.no_dlr = true;
                    }
                    self.repairs.pend(slot, &iv, now_t);
                    self.stats.dlr_fallbacks += 1;
                    repeat.push((tsi, sqn));
                    false
                }
                RepairPhase::Pending if now_t >= deadline => {
                    //= https://www.rfc-editor.org/rfc/rfc3208#section-7.3
                    //# Expiry of NAK_RPT_IVL cancels NAK forwarding (due to
                    //# missing NCF).
                    self.stats.naks_unconfirmed += 1;
                    true
                }
                RepairPhase::Pending if now_t >= aux => {
                    self.repairs.next_repeat(slot, &iv, now_t);
                    repeat.push((tsi, sqn));
                    false
                }
                RepairPhase::Outstanding if now_t >= deadline => {
                    //= https://www.rfc-editor.org/rfc/rfc3208#section-7.3
                    //# Expiry of NAK_RDATA_IVL causes the network element to
                    //# discard the corresponding repair state (due to missing RDATA).
                    //= https://www.rfc-editor.org/rfc/rfc3208#section-7.8
                    //# Network elements MUST maintain this repair state only until either
                    //# the corresponding RDATA is received and forwarded, or NAK_RDATA_IVL
                    //# passes after forwarding the most recent instance of a given NAK.
                    //= https://www.rfc-editor.org/rfc/rfc3208#section-7.8
                    //# Thereafter, the corresponding repair state MUST be discarded.
                    // NAK_RDATA_IVL runs from the NCF that confirmed the last NAK forwarded,
                    // as §7.3 and §7.4 define it; a NAK forwarded and never confirmed goes
                    // sooner, at the end of NAK_RPT_IVL (above). RDATA removes the state
                    // where it arrives (`on_rdata`).
                    self.stats.repair_states_expired += 1;
                    true
                }
                _ => false,
            };
            if remove {
                self.repairs.remove(slot);
                if let Some(t) = self.tsis.get_mut(&tsi) {
                    t.unindex(sqn);
                }
            }
        }
        // One repeat per TSI per NAK list's worth of sequence numbers, in order. The lanes
        // pop in creation order, mostly sorted already: the stable sort takes such runs in
        // linear time.
        repeat.sort();
        for group in repeat.chunk_by(|a, b| a.0 == b.0) {
            let Some(&(tsi, _)) = group.first() else {
                continue;
            };
            for chunk in group.chunks(1 + MAX_NAK_LIST) {
                self.stats.naks_repeated += 1;
                self.queue(Tx::NakRepeat {
                    tsi,
                    sqns: chunk.iter().map(|&(_, s)| Sqn(s)).collect(),
                });
            }
        }
        self.repairs.prune(&iv);
        let expiry = Ticks::from(self.config.tsi_expiry);
        while let Some((_, t)) = self.tsis.pop_expired(now_t, expiry) {
            self.repairs.drop_tsi(&t);
            self.stats.tsis_expired += 1;
        }
        if let Some(ivl) = self.poll_ivl() {
            // Each poll is rescheduled at least one tick later, so this ends.
            while let Some(tsi) = self.tsis.pop_due_poll(now_t) {
                self.start_poll(now_t, tsi, ivl);
            }
        }
        self.tidy();
    }

    /// The earliest deadline, `None` if there is none (or it lies beyond what `Instant` can
    /// hold). O(1): the heads of the timer queues. A deadline whose state has moved on may
    /// be returned; `handle_timeout` then finds nothing to do and drops it.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let expiry = Ticks::from(self.config.tsi_expiry);
        [
            self.repairs.next_wakeup(),
            self.tsis.next_expiry(expiry),
            self.tsis.next_poll(),
        ]
        .into_iter()
        .flatten()
        .min()
        .and_then(|at| self.clock.instant(at))
    }

    /// Evicts the least recently heard TSI with its repair states; false if there is none.
    pub(super) fn evict_tsi(&mut self) -> bool {
        let Some((_, t)) = self.tsis.pop_evictable() else {
            return false;
        };
        self.repairs.drop_tsi(&t);
        self.stats.tsis_evicted += 1;
        true
    }

    /// Evicts the oldest repair states while over `max_repair_states`.
    pub(super) fn evict_repairs(&mut self) {
        while self.repairs.len() > self.config.max_repair_states {
            let Some(r) = self.repairs.pop_oldest() else {
                break;
            };
            if let Some(t) = self.tsis.get_mut(&r.tsi) {
                t.unindex(r.sqn);
            }
            self.stats.repair_states_evicted += 1;
        }
    }

    /// Compacts the lazy queues of both tables if stale entries pile up (amortized O(1)).
    pub(super) fn tidy(&mut self) {
        self.repairs.tidy();
        self.tsis.tidy();
    }
}
