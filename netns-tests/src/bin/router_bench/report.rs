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

