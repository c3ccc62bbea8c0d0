//! Scripted exchanges with the receiver engine (§6, §13.5, App. D).

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use pgm_core::proto::receiver::{Event, Receiver, ReceiverConfig, SessionFilter};
use pgm_core::proto::{Destination, RecvMeta, Transmit};
use pgm_core::wire::{
    Body, DataRepr, Gsi, NakRepr, Nla, OptionList, OptionValue, PacketType, PgmOption, PollRepr,
    PollSubtype, Repr, SpmRepr, Sqn, Tsi,
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
    bytes_with(body, OptionList::EMPTY)
}

fn bytes_with(body: Body<'_>, options: OptionList<'_>) -> Vec<u8> {
    let repr = Repr {
        sport: 4000,
        dport: 7500,
        gsi: GSI,
        parity: false,
        var_pktlen: false,
        body,
        options,
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
    //= https://www.rfc-editor.org/rfc/rfc3208#section-6.3
    //= type=test
    //# Receivers MUST detect gaps in the expected data sequence in the
    //# following manners:
    //#
    //#    by comparing the sequence number on the most recently received
    //#    ODATA or RDATA packet with the leading edge of contiguous data
    assert_eq!(naks.len(), 1, "one NAK within NAK_BO_IVL");
    //= https://www.rfc-editor.org/rfc/rfc3208#section-6.2
    //= type=test
    //# For each TSI, receivers MUST use the most recent SPM to determine the
    //# NLA of the upstream PGM network element for use in NAK addressing.
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
    //= https://www.rfc-editor.org/rfc/rfc3208#section-6.1
    //= type=test
    //# As its default mode of operation, a receiver MUST deliver only
    //# contiguous data packets to the application, and it MUST do so in the
    //# order defined by those data packets' sequence numbers.
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

/// A gap before any SPM draws an SPMR (to learn where to NAK), and no NAK: §6.2 forbids
/// NAKing before the session's first SPM. The SPM then releases the NAK, to its path.
#[test]
fn a_gap_before_any_spm_draws_an_spmr_and_no_nak_until_the_spm() {
    let now = t0();
    let mut r = receiver();
    r.handle_packet(now, meta(), &odata(0, b"a"));
    let out = run_until(&mut r, now + Duration::from_millis(300));
    assert!(out.is_empty(), "nothing missing, no SPMR: {out:?}");
    r.handle_packet(now, meta(), &odata(2, b"c"));
    let out = run_until(&mut r, now + Duration::from_millis(600));
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
    //= https://www.rfc-editor.org/rfc/rfc3208#section-6.2
    //= type=test
    //# A
    //# receiver MUST NOT initiate repair requests until it has received at
    //# least one SPM for the corresponding TSI.
    assert!(naks_in(&out).is_empty(), "no NAK before an SPM: {out:?}");
    let later = now + Duration::from_millis(600);
    r.handle_packet(later, meta(), &spm(1, 0, 2, ROUTER));
    let out = run_until(&mut r, later + Duration::from_millis(60));
    assert_eq!(naks_in(&out), [1]);
    assert!(
        out.iter()
            .filter(|(t, _)| t.packet_type == PacketType::Nak)
            .all(|(t, _)| t.destination == Destination::Unicast(ROUTER))
    );
}

#[test]
fn trail_passing_a_gap_reports_loss_and_delivery_continues() {
    let now = t0();
    let mut r = receiver();
    r.handle_packet(now, meta(), &spm(1, 0, u32::MAX, ROUTER));
    r.handle_packet(now, meta(), &odata(0, b"a"));
    r.handle_packet(now, meta(), &odata(3, b"d"));
    // The source's window moves past 1 and 2. One packet saying so is not enough (it may
    // be corrupt or forged): nothing is given up yet.
    r.handle_packet(now, meta(), &spm(2, 3, 3, ROUTER));
    assert!(
        !events(&mut r)
            .iter()
            .any(|e| matches!(e, Event::Loss { .. })),
        "one packet declared data lost"
    );
    // A second packet of the source agreeing does it.
    r.handle_packet(now, meta(), &odata_with(4, 3, false, b"e"));
    let ev = events(&mut r);
    assert_eq!(ev.len(), 3, "{ev:?}");
    assert!(matches!(
        ev[0],
        Event::Loss {
            first: Sqn(1),
            count: 2,
            ..
        }
    ));
    assert_eq!(data_of(&ev), [b"d".to_vec(), b"e".to_vec()]);
    assert_eq!(r.stats().jumps, 1);
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
    //= https://www.rfc-editor.org/rfc/rfc3208#section-14.5
    //= type=test
    //# POLR_SQN MUST be equal to
    //# POLL_SQN and POLR_ROUND must be equal to POLL_ROUND.
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
    // A source confirmed by its second packet keeps its place.
    r.handle_packet(now, meta(), &odata(0, b"a"));
    r.handle_packet(now, meta(), &odata(1, b"a"));
    let mut other = odata(0, b"b");
    other[8] = 99; // another GSI
    pgm_core::wire::Packet::new_unchecked(&mut other[..]).fill_checksum();
    r.handle_packet(now, meta(), &other);
    assert_eq!(r.sources(), 1);
    assert_eq!(r.stats().sources_refused, 1);
    assert_eq!(r.stats().sources_evicted, 0);
}

/// A flood of made-up TSIs, one packet each, must not keep a real source out at
/// `max_sources`: sources heard of only once make room (examined in rotation).
#[test]
fn made_up_sources_at_the_limit_make_room_for_a_real_one() {
    let now = t0();
    let mut cfg = ReceiverConfig::new(7500, GROUP);
    cfg.max_sources = 16;
    let mut r = Receiver::new(cfg);
    for n in 0..1000u32 {
        let gsi = n.to_be_bytes();
        let b = foreign(
            [0xEE, 0xEE, gsi[0], gsi[1], gsi[2], gsi[3]],
            data_at(n, n),
            OptionList::EMPTY,
        );
        r.handle_packet(now, from(STRANGER), &b);
    }
    assert_eq!(r.sources(), 16);
    assert_eq!(r.stats().sources_evicted, 1000 - 16);
    assert_eq!(r.stats().sources_refused, 0);
    events(&mut r);
    // The real session gets in, confirms itself, and outlives the next flood.
    live_session(&mut r, now, 10);
    for n in 1000..2000u32 {
        let gsi = n.to_be_bytes();
        let b = foreign(
            [0xEE, 0xEE, gsi[0], gsi[1], gsi[2], gsi[3]],
            data_at(n, n),
            OptionList::EMPTY,
        );
        r.handle_packet(now, from(STRANGER), &b);
    }
    let evs = events(&mut r);
    let real = evs
        .iter()
        .filter(|e| matches!(e, Event::Data { tsi, .. } if *tsi == TSI))
        .count();
    assert_eq!(real, 10, "the real session delivered everything");
    assert!(
        !evs.iter()
            .any(|e| matches!(e, Event::SessionEnd { tsi, .. } if *tsi == TSI)),
        "the real session was evicted"
    );
    assert!(r.tsis().contains(&TSI));
}

fn odata_with(sqn: u32, trail: u32, syn: bool, payload: &[u8]) -> Vec<u8> {
    let opts = [PgmOption::from(OptionValue::Syn)];
    let body = Body::Odata(DataRepr {
        sqn: Sqn(sqn),
        trail: Sqn(trail),
        payload,
    });
    let options = if syn {
        OptionList::Slice(&opts)
    } else {
        OptionList::EMPTY
    };
    bytes_with(body, options)
}

fn data_of(evs: &[Event]) -> Vec<Vec<u8>> {
    evs.iter()
        .filter_map(|e| match e {
            Event::Data { data, .. } => Some(data.to_vec()),
            _ => None,
        })
        .collect()
}

fn naks_in(out: &[(Transmit, Vec<u8>)]) -> Vec<u32> {
    let mut sqns = Vec::new();
    for (t, b) in out {
        if t.packet_type != PacketType::Nak {
            continue;
        }
        let p = pgm_core::wire::NakPacket::new_checked(&b[..]).expect("nak");
        sqns.extend(p.sqns().map(|s| s.0));
    }
    sqns.sort_unstable();
    sqns
}

/// A session's first packets reordered on the way (a router flushing the packets it queued
/// while resolving its route beside newer ones): the receiver that hears #4 first still
/// delivers #0 to #4, in order, once OPT_SYN's #0 arrives; nothing before it.
#[test]
fn a_reordered_session_start_is_delivered_whole() {
    let now = t0();
    let mut r = receiver();
    r.handle_packet(now, meta(), &odata_with(4, 0, false, b"4"));
    assert!(
        data_of(&events(&mut r)).is_empty(),
        "delivery waits in the join hold"
    );
    for s in [1u32, 2, 3] {
        r.handle_packet(now, meta(), &odata_with(s, 0, false, &[b'0' + s as u8]));
    }
    assert!(data_of(&events(&mut r)).is_empty(), "no OPT_SYN yet");
    r.handle_packet(now, meta(), &odata_with(0, 0, true, b"0"));
    // OPT_SYN ends the hold at once.
    assert_eq!(
        data_of(&events(&mut r)),
        [b"0", b"1", b"2", b"3", b"4"].map(|d| d.to_vec())
    );
    let out = run_until(&mut r, now + Duration::from_secs(2));
    assert!(naks_in(&out).is_empty(), "nothing was missing: {out:?}");
    assert_eq!(r.stats().duplicates, 0);
}

/// Without OPT_SYN the hold ends by its timer; the window starts at the oldest ODATA heard
/// in it and the gaps this opened are NAKed like any other.
#[test]
fn the_join_hold_ends_by_timer_and_its_gaps_are_naked() {
    let now = t0();
    let mut r = receiver();
    r.handle_packet(now, meta(), &spm(1, 0, 9, ROUTER));
    // The SPM says #0..#9 were sent before this receiver's first packet: it starts at #10
    // and holds.
    r.handle_packet(now, meta(), &odata_with(10, 0, false, b"10"));
    r.handle_packet(now, meta(), &odata_with(8, 0, false, b"8"));
    let held = ReceiverConfig::new(7500, GROUP).join_hold;
    assert!(data_of(&events(&mut r)).is_empty());
    let out = run_until(&mut r, now + held + Duration::from_millis(60));
    assert_eq!(
        naks_in(&out),
        [9],
        "the gap the rewind opened, and no older one"
    );
    assert_eq!(data_of(&events(&mut r)), [b"8".to_vec()], "#9 is missing");
    let repair = bytes(Body::Rdata(DataRepr {
        sqn: Sqn(9),
        trail: Sqn(0),
        payload: b"9",
    }));
    r.handle_packet(now + held, meta(), &repair);
    assert_eq!(
        data_of(&events(&mut r)),
        [&b"9"[..], b"10"].map(|d| d.to_vec())
    );
    // After the hold, older ODATA is data from before the join: a duplicate.
    r.handle_packet(now + held * 2, meta(), &odata_with(7, 0, false, b"7"));
    assert!(data_of(&events(&mut r)).is_empty());
    assert_eq!(r.stats().duplicates, 1);
}

/// RDATA never moves a held window back (it answers someone else's NAK, possibly for data
/// long before this receiver joined), and a first packet at the source's trailing edge or
/// with OPT_SYN starts delivery at once.
#[test]
fn rdata_does_not_rewind_and_syn_or_trail_start_at_once() {
    let now = t0();
    let mut r = receiver();
    r.handle_packet(now, meta(), &odata_with(50, 0, false, b"50"));
    let old = bytes(Body::Rdata(DataRepr {
        sqn: Sqn(3),
        trail: Sqn(0),
        payload: b"3",
    }));
    r.handle_packet(now, meta(), &old);
    let held = ReceiverConfig::new(7500, GROUP).join_hold;
    let out = run_until(&mut r, now + held);
    assert!(naks_in(&out).is_empty());
    assert_eq!(data_of(&events(&mut r)), [b"50".to_vec()]);

    let mut r = receiver();
    r.handle_packet(now, meta(), &odata_with(7, 7, false, b"7"));
    assert_eq!(data_of(&events(&mut r)), [b"7".to_vec()], "at the trail");
    let mut r = receiver();
    r.handle_packet(now, meta(), &odata_with(7, 0, true, b"7"));
    assert_eq!(data_of(&events(&mut r)), [b"7".to_vec()], "OPT_SYN");
    let mut config = ReceiverConfig::new(7500, GROUP);
    config.join_hold = Duration::ZERO;
    let mut r = Receiver::new(config);
    r.handle_packet(now, meta(), &odata_with(7, 0, false, b"7"));
    assert_eq!(
        data_of(&events(&mut r)),
        [b"7".to_vec()],
        "no hold configured"
    );
}

fn rdata(sqn: u32, payload: &[u8]) -> Vec<u8> {
    bytes(Body::Rdata(DataRepr {
        sqn: Sqn(sqn),
        trail: Sqn(0),
        payload,
    }))
}

/// The NAKed sequence numbers with the time each NAK left, running timers up to `until`.
fn timed_naks(r: &mut Receiver, until: Instant) -> Vec<(Instant, u32)> {
    let mut out = Vec::new();
    let mut buf = Vec::new();
    while let Some(t) = r.poll_timeout().filter(|t| *t <= until) {
        r.handle_timeout(t);
        while let Some(tx) = r.poll_transmit(t, &mut buf) {
            if tx.packet_type == PacketType::Nak {
                let p = pgm_core::wire::NakPacket::new_checked(&buf[..tx.len]).expect("nak");
                out.extend(p.sqns().map(|s| (t, s.0)));
            }
        }
    }
    out
}

/// A source that confirms and repairs within milliseconds: once that is measured, a lost
/// repair is NAKed again within tens of milliseconds, not after NAK_RDATA_IVL (500 ms); with
/// adaptation off it waits the whole interval.
#[test]
fn waits_adapt_to_the_measured_repair_time() {
    for adaptive in [true, false] {
        let now = t0();
        let mut config = ReceiverConfig::new(7500, GROUP);
        config.adaptive_nak_timers = adaptive;
        let mut r = Receiver::new(config);
        r.handle_packet(now, meta(), &spm(1, 0, u32::MAX, ROUTER));
        r.handle_packet(now, meta(), &odata_with(0, 0, false, b"0"));
        // A first loss, confirmed in 1 ms and repaired 2 ms later: measured.
        r.handle_packet(now, meta(), &odata_with(2, 0, false, b"2"));
        let naks = timed_naks(&mut r, now + Duration::from_millis(60));
        let &[(t1, 1)] = &naks[..] else {
            panic!("one NAK for #1: {naks:?}")
        };
        let ms = Duration::from_millis;
        r.handle_packet(t1 + ms(1), meta(), &ncf(1));
        r.handle_packet(t1 + ms(3), meta(), &rdata(1, b"1"));
        // A second loss whose RDATA is lost after the NCF.
        let t2 = t1 + ms(10);
        r.handle_packet(t2, meta(), &odata_with(4, 0, false, b"4"));
        let naks = timed_naks(&mut r, t2 + ms(60));
        let &[(t3, 3)] = &naks[..] else {
            panic!("one NAK for #3: {naks:?}")
        };
        r.handle_packet(t3 + ms(1), meta(), &ncf(3));
        let again = timed_naks(&mut r, t3 + ms(400));
        if adaptive {
            let &[(t4, 3), ..] = &again[..] else {
                panic!("#3 NAKed again within 400 ms: {again:?}")
            };
            // The floor (10 ms) plus at most NAK_BO_IVL (50 ms).
            assert!(t4 - t3 <= ms(1 + 10 + 50), "{:?}", t4 - t3);
        } else {
            assert!(again.is_empty(), "NAK_RDATA_IVL not yet over: {again:?}");
        }
        r.handle_packet(t3 + ms(450), meta(), &rdata(3, b"3"));
        assert_eq!(
            data_of(&events(&mut r)),
            [&b"0"[..], b"1", b"2", b"3", b"4"].map(|d| d.to_vec())
        );
    }
}

/// With adapted waits a receiver retries sooner, but it does not give up sooner: loss is
/// declared only after both the retry count and NAK_NCF_RETRIES × NAK_RPT_IVL have passed.
#[test]
fn adapted_waits_keep_the_time_budget_before_loss() {
    let now = t0();
    let ms = Duration::from_millis;
    let mut config = ReceiverConfig::new(7500, GROUP);
    config.nak_ncf_retries = 3;
    let budget = config.nak_rpt_ivl * 3;
    let mut r = Receiver::new(config);
    r.handle_packet(now, meta(), &spm(1, 0, u32::MAX, ROUTER));
    r.handle_packet(now, meta(), &odata_with(0, 0, false, b"0"));
    r.handle_packet(now, meta(), &odata_with(2, 0, false, b"2"));
    let naks = timed_naks(&mut r, now + ms(60));
    let &[(t1, 1)] = &naks[..] else {
        panic!("{naks:?}")
    };
    r.handle_packet(t1 + ms(1), meta(), &ncf(1));
    r.handle_packet(t1 + ms(2), meta(), &rdata(1, b"1"));
    // The source goes silent: #3 is never confirmed.
    let lost_at = t1 + ms(5);
    r.handle_packet(lost_at, meta(), &odata_with(4, 0, false, b"4"));
    let naks = timed_naks(&mut r, lost_at + budget - ms(1));
    assert!(
        naks.len() > 3,
        "retries come faster than NAK_RPT_IVL: {naks:?}"
    );
    let evs = events(&mut r);
    assert!(
        !evs.iter().any(|e| matches!(e, Event::Loss { .. })),
        "no loss before the time budget: {evs:?}"
    );
    timed_naks(&mut r, lost_at + budget * 4);
    let evs = events(&mut r);
    assert!(
        evs.iter()
            .any(|e| matches!(e, Event::Loss { first, count: 1, .. } if *first == Sqn(3))),
        "{evs:?}"
    );
}

/// A session's very first repair lost after its NCF: no repair time is measured yet, so the
/// wait derives from the NAK-to-NCF time just measured, not NAK_RDATA_IVL.
#[test]
fn the_first_lost_repair_is_retried_from_the_ncf_time() {
    let now = t0();
    let ms = Duration::from_millis;
    let mut r = receiver();
    r.handle_packet(now, meta(), &spm(1, 0, u32::MAX, ROUTER));
    r.handle_packet(now, meta(), &odata_with(0, 0, false, b"0"));
    r.handle_packet(now, meta(), &odata_with(2, 0, false, b"2"));
    let naks = timed_naks(&mut r, now + ms(60));
    let &[(t1, 1)] = &naks[..] else {
        panic!("{naks:?}")
    };
    r.handle_packet(t1 + ms(1), meta(), &ncf(1));
    let again = timed_naks(&mut r, t1 + ms(200));
    let &[(t2, 1), ..] = &again[..] else {
        panic!("#1 NAKed again within 200 ms: {again:?}")
    };
    // Twice the floor-bounded NCF wait (2 × 10 ms), then at most NAK_BO_IVL (50 ms).
    assert!(t2 - t1 <= ms(1 + 20 + 50), "{:?}", t2 - t1);
}

/// §9.5.4: "A receiver MAY choose to ignore all redirecting POLRs". Ours does: a DLR's
/// redirecting POLR on the receiver's LAN changes neither where its NAKs go nor anything
/// else; only SPMs set the NAK target.
#[test]
fn redirecting_polrs_are_ignored() {
    const DLR: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 9, 7));
    let now = t0();
    let mut r = receiver();
    r.handle_packet(now, meta(), &spm(1, 0, u32::MAX, ROUTER));
    r.handle_packet(now, meta(), &odata_with(0, 0, false, b"0"));
    let redirect = [PgmOption::from(OptionValue::Redirect(Nla(DLR)))];
    let polr = bytes_with(
        Body::Polr(pgm_core::wire::PolrRepr {
            sqn: Sqn(1),
            round: 0,
        }),
        OptionList::Slice(&redirect),
    );
    r.handle_packet(
        now,
        RecvMeta {
            source: SRC,
            destination: GROUP,
        },
        &polr,
    );
    assert_eq!(r.nak_target(&TSI), Some(ROUTER));
    r.handle_packet(now, meta(), &odata_with(2, 0, false, b"2"));
    let mut buf = Vec::new();
    let mut dests = Vec::new();
    while let Some(t) = r
        .poll_timeout()
        .filter(|t| *t <= now + Duration::from_millis(60))
    {
        r.handle_timeout(t);
        while let Some(tx) = r.poll_transmit(t, &mut buf) {
            dests.push((tx.packet_type, tx.destination));
        }
    }
    //= https://www.rfc-editor.org/rfc/rfc3208#section-9.5.4
    //= type=test
    //# So, receivers MUST ignore a redirecting POLR
    //# from a DLR on the same IP subnet that the receiver resides on, since
    //# this is likely to suffer identical loss to the receiver and so be
    //# useless.
    assert_eq!(
        dests,
        [(PacketType::Nak, Destination::Unicast(ROUTER))],
        "the NAK goes to the SPM's path, not the DLR"
    );
}

// ---- Adversarial packets (issue 11): each of these failed before the receiver's bounds.

const STRANGER: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 66));

fn from(source: IpAddr) -> RecvMeta {
    RecvMeta {
        source,
        destination: GROUP,
    }
}

/// A packet of another TSI (GSI `gsi`, source port 4748 as in the report).
fn foreign(gsi: [u8; 6], body: Body<'_>, options: OptionList<'_>) -> Vec<u8> {
    let repr = Repr {
        sport: 4748,
        dport: 7500,
        gsi: Gsi(gsi),
        parity: false,
        var_pktlen: false,
        body,
        options,
    };
    let mut b = vec![0; repr.buffer_len()];
    repr.emit(&mut b).expect("emit");
    b
}

fn data_at(sqn: u32, trail: u32) -> Body<'static> {
    Body::Odata(DataRepr {
        sqn: Sqn(sqn),
        trail: Sqn(trail),
        payload: b"PRB!PRB!PRB!PRB!",
    })
}

/// Feeds the stream #0..#n of the real session, an SPM first.
fn live_session(r: &mut Receiver, now: Instant, n: u32) {
    r.handle_packet(now, meta(), &spm(1, 0, u32::MAX, ROUTER));
    for s in 0..n {
        r.handle_packet(now, meta(), &odata(s, &s.to_be_bytes()));
    }
}

/// The report's two packets: ODATA of a made-up TSI, the second 2^30 sequence numbers past
/// the first. The receiver used to add a slot and a timer per skipped sequence number (24 GB).
#[test]
fn two_packets_far_apart_allocate_nothing() {
    let now = t0();
    let mut r = receiver();
    let gsi = [0x52, 0xf2, 0x26, 0x65, 0xa6, 0x0c];
    r.handle_packet(
        now,
        from(STRANGER),
        &foreign(gsi, data_at(0x64, 0x64), OptionList::EMPTY),
    );
    r.handle_packet(
        now,
        from(STRANGER),
        &foreign(gsi, data_at(0x4000_0064, 0x64), OptionList::EMPTY),
    );
    assert!(r.window_slots() <= 1, "slots: {}", r.window_slots());
    assert!(r.buffered_bytes() < 4096, "bytes: {}", r.buffered_bytes());
    assert_eq!(r.stats().jumps_held, 1);
    assert_eq!(r.stats().beyond_window, 1);
    // SPM + SPM and SPM + ODATA pairs alike.
    let gsi2 = [9, 9, 9, 9, 9, 9];
    let s = |sqn: u32, lead: u32| {
        Body::Spm(SpmRepr {
            sqn: Sqn(sqn),
            trail: Sqn(0),
            lead: Sqn(lead),
            path: Nla(STRANGER),
        })
    };
    r.handle_packet(
        now,
        from(STRANGER),
        &foreign(gsi2, s(1, 5), OptionList::EMPTY),
    );
    r.handle_packet(
        now,
        from(STRANGER),
        &foreign(gsi2, s(2, 0x4000_0000), OptionList::EMPTY),
    );
    r.handle_packet(
        now,
        from(STRANGER),
        &foreign(gsi2, data_at(0x7000_0000, 0), OptionList::EMPTY),
    );
    assert!(r.window_slots() <= 2, "slots: {}", r.window_slots());
    let out = run_until(&mut r, now + Duration::from_secs(5));
    assert!(naks_in(&out).is_empty());
    assert!(r.timer_entries() < 16, "timers: {}", r.timer_entries());
}

/// Against a live session one packet far ahead (or an RDATA whose sequence number has a
/// flipped byte) used to be enough. Now it is held, the session goes on without loss, and
/// only a second packet of the source agreeing moves the window, as one loss event.
#[test]
fn one_packet_far_ahead_of_a_live_session_changes_nothing() {
    let now = t0();
    let mut r = receiver();
    live_session(&mut r, now, 10);
    let flipped = bytes(Body::Rdata(DataRepr {
        sqn: Sqn(5 | 0x0100_0000),
        trail: Sqn(0),
        payload: b"x",
    }));
    r.handle_packet(now, meta(), &flipped);
    r.handle_packet(now, meta(), &spm(2, 0, 0x2000_0000, ROUTER));
    for s in 10..20 {
        r.handle_packet(now, meta(), &odata(s, &s.to_be_bytes()));
    }
    let ev = events(&mut r);
    assert_eq!(data_of(&ev).len(), 20, "{ev:?}");
    assert!(!ev.iter().any(|e| matches!(e, Event::Loss { .. })));
    assert!(r.window_slots() == 0);
    let out = run_until(&mut r, now + Duration::from_secs(2));
    assert!(naks_in(&out).is_empty(), "{out:?}");
    // The source really jumped (a receiver cut off for a long time): two packets agree.
    let later = now + Duration::from_secs(2);
    r.handle_packet(later, meta(), &odata_with(1_000_000, 990_000, false, b"j"));
    r.handle_packet(later, meta(), &odata_with(1_000_001, 990_000, false, b"k"));
    let ev = events(&mut r);
    assert_eq!(
        ev.iter()
            .filter(|e| matches!(e, Event::Loss { .. }))
            .count(),
        1,
        "{ev:?}"
    );
    assert!(
        r.window_slots() <= ReceiverConfig::new(7500, GROUP).rxw_sqns as usize,
        "{}",
        r.window_slots()
    );
    assert_eq!(r.stats().jumps, 1);
}

/// ODATA, SPMs (with OPT_FIN or OPT_RST) and POLLs of the session from another address
/// are dropped and counted: they cannot end it, redirect its NAKs or feed it data.
#[test]
fn packets_of_a_session_from_another_address_are_dropped() {
    let now = t0();
    let mut r = receiver();
    live_session(&mut r, now, 5);
    let rst = [PgmOption::from(OptionValue::Rst {
        no_naks: false,
        error_code: 0,
    })];
    let fin = [PgmOption::from(OptionValue::Fin)];
    let body = Body::Spm(SpmRepr {
        sqn: Sqn(1000),
        trail: Sqn(0),
        lead: Sqn(4),
        path: Nla(STRANGER),
    });
    r.handle_packet(
        now,
        from(STRANGER),
        &bytes_with(body, OptionList::Slice(&rst)),
    );
    r.handle_packet(
        now,
        from(STRANGER),
        &bytes_with(body, OptionList::Slice(&fin)),
    );
    r.handle_packet(now, from(STRANGER), &odata(5, b"forged"));
    let poll = bytes(Body::Poll(PollRepr {
        sqn: Sqn(7),
        round: 0,
        subtype: PollSubtype::General,
        path: Nla(STRANGER),
        backoff_ivl_us: 1000,
        rand: [0; 4],
        mask: 0,
    }));
    r.handle_packet(now, from(STRANGER), &poll);
    assert_eq!(r.stats().wrong_source, 4);
    assert_eq!(r.nak_target(&TSI), Some(ROUTER));
    r.handle_packet(now, meta(), &odata(5, b"real"));
    let ev = events(&mut r);
    assert!(
        !ev.iter().any(|e| matches!(e, Event::SessionEnd { .. })),
        "{ev:?}"
    );
    assert_eq!(data_of(&ev).last().map(Vec::as_slice), Some(&b"real"[..]));
    let out = run_until(&mut r, now + Duration::from_millis(100));
    assert!(out.iter().all(|(t, _)| t.packet_type != PacketType::Polr));
}

/// A receiver of one session takes the first it hears and counts the others' packets.
#[test]
fn a_one_session_receiver_ignores_other_sessions() {
    let now = t0();
    let mut cfg = ReceiverConfig::new(7500, GROUP);
    cfg.sessions = SessionFilter::One {
        tsi: None,
        source: None,
    };
    let mut r = Receiver::new(cfg);
    live_session(&mut r, now, 3);
    for g in 0..50u8 {
        let fin = [PgmOption::from(OptionValue::Fin)];
        r.handle_packet(
            now,
            from(STRANGER),
            &foreign([g; 6], data_at(0, 0), OptionList::Slice(&fin)),
        );
    }
    let ev = events(&mut r);
    assert_eq!(r.sources(), 1);
    assert_eq!(r.stats().other_sessions, 50);
    assert!(ev.iter().all(|e| match e {
        Event::Data { tsi, .. } | Event::SessionStart { tsi } => *tsi == TSI,
        _ => false,
    }));
    // Named by source: the stranger's session is not it.
    let mut cfg = ReceiverConfig::new(7500, GROUP);
    cfg.sessions = SessionFilter::One {
        tsi: None,
        source: Some(SRC),
    };
    let mut r = Receiver::new(cfg);
    r.handle_packet(
        now,
        from(STRANGER),
        &foreign([1; 6], data_at(0, 0), OptionList::EMPTY),
    );
    live_session(&mut r, now, 3);
    assert_eq!(r.tsis(), [TSI]);
}

/// Sessions made up by the thousand: SPMRs (each session with a gap asks where to NAK)
/// stay within `max_spmr_rate`, and memory within `max_buffer_bytes`.
#[test]
fn made_up_sessions_draw_bounded_spmrs_and_memory() {
    let now = t0();
    let mut cfg = ReceiverConfig::new(7500, GROUP);
    cfg.max_buffer_bytes = 256 << 10;
    let mut r = Receiver::new(cfg);
    for i in 0..2000u32 {
        let g = i.to_be_bytes();
        let gsi = [1, 2, g[0], g[1], g[2], g[3]];
        r.handle_packet(
            now,
            from(STRANGER),
            &foreign(gsi, data_at(0, 0), OptionList::EMPTY),
        );
        r.handle_packet(
            now,
            from(STRANGER),
            &foreign(gsi, data_at(5, 0), OptionList::EMPTY),
        );
    }
    assert!(r.buffered_bytes() <= 256 << 10, "{}", r.buffered_bytes());
    assert!(r.stats().buffer_full > 0);
    let out = run_until(&mut r, now + Duration::from_secs(10));
    let spmrs = out
        .iter()
        .filter(|(t, _)| t.packet_type == PacketType::Spmr)
        .count();
    // Multicast and unicast per attempt, 10 attempts a second, for at most 11 seconds.
    assert!(spmrs <= 2 * 10 * 11, "{spmrs} SPMRs");
    assert!(spmrs > 0);
    assert!(r.stats().spmrs_limited > 0);
}

/// A flood of NCFs for one missing sequence number keeps the timer queue bounded (each NCF
/// restarts the wait and used to leave a stale timer entry behind).
#[test]
fn an_ncf_flood_keeps_the_timers_bounded() {
    let now = t0();
    let mut r = receiver();
    r.handle_packet(now, meta(), &spm(1, 0, u32::MAX, ROUTER));
    r.handle_packet(now, meta(), &odata(0, b"a"));
    r.handle_packet(now, meta(), &odata(2, b"c"));
    for i in 0..100_000u64 {
        r.handle_packet(now + Duration::from_micros(i), from(STRANGER), &ncf(1));
    }
    assert!(r.timer_entries() < 200, "{}", r.timer_entries());
}

/// Forged RDATA from a stranger can only fill what is missing; it cannot add data beyond
/// the window's end, nor replace data held.
#[test]
fn rdata_from_elsewhere_only_fills_missing_slots() {
    let now = t0();
    let mut r = receiver();
    live_session(&mut r, now, 1);
    r.handle_packet(now, meta(), &odata(3, b"d"));
    let forged = |sqn: u32| {
        bytes(Body::Rdata(DataRepr {
            sqn: Sqn(sqn),
            trail: Sqn(0),
            payload: b"forged",
        }))
    };
    r.handle_packet(now, from(STRANGER), &forged(4));
    r.handle_packet(now, from(STRANGER), &forged(3));
    assert_eq!(
        r.window_slots(),
        3,
        "#1, #2 missing, #3 held: nothing added"
    );
    //= https://www.rfc-editor.org/rfc/rfc3208#section-6.1
    //= type=test
    //# A receiver MUST discard any
    //# data packet that duplicates one already received in the transmit
    //# window.
    assert_eq!(r.stats().duplicates, 2);
}

fn fragment(sqn: u32, first: u32, offset: u32, length: u32, rdata: bool, part: &[u8]) -> Vec<u8> {
    let opts = [PgmOption::from(OptionValue::Fragment {
        first_sqn: Sqn(first),
        offset,
        length,
    })];
    let d = DataRepr {
        sqn: Sqn(sqn),
        trail: Sqn(0),
        payload: part,
    };
    bytes_with(
        if rdata {
            Body::Rdata(d)
        } else {
            Body::Odata(d)
        },
        OptionList::Slice(&opts),
    )
}

/// Report item 6: contradictory OPT_FRAGMENT packets of the real TSI (same first sqn, other
/// offsets and lengths) cost the real session 9 unrecoverable losses. From another address
/// they are not taken: ODATA not at all, RDATA only into slots the source's data left missing.
#[test]
fn forged_fragments_from_another_address_cost_the_session_nothing() {
    let now = t0();
    let mut r = receiver();
    live_session(&mut r, now, 10);
    events(&mut r);
    // The next message, #10-#12, 3 fragments of 4 bytes: forged first, as ODATA and RDATA.
    for (sqn, off, len) in [(10, 0, 7), (11, 5, 9), (12, 1, 12), (13, 0, 4)] {
        for rdata in [false, true] {
            r.handle_packet(
                now,
                from(STRANGER),
                &fragment(sqn, 10, off, len, rdata, b"EVIL"),
            );
        }
    }
    // Then the real ones.
    for (i, sqn) in (10..13).enumerate() {
        r.handle_packet(
            now,
            meta(),
            &fragment(sqn, 10, 4 * i as u32, 12, false, &[b'a' + i as u8; 4]),
        );
    }
    r.handle_packet(now, meta(), &odata(13, b"next"));
    let evs = events(&mut r);
    assert!(
        !evs.iter().any(|e| matches!(e, Event::Loss { .. })),
        "{evs:?}"
    );
    assert_eq!(data_of(&evs), [b"aaaabbbbcccc".to_vec(), b"next".to_vec()]);
    assert_eq!(r.stats().bad_fragments, 0);
    assert!(r.stats().wrong_source >= 4, "{:?}", r.stats());
}

/// A made-up session whose SPM names a third party as its NAK target, and whose two data
/// packets leave a gap of 30,000 sequence numbers, used to draw thousands of NAK packets at
/// that party (about 476 per round, each retried). Its NAKs are now paid for by its packets.
#[test]
fn a_made_up_session_cannot_aim_a_nak_flood_at_a_third_party() {
    let now = t0();
    let mut r = receiver();
    let victim = IpAddr::V4(Ipv4Addr::new(10, 0, 7, 7));
    let gsi = [0xBA, 0xD0, 0, 0, 0, 1];
    let spm = foreign(
        gsi,
        Body::Spm(SpmRepr {
            sqn: Sqn(1),
            trail: Sqn(0),
            lead: Sqn(0),
            path: Nla(victim),
        }),
        OptionList::EMPTY,
    );
    r.handle_packet(now, from(STRANGER), &spm);
    for sqn in [1, 30_001] {
        r.handle_packet(
            now,
            from(STRANGER),
            &foreign(gsi, data_at(sqn, 0), OptionList::EMPTY),
        );
    }
    let out = run_until(&mut r, now + Duration::from_secs(120));
    let naks = out
        .iter()
        .filter(|(t, _)| t.packet_type == PacketType::Nak)
        .count();
    // 64 to start with, and about one per packet (the SPM and two ODATA).
    assert!(
        naks <= 64 + 4,
        "{naks} NAK packets for 3 packets of a made-up session"
    );
    assert!(r.stats().naks_limited > 0);
}
