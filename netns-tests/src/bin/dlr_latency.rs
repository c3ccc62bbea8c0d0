//! DLR repair-latency harness (not a timed test): loss-to-repair time at the receivers with
//! an upstream DLR and without it, on one topology, with one loss rule, in one run.
//!
//! ```text
//! cargo run --release -p pgm-netns-tests --bin dlr_latency -- \
//!     [--delay-ms 50] [--loss 5] [--count 3000] [--rate 500000] [--size 1000] \
//!     [--receivers 2] [--phases with,without] [--rounds 1]
//! ```
//!
//! Needs root. The topology is the upstream-DLR one of `tests/dlr_repair.rs`, with a delayed
//! WAN link between the source and R1 and a receiver LAN behind R2:
//!
//! ```text
//!  src ==(delay)== r1 ---- [transit bridge: r1, r2, dlr] ---- r2 ---- [lan bridge: rcv1..rcvN]
//! ```
//!
//! - the link src - r1 gets `--delay-ms` one way in each direction (`lab::delay`: NFQUEUE and
//!   a userspace delayer, since the kernel has no netem): every packet leaving `src` and every
//!   packet R1 sends towards `src` waits that long;
//! - R1 and R2 run `pgm-routerd`, the DLR `pgm-dlrd` (upstream role, the session listed);
//! - `--loss` percent of the ODATA R2 forwards onto the receiver LAN is dropped (nftables on
//!   R2's `lan` egress; ODATA only, so that every repair is the first one asked for and the
//!   figures do not mix in NAK_RDATA_IVL retries). The receivers behind the bridge lose the
//!   same sequence numbers.
//!
//! Each phase is one fresh session (a new `pgm send`, new TSI) of `--count` messages of
//! `--size` bytes at `--rate` bytes/s to `--receivers` receivers (`pgm recv --verify`): `with`
//! runs while the DLR runs; `without` after the DLR has been stopped (SIGTERM) — so R2 has
//! no DLR to redirect to and every NAK goes up to the source across the delayed link. Phases
//! run in the order given, `--rounds` times.
//!
//! Measured from captures (tcpdump), per receiver and lost sequence number:
//!
//! - **loss to repair**: from the ODATA's arrival at R2's transit interface (where it would
//!   have gone on to the LAN, which adds no delay) to the first RDATA for it captured at the
//!   receiver;
//! - **NAK to repair**: from the receiver's first NAK for it to that RDATA (leaves out the
//!   receiver's NAK back-off, NAK_BO_IVL, which is the same in both phases).
//!
//! Figures are percentiles over every (receiver, lost sequence number) of every round of a
//! phase (nearest rank), in milliseconds. Wall-clock: the machine's load adds to them; run it
//! on a quiet machine and note `uptime`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use pgm_core::wire::{DataPacket, NakPacket, Packet, PacketType};
use pgm_netns_tests::bins::workspace_bin;
use pgm_netns_tests::lab::{self, Capture, Lab, LossSpec, Ns, PgmFrame, Process, Selector, Signal};

const PORT: u16 = 7500;
const ADMIN: &str = "127.0.0.1:9470";

#[derive(Debug, Clone)]
struct Args {
    delay_ms: u64,
    loss: u8,
    count: u32,
    rate: u64,
    size: u32,
    receivers: u8,
    phases: Vec<Phase>,
    rounds: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    With,
    Without,
}

impl Phase {
    fn label(self) -> &'static str {
        match self {
            Self::With => "with DLR",
            Self::Without => "without DLR",
        }
    }
}

fn usage() -> &'static str {
    "usage: dlr_latency [--delay-ms MS] [--loss PCT] [--count N] [--rate BYTES_PER_S] \
     [--size BYTES] [--receivers N] [--phases with,without] [--rounds N]"
}

fn parse_args() -> Result<Args> {
    let mut a = Args {
        delay_ms: 50,
        loss: 5,
        count: 3000,
        rate: 500_000,
        size: 1000,
        receivers: 2,
        phases: vec![Phase::With, Phase::Without],
        rounds: 1,
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
            "--delay-ms" => a.delay_ms = v.parse().with_context(bad)?,
            "--loss" => a.loss = v.parse().with_context(bad)?,
            "--count" => a.count = v.parse().with_context(bad)?,
            "--rate" => a.rate = v.parse().with_context(bad)?,
            "--size" => a.size = v.parse().with_context(bad)?,
            "--receivers" => a.receivers = v.parse().with_context(bad)?,
            "--rounds" => a.rounds = v.parse().with_context(bad)?,
            "--phases" => {
                a.phases = v
                    .split(',')
                    .map(|p| match p.trim() {
                        "with" => Ok(Phase::With),
                        "without" => Ok(Phase::Without),
                        _ => bail!("{}", bad()),
                    })
                    .collect::<Result<_>>()?;
            }
            _ => bail!("unknown option {k}\n{}", usage()),
        }
    }
    ensure!(a.loss > 0 && a.loss < 100, "--loss must be 1 to 99");
    ensure!(
        (1..=20).contains(&a.receivers),
        "--receivers must be 1 to 20"
    );
    ensure!(
        a.count > 0 && a.rounds > 0 && !a.phases.is_empty(),
        "nothing to run"
    );
    ensure!(a.size >= 16, "--size must be at least 16");
    Ok(a)
}

/// A binary built with this one's profile (`target/release/` for `cargo run --release`),
/// else any built one.
fn bin(name: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe().context("current_exe")?;
    if let Some(p) = exe.parent().map(|d| d.join(name)).filter(|p| p.is_file()) {
        return Ok(p);
    }
    workspace_bin(name)
}

struct Topo {
    lab: Lab,
    src: Ns,
    r1: Ns,
    r2: Ns,
    dlr: Ns,
    rcvs: Vec<(Ns, Ipv4Addr)>,
    b: lab::AddrBlock,
}

fn build(receivers: u8) -> Result<Topo> {
    let lab = Lab::new("dlrlat")?;
    let b = lab.block();
    let src = lab.add_ns("src")?;
    let r1 = lab.add_ns("r1")?;
    let r2 = lab.add_ns("r2")?;
    let sw = lab.add_ns("sw")?;
    let dlr = lab.add_ns("dlr")?;
    lab.add_veth(&src, "eth0", &r1, "to-src")?;
    lab.add_bridge(&sw, "br0", false)?;
    lab.add_bridge(&sw, "br1", false)?;
    lab.add_veth(&r1, "tr", &sw, "p-r1")?;
    lab.add_veth(&r2, "tr", &sw, "p-r2")?;
    lab.add_veth(&dlr, "eth0", &sw, "p-dlr")?;
    lab.add_veth(&r2, "lan", &sw, "p-lan")?;
    for p in ["p-r1", "p-r2", "p-dlr"] {
        lab.bridge_attach(&sw, "br0", p)?;
    }
    lab.bridge_attach(&sw, "br1", "p-lan")?;
    lab.add_addr(&src, "eth0", b.addr(1, 2), 24)?;
    lab.add_addr(&r1, "to-src", b.addr(1, 1), 24)?;
    lab.add_addr(&r1, "tr", b.addr(2, 1), 24)?;
    lab.add_addr(&r2, "tr", b.addr(2, 2), 24)?;
    lab.add_addr(&dlr, "eth0", b.addr(2, 3), 24)?;
    lab.add_addr(&r2, "lan", b.addr(3, 1), 24)?;
    let mut rcvs = Vec::new();
    for i in 1..=receivers {
        let n = lab.add_ns(&format!("rcv{i}"))?;
        let port = format!("p-rcv{i}");
        lab.add_veth(&n, "eth0", &sw, &port)?;
        lab.bridge_attach(&sw, "br1", &port)?;
        let a = b.addr(3, 10 + i);
        lab.add_addr(&n, "eth0", a, 24)?;
        lab.route_via(&n, &b.cidr(), b.addr(3, 1))?;
        lab.route_dev(&n, "224.0.0.0/4", "eth0")?;
        rcvs.push((n, a));
    }
    lab.route_via(&src, &b.cidr(), b.addr(1, 1))?;
    lab.route_dev(&src, "224.0.0.0/4", "eth0")?;
    lab.route_via(&dlr, &b.subnet(1), b.addr(2, 1))?;
    lab.route_via(&dlr, &b.subnet(3), b.addr(2, 2))?;
    lab.route_dev(&dlr, "224.0.0.0/4", "eth0")?;
    lab.route_via(&r1, &b.subnet(3), b.addr(2, 2))?;
    lab.route_via(&r2, &b.subnet(1), b.addr(2, 1))?;
    lab.enable_forwarding(&r1)?;
    lab.enable_forwarding(&r2)?;
    Ok(Topo {
        lab,
        src,
        r1,
        r2,
        dlr,
        rcvs,
        b,
    })
}

fn daemon(t: &Topo, ns: &Ns, name: &str, toml: &str) -> Result<Process> {
    let bin_name = if name == "dlr" {
        "pgm-dlrd"
    } else {
        "pgm-routerd"
    };
    let path = t.lab.file(name, "toml");
    std::fs::write(&path, toml)?;
    let exe = bin(bin_name)?;
    let mut cmd = t.lab.command(
        ns,
        &[exe.as_os_str(), "--config".as_ref(), path.as_os_str()],
    );
    cmd.env("RUST_LOG", "info");
    let p = t.lab.spawn_command(cmd, name)?;
    p.wait_for_output(&format!("{bin_name} started"), Duration::from_secs(10))?;
    Ok(p)
}

/// `GET` on a daemon's admin API inside `ns`; the body.
fn http_get(ns: &Ns, path: &str) -> Result<String> {
    use std::io::{Read, Write};
    let path = path.to_owned();
    ns.run(move || -> Result<String> {
        let mut s = std::net::TcpStream::connect(ADMIN)?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n")?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        Ok(out
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default())
    })?
}

fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (key, value) = l.rsplit_once(' ')?;
            let n = key.split_once('{').map_or(key, |(n, _)| n);
            (n == name).then(|| value.parse::<f64>().ok())?
        })
        .map(|v| v as u64)
        .sum()
}

/// Samples of one phase run.
#[derive(Debug, Default)]
struct Samples {
    /// Loss to repair, per (receiver, lost sqn), in ms.
    loss_to_repair: Vec<f64>,
    /// First NAK to repair, in ms.
    nak_to_repair: Vec<f64>,
    /// "Lost" sqns with no RDATA in the receiver's capture. The receivers verify complete
    /// delivery, so these are packets tcpdump missed (an ODATA it did not capture looks
    /// lost): see `capture_drops`.
    unrepaired: usize,
    /// Packets the captures' kernel buffers dropped (tcpdump's own count).
    capture_drops: u64,
    lost: usize,
    dlr_served: u64,
    source_rdata: u64,
    /// Distinct sequence numbers among them.
    source_rdata_sqns: u64,
    completed: usize,
}

fn data_sqn(f: &PgmFrame, ty: PacketType) -> Option<u32> {
    let p = Packet::new_checked(&f.pgm[..]).ok()?;
    if p.packet_type() != ty {
        return None;
    }
    DataPacket::new_checked(&f.pgm[..]).ok().map(|d| d.sqn().0)
}

/// Loss-to-repair samples of one receiver from R2's transit capture and its own.
fn analyse(r2_tr: &[PgmFrame], rcv: &[PgmFrame], me: Ipv4Addr, s: &mut Samples) {
    let mut odata_at_r2: BTreeMap<u32, Duration> = BTreeMap::new();
    for f in r2_tr {
        if let Some(q) = data_sqn(f, PacketType::Odata) {
            odata_at_r2.entry(q).or_insert(f.at);
        }
    }
    let got_odata: BTreeSet<u32> = rcv
        .iter()
        .filter_map(|f| data_sqn(f, PacketType::Odata))
        .collect();
    let mut first_rdata: BTreeMap<u32, Duration> = BTreeMap::new();
    let mut first_nak: BTreeMap<u32, Duration> = BTreeMap::new();
    for f in rcv {
        if let Some(q) = data_sqn(f, PacketType::Rdata) {
            first_rdata.entry(q).or_insert(f.at);
        } else if f.src == me {
            if let Ok(n) = NakPacket::new_checked(&f.pgm[..]) {
                if n.packet_type() == PacketType::Nak {
                    for q in n.sqns() {
                        first_nak.entry(q.0).or_insert(f.at);
                    }
                }
            }
        }
    }
    // Lost: forwarded to R2 while this receiver listened (from its first ODATA on), never
    // captured at the receiver as ODATA.
    let Some(&start) = got_odata.first() else {
        return;
    };
    let end = got_odata.last().copied().unwrap_or(start);
    for (&q, &at) in odata_at_r2.range(start..=end) {
        if got_odata.contains(&q) {
            continue;
        }
        s.lost += 1;
        let Some(&rd) = first_rdata.get(&q) else {
            s.unrepaired += 1;
            continue;
        };
        s.loss_to_repair
            .push(rd.saturating_sub(at).as_secs_f64() * 1000.0);
        if let Some(&nak) = first_nak.get(&q) {
            s.nak_to_repair
                .push(rd.saturating_sub(nak).as_secs_f64() * 1000.0);
        }
    }
}

fn run_phase(t: &Topo, a: &Args, phase: Phase, dlr: &mut Option<Process>) -> Result<Samples> {
    let b = t.b;
    let group = b.group(1);
    let src = b.addr(1, 2);
    match (phase, dlr.is_some()) {
        (Phase::With, false) => {
            let cfg = format!(
                "[dlr]\ninterfaces = [\"eth0\"]\nserve = \"listed\"\n[[dlr.session]]\n\
                 group = \"{group}\"\nport = {PORT}\n[admin]\nlisten = \"{ADMIN}\"\n"
            );
            *dlr = Some(daemon(t, &t.dlr, "dlr", &cfg)?);
        }
        (Phase::Without, true) => {
            if let Some(p) = dlr.take() {
                p.signal(Signal::Term)?;
                let _ = p.wait_timeout(Duration::from_secs(5))?;
                let _ = p.kill();
            }
        }
        _ => {}
    }
    let served_before = match (phase, dlr.as_ref()) {
        (Phase::With, Some(_)) => metric(
            &http_get(&t.dlr, "/metrics")?,
            "pgm_dlr_repairs_served_total",
        ),
        _ => 0,
    };
    let pgm = bin("pgm")?;
    let pgm = pgm.to_string_lossy().into_owned();
    let filter = Some("ip proto 113");
    let cap_r2 = t.lab.capture(&t.r2, "tr", filter)?;
    // RDATA from the source, as R1 receives it (a capture on the source's own interface
    // would also show the kernel's multicast loopback copies).
    let cap_src = t.lab.capture(&t.r1, "to-src", filter)?;
    let caps: Vec<_> = t
        .rcvs
        .iter()
        .map(|(n, _)| t.lab.capture(n, "eth0", filter))
        .collect::<Result<_>>()?;
    let count = a.count.to_string();
    let size = a.size.to_string();
    let rcvs: Vec<Process> = t
        .rcvs
        .iter()
        .map(|(n, addr)| {
            #[rustfmt::skip]
            let args = [pgm.as_str(), "recv", "--ip", "--network", &format!("{addr};{group}"),
                        "--count", &count, "--verify", "--size", &size, "--idle-timeout", "30",
                        "-o", "/dev/null"];
            t.lab.spawn(n, &args)
        })
        .collect::<Result<_>>()?;
    std::thread::sleep(Duration::from_millis(1000));
    let rate = a.rate.to_string();
    #[rustfmt::skip]
    let sender = t.lab.spawn(&t.src, &[pgm.as_str(), "send", "--ip", "--network",
        &format!("{src};{group}"), "--count", &count, "--size", &size, "--rate", &rate,
        "--linger", "30"])?;
    for r in &rcvs {
        r.wait_for_output("started", Duration::from_secs(15))?;
    }
    let loss = t.lab.add_loss(
        &t.r2,
        &LossSpec::egress("lan", a.loss).only(Selector::PgmType(0x04)),
    )?;
    let mut s = Samples::default();
    let budget = Duration::from_secs(60 + u64::from(a.count) * u64::from(a.size) / a.rate.max(1));
    for (r, (_, addr)) in rcvs.iter().zip(&t.rcvs) {
        match r.wait_timeout(budget)? {
            Some(st) if st.success() => s.completed += 1,
            st => eprintln!(
                "dlr_latency: receiver {addr} did not complete ({st:?}): {}",
                r.stderr().unwrap_or_default()
            ),
        }
    }
    loss.remove()?;
    if phase == Phase::With && dlr.is_some() {
        let served = metric(
            &http_get(&t.dlr, "/metrics")?,
            "pgm_dlr_repairs_served_total",
        );
        s.dlr_served = served.saturating_sub(served_before);
    }
    sender.stop(Duration::from_secs(5))?;
    let mut stop = |c: Capture| -> Result<Vec<PgmFrame>> {
        let log = c.process().stderr_path().to_owned();
        let frames = lab::read_pgm(&c.stop()?)?;
        s.capture_drops += tcpdump_drops(&std::fs::read_to_string(log).unwrap_or_default());
        Ok(frames)
    };
    let from_source: Vec<u32> = stop(cap_src)?
        .iter()
        .filter(|f| f.src == src)
        .filter_map(|f| data_sqn(f, PacketType::Rdata))
        .collect();
    s.source_rdata = from_source.len() as u64;
    s.source_rdata_sqns = from_source.iter().collect::<BTreeSet<_>>().len() as u64;
    let r2_tr = stop(cap_r2)?;
    let mut at_receivers = Vec::new();
    for cap in caps {
        at_receivers.push(stop(cap)?);
    }
    for (pkts, (_, addr)) in at_receivers.iter().zip(&t.rcvs) {
        analyse(&r2_tr, pkts, *addr, &mut s);
    }
    Ok(s)
}

/// "N packets dropped by kernel" from tcpdump's exit summary.
fn tcpdump_drops(stderr: &str) -> u64 {
    stderr
        .lines()
        .filter_map(|l| l.trim().strip_suffix(" packets dropped by kernel"))
        .filter_map(|n| n.trim().parse::<u64>().ok())
        .sum()
}

/// Nearest-rank percentile of sorted `v`.
fn pct(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * v.len() as f64).ceil().max(1.0) as usize;
    v[rank.min(v.len()) - 1]
}

fn uptime() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".to_owned())
}

fn main() -> Result<()> {
    let a = parse_args()?;
    ensure!(
        lab::is_root(),
        "dlr_latency needs root (network namespaces)"
    );
    eprintln!("dlr_latency: load average before: {}", uptime());
    let t = build(a.receivers)?;
    let delay = Duration::from_millis(a.delay_ms);
    // The WAN link, both ways: what the source sends, and what R1 sends towards it.
    let _d_src = t.lab.add_delay(&t.src, "eth0", delay)?;
    let _d_r1 = t.lab.add_delay(&t.r1, "to-src", delay)?;
    let group = t.b.group(1);
    let src = t.b.addr(1, 2);
    let route = |up: &str, down: &str, ifs: [&str; 2]| {
        format!(
            "[router]\n[[router.interface]]\nname = \"{}\"\n[[router.interface]]\nname = \"{}\"\n\
             [[router.route]]\ngroup = \"{group}\"\nsource = \"{src}\"\nupstream = \"{up}\"\n\
             downstream = [\"{down}\"]\n[admin]\nlisten = \"{ADMIN}\"\n",
            ifs[0], ifs[1]
        )
    };
    let _r1 = daemon(&t, &t.r1, "r1", &route("to-src", "tr", ["to-src", "tr"]))?;
    let _r2 = daemon(&t, &t.r2, "r2", &route("tr", "lan", ["tr", "lan"]))?;
    let mut dlr = None;
    let mut by_phase: BTreeMap<Phase, Vec<Samples>> = BTreeMap::new();
    for round in 1..=a.rounds {
        for &phase in &a.phases {
            eprintln!("dlr_latency: round {round}, {}", phase.label());
            let s = run_phase(&t, &a, phase, &mut dlr)?;
            eprintln!(
                "dlr_latency:   {} lost, {} repaired, {} without RDATA captured ({} packets \
                 dropped by tcpdump), {}/{} receivers \
                 complete, DLR served {}, source RDATA {} ({} sqns)",
                s.lost,
                s.loss_to_repair.len(),
                s.unrepaired,
                s.capture_drops,
                s.completed,
                a.receivers,
                s.dlr_served,
                s.source_rdata,
                s.source_rdata_sqns
            );
            by_phase.entry(phase).or_default().push(s);
        }
    }
    let d_stats = (_d_src.stats(), _d_r1.stats());
    eprintln!(
        "dlr_latency: delayer counters: src {:?}, r1 {:?}",
        d_stats.0, d_stats.1
    );
    eprintln!("dlr_latency: load average after: {}", uptime());
    println!(
        "delay {} ms each way on src-R1, {}% ODATA loss on R2's LAN, {} receivers, {} msgs \
         x {} B at {} B/s, {} round(s)\n",
        a.delay_ms, a.loss, a.receivers, a.count, a.size, a.rate, a.rounds
    );
    println!(
        "| phase | samples | loss→repair p50 | p90 | p99 | max | NAK→repair p50 | p99 | \
         DLR repairs | source RDATA | receivers complete |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for (phase, runs) in &by_phase {
        let mut l: Vec<f64> = runs.iter().flat_map(|s| s.loss_to_repair.clone()).collect();
        let mut n: Vec<f64> = runs.iter().flat_map(|s| s.nak_to_repair.clone()).collect();
        l.sort_by(f64::total_cmp);
        n.sort_by(f64::total_cmp);
        let unrepaired: usize = runs.iter().map(|s| s.unrepaired).sum();
        let served: u64 = runs.iter().map(|s| s.dlr_served).sum();
        let src_rdata: u64 = runs.iter().map(|s| s.source_rdata).sum();
        let complete: usize = runs.iter().map(|s| s.completed).sum();
        println!(
            "| {} | {}{} | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms | {} | \
             {} | {}/{} |",
            phase.label(),
            l.len(),
            if unrepaired > 0 {
                format!(" ({unrepaired} without RDATA captured)")
            } else {
                String::new()
            },
            pct(&l, 50.0),
            pct(&l, 90.0),
            pct(&l, 99.0),
            l.last().copied().unwrap_or(f64::NAN),
            pct(&n, 50.0),
            pct(&n, 99.0),
            served,
            src_rdata,
            complete,
            runs.len() * usize::from(a.receivers),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_tcpdump_drop_counts() {
        let log = "listening on eth0\n120 packets captured\n130 packets received by filter\n\
                   7 packets dropped by kernel\n";
        assert_eq!(tcpdump_drops(log), 7);
        assert_eq!(tcpdump_drops("listening on eth0\n"), 0);
    }

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(pct(&v, 50.0), 50.0);
        assert_eq!(pct(&v, 99.0), 99.0);
        assert_eq!(pct(&v, 100.0), 100.0);
        assert_eq!(pct(&[7.0], 99.0), 7.0);
        assert!(pct(&[], 50.0).is_nan());
    }
}
