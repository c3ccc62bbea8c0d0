//! The network-element engine under the driver.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use pgm_core::proto::network_element::{
    IfIndex, NeConfig, NeInterface, NeRecvMeta, NeRoute, NetworkElement,
};
use pgm_core::wire::PacketType;

use crate::driver::{Engine, OpKind, Sent, run, trace};
use crate::input::Input;
use crate::packets::{Delivery, GROUP, GROUP2, GROUP6, NE_IFACES, SRC, SRC6, World};

/// Packet types a network element meets, by weight.
const TYPES: &[(u32, PacketType)] = &[
    (6, PacketType::Spm),
    (10, PacketType::Nak),
    (3, PacketType::Nnak),
    (5, PacketType::Ncf),
    (5, PacketType::Rdata),
    (3, PacketType::Polr),
    (1, PacketType::Odata),
    (1, PacketType::Poll),
    (1, PacketType::Spmr),
];

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Timers and limits chosen by the input (the interfaces are the world's).
fn limits(inp: &mut Input<'_>, c: &mut NeConfig) {
    c.nak_rpt_ivl = inp.pick(&[ms(1), ms(500)]);
    c.nak_rpt_rte_ivl = inp.pick(&[Duration::ZERO, ms(1), ms(100)]);
    c.nak_rdata_ivl = inp.pick(&[ms(1), ms(2000)]);
    c.nak_elim_ivl = inp.pick(&[Duration::ZERO, ms(100)]);
    c.ncf_holdoff = inp.pick(&[Duration::ZERO, ms(10)]);
    c.max_tsis = inp.pick(&[1, 2, 4]);
    c.max_repair_states = inp.pick(&[1, 16, 512]);
    c.tsi_expiry = inp.pick(&[ms(100), ms(60_000)]);
    c.poll_ivl = inp.pick(&[None, Some(ms(100)), Some(ms(30_000))]);
    c.poll_bo_ivl = inp.pick(&[ms(1), ms(1000)]);
    c.poll_mask_bits = inp.pick(&[0, 1, 40]);
    c.dlr_discovery = inp.bool();
}

fn config(inp: &mut Input<'_>) -> NeConfig {
    let n = inp.pick(&[3, 4]);
    let mut c = NeConfig::new(
        NE_IFACES[..n]
            .iter()
            .map(|&(i, addr)| NeInterface {
                index: IfIndex(i),
                addr,
            })
            .collect(),
    );
    limits(inp, &mut c);
    c.rng_seed = u64::from(inp.u8());
    c
}

struct Ne {
    ne: NetworkElement,
}

impl Ne {
    fn iface_addr(&self, i: IfIndex) -> Option<IpAddr> {
        self.ne
            .config()
            .interfaces
            .iter()
            .find(|f| f.index == i)
            .map(|f| f.addr)
    }

    fn route(inp: &mut Input<'_>) -> NeRoute {
        let upstream = IfIndex(inp.pick(&[1, 1, 1, 2, 4, 99]));
        let mut downstream = Vec::new();
        for i in [1, 2, 3, 4, 99] {
            if i != upstream.0 && !inp.one_in(3) {
                downstream.push(IfIndex(i));
            }
        }
        NeRoute {
            upstream,
            downstream,
        }
    }
}

impl Engine for Ne {
    fn handle(&mut self, now: Instant, d: &Delivery) {
        let meta = NeRecvMeta {
            ifindex: IfIndex(d.ifindex),
            source: d.from,
            destination: d.to,
            ttl: d.ttl,
        };
        self.ne.handle_packet(now, meta, &d.bytes);
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.ne.poll_timeout()
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.ne.handle_timeout(now);
    }

    fn poll_transmit(&mut self, now: Instant, buf: &mut Vec<u8>) -> Option<Sent> {
        let t = self.ne.poll_transmit(now, buf)?;
        let addr = self.iface_addr(t.ifindex);
        assert!(addr.is_some(), "a transmit on {:?}, not ours", t.ifindex);
        assert!(t.ttl >= 1, "a transmit with TTL 0");
        if t.packet_type == PacketType::Nak || t.packet_type == PacketType::Nnak {
            assert_eq!(
                Some(t.source),
                addr,
                "a NAK not from the address of its interface"
            );
        }
        Some(Sent {
            packet_type: t.packet_type,
            len: t.len,
        })
    }

    fn tx_bound(&self, op: OpKind) -> usize {
        let ifaces = self.ne.config().interfaces.len();
        let per_packet = 4 * ifaces + 4;
        match op {
            OpKind::Packet | OpKind::Special => per_packet,
            // A NAK repeat per state (at most 63 in one), and two polls per interface per TSI.
            OpKind::Timeout => {
                per_packet + self.ne.repair_state_count() + self.ne.tsi_count() * (2 * ifaces + 2)
            }
        }
    }

    fn check(&self) {
        let c = self.ne.config();
        let tsis = self.ne.tsi_count();
        assert!(tsis <= c.max_tsis, "{tsis} TSIs, max_tsis {}", c.max_tsis);
        let states = self.ne.repair_state_count();
        assert!(
            states <= c.max_repair_states,
            "{states} repair states, max_repair_states {}",
            c.max_repair_states
        );
        let list = self.ne.tsi_list();
        assert_eq!(list.len(), tsis, "tsi_list() and tsi_count() disagree");
        let mut seen = 0;
        for tsi in &list {
            let snap = self
                .ne
                .tsi_snapshot(tsi)
                .expect("a listed TSI has a snapshot");
            seen += snap.repairs.len();
            for r in &snap.repairs {
                for i in &r.interfaces {
                    assert!(
                        self.iface_addr(*i).is_some(),
                        "repair state of {tsi} {} lists interface {i:?}",
                        r.sqn
                    );
                }
            }
        }
        assert_eq!(
            seen, states,
            "the TSIs hold {seen} repair states, repair_state_count() says {states}"
        );
    }

    fn heap_bound(&self) -> usize {
        // BENCHMARKS.md's target is 256 bytes per repair state, tables and queues included;
        // twice that, plus a TSI's state and its tables.
        let c = self.ne.config();
        c.max_repair_states * 512 + c.max_tsis * (8 << 10) + (64 << 10)
    }

    fn special(&mut self, _now: Instant, inp: &mut Input<'_>, _w: &mut World) {
        match inp.below(8) {
            0..=2 => {
                let source = inp.pick(&[Some(SRC), Some(SRC), None, Some(SRC6)]);
                let group = inp.pick(&[GROUP, GROUP, GROUP2, GROUP6]);
                let route = Self::route(inp);
                trace!("  set_route {source:?} {group} {route:?}");
                self.ne.set_route(source, group, route);
            }
            3 => {
                let source = inp.pick(&[Some(SRC), None]);
                let group = inp.pick(&[GROUP, GROUP2]);
                trace!("  remove_route {source:?} {group}");
                self.ne.remove_route(source, group);
            }
            4 | 5 => {
                let mut c = self.ne.config().clone();
                limits(inp, &mut c);
                trace!("  reconfigure {c:?}");
                self.ne.reconfigure(c);
            }
            6 => {
                trace!("  clear_repair_state");
                self.ne.clear_repair_state();
                assert_eq!(self.ne.repair_state_count(), 0);
            }
            _ => self.ne.clear_stats(),
        }
    }

    fn burst(&mut self, inp: &mut Input<'_>, w: &mut World) -> Vec<Delivery> {
        // No ODATA reaches a network element: a run of anything else.
        (0..=inp.below(6)).map(|_| w.packet(inp)).collect()
    }

    fn check_quiet(&self) {
        assert_eq!(self.ne.tsi_count(), 0, "TSIs left after silence");
        assert_eq!(
            self.ne.repair_state_count(),
            0,
            "repair states left after silence"
        );
    }
}

/// Runs the operations of `data` on a network element.
pub fn network_element(data: &[u8]) {
    let heap_base = crate::alloc::live_bytes();
    let mut inp = Input::new(data);
    let c = config(&mut inp);
    let mut w = World::new(&mut inp, TYPES, 64);
    trace!("{c:?}");
    let mut ne = NetworkElement::new(c);
    ne.set_route(
        Some(SRC),
        GROUP,
        NeRoute {
            upstream: IfIndex(1),
            downstream: vec![IfIndex(2), IfIndex(3)],
        },
    );
    if inp.bool() {
        ne.set_route(
            None,
            GROUP2,
            NeRoute {
                upstream: IfIndex(1),
                downstream: vec![IfIndex(2), IfIndex(4)],
            },
        );
    }
    let mut e = Ne { ne };
    run(&mut inp, &mut e, &mut w, crate::driver::epoch(), heap_base);
}
