//! Scripted exchanges with the DLR engine (§9.5.2).

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use pgm_core::proto::receiver::ReceiverConfig;
use pgm_core::proto::repairer::{DlrConfig, DlrTransmit, Repairer};
use pgm_core::proto::{Destination, RecvMeta};
use pgm_core::wire::{
    Body, DataRepr, Gsi, NakRepr, Nla, OptionList, OptionValue, Packet, PacketType, PgmOption,
    PollRepr, PollSubtype, Repr, SpmRepr, Sqn,
};

const SRC: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 1, 1, 2));
const GROUP: IpAddr = IpAddr::V4(Ipv4Addr::new(239, 192, 0, 1));
const PARENT: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 1, 2, 1));
const DOWNSTREAM_NE: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3));
const ME: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 1, 2, 9));
const GSI: Gsi = Gsi([1, 2, 3, 4, 5, 6]);

fn t0() -> Instant {
    #[expect(clippy::disallowed_methods, reason = "the test's epoch")]
    Instant::now()
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

fn mcast() -> RecvMeta {
    RecvMeta {
        source: SRC,
        destination: GROUP,
    }
}

fn dlr_with(f: impl FnOnce(&mut DlrConfig)) -> (Repairer, Instant) {
    let now = t0();
    let mut c = DlrConfig::new(ReceiverConfig::new(7500, GROUP), ME);
    f(&mut c);
    let mut d = Repairer::new(c);
    let spm = emit(
        4000,
        7500,
        Body::Spm(SpmRepr {
            sqn: Sqn(1),
            trail: Sqn(0),
            lead: Sqn(u32::MAX),
            path: Nla(PARENT),
        }),
        &[],
    );
    d.handle_packet(now, mcast(), &spm);
    for sqn in 0..10u32 {
        let p = emit(
            4000,
            7500,
            Body::Odata(DataRepr {
                sqn: Sqn(sqn),
                trail: Sqn(0),
                payload: &[sqn as u8; 100],
            }),
            &[],
        );
        d.handle_packet(now, mcast(), &p);
    }
    drain(&mut d, now);
    (d, now)
}

fn dlr() -> (Repairer, Instant) {
    dlr_with(|_| {})
}

fn drain(d: &mut Repairer, now: Instant) -> Vec<(DlrTransmit, Vec<u8>)> {
    let mut out = Vec::new();
    let mut buf = Vec::new();
    while let Some(t) = d.poll_transmit(now, &mut buf) {
        out.push((t, buf[..t.len].to_vec()));
    }
    out
}

fn nak(sqns: &[u32]) -> Vec<u8> {
    let rest: Vec<Sqn> = sqns[1..].iter().map(|&s| Sqn(s)).collect();
    let opts = [PgmOption::from(OptionValue::NakList(
        pgm_core::wire::SqnList::Slice(&rest),
    ))];
    let body = Body::Nak(NakRepr {
        sqn: Sqn(sqns[0]),
        source: Nla(SRC),
        group: Nla(GROUP),
    });
    emit(7500, 4000, body, if rest.is_empty() { &[] } else { &opts })
}

fn types(out: &[(DlrTransmit, Vec<u8>)]) -> Vec<PacketType> {
    out.iter().map(|(t, _)| t.packet_type).collect()
}

#[test]
fn upstream_role_answers_like_a_source_and_nnaks_the_parent() {
    let (mut d, now) = dlr();
    d.handle_packet(
        now,
        RecvMeta {
            source: DOWNSTREAM_NE,
            destination: ME,
        },
        &nak(&[3]),
    );
    let out = drain(&mut d, now);
    //= https://www.rfc-editor.org/rfc/rfc3208#section-9.5.2.1
    //# An upstream DLR MUST act as an ordinary PGM source in responding to
    //# any NAK it receives (i.e., directed to it).  That is, it SHOULD
    //# respond first with a normal NCF and then RDATA as usual.
    //= https://www.rfc-editor.org/rfc/rfc3208#section-9.5
    //# In addition, DLRs that receive redirected NAKs for which they have
    //# RDATA MUST send a NULL NAK to provide flow control to the original
    //# source without also provoking a repair from that source.
    assert_eq!(
        types(&out),
        [PacketType::Ncf, PacketType::Nnak, PacketType::Rdata]
    );
    let (ncf, _) = &out[0];
    assert_eq!(
        (ncf.source, ncf.destination, ncf.router_alert),
        (SRC, Destination::Group(GROUP), true)
    );
    let (nnak, _) = &out[1];
    assert_eq!(
        (nnak.source, nnak.destination),
        (ME, Destination::Unicast(PARENT))
    );
    let (rdata, bytes) = &out[2];
    //= https://www.rfc-editor.org/rfc/rfc3208#section-9.5.2.1
    //= type=test
    //# RDATA and POLR  packets transmitted by DLRs MUST
    //# bear the ODATA source's NLA as the network-header source address
    assert_eq!(
        (rdata.source, rdata.destination, rdata.router_alert),
        (SRC, Destination::Group(GROUP), true)
    );
    let p = Packet::new_checked(&bytes[..]).expect("rdata");
    p.verify_checksum()
        .expect("checksum updated for the RDATA type");
    let Body::Rdata(r) = Repr::parse(&p).expect("parse").body else {
        panic!("not RDATA")
    };
    assert_eq!((r.sqn, r.payload), (Sqn(3), &[3u8; 100][..]));
    assert_eq!(d.stats().repairs_served, 1);
    assert_eq!(d.stats().nnaks_sent, 1);
}

#[test]
fn off_tree_role_answers_the_parent_by_unicast_nnak_first() {
    let (mut d, now) = dlr();
    d.handle_packet(
        now,
        RecvMeta {
            source: PARENT,
            destination: ME,
        },
        &nak(&[4, 20]),
    );
    let out = drain(&mut d, now);
    //= https://www.rfc-editor.org/rfc/rfc3208#section-9.5.2.2
    //= type=test
    //# It MUST originate the NULL NAK before originating
    //# the RDATA.
    assert_eq!(
        types(&out),
        [
            PacketType::Ncf,
            PacketType::Nnak,
            PacketType::Rdata,
            PacketType::Nak
        ],
        "NCF for both, NNAK and RDATA for 4, a NAK back to the parent for 20"
    );
    //= https://www.rfc-editor.org/rfc/rfc3208#section-9.5.2.2
    //# It MUST respond to a NAK directed
    //# to it from its parent by unicasting an NCF and RDATA to its parent.
    //= https://www.rfc-editor.org/rfc/rfc3208#section-9.5.2.2
    //# The unicast NCF and RDATA packets SHOULD not have the router alert
    //# option.
    //= https://www.rfc-editor.org/rfc/rfc3208#section-9.5.2.2
    //# Again, an off-tree DLR that receives redirected NAKs for which it has
    //# RDATA MUST originate a NULL NAK to provide flow control to the
    //# original source.
    //= https://www.rfc-editor.org/rfc/rfc3208#section-9.5.2.2
    //# If it cannot provide the RDATA for a given NAK, an off-tree DLR
    //# SHOULD confirm the NAK with a unicast NCF as normal, then immediately
    //# send a NAK for the said data packet back to its parent.
    for (t, _) in &out {
        assert_eq!(
            (t.source, t.destination, t.router_alert),
            (ME, Destination::Unicast(PARENT), false)
        );
    }
    let Body::Nak(n) = Repr::parse_bytes(&out[3].1).expect("nak").body else {
        panic!()
    };
    assert_eq!(n.sqn, Sqn(20));
    assert_eq!((d.stats().cache_hits, d.stats().cache_misses), (1, 1));
}

#[test]
fn parent_ncf_draws_one_redirecting_polr_per_holdoff() {
    let (mut d, now) = dlr();
    let ncf = emit(
        4000,
        7500,
        Body::Ncf(NakRepr {
            sqn: Sqn(5),
            source: Nla(SRC),
            group: Nla(GROUP),
        }),
        &[],
    );
    d.handle_packet(now, mcast(), &ncf);
    d.handle_packet(now, mcast(), &ncf);
    let out = drain(&mut d, now);
    assert_eq!(types(&out), [PacketType::Polr]);
    let (t, b) = &out[0];
    //= https://www.rfc-editor.org/rfc/rfc3208#section-9.5.2.1
    //# Note that this POLR MUST have both the data source's source address
    //# and the router alert option in its network header.
    assert_eq!(
        (t.source, t.destination, t.router_alert),
        (SRC, Destination::Group(GROUP), true)
    );
    //= https://www.rfc-editor.org/rfc/rfc3208#section-9.5
    //# A DLR SHOULD respond to NCFs or POLLs sourced by
    //# its PGM parent with a redirecting POLR response packet containing an
    //# OPT_REDIRECT which provides its own network layer address.
    let polr = Repr::parse_bytes(b).expect("polr");
    let redirect = polr.options.iter().find_map(|o| match o.value {
        OptionValue::Redirect(n) => Some(n),
        _ => None,
    });
    assert_eq!(redirect, Some(Nla(ME)));
    assert!(!polr.parity, "no FEC service, no OPT_PARITY");
    let later = now + Duration::from_secs(2);
    d.handle_packet(later, mcast(), &ncf);
    assert_eq!(types(&drain(&mut d, later)), [PacketType::Polr]);
}

#[test]
fn ncf_completing_its_own_nak_draws_no_polr() {
    let (mut d, now) = dlr();
    // A gap at 10..=11: the DLR's own receiver NAKs 10 and 11.
    let p = emit(
        4000,
        7500,
        Body::Odata(DataRepr {
            sqn: Sqn(12),
            trail: Sqn(0),
            payload: b"x",
        }),
        &[],
    );
    d.handle_packet(now, mcast(), &p);
    let t1 = now + Duration::from_millis(60);
    d.handle_timeout(t1);
    let out = drain(&mut d, t1);
    assert!(types(&out).contains(&PacketType::Nak));
    //= https://www.rfc-editor.org/rfc/rfc3208#section-9.5.2.1
    //= type=test
    //# If the NCF completes NAK transmission initiated by the DLR itself,
    //# the DLR MUST NOT send a redirecting POLR.
    let ncf = emit(
        4000,
        7500,
        Body::Ncf(NakRepr {
            sqn: Sqn(10),
            source: Nla(SRC),
            group: Nla(GROUP),
        }),
        &[],
    );
    d.handle_packet(t1, mcast(), &ncf);
    assert!(!types(&drain(&mut d, t1)).contains(&PacketType::Polr));
}

#[test]
fn dlr_poll_is_answered_by_unicast_redirecting_polr() {
    let (mut d, now) = dlr();
    let poll = emit(
        4000,
        7500,
        Body::Poll(PollRepr {
            sqn: Sqn(3),
            round: 0,
            subtype: PollSubtype::Dlr,
            path: Nla(PARENT),
            backoff_ivl_us: 10_000,
            rand: [0; 4],
            mask: 0,
        }),
        &[],
    );
    d.handle_packet(now, mcast(), &poll);
    let t1 = now + Duration::from_millis(11);
    d.handle_timeout(t1);
    let out = drain(&mut d, t1);
    assert_eq!(types(&out), [PacketType::Polr]);
    assert_eq!(out[0].0.destination, Destination::Unicast(PARENT));
    let Body::Polr(p) = Repr::parse_bytes(&out[0].1).expect("polr").body else {
        panic!()
    };
    assert_eq!(p.sqn, Sqn(3));
    assert_eq!(d.stats().polls_answered, 1);
}

#[test]
fn cache_is_bounded_by_bytes_and_age() {
    let (d, _) = dlr_with(|c| c.cache_bytes = 500);
    let s = d.stats();
    assert!(s.cache_bytes <= 500, "{s:?}");
    assert!(s.cache_evictions >= 5);
    let (mut d, now) = dlr_with(|c| c.cache_age = Duration::from_secs(1));
    assert_eq!(d.stats().cache_entries, 10);
    d.handle_timeout(now + Duration::from_secs(2));
    assert_eq!(d.stats().cache_entries, 0);
}

#[test]
fn cache_limits_change_at_runtime() {
    let (mut d, now) = dlr();
    assert_eq!(d.stats().cache_entries, 10);
    d.set_cache_limits(now, 350, Duration::from_secs(60));
    assert!(d.stats().cache_bytes <= 350);
    assert_eq!(d.stats().cache_evictions, 10 - d.stats().cache_entries);
}

fn odata(tsi_port: u16, sqn: u32) -> Vec<u8> {
    emit(
        tsi_port,
        7500,
        Body::Odata(DataRepr {
            sqn: Sqn(sqn),
            trail: Sqn(0),
            payload: &[sqn as u8; 100],
        }),
        &[],
    )
}

#[test]
fn sessions_are_bounded_and_new_ones_refused_when_full() {
    let (mut d, now) = dlr_with(|c| c.max_sessions = 1);
    assert_eq!(d.stats().cache_entries, 10);
    // A second source of the same group and port: not cached, counted, never served.
    for sqn in 0..3 {
        d.handle_packet(now, mcast(), &odata(4001, sqn));
    }
    assert_eq!(d.stats().cache_entries, 10);
    assert_eq!(d.stats().sessions_refused, 3);
    let mut n = nak(&[1]);
    // Re-address the NAK to the second TSI (its destination port is the TSI's port).
    n[2..4].copy_from_slice(&4001u16.to_be_bytes());
    Packet::new_unchecked(&mut n[..]).fill_checksum();
    let meta = RecvMeta {
        source: DOWNSTREAM_NE,
        destination: ME,
    };
    d.handle_packet(now, meta, &n);
    assert!(
        !types(&drain(&mut d, now)).contains(&PacketType::Rdata),
        "served a refused session"
    );
    assert_eq!(d.stats().repairs_served, 0);
}

fn spm_of(tsi_port: u16, sqn: u32, trail: u32, lead: u32) -> Vec<u8> {
    emit(
        tsi_port,
        7500,
        Body::Spm(SpmRepr {
            sqn: Sqn(sqn),
            trail: Sqn(trail),
            lead: Sqn(lead),
            path: Nla(PARENT),
        }),
        &[],
    )
}

#[test]
fn an_empty_untracked_session_makes_room_for_a_new_one() {
    let (mut d, now) = dlr_with(|c| c.max_sessions = 2);
    // A second session that only sent an SPM: tracked, nothing cached.
    d.handle_packet(now, mcast(), &spm_of(4002, 1, 0, 0));
    drain(&mut d, now);
    assert_eq!(d.sessions(), 2);
    // An NCF of a TSI never heard creates nothing.
    let ncf = emit(
        4009,
        7500,
        Body::Ncf(NakRepr {
            sqn: Sqn(5),
            source: Nla(SRC),
            group: Nla(GROUP),
        }),
        &[],
    );
    d.handle_packet(now, mcast(), &ncf);
    assert_eq!(d.sessions(), 2);
    // While the receiver still tracks it, the empty session keeps its place.
    d.handle_packet(now, mcast(), &odata(4001, 0));
    assert_eq!(d.stats().sessions_refused, 1);
    // Once the receiver has let it go (peer expiry), it makes room; the first session's
    // SPMs keep it tracked.
    for (i, secs) in [10u64, 20, 30].into_iter().enumerate() {
        let t = now + Duration::from_secs(secs);
        d.handle_packet(t, mcast(), &spm_of(4000, 2 + i as u32, 0, 9));
        d.handle_timeout(t);
        drain(&mut d, t);
    }
    let later = now + Duration::from_secs(35);
    d.handle_timeout(later);
    drain(&mut d, later);
    d.handle_packet(later, mcast(), &odata(4001, 1));
    assert_eq!(d.stats().sessions_evicted, 1);
    assert_eq!(d.stats().cache_entries, 11);
    // Now both sessions are live: a fourth is refused.
    d.handle_packet(later, mcast(), &odata(4003, 0));
    assert_eq!(d.stats().sessions_refused, 2);
    assert_eq!(d.stats().cache_entries, 11);
}

#[test]
fn oldest_first_eviction_for_a_driver_bounding_several_engines() {
    let (mut d, now) = dlr();
    let later = now + Duration::from_millis(10);
    d.handle_packet(later, mcast(), &odata(4000, 10));
    drain(&mut d, later);
    assert_eq!(d.oldest_cached(), Some(now));
    let before = d.stats().cache_bytes;
    let freed = d.evict_oldest();
    assert!(freed > 100, "{freed}");
    assert_eq!(d.stats().cache_bytes, before - freed as u64);
    assert_eq!(d.stats().cache_entries, 10);
    assert_eq!(d.stats().cache_evictions, 1);
    // The evicted packet (sqn 0) is no longer served.
    let meta = RecvMeta {
        source: DOWNSTREAM_NE,
        destination: ME,
    };
    d.handle_packet(later, meta, &nak(&[0]));
    assert_eq!(d.stats().cache_misses, 1);
    drain(&mut d, later);
    while d.evict_oldest() > 0 {}
    assert_eq!(d.oldest_cached(), None);
    assert_eq!(d.stats().cache_entries, 0);
    assert_eq!(d.stats().cache_bytes, 0);
    assert_eq!(d.stats().cache_evictions, 11);
}

// ---------------------------------------------------------------------------------------------
// Robustness (issue 11): what packets from anyone can make the DLR do.

const STRANGER: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 1, 2, 66));

fn from(source: IpAddr) -> RecvMeta {
    RecvMeta {
        source,
        destination: GROUP,
    }
}

fn to_me(source: IpAddr) -> RecvMeta {
    RecvMeta {
        source,
        destination: ME,
    }
}

fn dlr_poll(sqn: u32, backoff_ivl_us: u32) -> Vec<u8> {
    emit(
        4000,
        7500,
        Body::Poll(PollRepr {
            sqn: Sqn(sqn),
            round: 0,
            subtype: PollSubtype::Dlr,
            path: Nla(STRANGER),
            backoff_ivl_us,
            rand: [0; 4],
            mask: 0,
        }),
        &[],
    )
}

/// splitmix64: floods that replay exactly.
fn rng(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[test]
fn naks_outside_the_sessions_window_are_dropped_and_counted() {
    let (mut d, now) = dlr();
    // The window is [0, 9] (ODATA 0-9); 64 past the lead is still answered (slack).
    for far in [1_000_000u32, 0x8000_0000, u32::MAX - 5, 9 + 65] {
        d.handle_packet(now, to_me(DOWNSTREAM_NE), &nak(&[far]));
        assert!(drain(&mut d, now).is_empty(), "answered a NAK for {far}");
    }
    assert_eq!(d.stats().naks_outside_window, 4);
    assert_eq!(d.stats().ncfs_sent, 0);
    // A list with one entry inside: only that entry is confirmed and served.
    d.handle_packet(now, to_me(DOWNSTREAM_NE), &nak(&[5, 500_000, 9 + 64]));
    let out = drain(&mut d, now);
    assert_eq!(
        types(&out),
        [
            PacketType::Ncf,
            PacketType::Nnak,
            PacketType::Rdata,
            PacketType::Nak
        ]
    );
    let ncf = NakPacketView::sqns(&out[0].1);
    assert_eq!(ncf, [5, 73]);
    assert_eq!(d.stats().nak_sqns_outside_window, 4 + 1);
}

/// The sequence numbers of a NAK-like packet.
struct NakPacketView;
impl NakPacketView {
    fn sqns(b: &[u8]) -> Vec<u32> {
        pgm_core::wire::NakPacket::new_checked(b)
            .expect("nak")
            .sqns()
            .map(|s| s.0)
            .collect()
    }
}

#[test]
fn a_nak_flood_for_random_sqns_is_reflected_only_inside_the_window() {
    let (mut d, now) = dlr();
    let mut state = 11;
    let mut inside = 0;
    for _ in 0..50_000 {
        let sqn = rng(&mut state) as u32;
        inside += u64::from(sqn <= 9 + 64);
        d.handle_packet(now, to_me(DOWNSTREAM_NE), &nak(&[sqn]));
        drain(&mut d, now);
    }
    assert_eq!(d.stats().naks_outside_window, 50_000 - inside);
    assert_eq!(d.stats().ncfs_sent, inside);
}

#[test]
fn packets_of_a_session_from_another_address_are_not_cached_or_used() {
    let (mut d, now) = dlr();
    let before = d.stats().cache_entries;
    // ODATA and SPMs of the real TSI from a stranger: a lead far ahead, data to cache.
    d.handle_packet(now, from(STRANGER), &odata(4000, 1_000_000));
    d.handle_packet(now, from(STRANGER), &spm_of(4000, 50, 0, 2_000_000));
    assert_eq!(d.stats().cache_entries, before);
    assert!(d.stats().wrong_source >= 2, "{:?}", d.stats());
    // So the window did not move: a NAK there is still outside it.
    d.handle_packet(now, to_me(DOWNSTREAM_NE), &nak(&[1_000_000]));
    assert!(drain(&mut d, now).is_empty());
    assert_eq!(d.stats().naks_outside_window, 1);
}

#[test]
fn dlr_polls_from_anyone_but_the_source_are_ignored() {
    let (mut d, now) = dlr();
    // A stranger asks for a POLR to its chosen address (a reflector).
    d.handle_packet(now, from(STRANGER), &dlr_poll(3, 10_000));
    d.handle_timeout(now + Duration::from_secs(1));
    assert!(drain(&mut d, now + Duration::from_secs(1)).is_empty());
    assert_eq!(d.stats().polls_ignored, 1);
    assert_eq!(d.pending_polrs(), 0);
}

#[test]
fn pending_polrs_are_one_per_session_and_soon() {
    let (mut d, now) = dlr();
    // A thousand POLLs of ever new POLL_SQNs, each asking for over an hour of back-off.
    for sqn in 0..1000 {
        d.handle_packet(now, mcast(), &dlr_poll(sqn, u32::MAX));
        assert!(d.pending_polrs() <= 1);
    }
    let due = d.poll_timeout().expect("a POLR is pending");
    assert!(due <= now + Duration::from_secs(10), "back-off capped");
    let later = now + Duration::from_secs(10);
    d.handle_timeout(later);
    let out = drain(&mut d, later);
    assert_eq!(
        types(&out),
        [PacketType::Polr],
        "one POLR, for the last POLL"
    );
    assert_eq!(d.stats().polls_answered, 1);
}

#[test]
fn own_naks_remembered_are_bounded_and_an_ncf_flood_is_cheap() {
    let (mut d, now) = dlr();
    // A gap of 30,000 sequence numbers: the embedded receiver NAKs them all (window
    // permitting), the DLR remembers a bounded number.
    let p = emit(
        4000,
        7500,
        Body::Odata(DataRepr {
            sqn: Sqn(30_010),
            trail: Sqn(0),
            payload: &[1; 10],
        }),
        &[],
    );
    d.handle_packet(now, mcast(), &p);
    let mut t = now;
    for _ in 0..200 {
        t += Duration::from_millis(20);
        d.handle_timeout(t);
        drain(&mut d, t);
    }
    assert!(d.receiver().stats().naks_sent > 0);
    assert!(d.remembered_naks() <= 4096, "{}", d.remembered_naks());
    // 100,000 NCFs for random sqns: each is O(1) (the test would take minutes if each
    // scanned what is remembered).
    let mut state = 5;
    for _ in 0..100_000 {
        let ncf = emit(
            4000,
            7500,
            Body::Ncf(NakRepr {
                sqn: Sqn(rng(&mut state) as u32 % 40_000),
                source: Nla(SRC),
                group: Nla(GROUP),
            }),
            &[],
        );
        d.handle_packet(t, mcast(), &ncf);
    }
    let out = drain(&mut d, t);
    // At most one redirecting POLR per hold-off.
    assert!(
        out.iter()
            .filter(|(x, _)| x.packet_type == PacketType::Polr)
            .count()
            <= 1,
        "{:?}",
        types(&out)
    );
}

#[test]
fn made_up_sessions_draw_bounded_spmrs_and_state() {
    let (mut d, now) = dlr_with(|c| c.max_sessions = 64);
    // 2,000 made-up sessions, two ODATA each with a gap between: each would like an SPMR.
    let mut t = now;
    for n in 0..2000u16 {
        for sqn in [100, 105] {
            d.handle_packet(t, from(STRANGER), &odata(5000 + n, sqn));
        }
        t += Duration::from_micros(500);
        d.handle_timeout(t);
        drain(&mut d, t);
    }
    // Then ten seconds of timers.
    let mut spmrs = 0;
    for _ in 0..1000 {
        t += Duration::from_millis(10);
        d.handle_timeout(t);
        spmrs += drain(&mut d, t)
            .iter()
            .filter(|(x, _)| x.packet_type == PacketType::Spmr)
            .count();
    }
    let elapsed = t.duration_since(now).as_secs() + 1;
    let sent = d.receiver().stats().spmrs_sent;
    assert!(
        sent <= 10 * elapsed + 10,
        "{sent} SPMRs in {elapsed} s (rate 10/s)"
    );
    // Each SPMR is multicast (TTL 1) to suppress others', then unicast (§13.3.1).
    assert!(
        spmrs as u64 <= 2 * sent,
        "{spmrs} SPMR packets for {sent} SPMRs"
    );
    assert!(d.sessions() <= 64);
    assert!(d.receiver().sources() <= 1024);
}

#[test]
fn a_reset_makes_the_sessions_cache_dead_at_once() {
    let (mut d, now) = dlr();
    let rst = emit(
        4000,
        7500,
        Body::Spm(SpmRepr {
            sqn: Sqn(2),
            trail: Sqn(0),
            lead: Sqn(9),
            path: Nla(PARENT),
        }),
        &[PgmOption::from(OptionValue::Rst {
            no_naks: false,
            error_code: 0,
        })],
    );
    // From a stranger: nothing happens.
    d.handle_packet(now, from(STRANGER), &rst);
    d.handle_packet(now, to_me(DOWNSTREAM_NE), &nak(&[5]));
    assert!(types(&drain(&mut d, now)).contains(&PacketType::Rdata));
    // From the source: the cache is dead (no NAK is served; no window either).
    d.handle_packet(now, mcast(), &rst);
    d.handle_packet(now, to_me(DOWNSTREAM_NE), &nak(&[5]));
    assert!(!types(&drain(&mut d, now)).contains(&PacketType::Rdata));
}

#[test]
fn a_flood_of_one_packet_sessions_does_not_keep_a_real_one_out() {
    let (mut d, now) = dlr_with(|c| {
        c.max_sessions = 64;
        c.receiver.max_sources = 64;
    });
    for n in 0..2000u16 {
        d.handle_packet(now, from(STRANGER), &odata(5000 + n, 100));
    }
    drain(&mut d, now);
    assert!(d.sessions() <= 64);
    assert!(d.receiver().stats().sources_evicted > 0);
    // A real new session from the source: tracked, cached, served.
    d.handle_packet(now, mcast(), &spm_of(4001, 1, 0, 0));
    for sqn in 0..3 {
        d.handle_packet(now, mcast(), &odata(4001, sqn));
    }
    drain(&mut d, now);
    let mut n = nak(&[1]);
    n[2..4].copy_from_slice(&4001u16.to_be_bytes());
    Packet::new_unchecked(&mut n[..]).fill_checksum();
    d.handle_packet(now, to_me(DOWNSTREAM_NE), &n);
    assert!(
        types(&drain(&mut d, now)).contains(&PacketType::Rdata),
        "{:?}",
        d.stats()
    );
}

/// The packet sequence of the adversarial suite's DLR scenario, at the engine: a host beside
/// the DLR multicasts SPMs of the real TSI naming itself as SPM_PATH (in sequence, with
/// OPT_FIN, OPT_RST, a lead far ahead, a window wider than any) and NCFs of it, then NAKs it
/// to us. NNAKs, forwarded NAKs and our own NAKs still go to the parent only. (The NAKs and
/// NNAKs of the real session that reached the attacker in that scenario were the DLR's, sent
/// to R1 and relayed by R1, which had taken the attacker's SPMs: a network-element bug.)
#[test]
fn spoofed_spms_and_ncfs_leave_naks_and_nnaks_with_the_parent() {
    let (mut d, now) = dlr();
    let spm = |sqn: u32, trail: u32, lead: u32, opt: Option<OptionValue<'static>>| {
        let opts: Vec<PgmOption<'_>> = opt.into_iter().map(PgmOption::from).collect();
        let path = Nla(STRANGER);
        let body = Body::Spm(SpmRepr {
            sqn: Sqn(sqn),
            trail: Sqn(trail),
            lead: Sqn(lead),
            path,
        });
        emit(4000, 7500, body, &opts)
    };
    let rst = OptionValue::Rst {
        no_naks: true,
        error_code: 2,
    };
    let spoofed = [
        spm(0x0100_0001, 0, 9, Some(OptionValue::Fin)),
        spm(0x0100_0002, 0, 9, Some(rst)),
        spm(0x0100_0003, 0, 1 << 30, None),
        spm(0x0100_0004, 9u32.wrapping_sub((1 << 31) - 2), 9, None),
    ];
    let mut out = Vec::new();
    for p in &spoofed {
        d.handle_packet(now, from(STRANGER), p);
    }
    for sqn in [3, 20] {
        let ncf = emit(
            4000,
            7500,
            Body::Ncf(NakRepr {
                sqn: Sqn(sqn),
                source: Nla(SRC),
                group: Nla(GROUP),
            }),
            &[],
        );
        d.handle_packet(now, from(STRANGER), &ncf);
    }
    out.extend(drain(&mut d, now));
    assert!(d.stats().wrong_source >= 4, "{:?}", d.stats());
    assert_eq!(
        d.receiver().nak_target(&d.receiver().tsis()[0]),
        Some(PARENT)
    );
    // Redirected NAKs from downstream and from the stranger: 3 is cached (NNAK), 20 is not
    // (forwarded).
    d.handle_packet(now, to_me(DOWNSTREAM_NE), &nak(&[3, 20]));
    d.handle_packet(now, to_me(STRANGER), &nak(&[4, 21]));
    out.extend(drain(&mut d, now));
    // A gap in the source's data: our own NAKs.
    d.handle_packet(now, mcast(), &odata(4000, 15));
    let mut t = now;
    for _ in 0..100 {
        t += Duration::from_millis(20);
        d.handle_timeout(t);
        out.extend(drain(&mut d, t));
    }
    assert!(d.receiver().stats().naks_sent > 0);
    let to = |ty: PacketType| -> Vec<Destination> {
        out.iter()
            .filter(|(x, _)| x.packet_type == ty)
            .map(|(x, _)| x.destination)
            .collect()
    };
    let (naks, nnaks) = (to(PacketType::Nak), to(PacketType::Nnak));
    assert!(naks.len() >= 3 && nnaks.len() == 2, "{naks:?} {nnaks:?}");
    for dest in naks.iter().chain(&nnaks) {
        assert_eq!(*dest, Destination::Unicast(PARENT), "{:?}", types(&out));
    }
    assert!(
        out.iter()
            .all(|(x, _)| x.destination != Destination::Unicast(STRANGER)),
        "{:?}",
        out.iter()
            .map(|(x, _)| (x.packet_type, x.destination))
            .collect::<Vec<_>>()
    );
}

#[test]
fn a_later_poll_round_is_answered_only_after_its_round_zero() {
    let (mut d, now) = dlr();
    let round = |sqn: u32, round: u16| {
        let p = dlr_poll(sqn, 1000);
        let mut repr = Repr::parse_bytes(&p).expect("poll");
        if let Body::Poll(ref mut b) = repr.body {
            b.round = round;
        }
        let mut out = vec![0; repr.buffer_len()];
        repr.emit(&mut out).expect("emit");
        out
    };
    //= https://www.rfc-editor.org/rfc/rfc3208#section-14.5
    //= type=test
    //# If POLL_ROUND is non-zero and the PGM receiver has not received a
    //# previous poll with the same POLL_SQN and a zero POLL_ROUND, it MUST
    //# discard the poll without further action.
    d.handle_packet(now, mcast(), &round(5, 1));
    assert_eq!(d.pending_polrs(), 0);
    assert_eq!(d.stats().polls_ignored, 1);
    d.handle_packet(now, mcast(), &round(6, 0));
    d.handle_packet(now, mcast(), &round(6, 1));
    assert_eq!(d.pending_polrs(), 1);
    assert_eq!(d.stats().polls_ignored, 1);
}
