//! The throughput benchmark: one lab per router configuration, kept for the whole run, and
//! the runs interleaved over them.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use pgm_core::net::iface;
use pgm_core::net::router::{InterceptTable, RecvSocket, RecvSocketKind};
use pgm_netns_tests::{admin, metrics};

use crate::BENCH_SPORT;
use crate::blast::{RecvJob, RecvStats, SendStats, blast_recv, blast_send};
use crate::opts::{Mode, Opts, SenderKind};
use crate::topo::{Bins, Routing, Topo, build_topo, nft_dropped, start_routing};
use crate::util::{fmt_pps, loadavg, stopped};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Cell {
    pub(crate) sender: SenderKind,
    pub(crate) size: usize,
    pub(crate) mode: Mode,
}

/// `n` per second over `secs` (0 if no time passed).
fn per_sec(n: f64, secs: f64) -> f64 {
    if secs > 0.0 { n / secs } else { 0.0 }
}

#[derive(Clone, Debug)]
pub(crate) struct Outcome {
    pub(crate) recv: RecvStats,
    pub(crate) send: SendStats,
}

impl Outcome {
    pub(crate) fn pps(&self) -> f64 {
        per_sec(self.recv.received as f64, self.recv.secs)
    }

    pub(crate) fn mbps(&self) -> f64 {
        per_sec(self.recv.bytes as f64, self.recv.secs) / 1e6
    }

    pub(crate) fn send_pps(&self) -> f64 {
        per_sec(self.send.sent as f64, self.send.secs)
    }

    /// The sender thread's CPU time per packet, in µs.
    pub(crate) fn cpu_us(&self) -> f64 {
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
pub(crate) struct ThroughputResults {
    pub(crate) runs: BTreeMap<Cell, Vec<Outcome>>,
    /// Per configuration: what the daemon's metrics (or the nftables counters) say afterwards.
    pub(crate) checks: Vec<String>,
    pub(crate) errors: Vec<String>,
}

/// What the diagnostic configurations add beside smcroute on r1.
enum Extra {
    None,
    /// The daemon's intercept socket (`RecvSocketKind::Intercept`), joined on `to-src`.
    Join(#[expect(dead_code, reason = "held so that the membership lasts")] RecvSocket),
    /// The daemon's nftables table of the mroute plane, with the group in its set.
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
    let t = build_topo(mode.tag(), mode != Mode::Direct)?;
    let routing = start_routing(&t, mode, bins)?;
    let group = t.group;
    let extra = match mode {
        Mode::KernelJoin => Extra::Join(t.r1()?.ns.run(move || -> Result<RecvSocket> {
            let idx = iface::interfaces()?
                .into_iter()
                .find(|i| i.name == "to-src")
                .context("no to-src in r1")?
                .index;
            let s = RecvSocket::open(RecvSocketKind::Intercept)?;
            s.join(group, idx)?;
            Ok(s)
        })??),
        Mode::KernelNft => Extra::Nft(t.r1()?.ns.run(move || -> Result<InterceptTable> {
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

/// Runs every repeat, sender and size over the configurations of `o.modes`.
pub(crate) fn throughput(o: &Opts, bins: &Bins, res: &mut ThroughputResults) {
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
                    if stopped() {
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
        let name = b.mode.name();
        match teardown(o, b) {
            Ok((note, problems)) => {
                eprintln!("  {note}");
                res.checks.push(note);
                res.errors.extend(problems);
            }
            Err(e) => res.errors.push(format!("{name} teardown: {e:#}")),
        }
    }
}

/// Reads what the configuration did (daemon metrics, nftables counters), stops it and
/// removes its lab. Returns a note and the problems found (ODATA in user space, no SPM
/// forwarded).
fn teardown(o: &Opts, b: Bench) -> Result<(String, Vec<String>)> {
    let Bench {
        mode,
        t,
        mut routing,
        extra,
    } = b;
    let mut problems = Vec::new();
    let note = match (&mut routing, &extra) {
        (Routing::Daemon(p), _) => {
            let r1 = &t.r1()?.ns;
            if mode == Mode::Netdev {
                // The daemon reads the plane's kernel counters once a second.
                thread::sleep(Duration::from_millis(1200));
            }
            let m = admin::get(r1, admin::DEFAULT_LISTEN, "/metrics")?;
            let slow = metrics::sum(&m, "pgm_router_odata_slow_path_total", &[]);
            let spms = metrics::sum(&m, "pgm_router_spms_forwarded_total", &[]);
            let spms_in = metrics::sum(&m, "pgm_router_spms_received_total", &[]);
            let odata_in = metrics::sum(
                &m,
                "pgm_router_received_packets_total",
                &[("type", "odata")],
            );
            let plane = |event: &str| {
                metrics::sum(
                    &m,
                    "pgm_router_dataplane_packets_total",
                    &[("event", event)],
                )
            };
            let kernel = match mode {
                Mode::Nft => format!(
                    "; its nftables rule kept {} non-ODATA PGM packets from the kernel's \
                     forwarding",
                    nft_dropped(&t, "pgm_routerd").map_or("?".to_owned(), |d| d.to_string())
                ),
                Mode::Netdev => format!(
                    "; its netdev rules forwarded {} packets in the kernel and handed it {}",
                    plane("forwarded"),
                    plane("intercepted")
                ),
                _ => String::new(),
            };
            let note = format!(
                "{}: the daemon received {spms_in} SPMs and forwarded {spms}; ODATA it saw \
                 {odata_in}, forwarded in user space {slow}{kernel}",
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
        (Routing::Rules(f), _) => format!(
            "{}: the rules forwarded {} packets (every type: no intercept)",
            mode.name(),
            f.forwarded()
                .map_or_else(|e| format!("? ({e:#})"), |n| n.to_string())
        ),
        (_, Extra::Nft(_)) => format!(
            "{}: the nftables rule kept {} non-ODATA PGM packets from the kernel's forwarding",
            mode.name(),
            nft_dropped(&t, BENCH_NFT_TABLE).map_or("?".to_owned(), |d| d.to_string())
        ),
        (Routing::None, _) => format!("{}: no router", mode.name()),
        _ => format!("{}: no daemon", mode.name()),
    };
    if let Extra::Nft(mut n) = extra {
        // nft runs in the namespace of the thread that asks.
        t.r1()?.ns.run(move || n.remove())??;
    }
    drop(routing);
    drop(t);
    Ok((note, problems))
}
