//! Scripted exchanges with the network-element engine (§7, §9.3.3, §9.5.3.2, App. D).
//!
//! The element has an upstream interface (1, towards the source) and two downstream
//! interfaces (2: LAN A, 3: LAN B); the tree for (SRC, GROUP) leaves by 2 and 3.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use pgm_core::proto::network_element::{
    IfIndex, NeConfig, NeInterface, NeRecvMeta, NeRoute, NeTransmit, NetworkElement, RepairPhase,
};
use pgm_core::wire::{
    Body, DataRepr, Gsi, NakRepr, Nla, OptFlags, OptionList, OptionType, OptionValue, Opx, Packet,
    PacketType, PgmOption, Repr, SpmPacket, SpmRepr, Sqn, SqnList, Tsi,
};

const SRC: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 1, 1, 2));
const GROUP: IpAddr = IpAddr::V4(Ipv4Addr::new(239, 192, 0, 1));
const UPSTREAM: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 1, 2, 1));
const IF_UP: IfIndex = IfIndex(1);
const IF_A: IfIndex = IfIndex(2);
const IF_B: IfIndex = IfIndex(3);
const ADDR_UP: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 1, 2, 2));
const ADDR_A: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 1, 3, 1));
const ADDR_B: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 1, 4, 1));
const RCV_A: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 1, 3, 11));
const GSI: Gsi = Gsi([1, 2, 3, 4, 5, 6]);
const TSI: Tsi = Tsi {
    gsi: GSI,
    sport: 4000,
};

fn t0() -> Instant {
    #[expect(clippy::disallowed_methods, reason = "the test's epoch")]
    Instant::now()
}

fn ne_with(f: impl FnOnce(&mut NeConfig)) -> NetworkElement {
    let mut cfg = NeConfig::new(vec![
        NeInterface {
            index: IF_UP,
            addr: ADDR_UP,
        },
        NeInterface {
            index: IF_A,
            addr: ADDR_A,
        },
        NeInterface {
            index: IF_B,
            addr: ADDR_B,
        },
    ]);
    cfg.poll_ivl = None;
    f(&mut cfg);
    let mut ne = NetworkElement::new(cfg);
    ne.set_route(
        Some(SRC),
        GROUP,
        NeRoute {
            upstream: IF_UP,
            downstream: vec![IF_A, IF_B],
        },
    );
    ne
}

fn ne() -> NetworkElement {
    ne_with(|_| {})
}

fn emit(sport: u16, dport: u16, body: Body<'_>, options: &[PgmOption<'_>]) -> Vec<u8> {
    emit_for(GSI, sport, dport, body, options)
}

fn emit_for(
    gsi: Gsi,
    sport: u16,
    dport: u16,
    body: Body<'_>,
    options: &[PgmOption<'_>],
) -> Vec<u8> {
    let repr = Repr {
        sport,
        dport,
        gsi,
        parity: false,
        var_pktlen: false,
        body,
        options: if options.is_empty() {
            OptionList::EMPTY
        } else {
            OptionList::Slice(options)
        },
    };
    let mut b = vec![0; repr.buffer_len()];
    repr.emit(&mut b).expect("emit");
    b
}

fn spm(sqn: u32) -> Vec<u8> {
    emit(
        4000,
        7500,
        Body::Spm(SpmRepr {
            sqn: Sqn(sqn),
            trail: Sqn(0),
            lead: Sqn(100),
            path: Nla(UPSTREAM),
        }),
        &[],
    )
}

fn nak_body(sqn: u32) -> Body<'static> {
    Body::Nak(NakRepr {
        sqn: Sqn(sqn),
        source: Nla(SRC),
        group: Nla(GROUP),
    })
}

fn nak(sqns: &[u32]) -> Vec<u8> {
    let rest: Vec<Sqn> = sqns[1..].iter().map(|&s| Sqn(s)).collect();
    let opts = [PgmOption::from(OptionValue::NakList(SqnList::Slice(&rest)))];
    emit(
        7500,
        4000,
        nak_body(sqns[0]),
        if rest.is_empty() { &[] } else { &opts },
    )
}

fn ncf(sqns: &[u32]) -> Vec<u8> {
    let rest: Vec<Sqn> = sqns[1..].iter().map(|&s| Sqn(s)).collect();
    let opts = [PgmOption::from(OptionValue::NakList(SqnList::Slice(&rest)))];
    let body = Body::Ncf(NakRepr {
        sqn: Sqn(sqns[0]),
        source: Nla(SRC),
        group: Nla(GROUP),
    });
    emit(4000, 7500, body, if rest.is_empty() { &[] } else { &opts })
}

fn rdata(sqn: u32) -> Vec<u8> {
    emit(
        4000,
        7500,
        Body::Rdata(DataRepr {
            sqn: Sqn(sqn),
            trail: Sqn(0),
            payload: b"repair",
        }),
        &[],
    )
}

fn from_upstream() -> NeRecvMeta {
    NeRecvMeta {
        ifindex: IF_UP,
        source: SRC,
        destination: GROUP,
        ttl: 64,
    }
}

fn nak_on(ifindex: IfIndex) -> NeRecvMeta {
    NeRecvMeta {
        ifindex,
        source: RCV_A,
        destination: ADDR_A,
        ttl: 64,
    }
}

fn drain(ne: &mut NetworkElement, now: Instant) -> Vec<(NeTransmit, Vec<u8>)> {
    let mut out = Vec::new();
    let mut buf = Vec::new();
    while let Some(t) = ne.poll_transmit(now, &mut buf) {
        out.push((t, buf[..t.len].to_vec()));
    }
    out
}

fn with_state(now: Instant) -> NetworkElement {
    let mut ne = ne();
    ne.handle_packet(now, from_upstream(), &spm(1));
    drain(&mut ne, now);
    ne
}

#[test]
fn spm_is_forwarded_on_each_outgoing_interface_with_its_path() {
    let now = t0();
    let mut ne = ne();
    ne.handle_packet(now, from_upstream(), &spm(1));
    let out = drain(&mut ne, now);
    assert_eq!(out.len(), 2);
    for (t, bytes) in &out {
        let want = if t.ifindex == IF_A { ADDR_A } else { ADDR_B };
        //= https://www.rfc-editor.org/rfc/rfc3208#section-7.1
        //= type=test
        //# As it does so, it encodes the network address of the
        //# outgoing interface in SPM_PATH in each copy of the SPM it forwards.
        let p = SpmPacket::new_checked(&bytes[..]).expect("spm");
        assert_eq!(p.path(), Nla(want));
        p.verify_checksum()
            .expect("incrementally updated checksum is right");
        assert_eq!(
            (t.source, t.destination, t.router_alert, t.ttl),
            (SRC, GROUP, true, 63)
        );
    }
    let snap = ne.tsi_snapshot(&TSI).expect("state");
    assert_eq!(
        (snap.upstream_interface, snap.upstream_neighbour),
        (IF_UP, UPSTREAM)
    );
    // An SPM out of sequence is not forwarded and does not change state.
    ne.handle_packet(now, from_upstream(), &spm(1));
    assert!(drain(&mut ne, now).is_empty());
    assert_eq!(ne.stats().spms_out_of_sequence, 1);
}

#[test]
fn spms_set_path_state_only_from_the_routes_upstream_interface() {
    let now = t0();
    let mut ne = with_state(now);
    // A host on LAN A sends an in-sequence SPM naming itself as the path: it is neither
    // forwarded nor recorded, so NAKs still go to the real upstream neighbour.
    let mut forged = spm(2);
    let mut p = SpmPacket::new_checked(&mut forged[..]).expect("spm");
    assert!(p.rewrite_path(Nla(RCV_A)));
    let on_a = NeRecvMeta {
        ifindex: IF_A,
        ..from_upstream()
    };
    ne.handle_packet(now, on_a, &forged);
    assert!(drain(&mut ne, now).is_empty());
    assert_eq!(ne.stats().spms_wrong_interface, 1);
    let snap = ne.tsi_snapshot(&TSI).expect("state");
    assert_eq!(
        (
            snap.upstream_interface,
            snap.upstream_neighbour,
            snap.last_spm_sqn
        ),
        (IF_UP, UPSTREAM, Sqn(1))
    );
    // Without a route the interface cannot be checked: no path state either.
    let other_group = NeRecvMeta {
        destination: IpAddr::V4(Ipv4Addr::new(239, 9, 9, 9)),
        ..from_upstream()
    };
    ne.handle_packet(now, other_group, &spm(3));
    assert_eq!(ne.stats().spms_no_route, 1);
    // A route for every source of the group is enough.
    ne.set_route(
        None,
        other_group.destination,
        NeRoute {
            upstream: IF_UP,
            downstream: vec![IF_B],
        },
    );
    ne.handle_packet(now, other_group, &spm(3));
    let out = drain(&mut ne, now);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0.ifindex, IF_B);
}

#[test]
fn nak_draws_an_ncf_on_its_interface_and_is_forwarded_upstream_once() {
    let now = t0();
    let mut ne = with_state(now);
    ne.handle_packet(now, nak_on(IF_A), &nak(&[5]));
    let out = drain(&mut ne, now);
    let types: Vec<PacketType> = out.iter().map(|(t, _)| t.packet_type).collect();
    assert_eq!(types, [PacketType::Ncf, PacketType::Nak]);
    let (ncf_t, ncf_b) = &out[0];
    //= https://www.rfc-editor.org/rfc/rfc3208#section-7.2
    //= type=test
    //# The NCF MUST be multicast to the group on
    //# the interface on which the NAK was received.
    assert_eq!(
        (ncf_t.ifindex, ncf_t.destination, ncf_t.source),
        (IF_A, GROUP, SRC)
    );
    let ncf = Repr::parse_bytes(ncf_b).expect("ncf");
    assert_eq!(ncf.tsi(), TSI);
    let (nak_t, nak_b) = &out[1];
    //= https://www.rfc-editor.org/rfc/rfc3208#section-7.3
    //= type=test
    //# A Network element MUST forward NAKs only to the upstream PGM network
    //# element for the TSI.
    assert_eq!(
        (nak_t.ifindex, nak_t.destination, nak_t.source),
        (IF_UP, UPSTREAM, ADDR_UP)
    );
    assert_eq!(nak_b, &nak(&[5]), "forwarded intact");
    // A duplicate while pending: an NCF (rate limit aside) but no forwarding.
    let later = now + Duration::from_millis(20);
    ne.handle_packet(later, nak_on(IF_A), &nak(&[5]));
    let out = drain(&mut ne, later);
    assert_eq!(
        out.iter().map(|(t, _)| t.packet_type).collect::<Vec<_>>(),
        [PacketType::Ncf]
    );
    assert_eq!(ne.stats().naks_eliminated, 1);
}

#[test]
fn identical_ncfs_are_rate_limited_under_a_nak_storm() {
    let now = t0();
    let mut ne = with_state(now);
    for _ in 0..100 {
        ne.handle_packet(now, nak_on(IF_A), &nak(&[5]));
    }
    let out = drain(&mut ne, now);
    let ncfs = out
        .iter()
        .filter(|(t, _)| t.packet_type == PacketType::Ncf)
        .count();
    assert_eq!(ncfs, 1);
    assert_eq!(ne.stats().ncfs_rate_limited, 99);
}

#[test]
fn rdata_goes_only_where_it_was_asked_for_and_is_dropped_without_state() {
    let now = t0();
    let mut ne = with_state(now);
    ne.handle_packet(now, nak_on(IF_A), &nak(&[5]));
    ne.handle_packet(now, from_upstream(), &ncf(&[5]));
    drain(&mut ne, now);
    assert_eq!(
        ne.tsi_snapshot(&TSI).expect("tsi").repairs[0].phase,
        RepairPhase::Outstanding
    );
    ne.handle_packet(now, from_upstream(), &rdata(5));
    let out = drain(&mut ne, now);
    //= https://www.rfc-editor.org/rfc/rfc3208#section-7.8
    //= type=test
    //# Network elements MUST then use this list of interfaces to constrain the
    //# forwarding of the corresponding RDATA packet only to those interfaces in
    //# the list.
    assert_eq!(out.len(), 1);
    assert_eq!(
        (out[0].0.ifindex, out[0].0.packet_type),
        (IF_A, PacketType::Rdata)
    );
    assert!(out[0].0.router_alert);
    //= https://www.rfc-editor.org/rfc/rfc3208#section-7.8
    //# Thereafter, the corresponding repair state MUST be discarded.
    // The state is gone with the repair: a second copy is dropped.
    ne.handle_packet(now, from_upstream(), &rdata(5));
    ne.handle_packet(now, from_upstream(), &rdata(6));
    assert!(drain(&mut ne, now).is_empty());
    assert_eq!(ne.stats().rdata_no_state, 2);
}

#[test]
fn outstanding_naks_are_eliminated_for_nak_elim_ivl_then_one_passes() {
    let now = t0();
    let mut ne = with_state(now);
    ne.handle_packet(now, nak_on(IF_A), &nak(&[5]));
    ne.handle_packet(now, from_upstream(), &ncf(&[5]));
    drain(&mut ne, now);
    let forwarded = |out: &[(NeTransmit, Vec<u8>)]| {
        out.iter()
            .filter(|(t, _)| t.packet_type == PacketType::Nak)
            .count()
    };
    //= https://www.rfc-editor.org/rfc/rfc3208#section-7.4
    //# Once a NAK is outstanding, network elements MUST discard all
    //# duplicates of that NAK for NAK_ELIM_IVL.
    let t1 = now + Duration::from_millis(50);
    ne.handle_packet(t1, nak_on(IF_B), &nak(&[5]));
    assert_eq!(forwarded(&drain(&mut ne, t1)), 0, "within NAK_ELIM_IVL");
    //= https://www.rfc-editor.org/rfc/rfc3208#section-7.4
    //= type=test
    //# Upon expiry of
    //# NAK_ELIM_IVL, network elements MUST suspend NAK elimination for that
    //# TSI/SQN until the first duplicate of that NAK is seen after the
    //# expiry of NAK_ELIM_IVL.  This duplicate MUST be forwarded in the
    //# usual manner.
    let t2 = now + Duration::from_millis(150);
    ne.handle_packet(t2, nak_on(IF_B), &nak(&[5]));
    assert_eq!(forwarded(&drain(&mut ne, t2)), 1);
    ne.handle_packet(t2, nak_on(IF_B), &nak(&[5]));
    assert_eq!(forwarded(&drain(&mut ne, t2)), 0, "pending again");
    //= https://www.rfc-editor.org/rfc/rfc3208#section-7.8
    //# Network elements MUST maintain repair state for each interface on
    //# which a given NAK is received at least once.
    // Both interfaces asked: the repair goes to both.
    ne.handle_packet(t2, from_upstream(), &ncf(&[5]));
    ne.handle_packet(t2, from_upstream(), &rdata(5));
    let mut ifs: Vec<IfIndex> = drain(&mut ne, t2).iter().map(|(t, _)| t.ifindex).collect();
    ifs.sort();
    assert_eq!(ifs, [IF_A, IF_B]);
}

#[test]
fn nak_list_is_forwarded_if_any_sqn_is_not_outstanding() {
    let now = t0();
    let mut ne = with_state(now);
    ne.handle_packet(now, nak_on(IF_A), &nak(&[5, 6]));
    ne.handle_packet(now, from_upstream(), &ncf(&[5, 6]));
    drain(&mut ne, now);
    //= https://www.rfc-editor.org/rfc/rfc3208#section-9.3.3
    //= type=test
    //# Network elements MUST eliminate a NAK containing the NAK list option
    //# only if all sequence numbers specified by the NAK (including that in
    //# the main NAK header) are outstanding.
    ne.handle_packet(now, nak_on(IF_A), &nak(&[5, 6]));
    let out = drain(&mut ne, now);
    assert!(out.iter().all(|(t, _)| t.packet_type != PacketType::Nak));
    //= https://www.rfc-editor.org/rfc/rfc3208#section-9.3.3
    //# That is, it MUST
    //# forward the NAK, if any one sequence number does not have an
    //# elimination timer running for it.
    ne.handle_packet(now, nak_on(IF_A), &nak(&[5, 6, 7]));
    let out = drain(&mut ne, now);
    let fwd: Vec<_> = out
        .iter()
        .filter(|(t, _)| t.packet_type == PacketType::Nak)
        .collect();
    assert_eq!(fwd.len(), 1);
    assert_eq!(fwd[0].1, nak(&[5, 6, 7]), "forwarded intact");
    // The NCF carries the same list (§9.3.3).
    let (_, ncf_b) = out
        .iter()
        .find(|(t, _)| t.packet_type == PacketType::Ncf)
        .expect("ncf");
    let list: Vec<Sqn> = Repr::parse_bytes(ncf_b)
        .expect("ncf")
        .options
        .iter()
        .find_map(|o| match o.value {
            OptionValue::NakList(l) => Some(l.iter().collect()),
            _ => None,
        })
        .expect("list");
    assert_eq!(list, [Sqn(6), Sqn(7)]);
}

#[test]
fn unsolicited_upstream_ncf_anticipates_the_nak() {
    let now = t0();
    let mut ne = with_state(now);
    //= https://www.rfc-editor.org/rfc/rfc3208#section-7.5
    //= type=test
    //# If the interface on which an NCF is received is the same interface
    //# the network element would use to reach the upstream PGM network
    //# element, the network element simply establishes repair state
    ne.handle_packet(now, from_upstream(), &ncf(&[9]));
    assert_eq!(ne.stats().naks_anticipated, 1);
    ne.handle_packet(now, nak_on(IF_A), &nak(&[9]));
    let out = drain(&mut ne, now);
    assert_eq!(
        out.iter().map(|(t, _)| t.packet_type).collect::<Vec<_>>(),
        [PacketType::Ncf]
    );
    // The NAK's interface was added: the anticipated repair reaches it.
    ne.handle_packet(now, from_upstream(), &rdata(9));
    let out = drain(&mut ne, now);
    assert_eq!(
        out.iter().map(|(t, _)| t.ifindex).collect::<Vec<_>>(),
        [IF_A]
    );
    //= https://www.rfc-editor.org/rfc/rfc3208#section-7.5
    //# Network elements MUST process unsolicited NCFs differently depending
    //# on the interface on which they are received.
    // An NCF on a downstream interface creates nothing.
    ne.handle_packet(
        now,
        NeRecvMeta {
            ifindex: IF_B,
            ..from_upstream()
        },
        &ncf(&[10]),
    );
    assert_eq!(ne.stats().naks_anticipated, 1);
}

#[test]
fn unconfirmed_nak_is_repeated_then_cancelled() {
    let now = t0();
    let mut ne = with_state(now);
    ne.handle_packet(now, nak_on(IF_A), &nak(&[5]));
    drain(&mut ne, now);
    let mut t = now;
    let mut repeats = 0;
    while let Some(next) = ne
        .poll_timeout()
        .filter(|n| *n <= now + Duration::from_secs(1))
    {
        t = next.max(t);
        ne.handle_timeout(t);
        repeats += drain(&mut ne, t)
            .iter()
            .filter(|(x, _)| x.packet_type == PacketType::Nak)
            .count();
    }
    //= https://www.rfc-editor.org/rfc/rfc3208#section-7.3
    //= type=test
    //# A network element MUST repeat a NAK at a rate of NAK_RPT_RTE for an
    //# interval of NAK_RPT_IVL until it receives a matching NCF.
    assert_eq!(repeats, 4, "every 100 ms within the 500 ms NAK_RPT_IVL");
    assert_eq!(ne.stats().naks_unconfirmed, 1);
    assert_eq!(ne.repair_state_count(), 0);
}

#[test]
fn nnak_is_forwarded_without_confirmation_and_does_not_block_a_real_nak() {
    let now = t0();
    let mut ne = with_state(now);
    let mut nnak = nak(&[5]);
    nnak[4] = 0x09;
    Packet::new_unchecked(&mut nnak[..]).fill_checksum();
    ne.handle_packet(now, nak_on(IF_A), &nnak);
    let out = drain(&mut ne, now);
    //= https://www.rfc-editor.org/rfc/rfc3208#section-9.5.3.2
    //# Network elements MUST NOT confirm
    assert_eq!(
        out.iter().map(|(t, _)| t.packet_type).collect::<Vec<_>>(),
        [PacketType::Nnak]
    );
    ne.handle_packet(now, nak_on(IF_A), &nak(&[5]));
    let out = drain(&mut ne, now);
    assert!(
        out.iter().any(|(t, _)| t.packet_type == PacketType::Nak),
        "not eliminated"
    );
}

#[test]
fn unknown_options_follow_their_opx_bits() {
    let now = t0();
    let mut ne = with_state(now);
    let unknown = |opx| PgmOption {
        flags: OptFlags::with_opx(opx),
        value: OptionValue::Unknown {
            code: 0x20,
            specific: 0,
            data: &[1, 2, 3, 4],
        },
    };
    let body = Body::Spm(SpmRepr {
        sqn: Sqn(2),
        trail: Sqn(0),
        lead: Sqn(100),
        path: Nla(UPSTREAM),
    });
    ne.handle_packet(
        now,
        from_upstream(),
        &emit(4000, 7500, body, &[unknown(Opx::Discard)]),
    );
    assert!(drain(&mut ne, now).is_empty());
    assert_eq!(ne.stats().opx_discarded, 1);
    let body = Body::Spm(SpmRepr {
        sqn: Sqn(3),
        trail: Sqn(0),
        lead: Sqn(100),
        path: Nla(UPSTREAM),
    });
    ne.handle_packet(
        now,
        from_upstream(),
        &emit(4000, 7500, body, &[unknown(Opx::Invalidate)]),
    );
    let out = drain(&mut ne, now);
    assert_eq!(out.len(), 2);
    for (_, b) in &out {
        let p = Packet::new_checked(&b[..]).expect("forwarded");
        p.verify_checksum().expect("checksum updated");
        assert_eq!(
            p.options().iter().next().map(|o| o.option_type()),
            Some(OptionType::Invalid)
        );
    }
    let body = Body::Spm(SpmRepr {
        sqn: Sqn(4),
        trail: Sqn(0),
        lead: Sqn(100),
        path: Nla(UPSTREAM),
    });
    ne.handle_packet(
        now,
        from_upstream(),
        &emit(4000, 7500, body, &[unknown(Opx::Ignore)]),
    );
    let out = drain(&mut ne, now);
    assert!(out.iter().all(|(_, b)| {
        Packet::new_checked(&b[..])
            .expect("p")
            .options()
            .iter()
            .next()
            .map(|o| o.option_type())
            == Some(OptionType::Unknown(0x20))
    }));
}

#[test]
fn repair_states_are_bounded_and_evictions_counted() {
    let now = t0();
    let mut ne = ne_with(|c| c.max_repair_states = 100);
    ne.handle_packet(now, from_upstream(), &spm(1));
    for sqn in 0..1000 {
        ne.handle_packet(now, nak_on(IF_A), &nak(&[sqn]));
    }
    drain(&mut ne, now);
    assert_eq!(ne.repair_state_count(), 100);
    assert_eq!(ne.stats().repair_states_evicted, 900);
    // The newest survive.
    let snap = ne.tsi_snapshot(&TSI).expect("tsi");
    assert_eq!(snap.repairs.first().map(|r| r.sqn), Some(Sqn(900)));
}

#[test]
fn naks_without_source_path_state_are_dropped_and_counted() {
    let now = t0();
    let mut ne = ne();
    ne.handle_packet(now, nak_on(IF_A), &nak(&[5]));
    assert!(drain(&mut ne, now).is_empty());
    assert_eq!(ne.stats().naks_no_state, 1);
}

#[test]
fn general_polls_count_children_per_interface() {
    let now = t0();
    let mut ne = ne_with(|c| {
        c.poll_ivl = Some(Duration::from_secs(1));
        c.dlr_discovery = false;
    });
    ne.handle_packet(now, from_upstream(), &spm(1));
    drain(&mut ne, now);
    let t1 = now + Duration::from_secs(1);
    ne.handle_timeout(t1);
    let polls: Vec<_> = drain(&mut ne, t1)
        .into_iter()
        .filter(|(t, _)| t.packet_type == PacketType::Poll)
        .collect();
    assert_eq!(polls.len(), 2, "one per downstream interface");
    let Body::Poll(p) = Repr::parse_bytes(&polls[0].1).expect("poll").body else {
        panic!()
    };
    // Three children answer on LAN A.
    for _ in 0..3 {
        let polr = emit(
            7500,
            4000,
            Body::Polr(pgm_core::wire::PolrRepr {
                sqn: p.sqn,
                round: 0,
            }),
            &[],
        );
        ne.handle_packet(t1, nak_on(IF_A), &polr);
    }
    //= https://www.rfc-editor.org/rfc/rfc3208#section-14.4
    //# During this
    //# interval it SHOULD collect all the valid response (the one with
    //# POLR_SQN and POLR_ROUND matching with the outstanding poll) and
    //# process them at the end of the collection interval.
    let t2 = now + Duration::from_secs(2);
    ne.handle_timeout(t2);
    drain(&mut ne, t2);
    let snap = ne.tsi_snapshot(&TSI).expect("tsi");
    assert!(snap.children.contains(&(IF_A, 3)), "{:?}", snap.children);
    assert!(snap.children.contains(&(IF_B, 0)), "{:?}", snap.children);
}

const DLR: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 1, 2, 9));

fn redirecting_polr() -> Vec<u8> {
    let opts = [PgmOption::from(OptionValue::Redirect(Nla(DLR)))];
    emit(
        7500,
        4000,
        Body::Polr(pgm_core::wire::PolrRepr {
            sqn: Sqn(0),
            round: 0,
        }),
        &opts,
    )
}

#[test]
fn upstream_dlr_redirection_then_fallback_on_silence() {
    let now = t0();
    let mut ne = with_state(now);
    // An upstream DLR announces itself on the upstream interface (multicast, §9.5.2.1).
    ne.handle_packet(
        now,
        NeRecvMeta {
            ifindex: IF_UP,
            source: SRC,
            destination: GROUP,
            ttl: 64,
        },
        &redirecting_polr(),
    );
    assert_eq!(ne.stats().dlrs_learned, 1);
    ne.handle_packet(now, nak_on(IF_A), &nak(&[5]));
    let out = drain(&mut ne, now);
    let (t, _) = out
        .iter()
        .find(|(t, _)| t.packet_type == PacketType::Nak)
        .expect("forwarded");
    //= https://www.rfc-editor.org/rfc/rfc3208#section-9.5.3.2
    //= type=test
    //# SHOULD redirect subsequent
    //# NAKs for the same TSI to the network address provided in the redirecting
    //# POLR rather than to the PGM neighbor known via the SPMs.
    assert_eq!((t.destination, t.ifindex), (DLR, IF_UP));
    // No NCF from the DLR within NAK_RPT_IVL: back to the upstream neighbour.
    let mut at = now;
    let mut upstream = 0;
    while let Some(next) = ne
        .poll_timeout()
        .filter(|n| *n <= now + Duration::from_millis(600))
    {
        at = next.max(at);
        ne.handle_timeout(at);
        upstream += drain(&mut ne, at)
            .iter()
            .filter(|(t, _)| t.packet_type == PacketType::Nak && t.destination == UPSTREAM)
            .count();
    }
    assert!(
        upstream >= 1,
        "the NAK went upstream after the DLR stayed silent"
    );
    assert_eq!(ne.stats().dlr_fallbacks, 1);
}

#[test]
fn parity_naks_go_to_a_dlr_only_if_it_provides_fec() {
    let now = t0();
    let mut ne = with_state(now);
    let upstream_meta = NeRecvMeta {
        ifindex: IF_UP,
        source: SRC,
        destination: GROUP,
        ttl: 64,
    };
    // A DLR without FEC (its POLR has no OPT_PARITY): a parity NAK goes upstream.
    ne.handle_packet(now, upstream_meta, &redirecting_polr());
    let mut parity_nak = nak(&[6]);
    parity_nak[5] |= pgm_core::wire::flags::OPT_PARITY;
    Packet::new_unchecked(&mut parity_nak[..]).fill_checksum();
    ne.handle_packet(now, nak_on(IF_A), &parity_nak);
    let out = drain(&mut ne, now);
    //= https://www.rfc-editor.org/rfc/rfc3208#section-9.5.3.1
    //= type=test
    //# A network element SHOULD only direct parity NAKs to a DLR that can
    //# provide FEC repairs.
    let to: Vec<IpAddr> = out
        .iter()
        .filter(|(t, _)| t.packet_type == PacketType::Nak)
        .map(|(t, _)| t.destination)
        .collect();
    assert_eq!(to, [UPSTREAM]);
    // A DLR that provides FEC (OPT_PARITY in its POLR) gets it.
    let mut fec_polr = redirecting_polr();
    fec_polr[5] |= pgm_core::wire::flags::OPT_PARITY;
    Packet::new_unchecked(&mut fec_polr[..]).fill_checksum();
    ne.handle_packet(now, upstream_meta, &fec_polr);
    let mut parity_nak = nak(&[7]);
    parity_nak[5] |= pgm_core::wire::flags::OPT_PARITY;
    Packet::new_unchecked(&mut parity_nak[..]).fill_checksum();
    ne.handle_packet(now, nak_on(IF_A), &parity_nak);
    let to: Vec<IpAddr> = drain(&mut ne, now)
        .iter()
        .filter(|(t, _)| t.packet_type == PacketType::Nak)
        .map(|(t, _)| t.destination)
        .collect();
    assert_eq!(to, [DLR]);
}

#[test]
fn nak_from_the_dlr_goes_upstream() {
    let now = t0();
    let mut ne = with_state(now);
    ne.handle_packet(
        now,
        NeRecvMeta {
            ifindex: IF_UP,
            source: SRC,
            destination: GROUP,
            ttl: 64,
        },
        &redirecting_polr(),
    );
    ne.handle_packet(now, nak_on(IF_A), &nak(&[5]));
    drain(&mut ne, now);
    // The DLR cannot serve 5 and NAKs us back for it.
    ne.handle_packet(
        now,
        NeRecvMeta {
            ifindex: IF_UP,
            source: DLR,
            destination: ADDR_UP,
            ttl: 64,
        },
        &nak(&[5]),
    );
    let out = drain(&mut ne, now);
    assert!(
        out.iter()
            .any(|(t, _)| t.packet_type == PacketType::Nak && t.destination == UPSTREAM)
    );
}

#[test]
fn off_tree_dlr_serves_only_sqns_not_naked_on_its_interface() {
    let now = t0();
    let mut ne = with_state(now);
    // The DLR sits on LAN B and answered our PGM_POLL_DLR with a unicast redirecting POLR.
    ne.handle_packet(
        now,
        NeRecvMeta {
            ifindex: IF_B,
            source: DLR,
            destination: ADDR_B,
            ttl: 64,
        },
        &redirecting_polr(),
    );
    assert_eq!(ne.stats().dlrs_learned, 1);
    ne.handle_packet(now, nak_on(IF_A), &nak(&[5]));
    ne.handle_packet(
        now,
        NeRecvMeta {
            ifindex: IF_B,
            ..nak_on(IF_B)
        },
        &nak(&[6]),
    );
    let out = drain(&mut ne, now);
    let dests: Vec<(IpAddr, IfIndex)> = out
        .iter()
        .filter(|(t, _)| t.packet_type == PacketType::Nak)
        .map(|(t, _)| (t.destination, t.ifindex))
        .collect();
    assert_eq!(dests, [(DLR, IF_B), (UPSTREAM, IF_UP)]);
    // The DLR's unicast NCF confirms; its unicast RDATA is re-addressed onto the subtree.
    let from_dlr = NeRecvMeta {
        ifindex: IF_B,
        source: DLR,
        destination: ADDR_B,
        ttl: 64,
    };
    ne.handle_packet(now, from_dlr, &ncf(&[5]));
    ne.handle_packet(now, from_dlr, &rdata(5));
    let out = drain(&mut ne, now);
    assert_eq!(out.len(), 1);
    let (t, _) = &out[0];
    //= https://www.rfc-editor.org/rfc/rfc3208#section-9.5.3.2
    //= type=test
    //# The network element will terminate the NCF, but
    //# MUST put the source's NLA and the group address into the network
    //# header and MUST add router alert before forwarding the RDATA packet
    //# to the distribution subtree.
    assert_eq!(
        (t.ifindex, t.source, t.destination, t.router_alert),
        (IF_A, SRC, GROUP, true)
    );
    // Its NNAKs always go upstream.
    let mut nnak = nak(&[5]);
    nnak[4] = 0x09;
    Packet::new_unchecked(&mut nnak[..]).fill_checksum();
    ne.handle_packet(now, from_dlr, &nnak);
    let out = drain(&mut ne, now);
    assert!(
        out.iter()
            .any(|(t, _)| t.packet_type == PacketType::Nnak && t.destination == UPSTREAM)
    );
}

#[test]
fn reconfigure_keeps_state_and_applies_lower_limits() {
    let now = t0();
    let mut ne = with_state(now);
    for sqn in 0..50 {
        ne.handle_packet(now, nak_on(IF_A), &nak(&[sqn]));
    }
    drain(&mut ne, now);
    let mut cfg = ne.config().clone();
    cfg.max_repair_states = 10;
    cfg.nak_elim_ivl = Duration::from_millis(5);
    ne.reconfigure(cfg);
    assert_eq!(ne.tsi_count(), 1, "path state kept");
    assert_eq!(ne.repair_state_count(), 10);
    assert_eq!(ne.stats().repair_states_evicted, 40);
    assert_eq!(ne.config().nak_elim_ivl, Duration::from_millis(5));
    assert_eq!(ne.config().interfaces.len(), 3, "interfaces kept");
}

#[test]
fn nak_src_is_put_right_when_forwarded() {
    let now = t0();
    let mut ne = with_state(now);
    // An OpenPGM receiver names its SPM_PATH (our LAN A address) as NAK_SRC.
    let wrong = emit(
        7500,
        4000,
        Body::Nak(NakRepr {
            sqn: Sqn(5),
            source: Nla(ADDR_A),
            group: Nla(GROUP),
        }),
        &[],
    );
    ne.handle_packet(now, nak_on(IF_A), &wrong);
    let out = drain(&mut ne, now);
    let (_, fwd) = out
        .iter()
        .find(|(t, _)| t.packet_type == PacketType::Nak)
        .expect("forwarded");
    let p = pgm_core::wire::NakPacket::new_checked(&fwd[..]).expect("nak");
    //= https://www.rfc-editor.org/rfc/rfc3208#section-8
    //# Note that if any entity between a source and a receiver
    //# modifies the PGM header for any reason, it MUST either
    //# recompute the checksum or clear it.
    p.verify_checksum().expect("checksum updated");
    assert_eq!(p.source_nla(), Nla(SRC));
    assert_eq!(ne.stats().nak_sources_rewritten, 1);
}

// ---------------------------------------------------------------------------------------------
// Robustness: the transmit window, OPX checksums, work per packet, bounds.

/// An SPM of the test TSI with the given window edges.
fn spm_window(sqn: u32, trail: u32, lead: u32) -> Vec<u8> {
    emit(
        4000,
        7500,
        Body::Spm(SpmRepr {
            sqn: Sqn(sqn),
            trail: Sqn(trail),
            lead: Sqn(lead),
            path: Nla(UPSTREAM),
        }),
        &[],
    )
}

/// An SPM without window information (SPM_TRAIL 0, SPM_LEAD 0x80000000, §8.1).
fn spm_no_window(sqn: u32) -> Vec<u8> {
    spm_window(sqn, 0, 0x8000_0000)
}

/// An RDATA packet with the given trail.
fn rdata_trail(sqn: u32, trail: u32) -> Vec<u8> {
    emit(
        4000,
        7500,
        Body::Rdata(DataRepr {
            sqn: Sqn(sqn),
            trail: Sqn(trail),
            payload: b"repair",
        }),
        &[],
    )
}

/// An NNAK for `sqns`.
fn nnak(sqns: &[u32]) -> Vec<u8> {
    let mut b = nak(sqns);
    b[4] = 0x09;
    Packet::new_unchecked(&mut b[..]).fill_checksum();
    b
}

/// How many of `out` are of type `ty`.
fn count(out: &[(NeTransmit, Vec<u8>)], ty: PacketType) -> usize {
    out.iter().filter(|(t, _)| t.packet_type == ty).count()
}

/// The sequence numbers of the first packet of type `ty` in `out`.
fn sqns_of(out: &[(NeTransmit, Vec<u8>)], ty: PacketType) -> Vec<u32> {
    let (_, b) = out
        .iter()
        .find(|(t, _)| t.packet_type == ty)
        .unwrap_or_else(|| panic!("no {ty:?} in {out:?}"));
    let p = pgm_core::wire::NakPacket::new_checked(&b[..]).expect("a NAK-like packet");
    p.verify_checksum().expect("checksum");
    p.sqns().map(|s| s.0).collect()
}

/// A small deterministic generator (splitmix64): the floods replay exactly.
struct Mix(u64);

impl Mix {
    fn u32(&mut self) -> u32 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)) as u32
    }
}

/// What one NAK for `sqn` on LAN A draws: (NCFs, NAKs forwarded).
fn nak_outcome(ne: &mut NetworkElement, now: Instant, sqns: &[u32]) -> (usize, usize) {
    ne.handle_packet(now, nak_on(IF_A), &nak(sqns));
    let out = drain(ne, now);
    (count(&out, PacketType::Ncf), count(&out, PacketType::Nak))
}

#[test]
fn a_flood_of_naks_for_random_sqns_is_reflected_only_inside_the_window() {
    // 50 000 NAKs for random sequence numbers of a real session used to draw 50 000 NCFs
    // onto the LAN and 50 000 NAKs upstream. Only those inside the window the SPMs announce
    // (plus the slack) may.
    let now = t0();
    let mut ne = ne_with(|c| c.nak_window_slack = 1000);
    ne.handle_packet(now, from_upstream(), &spm_window(1, 10_000, 20_000));
    drain(&mut ne, now);
    let mut rng = Mix(0x5eed);
    let (mut inside, mut ncfs, mut forwarded) = (0u64, 0, 0);
    for i in 0..50_000u32 {
        let at = now + Duration::from_micros(u64::from(i));
        // One in a hundred is a real loss inside the window.
        let s = if i % 100 == 0 {
            10_000 + rng.u32() % 11_001
        } else {
            rng.u32()
        };
        inside += u64::from(s.wrapping_sub(10_000) <= 10_000 + 1000);
        let (n, f) = nak_outcome(&mut ne, at, &[s]);
        ncfs += n;
        forwarded += f;
    }
    assert!(inside >= 500, "{inside}");
    assert_eq!(ne.stats().naks_outside_window, 50_000 - inside);
    assert_eq!(ne.stats().nak_sqns_outside_window, 50_000 - inside);
    assert!(
        ncfs as u64 <= inside && ncfs >= 400,
        "{ncfs} NCFs for {inside} NAKs inside"
    );
    assert!(
        forwarded as u64 <= inside && forwarded >= 400,
        "{forwarded} forwarded"
    );
    assert!(ne.repair_state_count() as u64 <= inside);
    assert_eq!(ne.stats().naks_received, 50_000);
}

#[test]
fn the_window_edges_follow_serial_arithmetic_and_the_slack() {
    let now = t0();
    // A window across the wrap of the sequence space.
    let mut ne = ne_with(|c| c.nak_window_slack = 100);
    ne.handle_packet(now, from_upstream(), &spm_window(1, 0xFFFF_FF00, 0x10));
    drain(&mut ne, now);
    for (s, admitted) in [
        (0xFFFF_FEFF, false),
        (0xFFFF_FF00, true),
        (0xFFFF_FFFF, true),
        (0, true),
        (0x10, true),
        (0x10 + 100, true),
        (0x10 + 101, false),
        (0x7FFF_FFFF, false),
        (0x8000_0000, false),
        (0xFFFF_0000, false),
    ] {
        let want = if admitted { (1, 1) } else { (0, 0) };
        assert_eq!(nak_outcome(&mut ne, now, &[s]), want, "NAK for {s:#x}");
    }
    assert_eq!(ne.stats().naks_outside_window, 5);
    // An empty window (SPM_TRAIL = SPM_LEAD + 1): what was sent is gone, what comes next may
    // be NAKed up to the slack.
    let mut ne = ne_with(|c| c.nak_window_slack = 10);
    ne.handle_packet(now, from_upstream(), &spm_window(1, 501, 500));
    drain(&mut ne, now);
    for (s, admitted) in [(500, false), (501, true), (510, true), (511, false)] {
        let want = if admitted { (1, 1) } else { (0, 0) };
        assert_eq!(nak_outcome(&mut ne, now, &[s]), want, "NAK for {s}");
    }
    // No slack at all: only the window itself.
    let mut ne = ne_with(|c| c.nak_window_slack = 0);
    ne.handle_packet(now, from_upstream(), &spm_window(1, 501, 500));
    drain(&mut ne, now);
    assert_eq!(nak_outcome(&mut ne, now, &[501]), (0, 0));
    let mut ne = ne_with(|c| c.nak_window_slack = 0);
    ne.handle_packet(now, from_upstream(), &spm_window(1, 501, 501));
    drain(&mut ne, now);
    assert_eq!(nak_outcome(&mut ne, now, &[501]), (1, 1));
    assert_eq!(nak_outcome(&mut ne, now, &[502]), (0, 0));
}

#[test]
fn nak_list_entries_outside_the_window_leave_the_ncf_and_the_forwarded_nak() {
    let now = t0();
    let mut ne = ne_with(|c| c.nak_window_slack = 10);
    ne.handle_packet(now, from_upstream(), &spm_window(1, 100, 200));
    drain(&mut ne, now);
    ne.handle_packet(now, nak_on(IF_A), &nak(&[50, 150, 300, 160, 210]));
    let out = drain(&mut ne, now);
    assert_eq!(sqns_of(&out, PacketType::Ncf), [150, 160, 210]);
    assert_eq!(sqns_of(&out, PacketType::Nak), [150, 160, 210]);
    let (t, _) = out
        .iter()
        .find(|(t, _)| t.packet_type == PacketType::Nak)
        .expect("forwarded");
    assert_eq!((t.ifindex, t.destination), (IF_UP, UPSTREAM));
    assert_eq!(ne.stats().nak_sqns_outside_window, 2);
    assert_eq!(ne.stats().naks_outside_window, 0);
    // The main sequence number outside, one of the list inside: the NAK goes on for that one.
    ne.handle_packet(now, nak_on(IF_A), &nak(&[40, 170]));
    let out = drain(&mut ne, now);
    assert_eq!(sqns_of(&out, PacketType::Ncf), [170]);
    assert_eq!(sqns_of(&out, PacketType::Nak), [170]);
    // None inside: nothing at all.
    assert_eq!(nak_outcome(&mut ne, now, &[50, 300, 99]), (0, 0));
    assert_eq!(ne.stats().naks_outside_window, 1);
    assert_eq!(ne.stats().nak_sqns_outside_window, 6);
    let repairs: Vec<u32> = ne
        .tsi_snapshot(&TSI)
        .expect("tsi")
        .repairs
        .iter()
        .map(|r| r.sqn.0)
        .collect();
    assert_eq!(repairs, [150, 160, 170, 210], "no state outside the window");
    // NNAKs too.
    ne.handle_packet(now, nak_on(IF_A), &nnak(&[5000]));
    assert!(drain(&mut ne, now).is_empty());
    assert_eq!(ne.stats().naks_outside_window, 2);
    assert_eq!(ne.stats().nnaks_forwarded, 0);
    ne.handle_packet(now, nak_on(IF_A), &nnak(&[5000, 180]));
    let out = drain(&mut ne, now);
    assert_eq!(sqns_of(&out, PacketType::Nnak), [180]);
}

#[test]
fn the_window_follows_spms_and_upstream_data_and_the_slack_follows_the_lead() {
    let now = t0();
    let mut ne = ne_with(|c| c.nak_window_slack = 100);
    ne.handle_packet(now, from_upstream(), &spm_window(1, 0, 1000));
    drain(&mut ne, now);
    assert_eq!(nak_outcome(&mut ne, now, &[1200]), (0, 0));
    // RDATA from upstream shows a later lead.
    ne.handle_packet(now, from_upstream(), &rdata_trail(1150, 0));
    drain(&mut ne, now);
    assert_eq!(nak_outcome(&mut ne, now, &[1200]), (1, 1));
    // RDATA from below teaches nothing.
    let below = NeRecvMeta {
        ifindex: IF_B,
        ..from_upstream()
    };
    ne.handle_packet(now, below, &rdata_trail(5000, 0));
    drain(&mut ne, now);
    assert_eq!(nak_outcome(&mut ne, now, &[1251]), (0, 0));
    // The trail advances: older numbers can no longer be repaired.
    ne.handle_packet(now, from_upstream(), &spm_window(2, 500, 1300));
    drain(&mut ne, now);
    assert_eq!(nak_outcome(&mut ne, now, &[400]), (0, 0));
    assert_eq!(nak_outcome(&mut ne, now, &[500]), (1, 1));
    // An out-of-sequence SPM and one without window information change nothing.
    ne.handle_packet(now, from_upstream(), &spm_window(1, 0, 1000));
    ne.handle_packet(now, from_upstream(), &spm_no_window(3));
    drain(&mut ne, now);
    assert_eq!(nak_outcome(&mut ne, now, &[401]), (0, 0));
    // The lead advanced 10 000 between two SPMs: the data runs that far ahead of the SPMs,
    // so NAKs up to twice that beyond the lead are let through.
    ne.handle_packet(now, from_upstream(), &spm_window(4, 500, 11_300));
    drain(&mut ne, now);
    assert_eq!(nak_outcome(&mut ne, now, &[11_300 + 20_000]), (1, 1));
    assert_eq!(nak_outcome(&mut ne, now, &[11_300 + 20_001]), (0, 0));
}

#[test]
fn naks_are_not_filtered_before_a_window_is_known() {
    let now = t0();
    let mut ne = ne_with(|c| c.nak_window_slack = 0);
    ne.handle_packet(now, from_upstream(), &spm_no_window(1));
    drain(&mut ne, now);
    assert_eq!(nak_outcome(&mut ne, now, &[0x9000_0000]), (1, 1));
    assert_eq!(ne.stats().naks_outside_window, 0);
}

#[test]
fn an_invalidated_option_after_an_odd_length_one_keeps_the_checksum_valid() {
    let now = t0();
    let mut ne = with_state(now);
    // 7 bytes: the next option's type byte sits at an odd offset of the packet.
    let odd = PgmOption {
        flags: OptFlags::with_opx(Opx::Ignore),
        value: OptionValue::Unknown {
            code: 0x21,
            specific: 0,
            data: &[9, 9, 9],
        },
    };
    let invalidate = PgmOption {
        flags: OptFlags::with_opx(Opx::Invalidate),
        value: OptionValue::Unknown {
            code: 0x20,
            specific: 0,
            data: &[1, 2, 3, 4],
        },
    };
    let body = Body::Spm(SpmRepr {
        sqn: Sqn(2),
        trail: Sqn(0),
        lead: Sqn(100),
        path: Nla(UPSTREAM),
    });
    ne.handle_packet(
        now,
        from_upstream(),
        &emit(4000, 7500, body, &[odd, invalidate]),
    );
    let out = drain(&mut ne, now);
    assert_eq!(out.len(), 2);
    let check = |b: &[u8]| {
        let p = Packet::new_checked(b).expect("forwarded");
        p.verify_checksum()
            .expect("checksum valid after invalidation");
        let types: Vec<OptionType> = p.options().iter().map(|o| o.option_type()).collect();
        assert_eq!(types, [OptionType::Unknown(0x21), OptionType::Invalid]);
    };
    for (_, b) in &out {
        check(b);
    }
    // A NAK forwarded upstream with the same options.
    let list = [PgmOption::from(OptionValue::NakList(SqnList::Slice(&[
        Sqn(6),
    ])))];
    let opts = [list[0], odd, invalidate];
    ne.handle_packet(now, nak_on(IF_A), &emit(7500, 4000, nak_body(5), &opts));
    let out = drain(&mut ne, now);
    let (_, b) = out
        .iter()
        .find(|(t, _)| t.packet_type == PacketType::Nak)
        .expect("forwarded");
    let p = Packet::new_checked(&b[..]).expect("forwarded");
    p.verify_checksum()
        .expect("checksum valid after invalidation");
    assert_eq!(ne.stats().opx_invalidated, 2);
}

/// Drives `ne` as a daemon does after each packet: one `handle_timeout` if due, then drains.
fn settle(ne: &mut NetworkElement, at: Instant) {
    if ne.poll_timeout().is_some_and(|t| t <= at) {
        ne.handle_timeout(at);
    }
    drain(ne, at);
}

/// The test TSI's SPM under another GSI.
fn spm_of(n: u32, sqn: u32) -> Vec<u8> {
    let b = n.to_be_bytes();
    emit_for(
        Gsi([9, 9, b[0], b[1], b[2], b[3]]),
        4000,
        7500,
        Body::Spm(SpmRepr {
            sqn: Sqn(sqn),
            trail: Sqn(0),
            lead: Sqn(100),
            path: Nla(UPSTREAM),
        }),
        &[],
    )
}

#[test]
fn a_flood_of_new_tsis_at_the_limit_costs_the_same_per_packet_at_any_table_size() {
    // Eviction used to scan every TSI per SPM at the limit, and `poll_timeout` and
    // `handle_timeout` every TSI per call: work grew with the table.
    for max in [64usize, 4096] {
        let now = t0();
        let mut ne = ne_with(|c| {
            c.max_tsis = max;
            c.tsi_expiry = Duration::from_secs(3);
            c.poll_ivl = Some(Duration::from_secs(2));
            c.dlr_discovery = false;
        });
        let mut at = now;
        for n in 0..max as u32 {
            ne.handle_packet(at, from_upstream(), &spm_of(n, 1));
            settle(&mut ne, at);
        }
        assert_eq!(ne.tsi_count(), max);
        let before = ne.internals().tsi_entries_visited;
        let flood = 4000u32;
        for n in 0..flood {
            at += Duration::from_millis(1);
            ne.handle_packet(at, from_upstream(), &spm_of(1_000_000 + n, 1));
            // A few of the old sessions stay alive.
            if n % 10 == 0 {
                ne.handle_packet(at, from_upstream(), &spm_of(n % 8, 2 + n));
            }
            settle(&mut ne, at);
            let i = ne.internals();
            let live = ne.tsi_count();
            assert!(live <= max, "{live} TSIs, limit {max}");
            assert!(
                i.tsi_queue_len <= 2 * live + 64 && i.poll_queue_len <= 2 * live + 64,
                "{i:?} with {live} TSIs"
            );
        }
        let visited = ne.internals().tsi_entries_visited - before;
        let per_packet = visited as f64 / f64::from(flood);
        assert!(
            per_packet <= 8.0,
            "limit {max}: {visited} TSI entries visited for {flood} packets"
        );
        // Every new TSI found room: by evicting one, or in one an expiry freed. With 4096
        // slots the first TSIs not kept alive expire 3 s in, before the flood has evicted
        // them all; with 64 the flood evicts each within 64 ms, so none lives to expire.
        let s = ne.stats();
        assert!(
            s.tsis_evicted + s.tsis_expired >= u64::from(flood) - 400,
            "limit {max}: {s:?}"
        );
        assert!(s.tsis_evicted > 0 && s.polls_sent > 0, "limit {max}: {s:?}");
        // Once the flood stops, everything expires, and the queues go with the TSIs.
        let end = at + Duration::from_secs(3);
        ne.handle_timeout(end);
        assert_eq!(ne.tsi_count(), 0);
        assert!(ne.stats().tsis_expired > 0);
        let i = ne.internals();
        assert!(i.tsi_queue_len <= 64 && i.poll_queue_len <= 64, "{i:?}");
    }
}

#[test]
fn repair_queues_shrink_with_the_live_states() {
    // The lazy queues used to be bounded by the configured limit only: with a high limit,
    // entries of states long gone stayed.
    let now = t0();
    let mut ne = ne_with(|c| {
        c.max_repair_states = 100_000;
        c.nak_window_slack = 100_000;
    });
    ne.handle_packet(now, from_upstream(), &spm(1));
    drain(&mut ne, now);
    for s in 0..20_000u32 {
        ne.handle_packet(now, nak_on(IF_A), &nak(&[s]));
        drain(&mut ne, now);
    }
    // Every repair confirmed and delivered: no state left.
    for s in 0..20_000u32 {
        ne.handle_packet(now, from_upstream(), &ncf(&[s]));
        ne.handle_packet(now, from_upstream(), &rdata(s));
        drain(&mut ne, now);
    }
    assert_eq!(ne.repair_state_count(), 0);
    // A few new ones.
    for s in 0..10u32 {
        ne.handle_packet(now, nak_on(IF_A), &nak(&[30_000 + s]));
        drain(&mut ne, now);
    }
    let i = ne.internals();
    let live = ne.repair_state_count();
    assert!(i.repair_order_len <= 2 * live + 64, "{i:?}");
    assert!(i.repair_timer_len <= 4 * live + 1024, "{i:?}");
    assert!(i.repair_map_capacity <= 4 * live + 256, "{i:?}");
}

#[test]
fn huge_intervals_never_panic() {
    // `now + interval` on `Instant`s panicked for intervals near `Duration::MAX`.
    let now = t0();
    let mut ne = ne_with(|c| {
        c.nak_rpt_ivl = Duration::MAX;
        c.nak_rpt_rte_ivl = Duration::MAX;
        c.nak_rdata_ivl = Duration::MAX;
        c.nak_elim_ivl = Duration::MAX;
        c.ncf_holdoff = Duration::MAX;
        c.tsi_expiry = Duration::MAX;
        c.poll_ivl = Some(Duration::MAX);
        c.poll_bo_ivl = Duration::MAX;
        c.poll_mask_bits = u32::MAX;
        c.nak_window_slack = u32::MAX;
    });
    ne.handle_packet(now, from_upstream(), &spm(1));
    ne.handle_packet(now, nak_on(IF_A), &nak(&[5, 6]));
    ne.handle_packet(now, from_upstream(), &ncf(&[5]));
    ne.handle_packet(now, from_upstream(), &rdata(5));
    ne.handle_packet(now, nak_on(IF_A), &redirecting_polr());
    drain(&mut ne, now);
    let _ = ne.poll_timeout();
    let later = now + Duration::from_secs(86_400 * 365);
    ne.handle_timeout(later);
    drain(&mut ne, later);
    let _ = ne.poll_timeout();
    assert_eq!(ne.tsi_count(), 1);
    // And zero intervals neither hang nor panic.
    let mut ne = ne_with(|c| {
        c.nak_rpt_ivl = Duration::ZERO;
        c.nak_rpt_rte_ivl = Duration::ZERO;
        c.nak_rdata_ivl = Duration::ZERO;
        c.nak_elim_ivl = Duration::ZERO;
        c.tsi_expiry = Duration::ZERO;
        c.poll_ivl = Some(Duration::ZERO);
        c.poll_bo_ivl = Duration::ZERO;
    });
    ne.handle_packet(now, from_upstream(), &spm(1));
    ne.handle_packet(now, nak_on(IF_A), &nak(&[5]));
    for ms in 0..3 {
        let at = now + Duration::from_millis(ms);
        ne.handle_timeout(at);
        drain(&mut ne, at);
    }
    assert_eq!(ne.tsi_count(), 0, "expired at once");
}

#[test]
fn no_tsi_state_with_a_zero_tsi_limit() {
    let now = t0();
    let mut ne = ne_with(|c| c.max_tsis = 0);
    ne.handle_packet(now, from_upstream(), &spm(1));
    assert!(drain(&mut ne, now).is_empty());
    assert_eq!(ne.tsi_count(), 0);
}

#[test]
fn transmits_a_driver_never_drains_stay_bounded_and_counted() {
    let now = t0();
    let mut ne = ne_with(|c| {
        c.max_repair_states = 100;
        c.max_tsis = 10;
    });
    ne.handle_packet(now, from_upstream(), &spm(1));
    for s in 0..20_000u32 {
        let at = now + Duration::from_micros(u64::from(s) * 20);
        ne.handle_packet(at, nak_on(IF_A), &nak(&[s % 100]));
    }
    let queued = ne.internals().queued_transmits;
    assert!(
        queued <= 100 + 2 * 3 * 10 + 1024,
        "{queued} transmits queued"
    );
    assert!(ne.stats().transmits_dropped > 0);
    // What is queued still goes out.
    assert_eq!(drain(&mut ne, now).len(), queued);
}

/// The TSI of `spm_of(n, ..)`.
fn tsi_of(n: u32) -> Tsi {
    let b = n.to_be_bytes();
    Tsi {
        gsi: Gsi([9, 9, b[0], b[1], b[2], b[3]]),
        sport: 4000,
    }
}

#[test]
fn the_least_recently_heard_tsi_is_evicted() {
    let now = t0();
    let mut ne = ne_with(|c| c.max_tsis = 3);
    for n in 0..3 {
        ne.handle_packet(now, from_upstream(), &spm_of(n, 1));
    }
    // 0 is heard again: 1 is now the least recently heard.
    let later = now + Duration::from_millis(1);
    ne.handle_packet(later, from_upstream(), &spm_of(0, 2));
    ne.handle_packet(later, from_upstream(), &spm_of(3, 1));
    assert_eq!(ne.tsi_list(), [tsi_of(0), tsi_of(2), tsi_of(3)]);
    ne.handle_packet(later, from_upstream(), &spm_of(4, 1));
    assert_eq!(ne.tsi_list(), [tsi_of(0), tsi_of(3), tsi_of(4)]);
    assert_eq!(ne.stats().tsis_evicted, 2);
    // An out-of-sequence SPM does not count as hearing the session. Of the least recently
    // heard, a TSI heard of only once goes first: 0 has sent two SPMs, 3 one.
    ne.handle_packet(later, from_upstream(), &spm_of(0, 2));
    ne.handle_packet(later, from_upstream(), &spm_of(5, 1));
    assert_eq!(ne.tsi_list(), [tsi_of(0), tsi_of(4), tsi_of(5)]);
    // Once every TSI has sent two SPMs, the least recently heard goes.
    let later = later + Duration::from_millis(1);
    ne.handle_packet(later, from_upstream(), &spm_of(4, 2));
    ne.handle_packet(later, from_upstream(), &spm_of(5, 2));
    ne.handle_packet(later, from_upstream(), &spm_of(6, 1));
    assert_eq!(ne.tsi_list(), [tsi_of(4), tsi_of(5), tsi_of(6)]);
    drain(&mut ne, later);
}

/// Hosts below can be sources too, on routes of their own (a learned route from their
/// interface): SPMs of made-up TSIs from them must not push real sessions out, and SPMs of a
/// real session's TSI from them must not take its path over.
#[test]
fn a_downstream_source_neither_takes_over_nor_pushes_out_a_session() {
    let now = t0();
    let mut ne = ne_with(|c| c.max_tsis = 8);
    // The real session: its SPMs from upstream.
    ne.handle_packet(now, from_upstream(), &spm_window(1, 0, 100));
    ne.handle_packet(now, from_upstream(), &spm_window(2, 0, 110));
    let before = ne.tsi_list();
    // A host on LAN A is a source with a route of its own.
    let (host, group) = (IpAddr::V4(Ipv4Addr::new(10, 1, 3, 66)), GROUP);
    ne.set_route(
        Some(host),
        group,
        NeRoute {
            upstream: IF_A,
            downstream: vec![IF_UP],
        },
    );
    let meta = NeRecvMeta {
        ifindex: IF_A,
        source: host,
        destination: group,
        ttl: 16,
    };
    // SPMs of the real TSI, in sequence, with itself as the path.
    for sqn in 3..50 {
        ne.handle_packet(now, meta, &spm_window(sqn, 1000, 2000));
    }
    assert_eq!(ne.stats().spms_wrong_source, 47);
    // And 1,000 made-up TSIs, one SPM each.
    for n in 0..1000 {
        ne.handle_packet(now, meta, &spm_of(100 + n, 1));
    }
    assert!(
        ne.tsi_list().contains(&before[0]),
        "the real session was pushed out"
    );
    // Its path is still upstream: a NAK from LAN A goes there.
    let out = nak_outcome(&mut ne, now, &[105]);
    assert_eq!(out.1, 1, "the NAK was not forwarded upstream");
    drain(&mut ne, now);
}

#[test]
fn odata_from_upstream_moves_the_window_and_is_not_forwarded() {
    let now = t0();
    let mut ne = ne_with(|c| c.nak_window_slack = 100);
    ne.handle_packet(now, from_upstream(), &spm_window(1, 0, 1000));
    drain(&mut ne, now);
    assert_eq!(nak_outcome(&mut ne, now, &[1200]), (0, 0));
    let odata = |sqn: u32| {
        emit(
            4000,
            7500,
            Body::Odata(DataRepr {
                sqn: Sqn(sqn),
                trail: Sqn(0),
                payload: b"data",
            }),
            &[],
        )
    };
    // From below: nothing learned.
    let below = NeRecvMeta {
        ifindex: IF_B,
        ..from_upstream()
    };
    ne.handle_packet(now, below, &odata(1150));
    assert_eq!(nak_outcome(&mut ne, now, &[1200]), (0, 0));
    ne.handle_packet(now, from_upstream(), &odata(1150));
    assert!(drain(&mut ne, now).is_empty(), "the kernel forwards ODATA");
    assert_eq!(nak_outcome(&mut ne, now, &[1200]), (1, 1));
    assert_eq!(ne.stats().ignored, 2);
    let snap = ne.tsi_snapshot(&TSI).expect("tsi");
    assert_eq!(snap.window, Some((Sqn(0), Sqn(1150))));
}

#[test]
fn polls_follow_a_reconfiguration() {
    let now = t0();
    let second = Duration::from_secs(1);
    let mut ne = ne_with(|c| {
        c.poll_ivl = Some(second);
        c.dlr_discovery = false;
    });
    ne.handle_packet(now, from_upstream(), &spm(1));
    drain(&mut ne, now);
    assert_eq!(ne.poll_timeout(), Some(now + second));
    // Off: only the TSI's expiry is left to wake up for.
    let mut cfg = ne.config().clone();
    cfg.poll_ivl = None;
    ne.reconfigure(cfg.clone());
    assert_eq!(ne.poll_timeout(), Some(now + cfg.tsi_expiry));
    ne.handle_timeout(now + 2 * second);
    assert_eq!(ne.stats().polls_sent, 0);
    // On again: from the next SPM.
    cfg.poll_ivl = Some(second);
    ne.reconfigure(cfg);
    let at = now + 3 * second;
    ne.handle_packet(at, from_upstream(), &spm(2));
    drain(&mut ne, at);
    assert_eq!(ne.poll_timeout(), Some(at + second));
    ne.handle_timeout(at + second);
    let polls = drain(&mut ne, at + second);
    assert_eq!(
        count(&polls, PacketType::Poll),
        2,
        "one per downstream interface"
    );
    assert_eq!(ne.poll_timeout(), Some(at + 2 * second));
}
