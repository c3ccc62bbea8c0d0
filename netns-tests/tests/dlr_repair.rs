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

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::path::PathBuf;
use std::time::Duration;

use std::collections::BTreeSet;

use pgm_core::wire::{NakPacket, OptionType, OptionValue, Packet, PacketType};
use pgm_netns_tests::bins::workspace_bin;
use pgm_netns_tests::lab::{self, Capture, Lab, LossSpec, Ns, PgmFrame, Process, Selector};

const ADMIN: &str = "127.0.0.1:9470";
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

fn daemon(topo: &Topo, ns: &Ns, bin: &str, name: &str, toml: &str, ready: &str) -> Process {
    let path = topo.lab.file(name, "toml");
    std::fs::write(&path, toml).expect("write config");
    let bin = workspace_bin(bin).expect("binary");
    let check = topo
        .lab
        .exec_unchecked(
            ns,
            &[
                bin.as_os_str(),
                "--check-config".as_ref(),
                "--config".as_ref(),
                path.as_os_str(),
            ],
            Duration::from_secs(10),
        )
        .expect("run --check-config");
    assert!(
        check.status.success(),
        "{name}: --check-config: {}",
        String::from_utf8_lossy(&check.stderr)
    );
    let mut cmd = topo.lab.command(
        ns,
        &[bin.as_os_str(), "--config".as_ref(), path.as_os_str()],
    );
    cmd.env("RUST_LOG", "info");
    let p = topo.lab.spawn_command(cmd, name).expect("spawn daemon");
    p.wait_for_output(ready, Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("{name}: {e:#}\n{}", p.stderr().unwrap_or_default()));
    p
}

fn http(ns: &Ns, method: &str, path: &str) -> String {
    let (method, path) = (method.to_owned(), path.to_owned());
    ns.run(move || {
        let mut s = TcpStream::connect(ADMIN).expect("connect to the admin API");
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        write!(
            s,
            "{method} {path} HTTP/1.0\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        assert!(out.contains(" 200 "), "{out}");
        out.split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default()
    })
    .expect("enter namespace")
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

fn ptype(pgm: &[u8]) -> Option<PacketType> {
    Packet::new_checked(pgm).ok().map(|p| p.packet_type())
}

fn stop(c: Capture) -> Vec<PgmFrame> {
    lab::read_pgm(&c.stop().expect("stop capture")).expect("read capture")
}

fn count(pkts: &[PgmFrame], f: impl Fn(&PgmFrame) -> bool) -> usize {
    pkts.iter().filter(|p| f(p)).count()
}

/// The DLR address a redirecting POLR announces (its OPT_REDIRECT), if it is one.
fn redirect_of(pgm: &[u8]) -> Option<std::net::IpAddr> {
    let p = Packet::new_checked(pgm).ok()?;
    if p.packet_type() != PacketType::Polr {
        return None;
    }
    match p.options().find(OptionType::Redirect)?.value {
        OptionValue::Redirect(nla) => Some(nla.0),
        _ => None,
    }
}

/// The sequence numbers a NAK asks for.
fn nak_sqns(pgm: &[u8]) -> Vec<u32> {
    NakPacket::new_checked(pgm)
        .map(|n| n.sqns().map(|q| q.0).collect())
        .unwrap_or_default()
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

fn scenario(tag: &str, mode: Mode) {
    let topo = Topo::build(tag, mode == Mode::Upstream);
    let b = topo.b;
    let group = b.group(1);
    let src = b.addr(1, 2);
    let pgm: PathBuf = workspace_bin("pgm").expect("pgm binary");
    let r2_down = if mode == Mode::OffTree {
        "[\"lan\", \"to-dlr\"]"
    } else {
        "[\"lan\"]"
    };
    let poll = if mode == Mode::OffTree {
        "[router.poll]\ninterval = \"1s\"\nbackoff = \"200ms\"\n"
    } else {
        ""
    };
    let r1_cfg = format!(
        "[router]\n[[router.interface]]\nname = \"to-src\"\n[[router.interface]]\nname = \"tr\"\n\
         [[router.route]]\ngroup = \"{group}\"\nsource = \"{src}\"\nupstream = \"to-src\"\ndownstream = [\"tr\"]\n\
         [admin]\nlisten = \"{ADMIN}\"\n"
    );
    let r2_cfg = format!(
        "[router]\n[[router.interface]]\nname = \"tr\"\n[[router.interface]]\nname = \"lan\"\n\
         [[router.interface]]\nname = \"to-dlr\"\n{poll}\
         [[router.route]]\ngroup = \"{group}\"\nsource = \"{src}\"\nupstream = \"tr\"\ndownstream = {r2_down}\n\
         [admin]\nlisten = \"{ADMIN}\"\n"
    );
    let serve = if mode == Mode::ServeAll {
        "serve = \"all\"\n".to_owned()
    } else {
        format!("serve = \"listed\"\n[[dlr.session]]\ngroup = \"{group}\"\nport = {PORT}\n")
    };
    let dlr_cfg = format!("[dlr]\ninterfaces = [\"eth0\"]\n{serve}[admin]\nlisten = \"{ADMIN}\"\n");
    let _r1 = daemon(
        &topo,
        &topo.r1,
        "pgm-routerd",
        "r1",
        &r1_cfg,
        "pgm-routerd started",
    );
    let r2 = daemon(
        &topo,
        &topo.r2,
        "pgm-routerd",
        "r2",
        &r2_cfg,
        "pgm-routerd started",
    );
    let dlr_ns = if mode == Mode::OffTree {
        &topo.odlr
    } else {
        &topo.dlr
    };
    let dlr = daemon(
        &topo,
        dlr_ns,
        "pgm-dlrd",
        "dlr",
        &dlr_cfg,
        "pgm-dlrd started",
    );

    let cap_src = topo
        .lab
        .capture(&topo.src, "eth0", Some("ip proto 113"))
        .unwrap();
    let cap_dlr = topo
        .lab
        .capture(dlr_ns, "eth0", Some("ip proto 113"))
        .unwrap();
    let cap_rcvt = topo
        .rcvt
        .as_ref()
        .map(|n| topo.lab.capture(n, "eth0", Some("ip proto 113")).unwrap());

    let (count_msgs, rate) = if mode == Mode::Killed {
        (8000, "500000")
    } else {
        (5000, "500000")
    };
    let receiver = |ns: &Ns, addr: Ipv4Addr| {
        topo.lab
            .spawn(
                ns,
                &[
                    pgm.to_str().unwrap(),
                    "recv",
                    "--ip",
                    "--network",
                    &format!("{addr};{group}"),
                    "--count",
                    &count_msgs.to_string(),
                    "--verify",
                    "--size",
                    "1000",
                    "--idle-timeout",
                    "20",
                    "-o",
                    "/dev/null",
                ],
            )
            .expect("spawn receiver")
    };
    let rcv = receiver(&topo.rcv, b.addr(3, 11));
    let rcvt = topo.rcvt.as_ref().map(|n| receiver(n, b.addr(2, 11)));
    std::thread::sleep(Duration::from_millis(1500));
    let sender = topo
        .lab
        .spawn(
            &topo.src,
            &[
                pgm.to_str().unwrap(),
                "send",
                "--ip",
                "--network",
                &format!("{src};{group}"),
                "--count",
                &count_msgs.to_string(),
                "--size",
                "1000",
                "--rate",
                rate,
                "--linger",
                "10",
            ],
        )
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
        dlr_metrics_before_kill = http(dlr_ns, "GET", "/metrics");
        dlr.kill().expect("kill the DLR");
    }
    let st = rcv.wait_timeout(Duration::from_secs(90)).unwrap();
    let dlr_log = dlr.stderr().unwrap_or_default();
    assert!(
        matches!(st, Some(s) if s.success()),
        "receiver ({st:?}) did not deliver everything: {}\nR2 log:\n{}\nDLR log:\n{dlr_log}",
        rcv.stderr().unwrap_or_default(),
        r2.stderr().unwrap_or_default(),
    );
    if let Some(r) = &rcvt {
        let st = r.wait_timeout(Duration::from_secs(90)).unwrap();
        assert!(
            matches!(st, Some(s) if s.success()),
            "transit receiver ({st:?}) did not deliver everything: {}",
            r.stderr().unwrap_or_default(),
        );
    }
    let _ = sender.wait_timeout(Duration::from_secs(30));
    let send_out = sender.stderr().unwrap_or_default();
    let dropped = loss.counters().unwrap().dropped;
    assert!(dropped > 0, "the loss rule dropped nothing");
    let m2 = http(&topo.r2, "GET", "/metrics");
    let md = if mode == Mode::Killed {
        dlr_metrics_before_kill
    } else {
        http(dlr_ns, "GET", "/metrics")
    };
    let state = if mode == Mode::Killed {
        String::new()
    } else {
        http(dlr_ns, "GET", "/api/v1/state")
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
    let is = |f: &PgmFrame, t: PacketType| ptype(&f.pgm) == Some(t);
    let src_rdata = count(&src_pkts, |f| f.src == src && is(f, PacketType::Rdata));
    let src_nnaks = count(&src_pkts, |f| f.dst == src && is(f, PacketType::Nnak));
    let src_naks = count(&src_pkts, |f| f.dst == src && is(f, PacketType::Nak));
    let naks_to_dlr = count(&dlr_pkts, |f| f.dst == dlr_addr && is(f, PacketType::Nak));
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
                    && redirect_of(&f.pgm) == Some(dlr_addr.into())
            });
            // NCFs bear the source's address; the DLR's own never come back to it, so every
            // NCF it received is R1's.
            let r1_ncfs: u64 = md
                .lines()
                .filter(|l| {
                    l.starts_with("pgm_dlr_received_packets_total{") && l.contains("type=\"ncf\"")
                })
                .filter_map(|l| l.rsplit_once(" ")?.1.parse::<u64>().ok())
                .sum();
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
                f.src == src && f.router_alert && is(f, PacketType::Rdata)
            });
            let rdata_to_parent = count(&dlr_pkts, |f| {
                f.src == dlr_addr && f.dst == b.addr(2, 1) && is(f, PacketType::Rdata)
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
                .filter(|f| f.src == b.addr(2, 11) && is(f, PacketType::Nak))
                .flat_map(|f| nak_sqns(&f.pgm))
                .collect();
            let src_rdata_lan = count(&src_pkts, |f| {
                f.src == src
                    && is(f, PacketType::Rdata)
                    && pgm_core::wire::DataPacket::new_checked(&f.pgm[..])
                        .is_ok_and(|d| !transit_naked.contains(&d.sqn().0))
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
            http(dlr_ns, "POST", "/api/v1/clear/counters");
            let m = http(dlr_ns, "GET", "/metrics");
            assert_eq!(metric(&m, "pgm_dlr_repairs_served_total"), 0);
        }
        Mode::OffTree => {
            assert!(
                metric(&md, "pgm_dlr_polls_answered_total") > 0,
                "no PGM_POLL_DLR answered"
            );
            assert!(naks_to_dlr > 0, "R2 never NAKed the off-tree DLR");
            let rdata_unicast = count(&dlr_pkts, |f| {
                f.src == dlr_addr && f.dst == b.addr(5, 1) && is(f, PacketType::Rdata)
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
        .filter(|f| redirect_of(&f.pgm) == Some(dlr.into()))
        .map(|f| f.at)
        .min()
        .expect("no redirecting POLR reached the transit receiver");
    let naks: Vec<&PgmFrame> = pkts
        .iter()
        .filter(|f| f.src == me && ptype(&f.pgm) == Some(PacketType::Nak))
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

#[test]
fn dlr_upstream_repairs_on_transit_lan() {
    if lab::skip_without_root("dlr_upstream_repairs_on_transit_lan") {
        return;
    }
    scenario("dlrup", Mode::Upstream);
}

#[test]
fn dlr_serve_all_learns_and_repairs() {
    if lab::skip_without_root("dlr_serve_all_learns_and_repairs") {
        return;
    }
    scenario("dlrall", Mode::ServeAll);
}

#[test]
fn dlr_off_tree_found_by_poll() {
    if lab::skip_without_root("dlr_off_tree_found_by_poll") {
        return;
    }
    scenario("dlroff", Mode::OffTree);
}

#[test]
fn dlr_killed_repair_falls_back_to_source() {
    if lab::skip_without_root("dlr_killed_repair_falls_back_to_source") {
        return;
    }
    scenario("dlrkill", Mode::Killed);
}
