//! CPU-bound processes beside a benchmark ([`Hogs`]): "measured under load", as the
//! developers' guide asks, rather than on a quiet machine.

use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};

use anyhow::{Context, Result};

/// `n` busy-looping shells, pinned to one CPU if `cpu` is given (to starve what else runs
/// there), killed when dropped, and by the kernel if the harness dies first.
pub struct Hogs {
    children: Vec<Child>,
}

impl Hogs {
    /// Starts `n` hogs (none if `n` is 0).
    pub fn start(n: usize, cpu: Option<usize>) -> Result<Self> {
        let mut children = Vec::new();
        for _ in 0..n {
            let mut cmd = match cpu {
                Some(c) => {
                    let mut t = Command::new("taskset");
                    t.args(["-c", &c.to_string(), "sh", "-c", "while :; do :; done"]);
                    t
                }
                None => {
                    let mut s = Command::new("sh");
                    s.args(["-c", "while :; do :; done"]);
                    s
                }
            };
            // SAFETY: prctl is async-signal-safe; the hog dies with the harness even when the
            // harness is killed and its Drop does not run.
            unsafe {
                cmd.pre_exec(|| {
                    if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == 0 {
                        Ok(())
                    } else {
                        Err(std::io::Error::last_os_error())
                    }
                });
            }
            let child = cmd
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .context("starting a CPU hog (sh, taskset)")?;
            children.push(child);
        }
        Ok(Self { children })
    }

    /// How many run.
    pub fn len(&self) -> usize {
        self.children.len()
    }

    /// Whether none runs.
    pub fn is_empty(&self) -> bool {
        self.children.is_empty()
    }
}

impl Drop for Hogs {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
