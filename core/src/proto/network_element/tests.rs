//! Unit tests of the engine's internals: timer and queue behaviour that the scripted
//! exchanges of `core/tests/ne_engine.rs` cannot see.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use super::*;
use crate::wire::{
    Body, Gsi, NakPacket, NakRepr, Nla, OptionList, OptionValue, PacketType, PgmOption, Repr, Sqn,
    SqnList, Tsi,
};

const SRC: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 1, 1, 2));
const GROUP: IpAddr = IpAddr::V4(Ipv4Addr::new(239, 192, 0, 1));
const UPSTREAM: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 1, 2, 1));
const IF_UP: IfIndex = IfIndex(1);
const IF_A: IfIndex = IfIndex(2);
const RCV_A: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 1, 3, 11));

fn t0() -> Instant {
    #[expect(clippy::disallowed_methods, reason = "the test's epoch")]
    Instant::now()
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn emit(gsi: u8, sport: u16, dport: u16, body: Body<'_>, options: &[PgmOption<'_>]) -> Vec<u8> {
    let repr = Repr {
        sport,
        dport,
        gsi: Gsi([1, 2, 3, 4, 5, gsi]),
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

fn spm(gsi: u8) -> Vec<u8> {
    let body = Body::Spm(crate::wire::SpmRepr {
        sqn: Sqn(1),
        trail: Sqn(0),
        lead: Sqn(100),
        path: Nla(UPSTREAM),
    });
    emit(gsi, 4000, 7500, body, &[])
}

fn nak(gsi: u8, sqns: &[u32]) -> Vec<u8> {
    let rest: Vec<Sqn> = sqns[1..].iter().map(|&s| Sqn(s)).collect();
    let opts = [PgmOption::from(OptionValue::NakList(SqnList::Slice(&rest)))];
    let body = Body::Nak(NakRepr {
        sqn: Sqn(sqns[0]),
        source: Nla(SRC),
        group: Nla(GROUP),
    });
    emit(
        gsi,
        7500,
        4000,
        body,
        if rest.is_empty() { &[] } else { &opts },
    )
}

fn ncf(gsi: u8, sqn: u32) -> Vec<u8> {
    let body = Body::Ncf(NakRepr {
        sqn: Sqn(sqn),
        source: Nla(SRC),
        group: Nla(GROUP),
    });
    emit(gsi, 4000, 7500, body, &[])
}

fn rdata(gsi: u8, sqn: u32) -> Vec<u8> {
    let body = Body::Rdata(crate::wire::DataRepr {
        sqn: Sqn(sqn),
        trail: Sqn(0),
        payload: b"repair",
    });
    emit(gsi, 4000, 7500, body, &[])
}

fn from_upstream() -> NeRecvMeta {
    NeRecvMeta {
        ifindex: IF_UP,
        source: SRC,
        destination: GROUP,
        ttl: 64,
    }
}

fn nak_on_a() -> NeRecvMeta {
    NeRecvMeta {
        ifindex: IF_A,
        source: RCV_A,
        destination: IpAddr::V4(Ipv4Addr::new(10, 1, 3, 1)),
        ttl: 64,
    }
}

/// An element with interfaces up (1) and A (2), source path state for the TSIs of
/// `gsis` (learned at `now`), no polls.
fn element(now: Instant, gsis: &[u8], f: impl FnOnce(&mut NeConfig)) -> NetworkElement {
    let mut cfg = NeConfig::new(vec![
        NeInterface {
            index: IF_UP,
            addr: IpAddr::V4(Ipv4Addr::new(10, 1, 2, 2)),
        },
        NeInterface {
            index: IF_A,
            addr: IpAddr::V4(Ipv4Addr::new(10, 1, 3, 1)),
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
            downstream: vec![IF_A],
        },
    );
    for &g in gsis {
        ne.handle_packet(now, from_upstream(), &spm(g));
    }
    drain(&mut ne, now);
    ne
}

/// The NAKs sent upstream, as (GSI's last byte, sequence numbers).
fn drain(ne: &mut NetworkElement, now: Instant) -> Vec<(u8, Vec<u32>)> {
    let mut out = Vec::new();
    let mut buf = Vec::new();
    while let Some(t) = ne.poll_transmit(now, &mut buf) {
        if t.packet_type != PacketType::Nak {
            continue;
        }
        let p = NakPacket::new_checked(&buf[..t.len]).expect("a NAK");
        out.push((p.tsi().gsi.0[5], p.sqns().map(|s| s.0).collect()));
    }
    out
}

/// The instants (offsets from `start`) at which NAK repeats go out up to `until`,
/// driving the element by its `poll_timeout`.
fn repeat_times(ne: &mut NetworkElement, start: Instant, until: Duration) -> Vec<Duration> {
    let mut times = Vec::new();
    while let Some(at) = ne.poll_timeout().filter(|&at| at <= start + until) {
        ne.handle_timeout(at);
        if !drain(ne, at).is_empty() {
            times.push(at - start);
        }
    }
    times
}

#[test]
fn zero_repeat_interval_repeats_once_per_call_instead_of_hanging() {
    // A zero NAK_RPT_RTE interval used to re-arm the repeat at `now` itself, so
    // `handle_timeout` popped it again forever. It is now one tick (1 ns).
    let now = t0();
    let mut ne = element(now, &[6], |c| c.nak_rpt_rte_ivl = Duration::ZERO);
    ne.handle_packet(now, nak_on_a(), &nak(6, &[5]));
    assert_eq!(drain(&mut ne, now), [(6, vec![5])]);
    for i in 1..=3 {
        let at = now + ms(i);
        ne.handle_timeout(at);
        assert_eq!(drain(&mut ne, at), [(6, vec![5])], "one repeat at {i} ms");
    }
    ne.handle_timeout(now + ms(500));
    assert_eq!(ne.stats().naks_unconfirmed, 1);
    assert_eq!(ne.repair_state_count(), 0);
}

#[test]
fn deadlines_are_exact_below_a_millisecond() {
    let now = t0();
    let rte = Duration::from_micros(1_500);
    let mut ne = element(now, &[6], |c| c.nak_rpt_rte_ivl = rte);
    ne.handle_packet(now, nak_on_a(), &nak(6, &[5]));
    drain(&mut ne, now);
    assert_eq!(ne.poll_timeout(), Some(now + rte));
    let early = now + rte - Duration::from_nanos(1);
    ne.handle_timeout(early);
    assert!(drain(&mut ne, early).is_empty(), "not before its time");
    ne.handle_timeout(now + rte);
    assert_eq!(drain(&mut ne, now + rte), [(6, vec![5])]);
}

#[test]
fn repeats_keep_their_interval_across_a_reconfiguration() {
    let now = t0();
    let mut ne = element(now, &[6], |_| {});
    ne.handle_packet(now, nak_on_a(), &nak(6, &[5]));
    drain(&mut ne, now);
    let mut cfg = ne.config().clone();
    cfg.nak_rpt_rte_ivl = ms(30);
    cfg.nak_rpt_ivl = ms(200);
    ne.reconfigure(cfg);
    // Set before: first repeat at 100 ms, cancelled at 500 ms. Later repeats every 30 ms.
    let t = repeat_times(&mut ne, now, ms(1000));
    let want: Vec<Duration> = (0..14).map(|i| ms(100 + 30 * i)).collect();
    assert_eq!(t, want);
    assert_eq!(ne.stats().naks_unconfirmed, 1);
    // Set after: repeats every 30 ms, cancelled at 200 ms.
    let later = now + ms(1000);
    ne.handle_packet(later, nak_on_a(), &nak(6, &[7]));
    drain(&mut ne, later);
    let t = repeat_times(&mut ne, later, ms(1000));
    let want: Vec<Duration> = (1..=6).map(|i| ms(30 * i)).collect();
    assert_eq!(t, want);
    assert_eq!(ne.stats().naks_unconfirmed, 2);
    assert_eq!(ne.repair_state_count(), 0);
    assert!(
        ne.repairs.next_wakeup().is_none(),
        "nothing left to wake up for"
    );
}

#[test]
fn repeats_come_out_in_tsi_then_sequence_order() {
    let now = t0();
    let mut ne = element(now, &[9, 3, 6], |_| {});
    for (g, s) in [(9, 2), (6, 8), (3, 4), (6, 1), (9, 1)] {
        ne.handle_packet(now, nak_on_a(), &nak(g, &[s]));
    }
    drain(&mut ne, now);
    ne.handle_timeout(now + ms(100));
    assert_eq!(
        drain(&mut ne, now + ms(100)),
        [(3, vec![4]), (6, vec![1, 8]), (9, vec![1, 2])]
    );
}

#[test]
fn eviction_takes_the_oldest_even_when_slots_are_reused() {
    let now = t0();
    let mut ne = element(now, &[6], |c| c.max_repair_states = 3);
    let sqns = |ne: &NetworkElement| -> Vec<u32> {
        let snap = ne.tsi_snapshot(&nak_tsi()).expect("tsi");
        snap.repairs.iter().map(|r| r.sqn.0).collect()
    };
    for s in 1..=3 {
        ne.handle_packet(now, nak_on_a(), &nak(6, &[s]));
    }
    // 2 is repaired: its slot is freed, and 4 takes it.
    ne.handle_packet(now, from_upstream(), &ncf(6, 2));
    ne.handle_packet(now, from_upstream(), &rdata(6, 2));
    ne.handle_packet(now, nak_on_a(), &nak(6, &[4]));
    assert_eq!(sqns(&ne), [1, 3, 4]);
    for (s, held) in [(5, [3, 4, 5]), (6, [4, 5, 6]), (7, [5, 6, 7])] {
        ne.handle_packet(now, nak_on_a(), &nak(6, &[s]));
        assert_eq!(sqns(&ne), held, "after NAK {s}: the oldest went");
    }
    assert_eq!(ne.stats().repair_states_evicted, 3);
    assert_eq!(ne.repair_state_count(), 3);
}

fn nak_tsi() -> Tsi {
    Tsi {
        gsi: Gsi([1, 2, 3, 4, 5, 6]),
        sport: 4000,
    }
}

#[test]
fn timer_entries_stay_bounded_without_handle_timeout() {
    // States evicted by the bound leave their timer entries behind; if the driver never
    // calls `handle_timeout`, they are compacted away rather than piling up.
    let now = t0();
    let mut ne = element(now, &[6], |c| c.max_repair_states = 100);
    for i in 0..50_000u32 {
        let at = now + Duration::from_micros(u64::from(i));
        ne.handle_packet(at, nak_on_a(), &nak(6, &[i]));
        drain(&mut ne, at);
    }
    assert_eq!(ne.repair_state_count(), 100);
    assert_eq!(ne.stats().repair_states_evicted, 49_900);
    assert!(
        ne.repairs.timer_len() <= 4 * 100 + 1024,
        "{}",
        ne.repairs.timer_len()
    );
    assert!(
        ne.repairs.order_len() <= 2 * 100 + 64,
        "{}",
        ne.repairs.order_len()
    );
    // The live states still repeat and are cancelled on time.
    let last = now + Duration::from_micros(49_999);
    ne.handle_timeout(last + ms(100));
    let repeated: usize = drain(&mut ne, last + ms(100))
        .iter()
        .map(|(_, s)| s.len())
        .sum();
    assert_eq!(repeated, 100);
    ne.handle_timeout(last + ms(500));
    assert_eq!(ne.stats().naks_unconfirmed, 100);
    assert_eq!(ne.repair_state_count(), 0);
}
