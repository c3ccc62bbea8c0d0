//! No input makes the parser panic: random buffers and mutations of valid packets go through
//! every checked entry point and, when accepted, through every accessor, the option iterator,
//! `Repr::parse` and a re-emit. Runs on the stable toolchain; `PGM_FUZZ_ITERATIONS` sets the
//! count (default 200,000 in total, bounded for CI).
//!
//! Inputs that once broke an invariant are kept in `regressions()` below.

mod common;

use pgm_core::wire::{
    DataPacket, NakPacket, Packet, PollPacket, PolrPacket, Repr, SpmPacket, WireError,
};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

/// splitmix64: a tiny deterministic generator for the mutation loop.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Runs every checked entry point on `bytes`; when the packet is accepted, exercises every
/// accessor and checks that parse -> emit -> parse is stable.
fn exercise(bytes: &[u8]) {
    let Ok(p) = Packet::new_checked(bytes) else {
        // Every typed constructor must refuse what the generic one refuses.
        assert!(SpmPacket::new_checked(bytes).is_err());
        assert!(DataPacket::new_checked(bytes).is_err());
        assert!(NakPacket::new_checked(bytes).is_err());
        assert!(PollPacket::new_checked(bytes).is_err());
        assert!(PolrPacket::new_checked(bytes).is_err());
        assert!(Repr::parse_bytes(bytes).is_err());
        return;
    };
    let _ = p.verify_checksum();
    let _ = (p.tsi(), p.options_flags(), p.payload().len(), p.to_string());
    for o in p.options() {
        let _ = (
            o.option_type(),
            o.wire_len(),
            o.flags.opx(),
            o.flags.encoded(),
        );
    }
    if let Ok(s) = SpmPacket::new_checked(bytes) {
        let _ = (s.sqn(), s.trail(), s.lead(), s.path(), s.has_window());
    }
    if let Ok(d) = DataPacket::new_checked(bytes) {
        let _ = (d.sqn(), d.trail(), d.payload());
    }
    if let Ok(n) = NakPacket::new_checked(bytes) {
        let _ = (n.sqn(), n.source_nla(), n.group_nla());
    }
    if let Ok(q) = PollPacket::new_checked(bytes) {
        let _ = (
            q.sqn(),
            q.round(),
            q.subtype(),
            q.path(),
            q.rand(),
            q.mask(),
        );
        let _ = q.backoff_ivl_us();
    }
    if let Ok(r) = PolrPacket::new_checked(bytes) {
        let _ = (r.sqn(), r.round());
    }
    let repr = Repr::parse(&p).expect("a checked packet parses");
    let _ = repr.to_string();
    let mut out = vec![0u8; repr.buffer_len()];
    match repr.emit(&mut out) {
        Ok(n) => {
            assert_eq!(n, out.len());
            let again = Repr::parse_bytes(&out).expect("re-emitted packet parses");
            assert_eq!(again, repr, "parse/emit/parse is stable");
        }
        // A received chain may hold more than the emitter accepts (never more than 16 here,
        // since the parser bounds it), so only this error is tolerated.
        Err(e) => assert_eq!(e, WireError::Unrepresentable),
    }
}

fn iterations() -> usize {
    std::env::var("PGM_FUZZ_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000)
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = Rng(0x5EED_0001);
    let mut buf = Vec::new();
    for _ in 0..iterations() / 4 {
        buf.clear();
        let len = rng.below(120);
        buf.extend((0..len).map(|_| rng.next() as u8));
        // Bias towards plausible headers so that deeper code is reached: version 0, a known
        // type, and often the options bit.
        if len > 5 {
            buf[4] = [0x00, 0x01, 0x02, 0x04, 0x05, 0x08, 0x09, 0x0A, 0x0C][rng.below(9)];
            buf[5] &= 0xC3;
        }
        exercise(&buf);
    }
}

#[test]
fn mutated_packets_never_panic() {
    // Valid packets from the round-trip strategy, then mutated.
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        TestRng::from_seed(RngAlgorithm::ChaCha, &[7; 32]),
    );
    let strategy = common::model();
    let mut rng = Rng(0x5EED_0002);
    let rounds = iterations() * 3 / 4;
    let per_packet = 50;
    for _ in 0..rounds / per_packet {
        let model = strategy.new_tree(&mut runner).expect("strategy").current();
        let valid = model.emit();
        exercise(&valid);
        for _ in 0..per_packet {
            let mut m = valid.clone();
            match rng.below(6) {
                0 => {
                    let i = rng.below(m.len());
                    m[i] ^= 1 << rng.below(8);
                }
                1 => {
                    let i = rng.below(m.len());
                    m[i] = rng.next() as u8;
                }
                2 => m.truncate(rng.below(m.len())),
                3 => {
                    let i = rng.below(m.len() + 1);
                    m.insert(i, rng.next() as u8);
                }
                4 => {
                    // Lengths are the fragile fields: TSDU length, OPT_LENGTH total, an option
                    // length byte somewhere after the fixed header.
                    let i = 14 + rng.below(m.len().saturating_sub(14));
                    if i < m.len() {
                        m[i] = m[i].wrapping_add(rng.below(9) as u8).wrapping_sub(4);
                    }
                }
                _ => {
                    let i = rng.below(m.len());
                    let j = rng.below(m.len());
                    m.swap(i, j);
                }
            }
            exercise(&m);
        }
    }
}

/// Inputs kept because they once broke something, or because they sit on an edge.
#[test]
fn regressions() {
    let cases: &[&[u8]] = &[
        &[],
        &[0; 15],
        // Header only, type SPM, no body.
        &[0, 1, 0, 2, 0x00, 0, 0, 0, 1, 2, 3, 4, 5, 6, 0, 0],
        // SPMR claiming options present but none there.
        &[0, 1, 0, 2, 0x0C, 0x01, 0, 0, 1, 2, 3, 4, 5, 6, 0, 0],
        // SPMR with OPT_LENGTH whose total is 4 (no option, so no OPT_END).
        &[
            0, 1, 0, 2, 0x0C, 0x01, 0, 0, 1, 2, 3, 4, 5, 6, 0, 0, 0x00, 0x04, 0x00, 0x04,
        ],
        // SPMR with an option of length 0.
        &[
            0, 1, 0, 2, 0x0C, 0x01, 0, 0, 1, 2, 3, 4, 5, 6, 0, 0, 0x00, 0x04, 0x00, 0x08, 0x8D,
            0x00, 0, 0,
        ],
        // ODATA whose TSDU length exceeds the buffer.
        &[
            0, 1, 0, 2, 0x04, 0, 0, 0, 1, 2, 3, 4, 5, 6, 0xFF, 0xFF, 0, 0, 0, 1, 0, 0, 0, 0,
        ],
        // NAK with AFI 2 but only 4 address bytes.
        &[
            0, 1, 0, 2, 0x08, 0, 0, 0, 1, 2, 3, 4, 5, 6, 0, 0, 0, 0, 0, 9, 0, 2, 0, 0, 10, 0, 0, 1,
        ],
    ];
    for c in cases {
        exercise(c);
        assert!(Packet::new_checked(*c).is_err(), "{c:?} must be refused");
    }
}
