//! The lab of one configuration (src, r1, rcv; or src and rcv on one veth), what routes
//! multicast on r1, and the binaries the benchmarks run.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, ensure};
use pgm_netns_tests::admin;
use pgm_netns_tests::bins::target_dir;
use pgm_netns_tests::daemon::{Daemon, RouterConfig};
use pgm_netns_tests::lab::{Forwarding, Lab, McRoute, Ns, Process, Smcroute};

use crate::opts::{Mode, Opts};
use crate::util::stopped;

/// The router of a topology.
pub(crate) struct RouterNs {
    pub(crate) ns: Ns,
    /// Its address on `to-rcv`, the downstream link.
    pub(crate) down: Ipv4Addr,
}

pub(crate) struct Topo {
    pub(crate) lab: Lab,
    pub(crate) src: Ns,
    pub(crate) rcv: Ns,
    pub(crate) src_addr: Ipv4Addr,
    pub(crate) rcv_addr: Ipv4Addr,
    pub(crate) group: Ipv4Addr,
    /// r1; `None` when src and rcv share one veth.
    pub(crate) router: Option<RouterNs>,
}

impl Topo {
    pub(crate) fn r1(&self) -> Result<&RouterNs> {
        self.router
            .as_ref()
            .context("this configuration has no router")
    }
}

/// Builds `src - r1 - rcv` (`router`), or `src - rcv` with the same addresses: src's `eth0`
/// `10.B.1.2/24` and rcv's `eth0` `10.B.2.2/24` on one veth, each with an on-link route to
/// the whole block (so that unicast and the reverse-path check of multicast work).
pub(crate) fn build_topo(tag: &str, router: bool) -> Result<Topo> {
    let lab = Lab::new(tag)?;
    let b = lab.block();
    let src = lab.add_ns("src")?;
    let r1 = if router {
        Some(lab.add_ns("r1")?)
    } else {
        None
    };
    let rcv = lab.add_ns("rcv")?;
    let (src_addr, r1_up, r1_down, rcv_addr) =
        (b.addr(1, 2), b.addr(1, 1), b.addr(2, 1), b.addr(2, 2));
    if let Some(r1) = &r1 {
        lab.add_veth(&src, "eth0", r1, "to-src")?;
        lab.add_veth(r1, "to-rcv", &rcv, "eth0")?;
        lab.add_addr(r1, "to-src", r1_up, 24)?;
        lab.add_addr(r1, "to-rcv", r1_down, 24)?;
    } else {
        lab.add_veth(&src, "eth0", &rcv, "eth0")?;
    }
    lab.add_addr(&src, "eth0", src_addr, 24)?;
    lab.add_addr(&rcv, "eth0", rcv_addr, 24)?;
    if let Some(r1) = &r1 {
        lab.route_via(&src, &b.cidr(), r1_up)?;
        lab.route_via(&rcv, &b.cidr(), r1_down)?;
        lab.enable_forwarding(r1)?;
    } else {
        lab.route_dev(&src, &b.cidr(), "eth0")?;
        lab.route_dev(&rcv, &b.cidr(), "eth0")?;
    }
    lab.route_dev(&src, "224.0.0.0/4", "eth0")?;
    lab.route_dev(&rcv, "224.0.0.0/4", "eth0")?;
    Ok(Topo {
        group: b.group(1),
        lab,
        src,
        rcv,
        src_addr,
        rcv_addr,
        router: r1.map(|ns| RouterNs { ns, down: r1_down }),
    })
}

/// What routes multicast on r1. Dropping it kills smcrouted or the daemon, or removes the
/// forwarding rules (as dropping the lab would).
pub(crate) enum Routing {
    /// No router (`direct`).
    None,
    Kernel(
        #[expect(
            dead_code,
            reason = "held so that smcrouted runs until the bench is dropped"
        )]
        Smcroute,
    ),
    /// The netdev plane's forwarding rules, no daemon (`nfwd`).
    Rules(Box<Forwarding>),
    Daemon(Process),
}

pub(crate) struct Bins {
    pub(crate) routerd: PathBuf,
    pub(crate) pgm: PathBuf,
}

pub(crate) fn build_bins(o: &Opts) -> Result<Bins> {
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

/// Starts `mode`'s routing on r1, all with the static route `(src, G)` from `to-src` to
/// `to-rcv`.
pub(crate) fn start_routing(t: &Topo, mode: Mode, bins: &Bins) -> Result<Routing> {
    if mode == Mode::Direct {
        return Ok(Routing::None);
    }
    let r1 = &t.r1()?.ns;
    let route = McRoute::sg("to-src", t.src_addr, t.group, &["to-rcv"]);
    if mode == Mode::NetdevFwd {
        return Ok(Routing::Rules(Box::new(
            t.lab.start_forwarding(r1, &[route])?,
        )));
    }
    let Some(plane) = mode.daemon() else {
        return Ok(Routing::Kernel(t.lab.start_smcroute(r1, &[route])?));
    };
    let mut config = RouterConfig::new().mode("full").dataplane(plane.dataplane);
    if let Some(intercept) = plane.intercept {
        config = config.intercept(intercept);
    }
    let toml = config
        .interfaces(&["to-src", "to-rcv"])
        .route(t.group, t.src_addr, "to-src", &["to-rcv"])
        .admin(admin::DEFAULT_LISTEN)
        .to_string();
    let p = Daemon::new(&bins.routerd)
        .cancel_if(stopped)
        .start(&t.lab, r1, "routerd-r1", &toml)?;
    Ok(Routing::Daemon(p))
}

/// Packets counted by the drop rule of nftables table `table` in r1 (non-ODATA PGM kept from
/// the kernel's forwarding path by the mroute plane's intercept).
pub(crate) fn nft_dropped(t: &Topo, table: &str) -> Option<u64> {
    let r1 = &t.router.as_ref()?.ns;
    let out = t
        .lab
        .exec(r1, &["nft", "list", "chain", "ip", table, "forward"])
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .skip_while(|w| *w != "packets")
        .nth(1)
        .and_then(|n| n.parse().ok())
}
