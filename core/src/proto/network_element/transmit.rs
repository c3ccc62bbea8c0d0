//! The transmit queue: what the engine has to send, built into the driver's buffer when it
//! asks (`poll_transmit`), and bounded should the driver not ask.

use std::time::Instant;

use super::tsi::TsiState;
use super::{IfIndex, NeTransmit, NetworkElement};
use crate::wire::{
    Body, NakRepr, Nla, OptionList, OptionValue, PacketType, PgmOption, Repr, Sqn, SqnList, Tsi,
};

/// A queued transmit.
#[derive(Debug, Clone)]
pub(super) enum Tx {
    /// Forward a received packet (possibly rewritten) as is.
    Raw(NeTransmit, Vec<u8>),
    /// Build an NCF for these sequence numbers, sent down `ifindex`.
    Ncf {
        tsi: Tsi,
        sqns: Vec<Sqn>,
        ifindex: IfIndex,
    },
    /// Build a NAK repeat for these sequence numbers, sent upstream.
    NakRepeat { tsi: Tsi, sqns: Vec<Sqn> },
}

/// Transmits kept beyond what one call can queue, for a driver that drains late.
const TX_MARGIN: usize = 1024;

impl NetworkElement {
    /// The most transmits queued: what one call can queue at most (a repeat per repair
    /// state, a general and a DLR poll per interface per TSI) plus a margin. A driver that
    /// drains after every call never reaches it.
    pub(super) fn tx_capacity(&self) -> usize {
        let polls = self
            .config
            .interfaces
            .len()
            .saturating_mul(2)
            .saturating_mul(self.config.max_tsis);
        self.config
            .max_repair_states
            .saturating_add(polls)
            .saturating_add(TX_MARGIN)
    }

    /// Queues `tx`, or drops and counts it if the queue is full.
    pub(super) fn queue(&mut self, tx: Tx) {
        if self.tx.len() >= self.tx_capacity() {
            self.stats.transmits_dropped += 1;
            return;
        }
        self.tx.push_back(tx);
    }

    /// The next packet to send, written into `buf`. Builds at most one packet per call
    /// (queued transmits whose TSI is gone are skipped).
    pub fn poll_transmit(&mut self, _now: Instant, buf: &mut Vec<u8>) -> Option<NeTransmit> {
        while let Some(tx) = self.tx.pop_front() {
            if self.tx.is_empty() && self.tx.capacity() > TX_MARGIN {
                // A burst is over: give its memory back.
                self.tx.shrink_to(TX_MARGIN / 4);
            }
            match tx {
                Tx::Raw(t, bytes) => {
                    buf.clear();
                    buf.extend_from_slice(&bytes);
                    return Some(NeTransmit {
                        len: bytes.len(),
                        ..t
                    });
                }
                Tx::Ncf { tsi, sqns, ifindex } => {
                    let Some(t) = self.tsis.get(&tsi) else {
                        continue;
                    };
                    let Some(len) = emit_nak_like(buf, tsi, t, &sqns, true) else {
                        continue;
                    };
                    self.stats.ncfs_sent += 1;
                    //= https://www.rfc-editor.org/rfc/rfc3208#section-7.2
                    //# the network-
                    //# header source address of NCFs transmitted by network elements MUST
                    //# be set to the ODATA source's NLA, not the network element's NLA as
                    //# might be expected.
                    return Some(NeTransmit {
                        ifindex,
                        source: t.source,
                        destination: t.group,
                        router_alert: true,
                        ttl: 255,
                        packet_type: PacketType::Ncf,
                        len,
                    });
                }
                Tx::NakRepeat { tsi, sqns } => {
                    let Some(t) = self.tsis.get(&tsi) else {
                        continue;
                    };
                    let via_dlr = t.dlr.filter(|_| {
                        sqns.iter()
                            .all(|s| self.repairs.of(t, s.0).is_some_and(|r| r.via_dlr))
                    });
                    let (ifindex, nbr) = match via_dlr {
                        Some(d) => (d.ifindex, d.addr),
                        None => (t.upstream_if, t.upstream_nbr),
                    };
                    let Some(src) = self.iface_addr(ifindex) else {
                        continue;
                    };
                    let Some(len) = emit_nak_like(buf, tsi, t, &sqns, false) else {
                        continue;
                    };
                    return Some(NeTransmit {
                        ifindex,
                        source: src,
                        destination: nbr,
                        router_alert: false,
                        ttl: 255,
                        packet_type: PacketType::Nak,
                        len,
                    });
                }
            }
        }
        None
    }
}

/// Emits an NCF (downstream ports) or a NAK (upstream ports) for `sqns` of `tsi` into `buf`.
fn emit_nak_like(
    buf: &mut Vec<u8>,
    tsi: Tsi,
    t: &TsiState,
    sqns: &[Sqn],
    ncf: bool,
) -> Option<usize> {
    let (&first, rest) = sqns.split_first()?;
    let nak = NakRepr {
        sqn: first,
        source: Nla(t.source),
        group: Nla(t.group),
    };
    let opts = [PgmOption::from(OptionValue::NakList(SqnList::Slice(rest)))];
    let (sport, dport, body) = if ncf {
        (tsi.sport, t.dport, Body::Ncf(nak))
    } else {
        (t.dport, tsi.sport, Body::Nak(nak))
    };
    let repr = Repr {
        sport,
        dport,
        gsi: tsi.gsi,
        parity: false,
        var_pktlen: false,
        body,
        options: if rest.is_empty() {
            OptionList::EMPTY
        } else {
            OptionList::Slice(&opts)
        },
    };
    buf.resize(repr.buffer_len(), 0);
    repr.emit(buf).ok()
}
