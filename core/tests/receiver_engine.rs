//! Scripted exchanges with the receiver engine (§6, §13.5, App. D).

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use pgm_core::proto::receiver::{Event, Receiver, ReceiverConfig};
use pgm_core::proto::{Destination, RecvMeta, Transmit};
use pgm_core::wire::{
    Body, DataRepr, Gsi, NakRepr, Nla, OptionList, PacketType, PollRepr, PollSubtype, Repr,
    SpmRepr, Sqn, Tsi,
};

const GROUP: IpAddr = IpAddr::V4(Ipv4Addr::new(239, 192, 0, 1));
const SRC: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
const ROUTER: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 9, 1));
const GSI: Gsi = Gsi([1, 2, 3, 4, 5, 6]);
const TSI: Tsi = Tsi {
    gsi: GSI,
    sport: 4000,
};

fn t0() -> Instant {
    #[expect(clippy::disallowed_methods, reason = "the test's epoch")]
    Instant::now()
}

fn meta() -> RecvMeta {
    RecvMeta {
        source: SRC,
        destination: GROUP,
    }
}

fn bytes(body: Body<'_>) -> Vec<u8> {
    let repr = Repr {
        sport: 4000,
        dport: 7500,
        gsi: GSI,
        parity: false,
        var_pktlen: false,
        body,
        options: OptionList::EMPTY,
    };
    let mut b = vec![0; repr.buffer_len()];
    repr.emit(&mut b).expect("emit");
    b
}

fn odata(sqn: u32, payload: &[u8]) -> Vec<u8> {
    bytes(Body::Odata(DataRepr {
        sqn: Sqn(sqn),
        trail: Sqn(0),
        payload,
    }))
}

fn spm(sqn: u32, trail: u32, lead: u32, path: IpAddr) -> Vec<u8> {
    bytes(Body::Spm(SpmRepr {
        sqn: Sqn(sqn),
        trail: Sqn(trail),
        lead: Sqn(lead),
        path: Nla(path),
    }))
}

fn ncf(sqn: u32) -> Vec<u8> {
    bytes(Body::Ncf(NakRepr {
        sqn: Sqn(sqn),
        source: Nla(SRC),
        group: Nla(GROUP),
    }))
}

fn receiver() -> Receiver {
    Receiver::new(ReceiverConfig::new(7500, GROUP))
}

fn run_until(r: &mut Receiver, until: Instant) -> Vec<(Transmit, Vec<u8>)> {
    let mut out = Vec::new();
    let mut buf = Vec::new();
    while let Some(t) = r.poll_timeout().filter(|t| *t <= until) {
        r.handle_timeout(t);
        while let Some(tx) = r.poll_transmit(t, &mut buf) {
            out.push((tx, buf[..tx.len].to_vec()));
        }
    }
    out
}

fn events(r: &mut Receiver) -> Vec<Event> {
    std::iter::from_fn(|| r.poll_event()).collect()
}

#[test]
fn gap_draws_a_nak_to_the_spm_path_and_repair_fills_it() {
    let now = t0();
    let mut r = receiver();
    r.handle_packet(now, meta(), &spm(1, 0, u32::MAX, ROUTER));
    r.handle_packet(now, meta(), &odata(0, b"a"));
    r.handle_packet(now, meta(), &odata(2, b"c"));
    let out = run_until(&mut r, now + Duration::from_millis(60));
    let naks: Vec<_> = out
        .iter()
        .filter(|(t, _)| t.packet_type == PacketType::Nak)
        .collect();
    assert_eq!(naks.len(), 1, "one NAK within NAK_BO_IVL");
    //= https://www.rfc-editor.org/rfc/rfc3208#section-6.3
    //= type=test
    //# Upon expiry of NAK_RB_IVL, a receiver MUST unicast a NAK to the
    //# upstream PGM network element for the TSI
    assert_eq!(naks[0].0.destination, Destination::Unicast(ROUTER));
    let Body::Nak(n) = Repr::parse_bytes(&naks[0].1).expect("nak").body else {
        panic!()
    };
    assert_eq!((n.sqn, n.source, n.group), (Sqn(1), Nla(SRC), Nla(GROUP)));
    let repair = bytes(Body::Rdata(DataRepr {
        sqn: Sqn(1),
        trail: Sqn(0),
        payload: b"b",
    }));
    r.handle_packet(now + Duration::from_millis(70), meta(), &repair);
    let data: Vec<Vec<u8>> = events(&mut r)
        .into_iter()
        .filter_map(|e| match e {
            Event::Data { data, .. } => Some(data),
            _ => None,
        })
        .collect();
    assert_eq!(data, [b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]);
}

#[test]
fn an_ncf_during_back_off_suppresses_the_nak() {
    let now = t0();
    let mut r = receiver();
    r.handle_packet(now, meta(), &spm(1, 0, u32::MAX, ROUTER));
    r.handle_packet(now, meta(), &odata(0, b"a"));
    r.handle_packet(now, meta(), &odata(2, b"c"));
    //= https://www.rfc-editor.org/rfc/rfc3208#section-6.3
    //= type=test
    //# A receiver MUST suppress NAK generation and wait at least
    //# NAK_RDATA_IVL before recommencing NAK generation if it hears a
    //# matching NCF or NAK during NAK_RB_IVL.
    r.handle_packet(now, meta(), &ncf(1));
    let out = run_until(&mut r, now + Duration::from_millis(400));
    assert!(
        out.iter().all(|(t, _)| t.packet_type != PacketType::Nak),
        "suppressed"
    );
    assert_eq!(r.stats().naks_suppressed, 1);
    // After NAK_RDATA_IVL without data, NAKing resumes.
    let out = run_until(&mut r, now + Duration::from_millis(700));
    assert!(out.iter().any(|(t, _)| t.packet_type == PacketType::Nak));
}

#[test]
fn data_before_any_spm_draws_an_spmr_multicast_then_unicast() {
    let now = t0();
    let mut r = receiver();
    r.handle_packet(now, meta(), &odata(0, b"a"));
    let out = run_until(&mut r, now + Duration::from_millis(300));
    let spmrs: Vec<_> = out
        .iter()
        .filter(|(t, _)| t.packet_type == PacketType::Spmr)
        .collect();
    //= https://www.rfc-editor.org/rfc/rfc3208#section-13.5
    //= type=test
    //# it MUST first multicast its own SPMR to the group with a TTL of 1 before
    //# then unicasting its own SPMR to the source.
    assert_eq!(spmrs.len(), 2);
    assert_eq!(spmrs[0].0.destination, Destination::Group(GROUP));
    assert_eq!(spmrs[0].0.ttl, Some(1));
    assert_eq!(spmrs[1].0.destination, Destination::Unicast(SRC));
    let p = pgm_core::wire::Packet::new_checked(&spmrs[1].1[..]).expect("spmr");
    assert_eq!(p.tsi(), TSI);
}

#[test]
fn trail_passing_a_gap_reports_loss_and_delivery_continues() {
    let now = t0();
    let mut r = receiver();
    r.handle_packet(now, meta(), &spm(1, 0, u32::MAX, ROUTER));
    r.handle_packet(now, meta(), &odata(0, b"a"));
    r.handle_packet(now, meta(), &odata(3, b"d"));
    // The source's window moves past 1 and 2.
    r.handle_packet(now, meta(), &spm(2, 3, 3, ROUTER));
    let ev = events(&mut r);
    let tail: Vec<&Event> = ev
        .iter()
        .filter(|e| !matches!(e, Event::SessionStart { .. }))
        .collect();
    assert_eq!(tail.len(), 3, "{ev:?}");
    assert!(matches!(tail[0], Event::Data { data, .. } if data == b"a"));
    assert!(matches!(
        tail[1],
        Event::Loss {
            first: Sqn(1),
            count: 2,
            ..
        }
    ));
    assert!(matches!(tail[2], Event::Data { data, .. } if data == b"d"));
}

#[test]
fn general_poll_is_answered_after_a_back_off() {
    let now = t0();
    let mut r = receiver();
    r.handle_packet(now, meta(), &spm(1, 0, u32::MAX, ROUTER));
    let poll = bytes(Body::Poll(PollRepr {
        sqn: Sqn(7),
        round: 0,
        subtype: PollSubtype::General,
        path: Nla(ROUTER),
        backoff_ivl_us: 100_000,
        rand: [0; 4],
        mask: 0, // deterministic reply
    }));
    r.handle_packet(now, meta(), &poll);
    let out = run_until(&mut r, now + Duration::from_millis(101));
    let polrs: Vec<_> = out
        .iter()
        .filter(|(t, _)| t.packet_type == PacketType::Polr)
        .collect();
    //= https://www.rfc-editor.org/rfc/rfc3208#section-14.5
    //= type=test
    //# When this timer expires, it MUST send a POLR using POLL_PATH of the
    //# received POLL as destination address.
    assert_eq!(polrs.len(), 1);
    assert_eq!(polrs[0].0.destination, Destination::Unicast(ROUTER));
    let Body::Polr(p) = Repr::parse_bytes(&polrs[0].1).expect("polr").body else {
        panic!()
    };
    assert_eq!((p.sqn, p.round), (Sqn(7), 0));
    // A DLR poll is not for receivers.
    let dlr = bytes(Body::Poll(PollRepr {
        sqn: Sqn(8),
        round: 0,
        subtype: PollSubtype::Dlr,
        path: Nla(ROUTER),
        backoff_ivl_us: 1000,
        rand: [0; 4],
        mask: 0,
    }));
    r.handle_packet(now, meta(), &dlr);
    let out = run_until(&mut r, now + Duration::from_millis(300));
    assert!(out.iter().all(|(t, _)| t.packet_type != PacketType::Polr));
}

#[test]
fn sources_beyond_the_limit_are_refused_and_counted() {
    let now = t0();
    let mut cfg = ReceiverConfig::new(7500, GROUP);
    cfg.max_sources = 1;
    let mut r = Receiver::new(cfg);
    r.handle_packet(now, meta(), &odata(0, b"a"));
    let mut other = odata(0, b"b");
    other[8] = 99; // another GSI
    pgm_core::wire::Packet::new_unchecked(&mut other[..]).fill_checksum();
    r.handle_packet(now, meta(), &other);
    assert_eq!(r.sources(), 1);
    assert_eq!(r.stats().sources_refused, 1);
}
