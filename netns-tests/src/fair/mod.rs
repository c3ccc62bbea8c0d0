//! Parts of the fairness harness (`src/bin/fairness.rs`): the lab it runs in ([`topo`]), the
//! flows it measures ([`flows`]) and the `pgm` tool's command lines and reports ([`pgm`]), and what a source sends first
//! ([`startup`]).
//!
//! The harness includes this directory as a module of its own binary (`#[path]`), so nothing
//! here is part of the library's API.

use std::thread;
use std::time::Instant;

pub(crate) mod flows;
pub(crate) mod pgm;
pub(crate) mod startup;
pub(crate) mod topo;

/// The wall clock: the harness measures rates over real time.
#[expect(
    clippy::disallowed_methods,
    reason = "a benchmark harness measures on the wall clock"
)]
pub(crate) fn now() -> Instant {
    Instant::now()
}

/// `bytes` over `secs` in Mbit/s (10^6 bits per second).
pub(crate) fn mbit(bytes: u64, secs: f64) -> f64 {
    if secs <= 0.0 {
        return 0.0;
    }
    bytes as f64 * 8.0 / secs / 1e6
}

/// Sleeps until `t` (at once if it has passed).
pub(crate) fn sleep_until(t: Instant) {
    let left = t.saturating_duration_since(now());
    if !left.is_zero() {
        thread::sleep(left);
    }
}

/// The machine's load averages (`/proc/loadavg`, first three fields).
pub(crate) fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}
