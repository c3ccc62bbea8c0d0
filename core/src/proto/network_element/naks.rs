//! NAKs, NNAKs and NCFs (§7.2–§7.5, §9.3.3, §9.5.3.2): confirmation, repair state,
//! constrained forwarding, elimination and anticipation.

use std::collections::hash_map::Entry;
use std::net::IpAddr;
use std::time::Instant;

use super::super::timers::{Tick, Ticks};
use super::repair::RepairState;
use super::rewrite::rebuild_nak;
use super::transmit::Tx;
use super::{NeRecvMeta, NeTransmit, NetworkElement, RepairPhase};
use crate::wire::{MAX_NAK_LIST, NakPacket, Nla, Packet, PacketType, Sqn, Tsi, flags};

/// The sequence numbers of a NAK that the element acts on: those inside the session's
/// transmit window (with the slack), at most a NAK list's worth.
struct Admitted {
    buf: [Sqn; 1 + MAX_NAK_LIST],
    len: usize,
    /// Sequence numbers of the NAK left out.
    outside: u64,
}

impl Admitted {
    fn sqns(&self) -> &[Sqn] {
        self.buf.get(..self.len).unwrap_or(&[])
    }
}

impl NetworkElement {
    /// The sequence numbers of `nak` inside the window of `tsi`, counting those outside;
    /// `None` (the NAK counted as dropped) if none is inside or the TSI has no state.
    fn admit(&mut self, tsi: &Tsi, nak: &NakPacket<&[u8]>) -> Option<Admitted> {
        let t = self.tsis.get(tsi)?;
        let mut a = Admitted {
            buf: [Sqn(0); 1 + MAX_NAK_LIST],
            len: 0,
            outside: 0,
        };
        for sqn in nak.sqns() {
            if !t.window.admits(sqn, self.config.nak_window_slack) {
                a.outside += 1;
                continue;
            }
            if let Some(slot) = a.buf.get_mut(a.len) {
                *slot = sqn;
                a.len += 1;
            }
        }
        self.stats.nak_sqns_outside_window += a.outside;
        if a.len == 0 {
            // Nothing the source could repair: no NCF, no state, nothing upstream.
            self.stats.naks_outside_window += 1;
            return None;
        }
        Some(a)
    }

    pub(super) fn on_nak(&mut self, now: Instant, meta: NeRecvMeta, bytes: &[u8], nnak: bool) {
        let Ok(nak) = NakPacket::new_checked(bytes) else {
            return;
        };
        if nnak {
            self.stats.nnaks_received += 1;
        } else {
            self.stats.naks_received += 1;
        }
        let tsi = nak.tsi();
        let Some(pos) = self.pos(meta.ifindex) else {
            return;
        };
        if !self.tsis.contains(&tsi) {
            // Without source path state there is no upstream to forward to.
            self.stats.naks_no_state += 1;
            return;
        }
        let Some(admitted) = self.admit(&tsi, &nak) else {
            return;
        };
        let sqns = admitted.sqns();
        let filtered = admitted.outside > 0;
        let now_t = self.clock.tick(now);
        if nnak {
            return self.on_nnak(now_t, meta, tsi, sqns, bytes, filtered);
        }
        //= https://www.rfc-editor.org/rfc/rfc3208#section-9.5.3.1
        //# When a PGM router receives notification of a loss via a NAK, it
        //# SHOULD first try to use a known DLR to recover the loss.  If such a
        //# DLR is not known it SHOULD initiate DLR discovery.
        if self.config.dlr_discovery && self.config.poll_ivl.is_some() {
            // Not again while the last poll's replies may still come, nor while a poll is
            // due anyway.
            let bo = Ticks::from(self.config.poll_bo_ivl.saturating_mul(4));
            let discover = self.tsis.get(&tsi).is_some_and(|t| {
                t.dlr.is_none()
                    && t.last_poll.is_none_or(|at| now_t.since(at) >= bo)
                    && t.next_poll().is_none_or(|at| at > now_t)
            });
            if discover {
                self.tsis.schedule_poll(tsi, Some(now_t));
            }
        }
        let iv = self.iv;
        let Some(t) = self.tsis.get_mut(&tsi) else {
            return;
        };
        let upstream_if = t.upstream_if;
        //= https://www.rfc-editor.org/rfc/rfc3208#section-9.5.3.2
        //# If a NAK is received from the DLR for a requested SQN, the network
        //# element MUST discard the redirecting information for the SQN and re-
        //# attempt to forward the NAK towards the PGM upstream neighbor.
        if t.dlr.is_some_and(|d| d.addr == meta.source) {
            for s in sqns {
                if let Some(r) = self.repairs.of_mut(t, s.0) {
                    r.no_dlr = true;
                    r.via_dlr = false;
                    // Re-attempt: the duplicate is not eliminated.
                    r.phase = RepairPhase::Outstanding;
                    r.aux = now_t;
                }
            }
        }
        //= https://www.rfc-editor.org/rfc/rfc3208#section-7.2
        //# Network elements MUST immediately transmit an NCF in response to any
        //# unicast NAK they receive.  The NCF MUST be multicast to the group on
        //# the interface on which the NAK was received.
        //
        // One lookup per sequence number in the common case. An NCF goes out unless every
        // sequence number had one on this interface within `ncf_holdoff`; a state that had
        // not is stamped at once (stamping one that had changes nothing). The NAK is
        // forwarded unless every sequence number is eliminated; a state that is not
        // eliminated is made pending at once (forwarding is then sure), an eliminated
        // pending one only if the NAK is forwarded for another (§9.3.3).
        let mut need_ncf = false;
        let mut forward = false;
        let mut eliminated_pending = false;
        let bit = 1u64 << pos;
        for &sqn in sqns {
            let slot = match t.repairs.entry(sqn.0) {
                Entry::Occupied(e) => *e.get(),
                Entry::Vacant(e) => {
                    //= https://www.rfc-editor.org/rfc/rfc3208#section-7.2
                    //# Simultaneously, network elements MUST establish repair state for the
                    //# NAK if such state does not already exist, and add the interface on
                    //# which the NAK was received to the corresponding repair interface list
                    //# if the interface is not already listed.
                    //
                    // Outstanding with its elimination over: never eliminated, made pending
                    // below.
                    let st = RepairState::new(now_t, now_t, false);
                    let Some(slot) = self.repairs.insert(tsi, sqn.0, st) else {
                        // 2^32 - 1 states in memory: not reached before memory runs out.
                        continue;
                    };
                    e.insert(slot);
                    slot
                }
            };
            let Some(st) = self.repairs.get_mut(slot) else {
                continue;
            };
            //= https://www.rfc-editor.org/rfc/rfc3208#section-7.8
            //# Network elements MUST maintain repair state for each interface on
            //# which a given NAK is received at least once.
            // (Not the upstream interface: the RDATA comes in by it.)
            if meta.ifindex != upstream_if {
                st.ifaces |= bit;
            }
            if !st.ncf_recent(now_t, iv.holdoff, bit) {
                need_ncf = true;
                st.stamp_ncf(now_t, iv.holdoff, bit);
            }
            //= https://www.rfc-editor.org/rfc/rfc3208#section-9.3.3
            //# Network elements MUST forward a NAK containing a NAK List option if
            //# any one sequence number specified by the NAK (including that in the
            //# main NAK header) is not currently outstanding.
            //= https://www.rfc-editor.org/rfc/rfc3208#section-9.3.3
            //# That is, it MUST
            //# forward the NAK, if any one sequence number does not have an
            //# elimination timer running for it.
            if st.eliminates(now_t) {
                eliminated_pending |= st.phase == RepairPhase::Pending;
            } else {
                //= https://www.rfc-editor.org/rfc/rfc3208#section-7.4
                //# This duplicate MUST be forwarded in the
                //# usual manner.
                //= https://www.rfc-editor.org/rfc/rfc3208#section-7.5
                //# This duplicate
                //# MUST be forwarded in the usual manner.
                // The first NAK after NAK_ELIM_IVL (of a confirmed or an anticipated state)
                // is forwarded and repeated like a new one: the state is pending again.
                forward = true;
                self.repairs.pend(slot, &iv, now_t);
            }
        }
        if need_ncf {
            self.queue(Tx::Ncf {
                tsi,
                sqns: sqns.to_vec(),
                ifindex: meta.ifindex,
            });
        } else {
            self.stats.ncfs_rate_limited += 1;
        }
        if forward {
            self.stats.naks_forwarded += 1;
            if eliminated_pending {
                // Forwarded for the others: the pending ones restart their repeats too.
                if let Some(t) = self.tsis.get(&tsi) {
                    for &sqn in sqns {
                        let Some(&slot) = t.repairs.get(&sqn.0) else {
                            continue;
                        };
                        let outstanding_now = self.repairs.get(slot).is_some_and(|st| {
                            st.phase == RepairPhase::Outstanding && st.eliminates(now_t)
                        });
                        if !outstanding_now {
                            self.repairs.pend(slot, &iv, now_t);
                        }
                    }
                }
            }
            self.forward_upstream(tsi, bytes, PacketType::Nak, sqns, meta.source, filtered);
        } else {
            //= https://www.rfc-editor.org/rfc/rfc3208#section-7.4
            //# Network elements MUST discard all duplicates of a NAK that
            //# is pending.
            self.stats.naks_eliminated += 1;
        }
        self.evict_repairs();
    }

    /// NNAKs (§9.5.3.2): forwarded only if no matching repair state exists; never confirmed
    /// nor retried; never adds an interface. State they create lives NAK_ELIM_IVL and does
    /// not eliminate the next real NAK.
    fn on_nnak(
        &mut self,
        now: Tick,
        meta: NeRecvMeta,
        tsi: Tsi,
        sqns: &[Sqn],
        bytes: &[u8],
        filtered: bool,
    ) {
        let elim = self.iv.elim;
        let Some(t) = self.tsis.get_mut(&tsi) else {
            return;
        };
        //= https://www.rfc-editor.org/rfc/rfc3208#section-9.5.3.2
        //# Network elements MUST NOT confirm or retry NULL NAKs and they MUST
        //# NOT add the receiving interface to the repair state.
        // No NCF is queued and no state made pending (repeats come only from pending
        // states); the state an NNAK creates lists no interface, and an existing one is
        // left as it is.
        //= https://www.rfc-editor.org/rfc/rfc3208#section-9.5.3.2
        //# NULL NAKs from an off-tree DLR for an RDATA packet requested from
        //# that off-tree DLR MUST always be forwarded upstream.
        let mut forward = t.dlr.is_some_and(|d| d.off_tree && d.addr == meta.source);
        for &sqn in sqns {
            let Entry::Vacant(e) = t.repairs.entry(sqn.0) else {
                continue;
            };
            forward = true;
            let end = now.after(elim);
            let Some(slot) = self
                .repairs
                .insert(tsi, sqn.0, RepairState::new(end, end, true))
            else {
                continue;
            };
            e.insert(slot);
            self.repairs.expire_after(slot, now, elim);
        }
        if forward {
            self.stats.nnaks_forwarded += 1;
            self.forward_upstream(
                tsi,
                bytes,
                PacketType::Nnak,
                sqns,
                IpAddr::from([0, 0, 0, 0]),
                filtered,
            );
        }
        self.evict_repairs();
    }

    /// Queues a NAK or NNAK to the upstream neighbour (§7.7), or to the session's DLR
    /// (§9.5.3.2) when every sequence number may go there: as received if `filtered` is false,
    /// else rebuilt for `sqns` only.
    fn forward_upstream(
        &mut self,
        tsi: Tsi,
        bytes: &[u8],
        ty: PacketType,
        sqns: &[Sqn],
        from: IpAddr,
        filtered: bool,
    ) {
        let Some(t) = self.tsis.get(&tsi) else { return };
        let mut dest = (t.upstream_if, t.upstream_nbr);
        let mut to_dlr = false;
        //= https://www.rfc-editor.org/rfc/rfc3208#section-9.5.3.1
        //# A network element SHOULD only direct parity NAKs to a DLR that can
        //# provide FEC repairs.
        // The header is read again only when a DLR without FEC is known.
        let dlr = t.dlr.filter(|d| {
            d.fec
                || Packet::new_checked(bytes)
                    .is_ok_and(|p| p.options_flags() & flags::OPT_PARITY == 0)
        });
        if let (Some(d), PacketType::Nak) = (dlr, ty) {
            let bit = self.pos(d.ifindex).map_or(0, |p| 1u64 << p);
            //= https://www.rfc-editor.org/rfc/rfc3208#section-9.5.3.2
            //# No NAK for a specific SQN SHOULD be sent to an off-tree DLR if
            //# a NAK for the SQN has been seen on the interface associated with the
            //# DLR.  Instead the NAK SHOULD be forwarded upstream.
            let ok = from != d.addr
                && sqns.iter().all(|s| {
                    self.repairs
                        .of(t, s.0)
                        .is_some_and(|r| !(r.no_dlr || (d.off_tree && r.ifaces & bit != 0)))
                });
            if ok {
                dest = (d.ifindex, d.addr);
                to_dlr = true;
            }
        }
        let Some(src) = self.iface_addr(dest.0) else {
            return;
        };
        if to_dlr {
            self.stats.naks_redirected += 1;
            for s in sqns {
                if let Some(r) = self.repairs.of_mut(t, s.0) {
                    r.via_dlr = true;
                }
            }
        }
        let source = t.source;
        let rebuilt;
        let bytes = if filtered {
            // Entries outside the window leave the NAK as they left the NCF.
            let Some(b) = rebuild_nak(bytes, sqns) else {
                return;
            };
            rebuilt = b;
            &rebuilt[..]
        } else {
            bytes
        };
        let Some(mut out) = self.apply_opx(bytes) else {
            return;
        };
        // NAK_SRC must be the ODATA source (§8.3): OpenPGM 5.3 receivers put the SPM_PATH
        // they NAK there instead, and an OpenPGM source drops such NAKs. Put it right.
        let mut nak = NakPacket::new_unchecked(&mut out[..]);
        if nak.source_nla() != Nla(source) && nak.rewrite_source(Nla(source)) {
            self.stats.nak_sources_rewritten += 1;
        }
        //= https://www.rfc-editor.org/rfc/rfc3208#section-7.3
        //# A Network element MUST forward NAKs only to the upstream PGM network
        //# element for the TSI.
        let tx = NeTransmit {
            ifindex: dest.0,
            source: src,
            destination: dest.1,
            router_alert: false,
            ttl: 255,
            packet_type: ty,
            len: out.len(),
        };
        self.queue(Tx::Raw(tx, out));
    }

    pub(super) fn on_ncf(&mut self, now: Instant, meta: NeRecvMeta, bytes: &[u8]) {
        let Ok(ncf) = NakPacket::new_checked(bytes) else {
            return;
        };
        self.stats.ncfs_received += 1;
        let tsi = ncf.tsi();
        let iv = self.iv;
        let Some(t) = self.tsis.get_mut(&tsi) else {
            self.stats.ignored += 1;
            return;
        };
        let from_dlr = t.dlr.is_some_and(|d| d.off_tree && d.addr == meta.source);
        //= https://www.rfc-editor.org/rfc/rfc3208#section-7.5
        //# Network elements MUST process unsolicited NCFs differently depending
        //# on the interface on which they are received.
        // From the upstream interface (or our off-tree DLR, §9.5.3.2): confirmation or
        // anticipation below. From any other: discarded, no state.
        if meta.ifindex != t.upstream_if && !from_dlr {
            // Another element's NCF to its own subtree: neither a confirmation of ours nor
            // grounds for anticipation (§7.5).
            self.stats.ignored += 1;
            return;
        }
        let now = self.clock.tick(now);
        for sqn in ncf.sqns() {
            match t.repairs.entry(sqn.0) {
                Entry::Occupied(e) => {
                    //= https://www.rfc-editor.org/rfc/rfc3208#section-7.4
                    //# NAK_RDATA_IVL MUST be reset each time a NAK
                    //# for the corresponding TSI/SQN is confirmed (i.e., each time
                    //# NAK_ELIM_IVL is reset).
                    //= https://www.rfc-editor.org/rfc/rfc3208#section-7.5
                    //# NAK_RDATA_IVL MUST be reset
                    //= https://www.rfc-editor.org/rfc/rfc3208#section-7.3
                    //# Upon reception of the corresponding NCF, network elements MUST wait
                    //# at least NAK_RDATA_IVL for the corresponding RDATA.
                    // `confirm` (re)starts both NAK_RDATA_IVL and NAK_ELIM_IVL, whether the
                    // state was ours (pending or outstanding) or anticipated. (A NAK forwarded
                    // again after NAK_ELIM_IVL makes the state pending: should that one go
                    // unconfirmed, the state ends with its NAK_RPT_IVL, which may be before
                    // NAK_RDATA_IVL from this NCF has passed.)
                    self.repairs.confirm(*e.get(), &iv, now);
                }
                Entry::Vacant(e) => {
                    //= https://www.rfc-editor.org/rfc/rfc3208#section-7.5
                    //# If the interface on which an NCF is received is the same interface
                    //# the network element would use to reach the upstream PGM network
                    //# element, the network element simply establishes repair state for
                    //# NCF_TSI and NCF_SQN without adding the interface to the repair
                    //# interface list, and discards the NCF.
                    //= https://www.rfc-editor.org/rfc/rfc3208#section-7.5
                    //# Upon establishing anticipated repair state,
                    //# network elements MUST eliminate subsequent NAKs only for a period of
                    //# NAK_ELIM_IVL.
                    //= https://www.rfc-editor.org/rfc/rfc3208#section-9.3.3
                    //# Upon receipt of an unsolicited NCF containing the NAK list option, a
                    //# network element MUST anticipate data for every sequence number
                    //# specified by the NAK as if it had received an NCF for every sequence
                    //# number specified by the NAK.
                    // Outstanding until NAK_RDATA_IVL, eliminating until NAK_ELIM_IVL; the loop
                    // runs over NCF_SQN and every entry of its OPT_NAK_LIST alike.
                    let st = RepairState::new(now.after(iv.rdata), now.after(iv.elim), false);
                    let Some(slot) = self.repairs.insert(tsi, sqn.0, st) else {
                        continue;
                    };
                    e.insert(slot);
                    self.repairs.expire_after(slot, now, iv.rdata);
                    self.stats.naks_anticipated += 1;
                }
            }
        }
        self.evict_repairs();
    }
}
