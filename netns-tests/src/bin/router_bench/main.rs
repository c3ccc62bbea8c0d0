//! End-to-end benchmarks of `pgm-routerd` on the namespace lab (not timed tests):
//!
//! 1. **Forwarding throughput** through one router: `pgm-routerd` against the same kernel
//!    forwarding without the daemon, on each data plane the kernel has, and a direct veth with
//!    no router as the reference, in the same run with interleaved repeats;
//! 2. **NAK-to-NCF latency** inside the router, from kernel timestamps of a capture on the
//!    router's downstream interface.
//!
//! ```text
//! cargo run --release -p pgm-netns-tests --bin router_bench -- \
//!     [--count N] [--sizes 64,1400] [--repeat K]
//!     [--modes direct,nfwd,netdev,kernel,nft,ra[,kjoin,knft]] [--senders udp,pgm]
//!     [--naks N] [--nak-rate PER_SEC] [--nak-modes netdev,nft,ra] [--nak-repeat K]
//!     [--src-rate BYTES_PER_SEC] [--recv busy|block] [--no-throughput] [--no-latency]
//!     [--no-build] [--no-sysctl] [--verbose]
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
//! and for `direct`, the same addresses on one veth, each side with an on-link route to the
//! lab's whole block `10.B.0.0/16`:
//!
//! ```text
//!   src ------------------------------------ rcv
//!   eth0 10.B.1.2                             eth0 10.B.2.2
//! ```
//!
//! # Data planes
//!
//! `pgm-routerd` has two (`router.dataplane`). The mroute configurations need the kernel's
//! multicast routing (`CONFIG_IP_MROUTE`, `/proc/net/ip_mr_vif`); on a kernel without it they
//! are left out, with one line on stderr, and the report lists them as not measured on this
//! kernel. The netdev ones need nf_tables with netdev ingress hooks only.
//!
//! # Throughput
//!
//! Router configurations (`--modes`), all with the static route `(src, G)` from `to-src` to
//! `to-rcv`. Netdev plane:
//!
//! - `direct`: no router, the reference: what one veth costs;
//! - `nfwd`: the netdev plane's forwarding rules alone (`Lab::start_forwarding`: the rules the
//!   daemon installs, intercept off), no daemon: on r1 an nftables `netdev` table whose
//!   ingress chain on `to-src` `dup`s the route's packets to `to-rcv`, TTL decremented and
//!   source MAC rewritten, in the sender's softirq. The baseline of `netdev`;
//! - `netdev`: `pgm-routerd`, `mode = "full"`, `dataplane = "netdev"`: the same forwarding
//!   rules plus the intercept (every PGM type but ODATA of the group is logged to the daemon
//!   over `nfnetlink_log` and dropped; IGMP is logged), so ODATA never reaches user space.
//!
//! Mroute plane (`CONFIG_IP_MROUTE`):
//!
//! - `kernel`: smcroute (Debian's `smcrouted`), no PGM daemon: the kernel-only baseline;
//! - `nft`: `pgm-routerd`, `mode = "full"`, `dataplane = "mroute"`, `intercept = "nftables"`
//!   (the daemon owns the MFC; its nftables FORWARD rule stops every PGM type but ODATA for
//!   the group and logs those packets to the daemon over `nfnetlink_log`; no group is joined,
//!   so the kernel delivers no local copy of ODATA);
//! - `ra`: `pgm-routerd`, `mode = "full"`, `dataplane = "mroute"`,
//!   `intercept = "router-alert"`;
//! - diagnostics, to attribute the cost of `nft`: `kjoin` is smcroute plus the
//!   membership-based intercept socket the daemon used before its tap
//!   (`pgm_core::net::router::RecvSocket::open`, kind `Intercept`) joined to the group on
//!   `to-src`, and no daemon; `knft` is smcroute plus the daemon's nftables table
//!   (`InterceptTable`, the group in its set), and no daemon.
//!
//! Default: `direct,nfwd,netdev`, plus `kernel,nft,ra` where the kernel has multicast
//! routing.
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
//! medians over repeats. The ratios compare each daemon configuration with the same
//! forwarding without it, by rate and by sender CPU per packet (target 0.95): `netdev` /
//! `nfwd`, and the mroute ones / `kernel`; every row with a router is also given against
//! `direct`.
//!
//! # NAK-to-NCF latency
//!
//! `pgm-routerd` (full mode, `--nak-modes`: `netdev`, `nft`, `ra` as above; default `netdev`
//! plus `nft,ra` where the kernel has multicast routing) on r1; `target/release/pgm send
//! --ip` in `src` at 500 kB/s (`--src-rate`) of 200-byte messages: a live session whose SPMs
//! r1 forwards with its downstream address in SPM_PATH. A thread in `rcv` joins the group
//! with a raw PGM socket, waits for an SPM whose SPM_PATH is r1's `to-rcv` address, then
//! sends `--naks` NAKs at `--nak-rate` per second, unicast to that address (as receivers do),
//! each for a new sequence number 64 behind the newest ODATA it has seen (inside the
//! source's window, so the source confirms and repairs them: repair state, NCF, NAK
//! forwarded upstream, the source's NCF and RDATA through the router). tcpdump on r1's
//! `to-rcv` (nanosecond timestamps, filter NAK and NCF) gives the time from each NAK entering
//! the interface to the router's NCF for that sequence number leaving it. The same thread
//! also records, per NAK, the user-space send time and the kernel receive timestamp
//! (`SO_TIMESTAMPNS`) of the NCF at the receiver: a round trip that adds the sender's syscall
//! and two veth hops, as a cross-check. Each configuration runs `--nak-repeat` times (a fresh
//! lab each time), the configurations alternating; the report gives each run and all runs of
//! a configuration pooled.
//!
//! Socket buffers: `net.core.rmem_max`/`wmem_max` are global (read-only inside namespaces), so
//! they are raised to 32 MiB for the run if lower and restored afterwards (`--no-sysctl`: left
//! alone).

mod blast;
mod latency;
mod opts;
mod report;
mod throughput;
mod topo;
mod util;

use std::fmt::Write as _;

use anyhow::{Result, ensure};
use pgm_core::wire::Gsi;
use pgm_netns_tests::lab::is_root;
use pgm_netns_tests::plane::kernel_has_mroute;

use crate::latency::latency;
use crate::opts::parse_opts;
use crate::report::{latency_report, throughput_report};
use crate::throughput::{ThroughputResults, throughput};
use crate::topo::build_bins;
use crate::util::{SysctlGuard, install_stop_handler, loadavg, machine, now, quantile, stopped};

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

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut o = parse_opts(&args)?;
    ensure!(
        is_root(),
        "router_bench needs root (namespaces, raw sockets)"
    );
    install_stop_handler()?;
    let has_mroute = kernel_has_mroute();
    if let Some(line) = o.fit_kernel(has_mroute) {
        eprintln!("{line}");
    }
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
        "Machine: {}\nrouterd: {}\nKernel multicast routing (CONFIG_IP_MROUTE): {}\n\
         Load average at start {load0}",
        machine(),
        bins.routerd.display(),
        if has_mroute {
            "yes"
        } else {
            "no: the mroute configurations cannot run on this kernel"
        }
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
        report.push_str(&latency_report(&o, &outs, &errors));
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
