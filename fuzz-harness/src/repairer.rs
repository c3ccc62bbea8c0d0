//! The repairer (DLR) engine under the driver.

use std::time::{Duration, Instant};

use pgm_core::proto::RecvMeta;
use pgm_core::proto::receiver::Event;
use pgm_core::proto::repairer::{DlrConfig, Repairer};
use pgm_core::wire::{MAX_NAK_LIST, PacketType};

use crate::driver::{Engine, OpKind, Sent, run, trace};
use crate::input::Input;
use crate::packets::{DLR, Delivery, MAIN, World};
use crate::receiver;

/// Packet types a repairer meets, by weight.
const TYPES: &[(u32, PacketType)] = &[
    (10, PacketType::Odata),
    (3, PacketType::Rdata),
    (5, PacketType::Spm),
    (5, PacketType::Ncf),
    (6, PacketType::Nak),
    (1, PacketType::Nnak),
    (1, PacketType::Spmr),
    (4, PacketType::Poll),
    (1, PacketType::Polr),
];

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn cache_limits(inp: &mut Input<'_>) -> (usize, Duration) {
    (
        inp.pick(&[0, 2000, 64 << 10]),
        inp.pick(&[ms(10), ms(1000), ms(60_000)]),
    )
}

struct Dlr {
    d: Repairer,
    /// The cache bounds in force.
    cache_bytes: usize,
    max_sessions: usize,
}

impl Engine for Dlr {
    fn handle(&mut self, now: Instant, d: &Delivery) {
        let meta = RecvMeta {
            source: d.from,
            destination: d.to,
        };
        self.d.handle_packet(now, meta, &d.bytes);
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.d.poll_timeout()
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.d.handle_timeout(now);
    }

    fn poll_transmit(&mut self, now: Instant, buf: &mut Vec<u8>) -> Option<Sent> {
        self.d.poll_transmit(now, buf).map(|t| Sent {
            packet_type: t.packet_type,
            len: t.len,
        })
    }

    fn poll_event(&mut self) -> Option<Event> {
        self.d.poll_event()
    }

    fn tx_bound(&self, op: OpKind) -> usize {
        // The receiver's, plus for a NAK an NCF, an NNAK, a repair per sequence number and
        // a NAK to the parent; for time, the POLRs due.
        receiver::tx_bound(self.d.receiver(), op)
            + self.d.queued_transmits()
            + self.d.pending_polrs()
            + 2 * (1 + MAX_NAK_LIST)
            + 4
    }

    fn event_bound(&self) -> usize {
        receiver::event_bound(self.d.receiver())
    }

    fn check(&self) {
        receiver::check(self.d.receiver());
        let s = self.d.stats();
        assert!(
            s.cache_bytes as usize <= self.cache_bytes,
            "{} bytes cached, cache_bytes {}",
            s.cache_bytes,
            self.cache_bytes
        );
        assert_eq!(
            s.cache_entries == 0,
            s.cache_bytes == 0,
            "{} packets cached in {} bytes",
            s.cache_entries,
            s.cache_bytes
        );
        assert_eq!(s.cache_entries == 0, self.d.oldest_cached().is_none());
        let sessions = self.d.sessions();
        assert!(
            sessions <= self.max_sessions,
            "{sessions} sessions, max_sessions {}",
            self.max_sessions
        );
        assert!(
            self.d.pending_polrs() <= sessions,
            "{} POLRs pending for {sessions} sessions",
            self.d.pending_polrs()
        );
        assert!(self.d.remembered_naks() <= sessions * 4096);
        assert_eq!(self.d.queued_transmits(), 0, "transmits left after a drain");
    }

    fn heap_bound(&self) -> usize {
        // The cache (packets plus their entries, twice for slack), the embedded receiver,
        // and per session its tables (NAKs remembered: at most 4096 each).
        let entries = self.cache_bytes / 24 + 1;
        2 * self.cache_bytes
            + entries * 128
            + receiver::heap_bound(self.d.receiver().config())
            + self.max_sessions * (4096 * 64 + (4 << 10))
    }

    fn special(&mut self, now: Instant, inp: &mut Input<'_>, _w: &mut World) {
        match inp.below(4) {
            0 | 1 => {
                let (bytes, age) = cache_limits(inp);
                trace!("  set_cache_limits {bytes} {age:?}");
                self.d.set_cache_limits(now, bytes, age);
                self.cache_bytes = bytes;
            }
            _ => {
                let before = self.d.stats().cache_bytes;
                let freed = self.d.evict_oldest();
                trace!("  evict_oldest: {freed} bytes");
                assert_eq!(
                    before - self.d.stats().cache_bytes,
                    freed as u64,
                    "evict_oldest() freed other than it says"
                );
            }
        }
    }

    fn check_quiet(&self) {
        receiver::check_quiet(self.d.receiver());
        let s = self.d.stats();
        assert_eq!(
            (s.cache_entries, s.cache_bytes),
            (0, 0),
            "cache entries left after silence"
        );
        assert_eq!(self.d.pending_polrs(), 0, "POLRs pending after silence");
    }
}

/// Runs the operations of `data` on a repairer.
pub fn repairer(data: &[u8]) {
    let heap_base = crate::alloc::live_bytes();
    let mut inp = Input::new(data);
    let rc = receiver::config(&mut inp);
    let rxw = rc.rxw_sqns;
    let mut c = DlrConfig::new(rc, DLR);
    (c.cache_bytes, c.cache_age) = cache_limits(&mut inp);
    c.upstream = !inp.one_in(4);
    c.off_tree = !inp.one_in(4);
    c.redirect_holdoff = inp.pick(&[Duration::ZERO, ms(1000)]);
    c.serve = inp.one_in(4).then(|| vec![MAIN]);
    c.max_sessions = inp.pick(&[1, 2, 8]);
    let mut w = World::new(&mut inp, TYPES, rxw);
    trace!("{c:?}");
    if !inp.one_in(4) {
        w.nak_to = DLR;
    }
    let mut e = Dlr {
        cache_bytes: c.cache_bytes,
        max_sessions: c.max_sessions,
        d: Repairer::new(c),
    };
    run(&mut inp, &mut e, &mut w, crate::driver::epoch(), heap_base);
}
