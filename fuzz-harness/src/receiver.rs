//! The receiver engine under the driver.

use std::time::{Duration, Instant};

use pgm_core::proto::RecvMeta;
use pgm_core::proto::receiver::{Event, Receiver, ReceiverConfig, SessionFilter};
use pgm_core::wire::{MAX_NAK_LIST, PacketType};

use crate::driver::{Engine, OpKind, Sent, run};
use crate::input::Input;
use crate::packets::{DPORT, Delivery, GROUP, MAIN, SRC, World};

/// Packet types a receiver meets, by weight.
const TYPES: &[(u32, PacketType)] = &[
    (10, PacketType::Odata),
    (4, PacketType::Rdata),
    (5, PacketType::Spm),
    (3, PacketType::Ncf),
    (2, PacketType::Nak),
    (1, PacketType::Nnak),
    (1, PacketType::Spmr),
    (2, PacketType::Poll),
    (1, PacketType::Polr),
];

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A receiver configuration chosen by the input, with small bounds so that they are reached.
pub(crate) fn config(inp: &mut Input<'_>) -> ReceiverConfig {
    let mut c = ReceiverConfig::new(DPORT, GROUP);
    c.rxw_sqns = inp.pick(&[1, 2, 16, 64, 256, 1024]);
    c.max_sources = inp.pick(&[1, 2, 3]);
    c.max_buffer_bytes = inp.pick(&[0, 1000, 16 << 10, 256 << 10]);
    c.max_apdu = inp.pick(&[16, 1500, 8 << 10]);
    c.nak_bo_ivl = inp.pick(&[Duration::ZERO, ms(1), ms(50)]);
    c.nak_rpt_ivl = inp.pick(&[ms(1), ms(200)]);
    c.nak_rdata_ivl = inp.pick(&[ms(1), ms(500)]);
    c.nak_ncf_retries = inp.pick(&[0, 1, 3, 50]);
    c.nak_data_retries = inp.pick(&[0, 1, 3, 50]);
    c.peer_expiry = inp.pick(&[ms(100), ms(5000), ms(30_000)]);
    c.spmr_bo_ivl = inp.pick(&[Duration::ZERO, ms(250)]);
    c.spmr_spm_ivl = inp.pick(&[ms(1), ms(1000)]);
    c.max_spmr_rate = inp.pick(&[0, 1, 10]);
    c.adaptive_nak_timers = inp.bool();
    c.nak_ivl_floor = inp.pick(&[ms(1), ms(10)]);
    c.answer_polls = !inp.one_in(4);
    c.join_hold = inp.pick(&[Duration::ZERO, ms(20)]);
    c.sessions = match inp.below(6) {
        0 => SessionFilter::One {
            tsi: Some(MAIN),
            source: None,
        },
        1 => SessionFilter::One {
            tsi: None,
            source: Some(SRC),
        },
        _ => SessionFilter::All,
    };
    c.rng_seed = u64::from(inp.u8());
    c.local_addr = inp.pick(&[
        None,
        Some(crate::packets::RCV_A),
        Some(crate::packets::RCV_A),
    ]);
    c.pgmcc = !inp.one_in(4);
    c.ack_bo_ivl = inp.pick(&[Duration::ZERO, ms(1), ms(50)]);
    c
}

/// Bounds of a receiver, shared with the repairer's embedded one.
pub(crate) fn check(r: &Receiver) {
    let c = r.config();
    let rxw = c.rxw_sqns as usize;
    let sources = r.sources();
    assert!(
        sources <= c.max_sources,
        "{sources} sources, max_sources {}",
        c.max_sources
    );
    assert_eq!(r.tsis().len(), sources, "tsis() and sources() disagree");
    let slots = r.window_slots();
    assert!(
        slots <= sources * rxw,
        "{slots} window slots for {sources} sources of rxw_sqns {rxw}"
    );
    let bytes = r.buffered_bytes();
    let bound = c.max_buffer_bytes + sources * 2 * c.max_apdu;
    assert!(
        bytes <= bound || crate::driver::known("rx-buffered-bound"),
        "{bytes} bytes buffered, over max_buffer_bytes {} plus a message per source",
        c.max_buffer_bytes
    );
    // The wake-up queue is rebuilt past twice the sources plus 64; each source's NAK timer
    // queue is compacted past twice its slots plus 64, and between compactions grows by at
    // most a window's worth of slots.
    let timers = r.timer_entries();
    let bound = 2 * c.max_sources + 65 + sources * (4 * rxw + 2 * 64 + MAX_NAK_LIST + 1);
    assert!(
        timers <= bound || crate::driver::known("rx-timer-entries"),
        "{timers} timer entries for {sources} sources and {slots} slots (bound {bound})"
    );
    for tsi in r.tsis() {
        assert!(
            r.source_addr(&tsi).is_some(),
            "{tsi} listed but not tracked"
        );
    }
}

/// Transmits a receiver may queue in one call: NAKs of at most 63 sequence numbers for its
/// slots, plus SPMRs and a POLR per source.
pub(crate) fn tx_bound(r: &Receiver, op: OpKind) -> usize {
    match op {
        // A packet draws at most one ACK (PGMCC) per source, coalesced until sent.
        OpKind::Packet => r.sources(),
        _ => r.window_slots() / (1 + MAX_NAK_LIST) + 8 * r.sources() + 8,
    }
}

/// Events a receiver may give for one call: a loss and a message per slot it delivers (at
/// most those it holds and a window's worth more), and a start and an end per source.
pub(crate) fn event_bound(r: &Receiver) -> usize {
    let rxw = r.config().rxw_sqns as usize;
    2 * (r.window_slots() + 2 * rxw) + 4 * (r.sources() + 1) + 8
}

/// Heap a receiver may hold by its configuration: per source a window of `rxw_sqns` slots
/// and their timers (generously 512 bytes a sequence number), a message being reassembled
/// (twice `max_apdu`, for the vector's growth) and the session's own state; the data
/// buffered, twice for allocation slack.
pub(crate) fn heap_bound(c: &ReceiverConfig) -> usize {
    2 * c.max_buffer_bytes
        + c.max_sources * (c.rxw_sqns as usize * 512 + 4 * c.max_apdu + (16 << 10))
        + (64 << 10)
}

/// What holds once every source has been silent for longer than `peer_expiry`.
pub(crate) fn check_quiet(r: &Receiver) {
    assert_eq!(r.sources(), 0, "sources left after silence");
    assert_eq!(r.window_slots(), 0, "window slots left after silence");
    if !crate::driver::known("rx-expiry-buffered") {
        assert_eq!(r.buffered_bytes(), 0, "buffered bytes left after silence");
    }
    assert_eq!(r.timer_entries(), 0, "timer entries left after silence");
}

struct Rx {
    r: Receiver,
}

impl Engine for Rx {
    fn handle(&mut self, now: Instant, d: &Delivery) {
        let meta = RecvMeta {
            source: d.from,
            destination: d.to,
        };
        self.r.handle_packet(now, meta, &d.bytes);
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.r.poll_timeout()
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.r.handle_timeout(now);
    }

    fn poll_transmit(&mut self, now: Instant, buf: &mut Vec<u8>) -> Option<Sent> {
        self.r.poll_transmit(now, buf).map(|t| Sent {
            packet_type: t.packet_type,
            len: t.len,
        })
    }

    fn poll_event(&mut self) -> Option<Event> {
        self.r.poll_event()
    }

    fn tx_bound(&self, op: OpKind) -> usize {
        tx_bound(&self.r, op)
    }

    fn event_bound(&self) -> usize {
        event_bound(&self.r)
    }

    fn check(&self) {
        check(&self.r);
    }

    fn heap_bound(&self) -> usize {
        heap_bound(self.r.config())
    }

    fn check_quiet(&self) {
        check_quiet(&self.r);
    }
}

/// Runs the operations of `data` on a receiver.
pub fn receiver(data: &[u8]) {
    let heap_base = crate::alloc::live_bytes();
    let mut inp = Input::new(data);
    let c = config(&mut inp);
    let mut w = World::new(&mut inp, TYPES, c.rxw_sqns);
    crate::driver::trace!("{c:?}");
    let mut e = Rx {
        r: Receiver::new(c),
    };
    run(&mut inp, &mut e, &mut w, crate::driver::epoch(), heap_base);
}
