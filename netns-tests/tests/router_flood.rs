//! `pgm-routerd` under a flood: "the daemon keeps serving and its memory stays within its
//! configured bound under a flood of NAKs for random TSIs and sequence numbers and under
//! malformed packets, each counted".
//!
//! Reference topology (source - R1 - R2 - {LAN A: rcv1, rcv2; LAN B: rcv3}), `pgm-routerd` on
//! R1 (default limits) and R2 (`max_tsis = 64`, `max_repair_states = 1000`), a real PGM/IP
//! transfer from the source to rcv1 and rcv2. While it runs, rcv3 (LAN B) floods R2's LAN B
//! address with raw IP protocol 113 packets from a raw socket:
//!
//! - NAKs for random sequence numbers of the real TSI (a quarter of them with an OPT_NAK_LIST
//!   of 8 more random sequence numbers): R2's `nak_window_slack` is set to its largest value,
//!   so that about half of them lie inside the session's window and create repair state
//!   (the `max_repair_states` bound must evict), and the other half are dropped as outside
//!   it (`pgm_router_naks_outside_window_total`);
//! - NAKs for random TSIs (no source path state: dropped without state);
//! - malformed packets: truncated, bad checksum, bad AFI, bad OPT_LENGTH total and bad option
//!   length.
//!
//! Checked: the transfer completes (`pgm recv --verify`); `/metrics` answers throughout (polled
//! every 100 ms) and after; `pgm_router_repair_states` never exceeds 1000 in any sample and
//! `pgm_router_evictions_total{table="repair_state"}` grew; every malformed kind is counted
//! under its `pgm_router_malformed_packets_total{reason=...}`; the daemon's VmRSS stays under
//! its RSS at session start + 64 MiB.
//!
//! The RSS bound: 1000 repair states cost well under 1 MiB (the engine's `RepairState` is
//! under 100 bytes plus hash-table and timer-heap overhead, see `core/benches/network_element.rs`),
//! NAKs of TSIs without state cost nothing, and the daemon's buffers are fixed. 64 MiB
//! leaves room for allocator fragmentation and lazily faulted thread stacks/arenas of the
//! debug build, while an unbounded table (34 000+ distinct (TSI, SQN) pairs, plus the
//! timers and eviction order entries, with lists) would still be caught only if it grew
//! large; the test therefore also prints the observed growth.

// Wall-clock time is what this measures/drives (the engines take time as a parameter).
#![allow(clippy::disallowed_methods)]

use std::net::{IpAddr, Ipv4Addr, SocketAddrV4};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use pgm_core::wire::{
    Body, Gsi, NakRepr, Nla, OptionList, OptionValue, Packet, PgmOption, Repr, Sqn, SqnList,
};
use pgm_netns_tests::admin::{self, DEFAULT_LISTEN as ADMIN};
use pgm_netns_tests::bins;
use pgm_netns_tests::daemon::{Daemon, RouterConfig};
use pgm_netns_tests::lab::{Ns, RefTopology};
use pgm_netns_tests::metrics::sum as metric;
use pgm_netns_tests::on_each_plane;
use pgm_netns_tests::plane::Plane;
use pgm_netns_tests::transfer::Transfer;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

const MAX_TSIS: usize = 64;
const MAX_REPAIR_STATES: u64 = 1000;
const SPORT: u16 = 4242;
const DPORT: u16 = 7500;
const RSS_SLACK_KIB: u64 = 64 * 1024;

/// `GET <path>` from a thread already inside R2's namespace: the body of a `200` answer,
/// `None` on any failure (connect, timeout, another status).
fn try_get(path: &str) -> Option<String> {
    admin::request(ADMIN, "GET", path)
        .and_then(admin::Response::body_if_ok)
        .ok()
}

fn get(ns: &Ns, path: &str) -> String {
    admin::get(ns, ADMIN, path).unwrap_or_else(|e| panic!("GET {ADMIN}{path} failed: {e:#}"))
}

fn vm_rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// xorshift64*: the flood's randomness (no `rand` dependency in this crate).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn u32(&mut self) -> u32 {
        (self.next() >> 32) as u32
    }
}

/// A NAK for `sqn` (and `list`) of TSI (`gsi`, `sport`), checksum filled.
fn nak(gsi: Gsi, sport: u16, sqn: u32, list: &[Sqn], source: Ipv4Addr, group: Ipv4Addr) -> Vec<u8> {
    let opts = [PgmOption::from(OptionValue::NakList(SqnList::Slice(list)))];
    let repr = Repr {
        // Upstream packets: source port = the session's data-destination port,
        // destination port = the data-source port (§8.3).
        sport: DPORT,
        dport: sport,
        gsi,
        parity: false,
        var_pktlen: false,
        body: Body::Nak(NakRepr {
            sqn: Sqn(sqn),
            source: Nla(IpAddr::V4(source)),
            group: Nla(IpAddr::V4(group)),
        }),
        options: if list.is_empty() {
            OptionList::EMPTY
        } else {
            OptionList::Slice(&opts)
        },
    };
    let mut buf = vec![0; repr.buffer_len()];
    repr.emit(&mut buf).expect("emit NAK");
    buf
}

/// The malformed kinds sent, with the reason label the router must count them under.
const MALFORMED: [&str; 5] = [
    "truncated",
    "bad_checksum",
    "bad_afi",
    "bad_opt_length",
    "bad_option_length",
];

/// A malformed packet of kind `kind` (an index into [`MALFORMED`]), derived from a valid NAK.
fn malformed(kind: usize, rng: &mut Rng, gsi: Gsi, source: Ipv4Addr, group: Ipv4Addr) -> Vec<u8> {
    let list = [Sqn(rng.u32()), Sqn(rng.u32())];
    let mut p = nak(gsi, SPORT, rng.u32(), &list, source, group);
    // Layout of an IPv4 NAK: 16-byte header, sqn (4), source NLA (8), group NLA (8), then
    // OPT_LENGTH at 36 (type, len 4, total u16) and OPT_NAK_LIST at 40 (type, len, ...).
    match MALFORMED[kind] {
        "truncated" => p.truncate(10 + (rng.u32() % 20) as usize),
        "bad_checksum" => {
            p[6] ^= 0x5a;
            if p[6] == 0 && p[7] == 0 {
                p[7] = 1;
            }
        }
        "bad_afi" => {
            p[20] = 0x7f;
            p[21] = 0x42;
        }
        "bad_opt_length" => {
            // OPT_LENGTH's total runs past the packet.
            p[38] = 0x01;
            p[39] = 0x00;
        }
        "bad_option_length" => {
            // OPT_NAK_LIST's own length: below the option header.
            p[41] = 2;
        }
        _ => unreachable!(),
    }
    p
}

#[derive(Debug, Default)]
struct Sampled {
    samples: u64,
    failures: u64,
    max_repair_states: u64,
    max_rss_kib: u64,
}

on_each_plane!(
    naks_for_random_tsis_and_sqns_and_malformed_packets,
    |plane| flood(plane)
);

fn flood(plane: Plane) {
    let topo = RefTopology::build(&format!("flood{}", &plane.name()[..1]))
        .expect("build the reference topology");
    let group = topo.group(1);
    let src = topo.source.addr();
    let pgm = bins::cargo_bin("pgm-core", "pgm").expect("build pgm");

    let base = RouterConfig::new()
        .mode("full")
        .dataplane(plane.name())
        .intercept("router-alert");
    let r1_cfg = topo.r1_config(&base, Some(group));
    let r2_cfg = topo.r2_config(&base, Some(group)).section(&format!(
        "[router.limits]\nmax_tsis = {MAX_TSIS}\nmax_repair_states = {MAX_REPAIR_STATES}\n\
         nak_window_slack = 2147483647\n"
    ));
    let routerd = bins::cargo_bin("pgm-router", "pgm-routerd").expect("build pgm-routerd");
    let routerd = Daemon::new(routerd);
    let [_r1, r2] = topo
        .start_routers(&routerd, &r1_cfg, &r2_cfg)
        .unwrap_or_else(|e| panic!("{e:#}"));
    let r2_pid = r2.pid();
    let comm = std::fs::read_to_string(format!("/proc/{r2_pid}/comm")).unwrap_or_default();
    assert!(
        comm.starts_with("pgm-routerd"),
        "pid {r2_pid} is {comm:?}, not the daemon"
    );

    // The transfer: rcv1 and rcv2 (LAN A) receive ~10 s of data (4000 x 1000 bytes at
    // 400 kB/s), so the flood happens during it.
    const COUNT: usize = 4000;
    let transfer = Transfer {
        pgm: &pgm,
        group,
        count: COUNT,
        size: 1000,
    };
    let sport = SPORT.to_string();
    let run = transfer
        .start(
            &topo.lab,
            &topo.receivers[..2],
            &topo.source,
            (400_000, 10, 20),
            &["--sport", &sport],
        )
        .expect("start the transfer");

    // The real TSI, as R2 has it (GSI.sport), once its SPMs reached R2.
    let deadline = Instant::now() + Duration::from_secs(10);
    let gsi = loop {
        let state = get(&topo.r2.ns, "/api/v1/state");
        let found = state
            .split("\"tsi\":\"")
            .skip(1)
            .filter_map(|s| s.split('"').next())
            .find(|t| t.ends_with(&format!(".{SPORT}")))
            .map(|t| {
                let v: Vec<u8> = t.split('.').take(6).map(|b| b.parse().unwrap()).collect();
                Gsi(v.try_into().unwrap())
            });
        if let Some(g) = found {
            break g;
        }
        assert!(
            Instant::now() < deadline,
            "R2 has no state for the TSI: {state}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let m0 = get(&topo.r2.ns, "/metrics");
    let rss0 = vm_rss_kib(r2_pid).expect("read VmRSS");
    eprintln!("real TSI {gsi}.{SPORT}; R2 VmRSS at session start: {rss0} KiB");

    // The monitor: /metrics and VmRSS every 100 ms, from inside R2's namespace.
    let stop = Arc::new(AtomicBool::new(false));
    let monitor = {
        let stop = Arc::clone(&stop);
        topo.r2.ns.spawn_thread(move || {
            let mut s = Sampled::default();
            while !stop.load(Ordering::Relaxed) {
                s.samples += 1;
                match try_get("/metrics") {
                    Some(m) => {
                        s.max_repair_states =
                            s.max_repair_states
                                .max(metric(&m, "pgm_router_repair_states", &[]));
                    }
                    None => s.failures += 1,
                }
                if let Some(r) = vm_rss_kib(r2_pid) {
                    s.max_rss_kib = s.max_rss_kib.max(r);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            s
        })
    };

    // The flood, from rcv3 (LAN B) to R2's LAN B address.
    const REAL: usize = 20_000;
    const RANDOM_TSI: usize = 10_000;
    const PER_MALFORMED: usize = 1_000;
    let r2_lanb = topo.r2_lan_b().addr;
    let flood = topo.lab.block(); // only for the seed: differs per lab
    let seed = 0x9E37_79B9_7F4A_7C15 ^ u64::from(flood.octet());
    let sent = topo
        .lan_b_receiver()
        .ns
        .run(move || {
            let sock = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(113)))
                .expect("raw IP protocol 113 socket");
            let to = SockAddr::from(SocketAddrV4::new(r2_lanb, 0));
            let mut rng = Rng(seed);
            let mut sent = [0usize; 3 + MALFORMED.len()];
            let total = REAL + RANDOM_TSI + PER_MALFORMED * MALFORMED.len();
            let t0 = Instant::now();
            // The packets' kinds in random order: 0 real-TSI NAK (1 with a NAK list), 2
            // random-TSI NAK, 3.. a malformed kind.
            let mut kinds: Vec<usize> = std::iter::repeat_n(0, REAL)
                .chain(std::iter::repeat_n(2, RANDOM_TSI))
                .chain((0..MALFORMED.len()).flat_map(|k| std::iter::repeat_n(3 + k, PER_MALFORMED)))
                .collect();
            assert_eq!(kinds.len(), total);
            for i in (1..kinds.len()).rev() {
                kinds.swap(i, rng.u32() as usize % (i + 1));
            }
            for (i, &kind) in kinds.iter().enumerate() {
                let (kind, pkt) = match kind {
                    0 if rng.u32() % 4 == 0 => {
                        let list: Vec<Sqn> = (0..8).map(|_| Sqn(rng.u32())).collect();
                        (1, nak(gsi, SPORT, rng.u32(), &list, src, group))
                    }
                    0 => (0, nak(gsi, SPORT, rng.u32(), &[], src, group)),
                    2 => {
                        let mut g = [0u8; 6];
                        g.iter_mut().for_each(|b| *b = rng.u32() as u8);
                        let sport = rng.u32() as u16;
                        (2, nak(Gsi(g), sport, rng.u32(), &[], src, group))
                    }
                    k => {
                        let p = malformed(k - 3, &mut rng, gsi, src, group);
                        let err = Packet::new_checked(&p[..])
                            .and_then(|q| q.verify_checksum())
                            .expect_err("malformed packet parsed");
                        assert_eq!(err.reason(), MALFORMED[k - 3], "self-check of the kind");
                        (k, p)
                    }
                };
                match sock.send_to(&pkt, &to) {
                    Ok(_) => sent[kind] += 1,
                    Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    Err(e) => panic!("send: {e}"),
                }
                // About 20 000 packets/s: a flood for a debug-build daemon on a busy
                // 2-core machine, without only measuring socket-buffer drops.
                if i % 100 == 99 {
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
            eprintln!("flood: {sent:?} in {:?}", t0.elapsed());
            sent
        })
        .expect("enter rcv3's namespace");
    let during_ok = try_during(&topo.r2.ns);

    run.wait(Duration::from_secs(90))
        .unwrap_or_else(|e| panic!("{e:#}\nR2 log:\n{}", r2.stderr().unwrap_or_default()));
    stop.store(true, Ordering::Relaxed);
    let sampled = monitor
        .join()
        .expect("monitor thread")
        .expect("enter R2's namespace");

    assert!(
        r2.is_running(),
        "pgm-routerd exited: {}",
        r2.stderr().unwrap_or_default()
    );
    let m = get(&topo.r2.ns, "/metrics");
    let state = get(&topo.r2.ns, "/api/v1/state");
    let rss1 = vm_rss_kib(r2_pid).expect("read VmRSS");
    let rss_max = sampled.max_rss_kib.max(rss1);
    let ev0 = metric(
        &m0,
        "pgm_router_evictions_total",
        &[("table", "repair_state")],
    );
    let ev1 = metric(
        &m,
        "pgm_router_evictions_total",
        &[("table", "repair_state")],
    );
    let naks = metric(&m, "pgm_router_naks_received_total", &[]);
    let no_state = metric(&m, "pgm_router_naks_no_state_total", &[]);
    eprintln!(
        "monitor: {sampled:?}; during: {during_ok}; R2 VmRSS {rss0} KiB at start, {rss1} KiB \
         after, {rss_max} KiB max (+{} KiB); repair-state evictions {ev0} -> {ev1}; NAKs \
         received {naks}, without state {no_state}; state has {} bytes",
        rss_max.saturating_sub(rss0),
        state.len()
    );
    for line in m.lines().filter(|l| {
        l.starts_with("pgm_router_malformed")
            || l.starts_with("pgm_router_repair")
            || l.starts_with("pgm_router_evictions")
            || l.starts_with("pgm_router_naks")
            || l.starts_with("pgm_router_ncfs")
            || l.starts_with("pgm_router_tsis")
    }) {
        eprintln!("  {line}");
    }

    // /metrics kept answering: during the flood (the monitor's samples) and after.
    assert!(sampled.samples >= 10, "{sampled:?}");
    assert_eq!(
        sampled.failures, 0,
        "/metrics failed during the flood: {sampled:?}"
    );
    assert!(during_ok, "/metrics did not answer right after the flood");
    // The repair-state bound held, and it was reached: evictions grew.
    assert!(
        sampled.max_repair_states <= MAX_REPAIR_STATES,
        "{} repair states sampled (limit {MAX_REPAIR_STATES})",
        sampled.max_repair_states
    );
    assert!(metric(&m, "pgm_router_repair_states", &[]) <= MAX_REPAIR_STATES);
    assert!(
        ev1 > ev0,
        "no repair state evicted ({ev0} -> {ev1}) after {} real-TSI NAKs",
        sent[0] + sent[1]
    );
    // NAKs for sequence numbers the session never sent are dropped and counted.
    assert!(
        metric(&m, "pgm_router_naks_outside_window_total", &[]) > 0,
        "no NAK counted as outside the window"
    );
    // NAKs of unknown TSIs are counted and dropped without state.
    assert!(no_state > 0, "no NAK counted as without state");
    assert!(metric(&m, "pgm_router_tsis", &[]) <= MAX_TSIS as u64);
    // Each malformed kind is counted under its reason (drops at the socket buffer may lose
    // some, never add).
    for (k, reason) in MALFORMED.iter().enumerate() {
        let n = metric(
            &m,
            "pgm_router_malformed_packets_total",
            &[("reason", reason)],
        );
        assert!(
            n > 0 && n <= sent[3 + k] as u64,
            "{reason}: {n} counted, {} sent",
            sent[3 + k]
        );
    }
    // Memory: bounded (see the module documentation for the bound).
    assert!(
        rss_max <= rss0 + RSS_SLACK_KIB,
        "VmRSS grew from {rss0} KiB to {rss_max} KiB (bound +{RSS_SLACK_KIB} KiB)"
    );
}

/// One `/metrics` right after the flood, from inside `ns`.
fn try_during(ns: &Ns) -> bool {
    admin::get(ns, ADMIN, "/metrics").is_ok()
}
