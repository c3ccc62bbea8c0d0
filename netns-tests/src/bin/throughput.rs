//! End-host throughput harness (not a timed test): our `pgm`, the OpenPGM 5.3 peer and plain
//! UDP multicast, side by side over one veth pair, with and without random loss.
//!
//! ```text
//! cargo run --release -p pgm-netns-tests --bin throughput -- \
//!     [--count N] [--sizes 64,1400] [--loss 0,5] [--repeat K] [--impls ours,openpgm,udp]
//! ```
//!
//! Needs root. For every run it builds a fresh two-namespace lab (`snd` and `rcv` joined by a
//! veth pair; with loss, an nftables rule drops that percentage of the UDP datagrams to port
//! 3056 arriving at `rcv`), starts the receiver, then the sender, and measures at the
//! RECEIVER the messages delivered and verified and the time from the first to the last
//! message. Every implementation sends and checks the same message pattern (version 1 of
//! `peers/openpgm/pgmpeer.c`) with a fixed size, so the application work is the same:
//!
//! - `ours`: `target/release/pgm send|recv` over PGM/UDP (ports 3056/3056), sender uncapped
//!   (`--rate 0`), receiver `--verify`. Its first/last message times are the arrival times of
//!   the receiver's "session started" and "count reached" lines on stderr.
//! - `openpgm`: the OpenPGM peer (`peers/openpgm`) over PGM/UDP (3056/3056), same transmit
//!   and receive windows as ours (`--window`, default 32768 sequence numbers, our CLI's
//!   default). It reports its own first-to-last time. Under loss the harness also searches for the best capped rate at which it
//!   completes (halving from line rate, then one step of √2 back up).
//! - `udp`: plain UDP multicast, `sendmmsg`/`recvmmsg` in batches of 64 (the `udpmc`
//!   subcommand of this binary), no rate cap and no repair: its loss runs show what arrives.
//!
//! Socket buffers: `net.core.rmem_*`/`wmem_*` exist only in the initial network namespace (they
//! are read-only inside others), so the harness raises them there for the run and restores
//! them afterwards: `rmem_max`/`wmem_max` at least 4 MiB (our transports and `udpmc` ask for
//! 4 MiB, which the kernel doubles to 8 MiB), `rmem_default` 8 MiB and `wmem_default` 4 MiB, so
//! that the OpenPGM peer, which sets no buffer size, gets the same 8 MiB receive buffer.
//! `--no-sysctl` leaves them alone.
//!
//! `throughput udpmc send|recv ...` is the plain UDP multicast peer (`pgm_netns_tests::bench::udpmc`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::thread;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use pgm_netns_tests::bench::{
    Hogs, PORT, PairLab, Piped, SysctlGuard, field, fields, loadavg, machine, median, now,
    parse_list, read_sysctls, release_bin, udpmc,
};
use pgm_netns_tests::bins::openpgm_peer;
use pgm_netns_tests::lab::{LossSpec, Selector, is_root};

/// Bytes each message costs on the wire beyond its payload with PGM/UDP: IPv4 20, UDP 8,
/// PGM header 16, data header 8. Used only to pick the OpenPGM rate caps to try.
const PGM_OVERHEAD: u64 = 52;
/// Default transmit and receive windows of both PGM implementations, in sequence numbers
/// (`--window`): our CLI's default.
const WINDOW_SQNS: u32 = 32_768;

// ---------------------------------------------------------------------------------------
// Small helpers

fn fmt_rate(msgs: f64) -> String {
    if msgs >= 1e6 {
        format!("{:.2}M", msgs / 1e6)
    } else {
        format!("{:.1}k", msgs / 1e3)
    }
}

fn fmt_bytes_rate(bps: u64) -> String {
    format!("{:.2} MB/s", bps as f64 / 1e6)
}

// ---------------------------------------------------------------------------------------
// Harness options

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Impl {
    Ours,
    /// Ours with PGMCC switched off at both ends.
    OursNoCc,
    OpenPgm,
    Udp,
}

impl Impl {
    fn name(self) -> &'static str {
        match self {
            Self::Ours => "ours (pgm)",
            Self::OursNoCc => "ours, PGMCC off",
            Self::OpenPgm => "OpenPGM 5.3",
            Self::Udp => "plain UDP mcast",
        }
    }
}

struct Opts {
    count: u64,
    sizes: Vec<usize>,
    losses: Vec<u8>,
    repeat: usize,
    impls: Vec<Impl>,
    search: bool,
    search_count: Option<u64>,
    search_steps: u32,
    window: u32,
    stall: f64,
    sysctl: bool,
    build: bool,
    pgm: Option<PathBuf>,
    verbose: bool,
    /// CPU-bound processes beside every run.
    hogs: usize,
    /// Pin the receiver and the hogs to CPU 0: the receiver starved of CPU.
    starve: bool,
}

const USAGE: &str = "\
usage: throughput [--count N] [--sizes 64,1400] [--loss 0,5] [--repeat K]
                  [--impls ours,openpgm,udp] [--no-search] [--search-count N]
                  [--search-steps S] [--window SQNS] [--stall SECS] [--pgm PATH] [--no-build]
                  [--no-sysctl] [--verbose] [--hogs N] [--starve]
  --impls also takes ours-nocc (ours with PGMCC off at both ends)
  --hogs N   N CPU-bound processes (busy shells) beside every run
  --starve   pin the receiver and the hogs to CPU 0: the receiver gets a share of one CPU
       throughput udpmc send|recv ...   (the plain UDP multicast peer; udpmc --help)
Needs root. Prints one line per run on stderr and the summary table on stdout.";

fn parse_opts(args: &[String]) -> Result<Opts> {
    let mut o = Opts {
        count: 300_000,
        sizes: vec![64, 1400],
        losses: vec![0, 5],
        repeat: 3,
        impls: vec![Impl::Ours, Impl::OpenPgm, Impl::Udp],
        search: true,
        search_count: None,
        search_steps: 6,
        window: WINDOW_SQNS,
        stall: 5.0,
        sysctl: true,
        build: true,
        pgm: None,
        verbose: false,
        hogs: 0,
        starve: false,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut v = || it.next().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--count" => o.count = v()?.parse()?,
            "--sizes" | "--size" => o.sizes = parse_list(v()?, "size")?,
            "--loss" => o.losses = parse_list(v()?, "loss percentage")?,
            "--repeat" => o.repeat = v()?.parse()?,
            "--impls" => {
                o.impls = v()?
                    .split(',')
                    .map(|s| match s.trim() {
                        "ours" => Ok(Impl::Ours),
                        "ours-nocc" => Ok(Impl::OursNoCc),
                        "openpgm" => Ok(Impl::OpenPgm),
                        "udp" => Ok(Impl::Udp),
                        x => bail!("unknown implementation {x:?} (ours, openpgm, udp)"),
                    })
                    .collect::<Result<_>>()?;
            }
            "--no-search" => o.search = false,
            "--search-count" => o.search_count = Some(v()?.parse()?),
            "--search-steps" => o.search_steps = v()?.parse()?,
            "--window" => o.window = v()?.parse()?,
            "--stall" => o.stall = v()?.parse()?,
            "--pgm" => o.pgm = Some(PathBuf::from(v()?)),
            "--no-build" => o.build = false,
            "--no-sysctl" => o.sysctl = false,
            "--verbose" => o.verbose = true,
            "--hogs" => o.hogs = v()?.parse()?,
            "--starve" => o.starve = true,
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
        "sizes must be 8..=1400 (one UDP datagram, and the index in the first 8 bytes)"
    );
    ensure!(o.losses.iter().all(|l| *l < 100), "loss must be 0..=99");
    o.impls.sort();
    o.impls.dedup();
    Ok(o)
}

// ---------------------------------------------------------------------------------------
// One run

struct Tools {
    pgm: PathBuf,
    peer: PathBuf,
    me: PathBuf,
}

#[derive(Clone, Debug)]
struct Outcome {
    received: u64,
    bad: u64,
    /// Loss events (PGM) or missing messages (UDP).
    lost: u64,
    secs: f64,
    ok: bool,
    nft_dropped: u64,
    note: String,
}

impl Outcome {
    fn msgs_per_sec(&self) -> f64 {
        if self.secs > 0.0 {
            self.received as f64 / self.secs
        } else {
            0.0
        }
    }
}

struct RunSpec {
    imp: Impl,
    size: usize,
    loss: u8,
    /// Sender rate cap in bytes per second (TXW_MAX_RTE); None for uncapped.
    cap: Option<u64>,
    count: u64,
}

fn run_once(o: &Opts, tools: &Tools, spec: &RunSpec) -> Result<Outcome> {
    let pair = PairLab::new("thr")?;
    let PairLab {
        lab,
        snd,
        rcv,
        snd_addr,
        rcv_addr,
        group,
    } = &pair;
    let (snd_addr, rcv_addr, group) = (*snd_addr, *rcv_addr, *group);
    let rule = if spec.loss > 0 {
        let s = LossSpec::ingress("eth0", spec.loss).only(Selector::Udp(PORT));
        Some(lab.add_loss(rcv, &s)?)
    } else {
        None
    };

    let count = spec.count.to_string();
    let size = spec.size.to_string();
    let port = PORT.to_string();
    let stall = o.stall;
    let net = |a: Ipv4Addr| format!("{a};{group}");
    let s = |v: &[&str]| v.iter().map(|x| (*x).to_owned()).collect::<Vec<String>>();
    let rate = spec.cap.unwrap_or(0).to_string();
    let window = o.window.to_string();
    // Wait for a capped run's expected duration, twice over, plus slack.
    let expected = spec.cap.map_or(0.0, |r| {
        spec.count as f64 * (spec.size as u64 + PGM_OVERHEAD) as f64 / r as f64
    });
    let deadline = Duration::from_secs_f64(120.0 + 2.0 * expected);
    let (rx_args, tx_args) = match spec.imp {
        Impl::Ours | Impl::OursNoCc => {
            let pgm = tools.pgm.display().to_string();
            let idle = format!("{stall}");
            let cc = if spec.imp == Impl::Ours { "on" } else { "off" };
            let mut rx = s(&[
                &pgm,
                "recv",
                "--network",
                &net(rcv_addr),
                "--unicast-port",
                &port,
                "--multicast-port",
                &port,
                "--count",
                &count,
                "--verify",
                "--size",
                &size,
                "--idle-timeout",
                &idle,
                "--rxw-sqns",
                &window,
                "--pgmcc",
                cc,
            ]);
            if o.starve {
                rx.splice(0..0, s(&["taskset", "-c", "0"]));
            }
            let tx = s(&[
                &pgm,
                "send",
                "--network",
                &net(snd_addr),
                "--unicast-port",
                &port,
                "--multicast-port",
                &port,
                "--count",
                &count,
                "--size",
                &size,
                "--rate",
                &rate,
                "--txw-sqns",
                &window,
                "--linger",
                "600",
                "--pgmcc",
                cc,
            ]);
            (rx, tx)
        }
        Impl::OpenPgm => {
            let peer = tools.peer.display().to_string();
            let timeout = format!("{:.0}", deadline.as_secs_f64());
            let common = [
                "--udp",
                "--ucast-port",
                &port,
                "--mcast-port",
                &port,
                "--count",
                &count,
                "--sizes",
                &size,
            ];
            let mut rx = s(&[&peer, "recv", "--network", &net(rcv_addr)]);
            rx.extend(s(&common));
            rx.extend(s(&[
                "--rxw-sqns",
                &window,
                "--timeout",
                &timeout,
                "--verbose",
            ]));
            let mut tx = s(&[&peer, "send", "--network", &net(snd_addr)]);
            tx.extend(s(&common));
            tx.extend(s(&[
                "--rate",
                &rate,
                "--txw-sqns",
                &window,
                "--rxw-sqns",
                &window,
                "--linger",
                "600",
            ]));
            (rx, tx)
        }
        Impl::Udp => {
            let me = tools.me.display().to_string();
            let (ra, sa, g) = (
                rcv_addr.to_string(),
                snd_addr.to_string(),
                group.to_string(),
            );
            let rx = s(&[
                &me, "udpmc", "recv", "--bind", &ra, "--group", &g, "--port", &port, "--count",
                &count, "--size", &size, "--idle", "1",
            ]);
            let tx = s(&[
                &me, "udpmc", "send", "--bind", &sa, "--group", &g, "--port", &port, "--count",
                &count, "--size", &size,
            ]);
            (rx, tx)
        }
    };

    let mut rx = Piped::spawn(lab, rcv, &rx_args)?;
    // Ready: udpmc says so; OpenPGM prints its TSI once connected; ours prints nothing, so
    // give it the interop tests' half second.
    let ready_until = now() + Duration::from_secs(10);
    loop {
        let ready = match spec.imp {
            Impl::Udp => rx.find_out("READY").is_some(),
            Impl::OpenPgm => rx.stderr().iter().any(|(_, l)| l.contains("receiver TSI")),
            Impl::Ours | Impl::OursNoCc => true,
        };
        if ready || now() >= ready_until || rx.try_wait().is_some() {
            break;
        }
        thread::sleep(Duration::from_millis(5));
    }
    thread::sleep(Duration::from_millis(
        if matches!(spec.imp, Impl::Ours | Impl::OursNoCc) {
            500
        } else {
            100
        },
    ));
    if let Some(st) = rx.try_wait() {
        let tail = rx.stderr_tail(10);
        rx.kill();
        bail!(
            "{} receiver exited at start ({st}):\n{tail}",
            spec.imp.name()
        );
    }
    let tx = Piped::spawn(lab, snd, &tx_args)?;
    let t_start = now();

    // Wait for the receiver; stop an OpenPGM receiver that has made no progress for `stall`
    // seconds (after unrecoverable loss it keeps waiting until its --timeout).
    let mut stopped_for_stall = false;
    let status = loop {
        if let Some(st) = rx.try_wait() {
            break Some(st);
        }
        let t = now();
        if spec.imp == Impl::OpenPgm && !stopped_for_stall {
            let progress = rx
                .stderr()
                .iter()
                .rev()
                .find(|(_, l)| l.starts_with("pgmpeer: received"))
                .map_or(t_start, |(t, _)| *t);
            if t.duration_since(progress).as_secs_f64() > stall {
                stopped_for_stall = true;
                rx.signal(libc::SIGINT);
            }
        }
        if t.duration_since(t_start) > deadline {
            break None;
        }
        thread::sleep(Duration::from_millis(20));
    };
    // Let the reader threads catch the last lines.
    thread::sleep(Duration::from_millis(50));
    let tx_err = tx.stderr_tail(6);
    tx.kill();
    let nft_dropped = match &rule {
        Some(r) => r.counters().map(|c| c.dropped).unwrap_or(0),
        None => 0,
    };
    let result_line = rx.find_out("RESULT");
    let rx_err = rx.stderr_tail(8);
    let rx_stderr = rx.stderr();
    rx.kill();
    let Some(result_line) = result_line else {
        bail!(
            "{} receiver gave no RESULT line (status {status:?}); receiver stderr:\n{rx_err}\
             sender stderr:\n{tx_err}",
            spec.imp.name()
        );
    };
    let f = fields(&result_line);
    let received: u64 = field(&f, "received").unwrap_or(0);
    let bad: u64 = field(&f, "bad").unwrap_or(0);
    let ok = f.get("status") == Some(&"ok") && received == spec.count && bad == 0;
    let mut note = String::new();
    let (lost, secs) = match spec.imp {
        Impl::Ours | Impl::OursNoCc => {
            let start = rx_stderr
                .iter()
                .find(|(_, l)| l.contains(" started"))
                .map(|(t, _)| *t);
            let end = rx_stderr
                .iter()
                .find(|(_, l)| l.starts_with("pgm: ") && l.contains(": received "))
                .map(|(t, l)| {
                    if let Some(i) = l.find("repairs requested") {
                        note = l[i..].to_owned();
                    }
                    if l.starts_with("pgm: idle timeout") {
                        *t - Duration::from_secs_f64(stall)
                    } else {
                        *t
                    }
                });
            let secs = match (start, end) {
                (Some(a), Some(b)) if b > a => b.duration_since(a).as_secs_f64(),
                _ => 0.0,
            };
            (field(&f, "lost_events").unwrap_or(0), secs)
        }
        Impl::OpenPgm => {
            if stopped_for_stall {
                note = format!("stalled ({stall} s without progress), stopped");
            }
            let lost = field::<u64>(&f, "lost_events").unwrap_or(0);
            let missing = field::<u64>(&f, "missing").unwrap_or(0);
            if missing > 0 {
                note = format!("{note} missing={missing}").trim().to_owned();
            }
            (lost, field(&f, "seconds").unwrap_or(0.0))
        }
        Impl::Udp => {
            let missing = field::<u64>(&f, "missing").unwrap_or(0);
            (missing, field(&f, "seconds").unwrap_or(0.0))
        }
    };
    if o.verbose {
        eprintln!(
            "  {result_line}\n  receiver stderr (tail):\n{rx_err}  sender stderr (tail):\n{tx_err}"
        );
    }
    drop(pair);
    Ok(Outcome {
        received,
        bad,
        lost,
        secs,
        ok,
        nft_dropped,
        note,
    })
}

// ---------------------------------------------------------------------------------------
// The matrix, the OpenPGM cap search and the report

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Key {
    size: usize,
    loss: u8,
    imp: Impl,
    /// Cap in bytes per second; 0 = uncapped.
    cap: u64,
}

/// One cap tried by the OpenPGM search: cap in bytes/s, completed, messages per second.
type Trial = (u64, bool, f64);

#[derive(Default)]
struct Results {
    runs: BTreeMap<Key, Vec<Outcome>>,
    /// (size, loss) -> the OpenPGM caps tried, in order, and whether each completed.
    search: BTreeMap<(usize, u8), Vec<Trial>>,
    /// (size, loss) -> the best cap at which OpenPGM completed.
    best_cap: BTreeMap<(usize, u8), u64>,
    errors: Vec<String>,
}

impl Results {
    /// The median messages per second of a cell: over complete runs for PGM, over every run
    /// that delivered something for plain UDP (which has no repair).
    fn median(&self, key: &Key) -> Option<f64> {
        let runs = self.runs.get(key)?;
        let mut v: Vec<f64> = runs
            .iter()
            .filter(|r| {
                if key.imp == Impl::Udp {
                    r.received > 0
                } else {
                    r.ok
                }
            })
            .map(Outcome::msgs_per_sec)
            .collect();
        median(&mut v)
    }

    fn completed(&self, key: &Key) -> (usize, usize) {
        self.runs
            .get(key)
            .map_or((0, 0), |r| (r.iter().filter(|x| x.ok).count(), r.len()))
    }
}

struct Progress {
    done: usize,
}

fn record(
    o: &Opts,
    tools: &Tools,
    res: &mut Results,
    prog: &mut Progress,
    spec: &RunSpec,
) -> Option<Outcome> {
    prog.done += 1;
    let cap = spec.cap.map_or_else(|| "none".to_owned(), fmt_bytes_rate);
    let label = format!(
        "[{}] {} {} B loss {}% cap {cap}",
        prog.done,
        spec.imp.name(),
        spec.size,
        spec.loss
    );
    match run_once(o, tools, spec) {
        Ok(out) => {
            eprintln!(
                "{label}: {} {}/{} bad={} lost={} in {:.2} s = {} msgs/s, {:.1} MB/s \
                 (nft dropped {}; load {}) {}",
                if out.ok { "ok" } else { "FAIL" },
                out.received,
                spec.count,
                out.bad,
                out.lost,
                out.secs,
                fmt_rate(out.msgs_per_sec()),
                out.msgs_per_sec() * spec.size as f64 / 1e6,
                out.nft_dropped,
                loadavg(),
                out.note
            );
            let key = Key {
                size: spec.size,
                loss: spec.loss,
                imp: spec.imp,
                cap: spec.cap.unwrap_or(0),
            };
            res.runs.entry(key).or_default().push(out.clone());
            Some(out)
        }
        Err(e) => {
            eprintln!("{label}: ERROR {e:#}");
            res.errors.push(format!("{label}: {e:#}"));
            None
        }
    }
}

/// One run of the OpenPGM cap search; returns whether it completed.
#[expect(
    clippy::too_many_arguments,
    reason = "a private helper of search_openpgm"
)]
fn trial(
    o: &Opts,
    tools: &Tools,
    res: &mut Results,
    prog: &mut Progress,
    size: usize,
    loss: u8,
    cap: u64,
    tried: &mut Vec<Trial>,
) -> bool {
    let spec = RunSpec {
        imp: Impl::OpenPgm,
        size,
        loss,
        cap: Some(cap),
        count: o.search_count.unwrap_or(o.count),
    };
    let out = record(o, tools, res, prog, &spec);
    let ok = out.as_ref().is_some_and(|x| x.ok);
    tried.push((cap, ok, out.map_or(0.0, |x| x.msgs_per_sec())));
    ok
}

/// Search for the best cap at which OpenPGM completes under `loss`. It starts at OpenPGM's
/// own loss-free rate on the wire; from there it halves until a run completes (or doubles,
/// at most twice, while runs complete), then tries once the geometric mean of the best
/// completing and the lowest failing cap (a step of √2). The best cap is then run again
/// until it has `repeat` runs; its median is what the targets compare against.
fn search_openpgm(
    o: &Opts,
    tools: &Tools,
    res: &mut Results,
    prog: &mut Progress,
    size: usize,
    loss: u8,
) {
    let base = res
        .median(&Key {
            size,
            loss: 0,
            imp: Impl::OpenPgm,
            cap: 0,
        })
        .map_or(200_000_000, |m| {
            (m * (size as u64 + PGM_OVERHEAD) as f64) as u64
        });
    // Rounded up to 1 MB/s.
    let base = base.div_ceil(1_000_000) * 1_000_000;
    let mut tried = Vec::new();
    let mut best: Option<u64> = None;
    let mut fail: Option<u64> = None;
    if trial(o, tools, res, prog, size, loss, base, &mut tried) {
        best = Some(base);
        for k in 1..=2 {
            let cap = base << k;
            if trial(o, tools, res, prog, size, loss, cap, &mut tried) {
                best = Some(cap);
            } else {
                fail = Some(cap);
                break;
            }
        }
    } else {
        fail = Some(base);
        for step in 1..=o.search_steps {
            let cap = base >> step;
            if trial(o, tools, res, prog, size, loss, cap, &mut tried) {
                best = Some(cap);
                break;
            }
            fail = Some(cap);
        }
    }
    if let (Some(b), Some(f)) = (best, fail) {
        let mid = ((b as f64 * std::f64::consts::SQRT_2) as u64).min(f - 1);
        if trial(o, tools, res, prog, size, loss, mid, &mut tried) {
            best = Some(mid);
        }
    }
    if let Some(b) = best {
        for _ in 1..o.repeat {
            trial(o, tools, res, prog, size, loss, b, &mut tried);
        }
        res.best_cap.insert((size, loss), b);
    }
    res.search.insert((size, loss), tried);
}

fn report(o: &Opts, res: &Results) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "| size | loss | implementation | sender cap | complete | msgs/s (median) | MB/s \
         (median) | vs UDP | msgs/s per run |"
    );
    let _ = writeln!(s, "|---:|---:|---|---|---:|---:|---:|---:|---|");
    for (key, runs) in &res.runs {
        let med = res.median(key);
        let udp = res.median(&Key {
            imp: Impl::Udp,
            cap: 0,
            ..*key
        });
        let (ok, n) = res.completed(key);
        let per_run: Vec<String> = runs
            .iter()
            .map(|r| {
                let v = fmt_rate(r.msgs_per_sec());
                if r.ok || key.imp == Impl::Udp {
                    v
                } else {
                    format!("fail({}/{})", r.received, o.count.max(r.received))
                }
            })
            .collect();
        let cap = if key.cap == 0 {
            "none".to_owned()
        } else {
            fmt_bytes_rate(key.cap)
        };
        let ratio = match (med, udp) {
            (Some(m), Some(u)) if key.imp != Impl::Udp && u > 0.0 => format!("{:.2}x", m / u),
            _ => "".to_owned(),
        };
        let complete = if key.imp == Impl::Udp {
            let delivered: u64 = runs.iter().map(|r| r.received).sum();
            let want = o.count * runs.len() as u64;
            format!(
                "{ok}/{n} ({:.1}% delivered)",
                100.0 * delivered as f64 / want as f64
            )
        } else {
            format!("{ok}/{n}")
        };
        let _ = writeln!(
            s,
            "| {} B | {}% | {} | {cap} | {complete} | {} | {} | {ratio} | {} |",
            key.size,
            key.loss,
            key.imp.name(),
            med.map_or("-".to_owned(), fmt_rate),
            med.map_or("-".to_owned(), |m| format!(
                "{:.1}",
                m * key.size as f64 / 1e6
            )),
            per_run.join(", ")
        );
    }
    for ((size, loss), tried) in &res.search {
        let t: Vec<String> = tried
            .iter()
            .map(|(c, ok, m)| {
                format!(
                    "{} {}",
                    fmt_bytes_rate(*c),
                    if *ok {
                        format!("ok ({} msgs/s)", fmt_rate(*m))
                    } else {
                        "fail".to_owned()
                    }
                )
            })
            .collect();
        let _ = writeln!(
            s,
            "\nOpenPGM cap search, {size} B, {loss}% loss: {}",
            t.join("; ")
        );
    }
    s.push_str("\nTargets:\n");
    let ratio = |size: usize, loss: u8, a: Impl, acap: u64, b: Impl, bcap: u64| {
        let x = res.median(&Key {
            size,
            loss,
            imp: a,
            cap: acap,
        })?;
        let y = res.median(&Key {
            size,
            loss,
            imp: b,
            cap: bcap,
        })?;
        Some((x, y))
    };
    for (size, need) in [(1400usize, 1.2f64), (64, 1.5)] {
        if let Some((x, y)) = ratio(size, 0, Impl::Ours, 0, Impl::OpenPgm, 0) {
            let r = x / y;
            let _ = writeln!(
                s,
                "- {size} B, no loss: ours {} vs OpenPGM {} msgs/s = {r:.2}x (target >= \
                 {need}x): {}",
                fmt_rate(x),
                fmt_rate(y),
                if r >= need { "MET" } else { "MISSED" }
            );
        }
    }
    for &loss in o.losses.iter().filter(|l| **l > 0) {
        for &size in &o.sizes {
            let key = Key {
                size,
                loss,
                imp: Impl::Ours,
                cap: 0,
            };
            let (ok, n) = res.completed(&key);
            if n == 0 {
                continue;
            }
            let ours = res.median(&key);
            let best = res.best_cap.get(&(size, loss)).and_then(|c| {
                res.median(&Key {
                    size,
                    loss,
                    imp: Impl::OpenPgm,
                    cap: *c,
                })
                .map(|m| (*c, m))
            });
            // No cap searched because OpenPGM completed every uncapped run: compare with that.
            let uncapped = Key {
                size,
                loss,
                imp: Impl::OpenPgm,
                cap: 0,
            };
            let best = best.or_else(|| {
                let (k, m) = res.completed(&uncapped);
                (m > 0 && k == m)
                    .then(|| res.median(&uncapped))
                    .flatten()
                    .map(|x| (0, x))
            });
            let complete = ok == n;
            let verdict = match (ours, best) {
                (Some(x), Some((c, m))) => {
                    let r = x / m;
                    let cap = if c == 0 {
                        "(none: it completed every uncapped run)".to_owned()
                    } else {
                        fmt_bytes_rate(c)
                    };
                    format!(
                        "ours uncapped {} msgs/s vs OpenPGM's best completing cap {cap} ({} \
                         msgs/s) = {r:.2}x (target >= 1.5x): {}",
                        fmt_rate(x),
                        fmt_rate(m),
                        if complete && r >= 1.5 {
                            "MET"
                        } else {
                            "MISSED"
                        }
                    )
                }
                (Some(x), None) => format!(
                    "ours uncapped {} msgs/s; OpenPGM completed at no cap tried: no comparison",
                    fmt_rate(x)
                ),
                (None, _) => "ours completed no run: MISSED".to_owned(),
            };
            let _ = writeln!(
                s,
                "- {size} B, {loss}% loss, no cap: ours complete in {ok}/{n} runs ({}); {verdict}",
                if complete { "MET" } else { "MISSED" }
            );
        }
    }
    if !res.errors.is_empty() {
        let _ = writeln!(s, "\nErrors:");
        for e in &res.errors {
            let _ = writeln!(s, "- {e}");
        }
    }
    s
}

fn build_pgm(o: &Opts) -> Result<PathBuf> {
    match &o.pgm {
        Some(p) => Ok(p.clone()),
        None => release_bin("pgm-core", "pgm", o.build),
    }
}

fn harness(args: &[String]) -> Result<()> {
    let o = parse_opts(args)?;
    ensure!(is_root(), "the throughput harness needs root (namespaces)");
    let pgm = build_pgm(&o)?;
    let peer = openpgm_peer()?;
    let me = std::env::current_exe().context("current_exe")?;
    let tools = Tools { pgm, peer, me };
    let guard = if o.sysctl {
        Some(SysctlGuard::raise()?)
    } else {
        None
    };
    let sysctls = read_sysctls();
    let hogs = Hogs::start(o.hogs, o.starve.then_some(0))?;
    let beside = match (hogs.len(), o.starve) {
        (0, _) => String::from("nothing else started beside the runs"),
        (n, false) => format!("{n} CPU-bound processes beside every run"),
        (n, true) => format!(
            "{n} CPU-bound processes and the receiver pinned to CPU 0 (the receiver starved)"
        ),
    };
    let started = now();
    let load0 = loadavg();
    eprintln!(
        "throughput: {}; {sysctls}; load average {load0}; {} messages per run; windows {} \
         sqns",
        machine(),
        o.count,
        o.window
    );

    let mut res = Results::default();
    let mut prog = Progress { done: 0 };
    for _ in 0..o.repeat {
        for &size in &o.sizes {
            for &loss in &o.losses {
                for &imp in &o.impls {
                    record(
                        &o,
                        &tools,
                        &mut res,
                        &mut prog,
                        &RunSpec {
                            imp,
                            size,
                            loss,
                            cap: None,
                            count: o.count,
                        },
                    );
                }
            }
        }
    }
    if o.search && o.impls.contains(&Impl::OpenPgm) {
        for &size in &o.sizes {
            for &loss in o.losses.iter().filter(|l| **l > 0) {
                let key = Key {
                    size,
                    loss,
                    imp: Impl::OpenPgm,
                    cap: 0,
                };
                let (ok, n) = res.completed(&key);
                if n > 0 && ok == n {
                    eprintln!("OpenPGM completed uncapped at {size} B, {loss}%: no cap search");
                    continue;
                }
                search_openpgm(&o, &tools, &mut res, &mut prog, size, loss);
            }
        }
    }
    drop(hogs);
    drop(guard);
    let _ = std::fs::remove_file(&tools.peer);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Machine: {}\nSysctls during the run: {sysctls}; {beside}\nLoad average at start {load0}, at end \
         {}; {} runs in {:.0} s; {} messages per run, medians of {} repeats; transmit and \
         receive windows {} sqns\n",
        machine(),
        loadavg(),
        prog.done,
        started.elapsed().as_secs_f64(),
        o.count,
        o.repeat,
        o.window
    );
    out.push_str(&report(&o, &res));
    println!("{out}");
    Ok(())
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("udpmc") {
        return udpmc::main(&args[1..]);
    }
    harness(&args)
}
