//! PGMCC (draft-ietf-rmt-bb-pgmcc-03) on virtual time: the source's acker election, window
//! arithmetic, rate reduction on loss reports and acker timeout; the receiver's ACKs, loss
//! rate, volunteering and feedback in NAKs.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use pgm_core::proto::pgmcc::PgmccConfig;
use pgm_core::proto::receiver::{Receiver, ReceiverConfig};
use pgm_core::proto::source::{Source, SourceConfig};
use pgm_core::proto::{Destination, RecvMeta, Transmit};
use pgm_core::wire::{
    AckRepr, Body, DataRepr, Gsi, NakRepr, Nla, OptionList, OptionValue, Packet, PacketType,
    PgmOption, Repr, SpmRepr, Sqn,
};

const GROUP: IpAddr = IpAddr::V4(Ipv4Addr::new(239, 192, 0, 1));
const SRC: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
const RCV: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));
const RCV2: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 3));
const NOBODY: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
const GSI: Gsi = Gsi([1, 2, 3, 4, 5, 6]);

fn t0() -> Instant {
    #[expect(clippy::disallowed_methods, reason = "the test's epoch")]
    Instant::now()
}

// ---------------------------------------------------------------------------------------
// Source

fn source(now: Instant, cc: PgmccConfig) -> Source {
    let mut cfg = SourceConfig::new(GSI, 4000, 7500, GROUP, SRC);
    cfg.initial_spms = 1;
    cfg.pgmcc = cc;
    Source::new(cfg, now)
}

fn drain(src: &mut Source, now: Instant) -> Vec<(Transmit, Vec<u8>)> {
    let mut out = Vec::new();
    let mut buf = Vec::new();
    while let Some(t) = src.poll_transmit(now, &mut buf) {
        out.push((t, buf[..t.len].to_vec()));
    }
    out
}

/// The ODATA among `out`: (sqn, the acker named, the timestamp).
fn odata(out: &[(Transmit, Vec<u8>)]) -> Vec<(u32, IpAddr, u32)> {
    out.iter()
        .filter(|(t, _)| t.packet_type == PacketType::Odata)
        .map(|(_, b)| {
            let p = Packet::new_checked(&b[..]).expect("packet");
            let (tstamp, acker) = p
                .options()
                .iter()
                .find_map(|o| match o.value {
                    OptionValue::PgmccData { tstamp, acker } => Some((tstamp, acker.0)),
                    _ => None,
                })
                .expect("OPT_PGMCC_DATA on ODATA");
            let sqn = u32::from_be_bytes([b[16], b[17], b[18], b[19]]);
            (sqn, acker, tstamp)
        })
        .collect()
}

fn feedback(tstamp: u32, loss: u16, from: IpAddr) -> [PgmOption<'static>; 1] {
    [OptionValue::PgmccFeedback {
        tstamp,
        loss_rate: loss,
        receiver: Nla(from),
    }
    .into()]
}

/// A packet of the session (TSI port 4000, data-destination port 7500), its ports the right
/// way round for its direction (§8.3).
fn packet(body: Body<'_>, options: &[PgmOption<'_>]) -> Vec<u8> {
    let (sport, dport) = if body.packet_type().is_upstream() {
        (7500, 4000)
    } else {
        (4000, 7500)
    };
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
    let mut buf = vec![0; repr.buffer_len()];
    repr.emit(&mut buf).expect("emit");
    buf
}

fn ack(rx_max: u32, bitmap: u32, tstamp: u32, loss: u16, from: IpAddr) -> Vec<u8> {
    packet(
        Body::Ack(AckRepr {
            rx_max: Sqn(rx_max),
            bitmap,
        }),
        &feedback(tstamp, loss, from),
    )
}

fn nak(sqn: u32, fb: Option<(u32, u16, IpAddr)>) -> Vec<u8> {
    let opts = fb.map(|(t, l, a)| feedback(t, l, a));
    packet(
        Body::Nak(NakRepr {
            sqn: Sqn(sqn),
            source: Nla(SRC),
            group: Nla(GROUP),
        }),
        opts.as_ref().map_or(&[][..], |o| &o[..]),
    )
}

fn from(addr: IpAddr) -> RecvMeta {
    RecvMeta {
        source: addr,
        destination: SRC,
    }
}

fn send_n(s: &mut Source, n: usize) {
    for i in 0..n {
        s.send(&[i as u8; 100]).expect("send");
    }
}

/// A source with RCV elected by an ACK of sequence number 0 (one ODATA sent before).
fn elected(now: Instant, cc: PgmccConfig) -> Source {
    let mut s = source(now, cc);
    send_n(&mut s, 1);
    let first = odata(&drain(&mut s, now));
    assert_eq!(first.len(), 1);
    s.handle_packet(now, from(RCV), &ack(0, 1, first[0].2, 0, RCV));
    s
}

#[test]
fn without_an_acker_the_initial_window_goes_then_the_election_wait_then_open_loop() {
    let now = t0();
    let mut s = source(now, PgmccConfig::new());
    send_n(&mut s, 50);
    let out = odata(&drain(&mut s, now));
    assert_eq!(out.len(), 10, "the initial window");
    assert!(out.iter().all(|(_, acker, _)| *acker == NOBODY));
    // Nothing more while receivers may still volunteer (250 ms) ...
    let wait = now + Duration::from_millis(250);
    assert!(s.poll_timeout().expect("a deadline") <= wait);
    let before = now + Duration::from_millis(249);
    s.handle_timeout(before);
    assert!(odata(&drain(&mut s, before)).is_empty());
    // ... then, no feedback: the rate limit alone (receivers without PGMCC).
    s.handle_timeout(wait);
    assert_eq!(odata(&drain(&mut s, wait)).len(), 40);
    assert_eq!(s.pgmcc_state().expect("pgmcc on").acker, None);
    // A volunteer's ACK during the initial window elects it at once.
    let mut s = source(now, PgmccConfig::new());
    send_n(&mut s, 50);
    let out = odata(&drain(&mut s, now));
    let t1 = now + Duration::from_millis(20);
    s.handle_packet(t1, from(RCV), &ack(out[3].0, 0b1111, out[3].2, 0, RCV));
    assert_eq!(s.pgmcc_state().expect("state").acker, Some(RCV));
    assert_eq!(odata(&drain(&mut s, t1)).len(), 1, "then W = 1");
}

#[test]
fn repairs_neither_wait_for_nor_spend_tokens() {
    let now = t0();
    let mut s = elected(now, PgmccConfig::new());
    send_n(&mut s, 10);
    let out = odata(&drain(&mut s, now));
    assert_eq!(out.len(), 1);
    assert_eq!(s.pgmcc_state().expect("state").tokens, 0.0);
    // A NAK for the packet: NCF and RDATA at once, without a token, and none spent.
    s.handle_packet(now, from(RCV), &nak(out[0].0, None));
    let types: Vec<PacketType> = drain(&mut s, now)
        .iter()
        .map(|(t, _)| t.packet_type)
        .collect();
    assert_eq!(types, vec![PacketType::Ncf, PacketType::Rdata]);
    assert_eq!(s.pgmcc_state().expect("state").tokens, 0.0);
}

#[test]
fn the_first_report_elects_its_sender_and_its_acks_then_clock_the_data() {
    let now = t0();
    let mut s = elected(now, PgmccConfig::new());
    let st = s.pgmcc_state().expect("state");
    assert_eq!(st.acker, Some(RCV));
    assert_eq!(s.stats().pgmcc.elections, 1);
    // Elected with W = T = 1 (§3). Its ACK was for a packet sent before the election, in
    // open loop: that opens nothing.
    assert_eq!((st.window, st.tokens), (1.0, 1.0));
    send_n(&mut s, 20);
    let out = odata(&drain(&mut s, now));
    assert_eq!(out.len(), 1, "one token, one ODATA");
    assert!(out.iter().all(|(_, acker, _)| *acker == RCV));
    assert_eq!(out[0].0, 1);
    // Nothing more until an ACK.
    assert!(odata(&drain(&mut s, now)).is_empty());
    assert_eq!(s.pgmcc_state().expect("state").tokens, 0.0);
}

#[test]
fn window_opens_exponentially_to_ssthresh_then_by_one_packet_per_window() {
    let now = t0();
    let mut s = elected(now, PgmccConfig::new());
    send_n(&mut s, 200);
    let mut acked = 0u32;
    let mut windows = Vec::new();
    // Each round: send what the tokens allow, then ACK those packets one by one.
    for _ in 0..8 {
        let out = odata(&drain(&mut s, now));
        for (sqn, _, ts) in out {
            assert_eq!(sqn, acked + 1, "ODATA in sequence");
            acked = sqn;
            s.handle_packet(now, from(RCV), &ack(sqn, u32::MAX, ts, 0, RCV));
            windows.push(s.pgmcc_state().expect("state").window);
        }
    }
    // Slow start: 1 → 2 → 3 → 4 (SSTHRESH), then W += 1/W per packet acknowledged.
    assert_eq!(&windows[..3], &[2.0, 3.0, 4.0]);
    let mut w: f64 = 4.0;
    for got in &windows[3..] {
        w += 1.0 / w;
        assert!((got - w).abs() < 1e-9, "W {got} vs {w}");
    }
    let st = s.pgmcc_state().expect("state");
    assert!(st.tokens <= st.window);
    assert_eq!(s.stats().pgmcc.halvings, 0);
}

#[test]
fn a_hole_behind_three_acknowledged_packets_halves_the_window_once_per_round_trip() {
    let now = t0();
    let mut s = elected(now, PgmccConfig::new());
    send_n(&mut s, 400);
    // Grow the window to 8 or so with clean ACKs.
    let mut last = 0;
    let mut ts = 0;
    while s.pgmcc_state().expect("state").window < 8.0 {
        for (sqn, _, t) in odata(&drain(&mut s, now)) {
            s.handle_packet(now, from(RCV), &ack(sqn, u32::MAX, t, 0, RCV));
            (last, ts) = (sqn, t);
        }
    }
    let out = odata(&drain(&mut s, now));
    assert!(out.len() >= 4, "a window's worth in flight: {}", out.len());
    let w_before = s.pgmcc_state().expect("state").window;
    let t_before = s.pgmcc_state().expect("state").tokens;
    // The first of them is lost: ACKs for the next two report the hole but judge nothing.
    let hole = last + 1;
    s.handle_packet(
        now,
        from(RCV),
        &ack(hole + 1, u32::MAX << 2 | 1, ts, 500, RCV),
    );
    s.handle_packet(
        now,
        from(RCV),
        &ack(hole + 2, u32::MAX << 3 | 0b11, ts, 500, RCV),
    );
    assert_eq!(
        s.stats().pgmcc.halvings,
        0,
        "two acknowledged after the hole: not yet"
    );
    // The third acknowledged packet after it: a loss. W/2, and T − W/2 (+ what was acked).
    s.handle_packet(
        now,
        from(RCV),
        &ack(hole + 3, u32::MAX << 4 | 0b111, ts, 500, RCV),
    );
    let st = s.pgmcc_state().expect("state");
    assert_eq!(s.stats().pgmcc.halvings, 1);
    assert_eq!(st.window, w_before / 2.0);
    assert!(st.suspended);
    assert!(
        (st.tokens - (t_before + 2.0 - w_before / 2.0 + 1.0).min(st.window)).abs() < 1e-9,
        "tokens {} (before {t_before}, W {w_before})",
        st.tokens
    );
    // Another hole within the suspension: no second halving.
    let hole2 = hole + 4;
    s.handle_packet(
        now,
        from(RCV),
        &ack(hole2 + 3, (u32::MAX << 5) | 0b111, ts, 900, RCV),
    );
    assert_eq!(s.stats().pgmcc.halvings, 1);
    assert_eq!(s.pgmcc_state().expect("state").window, w_before / 2.0);
}

#[test]
fn tokens_below_zero_send_nothing_until_acks_bring_them_back() {
    let now = t0();
    let mut s = elected(now, PgmccConfig::new());
    send_n(&mut s, 400);
    // Grow W to 8 or more with clean ACKs; then a window's worth goes out.
    while s.pgmcc_state().expect("state").window < 8.0 {
        for (sqn, _, t) in odata(&drain(&mut s, now)) {
            s.handle_packet(now, from(RCV), &ack(sqn, u32::MAX, t, 0, RCV));
        }
    }
    let flight = odata(&drain(&mut s, now));
    assert!(flight.len() >= 8);
    assert!(s.pgmcc_state().expect("state").tokens < 1.0);
    // An ACK for data never sent is not taken.
    let beyond = flight.last().expect("flight").0 + 5;
    s.handle_packet(now, from(RCV), &ack(beyond, u32::MAX, 0, 0, RCV));
    assert_eq!(s.stats().pgmcc.acks_invalid, 1);
    // The first in flight lost, the next three acknowledged: T − W/2 + 3 < 0.
    let hole = flight[0].0;
    let ts = flight[0].2;
    s.handle_packet(
        now,
        from(RCV),
        &ack(hole + 3, (u32::MAX << 4) | 0b111, ts, 0, RCV),
    );
    let st = s.pgmcc_state().expect("state");
    assert_eq!(s.stats().pgmcc.halvings, 1);
    assert!(st.tokens < 0.0, "T = {}", st.tokens);
    assert!(odata(&drain(&mut s, now)).is_empty(), "T < 1: no ODATA");
    // Each further acknowledged packet returns one token (W is frozen meanwhile): ODATA
    // resumes with the ACK that brings T to 1.
    let need = (1.0 - st.tokens).ceil() as u32;
    for k in 1..=need {
        let sqn = hole + 3 + k;
        s.handle_packet(
            now,
            from(RCV),
            &ack(sqn, u32::MAX << (4 + k) | ((1 << (3 + k)) - 1), ts, 0, RCV),
        );
        let sent = odata(&drain(&mut s, now)).len();
        assert_eq!(sent > 0, k == need, "ACK {k} of {need}: {sent} sent");
    }
    assert_eq!(s.pgmcc_state().expect("state").window, st.window);
}

/// M² of the draft's §2.4, computed here independently.
fn m2(rtt_ms: f64, loss: u16) -> f64 {
    let p = f64::from(loss) / 65535.0;
    let m = rtt_ms * p.sqrt() * (1.0 + 9.0 * p * (1.0 + 32.0 * p * p));
    m * m
}

#[test]
fn a_receiver_replaces_the_acker_only_when_its_throughput_is_below_c_times_the_ackers() {
    let now = t0();
    let acker_loss = 2000u16;
    // Candidates around the boundary M_i² C² = M_acker², at the same round trip.
    let boundary = (0..=u16::MAX)
        .find(|&l| m2(1.0, l) * 0.75 * 0.75 > m2(1.0, acker_loss))
        .expect("a boundary");
    for (loss, switch) in [
        (0, false),
        (acker_loss, false),
        // (At the boundary itself, floating-point rounding decides.)
        (boundary - 1, false),
        (boundary + 1, true),
        (boundary + 200, true),
        (u16::MAX, true),
    ] {
        let mut s = elected(now, PgmccConfig::new());
        let ts = odata(&drain(&mut s, now)).first().map_or(0, |o| o.2);
        // The acker reports its loss rate in a NAK, then a candidate in an ACK.
        s.handle_packet(now, from(RCV), &nak(1, Some((ts, acker_loss, RCV))));
        s.handle_packet(now, from(RCV2), &ack(0, u32::MAX, ts, loss, RCV2));
        let want = if switch { RCV2 } else { RCV };
        assert_eq!(
            s.pgmcc_state().expect("state").acker,
            Some(want),
            "candidate loss {loss} (boundary {boundary})"
        );
        // Feedback in a NAK counts the same as in an ACK.
        let mut s = elected(now, PgmccConfig::new());
        s.handle_packet(now, from(RCV), &nak(1, Some((ts, acker_loss, RCV))));
        s.handle_packet(now, from(RCV2), &nak(1, Some((ts, loss, RCV2))));
        assert_eq!(s.pgmcc_state().expect("state").acker, Some(want));
    }
}

#[test]
fn acks_from_a_receiver_that_is_not_the_acker_never_move_the_window() {
    let now = t0();
    let mut s = elected(now, PgmccConfig::new());
    let before = s.pgmcc_state().expect("state");
    for _ in 0..10 {
        s.handle_packet(now, from(RCV2), &ack(0, u32::MAX, 0, 0, RCV2));
    }
    assert_eq!(s.pgmcc_state().expect("state"), before);
    assert_eq!(s.stats().pgmcc.acks_other, 10);
}

#[test]
fn an_ack_whose_feedback_names_another_host_is_dropped() {
    let now = t0();
    let mut s = elected(now, PgmccConfig::new());
    let before = s.pgmcc_state().expect("state");
    // Sent by RCV2, claiming to be RCV (the acker).
    s.handle_packet(now, from(RCV2), &ack(0, u32::MAX, 0, 0, RCV));
    assert_eq!(s.pgmcc_state().expect("state"), before);
    assert_eq!(s.stats().pgmcc.acks_invalid, 1);
}

/// Runs the source's timers (heartbeat SPMs among them) until PGMCC's timeout count grows;
/// returns when, and the ODATA sent then.
fn until_timeout(s: &mut Source, mut now: Instant) -> (Instant, Vec<(u32, IpAddr, u32)>) {
    let before = s.stats().pgmcc.timeouts;
    for _ in 0..100 {
        now = s.poll_timeout().expect("a deadline").max(now);
        let probes = s.stats().pgmcc.probes;
        s.handle_timeout(now);
        let out = odata(&drain(s, now));
        if s.stats().pgmcc.timeouts > before {
            return (now, out);
        }
        let probed = s.stats().pgmcc.probes - probes;
        assert_eq!(
            out.len() as u64,
            probed,
            "ODATA without tokens (probes {probed})"
        );
    }
    panic!("no PGMCC timeout");
}

#[test]
fn silence_of_the_acker_times_out_to_one_packet_and_after_retry_max_drops_it() {
    let t = t0();
    let mut s = elected(t, PgmccConfig::new());
    send_n(&mut s, 100);
    assert_eq!(odata(&drain(&mut s, t)).len(), 1);
    let mut now = t;
    for round in 1..=2u64 {
        let (at, out) = until_timeout(&mut s, now);
        if round == 1 {
            // RTO: the first sample (µs on virtual time) is below the floor: 200 ms.
            assert_eq!(at, t + Duration::from_millis(200));
        }
        let st = s.pgmcc_state().expect("state");
        assert_eq!(
            (st.window, st.tokens),
            (1.0, 0.0),
            "timeout {round}: W = T = 1, one sent"
        );
        assert_eq!(st.acker, Some(RCV));
        assert_eq!(out.len(), 1, "one packet after a timeout");
        assert_eq!(s.stats().pgmcc.timeouts, round);
        now = at;
    }
    // The third successive timeout (RETRY_MAX = 2): the acker is dropped (§2.7 MUST).
    let (now, out) = until_timeout(&mut s, now);
    assert_eq!(s.stats().pgmcc.ackers_dropped, 1);
    assert_eq!(out.len(), 10, "no acker: the initial window again");
    assert!(out.iter().all(|(_, a, _)| *a == NOBODY));
    // The silent acker is not elected again for `silent_hold` (30 s) by a NAK's report...
    s.handle_packet(
        now,
        from(RCV),
        &nak(1_000_000, Some((out[0].2, 60_000, RCV))),
    );
    assert_eq!(s.pgmcc_state().expect("state").acker, None);
    assert_eq!(s.stats().pgmcc.reports_held, 1);
    // ... nor while another acker is elected, even by an ACK.
    s.handle_packet(now, from(RCV2), &ack(out[0].0, 1, out[0].2, 0, RCV2));
    assert_eq!(s.pgmcc_state().expect("state").acker, Some(RCV2));
    s.handle_packet(now, from(RCV), &ack(out[1].0, 1, out[1].2, 60_000, RCV));
    assert_eq!(s.pgmcc_state().expect("state").acker, Some(RCV2));
    assert_eq!(s.stats().pgmcc.reports_held, 2);
    // After the hold, the first receiver competes again.
    let later = now + Duration::from_secs(31);
    s.handle_packet(
        later,
        from(RCV),
        &nak(out[0].0, Some((out[0].2, 60_000, RCV))),
    );
    assert_eq!(s.pgmcc_state().expect("state").acker, Some(RCV));
}

#[test]
fn any_feedback_resets_the_retry_count() {
    let t = t0();
    let mut s = elected(t, PgmccConfig::new());
    send_n(&mut s, 100);
    let mut now = t;
    drain(&mut s, now);
    for _ in 0..5 {
        let (at, out) = until_timeout(&mut s, now);
        now = at;
        // A NAK with feedback from the acker between timeouts (for data outside the
        // window: no repair takes the next token).
        s.handle_packet(now, from(RCV), &nak(1_000_000, Some((out[0].2, 10, RCV))));
    }
    assert_eq!(s.stats().pgmcc.ackers_dropped, 0);
    assert_eq!(s.pgmcc_state().expect("state").acker, Some(RCV));
}

#[test]
fn a_preferred_acker_is_named_from_the_first_packet_and_kept() {
    let now = t0();
    let mut cc = PgmccConfig::new();
    cc.acker = Some(RCV2);
    let mut s = source(now, cc);
    send_n(&mut s, 5);
    // Named before it said anything (OpenPGM's receivers never volunteer); one token.
    let out = odata(&drain(&mut s, now));
    assert_eq!(out.iter().map(|o| o.1).collect::<Vec<_>>(), vec![RCV2]);
    // Another receiver's ACK does not displace it.
    s.handle_packet(now, from(RCV), &ack(out[0].0, 1, out[0].2, 0, RCV));
    assert_eq!(s.pgmcc_state().expect("state").acker, Some(RCV2));
    s.handle_packet(now, from(RCV2), &ack(out[0].0, 1, 0, 0, RCV2));
    assert_eq!(s.pgmcc_state().expect("state").acker, Some(RCV2));
    // A much worse receiver does not displace it.
    s.handle_packet(now, from(RCV), &nak(0, Some((0, u16::MAX, RCV))));
    assert_eq!(s.pgmcc_state().expect("state").acker, Some(RCV2));
}

#[test]
fn a_nak_without_feedback_elects_nobody_and_pgmcc_off_sends_no_option() {
    let now = t0();
    let mut s = source(now, PgmccConfig::new());
    send_n(&mut s, 3);
    drain(&mut s, now);
    s.handle_packet(now, from(RCV), &nak(1, None));
    assert_eq!(s.pgmcc_state().expect("state").acker, None);

    let mut s = source(now, PgmccConfig::disabled());
    send_n(&mut s, 3);
    let out = drain(&mut s, now);
    for (t, b) in &out {
        let p = Packet::new_checked(&b[..]).expect("packet");
        assert!(
            p.options()
                .iter()
                .all(|o| !matches!(o.value, OptionValue::PgmccData { .. })),
            "{:?}",
            t.packet_type
        );
    }
    s.handle_packet(now, from(RCV), &ack(1, 1, 0, 0, RCV));
    assert!(s.pgmcc_state().is_none());
    assert_eq!(s.stats().ignored, 1);
}

#[test]
fn round_trip_timestamps_survive_the_millisecond_clock_wrapping() {
    // The acker reports a loss with a timestamp just before the source's clock wrapped:
    // the round trip is still small and positive, so a candidate with the same loss and a
    // round trip of 4 s is worse.
    let now = t0();
    let mut s = elected(now, PgmccConfig::new());
    let later = now + Duration::from_secs(5);
    let ts_now = odata(&drain(&mut s, later)).first().map_or(5000, |o| o.2);
    s.handle_packet(
        later,
        from(RCV),
        &nak(1, Some((ts_now.wrapping_sub(1), 3000, RCV))),
    );
    s.handle_packet(
        later,
        from(RCV2),
        &nak(1, Some((ts_now.wrapping_sub(4000), 3000, RCV2))),
    );
    assert_eq!(s.pgmcc_state().expect("state").acker, Some(RCV2));
}

// ---------------------------------------------------------------------------------------
// Receiver

fn receiver() -> Receiver {
    let mut cfg = ReceiverConfig::new(7500, GROUP);
    cfg.local_addr = Some(RCV);
    cfg.join_hold = Duration::ZERO;
    Receiver::new(cfg)
}

fn data(sqn: u32, tstamp: u32, acker: IpAddr) -> Vec<u8> {
    packet(
        Body::Odata(DataRepr {
            sqn: Sqn(sqn),
            trail: Sqn(0),
            payload: b"x",
        }),
        &[OptionValue::PgmccData {
            tstamp,
            acker: Nla(acker),
        }
        .into()],
    )
}

fn spm() -> Vec<u8> {
    packet(
        Body::Spm(SpmRepr {
            sqn: Sqn(0),
            trail: Sqn(0),
            lead: Sqn(0),
            path: Nla(SRC),
        }),
        &[],
    )
}

fn down() -> RecvMeta {
    RecvMeta {
        source: SRC,
        destination: GROUP,
    }
}

fn transmits(r: &mut Receiver, now: Instant) -> Vec<(Transmit, Vec<u8>)> {
    let mut out = Vec::new();
    let mut buf = Vec::new();
    while let Some(t) = r.poll_transmit(now, &mut buf) {
        out.push((t, buf[..t.len].to_vec()));
    }
    out
}

/// The ACKs among `out`: (destination, RX_MAX, bitmap, echoed timestamp, loss, receiver).
fn acks(out: &[(Transmit, Vec<u8>)]) -> Vec<(Destination, u32, u32, u32, u16, IpAddr)> {
    out.iter()
        .filter(|(t, _)| t.packet_type == PacketType::Ack)
        .map(|(t, b)| {
            let repr = Repr::parse_bytes(b).expect("ack parses");
            let Body::Ack(a) = repr.body else {
                panic!("not an ACK body")
            };
            let (ts, loss, who) = fb_of(&repr.options).expect("feedback in ACK");
            (t.destination, a.rx_max.0, a.bitmap, ts, loss, who)
        })
        .collect()
}

fn fb_of(opts: &OptionList<'_>) -> Option<(u32, u16, IpAddr)> {
    opts.iter().find_map(|o| match o.value {
        OptionValue::PgmccFeedback {
            tstamp,
            loss_rate,
            receiver,
        } => Some((tstamp, loss_rate, receiver.0)),
        _ => None,
    })
}

#[test]
fn data_naming_this_receiver_draws_an_ack_to_the_source() {
    let now = t0();
    let mut r = receiver();
    r.handle_packet(now, down(), &data(10, 777, RCV));
    let out = acks(&transmits(&mut r, now));
    // Bits before the first packet count as received; echoed timestamp; no loss yet.
    assert_eq!(
        out,
        vec![(Destination::Unicast(SRC), 10, u32::MAX, 777, 0, RCV)]
    );
    assert_eq!(r.stats().acks_sent, 1);
    // Data naming another receiver: no ACK.
    r.handle_packet(now, down(), &data(11, 778, RCV2));
    assert!(acks(&transmits(&mut r, now)).is_empty());
}

#[test]
fn acks_coalesce_what_arrived_between_two_transmit_polls_and_show_holes() {
    let now = t0();
    let mut r = receiver();
    for sqn in [0, 1, 2, 4, 5] {
        r.handle_packet(now, down(), &data(sqn, 100 + sqn, RCV));
    }
    let out = acks(&transmits(&mut r, now));
    assert_eq!(out.len(), 1, "one ACK for the batch");
    let (_, rx_max, bitmap, ts, loss, _) = out[0];
    assert_eq!(rx_max, 5);
    // 5 and 4 received, 3 missing, 2, 1, 0 and everything before received.
    assert_eq!(bitmap & 0b111111, 0b111011);
    assert_eq!(bitmap >> 6, u32::MAX >> 6);
    assert_eq!(ts, 105);
    // The loss rate after 1 received, then 1 lost and 1 received ×… : p ← p + c(x − p),
    // computed here step by step in 16.16 with c = 500/65536.
    let c = 500.0 / 65536.0;
    let mut p = 0.0f64;
    for x in [0.0, 0.0, 0.0, 1.0, 0.0, 0.0] {
        p += c * (x * 65536.0 - p);
    }
    assert!(
        (f64::from(loss) - p).abs() <= 1.0,
        "loss {loss}, reference {p}"
    );
}

#[test]
fn the_bitmap_and_rx_max_follow_the_sequence_wrap() {
    let now = t0();
    let mut r = receiver();
    for sqn in [u32::MAX - 1, u32::MAX, 1] {
        r.handle_packet(now, down(), &data(sqn, 1, RCV));
    }
    let out = acks(&transmits(&mut r, now));
    assert_eq!(out[0].1, 1);
    assert_eq!(
        out[0].2 & 0b1111,
        0b1101,
        "0 missing, 2^32−1 and 2^32−2 received"
    );
}

#[test]
fn data_naming_no_acker_draws_a_volunteer_ack_after_a_back_off_unless_one_is_named() {
    let now = t0();
    let mut r = receiver();
    r.handle_packet(now, down(), &data(0, 5, NOBODY));
    assert!(acks(&transmits(&mut r, now)).is_empty(), "not at once");
    let at = r.poll_timeout().expect("volunteer deadline");
    assert!(at < now + Duration::from_millis(50));
    r.handle_timeout(at);
    let out = acks(&transmits(&mut r, at));
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].1, 0);

    // Cancelled when the source names somebody first.
    let mut r = receiver();
    r.handle_packet(now, down(), &data(0, 5, NOBODY));
    r.handle_packet(now, down(), &data(1, 6, RCV2));
    r.handle_timeout(now + Duration::from_millis(60));
    assert!(acks(&transmits(&mut r, now + Duration::from_millis(60))).is_empty());
}

#[test]
fn naks_carry_feedback_with_the_hold_time_added_to_the_echoed_timestamp() {
    let now = t0();
    let mut r = receiver();
    r.handle_packet(now, down(), &spm());
    r.handle_packet(now, down(), &data(0, 1000, RCV2));
    r.handle_packet(now, down(), &data(2, 1002, RCV2));
    // Run the NAK back-off out.
    let mut at = now;
    let mut naks = Vec::new();
    for _ in 0..100 {
        let Some(t) = r.poll_timeout() else { break };
        at = t;
        r.handle_timeout(at);
        naks.extend(
            transmits(&mut r, at)
                .into_iter()
                .filter(|(t, _)| t.packet_type == PacketType::Nak),
        );
        if !naks.is_empty() {
            break;
        }
    }
    let (_, b) = naks.first().expect("a NAK for 1");
    let repr = Repr::parse_bytes(b).expect("nak");
    let (ts, loss, who) = fb_of(&repr.options).expect("feedback in the NAK");
    let held = at.duration_since(now).as_millis() as u32;
    assert_eq!(ts, 1002 + held);
    assert!(loss > 0);
    assert_eq!(who, RCV);
}

#[test]
fn a_receiver_without_its_address_or_with_pgmcc_off_sends_no_ack() {
    let now = t0();
    let mut cfg = ReceiverConfig::new(7500, GROUP);
    cfg.local_addr = None;
    let mut r = Receiver::new(cfg);
    r.handle_packet(now, down(), &data(0, 1, RCV));
    assert!(acks(&transmits(&mut r, now)).is_empty());
    let mut cfg = ReceiverConfig::new(7500, GROUP);
    cfg.local_addr = Some(RCV);
    cfg.pgmcc = false;
    let mut r = Receiver::new(cfg);
    r.handle_packet(now, down(), &data(0, 1, RCV));
    assert!(acks(&transmits(&mut r, now)).is_empty());
}

#[test]
fn data_from_another_address_naming_this_receiver_draws_no_ack() {
    let now = t0();
    let mut r = receiver();
    r.handle_packet(now, down(), &data(0, 1, RCV2));
    transmits(&mut r, now);
    // A forgery from elsewhere, naming us: no ACK (no reflection).
    let forged = RecvMeta {
        source: IpAddr::V4(Ipv4Addr::new(10, 9, 9, 9)),
        destination: GROUP,
    };
    r.handle_packet(now, forged, &data(1, 1, RCV));
    assert!(acks(&transmits(&mut r, now)).is_empty());
}

#[test]
fn a_repair_naming_this_receiver_is_acknowledged_as_received() {
    // The last packet sent was lost: its repair, not a timeout, lets the source see that
    // nothing is in flight.
    let now = t0();
    let mut r = receiver();
    for sqn in 0..4 {
        r.handle_packet(now, down(), &data(sqn, 1, RCV));
    }
    transmits(&mut r, now);
    let repair = packet(
        Body::Rdata(DataRepr {
            sqn: Sqn(4),
            trail: Sqn(0),
            payload: b"x",
        }),
        &[OptionValue::PgmccData {
            tstamp: 2,
            acker: Nla(RCV),
        }
        .into()],
    );
    r.handle_packet(now, down(), &repair);
    let out = acks(&transmits(&mut r, now));
    assert_eq!(out.len(), 1);
    assert_eq!((out[0].1, out[0].2 & 0b11111), (4, 0b11111));
    assert!(out[0].4 > 0, "its ODATA counted as lost");
}

#[test]
fn a_silent_flight_without_tokens_draws_one_probe_before_the_timeout() {
    let t = t0();
    let mut s = elected(t, PgmccConfig::new());
    send_n(&mut s, 100);
    // Round trips of 0 (the election) and 40 ms: SRTT = 40/8 = 5 ms.
    let first = odata(&drain(&mut s, t));
    let t1 = t + Duration::from_millis(40);
    s.handle_packet(
        t1,
        from(RCV),
        &ack(first[0].0, u32::MAX, first[0].2, 0, RCV),
    );
    // Two tokens (slow start), two packets; both lost: nothing comes back.
    let lost = odata(&drain(&mut s, t1));
    assert_eq!(lost.len(), 2);
    assert!(odata(&drain(&mut s, t1)).is_empty());
    // The probe: twice SRTT later, one packet.
    let mut sent = Vec::new();
    while s.stats().pgmcc.probes == 0 {
        let now = s.poll_timeout().expect("deadline");
        s.handle_timeout(now);
        sent.extend(
            odata(&drain(&mut s, now))
                .into_iter()
                .map(|o| (now - t1, o.0)),
        );
    }
    assert_eq!(sent, vec![(Duration::from_millis(10), lost[1].0 + 1)]);
    // No second probe: nothing more for the next 150 ms (the timeout is 200 ms away).
    for ms in (20..160).step_by(10) {
        let at = t1 + Duration::from_millis(ms);
        s.handle_timeout(at);
        assert!(odata(&drain(&mut s, at)).is_empty(), "at {ms} ms");
    }
    assert_eq!((s.stats().pgmcc.probes, s.stats().pgmcc.timeouts), (1, 0));
    // The probe's ACK: the flight is empty, so the clock runs again with one token.
    let at = t1 + Duration::from_millis(160);
    s.handle_packet(at, from(RCV), &ack(sent[0].1, 0b1, first[0].2, 0, RCV));
    assert_eq!(s.pgmcc_state().expect("state").tokens, 1.0);
    assert_eq!(odata(&drain(&mut s, at)).len(), 1);
}

#[test]
fn the_window_does_not_grow_while_the_application_sends_below_it() {
    // One message at a time, each acknowledged before the next: the window is never what
    // limits the source, so W stays where it is and only the tokens come back.
    let now = t0();
    let mut s = elected(now, PgmccConfig::new());
    let before = s.pgmcc_state().expect("state").window;
    for _ in 0..200 {
        send_n(&mut s, 1);
        let out = odata(&drain(&mut s, now));
        assert_eq!(out.len(), 1);
        s.handle_packet(now, from(RCV), &ack(out[0].0, u32::MAX, out[0].2, 0, RCV));
    }
    let st = s.pgmcc_state().expect("state");
    assert_eq!(st.window, before, "W grew on a rate never tried");
    assert_eq!(st.tokens, st.window);
    // With a backlog, the same ACKs open it.
    send_n(&mut s, 50);
    for (sqn, _, ts) in odata(&drain(&mut s, now)) {
        s.handle_packet(now, from(RCV), &ack(sqn, u32::MAX, ts, 0, RCV));
    }
    assert!(s.pgmcc_state().expect("state").window > before);
}
