//! Small helpers shared by the lab modules: wall-clock deadlines and bounded command runs.

use std::io::{self, Read};
use std::process::{Child, Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// How long a setup command (`ip`, `nft`, `sysctl`) may take before it is killed.
pub(crate) const SETUP_TIMEOUT: Duration = Duration::from_secs(30);

/// How long tshark may take to decode a capture.
pub(crate) const EXEC_TIMEOUT_TSHARK: Duration = Duration::from_secs(120);

/// A point in wall-clock time after which a wait gives up.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Deadline(Instant);

impl Deadline {
    /// A deadline `timeout` from now.
    #[expect(
        clippy::disallowed_methods,
        reason = "a test harness times out on the wall clock"
    )]
    pub(crate) fn after(timeout: Duration) -> Self {
        Self(Instant::now() + timeout)
    }

    /// Whether the deadline has passed.
    pub(crate) fn expired(self) -> bool {
        self.remaining().is_zero()
    }

    /// Time left until the deadline, zero once it has passed.
    #[expect(
        clippy::disallowed_methods,
        reason = "a test harness times out on the wall clock"
    )]
    pub(crate) fn remaining(self) -> Duration {
        self.0.saturating_duration_since(Instant::now())
    }
}

/// Polls `done` with a growing nap (1 ms up to 20 ms) until it returns `Some` or `deadline` passes.
pub(crate) fn poll_until<T>(
    deadline: Deadline,
    mut done: impl FnMut() -> Result<Option<T>>,
) -> Result<Option<T>> {
    let mut nap = Duration::from_millis(1);
    loop {
        if let Some(v) = done()? {
            return Ok(Some(v));
        }
        if deadline.expired() {
            return Ok(None);
        }
        thread::sleep(nap.min(deadline.remaining()));
        nap = (nap * 2).min(Duration::from_millis(20));
    }
}

/// The command line of `cmd`, for error messages.
pub(crate) fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        s.push(' ');
        s.push_str(&arg.to_string_lossy());
    }
    s
}

/// Runs `cmd` to completion with stdin closed and stdout/stderr captured, killing it (and its
/// process group) after `timeout`. A non-zero exit status is *not* an error here.
pub(crate) fn run_output(mut cmd: Command, timeout: Duration) -> Result<Output> {
    use std::os::unix::process::CommandExt;

    let desc = describe(&cmd);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot run `{desc}`"))?;
    let out = reader(child.stdout.take());
    let err = reader(child.stderr.take());
    let deadline = Deadline::after(timeout);
    let status = poll_until(deadline, || Ok(child.try_wait()?))?;
    let Some(status) = status else {
        kill_group(&mut child);
        // The reader threads are left detached: a grandchild may still hold the pipes open.
        bail!("`{desc}` did not finish within {timeout:?}");
    };
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    Ok(Output {
        status,
        stdout,
        stderr,
    })
}

/// Like [`run_output`], but a non-zero exit status is an error carrying the command's stderr.
pub(crate) fn run_checked(cmd: Command, timeout: Duration) -> Result<Output> {
    let desc = describe(&cmd);
    let out = run_output(cmd, timeout)?;
    if !out.status.success() {
        bail!(
            "`{desc}` failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim(),
            String::from_utf8_lossy(&out.stdout).trim()
        );
    }
    Ok(out)
}

/// Sends SIGKILL to the process group led by `child` (spawned with `process_group(0)`) and reaps
/// the leader. Safe against pid reuse because the leader is reaped only afterwards.
pub(crate) fn kill_group(child: &mut Child) {
    if let Ok(None) = child.try_wait() {
        if let Ok(pid) = i32::try_from(child.id()) {
            // SAFETY: kill(2) has no memory effects; the group id is our unreaped child's pid.
            unsafe {
                libc::kill(-pid, libc::SIGKILL);
            }
        }
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Whether a process with this pid exists (in our pid namespace).
pub(crate) fn pid_alive(pid: u32) -> bool {
    std::path::Path::new("/proc").join(pid.to_string()).exists()
}

fn reader(pipe: Option<impl Read + Send + 'static>) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut p) = pipe {
            let _ = p.read_to_end(&mut buf);
        }
        buf
    })
}

/// Whether the effective user is root.
pub(crate) fn euid_is_root() -> bool {
    // SAFETY: geteuid(2) cannot fail and has no side effects.
    unsafe { libc::geteuid() == 0 }
}

/// Maps an `io::Error` from a raw libc call to a contextual anyhow error.
pub(crate) fn os_error(what: impl std::fmt::Display) -> anyhow::Error {
    anyhow::Error::new(io::Error::last_os_error()).context(what.to_string())
}
