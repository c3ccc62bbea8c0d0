//! Seeded multi-hop simulations with network elements (the reference topology of the router
//! issue):
//!
//! ```text
//! source --seg0-- R1 --seg1-- R2 --LAN A-- rcv1, rcv2   (lossy: R2 -> LAN A receivers)
//!                              \--LAN B-- rcv3
//! ```
//!
//! Invariants with PGM Router Assist on R1 and R2: every receiver delivers everything in
//! order; receivers NAK R2 and R2 NAKs R1 (SPM_PATH rewritten); R2 sends the NCFs on LAN A;
//! at 5% loss at most 1.1 NAKs reach the source per lost sequence number on average; RDATA
//! never goes onto LAN B. The same topology with plain multicast routers is run as a
//! contrast, and must show what assist removes (RDATA flooding LAN B).

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use pgm_core::proto::network_element::{IfIndex, NeConfig, NeInterface, NetworkElement};
use pgm_core::proto::receiver::{EndReason, Event, Receiver, ReceiverConfig};
use pgm_core::proto::source::{Source, SourceConfig};
use pgm_core::sim::{Engine, LinkModel, SegmentId, Sim, SimIface, SimRoute};
use pgm_core::wire::{Gsi, PacketType, Tsi};

const GROUP: IpAddr = IpAddr::V4(Ipv4Addr::new(239, 192, 0, 1));

fn ip(c: u8, d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, c, d))
}

struct Outcome {
    sim: Sim,
    source: usize,
    r1: usize,
    r2: usize,
    receivers: [usize; 3],
    lan_a: SegmentId,
    lan_b: SegmentId,
    finished: bool,
}

fn build_and_run(seed: u64, loss: f64, assist: bool, messages: usize) -> Outcome {
    build_and_run_cc(seed, loss, assist, messages, false)
}

/// As [`build_and_run`], the receivers taking part in PGMCC if `pgmcc`.
fn build_and_run_cc(seed: u64, loss: f64, assist: bool, messages: usize, pgmcc: bool) -> Outcome {
    #[expect(clippy::disallowed_methods, reason = "the simulation's epoch")]
    let t0 = Instant::now();
    let mut sim = Sim::new(seed, t0, LinkModel::default());
    let seg0 = SegmentId(0);
    let seg1 = sim.add_segment();
    let lan_a = sim.add_segment();
    let lan_b = sim.add_segment();
    let src_addr = ip(1, 2);
    let mut cfg = SourceConfig::new(Gsi([1, 2, 3, 4, 5, 6]), 4000, 7500, GROUP, src_addr);
    cfg.txw_max_rte = 2_000_000;
    cfg.late_join = true;
    let msgs: Vec<Vec<u8>> = (0..messages)
        .map(|i| (0..(1 + (i * 37) % 1800)).map(|b| (b ^ i) as u8).collect())
        .collect();
    let source = sim.add_source_at(seg0, src_addr, Source::new(cfg, t0), msgs, true);
    let iface = |segment, addr, i| SimIface {
        segment,
        addr,
        index: IfIndex(i),
    };
    let ne = |ifs: &[SimIface]| {
        assist.then(|| {
            let mut c = NeConfig::new(
                ifs.iter()
                    .map(|f| NeInterface {
                        index: f.index,
                        addr: f.addr,
                    })
                    .collect(),
            );
            c.rng_seed = seed;
            c.poll_ivl = None;
            NetworkElement::new(c)
        })
    };
    let r1_ifs = vec![iface(seg0, ip(1, 1), 1), iface(seg1, ip(2, 1), 2)];
    let r1 = sim.add_router(
        r1_ifs.clone(),
        ne(&r1_ifs),
        vec![SimRoute {
            source: src_addr,
            group: GROUP,
            upstream: IfIndex(1),
            downstream: vec![IfIndex(2)],
        }],
    );
    let r2_ifs = vec![
        iface(seg1, ip(2, 2), 1),
        iface(lan_a, ip(3, 1), 2),
        iface(lan_b, ip(4, 1), 3),
    ];
    let r2 = sim.add_router(
        r2_ifs.clone(),
        ne(&r2_ifs),
        vec![SimRoute {
            source: src_addr,
            group: GROUP,
            upstream: IfIndex(1),
            downstream: vec![IfIndex(2), IfIndex(3)],
        }],
    );
    let mut receivers = [0; 3];
    for (k, (seg, addr)) in [(lan_a, ip(3, 11)), (lan_a, ip(3, 12)), (lan_b, ip(4, 13))]
        .into_iter()
        .enumerate()
    {
        let mut rc = ReceiverConfig::new(7500, GROUP);
        rc.rng_seed = seed * 7 + k as u64;
        rc.local_addr = pgmcc.then_some(addr);
        receivers[k] = sim.add_receiver_at(seg, addr, Receiver::new(rc));
    }
    // Random loss on R2's LAN A link only.
    let lossy = LinkModel {
        loss,
        ..LinkModel::default()
    };
    sim.set_link(r2, receivers[0], lossy);
    sim.set_link(r2, receivers[1], lossy);
    let rcvs = receivers;
    let finished = sim.run_until(t0 + Duration::from_secs(300), |sim| {
        rcvs.iter().all(|&r| match &sim.nodes()[r].engine {
            Engine::Receiver { events, .. } => {
                events.iter().any(|e| matches!(e, Event::SessionEnd { .. }))
            }
            _ => true,
        })
    });
    Outcome {
        sim,
        source,
        r1,
        r2,
        receivers,
        lan_a,
        lan_b,
        finished,
    }
}

fn check_complete(o: &Outcome, messages: usize) -> Result<(), String> {
    if !o.finished || o.sim.counters.stalled {
        return Err("did not finish".into());
    }
    for &r in &o.receivers {
        let Engine::Receiver { events, .. } = &o.sim.nodes()[r].engine else {
            continue;
        };
        let data = events
            .iter()
            .filter(|e| matches!(e, Event::Data { .. }))
            .count();
        let lost = events.iter().any(|e| matches!(e, Event::Loss { .. }));
        let fin = events.iter().any(|e| {
            matches!(
                e,
                Event::SessionEnd {
                    reason: EndReason::Fin,
                    ..
                }
            )
        });
        if data != messages || lost || !fin {
            return Err(format!(
                "receiver {r}: {data}/{messages} messages, loss {lost}, fin {fin}"
            ));
        }
    }
    Ok(())
}

fn count(o: &Outcome, key: (SegmentId, PacketType)) -> u64 {
    o.sim.counters.on_segment.get(&key).copied().unwrap_or(0)
}

fn delivered(o: &Outcome, node: usize, ty: PacketType) -> u64 {
    o.sim
        .counters
        .delivered
        .get(&(node, ty))
        .copied()
        .unwrap_or(0)
}

#[test]
fn router_assist_invariants_hold_over_seeds() {
    let messages = 400;
    let mut naks_at_source = 0u64;
    let mut lost_sqns = 0u64;
    let mut failures = Vec::new();
    for seed in 1..=24u64 {
        let loss = [0.05, 0.1, 0.2][(seed % 3) as usize];
        let o = build_and_run(seed, loss, true, messages);
        let mut check = || -> Result<(), String> {
            check_complete(&o, messages)?;
            let Engine::Source { source, .. } = &o.sim.nodes()[o.source].engine else {
                return Err("no source".into());
            };
            let st = source.stats();
            //= https://www.rfc-editor.org/rfc/rfc3208#section-7.8
            //= type=test
            //# Network elements MUST then use this list of interfaces to constrain the
            //# forwarding of the corresponding RDATA packet only to those interfaces in
            //# the list.
            if count(&o, (o.lan_b, PacketType::Rdata)) != 0 {
                return Err("RDATA went onto LAN B".into());
            }
            if count(&o, (o.lan_a, PacketType::Rdata)) == 0 {
                return Err("no RDATA on LAN A".into());
            }
            // Receivers NAK R2 (SPM_PATH was rewritten on each LAN), and R2 NAKs R1.
            let tsi = Tsi::new(Gsi([1, 2, 3, 4, 5, 6]), 4000);
            for (&r, want) in o.receivers.iter().zip([ip(3, 1), ip(3, 1), ip(4, 1)]) {
                let Engine::Receiver { receiver, .. } = &o.sim.nodes()[r].engine else {
                    continue;
                };
                if receiver.nak_target(&tsi) != Some(want) {
                    return Err(format!(
                        "receiver {r} NAKs {:?}, not R2's {want}",
                        receiver.nak_target(&tsi)
                    ));
                }
            }
            if delivered(&o, o.r2, PacketType::Nak) == 0 {
                return Err("no receiver NAKed R2".into());
            }
            if delivered(&o, o.r1, PacketType::Nak) == 0 {
                return Err("R2 did not NAK R1".into());
            }
            // R2 confirms NAKs on LAN A itself.
            if count(&o, (o.lan_a, PacketType::Ncf)) == 0 {
                return Err("no NCF from R2 on LAN A".into());
            }
            if loss == 0.05 {
                naks_at_source += st.nak_sqns_received;
                lost_sqns += o.sim.counters.lost_odata.len() as u64;
            }
            Ok(())
        };
        if let Err(e) = check() {
            failures.push(format!("seed {seed} loss {loss}: {e}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    let ratio = naks_at_source as f64 / lost_sqns.max(1) as f64;
    eprintln!(
        "5% loss: {naks_at_source} sequence numbers NAKed at the source for {lost_sqns} lost: {ratio:.3}"
    );
    assert!(lost_sqns > 50, "enough losses to measure: {lost_sqns}");
    assert!(
        ratio <= 1.1,
        "NAKs at the source per lost sqn at 5% loss: {ratio:.3}"
    );
}

#[test]
fn plain_multicast_routing_floods_repairs_and_the_source_takes_every_nak() {
    // The contrast: no assist. Repairs flood LAN B and every receiver's NAK reaches the source.
    let o = build_and_run(5, 0.05, false, 400);
    check_complete(&o, 400).expect("PGM end to end still completes");
    assert!(
        count(&o, (o.lan_b, PacketType::Rdata)) > 0,
        "RDATA floods LAN B"
    );
    assert_eq!(
        delivered(&o, o.r2, PacketType::Nak),
        0,
        "nobody NAKs the routers"
    );
    assert!(delivered(&o, o.source, PacketType::Nak) > 0);
}

#[test]
fn pgmcc_through_router_assist_elects_a_lossy_lan_receiver_and_everyone_completes() {
    // PGMCC across two network elements: NAKs (with OPT_PGMCC_FEEDBACK, forwarded with
    // their options) and ACKs (unicast to the source) reach the source; the acker is a
    // receiver of the lossy LAN A, and every receiver still gets everything.
    for seed in 1..=4u64 {
        let o = build_and_run_cc(seed, 0.05, true, 600, true);
        if let Err(e) = check_complete(&o, 600) {
            let Engine::Source { source, .. } = &o.sim.nodes()[o.source].engine else {
                panic!("no source");
            };
            let rs: Vec<String> = o
                .receivers
                .iter()
                .map(|&r| match &o.sim.nodes()[r].engine {
                    Engine::Receiver { receiver, .. } => format!("{:?}", receiver.stats()),
                    _ => String::new(),
                })
                .collect();
            panic!(
                "seed {seed}: {e}; stalled {}; source {:?} {:?}; receivers {rs:?}",
                o.sim.counters.stalled,
                source.stats(),
                source.pgmcc_state()
            );
        }
        let Engine::Source { source, .. } = &o.sim.nodes()[o.source].engine else {
            panic!("no source");
        };
        let cc = source.stats().pgmcc.clone();
        let acker = source.pgmcc_state().and_then(|s| s.acker);
        assert!(
            acker == Some(ip(3, 11)) || acker == Some(ip(3, 12)),
            "seed {seed}: acker {acker:?} is not on the lossy LAN ({cc:?})"
        );
        assert!(cc.acks > 0 && cc.halvings > 0, "seed {seed}: {cc:?}");
        // R2 confirms NAKs on LAN A itself, with PGMCC as without.
        assert!(count(&o, (o.lan_a, PacketType::Ncf)) > 0);
        assert_eq!(count(&o, (o.lan_b, PacketType::Rdata)), 0, "RDATA on LAN B");
    }
}
