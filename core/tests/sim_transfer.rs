//! Seeded simulations of one source and several receivers over lossy, reordering,
//! duplicating links. Invariant: every receiver ends its session (OPT_FIN) having delivered
//! exactly the messages sent, in order and intact, except messages covered by explicit loss
//! events, and the loss events cover exactly the sequence numbers of those messages.
//!
//! A failing run prints its seed and parameters; `PGM_SIM_SEED=<seed>` replays one seed.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use pgm_core::proto::receiver::{EndReason, Event, Receiver, ReceiverConfig};
use pgm_core::proto::source::{Source, SourceConfig};
use pgm_core::sim::{Engine, LinkModel, Sim};
use pgm_core::wire::{Gsi, Sqn};

const GROUP: IpAddr = IpAddr::V4(Ipv4Addr::new(239, 192, 0, 1));

fn addr(i: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 0, i))
}

/// Deterministic message `i` of a run: mixed sizes, a few large enough to fragment.
fn message(seed: u64, i: usize) -> Vec<u8> {
    let mut x = seed ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let len = match next() % 20 {
        0 => 1,
        1 => 8192 + (next() % 8192) as usize,
        2..=4 => 1400 + (next() % 3000) as usize,
        _ => 1 + (next() % 1300) as usize,
    };
    (0..len).map(|_| next() as u8).collect()
}

#[derive(Debug, Clone, Copy)]
struct Scenario {
    seed: u64,
    receivers: u8,
    messages: usize,
    link: LinkModel,
    rate: u64,
}

fn run(s: Scenario) -> Result<(), String> {
    // Engines need an epoch; the simulator only ever adds durations to it.
    #[expect(clippy::disallowed_methods, reason = "the simulation's epoch")]
    let t0 = Instant::now();
    let mut sim = Sim::new(s.seed, t0, s.link);
    let mut cfg = SourceConfig::new(Gsi([1, 2, 3, 4, 5, 6]), 4000, 7500, GROUP, addr(1));
    cfg.txw_max_rte = s.rate;
    cfg.late_join = true;
    cfg.txw_sqns = 8192;
    let msgs: Vec<Vec<u8>> = (0..s.messages).map(|i| message(s.seed, i)).collect();
    let src = sim.add_source(addr(1), Source::new(cfg, t0), msgs.clone(), true);
    let mut rcvs = Vec::new();
    for r in 0..s.receivers {
        let mut rc = ReceiverConfig::new(7500, GROUP);
        rc.rng_seed = s.seed.wrapping_mul(31).wrapping_add(u64::from(r));
        rcvs.push(sim.add_receiver(addr(10 + r), Receiver::new(rc)));
    }
    let all_ended = |sim: &Sim| {
        rcvs.iter().all(|&i| match &sim.nodes()[i].engine {
            Engine::Receiver { events, .. } => {
                events.iter().any(|e| matches!(e, Event::SessionEnd { .. }))
            }
            _ => true,
        })
    };
    let finished = sim.run_until(t0 + Duration::from_secs(600), all_ended);
    if sim.counters.stalled {
        return Err("an engine stalled the simulation (a deadline that never clears)".into());
    }
    let Engine::Source { sent, .. } = &sim.nodes()[src].engine else {
        return Err("node 0 is not the source".into());
    };
    if sent.len() != msgs.len() {
        return Err(format!(
            "source accepted {} of {} messages",
            sent.len(),
            msgs.len()
        ));
    }
    let Engine::Source { source, .. } = &sim.nodes()[src].engine else {
        return Err("node 0 is not the source".into());
    };
    let st = source.stats();
    if std::env::var("PGM_SIM_VERBOSE").is_ok() {
        eprintln!(
            "seed {} loss {} lost {} odata {} rdata {} naks {} ncf {}",
            s.seed,
            s.link.loss,
            sim.counters.lost,
            st.odata_sent,
            st.rdata_sent,
            st.naks_received,
            st.ncf_sent
        );
    }
    // Losses on the way to the receivers must have drawn repairs.
    if s.link.loss >= 0.05 && st.rdata_sent == 0 {
        return Err(format!(
            "no RDATA sent although the network lost {}",
            sim.counters.lost
        ));
    }
    for &r in &rcvs {
        let Engine::Receiver { events, receiver } = &sim.nodes()[r].engine else {
            continue;
        };
        if !finished {
            return Err(format!(
                "receiver {r} did not finish; stats {:?}",
                receiver.stats()
            ));
        }
        check_receiver(events, &msgs, sent).map_err(|e| format!("receiver {r}: {e}"))?;
    }
    Ok(())
}

fn check_receiver(events: &[Event], msgs: &[Vec<u8>], sent: &[(Sqn, Sqn)]) -> Result<(), String> {
    let mut data = Vec::new();
    let mut lost: BTreeSet<u32> = BTreeSet::new();
    let mut starts = 0;
    let mut end = None;
    for e in events {
        match e {
            Event::SessionStart { .. } => starts += 1,
            Event::Data { data: d, .. } => {
                if end.is_some() {
                    return Err("data after session end".into());
                }
                data.push(d.clone());
            }
            Event::Loss { first, count, .. } => {
                for i in 0..*count {
                    if !lost.insert((*first + i).0) {
                        return Err(format!("sqn {} reported lost twice", (*first + i).0));
                    }
                }
            }
            Event::SessionEnd { reason, .. } => end = Some(*reason),
            _ => {}
        }
    }
    if starts != 1 {
        return Err(format!("{starts} session starts"));
    }
    if end != Some(EndReason::Fin) {
        return Err(format!("session ended with {end:?}"));
    }
    // Walk the sent messages: each is either the next delivered one or lost.
    let mut next = data.iter().peekable();
    let mut undelivered: BTreeSet<u32> = BTreeSet::new();
    for (i, m) in msgs.iter().enumerate() {
        if next.peek() == Some(&m) {
            next.next();
            continue;
        }
        let (first, last) = sent[i];
        let n = last.since(first).ok_or("bad range")?;
        let sqns: Vec<u32> = (0..=n).map(|k| (first + k).0).collect();
        if !sqns.iter().any(|s| lost.contains(s)) {
            return Err(format!(
                "message {i} (sqns {}..={}) neither delivered in order nor reported lost",
                first.0, last.0
            ));
        }
        undelivered.extend(sqns);
    }
    if next.next().is_some() {
        return Err("delivered data that was not sent, or out of order".into());
    }
    if lost != undelivered {
        return Err(format!(
            "loss events cover {} sqns, undelivered messages {}",
            lost.len(),
            undelivered.len()
        ));
    }
    Ok(())
}

fn scenarios() -> Vec<Scenario> {
    let mut out = Vec::new();
    let losses = [0.0, 0.01, 0.05, 0.1, 0.2, 0.3];
    let mut seed = 1u64;
    for round in 0..170 {
        for (k, &loss) in losses.iter().enumerate() {
            let bursty = round % 4 == 1;
            let link = LinkModel {
                loss,
                burst_enter: if bursty { 0.02 } else { 0.0 },
                burst_exit: 0.3,
                burst_loss: if bursty { 0.8 } else { 0.0 },
                delay: Duration::from_millis(1 + (round % 5) as u64),
                jitter: Duration::from_micros(if round % 3 == 0 { 3000 } else { 0 }),
                duplicate: if round % 5 == 2 { 0.02 } else { 0.0 },
                loss_only: &[],
            };
            out.push(Scenario {
                seed,
                receivers: 1 + ((round + k) % 3) as u8,
                messages: 60 + (round * 7 % 50),
                link,
                rate: if round % 2 == 0 { 0 } else { 20_000_000 },
            });
            seed += 1;
        }
    }
    out
}

#[test]
fn seeded_transfers_deliver_everything_or_report_it() {
    let replay: Option<u64> = std::env::var("PGM_SIM_SEED")
        .ok()
        .and_then(|s| s.parse().ok());
    let mut failures = Vec::new();
    let all = scenarios();
    let count = all.len();
    for s in all {
        if replay.is_some_and(|r| r != s.seed) {
            continue;
        }
        if let Err(e) = run(s) {
            failures.push(format!("seed {} ({s:?}): {e}", s.seed));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {count} runs failed; replay with PGM_SIM_SEED=<seed>:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn a_seed_replays_exactly() {
    let s = scenarios()[17];
    let log = |s: Scenario| {
        #[expect(clippy::disallowed_methods, reason = "the simulation's epoch")]
        let t0 = Instant::now();
        let mut sim = Sim::new(s.seed, t0, s.link);
        let cfg = SourceConfig::new(Gsi([9; 6]), 1, 2, GROUP, addr(1));
        let msgs: Vec<Vec<u8>> = (0..s.messages).map(|i| message(s.seed, i)).collect();
        sim.add_source(addr(1), Source::new(cfg, t0), msgs, true);
        let mut rc = ReceiverConfig::new(2, GROUP);
        rc.rng_seed = s.seed;
        let r = sim.add_receiver(addr(2), Receiver::new(rc));
        sim.run_until(t0 + Duration::from_secs(60), |_| false);
        assert!(!sim.counters.stalled, "an engine stalled the simulation");
        let Engine::Receiver { events, receiver } = &sim.nodes()[r].engine else {
            unreachable!("node 1 is the receiver");
        };
        (
            events.clone(),
            receiver.stats().clone(),
            sim.counters.clone(),
        )
    };
    assert_eq!(log(s), log(s));
}
