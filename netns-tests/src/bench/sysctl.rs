//! The socket-buffer sysctls of a benchmark run.
//!
//! `net.core.rmem_*`/`wmem_*` exist only in the initial network namespace (they are
//! read-only inside others), so a harness raises them there for the run and restores them
//! afterwards.

use anyhow::{Context, Result};

/// Raised `net.core` buffer sysctls, restored on drop: `rmem_max`/`wmem_max` at least 4 MiB
/// (our transports and the UDP peers ask for 4 MiB, which the kernel doubles to 8 MiB),
/// `rmem_default` 8 MiB and `wmem_default` 4 MiB, so that the OpenPGM peer, which sets no
/// buffer size, gets the same 8 MiB receive buffer.
#[derive(Debug)]
pub struct SysctlGuard {
    saved: Vec<(&'static str, String)>,
}

impl SysctlGuard {
    const MIB4: u64 = 4 << 20;

    /// Raises the sysctls, remembering what they were.
    pub fn raise() -> Result<Self> {
        let wanted: [(&str, u64, bool); 4] = [
            // (key, value, only raise)
            ("rmem_max", Self::MIB4, true),
            ("wmem_max", Self::MIB4, true),
            ("rmem_default", 2 * Self::MIB4, false),
            ("wmem_default", Self::MIB4, false),
        ];
        let mut g = Self { saved: Vec::new() };
        for (key, value, only_raise) in wanted {
            let path = format!("/proc/sys/net/core/{key}");
            let cur = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {path}"))?
                .trim()
                .to_owned();
            let cur_n: u64 = cur.parse().unwrap_or(0);
            if (only_raise && cur_n >= value) || cur_n == value {
                continue;
            }
            std::fs::write(&path, value.to_string()).with_context(|| format!("writing {path}"))?;
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

/// The four sysctls as `net.core.KEY=VALUE` words, for the record of a run.
pub fn read_sysctls() -> String {
    ["rmem_max", "wmem_max", "rmem_default", "wmem_default"]
        .iter()
        .map(|k| {
            let v = std::fs::read_to_string(format!("/proc/sys/net/core/{k}")).unwrap_or_default();
            format!("net.core.{k}={}", v.trim())
        })
        .collect::<Vec<_>>()
        .join(" ")
}
