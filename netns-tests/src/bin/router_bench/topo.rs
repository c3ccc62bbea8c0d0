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

