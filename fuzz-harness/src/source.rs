//! The source engine under the driver.

use std::time::{Duration, Instant};

use pgm_core::proto::RecvMeta;
use pgm_core::proto::source::{SendError, Source, SourceConfig};
use pgm_core::wire::{Body, MAX_NAK_LIST, PacketType, Repr, Sqn};

use crate::driver::{Engine, OpKind, Sent, run, trace};
use crate::input::Input;
use crate::packets::{DPORT, Delivery, GROUP, MAIN, SRC, World};

/// Packet types a source meets, by weight: what receivers and network elements send it,
/// and now and then what it sends itself.
const TYPES: &[(u32, PacketType)] = &[
    (10, PacketType::Nak),
    (2, PacketType::Nnak),
    (3, PacketType::Spmr),
    (1, PacketType::Polr),
    (1, PacketType::Odata),
    (1, PacketType::Ncf),
    (1, PacketType::Spm),
    (6, PacketType::Ack),
];

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn config(inp: &mut Input<'_>) -> SourceConfig {
    let mut c = SourceConfig::new(MAIN.gsi, MAIN.sport, DPORT, GROUP, SRC);
    c.max_tpdu = inp.pick(&[100, 300, 1400, 9000]);
    c.max_apdu = inp.pick(&[0, 100, 4096, 64 << 10]);
    c.txw_sqns = inp.pick(&[1, 2, 16, 256]);
    c.send_queue_sqns = inp.pick(&[1, 4, 64]);
    c.txw_secs = inp.pick(&[ms(10), ms(1000), ms(30_000)]);
    c.txw_bytes = inp.pick(&[0, 0, 1000, 100_000]);
    c.txw_max_rte = inp.pick(&[0, 0, 10_000, 1_000_000]);
    c.initial_spms = inp.pick(&[0, 1, 3]);
    // Long enough that the 200 s of silence at the end of a run are a few hundred steps.
    c.spm_ambient_ivl = inp.pick(&[ms(500), ms(5000)]);
    c.ihb_min = inp.pick(&[ms(1), ms(50)]);
    c.ihb_max = inp.pick(&[ms(500), ms(5000)]);
    c.ncf_holdoff = inp.pick(&[Duration::ZERO, ms(10)]);
    c.initial_sqn = match inp.below(3) {
        0 => 0,
        1 => u32::MAX - inp.below(4),
        _ => inp.u32(),
    };
    c.max_pending_ncfs = inp.pick(&[0, 1, 16]);
    c.late_join = inp.bool();
    c.pgmcc.enabled = !inp.one_in(4);
    c.pgmcc.ssthresh = inp.pick(&[0, 1, 4]);
    c.pgmcc.max_window = inp.pick(&[0, 1, 8, 65_536]);
    c.pgmcc.min_rto = inp.pick(&[Duration::ZERO, ms(1), ms(200)]);
    c.pgmcc.min_probe = inp.pick(&[Duration::ZERO, ms(1)]);
    c.pgmcc.initial_rto = inp.pick(&[ms(1), ms(1000)]);
    c.pgmcc.retry_max = inp.pick(&[0, 2]);
    c.pgmcc.acker = inp.pick(&[None, None, Some(crate::packets::RCV_A)]);
    c
}

struct Src {
    s: Source,
}

impl Src {
    /// Sequence numbers in the transmit window (sent and held for repair).
    fn window(&self) -> u32 {
        (self.s.lead() + 1)
            .since(self.s.trail())
            .expect("the trail is past the lead")
    }

    fn send(&mut self, inp: &mut Input<'_>) {
        let c = self.s.config();
        let len = match inp.below(8) {
            0 => 0,
            1..=3 => 1 + inp.below(100) as usize,
            4 => c.max_tpdu.saturating_sub(48) + inp.below(16) as usize,
            5 => inp.below(c.max_apdu as u32 + 1) as usize,
            6 => c.max_apdu,
            _ => c.max_apdu + 1,
        };
        let data = vec![inp.u8(); len];
        let queued = self.s.queued();
        trace!("  send {len} bytes");
        match self.s.send(&data) {
            Ok(()) => {}
            Err(SendError::TooLarge) => {}
            Err(SendError::WouldBlock) => assert!(queued > 0, "WouldBlock with an empty queue"),
            Err(SendError::Closed) => {}
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
}

impl Engine for Src {
    fn handle(&mut self, now: Instant, d: &Delivery) {
        let meta = RecvMeta {
            source: d.from,
            destination: d.to,
        };
        self.s.handle_packet(now, meta, &d.bytes);
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.s.poll_timeout()
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.s.handle_timeout(now);
    }

    fn poll_transmit(&mut self, now: Instant, buf: &mut Vec<u8>) -> Option<Sent> {
        self.s.poll_transmit(now, buf).map(|t| Sent {
            packet_type: t.packet_type,
            len: t.len,
        })
    }

    fn check_transmit(&self, sent: &Sent, repr: &Repr<'_>) {
        let (trail, lead) = (self.s.trail(), self.s.lead());
        assert_eq!(repr.tsi(), self.s.tsi(), "a transmit of another session");
        match repr.body {
            Body::Odata(d) | Body::Rdata(d) => {
                assert!(
                    sent.len <= self.s.config().max_tpdu,
                    "a {} of {} bytes, over max_tpdu {}",
                    sent.packet_type,
                    sent.len,
                    self.s.config().max_tpdu
                );
                if sent.packet_type == PacketType::Odata {
                    assert_eq!(d.sqn, lead, "ODATA other than the new lead");
                } else {
                    assert!(
                        d.sqn.in_range(trail, lead),
                        "RDATA {} outside the window [{trail}, {lead}]",
                        d.sqn
                    );
                }
            }
            Body::Spm(s) => {
                assert_eq!(
                    (s.trail, s.lead),
                    (trail, lead),
                    "an SPM with a stale window"
                );
            }
            _ => {}
        }
    }

    fn tx_bound(&self, _op: OpKind) -> usize {
        // The opening SPMs, an SPM, an NCF, a repair per sequence number of the window, what
        // is queued, and one NAK's worth of repairs.
        let c = self.s.config();
        usize::from(c.initial_spms)
            + 4
            + self.window() as usize
            + self.s.queued()
            + c.max_pending_ncfs.min(1)
            + 1
            + MAX_NAK_LIST
    }

    fn check(&self) {
        let c = self.s.config();
        let window = self.window();
        assert!(
            window <= c.txw_sqns,
            "{window} packets in the transmit window, txw_sqns {}",
            c.txw_sqns
        );
        let queued = self.s.queued();
        assert!(
            queued <= c.send_queue_sqns.max(c.txw_sqns) as usize,
            "{queued} packets queued, send_queue_sqns {}",
            c.send_queue_sqns
        );
        assert_eq!(
            self.s.next_sqn(),
            self.s.lead() + 1 + queued as u32,
            "next_sqn is not lead + 1 + queued"
        );
        assert_eq!(self.s.is_drained(), queued == 0);
        if let Some(cc) = self.s.pgmcc_state() {
            let max = f64::from(c.pgmcc.max_window.max(1));
            assert!(
                cc.window >= 1.0 && cc.window <= max.max(1.0),
                "PGMCC window {} outside [1, {max}]",
                cc.window
            );
            assert!(
                cc.tokens <= cc.window && cc.tokens.is_finite() && cc.tokens > -cc.window - 2.0,
                "PGMCC tokens {} with window {}",
                cc.tokens,
                cc.window
            );
        }
    }

    fn heap_bound(&self) -> usize {
        // Sent and queued packets (each at most a TPDU, plus its entry), twice for the
        // deque's growth; a repair entry per packet; the NCF queue.
        let c = self.s.config();
        let packets = c.txw_sqns.max(1) as usize + c.send_queue_sqns.max(c.txw_sqns) as usize;
        2 * packets * (c.max_tpdu + 128)
            + packets * 64
            + c.max_pending_ncfs * 2 * (4 * (1 + MAX_NAK_LIST) + 64)
            + (64 << 10)
    }

    fn special(&mut self, now: Instant, inp: &mut Input<'_>, _w: &mut World) {
        match inp.below(8) {
            0 => {
                trace!("  close");
                self.s.close(now);
            }
            _ => self.send(inp),
        }
    }

    fn burst(&mut self, inp: &mut Input<'_>, _w: &mut World) -> Vec<Delivery> {
        for _ in 0..=inp.below(8) {
            self.send(inp);
        }
        Vec::new()
    }

    fn sync(&self, w: &mut World) {
        // Requests are made around the window the source has now.
        w.bases[0] = self.s.lead();
    }

    fn check_quiet(&self) {
        assert!(self.s.is_drained(), "data still queued after 200 s");
        assert_eq!(
            self.window(),
            0,
            "the window still holds data sent long ago"
        );
    }
}

/// Runs the operations of `data` on a source.
pub fn source(data: &[u8]) {
    let heap_base = crate::alloc::live_bytes();
    let mut inp = Input::new(data);
    let c = config(&mut inp);
    let mut w = World::new(&mut inp, TYPES, c.txw_sqns);
    trace!("{c:?}");
    let now = crate::driver::epoch();
    let s = Source::new(c, now);
    w.bases[0] = s.lead();
    w.bases[1] = Sqn(s.lead().0 ^ 0x8000_0000);
    let mut e = Src { s };
    run(&mut inp, &mut e, &mut w, now, heap_base);
}
