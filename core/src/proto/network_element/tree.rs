//! What travels down the tree: SPMs and source path state (§7.1), data from upstream (RDATA
//! forwarding, §7.8; the transmit window), and our polls and their replies (§9.5.3,
//! Appendix D).

use std::time::Instant;

use rand::Rng;

use super::super::timers::{Tick, Ticks};
use super::transmit::Tx;
use super::tsi::{DlrRedirect, TsiState};
use super::{NeRecvMeta, NeTransmit, NetworkElement};
use crate::wire::{
    Body, DataPacket, Nla, OptionList, OptionValue, PacketType, PollRepr, PollSubtype, PolrPacket,
    Repr, SpmPacket, Sqn, Tsi, flags,
};

impl NetworkElement {
    pub(super) fn on_spm(&mut self, now: Instant, meta: NeRecvMeta, bytes: &[u8]) {
        let Ok(spm) = SpmPacket::new_checked(bytes) else {
            return;
        };
        self.stats.spms_received += 1;
        let tsi = spm.tsi();
        let (sqn, path) = (spm.sqn(), spm.path());
        let source = meta.source;
        let group = meta.destination;
        let oifs = match self.route(source, group) {
            None => {
                self.stats.spms_no_route += 1;
                return;
            }
            Some(r) if r.upstream != meta.ifindex => {
                self.stats.spms_wrong_interface += 1;
                return;
            }
            Some(r) => r.downstream.clone(),
        };
        let now_t = self.clock.tick(now);
        if let Some(t) = self.tsis.get(&tsi) {
            //= https://www.rfc-editor.org/rfc/rfc3208#section-7.1
            //# Upon receipt of an in-sequence SPM, a network element records the
            //# Source Path Address SPM_PATH with the multicast routing information
            //# for the TSI.
            // A TSI belongs to its source's address until its state expires: an SPM of the
            // same TSI from anyone else (a host on a route of its own) changes nothing.
            if t.source != source {
                self.stats.spms_wrong_source += 1;
                return;
            }
            if !sqn.gt(t.last_spm_sqn) {
                self.stats.spms_out_of_sequence += 1;
                return;
            }
            self.tsis.heard(tsi, now_t);
        } else {
            if self.config.max_tsis == 0 {
                // No state may be kept: nothing to forward NAKs with, so no SPM is
                // forwarded to draw them.
                self.stats.ignored += 1;
                return;
            }
            while self.tsis.len() >= self.config.max_tsis && self.evict_tsi() {}
            let t = TsiState::new(source, group, spm.dest_port(), meta.ifindex, path.0, sqn);
            self.tsis.insert(tsi, t, now_t);
        }
        let poll_ivl = self.poll_ivl();
        let Some(t) = self.tsis.get_mut(&tsi) else {
            return;
        };
        t.source = source;
        t.group = group;
        t.dport = spm.dest_port();
        t.upstream_if = meta.ifindex;
        t.upstream_nbr = path.0;
        t.last_spm_sqn = sqn;
        t.spms = t.spms.saturating_add(1);
        t.window.on_spm(spm.trail(), spm.lead());
        if let (Some(ivl), None) = (poll_ivl, t.next_poll()) {
            // A new TSI, or polls turned on since the last SPM.
            self.tsis.schedule_poll(tsi, Some(now_t.after(ivl)));
        }
        if meta.ttl <= 1 {
            self.stats.ignored += 1;
            return;
        }
        let Some(copy) = self.apply_opx(bytes) else {
            return;
        };
        for oif in oifs {
            if oif == meta.ifindex {
                continue;
            }
            let Some(addr) = self.iface_addr(oif) else {
                continue;
            };
            let mut out = copy.clone();
            //= https://www.rfc-editor.org/rfc/rfc3208#section-7.1
            //# As it does so, it encodes the network address of the
            //# outgoing interface in SPM_PATH in each copy of the SPM it forwards.
            if !SpmPacket::new_unchecked(&mut out[..]).rewrite_path(Nla(addr)) {
                // Address family differs from the source's: rebuild the SPM.
                let Ok(mut repr) = Repr::parse_bytes(&copy) else {
                    continue;
                };
                if let Body::Spm(s) = &mut repr.body {
                    s.path = Nla(addr);
                }
                out = vec![0; repr.buffer_len()];
                if repr.emit(&mut out).is_err() {
                    continue;
                }
            }
            self.stats.spms_forwarded += 1;
            let len = out.len();
            self.queue(Tx::Raw(
                NeTransmit {
                    ifindex: oif,
                    source,
                    destination: group,
                    router_alert: true,
                    ttl: meta.ttl - 1,
                    packet_type: PacketType::Spm,
                    len,
                },
                out,
            ));
        }
    }

    /// The poll interval in ticks (at least one: a zero interval polls once per call), if
    /// polls are on.
    pub(super) fn poll_ivl(&self) -> Option<Ticks> {
        self.config
            .poll_ivl
            .map(|ivl| Ticks::from(ivl).max(Ticks(1)))
    }

    /// ODATA: never forwarded by the engine (the kernel forwards it), but one punted from
    /// upstream shows how far the transmit window reaches.
    pub(super) fn on_odata(&mut self, meta: NeRecvMeta, bytes: &[u8]) {
        self.stats.ignored += 1;
        let Ok(data) = DataPacket::new_checked(bytes) else {
            return;
        };
        if let Some(t) = self.tsis.get_mut(&data.tsi()) {
            if meta.ifindex == t.upstream_if {
                t.window.on_data(data.sqn(), data.trail());
            }
        }
    }

    pub(super) fn on_rdata(&mut self, meta: NeRecvMeta, bytes: &[u8]) {
        let Ok(data) = DataPacket::new_checked(bytes) else {
            return;
        };
        let tsi = data.tsi();
        let sqn = data.sqn();
        let Some(t) = self.tsis.get_mut(&tsi) else {
            self.stats.rdata_no_state += 1;
            return;
        };
        if meta.ifindex == t.upstream_if {
            t.window.on_data(sqn, data.trail());
        }
        //= https://www.rfc-editor.org/rfc/rfc3208#section-7.8
        //# Network elements SHOULD discard and not forward RDATA packets for
        //# which they have no repair state.
        //= https://www.rfc-editor.org/rfc/rfc3208#section-7.8
        //# Thereafter, the corresponding repair state MUST be discarded.
        // The RDATA ends the state whether or not it has anywhere to go.
        let Some(st) = t
            .unindex(sqn.0)
            .and_then(|slot| self.repairs.remove(slot))
            .map(|r| r.st)
        else {
            self.stats.rdata_no_state += 1;
            return;
        };
        let (source, group) = (t.source, t.group);
        let mask = st.ifaces;
        if mask == 0 || meta.ttl <= 1 {
            self.stats.rdata_no_state += u64::from(mask == 0);
            return;
        }
        let Some(copy) = self.apply_opx(bytes) else {
            return;
        };
        self.stats.rdata_forwarded += 1;
        //= https://www.rfc-editor.org/rfc/rfc3208#section-7.8
        //# Network elements MUST then use this list of interfaces to constrain the
        //# forwarding of the corresponding RDATA packet only to those interfaces in
        //# the list.
        for oif in self.mask_ifaces(mask) {
            if oif == meta.ifindex {
                continue;
            }
            self.stats.rdata_copies += 1;
            self.queue(Tx::Raw(
                NeTransmit {
                    ifindex: oif,
                    source,
                    destination: group,
                    router_alert: true,
                    ttl: meta.ttl - 1,
                    packet_type: PacketType::Rdata,
                    len: copy.len(),
                },
                copy.clone(),
            ));
        }
    }

    pub(super) fn on_polr(&mut self, meta: NeRecvMeta, bytes: &[u8]) {
        let Ok(polr) = PolrPacket::new_checked(bytes) else {
            return;
        };
        let Some(pos) = self.pos(meta.ifindex) else {
            return;
        };
        let Some(t) = self.tsis.get_mut(&polr.tsi()) else {
            self.stats.ignored += 1;
            return;
        };
        let redirect = polr.options().iter().find_map(|o| match o.value {
            OptionValue::Redirect(n) => Some(n.0),
            _ => None,
        });
        if let Some(addr) = redirect {
            //= https://www.rfc-editor.org/rfc/rfc3208#section-9.5.3.2
            //# Upon receiving a redirecting POLR, network elements SHOULD record the
            //# redirecting information for the TSI
            let upstream = meta.destination.is_multicast() && meta.ifindex == t.upstream_if;
            let off_tree = !meta.destination.is_multicast() && meta.ifindex != t.upstream_if;
            //= https://www.rfc-editor.org/rfc/rfc3208#section-9.5.3.2
            //# When it can, a network element SHOULD use upstream DLRs.
            // An off-tree DLR's POLR does not replace an upstream DLR already recorded.
            let keep_upstream = t.dlr.is_some_and(|d| !d.off_tree) && off_tree;
            if (upstream || off_tree) && !keep_upstream {
                let new = DlrRedirect {
                    addr,
                    ifindex: meta.ifindex,
                    off_tree,
                    fec: polr.options_flags() & flags::OPT_PARITY != 0,
                };
                if t.dlr != Some(new) {
                    self.stats.dlrs_learned += 1;
                }
                t.dlr = Some(new);
            } else {
                self.stats.ignored += 1;
            }
            return;
        }
        //= https://www.rfc-editor.org/rfc/rfc3208#section-14.4
        //# During this
        //# interval it SHOULD collect all the valid response (the one with
        //# POLR_SQN and POLR_ROUND matching with the outstanding poll) and
        //# process them at the end of the collection interval.
        // Replies whose POLR_SQN is the last poll's are counted per interface, and the counts
        // taken as the children at the next poll (`start_poll`). POLR_ROUND is not compared:
        // our polls are all of round 0.
        match t.poll_replies.get_mut(pos) {
            Some(n) if polr.sqn() == t.poll_sqn => {
                self.stats.polrs_received += 1;
                *n = n.saturating_add(1);
            }
            _ => self.stats.ignored += 1,
        }
    }

    /// Closes the previous poll of `tsi` (recording the children counted) and sends a new
    /// general poll on each downstream interface (§14.4); the next is due after `ivl`.
    //= https://www.rfc-editor.org/rfc/rfc3208#section-14.4
    //# A PGM parent (source or network element), that wants to poll the
    //# first PGM-hop children connected to one of its outgoing interfaces
    //# MUST send a POLL packet on that interface with:
    // POLL_SQN the last one plus one (the DLR poll sent with the general one shares it, see
    // below), POLL_ROUND 0 (single-round polls), POLL_S_TYPE, POLL_PATH the outgoing
    // interface's address, POLL_BO_IVL `poll_bo_ivl`, POLL_RAND and POLL_MASK as below.
    pub(super) fn start_poll(&mut self, now: Tick, tsi: Tsi, ivl: Ticks) {
        let bits = self.config.poll_mask_bits.min(31);
        //= https://www.rfc-editor.org/rfc/rfc3208#section-14.4
        //# If this is a deterministic poll, B MUST be 0, i.e. POLL_MASK MUST
        //# be a all-zeroes bit-mask.
        //= https://www.rfc-editor.org/rfc/rfc3208#section-14.3.2
        //# To disable the random condition PGM parents MUST specify
        //# a probability of replying P equal to 1.
        // B = `poll_mask_bits` bits set, P = 1 / 2^B; with 0 (the default, and so for the
        // PGM_POLL_DLR polls too) the mask is all zeroes and every child replies.
        let mask: u32 = if bits == 0 { 0 } else { (1u32 << bits) - 1 };
        //= https://www.rfc-editor.org/rfc/rfc3208#section-14.4
        //# POLL_RAND      MUST be a random string re-computed each time a new
        //#                poll is sent on a given interface
        let rand: u32 = self.rng.random();
        let bo_us = u32::try_from(self.config.poll_bo_ivl.as_micros()).unwrap_or(u32::MAX);
        let Some(t) = self.tsis.get_mut(&tsi) else {
            return;
        };
        let oifs = self
            .routes
            .get(&(Some(t.source), t.group))
            .or_else(|| self.routes.get(&(None, t.group)))
            .map(|r| r.downstream.clone())
            .unwrap_or_default();
        let first = t.poll_sqn == Sqn(0);
        for (c, &replies) in t.children.iter_mut().zip(&t.poll_replies) {
            if !(first && replies == 0) {
                // Each reply stands for 2^bits children (§14.4).
                *c = Some(u32::try_from(u64::from(replies) << bits).unwrap_or(u32::MAX));
            }
        }
        t.poll_replies = [0; 64];
        t.poll_sqn = t.poll_sqn.next();
        //= https://www.rfc-editor.org/rfc/rfc3208#section-14.4
        //# A PGM parent that has started a poll by sending a POLL packet SHOULD
        //# wait at least POLL_BO_IVL before starting another poll.
        // The next poll is due `poll_ivl` later (the configuration file refuses a
        // `poll_bo_ivl` not below it), and a NAK starts DLR discovery early only 4 x
        // POLL_BO_IVL after `last_poll` (`on_nak`).
        t.last_poll = Some(now);
        let (source, group, sport, dport, sqn) =
            (t.source, t.group, tsi.sport, t.dport, t.poll_sqn);
        let upstream_if = t.upstream_if;
        self.tsis.schedule_poll(tsi, Some(now.after(ivl)));
        // A DLR poll goes with the general one, under the same POLL_SQN: receivers cancel
        // pending replies to a POLL_SQN other than the last one (App. D), so a separate
        // number would cancel their general replies (§9.5.3.1 discovery).
        let mut subtypes = vec![PollSubtype::General];
        //= https://www.rfc-editor.org/rfc/rfc3208#section-9.5.3.1
        //# Also, a network element SHOULD initiate a search
        //# for off-tree DLRs using the PGM polling mechanism, and the sub-type
        //# PGM_POLL_DLR.
        if self.config.dlr_discovery {
            subtypes.push(PollSubtype::Dlr);
        }
        for oif in oifs {
            let Some(addr) = self.iface_addr(oif) else {
                continue;
            };
            if oif == upstream_if {
                continue;
            }
            for &subtype in &subtypes {
                let repr = Repr {
                    sport,
                    dport,
                    gsi: tsi.gsi,
                    parity: false,
                    var_pktlen: false,
                    body: Body::Poll(PollRepr {
                        sqn,
                        round: 0,
                        subtype,
                        path: Nla(addr),
                        backoff_ivl_us: bo_us,
                        rand: rand.to_be_bytes(),
                        mask,
                    }),
                    options: OptionList::EMPTY,
                };
                let mut out = vec![0; repr.buffer_len()];
                if repr.emit(&mut out).is_err() {
                    continue;
                }
                self.stats.polls_sent += 1;
                //= https://www.rfc-editor.org/rfc/rfc3208#section-14.4
                //# Nota Bene: POLLs transmitted by network elements MUST bear the
                //# ODATA source's network-header source address, not the network
                //# element's NLA.  POLLs MUST also be transmitted with the IP
                //# Router Alert Option [6]
                //= https://www.rfc-editor.org/rfc/rfc3208#section-14.7.1
                //# POLL MUST be transmitted with the IP Router Alert Option.
                self.queue(Tx::Raw(
                    NeTransmit {
                        ifindex: oif,
                        source,
                        destination: group,
                        router_alert: true,
                        ttl: 1,
                        packet_type: PacketType::Poll,
                        len: out.len(),
                    },
                    out,
                ));
            }
        }
    }
}
