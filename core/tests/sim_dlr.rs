//! Seeded simulations with a Designated Local Repairer (§9.5), in both roles:
//!
//! ```text
//! upstream DLR:  source --seg0-- R1 --transit LAN (R1, R2, DLR)-- R2 --LAN-- rcv1, rcv2
//! off-tree DLR:  source --seg0-- R1 --seg1-- R2 --LAN-- rcv1, rcv2
//!                                             \--DLR segment-- DLR
//! ```
//!
//! Loss is on R2's link to the receivers only. Invariants: every receiver completes; the
//! repairs come from the DLR once it is known, so the source sends (almost) no RDATA and
//! receives NNAKs; and when the DLR stops mid-run, repair still succeeds through the source.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use pgm_core::proto::network_element::{IfIndex, NeConfig, NeInterface, NetworkElement};
use pgm_core::proto::receiver::{EndReason, Event, Receiver, ReceiverConfig};
use pgm_core::proto::repairer::{DlrConfig, Repairer};
use pgm_core::proto::source::{Source, SourceConfig};
use pgm_core::sim::{Engine, LinkModel, SegmentId, Sim, SimIface, SimRoute};
use pgm_core::wire::Gsi;

const GROUP: IpAddr = IpAddr::V4(Ipv4Addr::new(239, 192, 0, 1));
const MESSAGES: usize = 1500;

fn ip(c: u8, d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, c, d))
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Role {
    Upstream,
    OffTree,
}

struct Run {
    sim: Sim,
    source: usize,
    dlr: usize,
    receivers: [usize; 2],
    finished: bool,
}

fn ne(ifs: &[SimIface], seed: u64, poll: bool) -> NetworkElement {
    let mut c = NeConfig::new(
        ifs.iter()
            .map(|f| NeInterface {
                index: f.index,
                addr: f.addr,
            })
            .collect(),
    );
    c.rng_seed = seed;
    c.poll_ivl = poll.then(|| Duration::from_millis(200));
    c.poll_bo_ivl = Duration::from_millis(20);
    NetworkElement::new(c)
}

fn run(seed: u64, role: Role, loss: f64, stop_dlr_at: Option<Duration>) -> Run {
    #[expect(clippy::disallowed_methods, reason = "the simulation's epoch")]
    let t0 = Instant::now();
    let mut sim = Sim::new(seed, t0, LinkModel::default());
    let seg0 = SegmentId(0);
    let seg1 = sim.add_segment();
    let lan = sim.add_segment();
    let dlr_seg = if role == Role::OffTree {
        sim.add_segment()
    } else {
        seg1
    };
    let src_addr = ip(1, 2);
    let mut cfg = SourceConfig::new(Gsi([1, 2, 3, 4, 5, 6]), 4000, 7500, GROUP, src_addr);
    cfg.txw_max_rte = 2_000_000;
    cfg.late_join = true;
    let msgs: Vec<Vec<u8>> = (0..MESSAGES)
        .map(|i| (0..(1 + (i * 53) % 1300)).map(|b| (b ^ i) as u8).collect())
        .collect();
    let source = sim.add_source_at(seg0, src_addr, Source::new(cfg, t0), msgs, true);
    let iface = |segment, addr, i| SimIface {
        segment,
        addr,
        index: IfIndex(i),
    };
    let r1_ifs = vec![iface(seg0, ip(1, 1), 1), iface(seg1, ip(2, 1), 2)];
    sim.add_router(
        r1_ifs.clone(),
        Some(ne(&r1_ifs, seed, false)),
        vec![SimRoute {
            source: src_addr,
            group: GROUP,
            upstream: IfIndex(1),
            downstream: vec![IfIndex(2)],
        }],
    );
    let mut r2_ifs = vec![iface(seg1, ip(2, 2), 1), iface(lan, ip(3, 1), 2)];
    let mut downstream = vec![IfIndex(2)];
    if role == Role::OffTree {
        r2_ifs.push(iface(dlr_seg, ip(5, 1), 3));
        downstream.push(IfIndex(3));
    }
    let r2 = sim.add_router(
        r2_ifs.clone(),
        Some(ne(&r2_ifs, seed + 1, role == Role::OffTree)),
        vec![SimRoute {
            source: src_addr,
            group: GROUP,
            upstream: IfIndex(1),
            downstream,
        }],
    );
    let dlr_addr = if role == Role::OffTree {
        ip(5, 9)
    } else {
        ip(2, 9)
    };
    let mut dc = DlrConfig::new(ReceiverConfig::new(7500, GROUP), dlr_addr);
    dc.receiver.rng_seed = seed + 2;
    dc.redirect_holdoff = Duration::from_millis(200);
    let dlr = sim.add_repairer_at(dlr_seg, dlr_addr, Repairer::new(dc));
    let mut receivers = [0; 2];
    for (k, a) in [ip(3, 11), ip(3, 12)].into_iter().enumerate() {
        let mut rc = ReceiverConfig::new(7500, GROUP);
        rc.rng_seed = seed * 11 + k as u64;
        receivers[k] = sim.add_receiver_at(lan, a, Receiver::new(rc));
        sim.set_link(
            r2,
            receivers[k],
            LinkModel {
                loss,
                ..LinkModel::default()
            },
        );
    }
    let rcvs = receivers;
    let done = move |sim: &Sim| {
        rcvs.iter().all(|&r| match &sim.nodes()[r].engine {
            Engine::Receiver { events, .. } => {
                events.iter().any(|e| matches!(e, Event::SessionEnd { .. }))
            }
            _ => true,
        })
    };
    let deadline = t0 + Duration::from_secs(300);
    let mut finished = false;
    if let Some(at) = stop_dlr_at {
        finished = sim.run_until(t0 + at, done);
        if !finished {
            // The DLR stops: it neither hears nor answers anything any more.
            let dead = LinkModel {
                loss: 1.0,
                ..LinkModel::default()
            };
            for n in 0..sim.nodes().len() {
                sim.set_link(dlr, n, dead);
                sim.set_link(n, dlr, dead);
            }
        }
    }
    if !finished {
        finished = sim.run_until(deadline, done);
    }
    Run {
        sim,
        source,
        dlr,
        receivers,
        finished,
    }
}

fn check(r: &Run) -> Result<(u64, u64, u64, u64), String> {
    if !r.finished || r.sim.counters.stalled {
        return Err("did not finish".into());
    }
    for &k in &r.receivers {
        let Engine::Receiver { events, .. } = &r.sim.nodes()[k].engine else {
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
        if data != MESSAGES || lost || !fin {
            return Err(format!(
                "receiver {k}: {data}/{MESSAGES}, loss {lost}, fin {fin}"
            ));
        }
    }
    let Engine::Source { source, .. } = &r.sim.nodes()[r.source].engine else {
        return Err("source".into());
    };
    let Engine::Repairer { dlr, .. } = &r.sim.nodes()[r.dlr].engine else {
        return Err("dlr".into());
    };
    Ok((
        source.stats().rdata_sent,
        source.stats().nnaks_received,
        dlr.stats().repairs_served,
        dlr.stats().nnaks_sent,
    ))
}

fn invariants(role: Role) {
    let mut failures = Vec::new();
    for seed in 1..=8u64 {
        let loss = [0.05, 0.1][(seed % 2) as usize];
        match check(&run(seed, role, loss, None)) {
            Err(e) => failures.push(format!("seed {seed}: {e}")),
            Ok((src_rdata, src_nnaks, served, _)) => {
                // Repairs come from the DLR: the source only repairs what was lost before the
                // DLR became known (its first announcement or poll reply).
                if served == 0 || src_rdata * 10 > served {
                    failures.push(format!(
                        "seed {seed}: DLR served {served}, source sent {src_rdata} RDATA"
                    ));
                }
                //= https://www.rfc-editor.org/rfc/rfc3208#section-9.5.2.1
                //= type=test
                //# an upstream DLR that receives redirected NAKs for which it
                //# has RDATA MUST send a NULL NAK to provide flow control to the
                //# original source.
                if src_nnaks == 0 {
                    failures.push(format!("seed {seed}: no NNAK reached the source"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{role:?}:\n{}", failures.join("\n"));
}

fn dlr_stopped(role: Role) {
    for seed in 21..=24u64 {
        let r = run(seed, role, 0.1, Some(Duration::from_millis(1500)));
        let (src_rdata, _, served, _) =
            check(&r).unwrap_or_else(|e| panic!("{role:?} seed {seed}: {e}"));
        assert!(served > 0, "the DLR repaired before it stopped");
        assert!(src_rdata > 0, "the source took over after the DLR stopped");
    }
}

#[test]
fn upstream_dlr_repairs_locally() {
    invariants(Role::Upstream);
}

#[test]
fn off_tree_dlr_repairs_locally() {
    invariants(Role::OffTree);
}

#[test]
fn upstream_dlr_stopped_mid_run_falls_back_to_the_source() {
    dlr_stopped(Role::Upstream);
}

#[test]
fn off_tree_dlr_stopped_mid_run_falls_back_to_the_source() {
    dlr_stopped(Role::OffTree);
}
