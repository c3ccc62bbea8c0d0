//! The receiver's timers and transmits: the wake-up queue over all sources, each source's
//! NAK, SPMR and POLR deadlines and expiry, and the packets built for the driver.

use super::*;

impl Receiver {
    /// Puts `tsi`'s next deadline in the wake-up queue if it is earlier than its entry
    /// there. The queue is rebuilt when stale entries outnumber the live ones.
    pub(super) fn schedule(&mut self, tsi: Tsi) {
        let expiry = self.config.peer_expiry;
        let Some(peer) = self.peers.get_mut(&tsi) else {
            return;
        };
        let at = peer.next_deadline(expiry);
        if peer.wake.is_some_and(|w| w <= at) {
            return;
        }
        peer.wake = Some(at);
        self.wakeups.push(Reverse((at, tsi)));
        if self.wakeups.len() > 2 * self.peers.len() + 64 {
            self.wakeups = self
                .peers
                .iter()
                .filter_map(|(t, p)| p.wake.map(|w| Reverse((w, *t))))
                .collect();
        }
    }

    /// Handles timer expiry: NAK back-offs and waits, SPMR back-offs, POLR back-offs and
    /// source expiry. Work is bounded by the timers that expired.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(&Reverse((at, tsi))) = self.wakeups.peek() {
            if at > now {
                break;
            }
            self.wakeups.pop();
            let Some(peer) = self.peers.get_mut(&tsi) else {
                continue;
            };
            if peer.wake != Some(at) {
                continue; // superseded by an earlier entry
            }
            peer.wake = None;
            self.peer_timeout(now, tsi);
            self.schedule(tsi);
        }
    }

    fn peer_timeout(&mut self, now: Instant, tsi: Tsi) {
        let cfg = &self.config;
        let rng = &mut self.rng;
        let Some(peer) = self.peers.get_mut(&tsi) else {
            return;
        };
        let mut events = Vec::new();
        if now.saturating_duration_since(peer.last_heard) >= cfg.peer_expiry {
            // Everything the source holds leaves the account, what the drain hands out too.
            let held = peer.bytes;
            let end_sent = peer.end_sent;
            if !end_sent {
                peer.reset();
                peer.drain(cfg.max_apdu, &mut events, &mut self.stats);
                peer.flush_loss(&mut events);
                // An end decided and not yet told (a reset in a join hold) comes first.
                let reason = peer.end.take().unwrap_or(EndReason::Expired);
                events.push(Event::SessionEnd { tsi, reason });
            }
            self.peers.remove(&tsi);
            self.buffered -= held;
            self.count_events(&events);
            self.events.extend(events);
            return;
        }
        if peer.hold_until.is_some_and(|at| at <= now) {
            peer.hold_until = None;
        }
        // NAK timers.
        let mut to_nak: Vec<Sqn> = Vec::new();
        while let Some(&Reverse((at, raw))) = peer.timers.peek() {
            if at > now {
                break;
            }
            peer.timers.pop();
            let sqn = Sqn(raw);
            let Some(off) = sqn.since(peer.next) else {
                continue;
            };
            let (rpt, rdata) = nak_waits(cfg, &peer.ncf_rtt, &peer.rdata_rtt);
            let parked = peer.nak_target.is_none();
            let Some(Slot::Missing {
                state,
                deadline,
                since,
                detected,
                ncf_retries,
                data_retries,
            }) = peer.slots.get_mut(off as usize)
            else {
                continue;
            };
            if *deadline != Some(at) {
                continue; // a stale timer: the state moved on since
            }
            match *state {
                NakState::WaitNcf => *ncf_retries += 1,
                NakState::WaitData => *data_retries += 1,
                NakState::BackOff => {}
            }
            // Retries are left while under the count, or, with adapted (shorter) waits,
            // while the time the configured intervals allow has not run out.
            let waited = now.saturating_duration_since(*detected);
            let ncf_left = *ncf_retries <= cfg.nak_ncf_retries
                || waited < cfg.nak_rpt_ivl.saturating_mul(cfg.nak_ncf_retries);
            let data_left = *data_retries <= cfg.nak_data_retries
                || waited < cfg.nak_rdata_ivl.saturating_mul(cfg.nak_data_retries);
            let action = state.on(NakInput::Timeout, ncf_left, data_left);
            // Each retry doubles the adapted wait, up to the configured one (RFC 6298's
            // back-off): a source that stopped answering is not NAKed every few
            // milliseconds.
            let rpt = backed_off(rpt, *ncf_retries, cfg.nak_rpt_ivl);
            let rdata = backed_off(rdata, *data_retries, cfg.nak_rdata_ivl);
            match action {
                NakAction::SendNak if parked => {
                    //= https://www.rfc-editor.org/rfc/rfc3208#section-6.2
                    //# A
                    //# receiver MUST NOT initiate repair requests until it has received at
                    //# least one SPM for the corresponding TSI.
                    *state = NakState::BackOff;
                    *deadline = None;
                }
                NakAction::SendNak => {
                    let at = now + rpt;
                    *state = NakState::WaitNcf;
                    *since = now;
                    *deadline = Some(at);
                    peer.timers.push(Reverse((at, raw)));
                    to_nak.push(sqn);
                }
                //= https://www.rfc-editor.org/rfc/rfc3208#section-6.3
                //# Before transmitting a NAK, a receiver MUST wait some interval
                //# NAK_RB_IVL chosen randomly over some time period NAK_BO_IVL.
                //= https://www.rfc-editor.org/rfc/rfc3208#section-6.3
                //# In all cases, receivers SHOULD temper the initiation of NAK
                //# generation to account for simple mis-ordering introduced by the
                //# network.
                NakAction::Enter(next) => {
                    let at = now
                        + match next {
                            NakState::BackOff => random_upto(rng, cfg.nak_bo_ivl),
                            NakState::WaitNcf => rpt,
                            NakState::WaitData => rdata,
                        };
                    *state = next;
                    *since = now;
                    *deadline = Some(at);
                    peer.timers.push(Reverse((at, raw)));
                }
                NakAction::GiveUp => {
                    //= https://www.rfc-editor.org/rfc/rfc3208#section-6.3
                    //# Cancellation of NAK generation indicates unrecoverable
                    //# data loss.
                    peer.slots[off as usize] = Slot::Lost;
                }
            }
        }
        peer.compact_timers();
        //= https://www.rfc-editor.org/rfc/rfc3208#section-6.3
        //# When a receiver has to transmit a sequence of NAKs, it SHOULD
        //# transmit the NAKs in order from oldest to most recent.
        to_nak.sort_by_key(|s| s.since(peer.next).unwrap_or(u32::MAX));
        //= https://www.rfc-editor.org/rfc/rfc3208#section-9.3
        //# The NAK list MUST be unique and duplicate free.  It MUST be
        //# ordered, and MUST consist of either a list of selective or a list of
        //# parity NAKs.
        //= https://www.rfc-editor.org/rfc/rfc3208#section-9.3.2
        //# Receivers SHOULD proceed to back off NAK transmission in a manner
        //# consistent with the procedures outlined for single sequence number
        //# NAKs.
        for chunk in to_nak.chunks(1 + MAX_NAK_LIST) {
            // A session's NAKs are paid for by its packets (see `Peer::nak_credit`): a
            // made-up session that names a third party as its NAK target cannot make the
            // receiver send that party more than about one NAK per packet it sent. A NAK not
            // sent for want of credit is as if lost: its state waits and retries as usual.
            if peer.nak_credit == 0 {
                self.stats.naks_limited += 1;
                continue;
            }
            peer.nak_credit -= 1;
            self.tx.push_back(PendingTx::Nak {
                tsi,
                sqns: chunk.to_vec(),
            });
        }
        match peer.spmr {
            SpmrState::BackOff(at) if at <= now => {
                if spmr_allowed(&mut self.spmr_budget, cfg.max_spmr_rate, now) {
                    //= https://www.rfc-editor.org/rfc/rfc3208#section-13.5
                    //# If a receiver does not see a matching multicast SPMR within its chosen
                    //# random interval, it MUST first multicast its own SPMR to the group
                    //# with a TTL of 1 before then unicasting its own SPMR to the source.
                    self.tx.push_back(PendingTx::Spmr {
                        tsi,
                        multicast: true,
                    });
                    self.tx.push_back(PendingTx::Spmr {
                        tsi,
                        multicast: false,
                    });
                    // Unanswered SPMRs are spaced further and further apart.
                    let wait = cfg
                        .spmr_spm_ivl
                        .saturating_mul(1 << peer.spmr_attempts.min(5));
                    peer.spmr_attempts += 1;
                    peer.spmr = SpmrState::Wait(now + wait);
                } else {
                    self.stats.spmrs_limited += 1;
                    let next_second = self.spmr_budget.1.map_or(now, |t| t + ONE_SECOND);
                    peer.spmr = SpmrState::BackOff(next_second.max(now));
                }
            }
            SpmrState::Wait(at) if at <= now && peer.nak_target.is_none() => {
                peer.spmr = SpmrState::BackOff(now + random_upto(rng, cfg.spmr_bo_ivl));
            }
            _ => {}
        }
        if let Some(p) = peer.polr.filter(|p| p.deadline <= now) {
            peer.polr = None;
            self.tx.push_back(PendingTx::Polr { tsi, polr: p });
        }
        if peer.cc.volunteer.is_some_and(|at| at <= now) {
            peer.cc.volunteer = None;
            queue_ack(&mut self.tx, peer, tsi);
        }
        self.deliver(tsi, events);
    }

    /// The earliest deadline of any source (possibly one that has moved later since, which
    /// then costs a call to [`Receiver::handle_timeout`] that does nothing). O(1).
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.wakeups.peek().map(|Reverse((at, _))| *at)
    }

    /// The next packet to send (NAKs, SPMRs, POLRs), written into `buf`.
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut Vec<u8>) -> Option<Transmit> {
        while let Some(tx) = self.tx.pop_front() {
            // OPT_PGMCC_FEEDBACK for NAKs and ACKs of a source that runs PGMCC.
            let mut report = None;
            let (tsi, body, opts_rest, dest, ttl, ty) = match &tx {
                PendingTx::Nak { tsi, sqns } => {
                    let Some(peer) = self.peers.get(tsi) else {
                        continue;
                    };
                    let Some((&first, rest)) = sqns.split_first() else {
                        continue;
                    };
                    //= https://www.rfc-editor.org/rfc/rfc3208#section-6.3
                    //# Upon expiry of NAK_RB_IVL, a receiver MUST unicast a NAK to the
                    //# upstream PGM network element for the TSI
                    let Some(dest) = peer.nak_target else {
                        continue;
                    };
                    let body = Body::Nak(NakRepr {
                        sqn: first,
                        source: Nla(peer.source_addr),
                        group: Nla(self.config.group),
                    });
                    report = feedback(&self.config, peer, now);
                    self.stats.naks_sent += 1;
                    self.stats.nak_sqns_sent += sqns.len() as u64;
                    (
                        *tsi,
                        body,
                        rest,
                        Destination::Unicast(dest),
                        None,
                        PacketType::Nak,
                    )
                }
                PendingTx::Spmr { tsi, multicast } => {
                    let Some(peer) = self.peers.get(tsi) else {
                        continue;
                    };
                    let (dest, ttl) = if *multicast {
                        (Destination::Group(self.config.group), Some(1))
                    } else {
                        (Destination::Unicast(peer.source_addr), None)
                    };
                    self.stats.spmrs_sent += u64::from(!*multicast);
                    (*tsi, Body::Spmr, &[][..], dest, ttl, PacketType::Spmr)
                }
                //= https://www.rfc-editor.org/rfc/rfc3208#section-14.5
                //# When this timer expires, it MUST send a POLR using POLL_PATH of the
                //# received POLL as destination address.  POLR_SQN MUST be equal to
                //# POLL_SQN and POLR_ROUND must be equal to POLL_ROUND.
                //= https://www.rfc-editor.org/rfc/rfc3208#section-14.5
                //# If POLL_S_TYPE
                //# is PGM_POLL_GENERAL no option is REQUIRED.
                PendingTx::Polr { tsi, polr } => {
                    self.stats.polrs_sent += 1;
                    let body = Body::Polr(PolrRepr {
                        sqn: polr.sqn,
                        round: polr.round,
                    });
                    (
                        *tsi,
                        body,
                        &[][..],
                        Destination::Unicast(polr.dest),
                        None,
                        PacketType::Polr,
                    )
                }
                // PGMCC draft §4:
                // The ACK reports the most recent 32 sequence numbers and the echoed
                // timestamp; it goes straight to the source's address.
                PendingTx::Ack { tsi } => {
                    let Some(peer) = self.peers.get_mut(tsi) else {
                        continue;
                    };
                    peer.ack_queued = false;
                    let (Some((rx_max, bitmap)), Some(r)) =
                        (peer.cc.ack(), feedback(&self.config, peer, now))
                    else {
                        continue;
                    };
                    report = Some(r);
                    self.stats.acks_sent += 1;
                    (
                        *tsi,
                        Body::Ack(AckRepr { rx_max, bitmap }),
                        &[][..],
                        Destination::Unicast(peer.source_addr),
                        None,
                        PacketType::Ack,
                    )
                }
            };
            let mut opts = [PgmOption::from(OptionValue::NakList(SqnList::Slice(opts_rest))); 2];
            let mut n = usize::from(!opts_rest.is_empty());
            if let Some(r) = report {
                opts[n] = r.into();
                n += 1;
            }
            let repr = Repr {
                sport: self.config.dport,
                dport: tsi.sport,
                gsi: tsi.gsi,
                parity: false,
                var_pktlen: false,
                body,
                options: if n == 0 {
                    OptionList::EMPTY
                } else {
                    OptionList::Slice(&opts[..n])
                },
            };
            buf.resize(repr.buffer_len(), 0);
            let Ok(len) = repr.emit(buf) else { continue };
            return Some(Transmit {
                destination: dest,
                packet_type: ty,
                router_alert: false,
                ttl,
                len,
            });
        }
        None
    }
}

const ONE_SECOND: Duration = Duration::from_secs(1);

/// OPT_PGMCC_FEEDBACK for `peer` at `now`, if this receiver takes part in PGMCC and the
/// source's data carried OPT_PGMCC_DATA.
fn feedback(cfg: &ReceiverConfig, peer: &Peer, now: Instant) -> Option<OptionValue<'static>> {
    let me = cfg.local_addr.filter(|_| cfg.pgmcc)?;
    Some(OptionValue::PgmccFeedback {
        tstamp: peer.cc.echo(now)?,
        loss_rate: peer.cc.loss_rate(),
        receiver: Nla(me),
    })
}

/// Takes one SPMR from the budget of `rate` per second (`budget`: what is left of the
/// current second, and when it began).
fn spmr_allowed(budget: &mut (u32, Option<Instant>), rate: u32, now: Instant) -> bool {
    if budget
        .1
        .is_none_or(|start| now.saturating_duration_since(start) >= ONE_SECOND)
    {
        *budget = (rate, Some(now));
    }
    if budget.0 == 0 {
        return false;
    }
    budget.0 -= 1;
    true
}
