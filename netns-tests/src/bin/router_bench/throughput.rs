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

