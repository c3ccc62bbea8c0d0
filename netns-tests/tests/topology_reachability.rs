//! The reference topology is built and unicast works end to end: every receiver reaches the
//! source and both routers (NAKs are unicast upstream), and the source reaches every receiver.

use std::time::Duration;

use pgm_netns_tests::lab::{self, RefTopology};

const PING_TIMEOUT: Duration = Duration::from_secs(5);

#[test]
fn receivers_reach_source_and_routers() {
    if lab::skip_without_root("receivers_reach_source_and_routers") {
        return;
    }
    let topo = RefTopology::build("reach").expect("build the reference topology");
    let upstream = [
        ("source", topo.source.addr()),
        ("r1", topo.r1.upstream.addr),
        ("r2", topo.r2.upstream.addr),
    ];
    for rcv in &topo.receivers {
        for (name, dst) in upstream {
            topo.lab
                .ping(&rcv.ns, dst, PING_TIMEOUT)
                .unwrap_or_else(|e| panic!("{} cannot reach {name}: {e:#}", rcv.ns));
        }
    }
    for rcv in &topo.receivers {
        topo.lab
            .ping(&topo.source.ns, rcv.addr(), PING_TIMEOUT)
            .unwrap_or_else(|e| panic!("source cannot reach {}: {e:#}", rcv.ns));
    }
}

#[test]
fn hosts_have_no_route_out_of_the_lab() {
    if lab::skip_without_root("hosts_have_no_route_out_of_the_lab") {
        return;
    }
    let topo = RefTopology::build("noroute").expect("build the reference topology");
    let b = topo.lab.block();
    for host in std::iter::once(&topo.source).chain(&topo.receivers) {
        // `ip route get` only consults the FIB: nothing is sent.
        let out = topo
            .lab
            .ip(&host.ns, &["route", "get", "198.51.100.1"])
            .err()
            .unwrap_or_else(|| panic!("{} has a route out of the lab", host.ns));
        assert!(format!("{out:#}").contains("unreachable"), "{out:#}");
        // Every address is inside the lab's block.
        assert_eq!(host.addr().octets()[..2], [10, b.octet()]);
    }
}
