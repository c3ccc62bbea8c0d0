//! `pgm-routerd` on the reference topology (source - R1 - R2 - {LAN A: rcv1, rcv2; LAN B:
//! rcv3}) with 5% PGM loss on R2's LAN A egress: every receiver delivers everything, the
//! receivers NAK R2, R2 NAKs R1, R2 confirms on LAN A, RDATA for LAN A never leaves on LAN B,
//! and the source sees at most 1.1 NAKed sequence numbers per lost one. Each scenario runs on
//! both data planes (netdev rules; the kernel's multicast routing with Router Alert or the
//! nftables intercept), the mroute runs only where the kernel has multicast routing.
//!
//! Shown from the daemons' `/metrics`, their admin API and packet captures decoded with
//! `pgm_core::wire`.

use std::time::Duration;

use pgm_core::wire::PacketType;
use pgm_netns_tests::admin::{self, DEFAULT_LISTEN as ADMIN};
use pgm_netns_tests::bins;
use pgm_netns_tests::daemon::{Daemon, RouterConfig};
use pgm_netns_tests::lab::pgm_pcap::{count, data_sqns, naked_sqns, odata_sqns, unrequested_rdata};
use pgm_netns_tests::lab::{self, Capture, LossSpec, PgmFrame, RefTopology, Selector};
use pgm_netns_tests::metrics::sum as metric;
use pgm_netns_tests::on_each_plane;
use pgm_netns_tests::plane::Plane;
use pgm_netns_tests::transfer::Transfer;

fn stop(c: Capture) -> Vec<PgmFrame> {
    c.stop_read_pgm().expect("stop and read the capture")
}

struct Setup<'a> {
    plane: Plane,
    /// The mroute plane's intercept (the netdev plane has its own).
    intercept: &'a str,
    /// R2 has a static (S,G) route to LAN A and LAN B (else none: the route comes from the
    /// NOCACHE upcall and LAN A and LAN B from IGMP).
    r2_static_downstream: bool,
    /// Run smcroute and the daemons in assist-only mode.
    assist_only: bool,
}

/// Runs the whole scenario and checks every claim; returns R2's metrics text.
fn scenario(tag: &str, setup: Setup<'_>) {
    let tag = &format!("{tag}{}", &setup.plane.name()[..1]);
    let topo = RefTopology::build(tag).expect("build the reference topology");
    let group = topo.group(1);
    let src = topo.source.addr();
    let pgm = bins::cargo_bin("pgm-core", "pgm").expect("build pgm");
    let intercept = setup.intercept;
    let mode = if setup.assist_only {
        "assist-only"
    } else {
        "full"
    };
    if setup.assist_only {
        // smcroute: to-src -> to-r2 on R1, to-r1 -> lana, lanb on R2.
        let smcroutes = topo.start_smcroute(group).unwrap();
        std::mem::forget(smcroutes); // the lab kills them
    }
    let base = RouterConfig::new()
        .mode(mode)
        .dataplane(setup.plane.name())
        .intercept(intercept);
    // Static routes in full mode only. Without one, R2 routes from the upcall's arrival
    // interface and the IGMP memberships of LAN A and LAN B.
    let full = !setup.assist_only;
    let r1_cfg = topo.r1_config(&base, full.then_some(group));
    let r2_cfg = topo.r2_config(&base, (full && setup.r2_static_downstream).then_some(group));
    let routerd = bins::cargo_bin("pgm-router", "pgm-routerd").expect("build pgm-routerd");
    let routerd = Daemon::new(routerd).rust_log("info,pgm_routerd=debug");
    let [_r1, _r2] = topo
        .start_routers(&routerd, &r1_cfg, &r2_cfg)
        .unwrap_or_else(|e| panic!("{e:#}"));

    let cap_src = topo.lab.capture_pgm(&topo.source.ns, "eth0").unwrap();
    let cap_r2up = topo.lab.capture_pgm(&topo.r2.ns, "to-r1").unwrap();
    let cap_lana = topo.lab.capture_pgm(&topo.receivers[0].ns, "eth0").unwrap();
    let cap_lanb = topo.lab.capture_pgm(&topo.r2.ns, "lanb").unwrap();

    const COUNT: usize = 3000;
    let transfer = Transfer {
        pgm: &pgm,
        group,
        count: COUNT,
        size: 1000,
    };
    // Loss starts once every receiver has the session: a receiver whose very first ODATA is
    // lost starts its window after it and never asks for it (no OPT_JOIN).
    let run = transfer
        .start(
            &topo.lab,
            &topo.receivers,
            &topo.source,
            (1_000_000, 8, 15),
            &[],
        )
        .expect("start the transfer");
    let loss = topo
        .lab
        .add_loss(
            &topo.r2.ns,
            &LossSpec::egress("lana", 5).only(Selector::Pgm),
        )
        .expect("loss rule");
    run.wait(Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{e:#}\nR2 log:\n{}", _r2.stderr().unwrap_or_default()));
    let dropped = loss.counters().unwrap().dropped;
    assert!(dropped > 0, "the loss rule dropped nothing");

    let m1 = admin::get(&topo.r1.ns, ADMIN, "/metrics").expect("R1's metrics");
    let m2 = admin::get(&topo.r2.ns, ADMIN, "/metrics").expect("R2's metrics");
    let state2 = admin::get(&topo.r2.ns, ADMIN, "/api/v1/state").expect("R2's state");
    let traffic2 = admin::get(&topo.r2.ns, ADMIN, "/api/v1/traffic").expect("R2's traffic");
    let src_pkts = stop(cap_src);
    let up_pkts = stop(cap_r2up);
    let lana_pkts = stop(cap_lana);
    let lanb_pkts = stop(cap_lanb);
    eprintln!("R1 metrics:\n{m1}\nR2 metrics:\n{m2}\nR2 state: {state2}\nR2 traffic: {traffic2}");

    // Every route and group change the routers made went into the kernel as asked.
    for m in [&m1, &m2] {
        assert_eq!(
            metric(m, "pgm_router_dataplane_errors_total", &[]),
            0,
            "{m}"
        );
    }

    // The receivers NAK R2, R2 NAKs R1, R1 NAKs the source.
    let r2_lana = topo.r2_lan_a().addr;
    let r2_up = topo.r2.upstream.addr;
    let r1_down = topo.r1.downstream[0].addr;
    let r1_up = topo.r1.upstream.addr;
    let naks_to_r2 = count(&lana_pkts, |f| f.dst == r2_lana && f.is(PacketType::Nak));
    assert!(naks_to_r2 > 0, "no receiver NAKed R2");
    // Once R2's first SPM is on LAN A, receivers NAK R2 only. (Before it, with a route
    // resolved on the first ODATA, a receiver may NAK the ODATA source directly.)
    let first_spm = lana_pkts
        .iter()
        .position(|f| f.is(PacketType::Spm))
        .expect("an SPM on LAN A");
    let direct: Vec<usize> = lana_pkts
        .iter()
        .enumerate()
        .filter(|(_, f)| f.dst == src && f.is(PacketType::Nak))
        .map(|(i, _)| i)
        .collect();
    assert!(
        direct.iter().all(|&i| i < first_spm),
        "receivers NAKed the source directly after R2's SPM: {direct:?} (first SPM {first_spm})"
    );
    let naks_r2_r1 = count(&up_pkts, |f| {
        f.src == r2_up && f.dst == r1_down && f.is(PacketType::Nak)
    });
    assert!(naks_r2_r1 > 0, "R2 did not NAK R1");
    assert!(metric(&m2, "pgm_router_naks_received_total", &[]) > 0);
    assert!(metric(&m2, "pgm_router_naks_forwarded_total", &[]) > 0);
    assert!(metric(&m1, "pgm_router_naks_received_total", &[]) > 0);
    assert!(
        metric(
            &m2,
            "pgm_router_received_packets_total",
            &[("interface", "lana"), ("type", "nak")]
        ) > 0
    );
    assert!(
        metric(
            &m2,
            "pgm_router_sent_packets_total",
            &[("interface", "to-r1"), ("type", "nak")]
        ) > 0
    );
    let naks_at_src = naked_sqns(&src_pkts, |f| f.dst == src);
    assert!(
        src_pkts
            .iter()
            .any(|f| f.src == r1_up && f.dst == src && f.is(PacketType::Nak)),
        "R1 did not NAK the source"
    );

    // R2 confirms on LAN A (NCFs are never forwarded, so every NCF there is R2's) and sends
    // the NCFs counted in its metrics.
    let ncfs_lana = count(&lana_pkts, |f| f.is(PacketType::Ncf));
    assert!(ncfs_lana > 0, "no NCF on LAN A");
    assert!(
        metric(
            &m2,
            "pgm_router_sent_packets_total",
            &[("interface", "lana"), ("type", "ncf")]
        ) > 0
    );
    assert!(metric(&m2, "pgm_router_ncfs_sent_total", &[]) > 0);

    // RDATA for LAN A losses never leaves on LAN B: any RDATA there repairs a sequence
    // number that rcv3 itself NAKed (the kernel drops the first few ODATA of an (S,G) while
    // its MFC entry is being resolved, on both LANs).
    let rdata_lanb = data_sqns(&lanb_pkts, PacketType::Rdata).count();
    let leaked = unrequested_rdata(&lanb_pkts);
    assert!(
        leaked.is_empty(),
        "RDATA for LAN A's losses leaked onto LAN B: {leaked:?}"
    );
    let rdata_lana = count(&lana_pkts, |f| f.is(PacketType::Rdata));
    assert!(
        rdata_lana > rdata_lanb * 5,
        "{rdata_lana} RDATA on LAN A, {rdata_lanb} on LAN B"
    );
    assert!(count(&lanb_pkts, |f| f.is(PacketType::Odata)) >= COUNT * 95 / 100);
    assert!(metric(&m2, "pgm_router_rdata_forwarded_total", &[]) > 0);

    // NAKs at the source per lost sequence number. A loss on LAN A is an ODATA that never
    // reached it, or an RDATA sent towards it that never arrived (which the receivers NAK
    // again): count both.
    let sent = odata_sqns(&src_pkts);
    let seen_lana = odata_sqns(&lana_pkts);
    let lost_odata = sent.difference(&seen_lana).count();
    // The loss rule's drop count: ODATA and RDATA lost on LAN A (each needs a NAK) plus the
    // few NCFs, SPMs and POLLs it hit; an upper bound of the losses that need repair.
    // ODATA missing on LAN B too was dropped by R2's kernel while the (S,G) entry was being
    // resolved, before the loss rule started: every receiver NAKs those.
    let unresolved = sent.difference(&odata_sqns(&lanb_pkts)).count();
    let lost = usize::try_from(dropped).unwrap() + unresolved;
    let ratio = naks_at_src.len() as f64 / lost as f64;
    eprintln!(
        "{tag}: {lost_odata} ODATA lost on LAN A, {dropped} PGM packets dropped there, \
         {unresolved} before the MFC entry, {} NAKed \
         sequence numbers at the source ({ratio:.3} per loss, {:.3} per lost ODATA), \
         {naks_to_r2} NAKs to R2, {naks_r2_r1} NAKs R2->R1, {ncfs_lana} NCFs on LAN A",
        naks_at_src.len(),
        naks_at_src.len() as f64 / lost_odata.max(1) as f64
    );
    assert!(
        ratio <= 1.1,
        "{ratio:.3} NAKs per lost sequence number at the source"
    );

    // Admin API: the state names the upstream neighbour and interface; clearing works.
    assert!(
        state2.contains(&format!("\"upstream_neighbour\":\"{r1_down}\"")),
        "{state2}"
    );
    assert!(
        state2.contains("\"upstream_interface\":\"to-r1\""),
        "{state2}"
    );
    assert!(traffic2.contains("\"lana\""), "{traffic2}");
    admin::post(&topo.r2.ns, ADMIN, "/api/v1/clear/repair-state").expect("clear R2's repair state");
    admin::post(&topo.r2.ns, ADMIN, "/api/v1/clear/counters").expect("clear R2's counters");
    let m2 = admin::get(&topo.r2.ns, ADMIN, "/metrics").expect("R2's metrics");
    assert_eq!(metric(&m2, "pgm_router_naks_received_total", &[]), 0);
    assert_eq!(metric(&m2, "pgm_router_repair_states", &[]), 0);
}

on_each_plane!(static_routes, |plane| scenario(
    "static",
    Setup {
        plane,
        intercept: "router-alert",
        r2_static_downstream: true,
        assist_only: false,
    },
));

on_each_plane!(igmp_learned_routes, |plane| scenario(
    "igmp",
    Setup {
        plane,
        intercept: "nftables",
        r2_static_downstream: false,
        assist_only: false,
    },
));

/// Beside smcroute, which owns the kernel's multicast routing: only the mroute plane can.
#[test]
#[cfg_attr(
    not(pgm_mroute),
    ignore = "needs CONFIG_IP_MROUTE (kernel multicast routing, owned by smcroute here)"
)]
fn assist_only_beside_smcroute() {
    if lab::skip_without_root("assist_only_beside_smcroute") {
        return;
    }
    Plane::Mroute.check_kernel();
    scenario(
        "assist",
        Setup {
            plane: Plane::Mroute,
            intercept: "router-alert",
            r2_static_downstream: true,
            assist_only: true,
        },
    );
}
