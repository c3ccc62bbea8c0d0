//! Processes spawned inside lab namespaces.
//!
//! Each process leads its own process group, with stdout and stderr written to files in the lab
//! directory. It is killed (SIGKILL to the whole group) and reaped when its [`Process`] handle or
//! its [`Lab`](super::Lab) is dropped, whichever comes first. A process is signalled only while
//! it is still unreaped, so a recycled pid is never hit.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use super::util::{Deadline, kill_group, os_error, poll_until};

/// A signal that can be sent to a [`Process`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Signal {
    /// SIGHUP (daemons reload their configuration).
    Hup,
    /// SIGINT (tcpdump and most tools stop cleanly).
    Int,
    /// SIGKILL.
    Kill,
    /// SIGTERM.
    Term,
    /// SIGUSR1.
    Usr1,
    /// SIGUSR2.
    Usr2,
}

impl Signal {
    fn raw(self) -> libc::c_int {
        match self {
            Self::Hup => libc::SIGHUP,
            Self::Int => libc::SIGINT,
            Self::Kill => libc::SIGKILL,
            Self::Term => libc::SIGTERM,
            Self::Usr1 => libc::SIGUSR1,
            Self::Usr2 => libc::SIGUSR2,
        }
    }
}

/// A process running in a lab namespace (see [`Lab::spawn`](super::Lab::spawn)).
///
/// Dropping the handle kills the process group and reaps it.
#[derive(Debug)]
pub struct Process {
    inner: Arc<ProcInner>,
}

/// The state shared between a [`Process`] handle and its lab.
#[derive(Debug)]
pub(crate) struct ProcInner {
    pid: u32,
    label: String,
    stdout: PathBuf,
    stderr: PathBuf,
    child: Mutex<Tracked>,
}

#[derive(Debug)]
struct Tracked {
    child: Child,
    status: Option<ExitStatus>,
}

impl Tracked {
    /// Reaps the child if it has exited; remembers the status.
    fn poll(&mut self) -> Result<Option<ExitStatus>> {
        if self.status.is_none() {
            self.status = self.child.try_wait().context("waitpid")?;
        }
        Ok(self.status)
    }

    /// SIGKILL to the group and reap, unless already reaped.
    fn kill(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            kill_group(&mut self.child);
            self.status = self.child.wait().ok();
        }
        self.status
    }
}

impl ProcInner {
    pub(crate) fn new(child: Child, label: String, stdout: PathBuf, stderr: PathBuf) -> Self {
        Self {
            pid: child.id(),
            label,
            stdout,
            stderr,
            child: Mutex::new(Tracked {
                child,
                status: None,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Tracked> {
        self.child
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Kills the process group and reaps the leader; idempotent, never panics.
    pub(crate) fn terminate(&self) {
        self.lock().kill();
    }
}

impl Process {
    pub(crate) fn new(inner: Arc<ProcInner>) -> Self {
        Self { inner }
    }

    /// The process id (also its process group id).
    pub fn pid(&self) -> u32 {
        self.inner.pid
    }

    /// The label used to name its output files.
    pub fn label(&self) -> &str {
        &self.inner.label
    }

    /// The file receiving the process's stdout.
    pub fn stdout_path(&self) -> &Path {
        &self.inner.stdout
    }

    /// The file receiving the process's stderr.
    pub fn stderr_path(&self) -> &Path {
        &self.inner.stderr
    }

    /// Everything written to stdout so far (invalid UTF-8 replaced).
    pub fn stdout(&self) -> Result<String> {
        read_lossy(&self.inner.stdout)
    }

    /// Everything written to stderr so far (invalid UTF-8 replaced).
    pub fn stderr(&self) -> Result<String> {
        read_lossy(&self.inner.stderr)
    }

    /// The exit status if the process has exited (reaping it), `None` while it runs.
    pub fn try_wait(&self) -> Result<Option<ExitStatus>> {
        self.inner.lock().poll()
    }

    /// Whether the process is still running.
    pub fn is_running(&self) -> bool {
        matches!(self.try_wait(), Ok(None))
    }

    /// Waits up to `timeout` for the process to exit.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<Option<ExitStatus>> {
        poll_until(Deadline::after(timeout), || self.try_wait())
    }

    /// Sends `signal` to the process (not its group). Returns `false` if it had already exited.
    pub fn signal(&self, signal: Signal) -> Result<bool> {
        let mut tracked = self.inner.lock();
        if tracked.poll()?.is_some() {
            return Ok(false);
        }
        let pid = i32::try_from(self.inner.pid).context("pid out of range")?;
        // SAFETY: kill(2) has no memory effects; `pid` is our child and is not reaped yet (we
        // hold the lock that every reaping path takes).
        if unsafe { libc::kill(pid, signal.raw()) } != 0 {
            return Err(os_error(format!("kill({pid}, {signal:?})")));
        }
        Ok(true)
    }

    /// Stops the process: SIGINT, then SIGKILL to the group if it has not exited within
    /// `grace`. Returns the exit status.
    pub fn stop(&self, grace: Duration) -> Result<ExitStatus> {
        self.signal(Signal::Int)?;
        if let Some(status) = self.wait_timeout(grace)? {
            return Ok(status);
        }
        self.kill()
    }

    /// Kills the whole process group with SIGKILL and reaps the process.
    pub fn kill(&self) -> Result<ExitStatus> {
        match self.inner.lock().kill() {
            Some(status) => Ok(status),
            None => bail!("cannot reap {} (pid {})", self.inner.label, self.inner.pid),
        }
    }

    /// Waits until `needle` appears in the process's stdout or stderr. Fails if the process
    /// exits first or `timeout` passes; the error quotes its stderr.
    pub fn wait_for_output(&self, needle: &str, timeout: Duration) -> Result<()> {
        let found = poll_until(Deadline::after(timeout), || {
            if self.stdout()?.contains(needle) || self.stderr()?.contains(needle) {
                return Ok(Some(true));
            }
            if self.try_wait()?.is_some() {
                // One last look: the output may have landed just before the exit.
                let seen = self.stdout()?.contains(needle) || self.stderr()?.contains(needle);
                return Ok(Some(seen));
            }
            Ok(None)
        })?;
        if found != Some(true) {
            bail!(
                "{} (pid {}) did not print {needle:?} within {timeout:?} (status {:?}); stderr:\n{}",
                self.inner.label,
                self.inner.pid,
                self.try_wait().ok().flatten(),
                self.stderr().unwrap_or_default()
            );
        }
        Ok(())
    }
}

/// A process's memory as `/proc/<pid>/status` gives it, in KiB.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Memory {
    /// `VmRSS`: resident now.
    pub rss_kib: u64,
    /// `VmHWM`: the peak resident set so far.
    pub hwm_kib: u64,
}

/// The memory of process `pid` (any process, not only a lab's), `None` once it has exited
/// (a zombie has no memory lines) or if `/proc` cannot be read.
pub fn memory_of(pid: u32) -> Option<Memory> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
    };
    Some(Memory {
        rss_kib: field("VmRSS:")?,
        hwm_kib: field("VmHWM:")?,
    })
}

impl Process {
    /// Its memory now ([`memory_of`]); an error once it has exited.
    pub fn memory(&self) -> Result<Memory> {
        memory_of(self.pid()).with_context(|| {
            format!(
                "no memory figures for {} (pid {}): it has exited",
                self.inner.label, self.inner.pid
            )
        })
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.inner.terminate();
    }
}

fn read_lossy(path: &Path) -> Result<String> {
    let bytes = fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}
