//! What the end-host benchmark harnesses (`throughput`, `latency`) share: a fresh
//! two-namespace veth lab per run ([`PairLab`]), peer processes whose output lines are
//! time-stamped as they arrive ([`Piped`]), the socket-buffer sysctls of the initial
//! namespace raised for a run ([`SysctlGuard`]), the plain UDP multicast throughput peer
//! ([`udpmc`]), CPU-bound processes beside a run ([`Hogs`]), and small helpers: the clock, option lists, `key=value` result lines, the
//! machine's description.

pub mod hog;
pub mod pair;
pub mod piped;
pub mod stamp;
pub mod sysctl;
pub mod udpmc;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, ensure};

pub use hog::Hogs;
pub use pair::PairLab;
pub use piped::Piped;
pub use sysctl::{SysctlGuard, read_sysctls};

use crate::bins::target_dir;

/// The wall clock of a harness (a benchmark measures on it; the engines never do).
#[expect(
    clippy::disallowed_methods,
    reason = "a benchmark harness measures on the wall clock"
)]
pub fn now() -> Instant {
    Instant::now()
}

/// `CLOCK_MONOTONIC` in nanoseconds: one clock for every process of the machine, whatever
/// network namespace it is in (only time namespaces would shift it, and the labs make none),
/// so a stamp written by a sender in one namespace can be compared with the time a receiver
/// in another reads. The C peer reads the same clock.
pub fn monotonic_ns() -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec it is given and nothing else.
    #[allow(unsafe_code)]
    unsafe {
        libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts);
    }
    ts.tv_sec * 1_000_000_000 + ts.tv_nsec
}

/// The median of `v` (sorted in place), `None` when empty.
pub fn median(v: &mut [f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// A comma-separated option value, e.g. `--sizes 64,1400`.
pub fn parse_list<T: std::str::FromStr>(s: &str, what: &str) -> Result<Vec<T>> {
    s.split(',')
        .filter(|x| !x.trim().is_empty())
        .map(|x| {
            x.trim()
                .parse()
                .map_err(|_| anyhow::anyhow!("bad {what}: {x:?}"))
        })
        .collect()
}

/// `key=value` fields of a line like `RESULT received=10 bytes=640 status=ok`.
pub fn fields(line: &str) -> BTreeMap<&str, &str> {
    line.split_whitespace()
        .filter_map(|w| w.split_once('='))
        .collect()
}

/// Field `key` of [`fields`], parsed.
pub fn field<T: std::str::FromStr>(f: &BTreeMap<&str, &str>, key: &str) -> Option<T> {
    f.get(key).and_then(|v| v.parse().ok())
}

/// CPUs, CPU model and kernel, for the record of a run.
pub fn machine() -> String {
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
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

/// The 1, 5 and 15 minute load averages.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// Binary `bin` of workspace package `package` in the release profile, built first when
/// `build` is set (`cargo build --release`).
pub fn release_bin(package: &str, bin: &str, build: bool) -> Result<PathBuf> {
    if build {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
        let st = Command::new(cargo)
            .args(["build", "--release", "-p", package, "--bin", bin])
            .arg("--manifest-path")
            .arg(&manifest)
            .status()
            .context("running cargo build")?;
        ensure!(
            st.success(),
            "cargo build --release -p {package} --bin {bin} failed"
        );
    }
    let p = target_dir().join("release").join(bin);
    ensure!(
        p.is_file(),
        "{} is missing: cargo build --release -p {package} --bin {bin}",
        p.display()
    );
    Ok(p)
}

/// The UDP port of every data packet of a benchmark run (PGM/UDP multicast and unicast, as
/// OpenPGM's examples use one port for both; and plain UDP).
pub const PORT: u16 = 3056;
