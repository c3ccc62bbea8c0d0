//! The adversarial suite (issue 11, item 3): a live transfer (`pgm send` to `pgm recv`) while
//! a host of the topology sends hostile PGM packets crafted by `pgm_netns_tests::craft`, through
//! each role:
//!
//! | scenario | topology | target | attacker sends |
//! |---|---|---|---|
//! | `receiver_under_attack_pgm_{ip,udp}` | one LAN: `src`, `rcv`, `dcy`, `atk` | `pgm recv` (and a decoy `pgm recv` that took the attacker's made-up session) | to the group: garbage, made-up sessions, spoofed FIN/RST, far and flipped sequence numbers, contradictory fragments, NAK/NCF/SPMR/POLL/POLR floods |
//! | `sender_under_attack_pgm_{ip,udp}` | one LAN: `src`, `rcv`, `atk` | `pgm send` | to the source: NAK/NNAK/SPMR/POLR/NCF floods with random sequence numbers, made-up TSIs, garbage |
//! | `router_nak_flood_not_reflected` | the reference topology, attacker `rcv3` on LAN B | `pgm-routerd` on R2 | to R2: NAKs for random sequence numbers (outside the window), made-up TSIs, garbage; to LAN B's group: spoofed SPMs, NCFs, POLLs |
//! | `dlr_made_up_sessions_and_garbage` | `src - r1 - [transit LAN: r2, dlr, atk] - r2 - rcv`, loss on R2's LAN | `pgm-dlrd` (`serve = "all"`) | to the transit LAN: made-up sessions on the group and on other groups, stretched windows, spoofed data and repairs of the real session (cache poisoning), garbage; to the DLR: NAK floods, DLR polls |
//!
//! Each checks that the target stays alive and responsive (a daemon's admin API answers every
//! 100 ms sample; the CLI exits 0), that the transfer completes byte-identical (`pgm recv -o`
//! compared with the file sent; through the routers, `--verify` against the sender's
//! pattern), that the target's peak RSS stays under its bound (explicit small limits:
//! `--rxw-sqns`, DLR `cache_bytes`, `max_engines`, `max_sessions`, router `max_tsis`,
//! `max_repair_states`), and that the attack packets are counted under their reasons (the
//! daemons' metrics, the counters `pgm recv` and `pgm send` print at exit). Besides:
//!
//! - nothing is reflected: no POLR answers the attacker's POLLs of the real session; the
//!   sender repairs and confirms only NAKs for data in its window and answers SPMRs at most
//!   once per IHB_MIN; R2 confirms and forwards only NAKs inside the window; no NAK or NNAK
//!   of the real session is sent to the attacker by R1, R2 or the DLR (the sniffer counts
//!   them per sender);
//! - spoofed SPMs of the real session do not move its state: R2's upstream neighbour stays
//!   R1 on `to-r1`, the DLR's parent stays R1;
//! - the DLR and routers put no malformed packet on the transit LAN (a capture at the DLR).
//!
//! A scenario collects every failed check and fails once, listing them all with the figures
//! observed.
//!
//! The attack starts once the session is running (the attacker learns its TSI and window by
//! listening, as any host of the LAN can), is seeded (one fixed seed per scenario) and bounded:
//! about 15 000 to 20 000 packets at 2500 packets/s.

// Wall-clock time is what these tests drive (the engines take it as a parameter).
#![allow(clippy::disallowed_methods)]

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use pgm_netns_tests::admin::{self, DEFAULT_LISTEN as ADMIN};
use pgm_netns_tests::bins;
use pgm_netns_tests::craft::{
    self, Attack, AttackConfig, Encap, Heard, Malformation, Rng, Session, SniffConfig, Sniffer,
    Tally, To, Wave,
};
use pgm_netns_tests::daemon::{Daemon, RouterConfig};
use pgm_netns_tests::lab::{
    self, AddrBlock, Host, Iface, Lab, LossSpec, Memory, Ns, Process, RefTopology, Selector,
    memory_of,
};
use pgm_netns_tests::metrics;
use pgm_netns_tests::on_each_plane;
use pgm_netns_tests::plane::Plane;
use pgm_netns_tests::transfer::{Transfer, wait_delivered};

/// The data-destination port (`pgm`'s default).
const PORT: u16 = 7500;
/// Messages of a LAN transfer, and their size: 8 MB, about 10 s at [`RATE`].
const COUNT: usize = 8000;
const SIZE: usize = 1000;
/// The sender's rate limit, bytes per second.
const RATE: u64 = 800_000;
/// The attack's rate, packets per second.
const PPS: u32 = 2500;
/// `--rxw-sqns` of the receivers: the explicit bound on a session's window.
const RXW_SQNS: u32 = 4096;
/// `--txw-sqns` of the senders.
const TXW_SQNS: u32 = 16_384;

/// Peak RSS allowed to a `pgm recv` (debug build). Its state is one session's window of at
/// most [`RXW_SQNS`] slots (each about 100 bytes plus at most one TPDU, 1.5 kB: 6.5 MB) and
/// the socket buffers; a plain transfer peaks near 10 MiB. The attacker's made-up session
/// holds the decoy to the same window. 48 MiB leaves room for allocator fragmentation
/// while a receiver that let a packet grow its window past the bound (two far-apart ODATA
/// once grew it to 24 GB) is caught.
const RECV_HWM_KIB: u64 = 48 * 1024;
/// Peak RSS allowed to a `pgm send`: its transmit window holds the whole 8 MB transfer
/// ([`TXW_SQNS`] is larger than [`COUNT`]); NAKs may only queue repairs of data it holds.
const SEND_HWM_KIB: u64 = 48 * 1024;
/// Growth of a daemon's peak RSS allowed during the attack (over its peak at session start).
/// R2 keeps at most 64 TSIs and 1000 repair states (well under 1 MiB, see router_flood.rs);
/// the DLR caches at most [`DLR_CACHE_BYTES`] for at most 4 x 16 sessions.
const DAEMON_GROWTH_KIB: u64 = 32 * 1024;

/// The DLR's configured bounds.
const DLR_CACHE_BYTES: u64 = 1 << 20;
const DLR_MAX_ENGINES: u64 = 4;
const DLR_MAX_SESSIONS: u64 = 16;
/// R2's configured bounds.
const R2_MAX_TSIS: u64 = 64;
const R2_MAX_REPAIR_STATES: u64 = 1000;

// ---- checks -------------------------------------------------------------------------------

/// Failed checks of one scenario, reported together at the end.
#[derive(Default)]
struct Checks {
    failed: Vec<String>,
    passed: usize,
}

impl Checks {
    fn check(&mut self, ok: bool, what: impl FnOnce() -> String) {
        if ok {
            self.passed += 1;
        } else {
            self.failed.push(what());
        }
    }

    /// `low <= value <= high`.
    fn within(&mut self, what: &str, value: u64, low: u64, high: u64) {
        self.check((low..=high).contains(&value), || {
            format!("{what}: {value}, expected {low}..={high}")
        });
    }

    fn finish(self, scenario: &str) {
        eprintln!(
            "{scenario}: {} checks passed, {} failed",
            self.passed,
            self.failed.len()
        );
        assert!(
            self.failed.is_empty(),
            "{scenario}: {} checks failed:\n  - {}",
            self.failed.len(),
            self.failed.join("\n  - ")
        );
    }
}

fn or_panic<T>(r: Result<T>) -> T {
    r.unwrap_or_else(|e| panic!("{e:#}"))
}

// ---- the pgm tool -------------------------------------------------------------------------

/// `pgm <cmd> [--ip] --network <local;group>`.
fn pgm_cmd(pgm: &Path, cmd: &str, encap: Encap, local: Ipv4Addr, group: Ipv4Addr) -> Vec<String> {
    let mut a = vec![pgm.display().to_string(), cmd.to_owned()];
    if encap == Encap::Ip {
        a.push("--ip".to_owned());
    }
    a.extend(["--network".to_owned(), format!("{local};{group}")]);
    a
}

/// A sender of `file` in messages of [`SIZE`] bytes, answering NAKs for 3 s after the last.
fn send_cmd(
    pgm: &Path,
    encap: Encap,
    local: Ipv4Addr,
    group: Ipv4Addr,
    file: &Path,
) -> Vec<String> {
    let mut a = pgm_cmd(pgm, "send", encap, local, group);
    for (k, v) in [
        ("--file", file.display().to_string()),
        ("--size", SIZE.to_string()),
        ("--rate", RATE.to_string()),
        ("--linger", "3".to_owned()),
        ("--txw-sqns", TXW_SQNS.to_string()),
    ] {
        a.extend([k.to_owned(), v]);
    }
    a
}

/// A receiver writing to `out`, stopping after `count` messages if given, or `idle_s`
/// seconds without an event.
fn recv_cmd(
    pgm: &Path,
    encap: Encap,
    local: Ipv4Addr,
    group: Ipv4Addr,
    (out, count, idle_s): (&Path, Option<usize>, u32),
    extra: &[&str],
) -> Vec<String> {
    let mut a = pgm_cmd(pgm, "recv", encap, local, group);
    a.extend(["-o".to_owned(), out.display().to_string()]);
    if let Some(c) = count {
        a.extend(["--count".to_owned(), c.to_string()]);
    }
    a.extend(["--idle-timeout".to_owned(), idle_s.to_string()]);
    a.extend(["--rxw-sqns".to_owned(), RXW_SQNS.to_string()]);
    a.extend(extra.iter().map(|s| (*s).to_owned()));
    a
}

/// The counters `pgm recv` prints at exit, by name: those of its `packets not taken:` line
/// as printed (`other_sessions`, `wrong_source`, ...), `malformed.<reason>` and
/// `bad_fragments` from its `dropped malformed packets:` line, and from its summary
/// `messages`, `losses`, `lost_packets`, `nak_sqns`, `naks`, `rdata`.
fn recv_counters(stderr: &str) -> BTreeMap<String, u64> {
    let mut m = BTreeMap::new();
    let pairs = |m: &mut BTreeMap<String, u64>, text: &str, prefix: &str| {
        for tok in text.split_whitespace() {
            if let Some((k, v)) = tok.split_once('=') {
                if let Ok(v) = v.trim_end_matches(';').parse::<u64>() {
                    m.insert(format!("{prefix}{k}"), v);
                }
            }
        }
    };
    for line in stderr.lines() {
        if let Some(rest) = line.strip_prefix("pgm: packets not taken: ") {
            pairs(&mut m, rest, "");
        } else if let Some(rest) = line.strip_prefix("pgm: dropped malformed packets: ") {
            let (reasons, frags) = rest.split_once("; bad fragments ").unwrap_or((rest, ""));
            pairs(&mut m, reasons, "malformed.");
            if let Ok(n) = frags.trim().parse::<u64>() {
                m.insert("bad_fragments".to_owned(), n);
            }
        }
    }
    if let Some(line) = stderr.lines().find(|l| l.contains(": received ")) {
        for (key, after) in [
            ("messages", "received "),
            ("losses", "losses "),
            ("lost_packets", "losses "),
            ("nak_sqns", "repairs requested "),
            ("naks", "(in "),
            ("rdata", "RDATA received "),
        ] {
            let mut v = number_after(line, after);
            if key == "lost_packets" {
                v = line
                    .split_once("losses ")
                    .and_then(|(_, r)| r.split_once('('))
                    .and_then(|(_, r)| number_after(r, ""));
            }
            if let Some(v) = v {
                m.insert(key.to_owned(), v);
            }
        }
    }
    m
}

/// The number right after the first `key` in `line`.
fn number_after(line: &str, key: &str) -> Option<u64> {
    let (_, rest) = line.split_once(key)?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// The counters of `pgm send`'s summary line (`pgm: sent N messages, B bytes; ODATA o,
/// RDATA r, NAKs received n, NCFs c, SPMs s`): `messages`, `odata`, `rdata`, `naks`, `ncfs`,
/// `spms`.
fn send_counters(stderr: &str) -> BTreeMap<String, u64> {
    let mut m = BTreeMap::new();
    if let Some(line) = stderr.lines().find(|l| l.starts_with("pgm: sent ")) {
        for (key, after) in [
            ("messages", "pgm: sent "),
            ("odata", "ODATA "),
            ("rdata", "RDATA "),
            ("naks", "NAKs received "),
            ("ncfs", "NCFs "),
            ("spms", "SPMs "),
        ] {
            if let Some(v) = number_after(line, after) {
                m.insert(key.to_owned(), v);
            }
        }
    }
    if let Some(line) = stderr.lines().find(|l| l.starts_with("pgm: PGMCC: ")) {
        for (key, after) in [
            ("acks", "acks "),
            ("acks_invalid", "invalid "),
            ("elections", "elections "),
            ("timeouts", "timeouts "),
            ("ackers_dropped", "ackers dropped "),
        ] {
            if let Some(v) = number_after(line, after) {
                m.insert(key.to_owned(), v);
            }
        }
    }
    m
}

fn get(m: &BTreeMap<String, u64>, k: &str) -> u64 {
    m.get(k).copied().unwrap_or(0)
}

/// Starts `pgm` (`args`) in `ns`, with backtraces off: an error exit of a debug build would
/// otherwise symbolize one, tens of MB of debug information read just before exiting, which
/// is not what the peak RSS of a receiver is meant to measure.
fn spawn_pgm(lab: &Lab, ns: &Ns, args: &[String]) -> Process {
    let mut cmd = lab.command(ns, args);
    cmd.env("RUST_BACKTRACE", "0")
        .env("RUST_LIB_BACKTRACE", "0");
    or_panic(lab.spawn_command(cmd, "pgm"))
}

/// `COUNT * SIZE` bytes of seeded random data in the lab directory.
fn write_data(lab: &Lab, seed: u64) -> PathBuf {
    let path = lab.file("data", "bin");
    let bytes = Rng::new(seed).bytes(COUNT * SIZE);
    std::fs::write(&path, bytes).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    path
}

/// Whether `got` holds the same bytes as `sent`; otherwise where they differ.
fn compare_files(sent: &Path, got: &Path) -> Result<(), String> {
    let a = std::fs::read(sent).map_err(|e| format!("read {}: {e}", sent.display()))?;
    let b = std::fs::read(got).map_err(|e| format!("read {}: {e}", got.display()))?;
    if a == b {
        return Ok(());
    }
    let at = a.iter().zip(&b).position(|(x, y)| x != y);
    Err(format!(
        "received {} bytes of {}; first difference at byte {}",
        b.len(),
        a.len(),
        at.map_or_else(|| "(none: a prefix)".to_owned(), |i| i.to_string())
    ))
}

/// How a process ended, for messages: exit code, signal, or still running.
fn ended(p: &Process) -> String {
    match p.try_wait() {
        Ok(Some(s)) => s.to_string(),
        Ok(None) => "still running".to_owned(),
        Err(e) => format!("unknown ({e:#})"),
    }
}

// ---- monitoring ---------------------------------------------------------------------------

/// What a [`Monitor`] saw.
#[derive(Debug, Default)]
struct Sampled {
    samples: u64,
    /// Samples whose `GET /metrics` failed.
    admin_failures: u64,
    /// Highest VmHWM seen per pid.
    hwm_kib: BTreeMap<u32, u64>,
    /// Highest value seen per gauge.
    max: BTreeMap<&'static str, u64>,
}

/// Samples the memory of some processes and, for a daemon, its `/metrics` every 100 ms.
struct Monitor {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<Result<Sampled>>,
}

impl Monitor {
    /// `admin`: the namespace of a daemon whose admin API to poll (and whose `gauges` to
    /// track); `pids`: the processes whose peak RSS to follow.
    fn start(admin: Option<&Ns>, pids: Vec<u32>, gauges: &'static [&'static str]) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let poll_admin = admin.is_some();
        let body = move || {
            let mut s = Sampled::default();
            while !flag.load(Ordering::Relaxed) {
                s.samples += 1;
                for &pid in &pids {
                    if let Some(m) = memory_of(pid) {
                        let e = s.hwm_kib.entry(pid).or_default();
                        *e = (*e).max(m.hwm_kib);
                    }
                }
                if poll_admin {
                    match admin::request(ADMIN, "GET", "/metrics")
                        .and_then(admin::Response::body_if_ok)
                    {
                        Ok(text) => {
                            for g in gauges {
                                let v = metrics::sum(&text, g, &[]);
                                let e = s.max.entry(g).or_default();
                                *e = (*e).max(v);
                            }
                        }
                        Err(_) => s.admin_failures += 1,
                    }
                }
                thread::sleep(Duration::from_millis(100));
            }
            s
        };
        let handle = match admin {
            Some(ns) => ns.spawn_thread(body),
            None => thread::spawn(move || Ok(body())),
        };
        Self { stop, handle }
    }

    fn finish(self) -> Sampled {
        self.stop.store(true, Ordering::Relaxed);
        match self.handle.join() {
            Ok(r) => or_panic(r.context("monitor")),
            Err(_) => panic!("the monitor thread panicked"),
        }
    }
}

/// A daemon's memory now, or a panic saying it is gone.
fn memory(p: &Process) -> Memory {
    or_panic(p.memory())
}

// ---- the attack ---------------------------------------------------------------------------

/// Starts listening for the session on the attacker's host.
fn sniff(atk: &Host, encap: Encap, source: Ipv4Addr, group: Ipv4Addr, seed: u64) -> Sniffer {
    or_panic(Sniffer::start(
        &atk.ns,
        SniffConfig {
            encap,
            me: atk.addr(),
            source,
            group,
            dport: PORT,
            seed,
        },
    ))
}

/// Runs `plan` from `atk` against `session`; prints what was sent.
fn attack(
    atk: &Host,
    encap: Encap,
    session: Session,
    sniffer: &Sniffer,
    seed: u64,
    plan: &[Wave],
) -> Tally {
    let cfg = AttackConfig {
        encap,
        me: atk.addr(),
        session,
        seed,
        pps: PPS,
    };
    let tally = or_panic(craft::run(&atk.ns, &cfg, &sniffer.edges(), plan).context("attack"));
    eprintln!(
        "attack (seed {seed:#x}) on {}: {} packets in {:?} ({} refused by the kernel, sent as IP \
         fragments {:?}); by kind {:?}; malformed by reason {:?}",
        session.tsi,
        tally.total(),
        tally.elapsed,
        tally.refused,
        tally.fragmented,
        tally.sent,
        tally.malformed
    );
    tally
}

/// Every malformation but those of `skip`, `each` packets of each, every truncation of the
/// templates `rounds` times, and `random` packets of random bytes, to `to`.
fn garbage(to: To, each: usize, rounds: usize, random: usize, skip: &[Malformation]) -> Vec<Wave> {
    let mut w: Vec<Wave> = Malformation::ALL
        .iter()
        .filter(|m| !skip.contains(m))
        .map(|&m| Wave::new(Attack::Malformed(m), each, to))
        .collect();
    // The three truncation templates are 176 bytes long together (craft's unit tests).
    w.push(Wave::new(Attack::Truncations, 176 * rounds, to));
    w.push(Wave::new(Attack::RandomBytes, random, to));
    w
}

/// Each reason of the malformed packets sent is counted, at most as often as sent, and in
/// all at least half of them (the rest may be lost in socket buffers).
fn check_malformed(c: &mut Checks, who: &str, tally: &Tally, counted: impl Fn(&str) -> u64) {
    let table: Vec<(&str, u64, u64)> = tally
        .malformed
        .iter()
        .map(|(&r, &sent)| (r, sent, counted(r)))
        .collect();
    eprintln!("{who}: malformed packets (reason, sent, counted): {table:?}");
    for &(reason, sent, n) in &table {
        c.within(
            &format!("{who}: malformed packets counted as {reason}"),
            n,
            1,
            sent,
        );
    }
    let sent: u64 = table.iter().map(|t| t.1).sum();
    let total: u64 = table.iter().map(|t| t.2).sum();
    c.within(
        &format!("{who}: malformed packets counted in all"),
        total,
        sent / 2,
        sent,
    );
}

// ---- LAN scenarios: receiver and sender ---------------------------------------------------

/// One LAN (bridge `br0` in namespace `sw`), hosts on `10.B.1.0/24`: `src` .2, `rcv` .11,
/// `dcy` .12, `atk` .66.
struct Lan {
    lab: Lab,
    b: AddrBlock,
    src: Host,
    rcv: Host,
    dcy: Host,
    atk: Host,
}

fn lan(tag: &str) -> Result<Lan> {
    let lab = Lab::new(tag)?;
    let b = lab.block();
    let sw = lab.add_ns("sw")?;
    lab.add_bridge(&sw, "br0", false)?;
    let host = |name: &str, h: u8| -> Result<Host> {
        let ns = lab.add_ns(name)?;
        let port = format!("p-{name}");
        lab.add_veth(&ns, "eth0", &sw, &port)?;
        lab.bridge_attach(&sw, "br0", &port)?;
        let addr = b.addr(1, h);
        lab.add_addr(&ns, "eth0", addr, 24)?;
        lab.route_dev(&ns, "224.0.0.0/4", "eth0")?;
        Ok(Host {
            ns,
            iface: Iface {
                name: "eth0".to_owned(),
                addr,
                prefix_len: 24,
            },
            gateway: addr,
        })
    };
    let (src, rcv, dcy, atk) = (
        host("src", 2)?,
        host("rcv", 11)?,
        host("dcy", 12)?,
        host("atk", 66)?,
    );
    Ok(Lan {
        lab,
        b,
        src,
        rcv,
        dcy,
        atk,
    })
}

fn receiver_plan() -> Vec<Wave> {
    let g = To::Group;
    let mut plan = garbage(g, 100, 3, 1000, &[]);
    plan.extend([
        Wave::new(Attack::FakeSources, 3000, g),
        Wave::new(Attack::FakeFin, 500, g),
        Wave::new(Attack::FakeRst, 500, g),
        Wave::new(Attack::SpoofFin, 500, g),
        Wave::new(Attack::SpoofRst, 500, g),
        Wave::new(Attack::SpoofData, 1000, g),
        Wave::new(Attack::SpoofRepair, 1000, g),
        Wave::new(Attack::FarAhead, 600, g),
        Wave::new(Attack::FarBehind, 600, g),
        Wave::new(Attack::WideWindow, 600, g),
        Wave::new(Attack::FlippedSqn, 600, g),
        Wave::new(Attack::Fragments, 600, g),
        Wave::new(Attack::OddOptions, 600, g),
        Wave::new(Attack::WindowStretch, 1000, g),
        Wave::new(Attack::NakRandom, 1000, g),
        Wave::new(Attack::NakFakeTsi, 500, g),
        Wave::new(Attack::Ncf, 1000, g),
        Wave::new(Attack::Spmr, 500, g),
        Wave::new(Attack::Poll, 500, g),
        Wave::new(Attack::Polr, 300, g),
        Wave::new(Attack::FakeSession, 1200, g),
    ]);
    plan
}

/// `pgm recv` under attack on its LAN: the transfer's receiver (it takes the first session
/// heard, the real one) and a decoy that took the attacker's made-up session (`--tsi`), the
/// case of a receiver that trusts a fake source.
fn receiver_scenario(tag: &str, encap: Encap, seed: u64) {
    let t0 = Instant::now();
    let lan = or_panic(lan(tag));
    let lab = &lan.lab;
    let pgm = or_panic(bins::cargo_bin("pgm-core", "pgm"));
    let group = lan.b.group(1);
    let data = write_data(lab, seed);
    let out = lab.file("received", "bin");
    let fake = craft::fake_session_tsi(seed);
    let fake_s = fake.to_string();

    let rcv = spawn_pgm(
        lab,
        &lan.rcv.ns,
        &recv_cmd(
            &pgm,
            encap,
            lan.rcv.addr(),
            group,
            (&out, Some(COUNT), 20),
            &[],
        ),
    );
    let dcy = spawn_pgm(
        lab,
        &lan.dcy.ns,
        &recv_cmd(
            &pgm,
            encap,
            lan.dcy.addr(),
            group,
            (Path::new("/dev/null"), None, 8),
            &["--tsi", &fake_s],
        ),
    );
    let sniffer = sniff(&lan.atk, encap, lan.src.addr(), group, seed);
    thread::sleep(Duration::from_millis(1500));
    let snd = spawn_pgm(
        lab,
        &lan.src.ns,
        &send_cmd(&pgm, encap, lan.src.addr(), group, &data),
    );
    or_panic(rcv.wait_for_output("started", Duration::from_secs(10)));
    let session = or_panic(sniffer.session(Duration::from_secs(10)));
    let mon = Monitor::start(None, vec![rcv.pid(), dcy.pid()], &[]);

    let tally = attack(&lan.atk, encap, session, &sniffer, seed, &receiver_plan());

    let delivered = wait_delivered(&rcv, Duration::from_secs(60));
    let _ = snd.wait_timeout(Duration::from_secs(20));
    let _ = dcy.wait_timeout(Duration::from_secs(15));
    let sampled = mon.finish();
    let heard = or_panic(sniffer.stop());
    let rcv_err = rcv.stderr().unwrap_or_default();
    let dcy_err = dcy.stderr().unwrap_or_default();
    let rc = recv_counters(&rcv_err);
    let dc = recv_counters(&dcy_err);
    let rcv_hwm = get_pid(&sampled.hwm_kib, rcv.pid());
    let dcy_hwm = get_pid(&sampled.hwm_kib, dcy.pid());
    eprintln!(
        "{tag}: receiver {} ({rcv_hwm} KiB peak): {rc:?}\n{tag}: decoy {} ({dcy_hwm} KiB peak): \
         {dc:?}\n{tag}: addressed to the attacker: {heard:?}\n{tag}: {} monitor samples; \
         {:?} in all",
        ended(&rcv),
        ended(&dcy),
        sampled.samples,
        t0.elapsed()
    );

    let mut c = Checks::default();
    c.check(delivered.is_ok(), || {
        format!(
            "the receiver did not complete: {}",
            delivered
                .as_ref()
                .err()
                .map_or(String::new(), |e| format!("{e:#}"))
        )
    });
    let same = compare_files(&data, &out);
    c.check(same.is_ok(), || {
        format!(
            "the received data differs from the sent: {}",
            same.as_ref().err().map_or("", String::as_str)
        )
    });
    c.check(sampled.samples >= 10, || {
        format!("only {} memory samples", sampled.samples)
    });
    c.within("receiver peak RSS (KiB)", rcv_hwm, 1, RECV_HWM_KIB);
    c.within("decoy receiver peak RSS (KiB)", dcy_hwm, 1, RECV_HWM_KIB);
    // The decoy may end with an error (its made-up session loses data on purpose), but not
    // by a signal or a panic.
    let dcy_status = dcy.try_wait().ok().flatten();
    c.check(
        dcy_status.is_none_or(|s| s.code().is_some()) && !dcy_err.contains("panicked"),
        || {
            format!(
                "the decoy receiver died: {}; {}",
                ended(&dcy),
                last_lines(&dcy_err, 5)
            )
        },
    );

    // Counted by reason, at the transfer's receiver.
    check_malformed(&mut c, "receiver", &tally, |r| {
        get(&rc, &format!("malformed.{r}"))
    });
    // ODATA and SPMs of made-up TSIs: sessions the receiver does not take.
    let fake_sure = tally.sum(&["fake_sources", "fake_fin", "fake_rst", "window_stretch"]);
    let fake_max = fake_sure + tally.sum(&["odd_options", "fake_session"]);
    c.within(
        "receiver: other_sessions",
        get(&rc, "other_sessions"),
        fake_sure / 2,
        fake_max,
    );
    // ODATA, SPMs and POLLs of the real TSI from the attacker's address.
    let spoof_sure = tally.sum(&[
        "spoof_fin",
        "spoof_rst",
        "spoof_data",
        "wide_window",
        "poll",
    ]);
    let spoof_max = spoof_sure
        + tally.sum(&[
            "far_ahead",
            "far_behind",
            "flipped_sqn",
            "fragments",
            "odd_options",
        ]);
    c.within(
        "receiver: wrong_source",
        get(&rc, "wrong_source"),
        spoof_sure / 2,
        spoof_max,
    );
    // NAKs of made-up TSIs.
    let nak_fake = tally.of("nak_fake_tsi");
    c.within(
        "receiver: no_session",
        get(&rc, "no_session"),
        nak_fake / 2,
        nak_fake,
    );
    // RDATA of the real TSI 2^30 ahead (a third of far_ahead), and flipped high bytes.
    c.within(
        "receiver: beyond_window",
        get(&rc, "beyond_window"),
        1,
        tally.sum(&["far_ahead", "flipped_sqn", "spoof_repair", "fragments"]),
    );
    c.within("receiver: packets lost", get(&rc, "lost_packets"), 0, 0);
    // The decoy's made-up session: the far jump is held until a second packet agrees, the
    // contradictory fragments are refused.
    c.check(get(&dc, "jumps_held") > 0, || {
        format!("decoy: no jump held: {dc:?}")
    });
    c.check(get(&dc, "bad_fragments") > 0, || {
        format!("decoy: no bad fragment counted: {dc:?}")
    });
    // Receivers answer POLLs only from their session's source (§7.1): the attacker's POLLs
    // of the real session draw no POLR.
    c.within(
        "POLRs of the real session sent to the attacker",
        heard_of(&heard, "polr/session"),
        0,
        0,
    );
    c.finish(tag);
}

/// The JSON object (text) of `json` that directly holds `"key":"value"`, found by brace
/// matching (the admin APIs' strings hold no braces).
fn object_with<'a>(json: &'a str, key: &str, value: &str) -> Option<&'a str> {
    let at = json.find(&format!("\"{key}\":\"{value}\""))?;
    let mut depth = 0i32;
    let start = json[..at].char_indices().rev().find_map(|(i, c)| {
        match c {
            '}' => depth += 1,
            '{' if depth == 0 => return Some(i),
            '{' => depth -= 1,
            _ => {}
        }
        None
    })?;
    let mut depth = 0i32;
    let end = json[start..].char_indices().find_map(|(i, c)| {
        match c {
            '{' => depth += 1,
            '}' if depth == 1 => return Some(start + i + 1),
            '}' => depth -= 1,
            _ => {}
        }
        None
    })?;
    Some(&json[start..end])
}

/// The string value of `key` in a JSON object's text (`None` if absent or not a string).
fn string_field<'a>(object: &'a str, key: &str) -> Option<&'a str> {
    let (_, rest) = object.split_once(&format!("\"{key}\":\""))?;
    rest.split('"').next()
}

fn get_pid(m: &BTreeMap<u32, u64>, pid: u32) -> u64 {
    m.get(&pid).copied().unwrap_or(0)
}

fn heard_of(h: &Heard, key: &str) -> u64 {
    h.get(key).copied().unwrap_or(0)
}

/// What was heard of `key` (`"<type>/<whose>"`) per sender, named by `names`.
fn senders_of(h: &Heard, key: &str, names: &[(Ipv4Addr, &str)]) -> Vec<String> {
    let prefix = format!("{key}@");
    h.iter()
        .filter_map(|(k, n)| {
            let addr = k.strip_prefix(&prefix)?;
            let name = names
                .iter()
                .find(|(a, _)| a.to_string() == addr)
                .map_or(addr, |(_, name)| name);
            Some(format!("{n} from {name}"))
        })
        .collect()
}

fn last_lines(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join(" | ")
}

#[test]
fn receiver_under_attack_pgm_ip() {
    if lab::skip_without_root("receiver_under_attack_pgm_ip") {
        return;
    }
    receiver_scenario("advrcvip", Encap::Ip, 0xAD50_0001);
}

#[test]
fn receiver_under_attack_pgm_udp() {
    if lab::skip_without_root("receiver_under_attack_pgm_udp") {
        return;
    }
    receiver_scenario("advrcvudp", Encap::UDP, 0xAD50_0002);
}

fn sender_plan(source: Ipv4Addr) -> Vec<Wave> {
    let s = To::Unicast(source);
    let mut plan = garbage(s, 100, 3, 1000, &[]);
    plan.extend([
        Wave::new(Attack::NakRandom, 4000, s),
        Wave::new(Attack::NakInWindow, 200, s),
        Wave::new(Attack::NakFar, 900, s),
        Wave::new(Attack::NakFakeTsi, 1000, s),
        Wave::new(Attack::Nnak, 500, s),
        Wave::new(Attack::Spmr, 3000, s),
        Wave::new(Attack::Polr, 300, s),
        Wave::new(Attack::Ncf, 300, s),
        Wave::new(Attack::SpoofData, 300, s),
        Wave::new(Attack::OddOptions, 300, s),
        Wave::new(Attack::Ack, 2000, s),
    ]);
    plan
}

/// `pgm send` under attack from its LAN: NAKs, SPMRs and garbage sent to it.
fn sender_scenario(tag: &str, encap: Encap, seed: u64) {
    let t0 = Instant::now();
    let lan = or_panic(lan(tag));
    let lab = &lan.lab;
    let pgm = or_panic(bins::cargo_bin("pgm-core", "pgm"));
    let group = lan.b.group(1);
    let data = write_data(lab, seed);
    let out = lab.file("received", "bin");
    let rcv = spawn_pgm(
        lab,
        &lan.rcv.ns,
        &recv_cmd(
            &pgm,
            encap,
            lan.rcv.addr(),
            group,
            (&out, Some(COUNT), 20),
            &[],
        ),
    );
    let sniffer = sniff(&lan.atk, encap, lan.src.addr(), group, seed);
    thread::sleep(Duration::from_millis(1500));
    let started = Instant::now();
    let snd = spawn_pgm(
        lab,
        &lan.src.ns,
        &send_cmd(&pgm, encap, lan.src.addr(), group, &data),
    );
    or_panic(rcv.wait_for_output("started", Duration::from_secs(10)));
    let session = or_panic(sniffer.session(Duration::from_secs(10)));
    let mon = Monitor::start(None, vec![snd.pid()], &[]);

    let tally = attack(
        &lan.atk,
        encap,
        session,
        &sniffer,
        seed,
        &sender_plan(lan.src.addr()),
    );

    let delivered = wait_delivered(&rcv, Duration::from_secs(60));
    let send_status = snd.wait_timeout(Duration::from_secs(30)).ok().flatten();
    let send_secs = started.elapsed().as_secs_f64();
    let sampled = mon.finish();
    let heard = or_panic(sniffer.stop());
    let snd_err = snd.stderr().unwrap_or_default();
    let sc = send_counters(&snd_err);
    let rc = recv_counters(&rcv.stderr().unwrap_or_default());
    let hwm = get_pid(&sampled.hwm_kib, snd.pid());
    eprintln!(
        "{tag}: sender {} after {send_secs:.1} s ({hwm} KiB peak): {sc:?}\n{tag}: receiver {}: \
         {rc:?}\n{tag}: addressed to the attacker: {heard:?}\n{tag}: {:?} in all",
        ended(&snd),
        ended(&rcv),
        t0.elapsed()
    );

    let mut c = Checks::default();
    c.check(send_status.is_some_and(|s| s.success()), || {
        format!(
            "the sender did not exit 0: {}; {}",
            ended(&snd),
            last_lines(&snd_err, 5)
        )
    });
    c.within(
        "sender: messages sent",
        get(&sc, "messages"),
        COUNT as u64,
        COUNT as u64,
    );
    c.check(delivered.is_ok(), || {
        format!(
            "the receiver did not complete: {}",
            delivered
                .as_ref()
                .err()
                .map_or(String::new(), |e| format!("{e:#}"))
        )
    });
    let same = compare_files(&data, &out);
    c.check(same.is_ok(), || {
        format!(
            "the received data differs from the sent: {}",
            same.as_ref().err().map_or("", String::as_str)
        )
    });
    c.within("sender peak RSS (KiB)", hwm, 1, SEND_HWM_KIB);
    // The real session's NAKs are counted; RDATA and NCFs answer only those for data in the
    // window (the in-window NAKs, the flipped low byte of NakFar, the receiver's own).
    let real_naks = tally.sum(&["nak_random", "nak_in_window", "nak_far"]);
    let own = get(&rc, "naks");
    c.within(
        "sender: NAKs received",
        get(&sc, "naks"),
        real_naks / 2,
        real_naks + own + 50,
    );
    let repairable =
        tally.of("nak_in_window") + tally.of("nak_far") / 12 + get(&rc, "nak_sqns") + 50;
    c.within("sender: RDATA sent", get(&sc, "rdata"), 0, repairable);
    c.within("sender: NCFs sent", get(&sc, "ncfs"), 0, repairable);
    // SPMRs are answered at most once per IHB_MIN (50 ms, §13.4), besides the heartbeat
    // (at most one per IHB_MIN too) and the ambient SPMs.
    let spm_bound = 10 + (40.0 * send_secs) as u64;
    c.within("sender: SPMs sent", get(&sc, "spms"), 1, spm_bound);
    // PGMCC: forged feedback, ACKs for data never sent and ACKs without feedback are
    // refused (three quarters of the ACK wave, less what the sniffer's window estimate got
    // wrong); the attacker, as itself, gets elected and then falls silent: the session goes
    // on after at most a few timeouts, without it (it is held off for 30 s).
    let acks = tally.of("ack");
    c.within(
        "sender: PGMCC ACKs refused",
        get(&sc, "acks_invalid"),
        acks / 2,
        acks,
    );
    c.within(
        "sender: PGMCC ackers dropped",
        get(&sc, "ackers_dropped"),
        0,
        3,
    );
    c.finish(tag);
}

#[test]
fn sender_under_attack_pgm_ip() {
    if lab::skip_without_root("sender_under_attack_pgm_ip") {
        return;
    }
    sender_scenario("advsndip", Encap::Ip, 0xAD50_0003);
}

#[test]
fn sender_under_attack_pgm_udp() {
    if lab::skip_without_root("sender_under_attack_pgm_udp") {
        return;
    }
    sender_scenario("advsndudp", Encap::UDP, 0xAD50_0004);
}

// ---- the router ---------------------------------------------------------------------------

on_each_plane!(router_nak_flood_not_reflected, |plane| router_scenario(
    plane
));

const R2_GAUGES: &[&str] = &["pgm_router_repair_states", "pgm_router_tsis"];

fn router_plan(r2: Ipv4Addr) -> Vec<Wave> {
    let u = To::Unicast(r2);
    let g = To::Group;
    // ODATA without checksum: a router does not process ODATA sent to it (it is counted as
    // ignored), and the reason applies to data only.
    let mut plan = garbage(u, 100, 3, 1000, &[Malformation::NoChecksum]);
    plan.extend([
        Wave::new(Attack::NakRandom, 6000, u),
        Wave::new(Attack::NakFar, 1200, u),
        Wave::new(Attack::NakInWindow, 150, u),
        Wave::new(Attack::NakFakeTsi, 2000, u),
        Wave::new(Attack::Nnak, 500, u),
        Wave::new(Attack::Polr, 300, u),
        Wave::new(Attack::Spmr, 300, u),
        Wave::new(Attack::Ncf, 500, g),
        Wave::new(Attack::SpoofFin, 300, g),
        Wave::new(Attack::SpoofRst, 300, g),
        Wave::new(Attack::FakeSources, 1000, g),
        Wave::new(Attack::Poll, 300, g),
        Wave::new(Attack::OddOptions, 300, g),
    ]);
    plan
}

/// `pgm-routerd` on R2 with the attacker on LAN B: NAKs of the real TSI for random sequence
/// numbers (outside the source's window) must be neither confirmed with NCFs nor forwarded
/// upstream, and are counted as outside the window.
fn router_scenario(plane: Plane) {
    let t0 = Instant::now();
    let tag = format!("advrtr{}", &plane.name()[..1]);
    let seed = 0xAD50_0005;
    let topo = or_panic(RefTopology::build(&tag));
    let group = topo.group(1);
    let src = topo.source.addr();
    let pgm = or_panic(bins::cargo_bin("pgm-core", "pgm"));
    let base = RouterConfig::new()
        .mode("full")
        .dataplane(plane.name())
        .intercept("router-alert");
    let r1_cfg = topo.r1_config(&base, Some(group));
    let r2_cfg = topo.r2_config(&base, Some(group)).section(&format!(
        "[router.limits]\nmax_tsis = {R2_MAX_TSIS}\nmax_repair_states = {R2_MAX_REPAIR_STATES}\n"
    ));
    let routerd = Daemon::new(or_panic(bins::cargo_bin("pgm-router", "pgm-routerd")));
    let [_r1, r2] = or_panic(topo.start_routers(&routerd, &r1_cfg, &r2_cfg));
    let atk = topo.lan_b_receiver().clone();
    let sniffer = sniff(&atk, Encap::Ip, src, group, seed);
    let transfer = Transfer {
        pgm: &pgm,
        group,
        count: COUNT,
        size: SIZE,
    };
    let run = or_panic(transfer.start(
        &topo.lab,
        topo.lan_a_receivers(),
        &topo.source,
        (RATE, 5, 20),
        &[],
    ));
    let session = or_panic(sniffer.session(Duration::from_secs(10)));
    let m0 = or_panic(admin::get(&topo.r2.ns, ADMIN, "/metrics"));
    let mem0 = memory(&r2);
    let mon = Monitor::start(Some(&topo.r2.ns), vec![r2.pid()], R2_GAUGES);

    let r2_lanb = topo.r2_lan_b().addr;
    let tally = attack(
        &atk,
        Encap::Ip,
        session,
        &sniffer,
        seed,
        &router_plan(r2_lanb),
    );
    let during = admin::get(&topo.r2.ns, ADMIN, "/metrics");

    let delivered = run.wait(Duration::from_secs(60));
    let sampled = mon.finish();
    let heard = or_panic(sniffer.stop());
    let alive = r2.is_running();
    let m1 = admin::get(&topo.r2.ns, ADMIN, "/metrics");
    let state = admin::get(&topo.r2.ns, ADMIN, "/api/v1/state");
    let hwm = memory_of(r2.pid()).map_or(0, |m| m.hwm_kib);
    let m1s = m1.as_deref().unwrap_or("");
    let delta =
        |name: &str| metrics::sum(m1s, name, &[]).saturating_sub(metrics::sum(&m0, name, &[]));
    eprintln!(
        "{tag}: R2 {} (VmHWM {} KiB at session start, {hwm} KiB after); {sampled:?}\n{tag}: \
         addressed to the attacker: {heard:?}\n{tag}: {:?} in all",
        ended(&r2),
        mem0.hwm_kib,
        t0.elapsed()
    );
    for line in m1s.lines().filter(|l| {
        l.starts_with("pgm_router_")
            && !l.contains("traffic")
            && !l.contains(" 0")
            && !l.starts_with("pgm_router_interface")
    }) {
        eprintln!("  {line}");
    }

    let mut c = Checks::default();
    c.check(alive, || format!("pgm-routerd exited: {}", ended(&r2)));
    c.check(sampled.samples >= 10 && sampled.admin_failures == 0, || {
        format!(
            "/metrics failed in {} of {} samples during the attack",
            sampled.admin_failures, sampled.samples
        )
    });
    c.check(during.is_ok() && m1.is_ok() && state.is_ok(), || {
        format!("the admin API did not answer after the attack: {during:?} {m1:?} {state:?}")
    });
    c.check(delivered.is_ok(), || {
        format!(
            "the transfer did not complete: {}",
            delivered
                .as_ref()
                .err()
                .map_or(String::new(), |e| format!("{e:#}"))
        )
    });
    c.within(
        "R2 peak RSS growth (KiB)",
        hwm.saturating_sub(mem0.hwm_kib),
        0,
        DAEMON_GROWTH_KIB,
    );
    let max = |g: &str| sampled.max.get(g).copied().unwrap_or(0);
    c.within(
        "R2 repair states (max sampled)",
        max("pgm_router_repair_states"),
        0,
        R2_MAX_REPAIR_STATES,
    );
    c.within(
        "R2 TSIs (max sampled)",
        max("pgm_router_tsis"),
        0,
        R2_MAX_TSIS,
    );

    // Not reflected: the NAKs R2 may confirm and forward are those for data in the window
    // (the in-window NAKs, NakFar's flipped low byte), those within the router's slack past
    // the lead (`nak_window_slack`, 2^20 by default, as the router never sees ODATA: NakFar's
    // flipped second byte, within 65,280 of the lead, half the time above it), and the
    // receivers' own.
    let repairable = tally.of("nak_in_window") + tally.of("nak_far") / 12 * 2 + 50;
    c.within(
        "R2: NCFs sent during the attack",
        delta("pgm_router_ncfs_sent_total"),
        0,
        repairable,
    );
    c.within(
        "R2: NAKs forwarded upstream during the attack",
        delta("pgm_router_naks_forwarded_total"),
        0,
        repairable,
    );
    // Counted: NAKs outside the window (each NAK packet or each sequence number: a quarter
    // of NakRandom's carry 8 more), NAKs of TSIs without state, malformed packets.
    let outside = tally.of("nak_random") + tally.of("nak_far") * 11 / 12;
    let outside_sqns = tally.of("nak_random") * 3 + tally.of("nak_far");
    c.within(
        "R2: pgm_router_naks_outside_window_total",
        delta("pgm_router_naks_outside_window_total"),
        outside / 2,
        outside_sqns,
    );
    let nak_fake = tally.of("nak_fake_tsi");
    c.within(
        "R2: NAKs without state",
        delta("pgm_router_naks_no_state_total"),
        nak_fake / 2,
        nak_fake + 50,
    );
    // Spoofed SPMs of the real TSI from LAN B (a downstream interface, not the source's
    // address) must not move its upstream neighbour: R2 keeps NAKing R1, never the attacker.
    let real = session.tsi.to_string();
    let st = state.as_deref().unwrap_or("");
    let tsi_state = object_with(st, "tsi", &real);
    let (up, up_if) = tsi_state.map_or((None, None), |o| {
        (
            string_field(o, "upstream_neighbour"),
            string_field(o, "upstream_interface"),
        )
    });
    let r1 = topo.r1.downstream[0].addr.to_string();
    c.check(up == Some(r1.as_str()) && up_if == Some("to-r1"), || {
        format!("R2's upstream for the real TSI {real} is {up:?} on {up_if:?}, not {r1} on to-r1 (state: {})", tsi_state.unwrap_or("absent"))
    });
    c.within(
        "NAKs of the real session R2 sent to the attacker",
        heard_of(&heard, "nak/session"),
        0,
        0,
    );
    check_malformed(&mut c, "R2", &tally, |r| {
        metrics::sum(m1s, "pgm_router_malformed_packets_total", &[("reason", r)])
    });
    c.finish(&tag);
}

// ---- the DLR ------------------------------------------------------------------------------

on_each_plane!(dlr_made_up_sessions_and_garbage, |plane| dlr_scenario(
    plane
));

const DLR_GAUGES: &[&str] = &[
    "pgm_dlr_cache_bytes",
    "pgm_dlr_engines",
    "pgm_dlr_sessions",
    "pgm_dlr_tsi_routes",
];

/// `src - r1 - [transit bridge: r1, r2, dlr, atk] - r2 - lan - rcv`, as in dlr_repair.rs:
///
/// | link     | subnet      | addresses                                   |
/// |----------|-------------|---------------------------------------------|
/// | src - r1 | 10.B.1.0/24 | r1 `to-src` .1, src .2                      |
/// | transit  | 10.B.2.0/24 | r1 `tr` .1, r2 `tr` .2, dlr .3, atk .66     |
/// | lan      | 10.B.3.0/24 | r2 `lan` .1, rcv .11                        |
struct DlrTopo {
    lab: Lab,
    b: AddrBlock,
    src: Ns,
    r1: Ns,
    r2: Ns,
    dlr: Ns,
    rcv: Ns,
    atk: Host,
}

fn dlr_topo(tag: &str) -> Result<DlrTopo> {
    let lab = Lab::new(tag)?;
    let b = lab.block();
    let ns = |n: &str| lab.add_ns(n);
    let (src, r1, r2, sw, dlr, rcv, atk) = (
        ns("src")?,
        ns("r1")?,
        ns("r2")?,
        ns("sw")?,
        ns("dlr")?,
        ns("rcv")?,
        ns("atk")?,
    );
    lab.add_veth(&src, "eth0", &r1, "to-src")?;
    lab.add_bridge(&sw, "br0", false)?;
    for (n, i, p) in [
        (&r1, "tr", "p-r1"),
        (&r2, "tr", "p-r2"),
        (&dlr, "eth0", "p-dlr"),
        (&atk, "eth0", "p-atk"),
    ] {
        lab.add_veth(n, i, &sw, p)?;
        lab.bridge_attach(&sw, "br0", p)?;
    }
    lab.add_veth(&r2, "lan", &rcv, "eth0")?;
    for (n, i, s, h) in [
        (&src, "eth0", 1, 2),
        (&r1, "to-src", 1, 1),
        (&r1, "tr", 2, 1),
        (&r2, "tr", 2, 2),
        (&dlr, "eth0", 2, 3),
        (&atk, "eth0", 2, 66),
        (&r2, "lan", 3, 1),
        (&rcv, "eth0", 3, 11),
    ] {
        lab.add_addr(n, i, b.addr(s, h), 24)?;
    }
    lab.route_via(&src, &b.cidr(), b.addr(1, 1))?;
    lab.route_via(&rcv, &b.cidr(), b.addr(3, 1))?;
    for n in [&dlr, &atk] {
        lab.route_via(n, &b.subnet(1), b.addr(2, 1))?;
        lab.route_via(n, &b.subnet(3), b.addr(2, 2))?;
    }
    for n in [&src, &rcv, &dlr, &atk] {
        lab.route_dev(n, "224.0.0.0/4", "eth0")?;
    }
    lab.route_via(&r1, &b.subnet(3), b.addr(2, 2))?;
    lab.route_via(&r2, &b.subnet(1), b.addr(2, 1))?;
    lab.enable_forwarding(&r1)?;
    lab.enable_forwarding(&r2)?;
    let atk = Host {
        ns: atk,
        iface: Iface {
            name: "eth0".to_owned(),
            addr: b.addr(2, 66),
            prefix_len: 24,
        },
        gateway: b.addr(2, 1),
    };
    Ok(DlrTopo {
        lab,
        b,
        src,
        r1,
        r2,
        dlr,
        rcv,
        atk,
    })
}

fn dlr_plan(b: AddrBlock, dlr: Ipv4Addr) -> Vec<Wave> {
    let g = To::Group;
    let d = To::Unicast(dlr);
    let mut plan = garbage(g, 50, 2, 500, &[]);
    plan.extend(garbage(d, 50, 2, 500, &[]));
    plan.extend([
        Wave::new(Attack::FakeSources, 3000, g),
        Wave::new(Attack::WindowStretch, 1000, g),
        Wave::new(Attack::FakeSession, 600, g),
        Wave::new(Attack::SpoofData, 1000, g),
        Wave::new(Attack::SpoofRepair, 500, g),
        Wave::new(Attack::SpoofFin, 300, g),
        Wave::new(Attack::SpoofRst, 300, g),
        Wave::new(Attack::FarAhead, 300, g),
        Wave::new(Attack::FarBehind, 300, g),
        Wave::new(Attack::WideWindow, 300, g),
        Wave::new(Attack::FlippedSqn, 300, g),
        Wave::new(Attack::Fragments, 300, g),
        Wave::new(Attack::OddOptions, 300, g),
        Wave::new(Attack::Ncf, 300, g),
        Wave::new(Attack::PollDlr, 300, g),
        Wave::new(Attack::NakRandom, 2000, d),
        Wave::new(Attack::NakInWindow, 150, d),
        Wave::new(Attack::NakFakeTsi, 1000, d),
        Wave::new(Attack::Nnak, 300, d),
        Wave::new(Attack::PollDlr, 300, d),
        Wave::new(Attack::Polr, 300, d),
    ]);
    // Made-up sessions on six other groups: more engines than max_engines.
    for n in 10..16 {
        plan.push(Wave::new(
            Attack::FakeSources,
            200,
            To::Multicast(b.group(n)),
        ));
    }
    plan
}

/// `pgm-dlrd` serving every session of the transit LAN, the attacker on that LAN.
fn dlr_scenario(plane: Plane) {
    let t0 = Instant::now();
    let tag = format!("advdlr{}", &plane.name()[..1]);
    let seed = 0xAD50_0006;
    let topo = or_panic(dlr_topo(&tag));
    let b = topo.b;
    let group = b.group(1);
    let src = b.addr(1, 2);
    let pgm = or_panic(bins::cargo_bin("pgm-core", "pgm"));
    let routerd = Daemon::new(or_panic(bins::cargo_bin("pgm-router", "pgm-routerd")));
    let dlrd = Daemon::new(or_panic(bins::cargo_bin("pgm-dlr", "pgm-dlrd")));
    let r1_cfg = RouterConfig::new()
        .dataplane(plane.name())
        .interfaces(&["to-src", "tr"])
        .route(group, src, "to-src", &["tr"]);
    let r2_cfg = RouterConfig::new()
        .dataplane(plane.name())
        .interfaces(&["tr", "lan"])
        .route(group, src, "tr", &["lan"]);
    let dlr_cfg = format!(
        "[dlr]\ninterfaces = [\"eth0\"]\nserve = \"all\"\ncache_bytes = {DLR_CACHE_BYTES}\n\
         max_engines = {DLR_MAX_ENGINES}\nmax_sessions = {DLR_MAX_SESSIONS}\n[admin]\nlisten = \"{ADMIN}\"\n"
    );
    let start =
        |d: &Daemon, ns: &Ns, name: &str, toml: &str| or_panic(d.start(&topo.lab, ns, name, toml));
    let _r1 = start(&routerd, &topo.r1, "r1", &r1_cfg.to_string());
    let r2 = start(&routerd, &topo.r2, "r2", &r2_cfg.to_string());
    let dlr = start(&dlrd, &topo.dlr, "dlr", &dlr_cfg);
    let sniffer = sniff(&topo.atk, Encap::Ip, src, group, seed);
    let cap = or_panic(topo.lab.capture_pgm(&topo.dlr, "eth0"));

    let transfer = Transfer {
        pgm: &pgm,
        group,
        count: 5000,
        size: SIZE,
    };
    let rcv = spawn_pgm(&topo.lab, &topo.rcv, &transfer.recv_args(b.addr(3, 11), 20));
    thread::sleep(Duration::from_millis(1500));
    let sender = spawn_pgm(&topo.lab, &topo.src, &transfer.send_args(src, 500_000, 10));
    or_panic(rcv.wait_for_output("started", Duration::from_secs(10)));
    let loss = or_panic(
        topo.lab
            .add_loss(&topo.r2, &LossSpec::egress("lan", 5).only(Selector::Pgm)),
    );
    let session = or_panic(sniffer.session(Duration::from_secs(10)));
    let mem0 = memory(&dlr);
    let mon = Monitor::start(Some(&topo.dlr), vec![dlr.pid()], DLR_GAUGES);

    let tally = attack(
        &topo.atk,
        Encap::Ip,
        session,
        &sniffer,
        seed,
        &dlr_plan(b, b.addr(2, 3)),
    );
    let during = admin::get(&topo.dlr, ADMIN, "/metrics");

    let delivered = wait_delivered(&rcv, Duration::from_secs(90));
    let _ = sender.wait_timeout(Duration::from_secs(20));
    let sampled = mon.finish();
    let heard = or_panic(sniffer.stop());
    let alive = dlr.is_running();
    let m = admin::get(&topo.dlr, ADMIN, "/metrics");
    let state = admin::get(&topo.dlr, ADMIN, "/api/v1/state");
    let hwm = memory_of(dlr.pid()).map_or(0, |m| m.hwm_kib);
    let ms = m.as_deref().unwrap_or("");
    let metric = |name: &str| metrics::sum(ms, name, &[]);
    let dropped = loss.counters().map_or(0, |c| c.dropped);
    // What the others (source, routers, DLR) put on the transit LAN: all well-formed.
    let frames = or_panic(cap.stop_read_pgm());
    let mut others_malformed: BTreeMap<(Ipv4Addr, &str), u64> = BTreeMap::new();
    for f in frames.iter().filter(|f| f.src != topo.atk.addr()) {
        if let Err(e) = craft::classify(&f.pgm) {
            *others_malformed.entry((f.src, e.reason())).or_default() += 1;
        }
    }
    eprintln!(
        "{tag}: {} PGM frames captured at the DLR; malformed ones not from the attacker: {others_malformed:?}",
        frames.len()
    );
    eprintln!(
        "{tag}: DLR {} (VmHWM {} KiB at session start, {hwm} KiB after); {sampled:?}; {dropped} \
         dropped on R2's lan\n{tag}: addressed to the attacker: {heard:?}\n{tag}: {:?} in all",
        ended(&dlr),
        mem0.hwm_kib,
        t0.elapsed()
    );
    for line in ms
        .lines()
        .filter(|l| l.starts_with("pgm_dlr_") && !l.ends_with(" 0"))
    {
        eprintln!("  {line}");
    }

    let mut c = Checks::default();
    c.check(alive, || {
        format!(
            "pgm-dlrd exited: {}; {}",
            ended(&dlr),
            last_lines(&dlr.stderr().unwrap_or_default(), 5)
        )
    });
    c.check(sampled.samples >= 10 && sampled.admin_failures == 0, || {
        format!(
            "/metrics failed in {} of {} samples during the attack",
            sampled.admin_failures, sampled.samples
        )
    });
    c.check(during.is_ok() && m.is_ok() && state.is_ok(), || {
        format!("the admin API did not answer after the attack: {during:?} {m:?} {state:?}")
    });
    c.check(delivered.is_ok(), || {
        format!(
            "the transfer did not complete (verified against the sender's pattern): {}\nR2 log: {}",
            delivered
                .as_ref()
                .err()
                .map_or(String::new(), |e| format!("{e:#}")),
            last_lines(&r2.stderr().unwrap_or_default(), 5)
        )
    });
    c.within(
        "DLR peak RSS growth (KiB)",
        hwm.saturating_sub(mem0.hwm_kib),
        0,
        DAEMON_GROWTH_KIB,
    );
    let max = |g: &str| sampled.max.get(g).copied().unwrap_or(0);
    c.within(
        "DLR cache bytes (max sampled)",
        max("pgm_dlr_cache_bytes"),
        0,
        DLR_CACHE_BYTES,
    );
    c.within(
        "DLR engines (max sampled)",
        max("pgm_dlr_engines"),
        1,
        DLR_MAX_ENGINES,
    );
    c.within(
        "DLR sessions (max sampled)",
        max("pgm_dlr_sessions"),
        1,
        DLR_MAX_ENGINES * DLR_MAX_SESSIONS,
    );
    // Made-up sessions are refused or evicted, and counted.
    c.check(metric("pgm_dlr_engines_refused_total") > 0, || {
        "no engine refused for the six made-up groups".to_owned()
    });
    c.check(
        metric("pgm_dlr_sessions_refused_total") + metric("pgm_dlr_sessions_evicted_total") > 0,
        || "no made-up session refused or evicted".to_owned(),
    );
    // NAKs of made-up TSIs: not served.
    c.check(
        metric("pgm_dlr_ignored_total") + metric("pgm_dlr_unserved_packets_total") > 0,
        || "no NAK of a made-up TSI counted as ignored or unserved".to_owned(),
    );
    check_malformed(&mut c, "DLR", &tally, |r| {
        metrics::sum(ms, "pgm_dlr_malformed_packets_total", &[("reason", r)])
    });
    c.check(others_malformed.is_empty(), || {
        format!("malformed PGM packets on the transit LAN not sent by the attacker: {others_malformed:?}")
    });
    // Spoofed SPMs, NCFs and polls of the real session from the attacker's address must not
    // make the attacker the session's parent: the DLR keeps the session, its parent R1, and
    // sends no NAK or NNAK of it to the attacker.
    let real = session.tsi.to_string();
    let st = state.as_deref().unwrap_or("");
    let sess = object_with(st, "tsi", &real);
    let parent = sess.and_then(|o| string_field(o, "parent"));
    let r1 = b.addr(2, 1).to_string();
    c.check(parent == Some(r1.as_str()), || {
        format!(
            "the DLR's parent of the real session {real} is {parent:?}, not R1 {r1} (session: {})",
            sess.unwrap_or("absent")
        )
    });
    // Counted whoever sent them: R1 and R2 relay NAKs and NNAKs upstream, and would relay the
    // DLR's to the attacker if a spoofed SPM made it their upstream neighbour.
    let names = [
        (b.addr(2, 1), "R1"),
        (b.addr(2, 2), "R2"),
        (b.addr(2, 3), "the DLR"),
    ];
    let (naks, nnaks) = (
        heard_of(&heard, "nak/session"),
        heard_of(&heard, "nnak/session"),
    );
    c.check(naks + nnaks == 0, || {
        format!(
            "NAKs and NNAKs of the real session sent to the attacker: NAKs {:?}, NNAKs {:?}",
            senders_of(&heard, "nak/session", &names),
            senders_of(&heard, "nnak/session", &names),
        )
    });
    // It kept repairing the real session.
    c.check(dropped > 0, || "the loss rule dropped nothing".to_owned());
    c.check(metric("pgm_dlr_repairs_served_total") > 0, || {
        "the DLR served no repair under attack".to_owned()
    });
    c.finish(&tag);
}
