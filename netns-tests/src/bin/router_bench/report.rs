//! The report (markdown): the throughput table with its ratios, and the latency table.

use std::fmt::Write as _;

use pgm_netns_tests::metrics;

use crate::latency::LatencyOutcome;
use crate::opts::{Mode, Opts};
use crate::throughput::{Cell, Outcome, ThroughputResults};
use crate::util::{fmt_pps, fmt_us, median, quantile};

/// What the daemon / rules-only ratios must reach.
const TARGET: f64 = 0.95;

/// A configuration as the report names it: `` `netdev` (pgm-routerd full, netdev plane) ``.
fn label(mode: Mode) -> String {
    format!("`{}` ({})", mode.key(), mode.name())
}

/// Says which configurations this kernel could not run, if any.
fn not_measured(s: &mut String, skipped: &[Mode]) {
    if skipped.is_empty() {
        return;
    }
    let list: Vec<String> = skipped.iter().map(|&m| label(m)).collect();
    let _ = writeln!(
        s,
        "\nNot measured on this kernel (no multicast routing, CONFIG_IP_MROUTE): {}.",
        list.join(", ")
    );
}

fn fmt_ratio(r: Option<f64>) -> String {
    r.map_or(String::new(), |r| format!("{r:.3}"))
}

pub(crate) fn throughput_report(o: &Opts, res: &ThroughputResults) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "| sender | size | router | received pkt/s (median) | MB/s (median) | baseline | vs \
         baseline | delivered | sender pkt/s (median) | sender CPU µs/pkt (median) | vs \
         baseline, by CPU | vs direct, by rate / by CPU | received pkt/s per run |"
    );
    let _ = writeln!(
        s,
        "|---|---:|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---|"
    );
    let med = |cell: &Cell, f: fn(&Outcome) -> f64| -> Option<f64> {
        let v: Vec<f64> = res.runs.get(cell)?.iter().map(f).collect();
        median(&v)
    };
    // Rate ratio (this / other) and CPU ratio (packets per sender CPU-second: other's cost /
    // this cost) of two cells, each where both were measured.
    let ratios = |cell: &Cell, other: Mode| -> (Option<f64>, Option<f64>) {
        let base = Cell {
            mode: other,
            ..*cell
        };
        let rate = match (med(cell, Outcome::pps), med(&base, Outcome::pps)) {
            (Some(p), Some(b)) if b > 0.0 => Some(p / b),
            _ => None,
        };
        let cpu = match (med(cell, Outcome::cpu_us), med(&base, Outcome::cpu_us)) {
            (Some(c), Some(b)) if c > 0.0 => Some(b / c),
            _ => None,
        };
        (rate, cpu)
    };
    let mut verdicts = Vec::new();
    for &sender in &o.senders {
        for &size in &o.sizes {
            for &mode in &o.modes {
                let cell = Cell { sender, size, mode };
                let baseline = mode.baseline();
                if let Some(b) = baseline {
                    verdicts.push((cell, b, ratios(&cell, b)));
                }
                let Some(runs) = res.runs.get(&cell) else {
                    continue;
                };
                let (ratio, cpu_ratio) = baseline.map_or((None, None), |b| ratios(&cell, b));
                let direct = if mode == Mode::Direct {
                    String::new()
                } else {
                    match ratios(&cell, Mode::Direct) {
                        (Some(r), Some(c)) => format!("{r:.3} / {c:.3}"),
                        (Some(r), None) => format!("{r:.3} / -"),
                        _ => String::new(),
                    }
                };
                let sent: u64 = runs.iter().map(|r| r.send.sent).sum();
                let got: u64 = runs.iter().map(|r| r.recv.received).sum();
                let per_run: Vec<String> = runs.iter().map(|r| fmt_pps(r.pps())).collect();
                let _ = writeln!(
                    s,
                    "| {} | {size} B | {} | {} | {} | {} | {} | {:.2}% | {} | {} | {} | {direct} \
                     | {} |",
                    sender.name(),
                    label(mode),
                    med(&cell, Outcome::pps).map_or("-".to_owned(), fmt_pps),
                    med(&cell, Outcome::mbps).map_or("-".to_owned(), |m| format!("{m:.1}")),
                    baseline.map_or(String::new(), |b| format!("`{}`", b.key())),
                    fmt_ratio(ratio),
                    100.0 * got as f64 / sent.max(1) as f64,
                    med(&cell, Outcome::send_pps).map_or("-".to_owned(), fmt_pps),
                    med(&cell, Outcome::cpu_us).map_or("-".to_owned(), |c| format!("{c:.2}")),
                    fmt_ratio(cpu_ratio),
                    per_run.join(", ")
                );
            }
        }
    }
    if res.runs.is_empty() {
        s.push_str("\nNo run completed.\n");
    }
    let _ = writeln!(
        s,
        "\nTarget: the daemon / the same forwarding without it >= {TARGET} (medians of received \
         pkt/s; and of packets per sender CPU-second): `netdev` / `nfwd` on the netdev plane, \
         the mroute configurations / `kernel`:"
    );
    let verdict = |r: Option<f64>| match r {
        Some(r) => format!("{r:.3} {}", if r >= TARGET { "MET" } else { "MISSED" }),
        None => "-".to_owned(),
    };
    for (cell, base, (r, c)) in &verdicts {
        let what = format!(
            "- {} {} B, `{}` / `{}`",
            cell.sender.name(),
            cell.size,
            cell.mode.key(),
            base.key()
        );
        let missing: Vec<&str> = [cell.mode, *base]
            .into_iter()
            .filter(|m| !res.runs.contains_key(&Cell { mode: *m, ..*cell }))
            .map(Mode::key)
            .collect();
        if missing.is_empty() {
            let _ = writeln!(s, "{what}: by rate {}; by CPU {}", verdict(*r), verdict(*c));
        } else {
            let _ = writeln!(
                s,
                "{what}: not measured (no figure for {})",
                missing.join(", ")
            );
        }
    }
    if verdicts.is_empty() {
        s.push_str("- no configuration with its baseline in --modes\n");
    }
    not_measured(&mut s, &o.skipped_modes);
    if !res.checks.is_empty() {
        s.push_str("\nChecks after the runs:\n");
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

pub(crate) fn latency_report(o: &Opts, outs: &[LatencyOutcome], errors: &[String]) -> String {
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
            row(&mut s, &label(mode), &l.rep.to_string(), l);
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
            row(&mut s, &label(mode), "**all**", &all);
        }
    }
    for l in outs {
        let m = &l.metrics;
        let _ = writeln!(
            s,
            "\n{} run {}: {:.1} s, load average {} at start, {} at end; tcpdump dropped {}; daemon: \
             naks_received {}, naks_forwarded {}, ncfs_sent {}, rdata_forwarded {}, \
             repair_states at end {}{}",
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
            if l.mode == Mode::Netdev {
                format!(
                    ", packets its netdev rules handed it {}",
                    metrics::sum(
                        m,
                        "pgm_router_dataplane_packets_total",
                        &[("event", "intercepted")]
                    )
                )
            } else {
                String::new()
            },
        );
    }
    if outs.is_empty() {
        s.push_str("\nNo run completed.\n");
    }
    not_measured(&mut s, &o.skipped_nak_modes);
    if !errors.is_empty() {
        s.push_str("\nErrors:\n");
        for e in errors {
            let _ = writeln!(s, "- {e}");
        }
    }
    s
}
