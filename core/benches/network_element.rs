//! Network-element engine benchmarks (criterion), for `pgm-routerd`'s NAK handling capacity.
//!
//! Run with `cargo bench -p pgm-core --bench network_element`; figures are recorded in
//! `BENCHMARKS.md` ("Network element (pgm-routerd)"). Targets: at least 200 000 NAKs/s per
//! core, at most 256 bytes per repair state.
//!
//! The engine has two interfaces, upstream (`if1`) and downstream (`if2`), and source path
//! state for one TSI from an SPM. Every measured NAK arrives unicast on the downstream
//! interface and is followed by draining `poll_transmit` into a reused buffer (the NCF built
//! there, and the forwarded NAK), as the daemon does:
//!
//! - `nak/fresh`: every NAK asks for a new sequence number, so it creates repair state, gets
//!   an NCF and is forwarded upstream. A virtual clock advances 5 us per NAK (200 000 NAKs/s)
//!   and `handle_timeout` runs every 1024 NAKs (about every 5 ms of virtual time), so the
//!   steady state includes NAK repeats, NAK_RPT_IVL cancellations (no upstream NCF ever
//!   comes) and `max_repair_states` (65 536) evictions.
//! - `nak/duplicate`: the NAKs repeat 1024 sequence numbers that are already pending, at a
//!   fixed instant: each is eliminated (§7.4) and its NCF rate limited (`ncf_holdoff`).
//! - `nak/fresh_list_8`: fresh NAKs with an OPT_NAK_LIST of 8 more sequence numbers (9 repair
//!   states per NAK), in NAKs/s.
//!
//! Memory per repair state is measured before the criterion groups with a counting global
//! allocator: the live heap bytes the engine holds after N fresh NAKs (queues drained, no
//! timeouts run, `max_repair_states` above N), divided by N.

// Wall-clock time is what this measures/drives (the engines take time as a parameter).
#![allow(clippy::disallowed_methods)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use pgm_core::proto::network_element::{
    IfIndex, NeConfig, NeInterface, NeRecvMeta, NeRoute, NetworkElement,
};
use pgm_core::wire::{
    Body, Gsi, NakRepr, Nla, OptionList, OptionValue, PgmOption, Repr, SpmRepr, Sqn, SqnList,
};

/// Counts live heap bytes (allocated minus freed) of the whole bench process.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size, Ordering::Relaxed);
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

const UP: IfIndex = IfIndex(1);
const DOWN: IfIndex = IfIndex(2);
const SOURCE: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 2);
const GROUP: Ipv4Addr = Ipv4Addr::new(239, 1, 2, 3);
const UP_NBR: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 1);
const UP_ADDR: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 2);
const DOWN_ADDR: Ipv4Addr = Ipv4Addr::new(10, 0, 3, 1);
const RECEIVER: Ipv4Addr = Ipv4Addr::new(10, 0, 3, 11);
const SPORT: u16 = 4242;
const DPORT: u16 = 7500;

fn gsi() -> Gsi {
    Gsi([0x02, 0x42, 0xAC, 0x11, 0x00, 0x02])
}

fn emit(r: &Repr<'_>) -> Vec<u8> {
    let mut buf = vec![0u8; r.buffer_len()];
    r.emit(&mut buf).expect("emit");
    buf
}

fn nak(sqn: u32, list: &[Sqn]) -> Vec<u8> {
    let opts = [PgmOption::from(OptionValue::NakList(SqnList::Slice(list)))];
    emit(&Repr {
        sport: DPORT,
        dport: SPORT,
        gsi: gsi(),
        parity: false,
        var_pktlen: false,
        body: Body::Nak(NakRepr {
            sqn: Sqn(sqn),
            source: Nla(IpAddr::V4(SOURCE)),
            group: Nla(IpAddr::V4(GROUP)),
        }),
        options: if list.is_empty() {
            OptionList::EMPTY
        } else {
            OptionList::Slice(&opts)
        },
    })
}

fn spm() -> Vec<u8> {
    emit(&Repr {
        sport: SPORT,
        dport: DPORT,
        gsi: gsi(),
        parity: false,
        var_pktlen: false,
        body: Body::Spm(SpmRepr {
            sqn: Sqn(1),
            trail: Sqn(0),
            lead: Sqn(0),
            path: Nla(IpAddr::V4(UP_NBR)),
        }),
        options: OptionList::EMPTY,
    })
}

const NAK_META: NeRecvMeta = NeRecvMeta {
    ifindex: DOWN,
    source: IpAddr::V4(RECEIVER),
    destination: IpAddr::V4(DOWN_ADDR),
    ttl: 255,
};

/// An engine with source path state for the TSI and a route down `if2`.
fn engine(max_repair_states: usize, now: Instant) -> NetworkElement {
    let mut cfg = NeConfig::new(vec![
        NeInterface {
            index: UP,
            addr: IpAddr::V4(UP_ADDR),
        },
        NeInterface {
            index: DOWN,
            addr: IpAddr::V4(DOWN_ADDR),
        },
    ]);
    cfg.max_repair_states = max_repair_states;
    // The SPM's window is [0, 0] and the fresh NAKs count up past it: let them all through,
    // so the bench measures the repair-state path (the window filter drops a NAK earlier).
    cfg.nak_window_slack = u32::MAX;
    // No polls: they would only add POLL packets to the drained queue.
    cfg.poll_ivl = None;
    let mut ne = NetworkElement::new(cfg);
    ne.set_route(
        Some(IpAddr::V4(SOURCE)),
        IpAddr::V4(GROUP),
        NeRoute {
            upstream: UP,
            downstream: vec![DOWN],
        },
    );
    ne.handle_packet(
        now,
        NeRecvMeta {
            ifindex: UP,
            source: IpAddr::V4(SOURCE),
            destination: IpAddr::V4(GROUP),
            ttl: 64,
        },
        &spm(),
    );
    assert_eq!(ne.tsi_count(), 1);
    let mut buf = Vec::with_capacity(9000);
    while ne.poll_transmit(now, &mut buf).is_some() {}
    ne
}

/// Drains the engine's transmit queue; returns the packets.
fn drain(ne: &mut NetworkElement, now: Instant, buf: &mut Vec<u8>) -> usize {
    let mut n = 0;
    while let Some(t) = ne.poll_transmit(now, buf) {
        black_box(&buf[..t.len]);
        n += 1;
    }
    n
}

/// A replica of the engine's private `RepairState` (same field types and order; its times are
/// u64 nanosecond ticks), for its size only.
#[allow(dead_code)]
struct RepairStateReplica {
    ifaces: u64,
    ncf_mask: u64,
    deadline: u64,
    aux: u64,
    ncf_at: u64,
    seq_no: u64,
    phase: u8,
    ncf_sent: bool,
    nnak: bool,
    via_dlr: bool,
    no_dlr: bool,
}

fn memory_per_repair_state() {
    println!("memory per repair state (live heap bytes / repair states held):");
    println!(
        "  sizes: RepairState ~{} B in a slab slot (with its TSI and sqn) ~{} B; per-TSI index \
         entry (u32 sqn, u32 slot) {} B + 1 control byte; eviction-order entry (u32 slot, u64) \
         {} B; timer entry (u64 tick, u32 slot) {} B, two per new state (next repeat and \
         NAK_RPT_IVL)",
        size_of::<RepairStateReplica>(),
        size_of::<Option<(RepairStateReplica, pgm_core::wire::Tsi, u32)>>(),
        size_of::<(u32, u32)>(),
        size_of::<(u32, u64)>(),
        size_of::<(u64, u32)>(),
    );
    // 28 673, 57 345, 114 689 and 229 377 are one past 7/8 of a power of two: the hash
    // table has just doubled, its worst load (7/16).
    for n in [
        1_000usize, 10_000, 28_673, 50_000, 57_345, 65_536, 100_000, 114_689, 229_377, 250_000,
    ] {
        let now = Instant::now();
        let mut buf = Vec::with_capacity(9000);
        let pkts: Vec<Vec<u8>> = (0..n).map(|i| nak(1_000 + i as u32, &[])).collect();
        let before = LIVE.load(Ordering::Relaxed);
        let mut ne = engine(n, now);
        let empty = LIVE.load(Ordering::Relaxed) - before;
        for p in &pkts {
            ne.handle_packet(now, NAK_META, p);
            drain(&mut ne, now, &mut buf);
        }
        assert_eq!(ne.repair_state_count(), n);
        let live = LIVE.load(Ordering::Relaxed) - before - empty;
        println!(
            "  N = {n:>7}: {:>10} B for the states ({:.1} B/state; empty engine with 1 TSI: {empty} B)",
            live,
            live as f64 / n as f64
        );
        drop(ne);
    }
}

fn bench_naks(c: &mut Criterion) {
    memory_per_repair_state();

    let mut g = c.benchmark_group("nak");
    g.throughput(Throughput::Elements(1));

    // Fresh sequence numbers: a pool of 2^17 distinct NAKs (twice max_repair_states, so a
    // sequence number comes back long after its state was evicted or cancelled).
    const POOL: usize = 1 << 17;
    let base = Instant::now();
    let pool: Vec<Vec<u8>> = (0..POOL).map(|i| nak(i as u32, &[])).collect();
    {
        let mut ne = engine(65_536, base);
        let mut buf = Vec::with_capacity(9000);
        let mut i: u64 = 0;
        let mut sent = 0usize;
        g.bench_function("fresh", |b| {
            b.iter(|| {
                let now = base + Duration::from_micros(5 * i);
                ne.handle_packet(now, NAK_META, &pool[i as usize % POOL]);
                sent += drain(&mut ne, now, &mut buf);
                i += 1;
                if i % 1024 == 0 {
                    ne.handle_timeout(now);
                    sent += drain(&mut ne, now, &mut buf);
                }
            });
        });
        let s = ne.stats();
        println!(
            "  fresh: {i} NAKs, {sent} packets out; forwarded {}, repeated {}, ncfs {}, \
             eliminated {}, evicted {}, unconfirmed {}; {} repair states held",
            s.naks_forwarded,
            s.naks_repeated,
            s.ncfs_sent,
            s.naks_eliminated,
            s.repair_states_evicted,
            s.naks_unconfirmed,
            ne.repair_state_count()
        );
    }

    // Duplicates: 1024 pending sequence numbers NAKed again and again at one instant.
    {
        const DUPS: usize = 1024;
        let mut ne = engine(65_536, base);
        let mut buf = Vec::with_capacity(9000);
        for p in &pool[..DUPS] {
            ne.handle_packet(base, NAK_META, p);
            drain(&mut ne, base, &mut buf);
        }
        let eliminated0 = ne.stats().naks_eliminated;
        let mut i = 0usize;
        g.bench_function("duplicate", |b| {
            b.iter(|| {
                ne.handle_packet(base, NAK_META, &pool[i % DUPS]);
                drain(&mut ne, base, &mut buf);
                i += 1;
            });
        });
        let s = ne.stats();
        assert_eq!(
            s.naks_eliminated - eliminated0,
            i as u64,
            "not all eliminated"
        );
        println!(
            "  duplicate: {i} NAKs, all eliminated; ncfs rate limited {}",
            s.ncfs_rate_limited
        );
    }

    // Fresh NAKs with a list of 8 more: 9 repair states per NAK.
    {
        const LPOOL: usize = 1 << 14;
        let lists: Vec<Vec<u8>> = (0..LPOOL)
            .map(|i| {
                let first = (i * 9) as u32;
                let list: Vec<Sqn> = (1..9).map(|k| Sqn(first + k)).collect();
                nak(first, &list)
            })
            .collect();
        let mut ne = engine(65_536, base);
        let mut buf = Vec::with_capacity(9000);
        let mut i: u64 = 0;
        g.bench_function("fresh_list_8", |b| {
            b.iter(|| {
                let now = base + Duration::from_micros(5 * i);
                ne.handle_packet(now, NAK_META, &lists[i as usize % LPOOL]);
                drain(&mut ne, now, &mut buf);
                i += 1;
                if i % 1024 == 0 {
                    ne.handle_timeout(now);
                    drain(&mut ne, now, &mut buf);
                }
            });
        });
    }
    g.finish();
}

criterion_group!(benches, bench_naks);
criterion_main!(benches);
