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
    let repr = Repr {
        sport,
        dport,
        gsi: GSI,
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
    p.verify_checksum().expect("checksum updated");
    assert_eq!(p.source_nla(), Nla(SRC));
    assert_eq!(ne.stats().nak_sources_rewritten, 1);
}
