//! `pgm-dlrd` with `pgm-routerd` on the real kernel, PGM/IP:
//!
//! ```text
//!  src ---- r1 ---- [transit bridge "br0" in ns "sw": r1, r2, dlr, (rcvt)] ---- r2 ---- lan ---- rcv
//!                                                                                \
//!                                                                                 to-dlr ---- odlr
//! ```
//!
//! | link      | subnet      | addresses                                         |
//! |-----------|-------------|---------------------------------------------------|
//! | src - r1  | 10.B.1.0/24 | r1 `to-src` .1, src `eth0` .2                     |
//! | transit   | 10.B.2.0/24 | r1 `tr` .1, r2 `tr` .2, dlr `eth0` .3, rcvt .11   |
//! | lan       | 10.B.3.0/24 | r2 `lan` .1, rcv `eth0` .11                       |
//! | off-tree  | 10.B.5.0/24 | r2 `to-dlr` .1, odlr `eth0` .2                    |
//!
//! Random PGM loss on R2's `lan` egress. Four scenarios:
//!
//! 1. upstream DLR (on the transit LAN): R1's NCFs there draw the DLR's redirecting POLR, R2
//!    then NAKs the DLR, the DLR repairs (RDATA with the source's address) and NNAKs the
//!    source, which sends fewer RDATA than the DLR. A second receiver, `rcvt`, sits on the
//!    transit LAN itself with ODATA loss on its own link: it hears the DLR's redirecting
//!    POLRs and must ignore them (§9.5.4), so every NAK it sends after them still goes to R1
//!    (its SPM_PATH), none to the DLR, and it completes;
//! 2. the same with the DLR serving every session it hears (`serve = "all"`, no session
//!    listed): it learns the session from the traffic and repairs it;
//! 3. off-tree DLR (on its own R2 interface), found by R2's `PGM_POLL_DLR`;
//! 4. the upstream DLR killed mid-run: repair falls back to the source.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

use pgm_core::wire::PacketType;
use pgm_netns_tests::admin::{self, DEFAULT_LISTEN as ADMIN};
use pgm_netns_tests::bins::workspace_bin;
use pgm_netns_tests::daemon::{Daemon, RouterConfig};
use pgm_netns_tests::lab::pgm_pcap::count;
use pgm_netns_tests::lab::{self, Capture, Lab, LossSpec, Ns, PgmFrame, Selector};
use pgm_netns_tests::metrics;
use pgm_netns_tests::on_each_plane;
use pgm_netns_tests::plane::Plane;
use pgm_netns_tests::transfer::{Transfer, wait_delivered};

const PORT: u16 = 7500;
/// ODATA loss (percent) on the transit receiver's own link.
const TRANSIT_LOSS: u8 = 2;

struct Topo {
    lab: Lab,
    src: Ns,
    r1: Ns,
    r2: Ns,
    dlr: Ns,
    odlr: Ns,
    rcv: Ns,
    /// The receiver on the transit LAN, if built.
    rcvt: Option<Ns>,
    b: lab::AddrBlock,
}

impl Topo {
    fn build(tag: &str, transit_receiver: bool) -> Self {
        let lab = Lab::new(tag).expect("lab");
        let b = lab.block();
        let ns = |n: &str| lab.add_ns(n).expect("ns");
        let (src, r1, r2, sw, dlr, odlr, rcv) = (
            ns("src"),
            ns("r1"),
            ns("r2"),
            ns("sw"),
            ns("dlr"),
            ns("odlr"),
            ns("rcv"),
        );
        lab.add_veth(&src, "eth0", &r1, "to-src").unwrap();
        lab.add_bridge(&sw, "br0", false).unwrap();
        lab.add_veth(&r1, "tr", &sw, "p-r1").unwrap();
        lab.add_veth(&r2, "tr", &sw, "p-r2").unwrap();
        lab.add_veth(&dlr, "eth0", &sw, "p-dlr").unwrap();
        for p in ["p-r1", "p-r2", "p-dlr"] {
            lab.bridge_attach(&sw, "br0", p).unwrap();
        }
        let rcvt = transit_receiver.then(|| {
            let n = ns("rcvt");
            lab.add_veth(&n, "eth0", &sw, "p-rcvt").unwrap();
            lab.bridge_attach(&sw, "br0", "p-rcvt").unwrap();
            lab.add_addr(&n, "eth0", b.addr(2, 11), 24).unwrap();
            lab.route_via(&n, &b.cidr(), b.addr(2, 1)).unwrap();
            lab.route_dev(&n, "224.0.0.0/4", "eth0").unwrap();
            n
        });
        lab.add_veth(&r2, "lan", &rcv, "eth0").unwrap();
        lab.add_veth(&r2, "to-dlr", &odlr, "eth0").unwrap();
        let addr = |n: &Ns, i: &str, s: u8, h: u8| lab.add_addr(n, i, b.addr(s, h), 24).unwrap();
        addr(&src, "eth0", 1, 2);
        addr(&r1, "to-src", 1, 1);
        addr(&r1, "tr", 2, 1);
        addr(&r2, "tr", 2, 2);
        addr(&dlr, "eth0", 2, 3);
        addr(&r2, "lan", 3, 1);
        addr(&rcv, "eth0", 3, 11);
        addr(&r2, "to-dlr", 5, 1);
        addr(&odlr, "eth0", 5, 2);
        for (h, gw) in [
            (&src, b.addr(1, 1)),
            (&rcv, b.addr(3, 1)),
            (&odlr, b.addr(5, 1)),
        ] {
            lab.route_via(h, &b.cidr(), gw).unwrap();
            lab.route_dev(h, "224.0.0.0/4", "eth0").unwrap();
        }
        lab.route_via(&dlr, &b.subnet(1), b.addr(2, 1)).unwrap();
        lab.route_via(&dlr, &b.subnet(3), b.addr(2, 2)).unwrap();
        lab.route_via(&dlr, &b.subnet(5), b.addr(2, 2)).unwrap();
        lab.route_dev(&dlr, "224.0.0.0/4", "eth0").unwrap();
        lab.route_via(&r1, &b.subnet(3), b.addr(2, 2)).unwrap();
        lab.route_via(&r1, &b.subnet(5), b.addr(2, 2)).unwrap();
        lab.route_via(&r2, &b.subnet(1), b.addr(2, 1)).unwrap();
        lab.enable_forwarding(&r1).unwrap();
        lab.enable_forwarding(&r2).unwrap();
        Self {
            lab,
            src,
            r1,
            r2,
            dlr,
            odlr,
            rcv,
            rcvt,
            b,
        }
    }
}

/// `GET <path>` from the admin API of the daemon in `ns`: the body of its `200` answer.
fn http_get(ns: &Ns, path: &str) -> String {
    admin::get(ns, ADMIN, path).unwrap_or_else(|e| panic!("{e:#}"))
}

fn metric(text: &str, name: &str) -> u64 {
    metrics::sum(text, name, &[])
}

fn stop(c: Capture) -> Vec<PgmFrame> {
    c.stop_read_pgm().expect("stop and read the capture")
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    /// Upstream DLR, listed session, plus a receiver on the transit LAN.
    Upstream,
    /// Upstream DLR serving every session it hears.
    ServeAll,
    OffTree,
    Killed,
}

fn scenario(tag: &str, plane: Plane, mode: Mode) {
    let tag = &format!("{tag}{}", &plane.name()[..1]);
    let topo = Topo::build(tag, mode == Mode::Upstream);
    let b = topo.b;
    let group = b.group(1);
    let src = b.addr(1, 2);
    let pgm: PathBuf = workspace_bin("pgm").expect("pgm binary");
    let r2_down: &[&str] = if mode == Mode::OffTree {
        &["lan", "to-dlr"]
    } else {
        &["lan"]
    };
    let r1_cfg = RouterConfig::new()
        .dataplane(plane.name())
        .interfaces(&["to-src", "tr"])
        .route(group, src, "to-src", &["tr"]);
    let mut r2_cfg = RouterConfig::new()
        .dataplane(plane.name())
        .interfaces(&["tr", "lan", "to-dlr"])
        .route(group, src, "tr", r2_down);
    if mode == Mode::OffTree {
        r2_cfg = r2_cfg.section("[router.poll]\ninterval = \"1s\"\nbackoff = \"200ms\"\n");
    }
    let serve = if mode == Mode::ServeAll {
        "serve = \"all\"\n".to_owned()
    } else {
        format!("serve = \"listed\"\n[[dlr.session]]\ngroup = \"{group}\"\nport = {PORT}\n")
    };
    let dlr_cfg = format!("[dlr]\ninterfaces = [\"eth0\"]\n{serve}[admin]\nlisten = \"{ADMIN}\"\n");
    let routerd = Daemon::new(workspace_bin("pgm-routerd").expect("binary"));
    let start = |d: &Daemon, ns: &Ns, name: &str, toml: &str| {
        d.start(&topo.lab, ns, name, toml)
            .unwrap_or_else(|e| panic!("{e:#}"))
    };
    let _r1 = start(&routerd, &topo.r1, "r1", &r1_cfg.to_string());
    let r2 = start(&routerd, &topo.r2, "r2", &r2_cfg.to_string());
    let dlr_ns = if mode == Mode::OffTree {
        &topo.odlr
    } else {
        &topo.dlr
    };
    let dlrd = Daemon::new(workspace_bin("pgm-dlrd").expect("binary"));
    let dlr = start(&dlrd, dlr_ns, "dlr", &dlr_cfg);

    let cap_src = topo.lab.capture_pgm(&topo.src, "eth0").unwrap();
    let cap_dlr = topo.lab.capture_pgm(dlr_ns, "eth0").unwrap();
    let cap_rcvt = topo
        .rcvt
        .as_ref()
        .map(|n| topo.lab.capture_pgm(n, "eth0").unwrap());

    let (count_msgs, rate) = if mode == Mode::Killed {
        (8000, 500_000)
    } else {
        (5000, 500_000)
    };
    let transfer = Transfer {
        pgm: &pgm,
        group,
        count: count_msgs,
        size: 1000,
    };
    let receiver = |ns: &Ns, addr: Ipv4Addr| {
        topo.lab
            .spawn(ns, &transfer.recv_args(addr, 20))
            .expect("spawn receiver")
    };
    let rcv = receiver(&topo.rcv, b.addr(3, 11));
    let rcvt = topo.rcvt.as_ref().map(|n| receiver(n, b.addr(2, 11)));
    std::thread::sleep(Duration::from_millis(1500));
    let sender = topo
        .lab
        .spawn(&topo.src, &transfer.send_args(src, rate, 10))
        .expect("spawn sender");
    rcv.wait_for_output("started", Duration::from_secs(10))
        .expect("session start");
    let loss = topo
        .lab
        .add_loss(&topo.r2, &LossSpec::egress("lan", 5).only(Selector::Pgm))
        .expect("loss rule");
    // The transit receiver loses ODATA only, so that every redirecting POLR reaches it.
    let loss_t = topo.rcvt.as_ref().map(|n| {
        topo.lab
            .add_loss(
                n,
                &LossSpec::ingress("eth0", TRANSIT_LOSS).only(Selector::PgmType(0x04)),
            )
            .expect("transit loss rule")
    });
    let mut dlr_metrics_before_kill = String::new();
    if mode == Mode::Killed {
        std::thread::sleep(Duration::from_secs(6));
        dlr_metrics_before_kill = http_get(dlr_ns, "/metrics");
        dlr.kill().expect("kill the DLR");
    }
    wait_delivered(&rcv, Duration::from_secs(90)).unwrap_or_else(|e| {
        panic!(
            "receiver: {e:#}\nR2 log:\n{}\nDLR log:\n{}",
            r2.stderr().unwrap_or_default(),
            dlr.stderr().unwrap_or_default()
        )
    });
    if let Some(r) = &rcvt {
        wait_delivered(r, Duration::from_secs(90))
            .unwrap_or_else(|e| panic!("transit receiver: {e:#}"));
    }
    let _ = sender.wait_timeout(Duration::from_secs(30));
    let send_out = sender.stderr().unwrap_or_default();
    let dropped = loss.counters().unwrap().dropped;
    assert!(dropped > 0, "the loss rule dropped nothing");
    let m2 = http_get(&topo.r2, "/metrics");
    let md = if mode == Mode::Killed {
        dlr_metrics_before_kill
    } else {
        http_get(dlr_ns, "/metrics")
    };
    let state = if mode == Mode::Killed {
        String::new()
    } else {
        http_get(dlr_ns, "/api/v1/state")
    };
    let src_pkts = stop(cap_src);
    let dlr_pkts = stop(cap_dlr);
    let rcvt_pkts = cap_rcvt.map(stop);
    eprintln!("R2 metrics:\n{m2}\nDLR metrics:\n{md}\nDLR state: {state}\nsender: {send_out}");

    let dlr_addr = if mode == Mode::OffTree {
        b.addr(5, 2)
    } else {
        b.addr(2, 3)
    };
    let served = metric(&md, "pgm_dlr_repairs_served_total");
    let nnaks_sent = metric(&md, "pgm_dlr_nnaks_sent_total");
    let src_rdata = count(&src_pkts, |f| f.src == src && f.is(PacketType::Rdata));
    let src_nnaks = count(&src_pkts, |f| f.dst == src && f.is(PacketType::Nnak));
    let src_naks = count(&src_pkts, |f| f.dst == src && f.is(PacketType::Nak));
    let naks_to_dlr = count(&dlr_pkts, |f| f.dst == dlr_addr && f.is(PacketType::Nak));
    eprintln!(
        "{tag}: {dropped} dropped on lan; DLR served {served}, NNAKs {nnaks_sent}; \
         at the source: {src_rdata} RDATA sent, {src_naks} NAKs and {src_nnaks} NNAKs \
         received; {naks_to_dlr} NAKs to the DLR"
    );
    match mode {
        Mode::Upstream | Mode::ServeAll => {
            // R1's NCFs on the transit LAN drew redirecting POLRs with the source's address,
            // announcing the DLR.
            let polrs = count(&dlr_pkts, |f| {
                f.src == src
                    && f.dst == group
                    && f.router_alert
                    && f.redirect() == Some(dlr_addr.into())
            });
            // NCFs bear the source's address; the DLR's own never come back to it, so every
            // NCF it received is R1's.
            let r1_ncfs = metrics::sum(&md, "pgm_dlr_received_packets_total", &[("type", "ncf")]);
            assert!(r1_ncfs > 0, "no NCF from R1 reached the DLR");
            assert!(polrs > 0, "no redirecting POLR on the transit LAN");
            assert!(metric(&md, "pgm_dlr_redirects_announced_total") > 0);
            assert!(naks_to_dlr > 0, "R2 never NAKed the DLR");
            assert!(served > 0, "the DLR served no repair");
            assert!(metric(&md, "pgm_dlr_cache_entries") > 0);
            // RDATA from the DLR as an upstream DLR bears the source's address and Router
            // Alert: on the transit LAN, more RDATA with the source's address than the source
            // ever sent. (R1 also learns the DLR from its POLRs and may redirect a NAK of its
            // own to it: the DLR answers its parent off-tree style, by unicast from its own
            // address, §9.5.2.3.)
            let rdata_as_source = count(&dlr_pkts, |f| {
                f.src == src && f.router_alert && f.is(PacketType::Rdata)
            });
            let rdata_to_parent = count(&dlr_pkts, |f| {
                f.src == dlr_addr && f.dst == b.addr(2, 1) && f.is(PacketType::Rdata)
            });
            eprintln!(
                "{tag}: on the transit LAN {rdata_as_source} RDATA with the source's address, \
                 {rdata_to_parent} unicast from the DLR to R1"
            );
            assert!(
                rdata_as_source > src_rdata,
                "{rdata_as_source} RDATA with the source's address on the transit LAN, \
                 {src_rdata} sent by the source, {served} served by the DLR"
            );
            assert!(
                nnaks_sent > 0 && src_nnaks > 0,
                "no NNAK reached the source"
            );
            // The transit receiver's own losses are repaired by the source; what the source
            // repaired for the lan receiver must be less than what the DLR did.
            let transit_naked: BTreeSet<u32> = rcvt_pkts
                .iter()
                .flatten()
                .filter(|f| f.src == b.addr(2, 11) && f.is(PacketType::Nak))
                .flat_map(PgmFrame::nak_sqns)
                .collect();
            let src_rdata_lan = count(&src_pkts, |f| {
                f.src == src
                    && f.is(PacketType::Rdata)
                    && f.data_sqn().is_some_and(|s| !transit_naked.contains(&s))
            });
            assert!(
                (src_rdata_lan as u64) < served,
                "the source sent {src_rdata_lan} RDATA for the lan receiver, the DLR {served}"
            );
            assert!(state.contains("\"sessions\""), "{state}");
            assert!(
                state.contains(&format!("\"parent\":\"{}\"", b.addr(2, 1))),
                "{state}"
            );
            let serve = if mode == Mode::ServeAll {
                "all"
            } else {
                "listed"
            };
            assert!(state.contains(&format!("\"serve\":\"{serve}\"")), "{state}");
            if mode == Mode::ServeAll {
                // Learnt from the traffic: an engine for the group, with the session in it.
                assert!(state.contains(&format!("\"group\":\"{group}\"")), "{state}");
                assert!(metric(&md, "pgm_dlr_sessions") > 0, "{md}");
            }
            if let (Some(pkts), Some(loss_t)) = (&rcvt_pkts, &loss_t) {
                transit_receiver_ignored_redirects(
                    pkts,
                    loss_t,
                    b.addr(2, 11),
                    b.addr(2, 1),
                    dlr_addr,
                );
            }
            admin::post(dlr_ns, ADMIN, "/api/v1/clear/counters").expect("clear the DLR's counters");
            let m = http_get(dlr_ns, "/metrics");
            assert_eq!(metric(&m, "pgm_dlr_repairs_served_total"), 0);
        }
        Mode::OffTree => {
            assert!(
                metric(&md, "pgm_dlr_polls_answered_total") > 0,
                "no PGM_POLL_DLR answered"
            );
            assert!(naks_to_dlr > 0, "R2 never NAKed the off-tree DLR");
            let rdata_unicast = count(&dlr_pkts, |f| {
                f.src == dlr_addr && f.dst == b.addr(5, 1) && f.is(PacketType::Rdata)
            });
            assert!(rdata_unicast > 0, "no unicast RDATA from the DLR to R2");
            assert!(served > 0, "the DLR served no repair");
            assert!(
                nnaks_sent > 0 && src_nnaks > 0,
                "no NNAK reached the source"
            );
        }
        Mode::Killed => {
            assert!(served > 0, "the DLR served nothing before it was killed");
            assert!(
                src_rdata > 0,
                "the source never repaired after the DLR died"
            );
        }
    }
}

/// §9.5.4: a receiver on the DLR's own subnet ignores its redirecting POLRs. From the
/// transit receiver's capture: it received redirecting POLRs naming the DLR, then NAKed its
/// own losses, and every one of those NAKs went to its SPM_PATH neighbour (R1), none to the
/// DLR.
fn transit_receiver_ignored_redirects(
    pkts: &[PgmFrame],
    loss: &lab::LossRule,
    me: Ipv4Addr,
    r1: Ipv4Addr,
    dlr: Ipv4Addr,
) {
    let lost = loss.counters().unwrap().dropped;
    assert!(lost > 0, "the transit receiver lost nothing");
    let first_redirect = pkts
        .iter()
        .filter(|f| f.redirect() == Some(dlr.into()))
        .map(|f| f.at)
        .min()
        .expect("no redirecting POLR reached the transit receiver");
    let naks: Vec<&PgmFrame> = pkts
        .iter()
        .filter(|f| f.src == me && f.is(PacketType::Nak))
        .collect();
    let to_dlr = naks.iter().filter(|f| f.dst == dlr).count();
    let after = naks.iter().filter(|f| f.at > first_redirect).count();
    eprintln!(
        "transit receiver: {lost} ODATA lost, {} NAKs ({after} after the first redirecting \
         POLR), {to_dlr} to the DLR",
        naks.len()
    );
    assert!(
        after > 0,
        "the transit receiver sent no NAK after a redirecting POLR"
    );
    assert_eq!(
        to_dlr, 0,
        "the transit receiver followed the DLR's redirect (§9.5.4)"
    );
    assert!(
        naks.iter().all(|f| f.dst == r1),
        "the transit receiver NAKed someone other than R1: {:?}",
        naks.iter().map(|f| f.dst).collect::<BTreeSet<_>>()
    );
}

on_each_plane!(dlr_upstream_repairs_on_transit_lan, |plane| scenario(
    "dlrup",
    plane,
    Mode::Upstream
));

on_each_plane!(dlr_serve_all_learns_and_repairs, |plane| scenario(
    "dlrall",
    plane,
    Mode::ServeAll
));

on_each_plane!(dlr_off_tree_found_by_poll, |plane| scenario(
    "dlroff",
    plane,
    Mode::OffTree
));

on_each_plane!(dlr_killed_repair_falls_back_to_source, |plane| scenario(
    "dlrkill",
    plane,
    Mode::Killed
));
