//! The data plane of `pgm-routerd` as packets see it, on each plane, on the reference topology
//! (source - R1 - R2 - {LAN A: rcv1, rcv2; LAN B: rcv3}) with static `(S,G)` routes:
//!
//! - `kernel_forwarding`: ODATA crafted at the source is forwarded by the kernel with its TTL
//!   decremented per hop and a valid IP checksum (a raw socket on rcv3 receives it, and the
//!   kernel delivers only valid headers), with and without IP options (Router Alert), by the
//!   routers' own MAC addresses; ODATA whose TTL runs out is not forwarded; ODATA of the route
//!   sent from LAN B with the source's address is not forwarded to LAN A (reverse path); an
//!   SPM sent from LAN B for the real session does not change R2's path state.
//! - `restart_resumes_and_leaves_nothing`: R2 (routes learned from IGMP and the first packets;
//!   rcv3 on LAN B speaks IGMPv2, the others v3) is killed with SIGKILL in the middle of a
//!   transfer: nothing of it stays in the kernel; restarted, it learns the memberships again
//!   (start-up queries ask for answers within 1 s) and every receiver completes; after
//!   SIGTERM nothing stays either.
//! - `spoofed_sources_stay_bounded`: 3000 ODATA from LAN B with 3000 made-up sources for a
//!   group with a member on LAN A: R2 learns at most `max_routes` (S,G) routes, evicts and
//!   counts the rest, its kernel table stays as small, and a real transfer of another group
//!   beside it completes.

// Wall-clock time is what this drives (the engines take time as a parameter).
#![allow(clippy::disallowed_methods)]

use std::collections::BTreeMap;
use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use pgm_core::net::router::sockets::build_ipv4;
use pgm_core::wire::{Body, DataRepr, Gsi, Nla, OptionList, Repr, SpmRepr, Sqn};
use pgm_netns_tests::admin::{self, DEFAULT_LISTEN as ADMIN};
use pgm_netns_tests::bins;
use pgm_netns_tests::daemon::{Daemon, RouterConfig};
use pgm_netns_tests::lab::{Ns, PgmFrame, RefTopology, Signal, mcast, tshark_fields};
use pgm_netns_tests::metrics::sum as metric;
use pgm_netns_tests::on_each_plane;
use pgm_netns_tests::plane::Plane;
use pgm_netns_tests::transfer::Transfer;
use socket2::{Domain, InterfaceIndexOrAddress, Protocol, SockAddr, Socket, Type};

const GSI: Gsi = Gsi([0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f]);
const SPORT: u16 = 4100;
const DPORT: u16 = 7500;

/// An ODATA or SPM of our crafted session, as a PGM packet.
fn pgm(body: Body<'_>) -> Vec<u8> {
    let repr = Repr {
        sport: SPORT,
        dport: DPORT,
        gsi: GSI,
        parity: false,
        var_pktlen: false,
        body,
        options: OptionList::EMPTY,
    };
    let mut b = vec![0; repr.buffer_len()];
    repr.emit(&mut b).expect("emit");
    b
}

fn odata(sqn: u32) -> Vec<u8> {
    pgm(Body::Odata(DataRepr {
        sqn: Sqn(sqn),
        trail: Sqn(0),
        payload: b"dataplane",
    }))
}

fn spm(sqn: u32, path: Ipv4Addr) -> Vec<u8> {
    pgm(Body::Spm(SpmRepr {
        sqn: Sqn(sqn),
        trail: Sqn(0),
        lead: Sqn(100),
        path: Nla(IpAddr::V4(path)),
    }))
}

/// One IP packet to send: source address, TTL, Router Alert, PGM bytes.
struct Raw {
    source: Ipv4Addr,
    ttl: u8,
    router_alert: bool,
    pgm: Vec<u8>,
}

/// Sends `packets` to `group` from `ns` through an `IP_HDRINCL` socket (any source address),
/// 2 ms apart.
fn send_raw(ns: &Ns, group: Ipv4Addr, packets: Vec<Raw>) {
    ns.run(move || {
        let sock =
            Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(113))).expect("raw socket");
        sock.set_header_included_v4(true).expect("IP_HDRINCL");
        let to = SockAddr::from(SocketAddrV4::new(group, 0));
        let mut buf = Vec::new();
        for p in packets {
            build_ipv4(&mut buf, p.source, group, p.ttl, p.router_alert, &p.pgm);
            sock.send_to(&buf, &to).expect("send");
            std::thread::sleep(Duration::from_millis(2));
        }
    })
    .expect("enter namespace");
}

/// A raw PGM socket in `ns` joined to `group` on the interface with address `local`: the
/// kernel hands it only packets whose IP header checksum is right.
fn raw_receiver(ns: &Ns, group: Ipv4Addr, local: Ipv4Addr) -> Socket {
    ns.run(move || {
        let s = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(113))).expect("socket");
        s.join_multicast_v4_n(&group, &InterfaceIndexOrAddress::Address(local))
            .expect("join");
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .expect("timeout");
        s
    })
    .expect("enter namespace")
}

/// (TTL, Router Alert option, ODATA sqn) of every valid ODATA of our session `sock` received.
fn drain_odata(sock: &Socket) -> Vec<(u8, bool, u32)> {
    let mut out = Vec::new();
    let mut buf = [0u8; 2048];
    while let Ok(n) = (&*sock).read(&mut buf) {
        let b = &buf[..n];
        let ihl = usize::from(b[0] & 0x0f) * 4;
        let Some(p) = b.get(ihl..) else { continue };
        if p.len() < 20 || p[4] != 0x04 || p[8..14] != GSI.0 {
            continue;
        }
        out.push((
            b[8],
            ihl > 20,
            u32::from_be_bytes([p[16], p[17], p[18], p[19]]),
        ));
    }
    out
}

fn routerd() -> Daemon {
    Daemon::new(bins::cargo_bin("pgm-router", "pgm-routerd").expect("build pgm-routerd"))
        .rust_log("info,pgm_routerd=debug")
}

fn base(plane: Plane) -> RouterConfig {
    RouterConfig::new()
        .mode("full")
        .dataplane(plane.name())
        .intercept("nftables")
}

fn mac_of(topo: &RefTopology, ns: &Ns, iface: &str) -> String {
    let out = topo
        .lab
        .exec(ns, &["cat", &format!("/sys/class/net/{iface}/address")])
        .expect("read MAC");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

on_each_plane!(kernel_forwarding, |plane| forwarding(plane));

fn forwarding(plane: Plane) {
    let topo = RefTopology::build(&format!("dpfwd{}", &plane.name()[..1])).expect("topology");
    let group = topo.group(1);
    let src = topo.source.addr();
    let b = base(plane);
    let [_r1, r2] = topo
        .start_routers(
            &routerd(),
            &topo.r1_config(&b, Some(group)),
            &topo.r2_config(&b, Some(group)),
        )
        .unwrap_or_else(|e| panic!("{e:#}"));
    let rcv3 = topo.lan_b_receiver();
    let sock = raw_receiver(&rcv3.ns, group, rcv3.addr());
    let cap_lana = topo
        .lab
        .capture_pgm(&topo.receivers[0].ns, "eth0")
        .expect("capture");
    let cap_lanb = topo.lab.capture_pgm(&rcv3.ns, "eth0").expect("capture");
    std::thread::sleep(Duration::from_millis(500));

    // The session's first SPM, so that R2 has path state (upstream neighbour R1).
    let r1_down = topo.r1.downstream[0].addr;
    let mut packets = vec![Raw {
        source: src,
        ttl: 8,
        router_alert: false,
        pgm: spm(1, src),
    }];
    let data = |sqns: std::ops::RangeInclusive<u32>, ttl, router_alert| {
        sqns.map(move |s| Raw {
            source: src,
            ttl,
            router_alert,
            pgm: odata(s),
        })
    };
    packets.extend(data(1..=5, 8, false));
    packets.extend(data(11..=15, 8, true));
    // TTL 2: R1 forwards with 1, R2 must not. TTL 1: R1 must not.
    packets.extend(data(21..=25, 2, false));
    packets.extend(data(31..=35, 1, false));
    send_raw(&topo.source.ns, group, packets);
    // From LAN B with the source's address: the wrong interface for the route.
    let mut spoofed: Vec<Raw> = (41..=45)
        .map(|s| Raw {
            source: src,
            ttl: 8,
            router_alert: false,
            pgm: odata(s),
        })
        .collect();
    // An in-sequence SPM claiming rcv3 as the session's path.
    spoofed.push(Raw {
        source: src,
        ttl: 8,
        router_alert: false,
        pgm: spm(2, rcv3.addr()),
    });
    send_raw(&rcv3.ns, group, spoofed);
    std::thread::sleep(Duration::from_millis(500));

    let got = drain_odata(&sock);
    let lana = cap_lana.finish().expect("stop capture");
    let lanb = cap_lanb.finish().expect("stop capture");
    let m2 = admin::get(&topo.r2.ns, ADMIN, "/metrics").expect("R2 metrics");
    let state2 = admin::get(&topo.r2.ns, ADMIN, "/api/v1/state").expect("R2 state");
    eprintln!("received on rcv3: {got:?}");

    // What reached rcv3's socket (valid IP headers only): 1-5 and 11-15, two hops down.
    let by_sqn: BTreeMap<u32, (u8, bool)> = got.iter().map(|&(t, ra, s)| (s, (t, ra))).collect();
    for s in 1..=5 {
        assert_eq!(by_sqn.get(&s), Some(&(6, false)), "ODATA {s} on LAN B");
    }
    for s in 11..=15 {
        assert_eq!(
            by_sqn.get(&s),
            Some(&(6, true)),
            "ODATA {s} with Router Alert on LAN B"
        );
    }
    let frames = lana.read_pgm().expect("read capture");
    let seen = |frames: &[PgmFrame], s: u32| frames.iter().any(|f| f.data_sqn() == Some(s));
    for s in (21..=25).chain(31..=35) {
        assert!(
            !by_sqn.contains_key(&s) && !seen(&frames, s),
            "ODATA {s} outlived its TTL"
        );
    }
    for s in 41..=45 {
        assert!(!seen(&frames, s), "ODATA {s} from LAN B reached LAN A");
    }
    for s in (1..=5).chain(11..=15) {
        assert!(seen(&frames, s), "ODATA {s} on LAN A");
    }
    // The frames leave with the router's own MAC address.
    let r2_lanb_mac = mac_of(&topo, &topo.r2.ns, "lanb");
    // (Two hops down: what R2 sent, not rcv3's own packets.)
    let macs = tshark_fields(&lanb.path, "pgm && ip.ttl == 6", &["eth.src"]).expect("tshark");
    assert!(!macs.is_empty());
    for m in &macs {
        assert_eq!(m[0], r2_lanb_mac, "source MAC of forwarded ODATA on LAN B");
    }
    // The forged SPM changed nothing: R2 still knows R1 as the session's upstream.
    assert!(
        state2.contains(&format!("\"upstream_neighbour\":\"{r1_down}\"")),
        "{state2}"
    );
    assert!(
        metric(&m2, "pgm_router_intercept_foreign_total", &[])
            + metric(&m2, "pgm_router_spms_wrong_interface_total", &[])
            >= 1,
        "the SPM from LAN B was not counted"
    );
    // Each router got the one real SPM once: not twice through two paths, and not back from
    // the interfaces it forwarded it out of.
    let m1 = admin::get(&topo.r1.ns, ADMIN, "/metrics").expect("R1 metrics");
    for (name, m) in [("R1", &m1), ("R2", &m2)] {
        assert_eq!(
            metric(m, "pgm_router_spms_received_total", &[]),
            1,
            "{name}: SPMs received"
        );
        assert_eq!(
            metric(m, "pgm_router_spms_forwarded_total", &[]),
            if name == "R1" { 1 } else { 2 },
            "{name}: SPM copies forwarded"
        );
    }
    if plane == Plane::Netdev {
        let ev = |e: &str| metric(&m2, "pgm_router_dataplane_packets_total", &[("event", e)]);
        assert_eq!(ev("ttl_expired"), 5, "R2's TTL-expired counter");
        assert!(ev("rpf_drop") >= 5, "R2's reverse-path counter");
        assert_eq!(ev("forwarded"), 10, "R2's forwarded counter");
    }
    drop(r2);
}

on_each_plane!(restart_resumes_and_leaves_nothing, |plane| restart(plane));

/// The daemon's kernel state in R2: nftables tables of the daemon and MFC entries.
fn kernel_state(topo: &RefTopology) -> (String, Vec<String>) {
    let out = topo
        .lab
        .exec(&topo.r2.ns, &["nft", "list", "tables"])
        .expect("nft list tables");
    let tables = String::from_utf8_lossy(&out.stdout).into_owned();
    let mfc = topo.lab.mroutes(&topo.r2.ns).unwrap_or_default();
    (tables, mfc)
}

fn restart(plane: Plane) {
    let topo = RefTopology::build(&format!("dprst{}", &plane.name()[..1])).expect("topology");
    let group = topo.group(1);
    let pgm = bins::cargo_bin("pgm-core", "pgm").expect("build pgm");
    let b = base(plane);
    let r2_cfg = topo.r2_config(&b, None);
    let routerd = routerd();
    let [_r1, r2] = topo
        .start_routers(&routerd, &topo.r1_config(&b, Some(group)), &r2_cfg)
        .unwrap_or_else(|e| panic!("{e:#}"));
    // LAN B's host reports with IGMPv2 (reports to the group, leaves to 224.0.0.2).
    let rcv3 = topo.lan_b_receiver();
    topo.lab
        .exec(
            &rcv3.ns,
            &[
                "sysctl",
                "-qw",
                &format!("net.ipv4.conf.{}.force_igmp_version=2", rcv3.iface.name),
            ],
        )
        .expect("force IGMPv2 on rcv3");
    const COUNT: usize = 4000;
    let transfer = Transfer {
        pgm: &pgm,
        group,
        count: COUNT,
        size: 1000,
    };
    // 8 s of data.
    let run = transfer
        .start(
            &topo.lab,
            &topo.receivers,
            &topo.source,
            (500_000, 15, 30),
            &[],
        )
        .expect("start the transfer");
    std::thread::sleep(Duration::from_secs(2));
    let (tables, _) = kernel_state(&topo);
    assert!(tables.contains("pgm_routerd"), "R2's table: {tables}");

    // SIGKILL: no chance to clean up. The kernel drops what belonged to the process.
    r2.kill().expect("kill R2");
    let deadline = Instant::now() + Duration::from_secs(5);
    let (tables, mfc) = loop {
        let (t, m) = kernel_state(&topo);
        if (!t.contains("pgm_routerd") && m.is_empty()) || Instant::now() > deadline {
            break (t, m);
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        !tables.contains("pgm_routerd"),
        "R2's table outlived it: {tables}"
    );
    assert!(mfc.is_empty(), "R2's MFC entries outlived it: {mfc:?}");
    std::thread::sleep(Duration::from_millis(500));

    let r2 = routerd
        .start(
            &topo.lab,
            &topo.r2.ns,
            "routerd-r2-again",
            &r2_cfg.to_string(),
        )
        .unwrap_or_else(|e| panic!("{e:#}"));
    run.wait(Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{e:#}\nR2 log:\n{}", r2.stderr().unwrap_or_default()));
    let m2 = admin::get(&topo.r2.ns, ADMIN, "/metrics").expect("R2 metrics");
    assert!(
        metric(&m2, "pgm_router_igmp_reports_total", &[]) > 0
            && metric(&m2, "pgm_router_routes_learned_total", &[]) > 0,
        "the restarted R2 learned nothing:\n{m2}"
    );

    // SIGTERM: the daemon removes its state itself.
    r2.signal(Signal::Term).expect("SIGTERM");
    r2.wait_timeout(Duration::from_secs(10))
        .expect("wait")
        .expect("R2 exited");
    let (tables, mfc) = kernel_state(&topo);
    assert!(!tables.contains("pgm_routerd"), "after SIGTERM: {tables}");
    assert!(mfc.is_empty(), "after SIGTERM: {mfc:?}");
}

on_each_plane!(spoofed_sources_stay_bounded, |plane| spoofed(plane));

fn spoofed(plane: Plane) {
    const MAX_ROUTES: u64 = 16;
    const SPOOFED: u32 = 3000;
    let topo = RefTopology::build(&format!("dpspf{}", &plane.name()[..1])).expect("topology");
    let group = topo.group(1);
    let flooded = topo.group(2);
    let pgm = bins::cargo_bin("pgm-core", "pgm").expect("build pgm");
    let b = base(plane);
    let r2_cfg = topo
        .r2_config(&b, None)
        .section(&format!("[router.limits]\nmax_routes = {MAX_ROUTES}\n"));
    let [_r1, _r2] = topo
        .start_routers(&routerd(), &topo.r1_config(&b, Some(group)), &r2_cfg)
        .unwrap_or_else(|e| panic!("{e:#}"));
    const COUNT: usize = 3000;
    let transfer = Transfer {
        pgm: &pgm,
        group,
        count: COUNT,
        size: 1000,
    };
    let run = transfer
        .start(
            &topo.lab,
            &topo.receivers[..2],
            &topo.source,
            (500_000, 10, 30),
            &[],
        )
        .expect("start the transfer");
    // A member of the flooded group on LAN A (a plain socket's join).
    let rcv1 = &topo.receivers[0];
    let local = rcv1.addr();
    let _member = rcv1
        .ns
        .run(move || mcast::McastReceiver::new(local, flooded, 5999))
        .expect("enter namespace")
        .expect("join the flooded group");
    std::thread::sleep(Duration::from_millis(500));
    // From LAN B: ODATA of that group from 3000 made-up sources (10.200.x.y).
    let packets: Vec<Raw> = (0..SPOOFED)
        .map(|i| Raw {
            source: Ipv4Addr::new(10, 200, (i >> 8) as u8, i as u8),
            ttl: 8,
            router_alert: false,
            pgm: odata(i),
        })
        .collect();
    let rcv3 = topo.lan_b_receiver().ns.clone();
    let flood = std::thread::spawn(move || {
        rcv3.run(move || {
            let sock = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(113)))
                .expect("raw socket");
            sock.set_header_included_v4(true).expect("IP_HDRINCL");
            let to = SockAddr::from(SocketAddrV4::new(flooded, 0));
            let mut buf = Vec::new();
            for p in packets {
                build_ipv4(&mut buf, p.source, flooded, p.ttl, p.router_alert, &p.pgm);
                let _ = sock.send_to(&buf, &to);
                std::thread::sleep(Duration::from_micros(500));
            }
        })
        .expect("enter namespace");
    });
    let mut max_learned = 0;
    while !flood.is_finished() {
        if let Ok(m) = admin::get(&topo.r2.ns, ADMIN, "/metrics") {
            max_learned = max_learned.max(metric(&m, "pgm_router_learned_routes", &[]));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    flood.join().expect("flood");
    run.wait(Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{e:#}"));
    std::thread::sleep(Duration::from_millis(1500));
    let m2 = admin::get(&topo.r2.ns, ADMIN, "/metrics").expect("R2 metrics");
    let learned = metric(&m2, "pgm_router_learned_routes", &[]);
    let evicted = metric(&m2, "pgm_router_evictions_total", &[("table", "route")]);
    let in_kernel = metric(&m2, "pgm_router_dataplane_kernel_routes", &[]);
    eprintln!(
        "R2: learned routes {learned} (max seen {max_learned}), evicted {evicted}, in the \
         kernel {in_kernel}, learned in all {}",
        metric(&m2, "pgm_router_routes_learned_total", &[])
    );
    assert!(max_learned <= MAX_ROUTES && learned <= MAX_ROUTES);
    assert!(in_kernel <= MAX_ROUTES, "{in_kernel} routes in the kernel");
    assert!(evicted > 0, "no route was evicted");
    assert_eq!(
        metric(&m2, "pgm_router_learned_routes_limit", &[]),
        MAX_ROUTES
    );
}

/// Kernels before 5.12 have no owned tables: the plane then falls back to an unowned table,
/// deleted when the plane is dropped, and a leftover of a killed process is replaced at the
/// next start. Both, on this kernel, with `owner: false`.
#[test]
fn unowned_tables_are_removed_on_drop_and_replaced_after_a_crash() {
    use pgm_core::net::router::netdev::{NetdevConfig, NetdevPlane, PlaneIface};
    use pgm_netns_tests::lab::Lab;

    if pgm_netns_tests::lab::skip_without_root("unowned_tables") {
        return;
    }
    let lab = Lab::new("dpunown").expect("lab");
    let ns = lab.add_ns("r").expect("namespace");
    lab.add_veth(&ns, "a0", &ns, "a1").expect("veth");
    lab.add_addr(&ns, "a0", lab.block().addr(1, 1), 24)
        .expect("address");
    let tables = || {
        let out = lab.exec(&ns, &["nft", "list", "tables"]).expect("nft");
        String::from_utf8_lossy(&out.stdout)
            .matches("pgm_unowned")
            .count()
    };
    let install = |owner: bool| {
        ns.run(move || {
            let index = pgm_core::net::iface::interfaces()
                .expect("interfaces")
                .into_iter()
                .find(|i| i.name == "a0")
                .expect("a0")
                .index;
            let mac = pgm_core::net::iface::hardware_address("a0").expect("mac").1;
            NetdevPlane::install(NetdevConfig {
                table: "pgm_unowned".to_owned(),
                interfaces: vec![PlaneIface {
                    name: "a0".to_owned(),
                    index,
                    mac,
                }],
                log_group: 0,
                intercept: true,
                learn_rate: 10,
                learn_burst: 10,
                owner,
            })
            .expect("install")
        })
        .expect("enter namespace")
    };
    let plane = install(false);
    assert!(!plane.owned());
    assert_eq!(tables(), 1);
    drop(plane);
    assert_eq!(tables(), 0, "an unowned table outlived its plane");
    // A "crash": the plane is leaked, its table stays; the next start replaces it.
    std::mem::forget(install(false));
    assert_eq!(tables(), 1);
    let again = install(true);
    assert!(again.owned());
    assert_eq!(tables(), 1);
    drop(again);
    assert_eq!(tables(), 0);
}
