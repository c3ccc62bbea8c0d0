//! Loss injection with nftables on the reference topology.
//!
//! - 30% random loss on R2's LAN A egress drops some datagrams for both LAN A receivers (the
//!   same ones: the bridge floods one copy), none for LAN B, and the rule's counters account for
//!   every datagram. The routers forward by netdev rules, so the egress hook (not the IP
//!   stack's forward hook) is where their copies pass.
//! - A PGM-type selector (`@th,32,8`) drops only packets of that PGM type.

use std::collections::BTreeSet;
use std::net::SocketAddrV4;
use std::time::Duration;

use pgm_netns_tests::lab::{self, LossSpec, RefTopology, Selector, mcast};
use socket2::{Domain, Protocol, Socket, Type};

const PORT: u16 = 5001;

#[test]
fn loss_on_lan_a_egress_is_counted() {
    const COUNT: u32 = 300;
    if lab::skip_without_root("loss_on_lan_a_egress_is_counted") {
        return;
    }
    let topo = RefTopology::build("loss").expect("build the reference topology");
    let group = topo.group(1);
    let _routers = topo
        .start_baseline_forwarding(group)
        .expect("forwarding rules");
    let rule = topo
        .lab
        .add_loss(
            &topo.r2.ns,
            &LossSpec::egress(&topo.r2_lan_a().name, 30).only(Selector::Udp(PORT)),
        )
        .expect("install the loss rule");

    let receivers = mcast::spawn_receivers(
        &topo.receivers,
        group,
        PORT,
        COUNT as usize,
        Duration::from_secs(2),
    )
    .expect("start receivers");
    mcast::send_seqs(
        &topo.source,
        group,
        PORT,
        8,
        COUNT,
        Duration::from_millis(1),
    )
    .expect("send");
    let got = receivers.join().expect("receive");
    let counters = rule.counters().expect("read counters");
    println!(
        "30% loss on r2/{}: {counters:?}; received rcv1 {} rcv2 {} rcv3 {} of {COUNT}",
        topo.r2_lan_a().name,
        got[0].len(),
        got[1].len(),
        got[2].len()
    );

    assert_eq!(counters.matched, u64::from(COUNT));
    // 30% of 300 is 90 (standard deviation about 8): anything in 30..=150 is not flaky.
    assert!(
        (30..=150).contains(&counters.dropped),
        "dropped {}",
        counters.dropped
    );
    assert_eq!(
        got[0], got[1],
        "both LAN A receivers see the same flooded copies"
    );
    assert_eq!(got[0].len() as u64, counters.passed());
    assert_eq!(got[2].len() as u32, COUNT, "LAN B is not affected");
}

/// Sends raw PGM/IP packets (just the fixed header bytes that matter here: ports, type) and
/// checks that a `PgmType` selector drops only that type.
#[test]
fn pgm_type_selector_matches_the_type_byte() {
    const EACH: u32 = 40;
    const SPM: u8 = 0x00;
    const ODATA: u8 = 0x04;
    if lab::skip_without_root("pgm_type_selector_matches_the_type_byte") {
        return;
    }
    let topo = RefTopology::build("losstype").expect("build the reference topology");
    let group = topo.group(2);
    let _routers = topo
        .start_baseline_forwarding(group)
        .expect("forwarding rules");
    let rule = topo
        .lab
        .add_loss(
            &topo.r2.ns,
            &LossSpec::egress(&topo.r2_lan_b().name, 100).only(Selector::PgmType(SPM)),
        )
        .expect("install the loss rule");

    let rcv3 = topo.lan_b_receiver().clone();
    let local = rcv3.addr();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let receiver = rcv3.ns.spawn_thread(move || {
        let sock = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(113))).unwrap();
        sock.join_multicast_v4(&group, &local).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        ready_tx.send(()).unwrap();
        let mut types = Vec::new();
        let mut buf = [0u8; 2048];
        while let Ok(len) = std::io::Read::read(&mut &sock, &mut buf) {
            let ihl = usize::from(buf[0] & 0x0f) * 4;
            if len > ihl + 4 && buf[16..20] == group.octets() {
                types.push(buf[ihl + 4]);
            }
        }
        types
    });
    ready_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("receiver ready");

    let src = topo.source.addr();
    topo.source
        .ns
        .run(|| {
            let sock = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(113))).unwrap();
            sock.set_multicast_if_v4(&src).unwrap();
            sock.set_multicast_ttl_v4(8).unwrap();
            let dst = SocketAddrV4::new(group, 0).into();
            for _ in 0..EACH {
                for pgm_type in [SPM, ODATA] {
                    // sport, dport, type, options, checksum, GSI...: only the type matters here.
                    let mut pkt = [0u8; 24];
                    pkt[..4].copy_from_slice(&[0x12, 0x34, 0x0b, 0xf0]);
                    pkt[4] = pgm_type;
                    sock.send_to(&pkt, &dst).unwrap();
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        })
        .expect("send");
    let types = receiver.join().unwrap().expect("enter rcv3");
    let counters = rule.counters().expect("read counters");
    println!(
        "SPM-only loss on r2/lanb: {counters:?}; rcv3 got types {:?}",
        { types.iter().collect::<BTreeSet<_>>() }
    );
    assert_eq!(counters.matched, u64::from(EACH));
    assert_eq!(counters.dropped, u64::from(EACH));
    assert_eq!(types, vec![ODATA; EACH as usize]);
}
