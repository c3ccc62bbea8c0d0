//! A peer process of a benchmark run, its stdout and stderr lines kept with the time each
//! arrived.

#![allow(unsafe_code)]

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Instant;

use anyhow::{Context, Result};

use super::now;
use crate::lab::{Lab, Ns};

type Lines = Arc<Mutex<Vec<(Instant, String)>>>;

/// A process started in a namespace of a lab, in its own process group, whose output lines
/// are read by threads and time-stamped on arrival. [`Piped::kill`] ends the group.
#[derive(Debug)]
pub struct Piped {
    child: Child,
    out: Lines,
    err: Lines,
    readers: Vec<thread::JoinHandle<()>>,
}

impl Piped {
    /// Starts `args` in `ns` of `lab`.
    pub fn spawn(lab: &Lab, ns: &Ns, args: &[String]) -> Result<Self> {
        let mut cmd: Command = lab.command(ns, args);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let mut child = cmd
            .spawn()
            .with_context(|| format!("cannot start {}", args.join(" ")))?;
        let out: Lines = Arc::default();
        let err: Lines = Arc::default();
        let mut readers = Vec::new();
        if let Some(p) = child.stdout.take() {
            readers.push(Self::reader(p, Arc::clone(&out)));
        }
        if let Some(p) = child.stderr.take() {
            readers.push(Self::reader(p, Arc::clone(&err)));
        }
        Ok(Self {
            child,
            out,
            err,
            readers,
        })
    }

    fn reader(pipe: impl std::io::Read + Send + 'static, lines: Lines) -> thread::JoinHandle<()> {
        thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                let t = now();
                if let Ok(mut v) = lines.lock() {
                    v.push((t, line));
                }
            }
        })
    }

    fn lines(which: &Lines) -> Vec<(Instant, String)> {
        which.lock().map(|v| v.clone()).unwrap_or_default()
    }

    /// The stdout lines so far, each with its arrival time.
    pub fn stdout(&self) -> Vec<(Instant, String)> {
        Self::lines(&self.out)
    }

    /// The stderr lines so far, each with its arrival time.
    pub fn stderr(&self) -> Vec<(Instant, String)> {
        Self::lines(&self.err)
    }

    /// The first stdout line starting with `prefix`.
    pub fn find_out(&self, prefix: &str) -> Option<String> {
        self.stdout()
            .into_iter()
            .map(|(_, l)| l)
            .find(|l| l.starts_with(prefix))
    }

    /// The exit status, if the process has exited.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Sends `sig` to the process (not its group) unless it has exited.
    pub fn signal(&mut self, sig: libc::c_int) {
        if self.try_wait().is_none() {
            if let Ok(pid) = i32::try_from(self.child.id()) {
                // SAFETY: kill(2) has no memory effects; `pid` is our child, not yet reaped.
                unsafe {
                    libc::kill(pid, sig);
                }
            }
        }
    }

    /// SIGKILL to the process group, reap, and collect the output threads.
    pub fn kill(mut self) {
        if self.try_wait().is_none() {
            if let Ok(pid) = i32::try_from(self.child.id()) {
                // SAFETY: as in `signal`; the group id is our unreaped child's pid.
                unsafe {
                    libc::kill(-pid, libc::SIGKILL);
                }
            }
            let _ = self.child.wait();
        }
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
    }

    /// The last `n` lines of stderr that the program wrote itself (no backtrace frames).
    pub fn stderr_tail(&self, n: usize) -> String {
        let e: Vec<_> = self
            .stderr()
            .into_iter()
            .filter(|(_, l)| !l.starts_with(' ') && !l.starts_with("Stack backtrace"))
            .collect();
        e[e.len().saturating_sub(n)..]
            .iter()
            .map(|(_, l)| format!("    {l}\n"))
            .collect()
    }
}
