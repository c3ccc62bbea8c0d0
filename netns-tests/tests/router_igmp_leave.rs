//! `pgm-routerd` as the IGMP querier of a LAN, on the reference topology: R2 learns LAN A's
//! membership from IGMP only (no static route); while rcv1 and rcv2 both receive, rcv2 leaves
//! the group. R2 must ask LAN A whether members remain (group-specific queries, RFC 3376
//! §6.4.2), rcv1 answers, and rcv1 keeps receiving: it delivers the whole transfer, which
//! runs well past the 3 s a left membership lasts without an answer.

use std::time::Duration;

use pgm_netns_tests::bins;
use pgm_netns_tests::daemon::{Daemon, RouterConfig};
use pgm_netns_tests::lab::{RefTopology, tshark_fields};
use pgm_netns_tests::on_each_plane;
use pgm_netns_tests::plane::Plane;
use pgm_netns_tests::transfer::{Transfer, wait_delivered};

on_each_plane!(a_member_leaving_does_not_cut_off_the_others, |plane| leave(
    plane
));

fn leave(plane: Plane) {
    let topo = RefTopology::build(&format!("igmplv{}", &plane.name()[..1]))
        .expect("build the reference topology");
    let group = topo.group(1);
    let pgm = bins::cargo_bin("pgm-core", "pgm").expect("build pgm");
    let base = RouterConfig::new()
        .mode("full")
        .dataplane(plane.name())
        .intercept("nftables");
    // R1 routes the group statically to R2; R2 only from the upcall and IGMP.
    let r1_cfg = topo.r1_config(&base, Some(group));
    let r2_cfg = topo.r2_config(&base, None);
    let routerd = bins::cargo_bin("pgm-router", "pgm-routerd").expect("build pgm-routerd");
    let routerd = Daemon::new(routerd).rust_log("info,pgm_routerd=debug");
    let [_r1, r2] = topo
        .start_routers(&routerd, &r1_cfg, &r2_cfg)
        .unwrap_or_else(|e| panic!("{e:#}"));
    let igmp = topo
        .lab
        .capture(&topo.receivers[0].ns, "eth0", Some("igmp"))
        .expect("capture IGMP on LAN A");

    // 3000 messages at 250 kB/s of 500 B: 6 s. rcv2 stops after 500 (1 s in), closing its
    // socket: its host leaves the group.
    let transfer = Transfer {
        pgm: &pgm,
        group,
        count: 3000,
        size: 500,
    };
    let [rcv1, rcv2] = [&topo.receivers[0], &topo.receivers[1]];
    let stays = topo
        .lab
        .spawn(&rcv1.ns, &transfer.recv_args(rcv1.addr(), 10))
        .expect("spawn rcv1");
    let leaves = topo
        .lab
        .spawn(
            &rcv2.ns,
            &Transfer {
                count: 500,
                ..transfer
            }
            .recv_args(rcv2.addr(), 10),
        )
        .expect("spawn rcv2");
    std::thread::sleep(Duration::from_millis(1500));
    let sender = topo
        .lab
        .spawn(
            &topo.source.ns,
            &transfer.send_args(topo.source.addr(), 250_000, 3),
        )
        .expect("spawn the sender");
    wait_delivered(&leaves, Duration::from_secs(30)).expect("rcv2 takes its 500 messages");
    wait_delivered(&stays, Duration::from_secs(60)).unwrap_or_else(|e| {
        panic!(
            "rcv1, still a member after rcv2 left: {e:#}\nR2 log:\n{}",
            r2.stderr().unwrap_or_default()
        )
    });
    let _ = sender.wait_timeout(Duration::from_secs(20));

    // From LAN A: rcv2's leave, then R2's group-specific queries for the group (sent to the
    // group, naming it), and rcv1's report answering them.
    let pcap = igmp.stop().expect("stop the capture");
    let rows = tshark_fields(
        &pcap,
        "igmp",
        &[
            "frame.time_relative",
            "ip.src",
            "ip.dst",
            "igmp.type",
            "igmp.maddr",
        ],
    )
    .expect("decode IGMP");
    let r2_lana = topo.r2_lan_a().addr;
    let g = group.to_string();
    let query_times: Vec<f64> = rows
        .iter()
        .filter(|r| r[1] == r2_lana.to_string() && r[2] == g && r[3] == "0x11" && r[4].contains(&g))
        .filter_map(|r| r[0].parse().ok())
        .collect();
    assert!(
        query_times.len() >= 2,
        "two group-specific queries from R2 ({r2_lana}) for {g}: {rows:?}"
    );
    let first = query_times[0];
    let answered = rows.iter().any(|r| {
        r[1] == rcv1.addr().to_string()
            && r[0].parse::<f64>().is_ok_and(|t| t >= first)
            && r[3] != "0x11"
    });
    assert!(answered, "rcv1 reported after the query: {rows:?}");
    let gap = query_times[1] - first;
    assert!(
        (0.5..=2.5).contains(&gap),
        "the second query about a second after the first: {query_times:?}"
    );
}
