//! Wire-format benchmarks (criterion).
//!
//! Run with `cargo bench -p pgm-core --bench wire`; figures are recorded in `BENCHMARKS.md`.
//!
//! - `checksum/{64,1500,9000}` and `memcpy/{64,1500,9000}`: the PGM checksum of a buffer beside
//!   a copy of the same buffer into a preallocated one, in decimal bytes/s (criterion prints
//!   GB/s). The target is a checksum within 2x of memcpy.
//! - `parse_verify/*`: a received packet is checked ([`Packet::new_checked`] through the typed
//!   view), its checksum verified and its main fields read, in packets/s.
//! - `emit/*`: a [`Repr`] is emitted into a reused buffer, checksum included, in packets/s.
//! - `spm_path/*`: a network element's SPM_PATH rewrite with the RFC 1624 incremental checksum
//!   ([`SpmPacket::rewrite_path`]) against rewriting the NLA and re-summing the whole packet.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use pgm_core::wire::{
    Body, DataPacket, DataRepr, Gsi, NakPacket, NakRepr, Nla, OptionList, OptionValue, Packet,
    PgmOption, Repr, SpmPacket, SpmRepr, Sqn, SqnList, checksum,
};

/// Buffer sizes for the checksum and memcpy groups: a small control packet, an Ethernet MTU
/// and a jumbo frame.
const SIZES: [usize; 3] = [64, 1500, 9000];

/// The ODATA payload size: a TSDU that fits a 1500-byte MTU with IP/UDP and PGM headers.
const ODATA_TSDU: usize = 1400;

/// Deterministic, non-trivial bytes (a simple LCG), so the checksum sees real carries.
fn filled(len: usize) -> Vec<u8> {
    let mut x: u32 = 0x9E37_79B9;
    (0..len)
        .map(|_| {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            (x >> 16) as u8
        })
        .collect()
}

fn gsi() -> Gsi {
    Gsi([0x02, 0x42, 0xAC, 0x11, 0x00, 0x02])
}

fn repr<'a>(body: Body<'a>, options: OptionList<'a>) -> Repr<'a> {
    Repr {
        sport: 7500,
        dport: 7500,
        gsi: gsi(),
        parity: false,
        var_pktlen: false,
        body,
        options,
    }
}

fn odata(payload: &[u8]) -> Repr<'_> {
    repr(
        Body::Odata(DataRepr {
            sqn: Sqn(0x0001_0000),
            trail: Sqn(0x0000_FF00),
            payload,
        }),
        OptionList::EMPTY,
    )
}

fn nak_body() -> Body<'static> {
    Body::Nak(NakRepr {
        sqn: Sqn(4242),
        source: Nla(Ipv4Addr::new(192, 0, 2, 1).into()),
        group: Nla(Ipv4Addr::new(239, 192, 0, 1).into()),
    })
}

fn spm() -> Repr<'static> {
    repr(
        Body::Spm(SpmRepr {
            sqn: Sqn(77),
            trail: Sqn(1000),
            lead: Sqn(2000),
            path: Nla(Ipv4Addr::new(192, 0, 2, 1).into()),
        }),
        OptionList::EMPTY,
    )
}

/// Emits `r` into a fresh buffer of exactly its length.
fn emitted(r: &Repr<'_>) -> Vec<u8> {
    let mut buf = vec![0u8; r.buffer_len()];
    let n = r.emit(&mut buf).expect("emit");
    assert_eq!(n, buf.len());
    buf
}

fn bench_checksum_vs_memcpy(c: &mut Criterion) {
    // Each size's checksum and memcpy are measured back to back, so that both see the same
    // machine state (frequency, other load) as far as possible.
    for &n in &SIZES {
        let data = filled(n);
        let mut dst = vec![0u8; n];

        let mut g = c.benchmark_group("checksum");
        g.throughput(Throughput::BytesDecimal(n as u64));
        g.bench_function(n.to_string(), |b| {
            b.iter(|| checksum(black_box(&data)));
        });
        g.finish();

        let mut g = c.benchmark_group("memcpy");
        g.throughput(Throughput::BytesDecimal(n as u64));
        g.bench_function(n.to_string(), |b| {
            b.iter(|| {
                black_box(&mut dst[..]).copy_from_slice(black_box(&data));
                black_box(&dst);
            });
        });
        g.finish();
    }
}

fn bench_parse_verify(c: &mut Criterion) {
    let payload = filled(ODATA_TSDU);
    let odata_pkt = emitted(&odata(&payload));
    let nak_pkt = emitted(&repr(nak_body(), OptionList::EMPTY));
    let sqns: Vec<Sqn> = (1..=62).map(|i| Sqn(4242 + i)).collect();
    let list = [PgmOption::from(OptionValue::NakList(SqnList::Slice(&sqns)))];
    let nak_list_pkt = emitted(&repr(nak_body(), OptionList::Slice(&list)));
    let spm_pkt = emitted(&spm());

    let mut g = c.benchmark_group("parse_verify");
    g.throughput(Throughput::Elements(1));
    g.bench_function("odata_1400", |b| {
        b.iter(|| {
            let p = DataPacket::new_checked(black_box(&odata_pkt[..])).expect("odata");
            p.verify_checksum().expect("checksum");
            black_box((p.tsi(), p.sqn(), p.trail(), p.payload().len()))
        });
    });
    g.bench_function("nak", |b| {
        b.iter(|| {
            let p = NakPacket::new_checked(black_box(&nak_pkt[..])).expect("nak");
            p.verify_checksum().expect("checksum");
            black_box((p.tsi(), p.sqn(), p.source_nla(), p.group_nla()))
        });
    });
    g.bench_function("nak_list_62", |b| {
        b.iter(|| {
            let p = NakPacket::new_checked(black_box(&nak_list_pkt[..])).expect("nak");
            p.verify_checksum().expect("checksum");
            // Every sequence number the NAK asks for: the header's and the list's.
            let mut sum = u64::from(p.sqn().0);
            for o in p.options() {
                if let OptionValue::NakList(l) = o.value {
                    sum += l.iter().map(|s| u64::from(s.0)).sum::<u64>();
                }
            }
            black_box((p.tsi(), p.source_nla(), p.group_nla(), sum))
        });
    });
    g.bench_function("spm", |b| {
        b.iter(|| {
            let p = SpmPacket::new_checked(black_box(&spm_pkt[..])).expect("spm");
            p.verify_checksum().expect("checksum");
            black_box((p.tsi(), p.sqn(), p.trail(), p.lead(), p.path()))
        });
    });
    g.finish();
}

fn bench_emit(c: &mut Criterion) {
    let payload = filled(ODATA_TSDU);
    let sqns: Vec<Sqn> = (1..=62).map(|i| Sqn(4242 + i)).collect();
    let list = [PgmOption::from(OptionValue::NakList(SqnList::Slice(&sqns)))];
    let cases = [
        ("odata_1400", odata(&payload)),
        ("nak", repr(nak_body(), OptionList::EMPTY)),
        ("nak_list_62", repr(nak_body(), OptionList::Slice(&list))),
        ("spm", spm()),
    ];

    let mut g = c.benchmark_group("emit");
    g.throughput(Throughput::Elements(1));
    // One reused transmit buffer, as a sender's would be.
    let mut buf = vec![0u8; 9000];
    for (name, r) in &cases {
        g.bench_function(*name, |b| {
            b.iter(|| black_box(r).emit(black_box(&mut buf[..])).expect("emit"));
        });
    }
    g.finish();
}

fn bench_spm_path(c: &mut Criterion) {
    /// Where SPM_PATH's address lies in an SPM: header (16), SQN/TRAIL/LEAD (12), AFI and
    /// reserved (4).
    const PATH_ADDR: usize = 32;
    let hops = [
        Nla(Ipv4Addr::new(198, 51, 100, 1).into()),
        Nla(Ipv4Addr::new(203, 0, 113, 254).into()),
    ];
    let hops6 = [
        Nla(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1).into()),
        Nla(Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0xabcd, 0x1).into()),
    ];
    let spm4 = emitted(&spm());
    let mut spm6_repr = spm();
    if let Body::Spm(s) = &mut spm6_repr.body {
        s.path = hops6[0];
    }
    let spm6 = emitted(&spm6_repr);

    let mut g = c.benchmark_group("spm_path");
    g.throughput(Throughput::Elements(1));
    for (name, pkt, hops) in [("v4", &spm4, &hops), ("v6", &spm6, &hops6)] {
        // Alternate between two hops so that every rewrite changes the bytes.
        let mut buf = pkt.clone();
        let mut i = 0usize;
        g.bench_function(format!("incremental_{name}"), |b| {
            b.iter(|| {
                i ^= 1;
                let mut p = SpmPacket::new_unchecked(black_box(&mut buf[..]));
                assert!(p.rewrite_path(hops[i]));
                black_box(p.checksum())
            });
        });
        assert!(Packet::new_unchecked(&buf[..]).verify_checksum().is_ok());

        let mut buf = pkt.clone();
        let addrs: Vec<Vec<u8>> = hops
            .iter()
            .map(|h| match h.0 {
                IpAddr::V4(a) => a.octets().to_vec(),
                IpAddr::V6(a) => a.octets().to_vec(),
            })
            .collect();
        let mut i = 0usize;
        g.bench_function(format!("full_{name}"), |b| {
            b.iter(|| {
                i ^= 1;
                let a = &addrs[i];
                let bytes = black_box(&mut buf[..]);
                bytes[PATH_ADDR..PATH_ADDR + a.len()].copy_from_slice(a);
                let mut p = Packet::new_unchecked(bytes);
                p.fill_checksum();
                black_box(p.checksum())
            });
        });
        assert!(Packet::new_unchecked(&buf[..]).verify_checksum().is_ok());
    }
    g.finish();
}

criterion_group!(
    benches,
    bench_checksum_vs_memcpy,
    bench_parse_verify,
    bench_emit,
    bench_spm_path
);
criterion_main!(benches);
