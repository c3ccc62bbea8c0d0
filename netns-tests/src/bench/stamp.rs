//! Time-stamped messages of the latency harness: the format, the sender's pacer, and the
//! receiver's record of one-way latencies.
//!
//! A message of `size` bytes (at least [`HEADER`]) is `BE64(index) || BE64(stamp)` then
//! zeros, where `stamp` is [`monotonic_ns`] read just before the message is handed to the
//! implementation's send call. The receiver reads the clock as soon as the implementation
//! hands the message over; the difference is the one-way latency through both stacks and
//! the link. `peers/openpgm/pgmpeer.c` writes and reads the same format (`--latency`).
//!
//! Samples travel from a receiver to the harness as a file of native-endian `i64`
//! nanoseconds, one per message after the warm-up, in arrival order.

#![allow(unsafe_code)]

use std::io::Write as _;
use std::path::Path;

use anyhow::{Context, Result, ensure};

use super::monotonic_ns;

/// Bytes of a message's header: the index and the stamp.
pub const HEADER: usize = 16;

/// Writes the header of message `index`, stamped `stamp` (ns), into `buf`.
pub fn write_header(buf: &mut [u8], index: u64, stamp: i64) {
    buf[..8].copy_from_slice(&index.to_be_bytes());
    buf[8..HEADER].copy_from_slice(&stamp.to_be_bytes());
}

/// The index and stamp of a message, `None` if it is shorter than [`HEADER`].
pub fn read_header(msg: &[u8]) -> Option<(u64, i64)> {
    let index = u64::from_be_bytes(msg.get(..8)?.try_into().ok()?);
    let stamp = i64::from_be_bytes(msg.get(8..HEADER)?.try_into().ok()?);
    Some((index, stamp))
}

/// Sends at a fixed rate against absolute deadlines: message `i` is due at
/// `start + i / rate`, so the rate is exact over the run whatever each wakeup costs (a late
/// wakeup is followed by messages due already, sent at once without sleeping). It sleeps with
/// `clock_nanosleep(TIMER_ABSTIME)`, the thread's timer slack set to 1 ns (the default 50 µs
/// would be added to most wakeups).
#[derive(Debug)]
pub struct Pacer {
    start: i64,
    rate: u64,
    /// Per message, how late it was handed to the send call, in ns.
    late: Vec<i64>,
}

impl Pacer {
    /// A pacer of `rate` messages per second starting now; sets the calling thread's timer
    /// slack.
    pub fn new(rate: u64) -> Self {
        // SAFETY: prctl(PR_SET_TIMERSLACK) changes only this thread's timer slack.
        unsafe {
            libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong, 0, 0, 0);
        }
        Self {
            start: monotonic_ns() + 1_000_000,
            rate: rate.max(1),
            late: Vec::new(),
        }
    }

    /// When message `i` is due, in [`monotonic_ns`].
    pub fn due(&self, i: u64) -> i64 {
        self.start + (i128::from(i) * 1_000_000_000 / i128::from(self.rate)) as i64
    }

    /// Waits (blocking the thread) until message `i` is due; returns the stamp to write
    /// into it (the time now).
    pub fn wait(&mut self, i: u64) -> i64 {
        let due = self.due(i);
        if monotonic_ns() >= due {
            // Late already: no sleep (a timer set in the past still costs a timer
            // interrupt, tens of microseconds in a VM, and the sender would fall behind).
            return self.woke(due);
        }
        let ts = libc::timespec {
            tv_sec: due / 1_000_000_000,
            tv_nsec: due % 1_000_000_000,
        };
        loop {
            // SAFETY: clock_nanosleep reads `ts` and writes nothing (no remainder pointer).
            let r = unsafe {
                libc::clock_nanosleep(
                    libc::CLOCK_MONOTONIC,
                    libc::TIMER_ABSTIME,
                    &ts,
                    std::ptr::null_mut(),
                )
            };
            if r != libc::EINTR {
                break;
            }
        }
        self.woke(due)
    }

    /// Records the wakeup for a message due at `due` (for a caller that waited by other
    /// means); returns the stamp to write into it (the time now).
    pub fn woke(&mut self, due: i64) -> i64 {
        let now = monotonic_ns();
        self.late.push(now - due);
        now
    }

    /// `late_p50_us=.. late_p99_us=.. late_max_us=..`: how late messages were handed to the
    /// send call, against their deadlines.
    pub fn lateness(&self) -> String {
        let mut v = self.late.clone();
        v.sort_unstable();
        let us = |q: f64| percentile(&v, q).map_or(0.0, |x| x as f64 / 1e3);
        format!(
            "late_p50_us={:.1} late_p99_us={:.1} late_max_us={:.1}",
            us(0.5),
            us(0.99),
            us(1.0)
        )
    }
}

/// The `q`-quantile of sorted `v` by nearest rank (`q` = 1 is the maximum).
pub fn percentile(v: &[i64], q: f64) -> Option<i64> {
    if v.is_empty() {
        return None;
    }
    let rank = (q * v.len() as f64).ceil() as usize;
    Some(v[rank.clamp(1, v.len()) - 1])
}

/// What a receiver saw: latencies after the warm-up, and the order of the indexes.
#[derive(Debug)]
pub struct Recorder {
    count: u64,
    skip: u64,
    next: u64,
    /// Messages received, warm-up included.
    pub received: u64,
    /// Indexes skipped over (never received before a later one).
    pub missing: u64,
    /// Messages too short, or with an index already passed.
    pub bad: u64,
    samples: Vec<i64>,
}

impl Recorder {
    /// A receiver of messages `0..count`, of which the first `skip` are the warm-up.
    pub fn new(count: u64, skip: u64) -> Self {
        Self {
            count,
            skip,
            next: 0,
            received: 0,
            missing: 0,
            bad: 0,
            samples: Vec::with_capacity(count.saturating_sub(skip) as usize),
        }
    }

    /// Records a message handed over at `now` (ns).
    pub fn on_message(&mut self, msg: &[u8], now: i64) {
        let Some((index, stamp)) = read_header(msg) else {
            self.bad += 1;
            return;
        };
        if index < self.next || index >= self.count {
            self.bad += 1;
            return;
        }
        self.missing += index - self.next;
        self.next = index + 1;
        self.received += 1;
        if index >= self.skip {
            self.samples.push(now - stamp);
        }
    }

    /// Whether the last message has arrived.
    pub fn done(&self) -> bool {
        self.next >= self.count
    }

    /// Writes the samples to `path` and prints the `RESULT` line on stdout.
    pub fn finish(&self, path: &Path) -> Result<()> {
        let mut bytes = Vec::with_capacity(self.samples.len() * 8);
        for s in &self.samples {
            bytes.extend_from_slice(&s.to_ne_bytes());
        }
        std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))?;
        let missing = self.missing + self.count.saturating_sub(self.next);
        println!(
            "RESULT received={} missing={missing} bad={} samples={} status={}",
            self.received,
            self.bad,
            self.samples.len(),
            if missing == 0 && self.bad == 0 {
                "ok"
            } else {
                "fail"
            }
        );
        std::io::stdout().flush()?;
        Ok(())
    }
}

/// Reads a samples file written by [`Recorder::finish`] (or the C peer).
pub fn read_samples(path: &Path) -> Result<Vec<i64>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    ensure!(bytes.len() % 8 == 0, "{} is not whole i64s", path.display());
    Ok(bytes
        .chunks_exact(8)
        .map(|c| i64::from_ne_bytes(c.try_into().unwrap_or_default()))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<i64> = (1..=1000).collect();
        assert_eq!(percentile(&v, 0.5), Some(500));
        assert_eq!(percentile(&v, 0.99), Some(990));
        assert_eq!(percentile(&v, 0.999), Some(999));
        assert_eq!(percentile(&v, 1.0), Some(1000));
        assert_eq!(percentile(&[], 0.5), None);
    }

    #[test]
    fn the_recorder_counts_gaps_and_skips_the_warm_up() {
        let mut r = Recorder::new(5, 2);
        let mut m = [0u8; HEADER];
        for (i, now) in [(0u64, 10i64), (1, 11), (3, 20), (4, 25)] {
            write_header(&mut m, i, 5);
            r.on_message(&m, now);
        }
        r.on_message(&m, 30); // index 4 again
        assert_eq!((r.received, r.missing, r.bad), (4, 1, 1));
        assert_eq!(r.samples, vec![15, 20]);
        assert!(r.done());
    }
}
