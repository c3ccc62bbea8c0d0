//! Fuzzing of the PGM protocol engines (issue 11, item 4): each entry point takes arbitrary
//! bytes, decodes from them an engine configuration and a sequence of operations, and drives
//! one engine of `pgm_core::proto` through them the way its contract says a driver must,
//! checking after every operation what must hold whatever the input:
//!
//! - no panic;
//! - the engine's memory stays within its configured bounds, by its own accessors
//!   (`buffered_bytes`, `window_slots`, `timer_entries`, sources, TSIs, repair states, cache
//!   bytes, ...) and, when [`CountingAlloc`] is the global allocator, by the heap really in
//!   use;
//! - bounded work: the transmits and events one call leads to are bounded by the state
//!   before and after it, and timer queues by the live state;
//! - no spinning: after `handle_timeout(now)`, `poll_timeout()` lies after `now`;
//! - every packet sent parses, is of the type it claims and has a valid checksum;
//! - application events make sense per session;
//! - after a long silence, every session, window, cache entry and repair state is gone.
//!
//! The operations are packets (mostly well-formed, built with the wire module's `Repr`, for a
//! small world of sessions and hosts, with fields chosen by the input; some mutated, some raw
//! bytes, some echoes of the engine's own transmits), from input-chosen addresses and
//! interfaces; time steps (the driver steps through each deadline on the way); bursts of
//! consecutive data; and calls of the engine's own API (send and close for a source, routes
//! and reconfiguration for a network element, cache limits for a repairer).
//!
//! The same functions run under cargo-fuzz (`fuzz/`, coverage-guided) and under `cargo test`
//! (`tests/`: a seeded generator for a bounded number of inputs, and the inputs that once
//! failed, replayed).
//!
//! Environment:
//!
//! - `PGM_FUZZ_TRACE=1` prints every operation, transmit and event of a run (to follow a
//!   failing input);
//! - `PGM_FUZZ_KNOWN=id,id` switches off the checks of engine bugs found and not fixed yet,
//!   so that fuzzing goes on past them: `rx-expiry-buffered` (the receiver's buffered bytes
//!   not back to zero once every session expired), `rx-buffered-bound` (its buffered bytes
//!   over `max_buffer_bytes`), `rx-events-after-end` (Data or Loss after a SessionEnd),
//!   `rx-evict-ended` (a second SessionEnd when an ended session is evicted),
//!   `rx-timer-entries` (its timer entries beyond what its windows hold). The tests in
//!   `tests/regressions.rs` name the bugs behind them.

mod alloc;
mod driver;
mod input;
mod network_element;
mod packets;
mod receiver;
mod repairer;
mod source;

pub use alloc::{CountingAlloc, live_bytes};
pub use network_element::network_element;
pub use receiver::receiver;
pub use repairer::repairer;
pub use source::source;

/// An engine's entry point: runs the operations decoded from the input, panicking when an
/// invariant breaks.
pub type Target = fn(&[u8]);

/// Every engine's entry point, by name (the cargo-fuzz target names).
pub const ENGINES: [(&str, Target); 4] = [
    ("receiver", receiver),
    ("source", source),
    ("network_element", network_element),
    ("repairer", repairer),
];
