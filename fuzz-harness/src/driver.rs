//! The driver every engine runs under: it decodes operations from the input (packets, time
//! steps, bursts of data, engine-specific calls), drives the engine the way the engine
//! contract of `pgm_core::proto` says a driver must, and checks what holds for every engine
//! after every operation.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use pgm_core::proto::receiver::{EndReason, Event};
use pgm_core::wire::{Packet, PacketType, Repr, Tsi};

use crate::input::Input;
use crate::packets::{Delivery, World};

/// Most operations decoded from one input: keeps each run short.
const MAX_OPS: usize = 600;
/// Most deadlines stepped through one by one in one time step; the rest are handled by one
/// late `handle_timeout` (which the contract allows).
const MAX_STEPS: usize = 500;
/// Heap the harness itself may hold beyond the engine (recent packets, buffers).
const HARNESS_HEAP: usize = 1 << 20;

/// Whether to print every operation (`PGM_FUZZ_TRACE=1`), to follow a failing input.
pub(crate) fn tracing() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("PGM_FUZZ_TRACE").is_some_and(|v| v == "1"))
}

/// Whether the check `id` is switched off: `PGM_FUZZ_KNOWN` lists, comma-separated, the
/// checks of engine bugs that are known and not fixed yet, so that fuzzing goes on past them.
pub(crate) fn known(id: &str) -> bool {
    static KNOWN: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    KNOWN
        .get_or_init(|| {
            std::env::var("PGM_FUZZ_KNOWN")
                .unwrap_or_default()
                .split(',')
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect()
        })
        .iter()
        .any(|k| k == id)
}

/// Prints a line of the trace.
macro_rules! trace {
    ($($arg:tt)*) => {
        if $crate::driver::tracing() {
            eprintln!($($arg)*);
        }
    };
}
pub(crate) use trace;

/// A packet for the trace: its `Repr`, or why it does not parse.
pub(crate) fn show(bytes: &[u8]) -> String {
    match Repr::parse_bytes(bytes) {
        Ok(r) => r.to_string(),
        Err(e) => format!("malformed ({e}, {} bytes)", bytes.len()),
    }
}

/// What an operation was, for the engine's bounds on the work it causes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OpKind {
    Packet,
    Timeout,
    Special,
}

/// A transmit as every engine describes it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sent {
    pub(crate) packet_type: PacketType,
    pub(crate) len: usize,
}

/// An engine under test.
pub(crate) trait Engine {
    /// Hands a packet to the engine.
    fn handle(&mut self, now: Instant, d: &Delivery);
    fn poll_timeout(&self) -> Option<Instant>;
    fn handle_timeout(&mut self, now: Instant);
    fn poll_transmit(&mut self, now: Instant, buf: &mut Vec<u8>) -> Option<Sent>;
    /// The next application event, for engines that have them.
    fn poll_event(&mut self) -> Option<Event> {
        None
    }
    /// Checks one transmit beyond what holds for all (the driver checks that it parses, has
    /// the type it claims and a valid checksum).
    fn check_transmit(&self, _sent: &Sent, _repr: &Repr<'_>) {}
    /// Most transmits an operation of this kind may cause, from the state before it (the
    /// driver takes the larger of the bounds before and after the operation).
    fn tx_bound(&self, op: OpKind) -> usize;
    /// Most events an operation may cause.
    fn event_bound(&self) -> usize {
        0
    }
    /// Asserts the engine's bounds and the consistency of what its accessors say.
    fn check(&self);
    /// Bytes of heap the engine may hold, by its configuration.
    fn heap_bound(&self) -> usize;
    /// An engine-specific operation (sending, reconfiguring, ...).
    fn special(&mut self, _now: Instant, _inp: &mut Input<'_>, _w: &mut World) {}
    /// Packets for the burst operation: by default a run of the main session's ODATA.
    fn burst(&mut self, inp: &mut Input<'_>, w: &mut World) -> Vec<Delivery> {
        crate::packets::burst(w, inp)
    }
    /// Asserts what holds once nothing has been heard for a long time.
    fn check_quiet(&self) {}
    /// Tells the world what the engine knows that packets should be made around.
    fn sync(&self, _w: &mut World) {}
}

/// Application events must make sense per session: a session starts before its data, and
/// nothing follows its end until it starts again.
#[derive(Default)]
struct Sessions {
    live: HashMap<Tsi, bool>,
}

impl Sessions {
    fn in_session(&self, tsi: &Tsi, what: &str) {
        let live = self.live.get(tsi);
        let known = live == Some(&false) && known("rx-events-after-end");
        assert!(
            live == Some(&true) || known,
            "{tsi}: {what} outside a session (it {})",
            if live.is_some() {
                "ended"
            } else {
                "never started"
            }
        );
    }

    fn on(&mut self, e: &Event) {
        match e {
            Event::SessionStart { tsi } => {
                let was = self.live.insert(*tsi, true);
                assert_ne!(was, Some(true), "{tsi}: SessionStart twice without an end");
            }
            Event::Data { tsi, .. } => self.in_session(tsi, "Data"),
            Event::Loss { tsi, count, .. } => {
                self.in_session(tsi, "Loss");
                assert!(*count > 0, "{tsi}: Loss of nothing");
            }
            Event::SessionEnd { tsi, reason } => {
                let was = self.live.insert(*tsi, false);
                let known = *reason == EndReason::Evicted && known("rx-evict-ended");
                assert!(
                    was == Some(true) || known,
                    "{tsi}: SessionEnd ({reason:?}) of no session (it {})",
                    if was.is_some() {
                        "ended already"
                    } else {
                        "never started"
                    }
                );
            }
            _ => {}
        }
    }
}

struct Driver {
    start: Instant,
    now: Instant,
    buf: Vec<u8>,
    heap_base: Option<usize>,
    sessions: Sessions,
}

/// Runs the operations of `inp` on `e`.
pub(crate) fn run<E: Engine>(
    inp: &mut Input<'_>,
    e: &mut E,
    w: &mut World,
    now: Instant,
    heap_base: Option<usize>,
) {
    let mut d = Driver {
        start: now,
        now,
        buf: Vec::new(),
        heap_base,
        sessions: Sessions::default(),
    };
    d.after(e, w, OpKind::Special, usize::MAX, 0);
    let mut ops = 0;
    while !inp.is_empty() && ops < MAX_OPS {
        ops += 1;
        match inp.below(16) {
            0..=8 => {
                e.sync(w);
                let p = w.packet(inp);
                d.packet(e, w, &p);
            }
            9..=11 => {
                let dt = duration(
                    inp,
                    e.poll_timeout().map(|t| t.saturating_duration_since(d.now)),
                );
                d.advance(e, w, dt);
            }
            12 | 13 => {
                for p in e.burst(inp, w) {
                    d.packet(e, w, &p);
                }
            }
            _ => {
                let (tx, ev) = (e.tx_bound(OpKind::Special), e.event_bound());
                trace!("{:?} special", d.now - d.start);
                e.special(d.now, inp, w);
                d.after(e, w, OpKind::Special, tx, ev);
            }
        }
    }
    // Silence: every session expires, every cache entry and repair state times out.
    for _ in 0..5 {
        d.advance(e, w, Duration::from_secs(40));
    }
    e.check_quiet();
}

/// A time step: none, microseconds, milliseconds, seconds, or exactly to the next deadline
/// (or just before it).
fn duration(inp: &mut Input<'_>, to_deadline: Option<Duration>) -> Duration {
    match inp.below(10) {
        0 => Duration::ZERO,
        1 => Duration::from_micros(u64::from(inp.below(1000))),
        2 | 3 => Duration::from_millis(u64::from(inp.below(100))),
        4 | 5 => Duration::from_millis(100 + u64::from(inp.below(2000))),
        6 => Duration::from_secs(2 + u64::from(inp.below(60))),
        7 => to_deadline
            .map(|d| d.saturating_sub(Duration::from_nanos(1)))
            .unwrap_or_default(),
        _ => to_deadline.unwrap_or_default(),
    }
}

impl Driver {
    fn packet<E: Engine>(&mut self, e: &mut E, w: &mut World, p: &Delivery) {
        trace!(
            "{:?} packet {} -> {} if {} ttl {}: {}",
            self.now - self.start,
            p.from,
            p.to,
            p.ifindex,
            p.ttl,
            show(&p.bytes)
        );
        let (tx, ev) = (e.tx_bound(OpKind::Packet), e.event_bound());
        e.handle(self.now, p);
        self.after(e, w, OpKind::Packet, tx, ev);
    }

    /// Moves time forward by `dt`, stepping through every deadline on the way as a driver
    /// sleeping until `poll_timeout` would.
    fn advance<E: Engine>(&mut self, e: &mut E, w: &mut World, dt: Duration) {
        let target = self.now + dt;
        trace!("{:?} advance {dt:?}", self.now - self.start);
        let mut stuck = 0;
        let mut steps = 0;
        while let Some(at) = e.poll_timeout() {
            if at > target || steps == MAX_STEPS {
                break;
            }
            steps += 1;
            // A deadline in the past is handled now: time never goes backwards.
            self.now = self.now.max(at);
            trace!("{:?} timeout", self.now - self.start);
            let (tx, ev) = (e.tx_bound(OpKind::Timeout), e.event_bound());
            e.handle_timeout(self.now);
            self.after(e, w, OpKind::Timeout, tx, ev);
            // No spinning: once a deadline is handled, the next one lies in the future.
            match e.poll_timeout() {
                Some(next) if next <= self.now => {
                    stuck += 1;
                    assert!(
                        stuck < 2,
                        "poll_timeout() is {:?} before now after handle_timeout(now) and a drain",
                        self.now.saturating_duration_since(next)
                    );
                }
                _ => stuck = 0,
            }
        }
        self.now = target;
        let (tx, ev) = (e.tx_bound(OpKind::Timeout), e.event_bound());
        e.handle_timeout(self.now);
        self.after(e, w, OpKind::Timeout, tx, ev);
    }

    /// After an operation: drains transmits and events within their bounds, then checks the
    /// engine.
    fn after<E: Engine>(
        &mut self,
        e: &mut E,
        w: &mut World,
        op: OpKind,
        tx_before: usize,
        ev_before: usize,
    ) {
        let tx_bound = tx_before.max(e.tx_bound(op));
        let mut n = 0;
        while let Some(sent) = e.poll_transmit(self.now, &mut self.buf) {
            n += 1;
            assert!(
                n <= tx_bound,
                "more than {tx_bound} transmits after one {op:?} operation"
            );
            let bytes = self
                .buf
                .get(..sent.len)
                .expect("transmit longer than its buffer");
            trace!("  sent {}", show(bytes));
            let repr = check_packet(bytes, sent.packet_type);
            e.check_transmit(&sent, &repr);
            w.sent(sent.packet_type, bytes);
        }
        let ev_bound = ev_before.max(e.event_bound());
        let mut n = 0;
        while let Some(ev) = e.poll_event() {
            n += 1;
            assert!(
                n <= ev_bound,
                "more than {ev_bound} events after one {op:?} operation"
            );
            match &ev {
                Event::Data { tsi, data } => trace!("  event Data {tsi} {} bytes", data.len()),
                other => trace!("  event {other:?}"),
            }
            self.sessions.on(&ev);
        }
        e.check();
        if let (Some(base), Some(live)) = (self.heap_base, crate::alloc::live_bytes()) {
            let used = live.saturating_sub(base);
            let bound = e.heap_bound() + HARNESS_HEAP;
            assert!(
                used <= bound,
                "{used} bytes of heap in use, over the bound of {bound}"
            );
        }
    }
}

/// Checks a packet an engine sent: it parses, it is of the type the transmit says, and its
/// checksum is right (the engines' own check is off under `cfg(fuzzing)`).
pub(crate) fn check_packet(bytes: &[u8], ty: PacketType) -> Repr<'_> {
    let repr = match Repr::parse_bytes(bytes) {
        Ok(r) => r,
        Err(err) => panic!("a transmit does not parse ({err}): {bytes:02x?}"),
    };
    assert_eq!(
        repr.packet_type(),
        ty,
        "a transmit of another type than it says"
    );
    let mut copy = bytes.to_vec();
    Packet::new_unchecked(&mut copy[..]).fill_checksum();
    let no_checksum = bytes[6..8] == [0, 0] && !ty.is_data();
    assert!(
        no_checksum || copy[6..8] == bytes[6..8],
        "a {ty} transmit with a wrong checksum: {:02x?}, want {:02x?}; {bytes:02x?}",
        &bytes[6..8],
        &copy[6..8]
    );
    repr
}

/// The instant runs start from. Engines only compare instants, so any will do.
pub(crate) fn epoch() -> Instant {
    #[expect(clippy::disallowed_methods, reason = "an epoch for virtual time")]
    Instant::now()
}
