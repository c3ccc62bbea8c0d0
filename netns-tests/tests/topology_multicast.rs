//! Baseline multicast on the reference topology: with static `(S,G)` routes on R1 and R2
//! (netdev forwarding rules on any kernel, or smcroute and the kernel's multicast routing),
//! plain UDP multicast from the source reaches all three receivers, two routed hops away (TTL
//! decremented twice).

use std::time::Duration;

use pgm_netns_tests::lab::{self, RefTopology, mcast, tshark_fields};
use pgm_netns_tests::on_each_plane;
use pgm_netns_tests::plane::Plane;

const PORT: u16 = 5000;
const COUNT: u32 = 50;
const TTL: u32 = 8;

on_each_plane!(plain_forwarding_reaches_every_receiver, |plane| forwarding(
    plane
));

fn forwarding(plane: Plane) {
    let topo = RefTopology::build(&format!("mc{plane}")).expect("build the reference topology");
    let group = topo.group(1);
    let mut forwarding = Vec::new();
    let mut smcroutes = Vec::new();
    match plane {
        Plane::Netdev => {
            forwarding.extend(
                topo.start_baseline_forwarding(group)
                    .expect("forwarding rules"),
            );
        }
        Plane::Mroute => {
            smcroutes.extend(topo.start_smcroute(group).expect("start smcroute"));
            for (router, smc) in [&topo.r1, &topo.r2].into_iter().zip(&smcroutes) {
                assert!(
                    topo.lab.mc_forwarding(&router.ns, "all").unwrap(),
                    "{}",
                    router.ns
                );
                let mfc = topo.lab.mroutes(&router.ns).unwrap();
                assert_eq!(mfc.len(), 1, "{}: {mfc:?}", router.ns);
                assert!(
                    mfc[0].contains(&format!("({},{group})", topo.source.addr())),
                    "{mfc:?}"
                );
                assert!(smc.process().is_running());
            }
        }
    }

    let rcv3 = topo.lan_b_receiver();
    let capture = topo
        .lab
        .capture(
            &rcv3.ns,
            &rcv3.iface.name,
            Some(&format!("udp port {PORT}")),
        )
        .expect("start tcpdump");
    let receivers = mcast::spawn_receivers(
        &topo.receivers,
        group,
        PORT,
        COUNT as usize,
        Duration::from_secs(3),
    )
    .expect("start receivers");
    mcast::send_seqs(
        &topo.source,
        group,
        PORT,
        TTL,
        COUNT,
        Duration::from_millis(2),
    )
    .expect("send");
    let got = receivers.join().expect("receive");
    let all: Vec<u32> = (0..COUNT).collect();
    for (host, seqs) in topo.receivers.iter().zip(&got) {
        assert_eq!(seqs, &all, "{} missed datagrams", host.ns);
    }

    let pcap = capture.stop().expect("stop tcpdump");
    let rows = tshark_fields(
        &pcap,
        &format!("udp.dstport == {PORT}"),
        &["ip.src", "ip.ttl"],
    )
    .expect("decode the capture");
    assert_eq!(rows.len(), COUNT as usize, "{rows:?}");
    let hops_left = (TTL - 2).to_string();
    for row in &rows {
        assert_eq!(row, &[topo.source.addr().to_string(), hops_left.clone()]);
    }
    for f in &mut forwarding {
        assert_eq!(f.forwarded().unwrap(), u64::from(COUNT), "{}", f.ns());
    }
}

#[test]
fn igmp_snooping_on_lan_a_learns_both_receivers() {
    if lab::skip_without_root("igmp_snooping_on_lan_a_learns_both_receivers") {
        return;
    }
    let topo = RefTopology::builder("snoop")
        .lan_a_snooping(true)
        .build()
        .expect("build the reference topology");
    let group = topo.group(7);
    let _routers = topo
        .start_baseline_forwarding(group)
        .expect("forwarding rules");
    let receivers = mcast::spawn_receivers(
        &topo.receivers,
        group,
        PORT,
        COUNT as usize,
        Duration::from_secs(3),
    )
    .expect("start receivers");

    // The joins' IGMP reports populate LAN A's multicast database (nothing would with snooping
    // off), one entry per receiver port.
    // Entries of the group itself: the IPv6 solicited-node groups of the same ports appear
    // on their own schedule and must not end the wait.
    let sw = &topo.lan_a;
    let g = group.to_string();
    let has_group_on = |mdb: &str, port: &str| {
        mdb.lines().any(|l| {
            l.split_whitespace().any(|w| w == port) && l.split_whitespace().any(|w| w == g)
        })
    };
    let mut mdb = String::new();
    for _ in 0..250 {
        let out = topo.lab.exec(&sw.ns, &["bridge", "mdb", "show"]).unwrap();
        mdb = String::from_utf8_lossy(&out.stdout).into_owned();
        if ["p-rcv1", "p-rcv2"].iter().all(|p| has_group_on(&mdb, p)) {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        has_group_on(&mdb, "p-rcv1") && has_group_on(&mdb, "p-rcv2"),
        "{g} on both receiver ports: {mdb}"
    );

    mcast::send_seqs(
        &topo.source,
        group,
        PORT,
        TTL,
        COUNT,
        Duration::from_millis(2),
    )
    .expect("send");
    let got = receivers.join().expect("receive");
    for (host, seqs) in topo.receivers.iter().zip(&got) {
        assert_eq!(seqs.len(), COUNT as usize, "{} missed datagrams", host.ns);
    }
}
