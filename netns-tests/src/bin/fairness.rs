//! PGMCC fairness harness (not a timed test): how PGMCC shares a bottleneck with TCP and with
//! another PGMCC session, and whether one session follows its slowest receiver.
//!
//! ```text
//! cargo run --release -p pgm-netns-tests --bin fairness -- \
//!     [--secs 20] [--warm 5] [--repeat 2] [--scenario all|tcp,tcp-off,two,four] \
//!     [--mbit 20] [--queue-ms 50] [--four-mbit 10,20,40,80] [--size 1400] \
//!     [--tcp-cc cubic] [--cc-rate 0] [--capture-start 0] [--pgm PATH]
//! ```
//!
//! Needs root. Each run builds a fresh lab (`fair/topo.rs`): hosts on one Linux bridge in a
//! namespace of its own, a TBF on the egress of the bridge port towards each receiver host
//! (`--mbit` Mbit/s, a queue of `--queue-ms` ms at that rate), since the kernel has no
//! multicast routing and no netem. Every `pgm` runs over PGM/UDP with `--size`-byte messages
//! of the test pattern.
//!
//! - `tcp`: sender hosts `s1` (`pgm send`, PGMCC on) and `s2` (one bulk TCP connection, this
//!   harness's own sender and receiver threads, congestion control `--tcp-cc`), receiver
//!   host `r1` behind the bottleneck (`pgm recv --source s1`, and the TCP receiver). Both
//!   flows start together; after `--warm` seconds each one's goodput at the receiver is
//!   measured over `--secs` seconds: bytes `pgm recv` delivered (written to a FIFO that the
//!   harness reads and checks against the pattern) and bytes the TCP receiver read.
//! - `tcp-off`: the same with `pgm send --pgmcc off --rate <bottleneck rate in bytes/s>`, a
//!   source without congestion control set to the link's rate.
//! - `two`: `s1` and `s2` each run a PGMCC session (groups 1 and 2), `r1` one `pgm recv` per
//!   session (`--source`).
//! - `four`: one session from `s1` to `r1`..`r4`, each behind its own TBF (`--four-mbit`),
//!   `pgm recv --verify --count N`; N is the slowest bottleneck's rate times
//!   `warm + secs + 2` seconds. Measured: the rate through every port over the window
//!   (the fastest port drops nothing, so its rate is the session's sending rate) and when
//!   each receiver has delivered and verified everything.
//!
//! PGMCC sources run with `--rate --cc-rate` (default 0: no rate limit, the CLI's default);
//! the source without PGMCC of `tcp-off` with the bottleneck's rate.
//!
//! `--capture-start S` (default 0, off) captures each PGM source's host for its first S
//! seconds and reports how much ODATA left before the first feedback reached it
//! (`fair/startup.rs`).
//!
//! Fair share: half the sum of the two measured goodputs, and half the configured rate.
//! Rates at the bottleneck ("wire") are TBF's byte counts over the window, which include the
//! Ethernet header, so they compare directly with the configured rate. After the window the
//! TCP flow stops and each `pgm send` finishes its count (it prints PGMCC's counters only at
//! the end); counts are chosen so that no source can finish within the window.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use pgm_netns_tests::bins::workspace_bin;
use pgm_netns_tests::lab::{Lab, Process, is_root};

#[path = "../fair/mod.rs"]
mod fair;

use fair::flows::{PgmSink, TcpFlow, TcpInfo};
use fair::pgm::{SenderReport, acks_sent, finish_sender, print_summary, recv_args, send_args};
use fair::startup::{Startup, finish_capture, print_startup_table, start_capture};
use fair::topo::{Host, QdiscStats, Star, Tbf};
use fair::{loadavg, mbit, now, sleep_until};

/// Pattern seed of every session.
const SEED: u64 = 1;
/// TCP port of the bulk flow.
const TCP_PORT: u16 = 5001;
/// How long receivers get to join before the sources start.
const JOIN: Duration = Duration::from_millis(1500);

#[derive(Debug, Clone)]
struct Args {
    secs: u64,
    warm: u64,
    repeat: u32,
    scenarios: Vec<Scenario>,
    mbit: u32,
    queue_ms: u32,
    four_mbit: Vec<u32>,
    size: usize,
    tcp_cc: String,
    cc_rate: u64,
    capture_start: u64,
    pgm: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scenario {
    Tcp,
    TcpOff,
    Two,
    Four,
}

fn usage() -> &'static str {
    "usage: fairness [--secs S] [--warm S] [--repeat K] [--scenario all|tcp,tcp-off,two,four] \
     [--mbit M] [--queue-ms MS] [--four-mbit 10,20,40,80] [--size BYTES] [--tcp-cc cubic] \
     [--cc-rate BYTES_PER_S] [--capture-start SECS] [--pgm PATH]"
}

fn parse_args() -> Result<Args> {
    let mut a = Args {
        secs: 20,
        warm: 5,
        repeat: 2,
        scenarios: vec![
            Scenario::Tcp,
            Scenario::TcpOff,
            Scenario::Two,
            Scenario::Four,
        ],
        mbit: 20,
        queue_ms: 50,
        four_mbit: vec![10, 20, 40, 80],
        size: 1400,
        tcp_cc: "cubic".to_owned(),
        cc_rate: 0,
        capture_start: 0,
        pgm: None,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut it = argv.iter();
    while let Some(k) = it.next() {
        if k == "-h" || k == "--help" {
            println!("{}", usage());
            std::process::exit(0);
        }
        let v = it
            .next()
            .with_context(|| format!("{k} needs a value\n{}", usage()))?;
        let bad = || format!("bad value {v:?} for {k}\n{}", usage());
        match k.as_str() {
            "--secs" => a.secs = v.parse().with_context(bad)?,
            "--warm" => a.warm = v.parse().with_context(bad)?,
            "--repeat" => a.repeat = v.parse().with_context(bad)?,
            "--mbit" => a.mbit = v.parse().with_context(bad)?,
            "--queue-ms" => a.queue_ms = v.parse().with_context(bad)?,
            "--size" => a.size = v.parse().with_context(bad)?,
            "--tcp-cc" => a.tcp_cc = v.clone(),
            "--cc-rate" => a.cc_rate = v.parse().with_context(bad)?,
            "--capture-start" => a.capture_start = v.parse().with_context(bad)?,
            "--pgm" => a.pgm = Some(PathBuf::from(v)),
            "--four-mbit" => {
                a.four_mbit = v
                    .split(',')
                    .map(|m| m.trim().parse::<u32>())
                    .collect::<Result<_, _>>()
                    .with_context(bad)?;
            }
            "--scenario" => {
                a.scenarios = match v.as_str() {
                    "all" => vec![
                        Scenario::Tcp,
                        Scenario::TcpOff,
                        Scenario::Two,
                        Scenario::Four,
                    ],
                    list => list
                        .split(',')
                        .map(|s| match s.trim() {
                            "tcp" => Ok(Scenario::Tcp),
                            "tcp-off" => Ok(Scenario::TcpOff),
                            "two" => Ok(Scenario::Two),
                            "four" => Ok(Scenario::Four),
                            _ => bail!("{}", bad()),
                        })
                        .collect::<Result<_>>()?,
                };
            }
            _ => bail!("unknown option {k}\n{}", usage()),
        }
    }
    ensure!(a.secs > 0 && a.repeat > 0, "nothing to run");
    ensure!(
        a.capture_start <= a.warm,
        "--capture-start must not exceed --warm (the capture ends before the window)"
    );
    ensure!(
        a.mbit > 0 && a.queue_ms > 0,
        "--mbit and --queue-ms must be positive"
    );
    ensure!(
        (1..=8).contains(&a.four_mbit.len()) && a.four_mbit.iter().all(|m| *m > 0),
        "--four-mbit: 1 to 8 positive rates"
    );
    ensure!(
        (16..=1400).contains(&a.size),
        "--size must be 16 to 1400 (one packet)"
    );
    Ok(a)
}

/// The `pgm` binary: `--pgm`, else one built with this harness's profile, else any built one.
fn pgm_bin(args: &Args) -> Result<PathBuf> {
    if let Some(p) = &args.pgm {
        ensure!(p.is_file(), "--pgm {} is not a file", p.display());
        return Ok(p.clone());
    }
    let exe = std::env::current_exe().context("current_exe")?;
    if let Some(p) = exe.parent().map(|d| d.join("pgm")).filter(|p| p.is_file()) {
        return Ok(p);
    }
    workspace_bin("pgm")
}

/// Messages a source sends so that it cannot finish within `secs` even alone at `bytes_per_sec`
/// of goodput.
fn count_for(bytes_per_sec: u64, secs: u64, size: usize) -> u64 {
    (bytes_per_sec * secs).div_ceil(size as u64)
}

// ---------------------------------------------------------------------------------------
// Two flows over one bottleneck: PGM vs TCP, PGM vs PGM

/// One flow's outcome in a two-flow run.
#[derive(Clone, Debug)]
struct FlowResult {
    /// Goodput at the receiving application over the window, Mbit/s.
    goodput: f64,
    /// Goodput per second of the window, Mbit/s.
    series: Vec<f64>,
    /// Arrivals (all, RDATA) per second of the window, Mbit/s.
    arrival_series: Vec<(f64, f64)>,
    /// IP bytes from its source arriving at the receiver host over the window, Mbit/s (past
    /// the bottleneck; repairs and retransmissions included).
    arriving: f64,
    /// Of which PGM RDATA, Mbit/s.
    arriving_rdata: f64,
    /// The source's report (PGM flows).
    sender: Option<SenderReport>,
    /// PGM: the stream was intact and complete and `pgm recv` exited 0; TCP: always true.
    verified: bool,
}

/// A two-flow run.
#[derive(Clone, Debug)]
struct PairResult {
    a: FlowResult,
    b: FlowResult,
    /// Through the bottleneck over the window.
    wire: QdiscStats,
    /// Through the bottleneck before the window (the sources' start and the warm-up).
    before: QdiscStats,
    window_secs: f64,
    tcp: Option<TcpInfo>,
    /// `--capture-start`: each source's first seconds.
    startup: Vec<(String, Startup)>,
    load: String,
}

/// A PGM flow of a two-flow run, while it runs.
struct PgmFlow {
    send: Process,
    recv: Process,
    sink: PgmSink,
    started: Instant,
    count: u64,
}

impl PgmFlow {
    /// Starts `pgm recv` on `r` into a FIFO, waits for it to join, then `pgm send` on `s`.
    fn start(
        star: &Star,
        pgm: &str,
        (s, r, group): (&Host, &Host, Ipv4Addr),
        (count, size): (u64, usize),
        (pgmcc, rate): (bool, u64),
    ) -> Result<Self> {
        let fifo = star.lab.file(&format!("pgm-{}", s.name), "fifo");
        let sink = PgmSink::start(&fifo, size, SEED)?;
        let out = fifo.to_string_lossy().into_owned();
        let recv = star
            .lab
            .spawn(&r.ns, &recv_args(pgm, r, group, s.addr, &out, None))?;
        thread::sleep(JOIN);
        let started = now();
        let send = star
            .lab
            .spawn(&s.ns, &send_args(pgm, s, group, count, size, pgmcc, rate))?;
        Ok(Self {
            send,
            recv,
            sink,
            started,
            count,
        })
    }

    /// After the window: waits for the source to finish and the receiver to end, checks the
    /// stream, and completes `flow` with the source's report.
    fn finish(self, label: &str, mut flow: FlowResult, timeout: Duration) -> Result<FlowResult> {
        let sender = finish_sender(&self.send, self.started, timeout)?;
        // The receiver ends on the session's end, or 5 s without data.
        let recv_ok = self
            .recv
            .wait_timeout(Duration::from_secs(20))?
            .is_some_and(|s| s.success());
        let acks = acks_sent(&self.recv);
        print_summary(&format!("{label} send"), &self.send);
        print_summary(&format!("{label} recv"), &self.recv);
        let _ = self.recv.kill();
        let checked = self.sink.finish();
        let acks_per_s = if sender.secs > 0.0 {
            acks as f64 / sender.secs
        } else {
            0.0
        };
        println!(
            "    {label} source ran {:.1} s (linger included); the acker sent {acks} ACKs ({acks_per_s:.0}/s)",
            sender.secs
        );
        println!(
            "    {label} stream: {} messages of {} sent, {} bad, {} gaps, pgm recv {}",
            checked.messages,
            self.count,
            checked.bad,
            checked.gaps,
            if recv_ok {
                "exit 0"
            } else {
                "failed or still running"
            }
        );
        flow.verified = recv_ok
            && sender.finished
            && checked.messages == self.count
            && checked.bad == 0
            && checked.gaps == 0;
        flow.sender = Some(sender);
        Ok(flow)
    }
}

/// Counters sampled at one instant of a two-flow run.
#[derive(Clone, Copy)]
struct Sample {
    at: Instant,
    delivered: [u64; 2],
    /// (all, RDATA) IP bytes arrived per source.
    arrived: [(u64, u64); 2],
}

/// Samples both flows every second over the window `(start, secs)`: delivered bytes from
/// `delivered`, arrivals at `r` from `sources`, and the bottleneck towards `r`.
fn measure(
    star: &Star,
    (r, sources): (&Host, [&Host; 2]),
    (start, secs): (Instant, u64),
    delivered: &dyn Fn() -> [u64; 2],
) -> Result<(FlowResult, FlowResult, [QdiscStats; 2], f64)> {
    let sample = || -> Result<Sample> {
        Ok(Sample {
            at: now(),
            delivered: delivered(),
            arrived: [star.arrivals(r, sources[0])?, star.arrivals(r, sources[1])?],
        })
    };
    sleep_until(start);
    let q0 = star.qdisc(r)?;
    let first = sample()?;
    let mut series = [Vec::new(), Vec::new()];
    let mut arrivals = [Vec::new(), Vec::new()];
    let mut last = first;
    for k in 1..=secs {
        sleep_until(first.at + Duration::from_secs(k));
        let s = sample()?;
        let dt = s.at.duration_since(last.at).as_secs_f64();
        for i in 0..2 {
            series[i].push(mbit(s.delivered[i] - last.delivered[i], dt));
            arrivals[i].push((
                mbit(s.arrived[i].0 - last.arrived[i].0, dt),
                mbit(s.arrived[i].1 - last.arrived[i].1, dt),
            ));
        }
        last = s;
    }
    let q1 = star.qdisc(r)?;
    let dt = last.at.duration_since(first.at).as_secs_f64();
    let [sa, sb] = series;
    let [aa, ab] = arrivals;
    let flow = |i: usize, series: Vec<f64>, arrival_series: Vec<(f64, f64)>| FlowResult {
        goodput: mbit(last.delivered[i] - first.delivered[i], dt),
        series,
        arrival_series,
        arriving: mbit(last.arrived[i].0 - first.arrived[i].0, dt),
        arriving_rdata: mbit(last.arrived[i].1 - first.arrived[i].1, dt),
        sender: None,
        verified: true,
    };
    Ok((flow(0, sa, aa), flow(1, sb, ab), [q0, q1.since(q0)], dt))
}

/// A lab with sender hosts `s1`, `s2` and receiver host `r1` behind the bottleneck, arrivals
/// from both senders counted at `r1`.
fn pair_lab(args: &Args, tag: &str) -> Result<(Star, [Host; 3], Tbf)> {
    let mut star = Star::new(tag)?;
    let s1 = star.host("s1")?;
    let s2 = star.host("s2")?;
    let r = star.host("r1")?;
    let tbf = Tbf {
        mbit: args.mbit,
        queue_ms: args.queue_ms,
    };
    star.bottleneck(&r, tbf)?;
    star.count_arrivals(&r, &[&s1, &s2])?;
    Ok((star, [s1, s2, r], tbf))
}

fn run_pgm_tcp(args: &Args, pgm: &str, pgmcc: bool) -> Result<PairResult> {
    let load = loadavg();
    let (star, [s1, s2, r], tbf) = pair_lab(args, "fairtcp")?;
    let group = star.lab.block().group(1);
    let span = args.warm + args.secs;
    let count = count_for(tbf.bytes_per_sec(), span, args.size);
    // Without PGMCC the source runs at the link's rate (IP bytes; TBF also counts Ethernet).
    let rate = if pgmcc {
        args.cc_rate
    } else {
        tbf.bytes_per_sec()
    };
    let cap = start_capture(args.capture_start, &star, &s1)?;
    let flow = PgmFlow::start(
        &star,
        pgm,
        (&s1, &r, group),
        (count, args.size),
        (pgmcc, rate),
    )?;
    let mut tcp = TcpFlow::start(&s2.ns, &r.ns, (r.addr, TCP_PORT), &args.tcp_cc)?;
    flow.recv
        .wait_for_output("started", Duration::from_secs(10))
        .context("PGM session start")?;
    let until = flow.started + Duration::from_secs(args.capture_start);
    let startup: Vec<_> = finish_capture(cap, until, &s1)?.into_iter().collect();
    let start = flow.started + Duration::from_secs(args.warm);
    let (a, b, [before, wire], dt) = measure(&star, (&r, [&s1, &s2]), (start, args.secs), &|| {
        [flow.sink.delivered(), tcp.delivered()]
    })?;
    let info = tcp.info().ok();
    println!(
        "    bottleneck after the window: {}",
        star.qdisc_text(&r)?.replace('\n', " | ")
    );
    tcp.stop();
    let a = flow.finish("PGM", a, Duration::from_secs(3 * span + 30))?;
    Ok(PairResult {
        a,
        b,
        wire,
        before,
        window_secs: dt,
        tcp: info,
        startup,
        load,
    })
}

fn run_pgm_pgm(args: &Args, pgm: &str) -> Result<PairResult> {
    let load = loadavg();
    let (star, [s1, s2, r], tbf) = pair_lab(args, "fairtwo")?;
    let (g1, g2) = (star.lab.block().group(1), star.lab.block().group(2));
    let span = args.warm + args.secs;
    let count = count_for(tbf.bytes_per_sec(), span, args.size);
    let cap_a = start_capture(args.capture_start, &star, &s1)?;
    let cap_b = start_capture(args.capture_start, &star, &s2)?;
    let fa = PgmFlow::start(
        &star,
        pgm,
        (&s1, &r, g1),
        (count, args.size),
        (true, args.cc_rate),
    )?;
    // Started one after the other: the second's receiver joins (JOIN) while the first runs.
    let fb = PgmFlow::start(
        &star,
        pgm,
        (&s2, &r, g2),
        (count, args.size),
        (true, args.cc_rate),
    )?;
    for f in [&fa, &fb] {
        f.recv
            .wait_for_output("started", Duration::from_secs(10))
            .context("PGM session start")?;
    }
    let secs = Duration::from_secs(args.capture_start);
    let startup: Vec<_> = [
        finish_capture(cap_a, fa.started + secs, &s1)?,
        finish_capture(cap_b, fb.started + secs, &s2)?,
    ]
    .into_iter()
    .flatten()
    .collect();
    let start = fb.started + Duration::from_secs(args.warm);
    let (a, b, [before, wire], dt) = measure(&star, (&r, [&s1, &s2]), (start, args.secs), &|| {
        [fa.sink.delivered(), fb.sink.delivered()]
    })?;
    println!(
        "    bottleneck after the window: {}",
        star.qdisc_text(&r)?.replace('\n', " | ")
    );
    let timeout = Duration::from_secs(3 * span + 30);
    let a = fa.finish("A", a, timeout)?;
    let b = fb.finish("B", b, timeout)?;
    Ok(PairResult {
        a,
        b,
        wire,
        before,
        window_secs: dt,
        tcp: None,
        startup,
        load,
    })
}

fn series_line(v: &[f64]) -> String {
    v.iter()
        .map(|x| format!("{x:.1}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Prints a two-flow run's per-second goodput and arrivals.
fn print_series(p: &PairResult, names: [&str; 2]) {
    for (name, f) in names.into_iter().zip([&p.a, &p.b]) {
        println!(
            "    per-second goodput {name} Mbit/s: {}",
            series_line(&f.series)
        );
        let all: Vec<f64> = f.arrival_series.iter().map(|x| x.0).collect();
        println!(
            "    per-second arriving {name} Mbit/s: {}",
            series_line(&all)
        );
        if f.arrival_series.iter().any(|x| x.1 > 0.0) {
            let rd: Vec<f64> = f.arrival_series.iter().map(|x| x.1).collect();
            println!(
                "    per-second arriving {name} RDATA Mbit/s: {}",
                series_line(&rd)
            );
        }
    }
}

/// `x / half`, or 0 when there is nothing to share.
fn share(x: f64, half: f64) -> f64 {
    if half > 0.0 { x / half } else { 0.0 }
}

fn print_pair_table(title: &str, args: &Args, rows: &[(u32, bool, PairResult)], tcp: bool) {
    let cfg = f64::from(args.mbit);
    println!("\n### {title}\n");
    let (na, nb) = if tcp { ("PGM", "TCP") } else { ("A", "B") };
    let lead = if tcp { "| run | PGMCC |" } else { "| run |" };
    let tail = if tcp {
        format!(
            "TCP RTT ms, cwnd, retrans | {na} acks/halvings/probes/timeouts | {na} RDATA sent | {na} verified |"
        )
    } else {
        format!(
            "{na} acks/halvings/probes/timeouts | {nb} acks/halvings/probes/timeouts | RDATA sent {na}, {nb} | verified |"
        )
    };
    println!(
        "{lead} goodput {na}, {nb} Mbit/s | {na} / (sum/2) | {nb} / (sum/2) | {na} / ({cfg}/2) | {nb} / ({cfg}/2) | arriving {na} (RDATA), {nb} Mbit/s | arriving {na} / (sum/2) | wire Mbit/s | TBF drops before, in window | {tail}"
    );
    let cols = lead.matches('|').count() - 1 + 9 + tail.matches('|').count();
    println!("|{}", "---|".repeat(cols));
    for (run, pgmcc, p) in rows {
        let half = (p.a.goodput + p.b.goodput) / 2.0;
        let arr_half = (p.a.arriving + p.b.arriving) / 2.0;
        let wire = mbit(p.wire.bytes, p.window_secs);
        let sa = p.a.sender.clone().unwrap_or_default();
        let sb = p.b.sender.clone().unwrap_or_default();
        let lead = if tcp {
            format!("| {run} | {} |", if *pgmcc { "on" } else { "off" })
        } else {
            format!("| {run} |")
        };
        let tail = if tcp {
            let t = p.tcp.map_or_else(
                || "-".to_owned(),
                |i| {
                    format!(
                        "{:.1}, {}, {}",
                        f64::from(i.rtt_us) / 1000.0,
                        i.cwnd,
                        i.total_retrans
                    )
                },
            );
            format!(
                "{t} | {} | {} | {} |",
                sa.cc_cell(),
                sa.rdata_cell(),
                if p.a.verified { "yes" } else { "no" }
            )
        } else {
            format!(
                "{} | {} | {}, {} | {} |",
                sa.cc_cell(),
                sb.cc_cell(),
                sa.rdata_cell(),
                sb.rdata_cell(),
                if p.a.verified && p.b.verified {
                    "yes"
                } else {
                    "no"
                }
            )
        };
        println!(
            "{lead} {:.2}, {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} ({:.2}), {:.2} | {:.2} | {wire:.2} | {}, {} | {tail}",
            p.a.goodput,
            p.b.goodput,
            share(p.a.goodput, half),
            share(p.b.goodput, half),
            p.a.goodput / (cfg / 2.0),
            p.b.goodput / (cfg / 2.0),
            p.a.arriving,
            p.a.arriving_rdata,
            p.b.arriving,
            share(p.a.arriving, arr_half),
            p.before.dropped,
            p.wire.dropped,
        );
    }
}

// ---------------------------------------------------------------------------------------
// One session, four receivers behind different bottlenecks

#[derive(Clone, Debug)]
struct FourReceiver {
    mbit: u32,
    /// Through its port over the window.
    wire: QdiscStats,
    /// Through its port before the window.
    before: QdiscStats,
    /// Through its port over the whole run.
    total: QdiscStats,
    /// IP bytes from the source arriving over the window, all and RDATA alone.
    arrived: (u64, u64),
    /// Seconds from the source's start until it had delivered and verified everything.
    done: Option<f64>,
    result: String,
    acks_sent: u64,
}

#[derive(Clone, Debug)]
struct FourResult {
    receivers: Vec<FourReceiver>,
    window_secs: f64,
    bytes: u64,
    sender: SenderReport,
    /// `--capture-start`: the source's first seconds.
    startup: Vec<(String, Startup)>,
    load: String,
}

fn run_four(args: &Args, pgm: &str) -> Result<FourResult> {
    let load = loadavg();
    let mut star = Star::new("fairfour")?;
    let s1 = star.host("s1")?;
    let mut rs = Vec::new();
    for (i, m) in args.four_mbit.iter().enumerate() {
        let r = star.host(&format!("r{}", i + 1))?;
        star.bottleneck(
            &r,
            Tbf {
                mbit: *m,
                queue_ms: args.queue_ms,
            },
        )?;
        star.count_arrivals(&r, &[&s1])?;
        rs.push(r);
    }
    let slowest = Tbf {
        mbit: args.four_mbit.iter().copied().min().unwrap_or(1),
        queue_ms: args.queue_ms,
    };
    let group = star.lab.block().group(1);
    let span = args.warm + args.secs;
    let count = count_for(slowest.bytes_per_sec(), span + 2, args.size);
    let recvs = rs
        .iter()
        .map(|r| {
            star.lab.spawn(
                &r.ns,
                &recv_args(
                    pgm,
                    r,
                    group,
                    s1.addr,
                    "/dev/null",
                    Some((count, args.size)),
                ),
            )
        })
        .collect::<Result<Vec<_>>>()?;
    let cap = start_capture(args.capture_start, &star, &s1)?;
    thread::sleep(JOIN);
    let started = now();
    let send = star.lab.spawn(
        &s1.ns,
        &send_args(pgm, &s1, group, count, args.size, true, args.cc_rate),
    )?;
    let mut done: Vec<Option<f64>> = vec![None; recvs.len()];
    let poll_done = |done: &mut Vec<Option<f64>>| -> Result<()> {
        for (d, p) in done.iter_mut().zip(&recvs) {
            if d.is_none() && p.try_wait()?.is_some() {
                *d = Some(now().duration_since(started).as_secs_f64());
            }
        }
        Ok(())
    };
    let until = started + Duration::from_secs(args.capture_start);
    let startup: Vec<_> = finish_capture(cap, until, &s1)?.into_iter().collect();
    // Window: sample every port at its start and end, noting exits meanwhile.
    let w0 = started + Duration::from_secs(args.warm);
    while now() < w0 {
        poll_done(&mut done)?;
        thread::sleep(Duration::from_millis(10));
    }
    let q0 = rs
        .iter()
        .map(|r| star.qdisc(r))
        .collect::<Result<Vec<_>>>()?;
    let a0 = rs
        .iter()
        .map(|r| star.arrivals(r, &s1))
        .collect::<Result<Vec<_>>>()?;
    let t0 = now();
    let w1 = t0 + Duration::from_secs(args.secs);
    while now() < w1 {
        poll_done(&mut done)?;
        thread::sleep(Duration::from_millis(10));
    }
    let q1 = rs
        .iter()
        .map(|r| star.qdisc(r))
        .collect::<Result<Vec<_>>>()?;
    let a1 = rs
        .iter()
        .map(|r| star.arrivals(r, &s1))
        .collect::<Result<Vec<_>>>()?;
    let window_secs = now().duration_since(t0).as_secs_f64();
    let deadline = now() + Duration::from_secs(3 * span + 30);
    while done.iter().any(Option::is_none) && now() < deadline {
        poll_done(&mut done)?;
        thread::sleep(Duration::from_millis(10));
    }
    let sender = finish_sender(&send, started, Duration::from_secs(30))?;
    print_summary("send", &send);
    let mut receivers = Vec::new();
    for (i, p) in recvs.iter().enumerate() {
        print_summary(&format!("r{}", i + 1), p);
        let result = p
            .stdout()
            .unwrap_or_default()
            .lines()
            .find(|l| l.starts_with("RESULT"))
            .map_or_else(
                || "no RESULT".to_owned(),
                |l| {
                    l.split_whitespace()
                        .find_map(|w| w.strip_prefix("status="))
                        .unwrap_or("?")
                        .to_owned()
                },
            );
        receivers.push(FourReceiver {
            mbit: args.four_mbit[i],
            wire: q1[i].since(q0[i]),
            before: q0[i],
            total: star.qdisc(&rs[i])?,
            arrived: (a1[i].0 - a0[i].0, a1[i].1 - a0[i].1),
            done: done[i],
            result,
            acks_sent: acks_sent(p),
        });
    }
    for r in &rs {
        println!(
            "    {}: {}",
            r.port(),
            star.qdisc_text(r)?.replace('\n', " | ")
        );
    }
    Ok(FourResult {
        receivers,
        window_secs,
        bytes: count * args.size as u64,
        sender,
        startup,
        load,
    })
}

fn print_four_table(args: &Args, rows: &[(u32, FourResult)]) {
    println!(
        "\n### One PGMCC session, receivers behind {:?} Mbit/s\n",
        args.four_mbit
    );
    println!(
        "| run | receiver | TBF Mbit/s | wire Mbit/s in window | / TBF | arriving Mbit/s (RDATA) | drops before, in window (total) | done at s | goodput Mbit/s | ACKs sent | RESULT |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for (run, f) in rows {
        for (i, r) in f.receivers.iter().enumerate() {
            let wire = mbit(r.wire.bytes, f.window_secs);
            let (done, good) = match r.done {
                Some(d) => (format!("{d:.1}"), format!("{:.2}", mbit(f.bytes, d))),
                None => ("-".to_owned(), "-".to_owned()),
            };
            println!(
                "| {run} | r{} | {} | {wire:.2} | {:.2} | {:.2} ({:.2}) | {}, {} ({}) | {done} | {good} | {} | {} |",
                i + 1,
                r.mbit,
                wire / f64::from(r.mbit),
                mbit(r.arrived.0, f.window_secs),
                mbit(r.arrived.1, f.window_secs),
                r.before.dropped,
                r.wire.dropped,
                r.total.dropped,
                r.acks_sent,
                r.result
            );
        }
    }
    println!(
        "\n| run | slowest TBF Mbit/s | source's rate in window (fastest port) Mbit/s | / slowest | of which ODATA, RDATA Mbit/s (IP bytes) | session goodput Mbit/s (to the last receiver) | acks/halvings/probes/timeouts | elections | RDATA | NAKs |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for (run, f) in rows {
        let slow = f.receivers.iter().map(|r| r.mbit).min().unwrap_or(0);
        let fastest = f.receivers.iter().max_by_key(|r| r.mbit);
        let src = fastest.map_or(0.0, |r| mbit(r.wire.bytes, f.window_secs));
        let (all, rdata) = fastest.map_or((0, 0), |r| r.arrived);
        let split = format!(
            "{:.2}, {:.2}",
            mbit(all - rdata, f.window_secs),
            mbit(rdata, f.window_secs)
        );
        let last = f
            .receivers
            .iter()
            .map(|r| r.done)
            .collect::<Option<Vec<f64>>>()
            .and_then(|v| v.into_iter().reduce(f64::max));
        let good = last.map_or_else(|| "-".to_owned(), |d| format!("{:.2}", mbit(f.bytes, d)));
        let s = &f.sender;
        let opt = |x: Option<u64>| x.map_or_else(|| "-".to_owned(), |v| v.to_string());
        println!(
            "| {run} | {slow} | {src:.2} | {:.2} | {split} | {good} | {} | {} | {} | {} |",
            src / f64::from(slow.max(1)),
            s.cc_cell(),
            opt(s.elections),
            opt(s.rdata),
            opt(s.naks)
        );
    }
}

// ---------------------------------------------------------------------------------------

fn main() -> Result<()> {
    let args = parse_args()?;
    ensure!(
        is_root(),
        "the fairness harness needs root (network namespaces)"
    );
    let pgm = pgm_bin(&args)?;
    let pgm = pgm.to_string_lossy().into_owned();
    println!(
        "fairness: pgm {pgm}; bottleneck TBF {} Mbit/s, queue {} ms ({} B), burst {} B; \
         window {} s after {} s; messages {} B; TCP {}; PGMCC sources' --rate {}; kernel {}",
        args.mbit,
        args.queue_ms,
        Tbf {
            mbit: args.mbit,
            queue_ms: args.queue_ms
        }
        .limit(),
        Tbf {
            mbit: args.mbit,
            queue_ms: args.queue_ms
        }
        .burst(),
        args.secs,
        args.warm,
        args.size,
        args.tcp_cc,
        args.cc_rate,
        std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim(),
    );
    // Leftovers of an earlier crashed run of this harness.
    for tag in ["fairtcp", "fairtwo", "fairfour"] {
        let _ = Lab::cleanup_stale(&format!("pgl-{tag}-"));
    }
    let mut tcp_rows = Vec::new();
    let mut two_rows = Vec::new();
    let mut four_rows = Vec::new();
    for run in 1..=args.repeat {
        for sc in &args.scenarios {
            println!("\n== run {run}, {sc:?} (load {})", loadavg());
            match sc {
                Scenario::Tcp | Scenario::TcpOff => {
                    let on = *sc == Scenario::Tcp;
                    let p = run_pgm_tcp(&args, &pgm, on)?;
                    print_series(&p, ["PGM", "TCP"]);
                    tcp_rows.push((run, on, p));
                }
                Scenario::Two => {
                    let p = run_pgm_pgm(&args, &pgm)?;
                    print_series(&p, ["A", "B"]);
                    two_rows.push((run, true, p));
                }
                Scenario::Four => four_rows.push((run, run_four(&args, &pgm)?)),
            }
        }
    }
    if !tcp_rows.is_empty() {
        tcp_rows.sort_by_key(|(run, on, _)| (!*on, *run));
        print_pair_table(
            &format!(
                "PGM vs TCP ({}), bottleneck {} Mbit/s",
                args.tcp_cc, args.mbit
            ),
            &args,
            &tcp_rows,
            true,
        );
    }
    if !two_rows.is_empty() {
        print_pair_table(
            &format!("Two PGMCC sessions, bottleneck {} Mbit/s", args.mbit),
            &args,
            &two_rows,
            false,
        );
    }
    if !four_rows.is_empty() {
        print_four_table(&args, &four_rows);
    }
    let startups: Vec<(String, u32, &(String, Startup))> = tcp_rows
        .iter()
        .map(|(run, on, p)| (if *on { "tcp" } else { "tcp-off" }, *run, &p.startup))
        .chain(two_rows.iter().map(|(run, _, p)| ("two", *run, &p.startup)))
        .chain(four_rows.iter().map(|(run, f)| ("four", *run, &f.startup)))
        .flat_map(|(sc, run, v)| v.iter().map(move |x| (sc.to_owned(), run, x)))
        .collect();
    if !startups.is_empty() {
        print_startup_table(args.capture_start, &startups);
    }
    let loads: Vec<&str> = tcp_rows
        .iter()
        .map(|(_, _, p)| p.load.as_str())
        .chain(two_rows.iter().map(|(_, _, p)| p.load.as_str()))
        .chain(four_rows.iter().map(|(_, f)| f.load.as_str()))
        .collect();
    println!(
        "\nload averages at the start of each run: {}",
        loads.join("; ")
    );
    Ok(())
}
