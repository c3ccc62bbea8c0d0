//! PGMCC in the seeded simulator: one source (capped far above what PGMCC allows), several receivers behind links of
//! different loss and delay. The acker converges to the receiver with the lowest expected
//! throughput, loss on its path slows the source down and halves the window, a silent acker
//! is replaced, and every receiver still gets every message intact.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use pgm_core::proto::pgmcc::PgmccState;
use pgm_core::proto::receiver::{Event, Receiver, ReceiverConfig};
use pgm_core::proto::source::{Source, SourceConfig, SourceStats};
use pgm_core::sim::{Engine, LinkModel, Sim};
use pgm_core::wire::Gsi;

const GROUP: IpAddr = IpAddr::V4(Ipv4Addr::new(239, 192, 0, 1));

fn addr(i: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 0, i))
}

fn link(loss: f64, delay_ms: u64) -> LinkModel {
    LinkModel {
        loss,
        delay: Duration::from_millis(delay_ms),
        ..LinkModel::default()
    }
}

fn message(i: usize) -> Vec<u8> {
    let mut m = (i as u32).to_be_bytes().to_vec();
    m.resize(500, (i % 251) as u8);
    m
}

struct Run {
    sim: Sim,
    t0: Instant,
    src: usize,
    rcvs: Vec<usize>,
    msgs: usize,
}

impl Run {
    /// A source at 10.0.0.1 and one receiver per entry of `paths` (10.0.0.10 on), each
    /// with that link from the source (and a clean, equally delayed link back).
    fn new(seed: u64, msgs: usize, paths: &[LinkModel]) -> Self {
        #[expect(clippy::disallowed_methods, reason = "the simulation's epoch")]
        let t0 = Instant::now();
        let mut sim = Sim::new(seed, t0, link(0.0, 1));
        let mut cfg = SourceConfig::new(Gsi([1, 2, 3, 4, 5, 6]), 4000, 7500, GROUP, addr(1));
        cfg.txw_sqns = 8192;
        // The simulator has no link bandwidth: without a cap an open-loop source sends
        // everything in one instant. 20 MB/s (40,000 messages/s) is far above what PGMCC
        // allows on these paths, so the window is what limits the source.
        cfg.txw_max_rte = 20_000_000;
        let data: Vec<Vec<u8>> = (0..msgs).map(message).collect();
        let src = sim.add_source(addr(1), Source::new(cfg, t0), data, true);
        let mut rcvs = Vec::new();
        for (i, path) in paths.iter().enumerate() {
            let a = addr(10 + i as u8);
            let mut rc = ReceiverConfig::new(7500, GROUP);
            rc.rng_seed = seed.wrapping_mul(31).wrapping_add(i as u64);
            rc.local_addr = Some(a);
            let r = sim.add_receiver(a, Receiver::new(rc));
            sim.set_link(src, r, *path);
            sim.set_link(r, src, link(0.0, path.delay.as_millis() as u64));
            rcvs.push(r);
        }
        Self {
            sim,
            t0,
            src,
            rcvs,
            msgs,
        }
    }

    fn source(&self) -> &Source {
        match &self.sim.nodes()[self.src].engine {
            Engine::Source { source, .. } => source,
            _ => panic!("node {} is not the source", self.src),
        }
    }

    fn stats(&self) -> SourceStats {
        self.source().stats().clone()
    }

    fn state(&self) -> PgmccState {
        self.source().pgmcc_state().expect("PGMCC on")
    }

    /// Messages receiver `i` delivered, checked in order and intact.
    fn delivered(&self, i: usize) -> usize {
        let Engine::Receiver { events, .. } = &self.sim.nodes()[self.rcvs[i]].engine else {
            panic!("not a receiver");
        };
        let mut n = 0;
        for e in events {
            match e {
                Event::Data { data, .. } => {
                    assert_eq!(data, &message(n), "receiver {i}: message {n}");
                    n += 1;
                }
                Event::Loss { .. } => panic!("receiver {i}: loss event {e:?}"),
                _ => {}
            }
        }
        n
    }

    fn all_done(&self, which: &[usize]) -> bool {
        which.iter().all(|&i| self.delivered(i) == self.msgs)
    }

    /// Runs until the receivers in `which` have everything or `secs` of virtual time
    /// passed, sampling the window at every step; returns the time it took and the mean W.
    fn run(&mut self, which: &[usize], secs: u64) -> (Duration, f64) {
        let deadline = self.sim.now() + Duration::from_secs(secs);
        let mut sum = 0.0;
        let mut n = 0u64;
        let src = self.src;
        let rcvs = self.rcvs.clone();
        let msgs = self.msgs;
        let done = self.sim.run_until(deadline, |sim| {
            if let Engine::Source { source, .. } = &sim.nodes()[src].engine {
                if let Some(st) = source.pgmcc_state().filter(|s| s.acker.is_some()) {
                    sum += st.window;
                    n += 1;
                }
            }
            which.iter().all(|&i| {
                let Engine::Receiver { events, .. } = &sim.nodes()[rcvs[i]].engine else {
                    return false;
                };
                events
                    .iter()
                    .filter(|e| matches!(e, Event::Data { .. }))
                    .count()
                    == msgs
            })
        });
        assert!(!self.sim.counters.stalled, "the simulation stalled");
        assert!(done, "not finished in {secs} s: {:?}", self.stats());
        (self.sim.now() - self.t0, sum / n.max(1) as f64)
    }
}

#[test]
fn the_acker_converges_to_the_receiver_with_the_most_loss() {
    for seed in 1..=3 {
        let mut r = Run::new(seed, 3000, &[link(0.005, 1), link(0.05, 1), link(0.005, 1)]);
        r.run(&[0, 1, 2], 120);
        assert!(r.all_done(&[0, 1, 2]));
        assert_eq!(
            r.state().acker,
            Some(addr(11)),
            "seed {seed}: {:?}",
            r.stats().pgmcc
        );
    }
}

#[test]
fn the_acker_converges_to_the_receiver_with_the_longest_round_trip_at_equal_loss() {
    for seed in 1..=3 {
        let mut r = Run::new(seed, 3000, &[link(0.02, 1), link(0.02, 1), link(0.02, 6)]);
        r.run(&[0, 1, 2], 120);
        assert!(r.all_done(&[0, 1, 2]));
        assert_eq!(
            r.state().acker,
            Some(addr(12)),
            "seed {seed}: {:?}",
            r.stats().pgmcc
        );
    }
}

#[test]
fn loss_on_the_ackers_path_slows_the_source_and_halves_the_window() {
    let clean = {
        let mut r = Run::new(7, 4000, &[link(0.0, 2)]);
        let (t, w) = r.run(&[0], 120);
        assert_eq!(r.stats().pgmcc.halvings, 0);
        (t, w)
    };
    let p = 0.02;
    let mut r = Run::new(7, 4000, &[link(p, 2)]);
    let (t, w) = r.run(&[0], 300);
    let st = r.stats().pgmcc;
    println!(
        "clean: {:?}, mean W {:.2}; {p} loss: {t:?}, mean W {w:.2}; {st:?}",
        clean.0, clean.1
    );
    assert!(st.halvings > 0, "{st:?}");
    assert!(
        t > clean.0,
        "lossy run {t:?} not slower than clean {:?}",
        clean.0
    );
    // The mean window within a factor of about 2 of TCP's sqrt(1.5/p) (loose on purpose:
    // slow start, suspensions and the fixed SSTHRESH move it).
    let tcp = (1.5 / p).sqrt();
    assert!(
        w > tcp / 2.5 && w < tcp * 2.5,
        "mean W {w:.2} vs sqrt(1.5/p) = {tcp:.2} ({st:?})"
    );
    assert!(
        w < clean.1,
        "mean W {w:.2} not below the clean run's {:.2}",
        clean.1
    );
}

#[test]
fn a_silent_acker_is_dropped_and_another_receiver_elected() {
    // Receiver 1 has the worst path and becomes the acker; then its link fails both ways.
    let mut r = Run::new(3, 6000, &[link(0.0, 1), link(0.03, 1), link(0.0, 1)]);
    let dl = r.sim.now() + Duration::from_millis(500);
    r.sim.run_until(dl, |_| false);
    assert_eq!(r.state().acker, Some(addr(11)), "{:?}", r.stats().pgmcc);
    let (src, gone) = (r.src, r.rcvs[1]);
    let dead = LinkModel {
        loss: 1.0,
        ..link(0.0, 1)
    };
    r.sim.set_link(src, gone, dead);
    r.sim.set_link(gone, src, dead);
    r.run(&[0, 2], 120);
    assert!(r.all_done(&[0, 2]));
    let st = r.stats().pgmcc;
    assert!(st.timeouts >= 3, "{st:?}");
    assert!(st.ackers_dropped >= 1, "{st:?}");
    let acker = r.state().acker;
    assert!(
        acker == Some(addr(10)) || acker == Some(addr(12)),
        "a live receiver is the acker: {acker:?} ({st:?})"
    );
}
