//! Clocks, statistics, formatting, the stop flag, socket options and the global socket
//! buffer limits.

use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Instant;

use anyhow::{Context, Result, ensure};

use crate::RCVBUF;

#[expect(
    clippy::disallowed_methods,
    reason = "a benchmark harness measures on the wall clock"
)]
pub(crate) fn now() -> Instant {
    Instant::now()
}

/// `clock` in nanoseconds.
fn clock_ns(clock: libc::clockid_t) -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into `ts`, which lives for the call.
    unsafe {
        libc::clock_gettime(clock, &mut ts);
    }
    ts.tv_sec * 1_000_000_000 + ts.tv_nsec
}

/// CLOCK_REALTIME in nanoseconds: the clock of pcap and `SO_TIMESTAMPNS` timestamps.
pub(crate) fn realtime_ns() -> i64 {
    clock_ns(libc::CLOCK_REALTIME)
}

/// CPU time of the calling thread, in nanoseconds. It includes the softirq work the kernel
/// does in the thread's context (the whole veth - router - veth path of a send) unless the
/// kernel accounts IRQ time separately (`CONFIG_IRQ_TIME_ACCOUNTING`) or defers the softirq
/// to ksoftirqd.
pub(crate) fn thread_cpu_ns() -> i64 {
    clock_ns(libc::CLOCK_THREAD_CPUTIME_ID)
}

pub(crate) fn median(v: &[f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// The value at quantile `q` (0..=1) of sorted `v`, nearest rank.
pub(crate) fn quantile(sorted: &[i64], q: f64) -> Option<i64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

pub(crate) fn parse_list<T: std::str::FromStr>(s: &str, what: &str) -> Result<Vec<T>> {
    s.split(',')
        .filter(|x| !x.trim().is_empty())
        .map(|x| {
            x.trim()
                .parse()
                .map_err(|_| anyhow::anyhow!("bad {what}: {x:?}"))
        })
        .collect()
}

pub(crate) fn fmt_pps(p: f64) -> String {
    if p >= 1e6 {
        format!("{:.2}M", p / 1e6)
    } else {
        format!("{:.1}k", p / 1e3)
    }
}

pub(crate) fn fmt_us(ns: i64) -> String {
    format!("{:.1} µs", ns as f64 / 1e3)
}

pub(crate) fn machine() -> String {
    let nproc = thread::available_parallelism().map_or(0, |n| n.get());
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or("unknown", |(_, m)| m.trim())
        .to_owned();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("nproc {nproc}, CPU {model}, kernel {}", kernel.trim())
}

pub(crate) fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// Set by SIGINT or SIGTERM: every loop stops, so the labs are dropped (and cleaned up) and
/// the sysctls restored.
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

pub(crate) fn install_stop_handler() -> Result<()> {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: a zeroed sigaction is valid; the handler only stores to an atomic, which is
        // async-signal-safe.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_stop_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
            if libc::sigaction(sig, &sa, std::ptr::null_mut()) != 0 {
                return Err(os_err("sigaction"));
            }
        }
    }
    Ok(())
}

pub(crate) fn stopped() -> bool {
    STOP.load(Ordering::Relaxed)
}

pub(crate) fn check_stop() -> Result<()> {
    ensure!(!stopped(), "interrupted");
    Ok(())
}

pub(crate) fn os_err(what: &str) -> anyhow::Error {
    anyhow::Error::new(io::Error::last_os_error()).context(what.to_owned())
}

pub(crate) fn setsockopt_bytes(fd: RawFd, level: i32, name: i32, value: &[u8]) -> Result<()> {
    // SAFETY: the pointer and length describe `value`, which lives for the call.
    let r = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            value.as_ptr().cast(),
            value.len() as libc::socklen_t,
        )
    };
    if r != 0 {
        return Err(os_err("setsockopt"));
    }
    Ok(())
}

pub(crate) fn setsockopt_int(fd: RawFd, level: i32, name: i32, value: i32) -> Result<()> {
    setsockopt_bytes(fd, level, name, &value.to_ne_bytes())
}

// Socket buffer limits (global sysctls)

pub(crate) struct SysctlGuard {
    saved: Vec<(&'static str, String)>,
}

impl SysctlGuard {
    pub(crate) fn raise() -> Result<Self> {
        let mut g = Self { saved: Vec::new() };
        for key in ["rmem_max", "wmem_max"] {
            let path = format!("/proc/sys/net/core/{key}");
            let cur = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {path}"))?
                .trim()
                .to_owned();
            if cur.parse::<usize>().unwrap_or(0) >= RCVBUF {
                continue;
            }
            std::fs::write(&path, RCVBUF.to_string()).with_context(|| format!("writing {path}"))?;
            g.saved.push((key, cur));
        }
        Ok(g)
    }
}

impl Drop for SysctlGuard {
    fn drop(&mut self) {
        for (key, value) in self.saved.iter().rev() {
            let _ = std::fs::write(format!("/proc/sys/net/core/{key}"), value);
        }
    }
}
