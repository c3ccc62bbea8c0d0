//! Scripted exchanges with the source engine (§5): NCF before RDATA, merging, the window,
//! SPMR answers, FIN, the token bucket, malformed input.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use pgm_core::proto::pgmcc::PgmccConfig;
use pgm_core::proto::source::{SendError, Source, SourceConfig};
use pgm_core::proto::{Destination, RecvMeta, Transmit};
use pgm_core::wire::{
    Body, Gsi, NakRepr, Nla, OptionList, OptionValue, PacketType, PgmOption, Repr, Sqn, SqnList,
};

const GROUP: IpAddr = IpAddr::V4(Ipv4Addr::new(239, 192, 0, 1));
const SRC: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
const RCV: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));
const GSI: Gsi = Gsi([1, 2, 3, 4, 5, 6]);

fn t0() -> Instant {
    #[expect(clippy::disallowed_methods, reason = "the test's epoch")]
    Instant::now()
}

/// PGMCC off: these tests drive the source without receivers, and PGMCC (its own tests are
/// in `pgmcc_engine.rs`) would hold it to its initial window until the election wait ends.
fn config() -> SourceConfig {
    let mut c = SourceConfig::new(GSI, 4000, 7500, GROUP, SRC);
    c.pgmcc = PgmccConfig::disabled();
    c
}

fn meta() -> RecvMeta {
    RecvMeta {
        source: RCV,
        destination: SRC,
    }
}

/// Drains every transmit at `now`, parsed back.
fn drain(src: &mut Source, now: Instant) -> Vec<(Transmit, Vec<u8>)> {
    let mut out = Vec::new();
    let mut buf = Vec::new();
    while let Some(t) = src.poll_transmit(now, &mut buf) {
        out.push((t, buf[..t.len].to_vec()));
    }
    out
}

fn nak(sqns: &[u32]) -> Vec<u8> {
    let rest: Vec<Sqn> = sqns[1..].iter().map(|&s| Sqn(s)).collect();
    let opts = [PgmOption::from(OptionValue::NakList(SqnList::Slice(&rest)))];
    let repr = Repr {
        sport: 7500,
        dport: 4000,
        gsi: GSI,
        parity: false,
        var_pktlen: false,
        body: Body::Nak(NakRepr {
            sqn: Sqn(sqns[0]),
            source: Nla(SRC),
            group: Nla(GROUP),
        }),
        options: if rest.is_empty() {
            OptionList::EMPTY
        } else {
            OptionList::Slice(&opts)
        },
    };
    let mut buf = vec![0; repr.buffer_len()];
    repr.emit(&mut buf).expect("emit nak");
    buf
}

fn types(out: &[(Transmit, Vec<u8>)]) -> Vec<PacketType> {
    out.iter().map(|(t, _)| t.packet_type).collect()
}

#[test]
fn starts_with_an_spm_then_odata_with_syn() {
    let now = t0();
    let mut cfg = config();
    cfg.initial_spms = 1;
    let mut s = Source::new(cfg, now);
    s.send(b"hello").expect("send");
    let out = drain(&mut s, now);
    //= https://www.rfc-editor.org/rfc/rfc3208#section-5.1.3
    //# To preserve the logic of PGM's transmit window, a source MUST
    //# strictly prioritize sending of pending NCFs first, pending SPMs
    //# second, and only send ODATA or RDATA when no NCFs or SPMs are
    //# pending.
    assert_eq!(types(&out), [PacketType::Spm, PacketType::Odata]);
    let odata = Repr::parse_bytes(&out[1].1).expect("parse");
    assert!(
        odata
            .options
            .find(pgm_core::wire::OptionType::Syn)
            .is_some()
    );
    assert_eq!(out[1].0.destination, Destination::Group(GROUP));
    assert!(!out[1].0.router_alert, "ODATA carries no Router Alert");
    let spm = Repr::parse_bytes(&out[0].1).expect("parse");
    let Body::Spm(spm) = spm.body else {
        panic!("not an SPM")
    };
    // Empty window: trail = lead + 1 (§3.3).
    assert_eq!(spm.trail, spm.lead.next());
    //= https://www.rfc-editor.org/rfc/rfc3208#section-8
    //# Recall from General Procedures that, for PGM over IP multicast, SPMs,
    //# NCFs, and RDATA MUST also bear the IP Router Alert Option.
    assert!(out[0].0.router_alert, "SPMs carry Router Alert");
}

/// A receiver cannot NAK before an SPM has given it the source's path, and OpenPGM's gives up
/// on what it lost before then, so one lost opening SPM cost a whole interop run: the session
/// opens with `initial_spms` SPMs (default 3, as OpenPGM's source), each with the next SPM
/// sequence number, all before the first ODATA.
#[test]
fn the_session_opens_with_three_spms_before_data() {
    let now = t0();
    let mut s = Source::new(config(), now);
    s.send(b"hello").expect("send");
    let out = drain(&mut s, now);
    assert_eq!(
        types(&out),
        [
            PacketType::Spm,
            PacketType::Spm,
            PacketType::Spm,
            PacketType::Odata
        ]
    );
    let spms: Vec<(Sqn, Sqn, Sqn)> = out[..3]
        .iter()
        .map(|(_, b)| match Repr::parse_bytes(b).expect("spm").body {
            Body::Spm(spm) => (spm.sqn, spm.trail, spm.lead),
            _ => panic!("not an SPM"),
        })
        .collect();
    assert_eq!(
        spms.iter().map(|s| s.0).collect::<Vec<_>>(),
        [Sqn(0), Sqn(1), Sqn(2)],
        "each SPM has its own SPM_SQN (§9.6: receivers drop old ones)"
    );
    assert!(
        spms.iter().all(|s| s.1 == s.2.next()),
        "all announce the empty window"
    );
    // Later SPMs (heartbeats, SPMR answers) are single.
    let later = now + Duration::from_millis(60);
    s.handle_timeout(later);
    assert_eq!(types(&drain(&mut s, later)), [PacketType::Spm]);
}

#[test]
fn nak_draws_ncf_first_then_rdata_and_duplicates_merge() {
    let now = t0();
    let mut s = Source::new(config(), now);
    for i in 0..10u8 {
        s.send(&[i; 100]).expect("send");
    }
    drain(&mut s, now);
    //= https://www.rfc-editor.org/rfc/rfc3208#section-5.2
    //= type=test
    //# A source MUST immediately multicast an NCF in response to any NAK it
    //# receives.
    s.handle_packet(now, meta(), &nak(&[3, 5]));
    s.handle_packet(now, meta(), &nak(&[3]));
    let out = drain(&mut s, now);
    //= https://www.rfc-editor.org/rfc/rfc3208#section-5.3
    //# After multicasting an NCF in response to a NAK, a source MUST then
    //# multicast RDATA (while respecting TXW_MAX_RTE) in response to any NAK
    //# it receives for data packets within the transmit window.
    //= https://www.rfc-editor.org/rfc/rfc3208#section-9.3.4
    //# It MUST then multicast RDATA (while respecting TXW_MAX_RTE) for every
    //# requested sequence number.
    //= https://www.rfc-editor.org/rfc/rfc3208#section-5.2
    //# A source SHOULD be able to detect a NAK storm and adopt
    //# countermeasure to protect the network against a denial of service.
    //= https://www.rfc-editor.org/rfc/rfc3208#section-5.2
    //# The NCF is REQUIRED since the alternative of responding
    //# immediately with RDATA would not allow other PGM network elements on
    //# the same subnet to do NAK anticipation, nor would it allow DLRs on
    //# the same subnet to provide repairs.
    assert_eq!(
        types(&out),
        [PacketType::Ncf, PacketType::Rdata, PacketType::Rdata],
        "one NCF (the identical second one is held off), then one RDATA per sqn"
    );
    let ncf = Repr::parse_bytes(&out[0].1).expect("ncf");
    let Body::Ncf(n) = ncf.body else {
        panic!("not an NCF")
    };
    assert_eq!(n.sqn, Sqn(3));
    assert_eq!(n.source, Nla(SRC));
    let listed: Vec<Sqn> = ncf
        .options
        .iter()
        .find_map(|o| match o.value {
            OptionValue::NakList(l) => Some(l.iter().collect()),
            _ => None,
        })
        .expect("NCF carries the NAK list");
    assert_eq!(listed, [Sqn(5)]);
    let rdata: Vec<u32> = out[1..]
        .iter()
        .map(|(_, b)| match Repr::parse_bytes(b).expect("rdata").body {
            Body::Rdata(d) => d.sqn.0,
            _ => u32::MAX,
        })
        .collect();
    assert_eq!(rdata, [3, 5]);
    assert!(out[1].0.router_alert, "RDATA carries Router Alert");
    assert_eq!(s.stats().nak_sqns_merged, 1);
    assert_eq!(s.stats().ncfs_held_off, 1);
}

#[test]
fn naks_outside_the_window_are_not_repaired() {
    let now = t0();
    let mut cfg = config();
    cfg.txw_sqns = 4;
    let mut s = Source::new(cfg, now);
    for i in 0..10u8 {
        s.send(&[i]).expect("send");
        drain(&mut s, now);
    }
    assert_eq!(s.trail(), Sqn(6), "only the last 4 remain");
    s.handle_packet(now, meta(), &nak(&[2, 7, 20]));
    let out = drain(&mut s, now);
    assert_eq!(types(&out), [PacketType::Ncf, PacketType::Rdata]);
    assert_eq!(s.stats().nak_sqns_outside_window, 2);
}

#[test]
fn a_full_send_queue_blocks() {
    let now = t0();
    let mut cfg = config();
    cfg.send_queue_sqns = 3;
    let mut s = Source::new(cfg, now);
    for _ in 0..3 {
        s.send(b"x").expect("send");
    }
    assert_eq!(s.send(b"x"), Err(SendError::WouldBlock));
    drain(&mut s, now);
    assert_eq!(s.send(b"x"), Ok(()));
    // A message of more fragments than the queue holds waits for an empty queue, then goes.
    let big = vec![7u8; 5000];
    assert_eq!(s.send(&big), Err(SendError::WouldBlock));
    drain(&mut s, now);
    assert_eq!(s.send(&big), Ok(()));
    assert!(s.queued() > 3);
}

/// An application faster than the rate limit keeps the send queue full. The packets it
/// queues must not push sent ones out of the window: the window keeps the last `txw_sqns`
/// sent packets, whatever is queued behind TXW_LEAD, so a NAK for any of them is repaired.
#[test]
fn a_full_send_queue_does_not_shrink_the_window() {
    let now = t0();
    let mut cfg = config();
    cfg.txw_sqns = 4;
    cfg.send_queue_sqns = 8;
    let mut s = Source::new(cfg, now);
    let mut buf = Vec::new();
    let mut next = 0u8;
    for _ in 0..10 {
        // The application refills the queue after every packet the source sends.
        while s.send(&[next]).is_ok() {
            next += 1;
        }
        assert_eq!(
            s.queued(),
            8,
            "the send queue is bounded by send_queue_sqns"
        );
        loop {
            let t = s.poll_transmit(now, &mut buf).expect("a transmit");
            if t.packet_type == PacketType::Odata {
                break;
            }
        }
    }
    // Ten sent, four held for repair, eight more queued behind them.
    assert_eq!(s.lead(), Sqn(9));
    assert_eq!(
        s.trail(),
        Sqn(6),
        "the last txw_sqns sent packets stay in the window"
    );
    s.handle_packet(now, meta(), &nak(&[6, 7, 8, 9]));
    let out = drain(&mut s, now);
    let rdata: Vec<u32> = out
        .iter()
        .filter_map(|(_, b)| match Repr::parse_bytes(b).expect("parse").body {
            Body::Rdata(d) => Some(d.sqn.0),
            _ => None,
        })
        .collect();
    assert_eq!(types(&out)[0], PacketType::Ncf);
    assert_eq!(
        rdata,
        [6, 7, 8, 9],
        "every sent packet in the window is repaired"
    );
    assert_eq!(s.stats().nak_sqns_outside_window, 0);
}

#[test]
fn large_messages_are_fragmented() {
    let now = t0();
    let mut s = Source::new(config(), now);
    let msg: Vec<u8> = (0..65_536u32).map(|i| i as u8).collect();
    s.send(&msg).expect("send");
    let out = drain(&mut s, now);
    let mut joined = Vec::new();
    for (t, b) in out
        .iter()
        .filter(|(t, _)| t.packet_type == PacketType::Odata)
    {
        assert!(t.len <= 1400, "TPDU within max_tpdu");
        let r = Repr::parse_bytes(b).expect("odata");
        let Body::Odata(d) = r.body else {
            panic!("not ODATA")
        };
        let frag = r
            .options
            .iter()
            .find_map(|o| match o.value {
                OptionValue::Fragment {
                    first_sqn,
                    offset,
                    length,
                } => Some((first_sqn, offset, length)),
                _ => None,
            })
            .expect("fragment option");
        assert_eq!(frag.0, Sqn(0));
        assert_eq!(frag.1 as usize, joined.len());
        assert_eq!(frag.2 as usize, msg.len());
        joined.extend_from_slice(d.payload);
    }
    assert_eq!(joined, msg);
}

#[test]
fn spmr_is_answered_at_most_once_per_ihb_min() {
    let now = t0();
    let mut s = Source::new(config(), now);
    drain(&mut s, now);
    let spmr = Repr {
        sport: 7500,
        dport: 4000,
        gsi: GSI,
        parity: false,
        var_pktlen: false,
        body: Body::Spmr,
        options: OptionList::EMPTY,
    };
    let mut b = vec![0; spmr.buffer_len()];
    spmr.emit(&mut b).expect("emit");
    //= https://www.rfc-editor.org/rfc/rfc3208#section-13.4
    //# A source MUST respond immediately to an SPMR with the corresponding
    //# SPM rate limited to once per IHB_MIN per TSI.
    s.handle_packet(now, meta(), &b);
    s.handle_packet(now, meta(), &b);
    assert_eq!(types(&drain(&mut s, now)), [PacketType::Spm]);
    let later = now + Duration::from_millis(60);
    s.handle_packet(later, meta(), &b);
    assert_eq!(types(&drain(&mut s, later)), [PacketType::Spm]);
}

#[test]
fn close_puts_fin_on_the_last_odata_and_the_spms_after() {
    let now = t0();
    let mut s = Source::new(config(), now);
    s.send(b"last").expect("send");
    s.close(now);
    let out = drain(&mut s, now);
    let fin_on = |b: &[u8]| {
        Repr::parse_bytes(b)
            .expect("parse")
            .options
            .find(pgm_core::wire::OptionType::Fin)
            .is_some()
    };
    let odata = out
        .iter()
        .find(|(t, _)| t.packet_type == PacketType::Odata)
        .expect("odata");
    assert!(fin_on(&odata.1));
    assert_eq!(s.send(b"more"), Err(SendError::Closed));
    //= https://www.rfc-editor.org/rfc/rfc3208#section-9.7
    //# The FIN PGM option MUST appear in every SPM
    //# sent after the last ODATA for a session.
    //= https://www.rfc-editor.org/rfc/rfc3208#section-9.7.1
    //# Sources MUST include OPT_FIN in every SPM sent after it has been
    //# determined that the application has closed gracefully.
    // Heartbeat SPMs after the last ODATA carry OPT_FIN (§9.7).
    let hb = now + Duration::from_millis(60);
    s.handle_timeout(hb);
    let out = drain(&mut s, hb);
    assert!(!out.is_empty());
    assert!(
        out.iter()
            .all(|(t, b)| t.packet_type == PacketType::Spm && fin_on(b))
    );
}

#[test]
fn token_bucket_bounds_bytes_over_virtual_time() {
    let start = t0();
    let mut cfg = config();
    cfg.txw_max_rte = 1_000_000;
    let mut s = Source::new(cfg, start);
    for _ in 0..2000 {
        let _ = s.send(&[7u8; 1000]);
    }
    let mut sent = 0usize;
    let mut now = start;
    let end = start + Duration::from_secs(1);
    let mut buf = Vec::new();
    while now < end {
        while let Some(t) = s.poll_transmit(now, &mut buf) {
            sent += t.len + 28;
        }
        now = s
            .poll_timeout()
            .expect("a deadline")
            .max(now + Duration::from_micros(1));
    }
    //= https://www.rfc-editor.org/rfc/rfc3208#section-5.1.2
    //= type=test
    //# Over any arbitrarily chosen interval, the number
    //# of bytes the source may transmit MUST NOT exceed the token bucket
    //# size plus the product of the token rate and the chosen interval.
    let bucket = 1400 + 28 + 10_000;
    assert!(
        sent <= 1_000_000 + bucket + 2 * 1428,
        "sent {sent} bytes in 1 s at 1 MB/s"
    );
    assert!(sent >= 900_000, "the bucket lets the rate through: {sent}");
}

#[test]
fn malformed_and_foreign_packets_are_counted_not_fatal() {
    let now = t0();
    let mut s = Source::new(config(), now);
    s.handle_packet(now, meta(), &[0u8; 3]);
    let mut bad = nak(&[1]);
    bad[7] ^= 0xFF;
    s.handle_packet(now, meta(), &bad);
    let mut other = nak(&[1]);
    other[3] = 99; // another session's port
    pgm_core::wire::Packet::new_unchecked(&mut other[..]).fill_checksum();
    s.handle_packet(now, meta(), &other);
    assert_eq!(s.stats().malformed.get("truncated"), 1);
    assert_eq!(s.stats().malformed.get("bad_checksum"), 1);
    assert_eq!(s.stats().ignored, 1);
}

#[test]
fn window_bounded_by_bytes() {
    let now = t0();
    let mut cfg = config();
    cfg.txw_bytes = 1000;
    let mut s = Source::new(cfg, now);
    for i in 0..10u8 {
        s.send(&[i; 300]).expect("send");
        drain(&mut s, now);
    }
    // 300-byte packets, at most 1000 bytes held: the last three remain.
    assert_eq!(s.trail(), Sqn(7));
    assert_eq!(s.lead(), Sqn(9));
}
