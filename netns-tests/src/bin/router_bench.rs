//! End-to-end benchmarks of `pgm-routerd` on the namespace lab (not timed tests):
//!
//! 1. **Forwarding throughput** through one router, `pgm-routerd` against kernel-only
//!    multicast routing, in the same run with interleaved repeats;
//! 2. **NAK-to-NCF latency** inside the router, from kernel timestamps of a capture on the
//!    router's downstream interface.
//!
//! ```text
//! cargo run --release -p pgm-netns-tests --bin router_bench -- \
//!     [--count N] [--sizes 64,1400] [--repeat K] [--modes kernel,nft,ra[,kjoin,knft]]
//!     [--senders udp,pgm] [--naks N] [--nak-rate PER_SEC] [--nak-modes nft,ra]
//!     [--nak-repeat K] [--src-rate BYTES_PER_SEC] [--no-throughput] [--no-latency]
//!     [--no-build] [--no-sysctl]
//! ```
//!
//! Needs root. It builds `pgm-routerd` and `pgm` in release mode first (`--no-build`: use
//! what is in `target/release`). Topology, one lab per router configuration:
//!
//! ```text
//!   src ---------------- r1 ---------------- rcv
//!   eth0 10.B.1.2   to-src .1   to-rcv 10.B.2.1   eth0 10.B.2.2
//! ```
//!
//! # Throughput
//!
//! Router configurations (`--modes`), all with the static route `(src, G)` from `to-src` to
//! `to-rcv`:
//!
//! - `kernel`: smcroute (Debian's `smcrouted`), no PGM daemon: the kernel-only baseline;
//! - `nft`: `pgm-routerd`, `mode = "full"`, `intercept = "nftables"` (the daemon owns the MFC;
//!   its nftables FORWARD rule stops every PGM type but ODATA for the group and logs those
//!   packets to the daemon over `nfnetlink_log`; no group is joined, so the kernel delivers no
//!   local copy of ODATA);
//! - `ra`: `pgm-routerd`, `mode = "full"`, `intercept = "router-alert"`;
//! - diagnostics, to attribute the cost of `nft`: `kjoin` is smcroute plus the
//!   membership-based intercept socket the daemon used before its tap
//!   (`pgm_core::net::router::RecvSocket::open`, kind `Intercept`) joined to the group on
//!   `to-src`, and no daemon; `knft` is smcroute plus the daemon's nftables table
//!   (`InterceptTable`, the group in its set), and no daemon.
//!
//! Senders (`--senders`), in-process threads inside the namespaces, `sendmmsg` in batches of
//! 64, no rate cap, multicast TTL 16:
//!
//! - `udp`: plain UDP multicast, the forwarding-only figure;
//! - `pgm`: PGM/IP ODATA from a raw `IPPROTO_PGM` socket (no Router Alert, as sources send
//!   ODATA), valid packets of one TSI built with `pgm_core::wire`, plus an SPM with Router
//!   Alert before the data and every 100 ms during it, so the daemon holds source path state
//!   and handles SPMs while ODATA goes through the kernel.
//!
//! The receiver (a thread in `rcv`, `recvmmsg`, 32 MiB receive buffer; a UDP socket, or a raw
//! PGM socket counting ODATA of the TSI) counts packets and payload bytes (UDP payload or
//! TSDU) and times the first to the last. On veth the whole path (veth, r1's forwarding,
//! veth, the receiver's socket queue) runs in the softirq of the sending thread, so the sender
//! thread's CPU time per packet (`CLOCK_THREAD_CPUTIME_ID`; this kernel has no separate IRQ
//! time accounting) is reported as well: it moves much less than rates do when other work
//! competes for the CPUs.
//!
//! `--recv busy` (the default) has the receiver poll with `MSG_DONTWAIT` and never sleep;
//! `--recv block` has it sleep in `recvmmsg` until a packet comes. With a sleeping receiver,
//! each packet that finds it asleep pays a cross-CPU wake-up in the sender's softirq, which
//! in this 2-vCPU guest costs more than the whole router (`perf`: `sock_def_readable` under
//! the sender's `sendmmsg`, 4 to 17 % of the samples); how often that happens depends on
//! whether the receiver keeps up, so a small change in the path's cost turns into a large
//! and unstable one in the rate. Polling takes that term out, so the figure is the path's.
//! Every configuration's lab is built once; for each repeat, sender and
//! size, the configurations run back to back, starting one further each repeat. Figures are
//! medians over repeats; the ratios are router / kernel-only.
//!
//! # NAK-to-NCF latency
//!
//! `pgm-routerd` (full mode, `--nak-modes`) on r1; `target/release/pgm send --ip` in `src` at
//! 500 kB/s (`--src-rate`) of 200-byte messages: a live session whose SPMs r1 forwards with its
//! downstream address in SPM_PATH. A thread in `rcv` joins the group with a raw PGM socket,
//! waits for an SPM whose SPM_PATH is r1's `to-rcv` address, then sends `--naks` NAKs at
//! `--nak-rate` per second, unicast to that address (as receivers do), each for a new sequence
//! number 64 behind the newest ODATA it has seen (inside the source's window, so the source
//! confirms and repairs them: repair state, NCF, NAK forwarded upstream, the source's NCF and
//! RDATA through the router). tcpdump on r1's `to-rcv` (nanosecond timestamps, filter NAK and
//! NCF) gives the time from each NAK entering the interface to the router's NCF for that
//! sequence number leaving it. The same thread also records, per NAK, the user-space send time
//! and the kernel receive timestamp (`SO_TIMESTAMPNS`) of the NCF at the receiver: a round trip
//! that adds the sender's syscall and two veth hops, as a cross-check. Each configuration runs
//! `--nak-repeat` times (a fresh lab each time), the configurations alternating; the report
//! gives each run and all runs of a configuration pooled.
//!
//! Socket buffers: `net.core.rmem_max`/`wmem_max` are global (read-only inside namespaces), so
//! they are raised to 32 MiB for the run if lower and restored afterwards (`--no-sysctl`: left
//! alone).

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use pgm_core::net::iface;
use pgm_core::net::router::{InterceptTable, RecvSocket, RecvSocketKind};
use pgm_core::wire::{Body, DataRepr, Gsi, NakRepr, Nla, OptionList, Repr, SpmRepr, Sqn, Tsi};
use pgm_netns_tests::bins::target_dir;
use pgm_netns_tests::daemon::{Daemon, RouterConfig};
use pgm_netns_tests::lab::{Lab, McRoute, Ns, Process, Smcroute, is_root, kernel_drops, read_pgm};
use pgm_netns_tests::mmsg::Mmsg;
use pgm_netns_tests::{admin, metrics};
use socket2::{Domain, Protocol, Socket, Type};

/// IP protocol number of PGM.
const IPPROTO_PGM: i32 = 113;
/// PGM type codes (§8).
const PGM_ODATA: u8 = 0x04;
const PGM_NAK: u8 = 0x08;
const PGM_NCF: u8 = 0x0a;
/// The IP Router Alert option (RFC 2113).
const ROUTER_ALERT: [u8; 4] = [0x94, 0x04, 0x00, 0x00];
/// The UDP port of the plain UDP sender.
const UDP_PORT: u16 = 5000;
/// The benchmark source's TSI and data-destination port.
const BENCH_GSI: Gsi = Gsi([0x62, 0x65, 0x6e, 0x63, 0x68, 0x31]);
/// The data-source port of the first run's session; every run starts a new session (TSI) on
/// the next port, so the daemon sees each run's SPMs in sequence.
const BENCH_SPORT: u16 = 4242;
const BENCH_DPORT: u16 = 7500;
/// PGM header + ODATA header.
const ODATA_OVERHEAD: usize = 24;
/// Multicast TTL of the senders (must survive one router).
const TTL: u32 = 16;
/// Datagrams per `sendmmsg`/`recvmmsg`.
const BATCH: usize = 64;
/// Socket buffers asked for (receivers; the senders' send buffers too). Large enough to hold
/// a few hundred milliseconds of traffic while a receiver thread waits for a CPU.
const RCVBUF: usize = 32 << 20;
/// How far behind the newest ODATA the NAK generator asks.
const NAK_BEHIND: u32 = 64;

// ---------------------------------------------------------------------------------------
// Clocks and small helpers

#[expect(
    clippy::disallowed_methods,
    reason = "a benchmark harness measures on the wall clock"
)]
fn now() -> Instant {
    Instant::now()
}

/// `clock` in nanoseconds.
fn clock_ns(clock: libc::clockid_t) -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into `ts`, which lives for the call.
    unsafe {
        libc::clock_gettime(clock, &mut ts);
    }
    ts.tv_sec * 1_000_000_000 + ts.tv_nsec
}

/// CLOCK_REALTIME in nanoseconds: the clock of pcap and `SO_TIMESTAMPNS` timestamps.
fn realtime_ns() -> i64 {
    clock_ns(libc::CLOCK_REALTIME)
}

/// CPU time of the calling thread, in nanoseconds. It includes the softirq work the kernel
/// does in the thread's context (the whole veth - router - veth path of a send) unless the
/// kernel accounts IRQ time separately (`CONFIG_IRQ_TIME_ACCOUNTING`) or defers the softirq
/// to ksoftirqd.
fn thread_cpu_ns() -> i64 {
    clock_ns(libc::CLOCK_THREAD_CPUTIME_ID)
}

fn median(v: &[f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// The value at quantile `q` (0..=1) of sorted `v`, nearest rank.
fn quantile(sorted: &[i64], q: f64) -> Option<i64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

fn parse_list<T: std::str::FromStr>(s: &str, what: &str) -> Result<Vec<T>> {
    s.split(',')
        .filter(|x| !x.trim().is_empty())
        .map(|x| {
            x.trim()
                .parse()
                .map_err(|_| anyhow::anyhow!("bad {what}: {x:?}"))
        })
        .collect()
}

fn fmt_pps(p: f64) -> String {
    if p >= 1e6 {
        format!("{:.2}M", p / 1e6)
    } else {
        format!("{:.1}k", p / 1e3)
    }
}

fn fmt_us(ns: i64) -> String {
    format!("{:.1} µs", ns as f64 / 1e3)
}

fn machine() -> String {
    let nproc = thread::available_parallelism().map_or(0, |n| n.get());
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or("unknown", |(_, m)| m.trim())
        .to_owned();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("nproc {nproc}, CPU {model}, kernel {}", kernel.trim())
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// Set by SIGINT or SIGTERM: every loop stops, so the labs are dropped (and cleaned up) and
/// the sysctls restored.
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

fn install_stop_handler() -> Result<()> {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: a zeroed sigaction is valid; the handler only stores to an atomic, which is
        // async-signal-safe.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_stop_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
            if libc::sigaction(sig, &sa, std::ptr::null_mut()) != 0 {
                return Err(os_err("sigaction"));
            }
        }
    }
    Ok(())
}

fn stopped() -> bool {
    STOP.load(Ordering::Relaxed)
}

fn check_stop() -> Result<()> {
    ensure!(!stopped(), "interrupted");
    Ok(())
}

fn os_err(what: &str) -> anyhow::Error {
    anyhow::Error::new(io::Error::last_os_error()).context(what.to_owned())
}

fn setsockopt_bytes(fd: RawFd, level: i32, name: i32, value: &[u8]) -> Result<()> {
    // SAFETY: the pointer and length describe `value`, which lives for the call.
    let r = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            value.as_ptr().cast(),
            value.len() as libc::socklen_t,
        )
    };
    if r != 0 {
        return Err(os_err("setsockopt"));
    }
    Ok(())
}

fn setsockopt_int(fd: RawFd, level: i32, name: i32, value: i32) -> Result<()> {
    setsockopt_bytes(fd, level, name, &value.to_ne_bytes())
}

// ---------------------------------------------------------------------------------------
// Options

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Mode {
    Kernel,
    Nft,
    Ra,
    KernelJoin,
    KernelNft,
}

impl Mode {
    fn parse(s: &str) -> Result<Self> {
        Ok(match s.trim() {
            "kernel" => Self::Kernel,
            "nft" | "nftables" => Self::Nft,
            "ra" | "router-alert" => Self::Ra,
            "kjoin" => Self::KernelJoin,
            "knft" => Self::KernelNft,
            x => bail!("unknown mode {x:?} (kernel, nft, ra, kjoin, knft)"),
        })
    }

    fn name(self) -> &'static str {
        match self {
            Self::Kernel => "kernel-only (smcroute)",
            Self::Nft => "pgm-routerd full, nftables",
            Self::Ra => "pgm-routerd full, router-alert",
            Self::KernelJoin => "kernel-only + intercept socket joined (no daemon)",
            Self::KernelNft => "kernel-only + nftables table (no daemon)",
        }
    }

    fn tag(self) -> &'static str {
        match self {
            Self::Kernel => "rbkern",
            Self::Nft => "rbnft",
            Self::Ra => "rbra",
            Self::KernelJoin => "rbkjoin",
            Self::KernelNft => "rbknft",
        }
    }

    /// The daemon's `intercept` setting, `None` without the daemon.
    fn intercept(self) -> Option<&'static str> {
        match self {
            Self::Kernel | Self::KernelJoin | Self::KernelNft => None,
            Self::Nft => Some("nftables"),
            Self::Ra => Some("router-alert"),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum SenderKind {
    Udp,
    Pgm,
}

impl SenderKind {
    fn name(self) -> &'static str {
        match self {
            Self::Udp => "UDP multicast",
            Self::Pgm => "PGM/IP ODATA",
        }
    }
}

struct Opts {
    count: u64,
    sizes: Vec<usize>,
    repeat: usize,
    modes: Vec<Mode>,
    senders: Vec<SenderKind>,
    naks: usize,
    nak_rate: f64,
    nak_modes: Vec<Mode>,
    nak_repeat: usize,
    src_rate: u64,
    throughput: bool,
    latency: bool,
    build: bool,
    sysctl: bool,
    verbose: bool,
    /// The receiver polls with `MSG_DONTWAIT` instead of sleeping in `recvmmsg`.
    recv_busy: bool,
}

const USAGE: &str = "\
usage: router_bench [--count N] [--sizes 64,1400] [--repeat K] [--modes kernel,nft,ra]
                    [--senders udp,pgm] [--naks N] [--nak-rate PER_SEC] [--nak-modes nft,ra]
                    [--nak-repeat K] [--src-rate BYTES_PER_SEC] [--no-throughput]
                    [--no-latency] [--no-build]
                    [--no-sysctl] [--verbose] [--recv busy|block]
Needs root. Progress on stderr, the report (markdown) on stdout.";

fn parse_opts(args: &[String]) -> Result<Opts> {
    let mut o = Opts {
        count: 300_000,
        sizes: vec![64, 1400],
        repeat: 5,
        modes: vec![Mode::Kernel, Mode::Nft, Mode::Ra],
        senders: vec![SenderKind::Udp, SenderKind::Pgm],
        naks: 5000,
        nak_rate: 500.0,
        nak_modes: vec![Mode::Nft, Mode::Ra],
        nak_repeat: 3,
        src_rate: 500_000,
        throughput: true,
        latency: true,
        build: true,
        sysctl: true,
        verbose: false,
        recv_busy: true,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut v = || it.next().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--count" => o.count = v()?.parse()?,
            "--sizes" | "--size" => o.sizes = parse_list(v()?, "size")?,
            "--repeat" => o.repeat = v()?.parse()?,
            "--modes" => {
                o.modes = v()?.split(',').map(Mode::parse).collect::<Result<_>>()?;
            }
            "--senders" => {
                o.senders = v()?
                    .split(',')
                    .map(|s| match s.trim() {
                        "udp" => Ok(SenderKind::Udp),
                        "pgm" => Ok(SenderKind::Pgm),
                        x => bail!("unknown sender {x:?} (udp, pgm)"),
                    })
                    .collect::<Result<_>>()?;
            }
            "--naks" => o.naks = v()?.parse()?,
            "--nak-rate" => o.nak_rate = v()?.parse()?,
            "--nak-modes" => {
                o.nak_modes = v()?.split(',').map(Mode::parse).collect::<Result<_>>()?;
            }
            "--nak-repeat" => o.nak_repeat = v()?.parse()?,
            "--src-rate" => o.src_rate = v()?.parse()?,
            "--no-throughput" => o.throughput = false,
            "--no-latency" => o.latency = false,
            "--no-build" => o.build = false,
            "--no-sysctl" => o.sysctl = false,
            "--verbose" => o.verbose = true,
            "--recv" => {
                o.recv_busy = match v()?.as_str() {
                    "busy" => true,
                    "block" => false,
                    x => bail!("unknown --recv {x:?} (busy, block)"),
                }
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            _ => bail!("unknown option {a}\n{USAGE}"),
        }
    }
    ensure!(
        o.count > 0 && o.repeat > 0,
        "--count and --repeat must be > 0"
    );
    ensure!(
        o.sizes.iter().all(|s| (8..=1400).contains(s)),
        "sizes must be 8..=1400 (one unfragmented datagram)"
    );
    ensure!(
        o.naks > 0 && o.nak_rate > 0.0 && o.nak_rate <= 20_000.0,
        "--naks must be > 0 and --nak-rate in (0, 20000]"
    );
    ensure!(
        o.nak_modes.iter().all(|m| m.intercept().is_some()),
        "--nak-modes: the latency benchmark needs the daemon (nft, ra)"
    );
    o.modes.dedup();
    o.senders.dedup();
    Ok(o)
}

// ---------------------------------------------------------------------------------------
// Socket buffer limits (global sysctls)

struct SysctlGuard {
    saved: Vec<(&'static str, String)>,
}

impl SysctlGuard {
    fn raise() -> Result<Self> {
        let mut g = Self { saved: Vec::new() };
        for key in ["rmem_max", "wmem_max"] {
            let path = format!("/proc/sys/net/core/{key}");
            let cur = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {path}"))?
                .trim()
                .to_owned();
            if cur.parse::<usize>().unwrap_or(0) >= RCVBUF {
                continue;
            }
            std::fs::write(&path, RCVBUF.to_string()).with_context(|| format!("writing {path}"))?;
            g.saved.push((key, cur));
        }
        Ok(g)
    }
}

impl Drop for SysctlGuard {
    fn drop(&mut self) {
        for (key, value) in self.saved.iter().rev() {
            let _ = std::fs::write(format!("/proc/sys/net/core/{key}"), value);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Topology and routing

struct Topo {
    lab: Lab,
    src: Ns,
    r1: Ns,
    rcv: Ns,
    src_addr: Ipv4Addr,
    r1_down: Ipv4Addr,
    rcv_addr: Ipv4Addr,
    group: Ipv4Addr,
}

fn build_topo(tag: &str) -> Result<Topo> {
    let lab = Lab::new(tag)?;
    let b = lab.block();
    let src = lab.add_ns("src")?;
    let r1 = lab.add_ns("r1")?;
    let rcv = lab.add_ns("rcv")?;
    lab.add_veth(&src, "eth0", &r1, "to-src")?;
    lab.add_veth(&r1, "to-rcv", &rcv, "eth0")?;
    let (src_addr, r1_up, r1_down, rcv_addr) =
        (b.addr(1, 2), b.addr(1, 1), b.addr(2, 1), b.addr(2, 2));
    lab.add_addr(&src, "eth0", src_addr, 24)?;
    lab.add_addr(&r1, "to-src", r1_up, 24)?;
    lab.add_addr(&r1, "to-rcv", r1_down, 24)?;
    lab.add_addr(&rcv, "eth0", rcv_addr, 24)?;
    lab.route_via(&src, &b.cidr(), r1_up)?;
    lab.route_via(&rcv, &b.cidr(), r1_down)?;
    lab.route_dev(&src, "224.0.0.0/4", "eth0")?;
    lab.route_dev(&rcv, "224.0.0.0/4", "eth0")?;
    lab.enable_forwarding(&r1)?;
    Ok(Topo {
        group: b.group(1),
        lab,
        src,
        r1,
        rcv,
        src_addr,
        r1_down,
        rcv_addr,
    })
}

/// What routes multicast on r1. Dropping it kills smcrouted or the daemon (as dropping the
/// lab would).
enum Routing {
    Kernel(
        #[expect(
            dead_code,
            reason = "held so that smcrouted runs until the bench is dropped"
        )]
        Smcroute,
    ),
    Daemon(Process),
}

struct Bins {
    routerd: PathBuf,
    pgm: PathBuf,
}

fn build_bins(o: &Opts) -> Result<Bins> {
    if o.build {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
        #[rustfmt::skip]
        let st = Command::new(cargo)
            .args(["build", "--release", "-p", "pgm-router", "--bin", "pgm-routerd",
                   "-p", "pgm-core", "--bin", "pgm"])
            .arg("--manifest-path")
            .arg(&manifest)
            .status()
            .context("running cargo build")?;
        ensure!(
            st.success(),
            "cargo build --release of pgm-routerd and pgm failed"
        );
    }
    let rel = target_dir().join("release");
    let b = Bins {
        routerd: rel.join("pgm-routerd"),
        pgm: rel.join("pgm"),
    };
    for p in [&b.routerd, &b.pgm] {
        ensure!(
            p.is_file(),
            "{} is missing: cargo build --release -p pgm-router -p pgm-core",
            p.display()
        );
    }
    Ok(b)
}

fn start_routing(t: &Topo, mode: Mode, bins: &Bins) -> Result<Routing> {
    let Some(intercept) = mode.intercept() else {
        let s = t.lab.start_smcroute(
            &t.r1,
            &[McRoute::sg("to-src", t.src_addr, t.group, &["to-rcv"])],
        )?;
        return Ok(Routing::Kernel(s));
    };
    let toml = RouterConfig::new()
        .mode("full")
        .intercept(intercept)
        .interfaces(&["to-src", "to-rcv"])
        .route(t.group, t.src_addr, "to-src", &["to-rcv"])
        .admin(admin::DEFAULT_LISTEN)
        .to_string();
    let p =
        Daemon::new(&bins.routerd)
            .cancel_if(stopped)
            .start(&t.lab, &t.r1, "routerd-r1", &toml)?;
    Ok(Routing::Daemon(p))
}

/// Packets counted by the drop rule of nftables table `table` in r1 (non-ODATA PGM kept from
/// the kernel's forwarding path).
fn nft_dropped(t: &Topo, table: &str) -> Option<u64> {
    let out = t
        .lab
        .exec(&t.r1, &["nft", "list", "chain", "ip", table, "forward"])
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .skip_while(|w| *w != "packets")
        .nth(1)
        .and_then(|n| n.parse().ok())
}

// ---------------------------------------------------------------------------------------
// Batched datagram I/O

// ---------------------------------------------------------------------------------------
// Throughput: senders and receiver

#[derive(Clone, Debug)]
struct SendStats {
    sent: u64,
    secs: f64,
    /// CPU time of the sending thread over the same interval.
    cpu_secs: f64,
}

#[derive(Clone, Debug)]
struct RecvStats {
    received: u64,
    bytes: u64,
    missing: u64,
    secs: f64,
}

fn raw_pgm_socket() -> Result<Socket> {
    Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(IPPROTO_PGM)))
        .context("raw IPPROTO_PGM socket (needs CAP_NET_RAW)")
}

fn emit(repr: &Repr<'_>, out: &mut [u8]) -> Result<usize> {
    repr.emit(out)
        .map_err(|e| anyhow::anyhow!("emitting {}: {e}", repr.packet_type()))
}

fn spm_repr(sport: u16, sqn: u32, lead: u32, path: Ipv4Addr) -> Repr<'static> {
    Repr {
        sport,
        dport: BENCH_DPORT,
        gsi: BENCH_GSI,
        parity: false,
        var_pktlen: false,
        body: Body::Spm(SpmRepr {
            sqn: Sqn(sqn),
            trail: Sqn(0),
            lead: Sqn(lead),
            path: Nla(IpAddr::V4(path)),
        }),
        options: OptionList::EMPTY,
    }
}

/// Sends `count` datagrams of `size` payload bytes to `group` from `bind`, as fast as
/// `sendmmsg` goes. PGM: ODATA sqn 0.. of the TSI (bench GSI, `sport`), with an SPM (Router
/// Alert) first, every 100 ms and last.
fn blast_send(
    kind: SenderKind,
    bind: Ipv4Addr,
    group: Ipv4Addr,
    sport: u16,
    count: u64,
    size: usize,
) -> Result<SendStats> {
    let sock = match kind {
        SenderKind::Udp => Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?,
        SenderKind::Pgm => raw_pgm_socket()?,
    };
    sock.set_multicast_if_v4(&bind)?;
    sock.set_multicast_ttl_v4(TTL)?;
    sock.set_multicast_loop_v4(false)?;
    sock.set_send_buffer_size(RCVBUF)?;
    sock.bind(&SocketAddrV4::new(bind, 0).into())?;
    let port = if kind == SenderKind::Udp { UDP_PORT } else { 0 };
    sock.connect(&SocketAddrV4::new(group, port).into())?;
    let fd = sock.as_raw_fd();

    // SPMs go on their own socket, with the Router Alert option.
    let spm_sock = raw_pgm_socket()?;
    spm_sock.set_multicast_if_v4(&bind)?;
    spm_sock.set_multicast_ttl_v4(TTL)?;
    spm_sock.set_multicast_loop_v4(false)?;
    spm_sock.bind(&SocketAddrV4::new(bind, 0).into())?;
    spm_sock.connect(&SocketAddrV4::new(group, 0).into())?;
    setsockopt_bytes(
        spm_sock.as_raw_fd(),
        libc::IPPROTO_IP,
        libc::IP_OPTIONS,
        &ROUTER_ALERT,
    )?;
    let mut spm_sqn = 0u32;
    let mut spm_buf = [0u8; 64];
    let mut send_spm = |lead: u32| -> Result<()> {
        let n = emit(&spm_repr(sport, spm_sqn, lead, bind), &mut spm_buf)?;
        spm_sqn = spm_sqn.wrapping_add(1);
        spm_sock.send(&spm_buf[..n]).context("sending an SPM")?;
        Ok(())
    };

    let payload = vec![0xa5u8; size];
    let len = match kind {
        SenderKind::Udp => size,
        SenderKind::Pgm => size + ODATA_OVERHEAD,
    };
    let mut m = Mmsg::new(BATCH, len);
    if kind == SenderKind::Pgm {
        for _ in 0..3 {
            send_spm(0)?;
            thread::sleep(Duration::from_millis(20));
        }
    }
    let t0 = now();
    let cpu0 = thread_cpu_ns();
    let mut last_spm = t0;
    let mut i = 0u64;
    while i < count {
        check_stop()?;
        let n = (count - i).min(BATCH as u64) as usize;
        for k in 0..n {
            let idx = i + k as u64;
            let slot = m.slot_mut(k);
            match kind {
                SenderKind::Udp => {
                    slot[..8].copy_from_slice(&idx.to_be_bytes()[..8.min(size)]);
                    slot[8..].copy_from_slice(&payload[8..]);
                }
                SenderKind::Pgm => {
                    let repr = Repr {
                        sport,
                        dport: BENCH_DPORT,
                        gsi: BENCH_GSI,
                        parity: false,
                        var_pktlen: false,
                        body: Body::Odata(DataRepr {
                            sqn: Sqn(idx as u32),
                            trail: Sqn(0),
                            payload: &payload,
                        }),
                        options: OptionList::EMPTY,
                    };
                    emit(&repr, slot)?;
                }
            }
        }
        m.send(fd, n, len)?;
        i += n as u64;
        if kind == SenderKind::Pgm && last_spm.elapsed() >= Duration::from_millis(100) {
            last_spm = now();
            send_spm((i - 1) as u32)?;
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    let cpu_secs = (thread_cpu_ns() - cpu0) as f64 / 1e9;
    if kind == SenderKind::Pgm {
        send_spm((count - 1) as u32)?;
    }
    Ok(SendStats {
        sent: i,
        secs,
        cpu_secs,
    })
}

/// What one run's receiver expects.
struct RecvJob {
    kind: SenderKind,
    /// The receiving interface's address, and the group joined there.
    bind: Ipv4Addr,
    group: Ipv4Addr,
    sport: u16,
    count: u64,
    size: usize,
    /// Poll instead of sleeping (`--recv busy`).
    busy: bool,
}

/// Receives what `blast_send` sends, until `count` arrived or nothing came for `idle` after
/// the first (or for 30 s before it). Sends `()` on `ready` once joined.
fn blast_recv(job: RecvJob, ready: &mpsc::Sender<()>) -> Result<RecvStats> {
    let RecvJob {
        kind,
        bind,
        group,
        sport,
        count,
        size,
        busy,
    } = job;
    let sock = match kind {
        SenderKind::Udp => {
            let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
            s.set_reuse_address(true)?;
            s.bind(&SocketAddrV4::new(group, UDP_PORT).into())?;
            s
        }
        SenderKind::Pgm => raw_pgm_socket()?,
    };
    sock.join_multicast_v4(&group, &bind)
        .with_context(|| format!("join {group} on {bind}"))?;
    sock.set_multicast_all_v4(false)?;
    sock.set_recv_buffer_size(RCVBUF)?;
    sock.set_read_timeout(Some(Duration::from_millis(50)))?;
    let fd = sock.as_raw_fd();
    // Raw sockets see the IP header; one spare byte reveals longer datagrams.
    let mut m = Mmsg::new(BATCH, size + ODATA_OVERHEAD + 60 + 1);
    let _ = ready.send(());

    let idle = Duration::from_millis(500);
    let t0 = now();
    let (mut received, mut bytes, mut next, mut missing) = (0u64, 0u64, 0u64, 0u64);
    let mut first: Option<Instant> = None;
    let mut last = t0;
    'outer: loop {
        check_stop()?;
        let n = m.recv(fd, busy)?;
        let t = now();
        if n == 0 {
            let quiet = match first {
                Some(_) => t.duration_since(last) > idle,
                None => t.duration_since(t0) > Duration::from_secs(30),
            };
            if quiet {
                break;
            }
            continue;
        }
        for k in 0..n {
            let d = m.received(k);
            let (idx, len) = match kind {
                SenderKind::Udp => {
                    if d.len() != size || size < 8 {
                        continue;
                    }
                    let mut b = [0u8; 8];
                    b.copy_from_slice(&d[..8]);
                    (u64::from_be_bytes(b), size)
                }
                SenderKind::Pgm => {
                    let Some((sqn, tsdu)) = odata_of_bench(d, sport) else {
                        continue;
                    };
                    (u64::from(sqn), tsdu)
                }
            };
            if first.is_none() {
                first = Some(t);
            }
            last = t;
            if idx > next {
                missing += idx - next;
            }
            next = next.max(idx + 1);
            received += 1;
            bytes += len as u64;
            if next >= count {
                break 'outer;
            }
        }
    }
    missing += count.saturating_sub(next);
    let secs = first.map_or(0.0, |f| last.duration_since(f).as_secs_f64());
    Ok(RecvStats {
        received,
        bytes,
        missing,
        secs,
    })
}

/// (sqn, TSDU length) of an ODATA packet of the bench TSI (port `sport`) in an IPv4
/// datagram.
fn odata_of_bench(ip: &[u8], sport: u16) -> Option<(u32, usize)> {
    let ihl = usize::from(*ip.first()? & 0x0f) * 4;
    let pgm = ip.get(ihl..)?;
    if pgm.len() < ODATA_OVERHEAD || pgm[4] != PGM_ODATA {
        return None;
    }
    if pgm[0..2] != sport.to_be_bytes() || pgm[8..14] != BENCH_GSI.0 {
        return None;
    }
    let tsdu = usize::from(u16::from_be_bytes([pgm[14], pgm[15]]));
    let sqn = u32::from_be_bytes([pgm[16], pgm[17], pgm[18], pgm[19]]);
    Some((sqn, tsdu))
}

// ---------------------------------------------------------------------------------------
// Throughput runs

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct Cell {
    sender: SenderKind,
    size: usize,
    mode: Mode,
}

/// `n` per second over `secs` (0 if no time passed).
fn per_sec(n: f64, secs: f64) -> f64 {
    if secs > 0.0 { n / secs } else { 0.0 }
}

#[derive(Clone, Debug)]
struct Outcome {
    recv: RecvStats,
    send: SendStats,
}

impl Outcome {
    fn pps(&self) -> f64 {
        per_sec(self.recv.received as f64, self.recv.secs)
    }

    fn mbps(&self) -> f64 {
        per_sec(self.recv.bytes as f64, self.recv.secs) / 1e6
    }

    fn send_pps(&self) -> f64 {
        per_sec(self.send.sent as f64, self.send.secs)
    }

    /// The sender thread's CPU time per packet, in µs.
    fn cpu_us(&self) -> f64 {
        if self.send.sent > 0 {
            self.send.cpu_secs * 1e6 / self.send.sent as f64
        } else {
            0.0
        }
    }
}

fn run_one(t: &Topo, sender: SenderKind, size: usize, count: u64, busy: bool) -> Result<Outcome> {
    static RUNS: AtomicU16 = AtomicU16::new(0);
    let sport = BENCH_SPORT.wrapping_add(RUNS.fetch_add(1, Ordering::Relaxed));
    let (ready_tx, ready_rx) = mpsc::channel();
    let (rcv_addr, group) = (t.rcv_addr, t.group);
    let rx = t.rcv.spawn_thread(move || {
        let job = RecvJob {
            kind: sender,
            bind: rcv_addr,
            group,
            sport,
            count,
            size,
            busy,
        };
        blast_recv(job, &ready_tx)
    });
    if ready_rx.recv_timeout(Duration::from_secs(10)).is_err() {
        let r = rx.join();
        bail!("receiver did not start: {r:?}");
    }
    // Let the join settle (IGMP report; nothing routes on it here, but be fair to all).
    thread::sleep(Duration::from_millis(50));
    let src_addr = t.src_addr;
    let tx = t
        .src
        .spawn_thread(move || blast_send(sender, src_addr, group, sport, count, size));
    let send = tx
        .join()
        .map_err(|_| anyhow::anyhow!("sender panicked"))???;
    let recv = rx
        .join()
        .map_err(|_| anyhow::anyhow!("receiver panicked"))???;
    ensure!(
        recv.received > 0,
        "nothing arrived at the receiver (sent {} in {:.2} s)",
        send.sent,
        send.secs
    );
    Ok(Outcome { recv, send })
}

#[derive(Default)]
struct ThroughputResults {
    runs: BTreeMap<Cell, Vec<Outcome>>,
    /// Per configuration: what the daemon's metrics (or the nftables counter) say afterwards.
    checks: Vec<String>,
    errors: Vec<String>,
}

/// What the diagnostic configurations add beside smcroute on r1.
enum Extra {
    None,
    /// The daemon's intercept socket (`RecvSocketKind::Intercept`), joined on `to-src`.
    Join(#[expect(dead_code, reason = "held so that the membership lasts")] RecvSocket),
    /// The daemon's nftables table, with the group in its set.
    Nft(InterceptTable),
}

/// One router configuration's lab, kept for the whole run.
struct Bench {
    mode: Mode,
    t: Topo,
    routing: Routing,
    extra: Extra,
}

/// The nftables table of the `knft` configuration (inside r1's namespace only).
const BENCH_NFT_TABLE: &str = "pgm_rbench";

fn setup_bench(mode: Mode, bins: &Bins) -> Result<Bench> {
    let t = build_topo(mode.tag())?;
    let routing = start_routing(&t, mode, bins)?;
    let group = t.group;
    let extra = match mode {
        Mode::KernelJoin => Extra::Join(t.r1.run(move || -> Result<RecvSocket> {
            let idx = iface::interfaces()?
                .into_iter()
                .find(|i| i.name == "to-src")
                .context("no to-src in r1")?
                .index;
            let s = RecvSocket::open(RecvSocketKind::Intercept)?;
            s.join(group, idx)?;
            Ok(s)
        })??),
        Mode::KernelNft => Extra::Nft(t.r1.run(move || -> Result<InterceptTable> {
            let mut n = InterceptTable::install(BENCH_NFT_TABLE, 113, false)?;
            n.update(&[group], &[])?;
            Ok(n)
        })??),
        _ => Extra::None,
    };
    Ok(Bench {
        mode,
        t,
        routing,
        extra,
    })
}

fn throughput(o: &Opts, bins: &Bins, res: &mut ThroughputResults) {
    let mut benches = Vec::new();
    for &mode in &o.modes {
        match setup_bench(mode, bins) {
            Ok(b) => benches.push(b),
            Err(e) => {
                eprintln!("{}: setup ERROR {e:#}", mode.name());
                res.errors.push(format!("{} setup: {e:#}", mode.name()));
            }
        }
    }
    let mut n = 0;
    'reps: for rep in 1..=o.repeat {
        for &sender in &o.senders {
            for &size in &o.sizes {
                // Every configuration back to back, starting one further each repeat.
                for k in 0..benches.len() {
                    if STOP.load(Ordering::Relaxed) {
                        res.errors.push("interrupted".to_owned());
                        break 'reps;
                    }
                    let b = &benches[(k + rep - 1) % benches.len()];
                    n += 1;
                    let label = format!(
                        "[{n}] rep {rep} {} {size} B, {}",
                        sender.name(),
                        b.mode.name()
                    );
                    match run_one(&b.t, sender, size, o.count, o.recv_busy) {
                        Ok(out) => {
                            eprintln!(
                                "{label}: received {}/{} ({} missing) in {:.3} s = {} pkt/s, \
                                 {:.1} MB/s; sender {} pkt/s, {:.2} µs CPU/pkt; load {}",
                                out.recv.received,
                                out.send.sent,
                                out.recv.missing,
                                out.recv.secs,
                                fmt_pps(out.pps()),
                                out.mbps(),
                                fmt_pps(out.send_pps()),
                                out.cpu_us(),
                                loadavg()
                            );
                            res.runs
                                .entry(Cell {
                                    sender,
                                    size,
                                    mode: b.mode,
                                })
                                .or_default()
                                .push(out);
                        }
                        Err(e) => {
                            eprintln!("{label}: ERROR {e:#}");
                            res.errors.push(format!("{label}: {e:#}"));
                        }
                    }
                }
            }
        }
    }
    for b in benches {
        match teardown(o, b) {
            Ok((note, problems)) => {
                eprintln!("  {note}");
                res.checks.push(note);
                res.errors.extend(problems);
            }
            Err(e) => res.errors.push(format!("teardown: {e:#}")),
        }
    }
}

/// Reads what the configuration did (daemon metrics, nftables counter), stops it and removes
/// its lab. Returns a note and the problems found (ODATA in user space, no SPM forwarded).
fn teardown(o: &Opts, b: Bench) -> Result<(String, Vec<String>)> {
    let Bench {
        mode,
        t,
        routing,
        extra,
    } = b;
    let mut problems = Vec::new();
    let note = match (&routing, &extra) {
        (Routing::Daemon(p), _) => {
            let m = admin::get(&t.r1, admin::DEFAULT_LISTEN, "/metrics")?;
            let slow = metrics::sum(&m, "pgm_router_odata_slow_path_total", &[]);
            let spms = metrics::sum(&m, "pgm_router_spms_forwarded_total", &[]);
            let spms_in = metrics::sum(&m, "pgm_router_spms_received_total", &[]);
            let odata_in = metrics::sum(
                &m,
                "pgm_router_received_packets_total",
                &[("type", "odata")],
            );
            let nft = if mode == Mode::Nft {
                format!(
                    "; its nftables rule kept {} non-ODATA PGM packets from the kernel's \
                     forwarding",
                    nft_dropped(&t, "pgm_routerd").map_or("?".to_owned(), |d| d.to_string())
                )
            } else {
                String::new()
            };
            let note = format!(
                "{}: the daemon received {spms_in} SPMs and forwarded {spms}; ODATA it saw \
                 {odata_in}, forwarded in user space {slow}{nft}",
                mode.name()
            );
            if o.senders.contains(&SenderKind::Pgm) && spms == 0 {
                problems.push(format!("{note}: the daemon forwarded no SPM"));
            }
            if slow > 0 {
                problems.push(format!("{note}: ODATA took the daemon's slow path"));
            }
            if let Err(e) = p.stop(Duration::from_secs(5)) {
                problems.push(format!("{}: stopping pgm-routerd: {e:#}", mode.name()));
            }
            note
        }
        (_, Extra::Nft(_)) => format!(
            "{}: the nftables rule kept {} non-ODATA PGM packets from the kernel's forwarding",
            mode.name(),
            nft_dropped(&t, BENCH_NFT_TABLE).map_or("?".to_owned(), |d| d.to_string())
        ),
        _ => format!("{}: no daemon", mode.name()),
    };
    if let Extra::Nft(mut n) = extra {
        // nft runs in the namespace of the thread that asks.
        t.r1.run(move || n.remove())??;
    }
    drop(routing);
    drop(t);
    Ok((note, problems))
}

fn throughput_report(o: &Opts, res: &ThroughputResults) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "| sender | size | router | received pkt/s (median) | MB/s (median) | vs kernel-only | \
         delivered | sender pkt/s (median) | sender CPU µs/pkt (median) | vs kernel-only, \
         by CPU | received pkt/s per run |"
    );
    let _ = writeln!(s, "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---|");
    let med = |cell: &Cell, f: fn(&Outcome) -> f64| -> Option<f64> {
        let v: Vec<f64> = res.runs.get(cell)?.iter().map(f).collect();
        median(&v)
    };
    let mut verdicts = Vec::new();
    for &sender in &o.senders {
        for &size in &o.sizes {
            let base = Cell {
                sender,
                size,
                mode: Mode::Kernel,
            };
            let base_pps = med(&base, Outcome::pps);
            let base_cpu = med(&base, Outcome::cpu_us);
            for &mode in &o.modes {
                let cell = Cell { sender, size, mode };
                let Some(runs) = res.runs.get(&cell) else {
                    continue;
                };
                let pps = med(&cell, Outcome::pps);
                let ratio = match (pps, base_pps) {
                    (Some(p), Some(b)) if mode != Mode::Kernel && b > 0.0 => Some(p / b),
                    _ => None,
                };
                let cpu = med(&cell, Outcome::cpu_us);
                // Packets per CPU-second relative to kernel-only: kernel's cost / this cost.
                let cpu_ratio = match (cpu, base_cpu) {
                    (Some(c), Some(b)) if mode != Mode::Kernel && c > 0.0 => Some(b / c),
                    _ => None,
                };
                if ratio.is_some() || cpu_ratio.is_some() {
                    verdicts.push((sender, size, mode, ratio, cpu_ratio));
                }
                let fmt_ratio = |r: Option<f64>| r.map_or(String::new(), |r| format!("{r:.3}"));
                let (ratio, cpu_ratio) = (fmt_ratio(ratio), fmt_ratio(cpu_ratio));
                let sent: u64 = runs.iter().map(|r| r.send.sent).sum();
                let got: u64 = runs.iter().map(|r| r.recv.received).sum();
                let per_run: Vec<String> = runs.iter().map(|r| fmt_pps(r.pps())).collect();
                let _ = writeln!(
                    s,
                    "| {} | {size} B | {} | {} | {} | {ratio} | {:.2}% | {} | {} | {cpu_ratio} | \
                     {} |",
                    sender.name(),
                    mode.name(),
                    pps.map_or("-".to_owned(), fmt_pps),
                    med(&cell, Outcome::mbps).map_or("-".to_owned(), |m| format!("{m:.1}")),
                    100.0 * got as f64 / sent.max(1) as f64,
                    med(&cell, Outcome::send_pps).map_or("-".to_owned(), fmt_pps),
                    cpu.map_or("-".to_owned(), |c| format!("{c:.2}")),
                    per_run.join(", ")
                );
            }
        }
    }
    s.push_str(
        "\nTarget: router / kernel-only >= 0.95 (medians of received pkt/s; and of packets per \
         sender CPU-second):\n",
    );
    let verdict = |r: Option<f64>| match r {
        Some(r) => format!("{r:.3} {}", if r >= 0.95 { "MET" } else { "MISSED" }),
        None => "-".to_owned(),
    };
    for (sender, size, mode, r, c) in &verdicts {
        let _ = writeln!(
            s,
            "- {} {size} B, {}: by rate {}; by CPU {}",
            sender.name(),
            mode.name(),
            verdict(*r),
            verdict(*c)
        );
    }
    if !res.checks.is_empty() {
        s.push_str("\nDaemon checks:\n");
        for c in &res.checks {
            let _ = writeln!(s, "- {c}");
        }
    }
    if !res.errors.is_empty() {
        s.push_str("\nErrors:\n");
        for e in &res.errors {
            let _ = writeln!(s, "- {e}");
        }
    }
    s
}

// ---------------------------------------------------------------------------------------
// NAK-to-NCF latency

/// One NAK sent by the generator.
#[derive(Clone, Debug)]
struct NakSent {
    sqn: u32,
    /// CLOCK_REALTIME just before `sendto`.
    sent_ns: i64,
    /// Kernel receive timestamp of the first NCF for `sqn` at the receiver.
    ncf_ns: Option<i64>,
}

#[derive(Debug)]
struct NakGenOut {
    naks: Vec<NakSent>,
    router: Ipv4Addr,
    spm_seen: u64,
    odata_seen: u64,
}

/// Receives one datagram (IP header included) without waiting: its length and its kernel
/// receive timestamp (`SO_TIMESTAMPNS`, CLOCK_REALTIME ns).
fn recv_with_ts(fd: RawFd, buf: &mut [u8]) -> io::Result<(usize, Option<i64>)> {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let mut control = [0u64; 32];
    // SAFETY: msghdr is plain old data; all-zero is a valid value.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = size_of_val(&control);
    // SAFETY: `msg` points at `iov` (over `buf`) and `control`, all alive for the call.
    let n = unsafe { libc::recvmsg(fd, &mut msg, libc::MSG_DONTWAIT) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut ts = None;
    // SAFETY: CMSG_FIRSTHDR/NXTHDR walk the control buffer the kernel filled, bounded by
    // msg_controllen; CMSG_DATA of a SCM_TIMESTAMPNS header holds one timespec, read
    // unaligned.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_TIMESTAMPNS {
                let t: libc::timespec =
                    std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<libc::timespec>());
                ts = Some(t.tv_sec * 1_000_000_000 + t.tv_nsec);
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    Ok((n as usize, ts))
}

/// Waits until `fd` is readable or `timeout` passes.
fn wait_readable(fd: RawFd, timeout: Duration) {
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: libc::c_long::from(timeout.subsec_nanos() as i32),
    };
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one pollfd and one timespec, both alive for the call; no signal mask.
    unsafe {
        libc::ppoll(&mut p, 1, &ts, std::ptr::null());
    }
}

/// Serial-number "a < b" (§3.1.3 style, 32-bit wrap).
fn sqn_lt(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

/// The session learnt from the wire.
#[derive(Clone, Copy)]
struct Session {
    tsi: Tsi,
    dport: u16,
    source: Ipv4Addr,
    router: Ipv4Addr,
}

/// What the NAK generator knows and has done.
struct GenState {
    want_router: Ipv4Addr,
    session: Option<Session>,
    /// The newest sequence number of the session seen (ODATA or SPM_LEAD).
    lead: Option<u32>,
    first_odata: Option<u32>,
    spm_seen: u64,
    odata_seen: u64,
    by_sqn: HashMap<u32, usize>,
    naks: Vec<NakSent>,
}

impl GenState {
    /// Takes one received IPv4 datagram (PGM) with its kernel timestamp.
    fn handle(&mut self, ip: &[u8], ts: Option<i64>) {
        let Some(&b0) = ip.first() else { return };
        let ihl = usize::from(b0 & 0x0f) * 4;
        if ip.len() < ihl + 24 {
            return;
        }
        let src = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
        let Ok(repr) = Repr::parse_bytes(&ip[ihl..]) else {
            return;
        };
        match repr.body {
            Body::Spm(spm) => {
                self.spm_seen += 1;
                if self.session.is_none() && spm.path.0 == IpAddr::V4(self.want_router) {
                    self.session = Some(Session {
                        tsi: repr.tsi(),
                        dport: repr.dport,
                        source: src,
                        router: self.want_router,
                    });
                }
                if self.session.is_some_and(|s| s.tsi == repr.tsi()) {
                    self.advance(spm.lead.0);
                }
            }
            Body::Odata(d) => {
                self.odata_seen += 1;
                if self.session.is_some_and(|s| s.tsi == repr.tsi()) {
                    self.first_odata.get_or_insert(d.sqn.0);
                    self.advance(d.sqn.0);
                }
            }
            Body::Ncf(n) => {
                if let (Some(ts), Some(&i)) = (ts, self.by_sqn.get(&n.sqn.0)) {
                    if let Some(rec) = self.naks.get_mut(i) {
                        if rec.ncf_ns.is_none() && ts >= rec.sent_ns {
                            rec.ncf_ns = Some(ts);
                        }
                    }
                }
            }
            _ => {}
        }
    }

    fn advance(&mut self, sqn: u32) {
        if self.lead.is_none_or(|l| sqn_lt(l, sqn)) {
            self.lead = Some(sqn);
        }
    }

    /// Reads everything queued on `fd`.
    fn drain(&mut self, fd: RawFd, buf: &mut [u8]) {
        while let Ok((n, ts)) = recv_with_ts(fd, buf) {
            self.handle(&buf[..n.min(buf.len())], ts);
        }
    }
}

/// Runs in `rcv`: joins `group`, learns the session and its router from SPMs, then sends
/// `naks` NAKs at `rate`/s for new sequence numbers and records the NCFs.
fn nak_gen(
    bind: Ipv4Addr,
    group: Ipv4Addr,
    want_router: Ipv4Addr,
    naks: usize,
    rate: f64,
) -> Result<NakGenOut> {
    let rx = raw_pgm_socket()?;
    rx.join_multicast_v4(&group, &bind)?;
    rx.set_multicast_all_v4(false)?;
    rx.set_recv_buffer_size(RCVBUF)?;
    let fd = rx.as_raw_fd();
    setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_TIMESTAMPNS, 1)?;
    let tx = raw_pgm_socket()?;
    tx.bind(&SocketAddrV4::new(bind, 0).into())?;

    let mut buf = vec![0u8; 65_536];
    let mut g = GenState {
        want_router,
        session: None,
        lead: None,
        first_odata: None,
        spm_seen: 0,
        odata_seen: 0,
        by_sqn: HashMap::new(),
        naks: Vec::with_capacity(naks),
    };

    // Phase 1: an SPM through the router and enough ODATA to NAK inside the window.
    let start = now();
    let sess = loop {
        check_stop()?;
        wait_readable(fd, Duration::from_millis(20));
        g.drain(fd, &mut buf);
        if let (Some(s), Some(l), Some(f)) = (g.session, g.lead, g.first_odata) {
            if l.wrapping_sub(f) >= 4 * NAK_BEHIND {
                break s;
            }
        }
        if start.elapsed() > Duration::from_secs(20) {
            bail!(
                "no session through the router after 20 s: {} SPMs ({}), {} ODATA seen",
                g.spm_seen,
                if g.session.is_some() {
                    "one with the router's address in SPM_PATH"
                } else {
                    "none with the router's address in SPM_PATH"
                },
                g.odata_seen
            );
        }
    };
    let dest = SocketAddrV4::new(sess.router, 0);

    // Phase 2: the NAKs, each for a new sequence number NAK_BEHIND behind the newest.
    let ivl = Duration::from_secs_f64(1.0 / rate);
    let mut next_sqn = g.lead.unwrap_or(0).wrapping_sub(NAK_BEHIND);
    let mut due = now();
    let mut nak_buf = [0u8; 64];
    while g.naks.len() < naks {
        check_stop()?;
        let t = now();
        if t >= due {
            let l = g.lead.unwrap_or(0);
            let floor = l.wrapping_sub(NAK_BEHIND);
            if sqn_lt(next_sqn, floor) {
                next_sqn = floor;
            }
            if !sqn_lt(l, next_sqn) {
                let repr = Repr {
                    sport: sess.dport,
                    dport: sess.tsi.sport,
                    gsi: sess.tsi.gsi,
                    parity: false,
                    var_pktlen: false,
                    body: Body::Nak(NakRepr {
                        sqn: Sqn(next_sqn),
                        source: Nla(IpAddr::V4(sess.source)),
                        group: Nla(IpAddr::V4(group)),
                    }),
                    options: OptionList::EMPTY,
                };
                let len = emit(&repr, &mut nak_buf)?;
                let sent_ns = realtime_ns();
                tx.send_to(&nak_buf[..len], &dest.into())
                    .context("sending a NAK")?;
                g.by_sqn.insert(next_sqn, g.naks.len());
                g.naks.push(NakSent {
                    sqn: next_sqn,
                    sent_ns,
                    ncf_ns: None,
                });
                next_sqn = next_sqn.wrapping_add(1);
                due += ivl;
                // Never burst to catch up after a stall.
                if due < t {
                    due = t + ivl;
                }
            } else {
                due = t + Duration::from_millis(1);
            }
        }
        wait_readable(fd, due.saturating_duration_since(now()));
        g.drain(fd, &mut buf);
    }
    // Phase 3: the last NCFs.
    let end = now();
    while end.elapsed() < Duration::from_secs(1) {
        wait_readable(fd, Duration::from_millis(20));
        g.drain(fd, &mut buf);
    }
    Ok(NakGenOut {
        naks: g.naks,
        router: sess.router,
        spm_seen: g.spm_seen,
        odata_seen: g.odata_seen,
    })
}

#[derive(Debug)]
struct LatencyOutcome {
    mode: Mode,
    rep: usize,
    naks_sent: usize,
    /// NAK in -> NCF out on the router's downstream interface, ns, sorted.
    wire: Vec<i64>,
    naks_captured: usize,
    ncfs_captured: usize,
    /// Receiver's view: send call -> NCF kernel receive timestamp, ns, sorted.
    rtt: Vec<i64>,
    /// Packets tcpdump lost for lack of buffer space.
    capture_drops: u64,
    metrics: String,
    duration: f64,
    load: (String, String),
}

fn latency(o: &Opts, bins: &Bins, mode: Mode, rep: usize) -> Result<LatencyOutcome> {
    let load0 = loadavg();
    let t = build_topo("rbnak")?;
    let routing = start_routing(&t, mode, bins)?;
    let Routing::Daemon(daemon) = &routing else {
        bail!("the latency benchmark needs pgm-routerd");
    };
    // NAK (0x08) and NCF (0x0a) only: ODATA and RDATA stay out of the capture.
    let filter = "ip proto 113 and (ip[((ip[0] & 0xf) << 2) + 4] = 8 or \
                  ip[((ip[0] & 0xf) << 2) + 4] = 10)";
    let pcap = t.lab.file("r1-to-rcv", "pcap");
    let pcap_s = pcap.to_string_lossy().into_owned();
    // As `Lab::capture`, with nanosecond timestamps.
    #[rustfmt::skip]
    let cap = t.lab.spawn(&t.r1, &["tcpdump", "-i", "to-rcv", "-w", &pcap_s, "-U",
                                   "--immediate-mode", "-n", "-Z", "root",
                                   "--time-stamp-precision=nano", "-B", "65536", filter])?;
    cap.wait_for_output("listening on", Duration::from_secs(10))?;

    let size = 200usize;
    let secs = o.naks as f64 / o.nak_rate + 30.0;
    let count = ((o.src_rate as f64 / (size + 44) as f64) * secs) as u64;
    let pgm = bins.pgm.to_string_lossy().into_owned();
    let net = format!("{};{}", t.src_addr, t.group);
    #[rustfmt::skip]
    let source = t.lab.spawn(&t.src, &[
        pgm.as_str(), "send", "--ip", "--network", &net, "--count", &count.to_string(),
        "--size", &size.to_string(), "--rate", &o.src_rate.to_string(),
        "--txw-sqns", "262144", "--linger", "1",
    ])?;

    let started = now();
    let (rcv_addr, group, r1_down, naks, rate) =
        (t.rcv_addr, t.group, t.r1_down, o.naks, o.nak_rate);
    let gen_out = t
        .rcv
        .spawn_thread(move || nak_gen(rcv_addr, group, r1_down, naks, rate))
        .join()
        .map_err(|_| anyhow::anyhow!("NAK generator panicked"))?;
    let duration = started.elapsed().as_secs_f64();
    let metrics = admin::get(&t.r1, admin::DEFAULT_LISTEN, "/metrics").unwrap_or_default();
    let source_alive = source.is_running();
    let _ = source.kill();
    let pcap = {
        thread::sleep(Duration::from_millis(200));
        let st = cap.stop(Duration::from_secs(5))?;
        ensure!(
            st.success(),
            "tcpdump exited with {st}: {}",
            cap.stderr().unwrap_or_default()
        );
        pcap
    };
    let capture_drops = kernel_drops(&cap.stderr().unwrap_or_default());
    let gen_out = gen_out.map_err(|e| {
        e.context(format!(
            "source {}: {}",
            if source_alive { "running" } else { "exited" },
            source.stderr().unwrap_or_default()
        ))
    })??;
    let _ = daemon.stop(Duration::from_secs(5));

    // Match each NAK entering the interface with the router's first NCF for its sqn.
    let frames = read_pgm(&pcap)?;
    let mut nak_in: HashMap<u32, i64> = HashMap::new();
    let mut wire = Vec::new();
    let (mut naks_captured, mut ncfs_captured) = (0, 0);
    for f in &frames {
        let (ts, dst) = (i64::try_from(f.at.as_nanos()).unwrap_or(i64::MAX), f.dst);
        let Some(&ty) = f.pgm.get(4) else { continue };
        let Ok(repr) = Repr::parse_bytes(&f.pgm) else {
            continue;
        };
        let sqn = match repr.body {
            Body::Nak(n) | Body::Ncf(n) => n.sqn.0,
            _ => continue,
        };
        if ty == PGM_NAK && dst == gen_out.router {
            naks_captured += 1;
            nak_in.entry(sqn).or_insert(ts);
        } else if ty == PGM_NCF && dst.is_multicast() {
            // Only the router sends NCFs onto this link (NCFs are never forwarded); their IP
            // source is the ODATA source's address (§7.2).
            ncfs_captured += 1;
            if let Some(t_in) = nak_in.remove(&sqn) {
                wire.push(ts - t_in);
            }
        }
    }
    wire.sort_unstable();
    let mut rtt: Vec<i64> = gen_out
        .naks
        .iter()
        .filter_map(|n| n.ncf_ns.map(|t| t - n.sent_ns))
        .collect();
    rtt.sort_unstable();
    if o.verbose {
        eprintln!(
            "  generator: {} SPMs, {} ODATA seen; first NAK sqn {:?}",
            gen_out.spm_seen,
            gen_out.odata_seen,
            gen_out.naks.first().map(|n| n.sqn)
        );
    }
    drop(routing);
    drop(t);
    Ok(LatencyOutcome {
        mode,
        rep,
        naks_sent: gen_out.naks.len(),
        wire,
        naks_captured,
        ncfs_captured,
        rtt,
        capture_drops,
        metrics,
        duration,
        load: (load0, loadavg()),
    })
}

fn latency_report(outs: &[LatencyOutcome], errors: &[String]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "| router | run | NAKs sent | NAKs / NCFs captured | matched | p50 | p90 | p99 | p99.9 \
         | max | receiver round trip p50 / p99 / max (matched) |"
    );
    let _ = writeln!(s, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    let q = |v: &[i64], x: f64| quantile(v, x).map_or("-".to_owned(), fmt_us);
    let row = |s: &mut String, name: &str, run: &str, l: &LatencyOutcome| {
        let _ = writeln!(
            s,
            "| {name} | {run} | {} | {} / {} | {} | {} | {} | {} | {} | {} | {} / {} / {} ({}) |",
            l.naks_sent,
            l.naks_captured,
            l.ncfs_captured,
            l.wire.len(),
            q(&l.wire, 0.5),
            q(&l.wire, 0.9),
            q(&l.wire, 0.99),
            q(&l.wire, 0.999),
            l.wire.last().map_or("-".to_owned(), |m| fmt_us(*m)),
            q(&l.rtt, 0.5),
            q(&l.rtt, 0.99),
            l.rtt.last().map_or("-".to_owned(), |m| fmt_us(*m)),
            l.rtt.len()
        );
    };
    let mut modes: Vec<Mode> = outs.iter().map(|l| l.mode).collect();
    modes.sort();
    modes.dedup();
    for &mode in &modes {
        let runs: Vec<&LatencyOutcome> = outs.iter().filter(|l| l.mode == mode).collect();
        for l in &runs {
            row(&mut s, mode.name(), &l.rep.to_string(), l);
        }
        if runs.len() > 1 {
            let mut all = LatencyOutcome {
                mode,
                rep: 0,
                naks_sent: runs.iter().map(|l| l.naks_sent).sum(),
                wire: runs.iter().flat_map(|l| l.wire.iter().copied()).collect(),
                naks_captured: runs.iter().map(|l| l.naks_captured).sum(),
                ncfs_captured: runs.iter().map(|l| l.ncfs_captured).sum(),
                rtt: runs.iter().flat_map(|l| l.rtt.iter().copied()).collect(),
                capture_drops: 0,
                metrics: String::new(),
                duration: 0.0,
                load: (String::new(), String::new()),
            };
            all.wire.sort_unstable();
            all.rtt.sort_unstable();
            row(&mut s, mode.name(), "**all**", &all);
        }
    }
    for l in outs {
        let m = &l.metrics;
        let _ = writeln!(
            s,
            "\n{} run {}: {:.1} s, load average {} at start, {} at end; tcpdump dropped {}; daemon: \
             naks_received {}, naks_forwarded {}, ncfs_sent {}, rdata_forwarded {}, \
             repair_states at end {}",
            l.mode.name(),
            l.rep,
            l.duration,
            l.load.0,
            l.load.1,
            l.capture_drops,
            metrics::sum(m, "pgm_router_naks_received_total", &[]),
            metrics::sum(m, "pgm_router_naks_forwarded_total", &[]),
            metrics::sum(m, "pgm_router_ncfs_sent_total", &[]),
            metrics::sum(m, "pgm_router_rdata_forwarded_total", &[]),
            metrics::sum(m, "pgm_router_repair_states", &[]),
        );
    }
    if !errors.is_empty() {
        s.push_str("\nErrors:\n");
        for e in errors {
            let _ = writeln!(s, "- {e}");
        }
    }
    s
}

// ---------------------------------------------------------------------------------------

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let o = parse_opts(&args)?;
    ensure!(
        is_root(),
        "router_bench needs root (namespaces, raw sockets)"
    );
    install_stop_handler()?;
    let bins = build_bins(&o)?;
    let guard = if o.sysctl {
        Some(SysctlGuard::raise()?)
    } else {
        None
    };
    let started = now();
    let load0 = loadavg();
    eprintln!("router_bench: {}; load average {load0}", machine());
    let mut report = String::new();
    let _ = writeln!(
        report,
        "Machine: {}\nrouterd: {}\nLoad average at start {load0}",
        machine(),
        bins.routerd.display()
    );
    if o.throughput {
        let mut res = ThroughputResults::default();
        throughput(&o, &bins, &mut res);
        let _ = writeln!(
            report,
            "\n## Throughput ({} packets per run, medians of {} repeats; receiver {}; load \
             average now {})\n",
            o.count,
            o.repeat,
            if o.recv_busy {
                "polling (--recv busy)"
            } else {
                "sleeping in recvmmsg (--recv block)"
            },
            loadavg()
        );
        report.push_str(&throughput_report(&o, &res));
    }
    if o.latency {
        let mut outs = Vec::new();
        let mut errors = Vec::new();
        for (rep, mode) in (1..=o.nak_repeat).flat_map(|r| o.nak_modes.iter().map(move |&m| (r, m)))
        {
            if stopped() {
                break;
            }
            eprintln!("latency: {} ...", mode.name());
            match latency(&o, &bins, mode, rep) {
                Ok(l) => {
                    eprintln!(
                        "latency: {}: {} NAKs, {} matched, p50 {:?} ns p99 {:?} ns max {:?} ns",
                        mode.name(),
                        l.naks_sent,
                        l.wire.len(),
                        quantile(&l.wire, 0.5),
                        quantile(&l.wire, 0.99),
                        l.wire.last()
                    );
                    outs.push(l);
                }
                Err(e) => {
                    eprintln!("latency: {}: ERROR {e:#}", mode.name());
                    errors.push(format!("{}: {e:#}", mode.name()));
                }
            }
        }
        let _ = writeln!(
            report,
            "\n## NAK-to-NCF latency ({} NAKs at {}/s per run, {} runs per router configuration; \
             source {} B/s of 200-byte messages)\n",
            o.naks, o.nak_rate, o.nak_repeat, o.src_rate
        );
        report.push_str(&latency_report(&outs, &errors));
    }
    drop(guard);
    let _ = writeln!(
        report,
        "\nLoad average at end {}; {:.0} s in all",
        loadavg(),
        started.elapsed().as_secs_f64()
    );
    println!("{report}");
    Ok(())
}
