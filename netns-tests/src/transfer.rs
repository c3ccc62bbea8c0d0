//! Command lines of the `pgm` tool (pgm-core's CLI) for a test transfer over PGM/IP.
//!
//! A [`Transfer`] is `count` messages of `size` bytes to one group. Its receivers verify what
//! they deliver (`--verify`: the sender's pattern, in order, intact) and exit with status 0
//! only once they have delivered all `count` messages; they print `started` once they have the
//! session, and a `RESULT ...` line at the end.

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::lab::{Host, Lab, Process};

/// How long [`Transfer::start`] gives the receivers to join before the sender starts.
const JOIN_TIME: Duration = Duration::from_millis(1500);

/// A transfer in progress ([`Transfer::start`]).
#[derive(Debug)]
pub struct Running {
    /// One receiver per host, in the order given.
    pub receivers: Vec<Process>,
    /// The sender.
    pub sender: Process,
}

impl Running {
    /// Waits up to `timeout` for every receiver to deliver everything
    /// ([`wait_delivered`]), then up to 20 s for the sender to finish lingering.
    pub fn wait(&self, timeout: Duration) -> Result<()> {
        for (i, r) in self.receivers.iter().enumerate() {
            wait_delivered(r, timeout).with_context(|| format!("receiver {}", i + 1))?;
        }
        let _ = self.sender.wait_timeout(Duration::from_secs(20));
        Ok(())
    }
}

/// One transfer with the `pgm` tool (see the [module documentation](self)).
#[derive(Clone, Copy, Debug)]
pub struct Transfer<'a> {
    /// The `pgm` binary.
    pub pgm: &'a Path,
    /// The session's multicast group.
    pub group: Ipv4Addr,
    /// Messages sent, and expected by every receiver.
    pub count: usize,
    /// Bytes per message.
    pub size: usize,
}

impl Transfer<'_> {
    /// Starts a receiver on each of `hosts` (`idle_timeout_s` as in
    /// [`Transfer::recv_args`]), gives them 1.5 s to join, starts the sender on `source`
    /// ([`Transfer::send_args`] with `rate` and `linger_s`, then `extra` arguments) and
    /// waits until every receiver has the session.
    pub fn start(
        &self,
        lab: &Lab,
        hosts: &[Host],
        source: &Host,
        (rate, linger_s, idle_timeout_s): (u64, u32, u32),
        extra: &[&str],
    ) -> Result<Running> {
        let receivers = hosts
            .iter()
            .map(|h| lab.spawn(&h.ns, &self.recv_args(h.addr(), idle_timeout_s)))
            .collect::<Result<Vec<_>>>()
            .context("spawn the receivers")?;
        std::thread::sleep(JOIN_TIME);
        let mut args = self.send_args(source.addr(), rate, linger_s);
        args.extend(extra.iter().map(|a| (*a).to_owned()));
        let sender = lab.spawn(&source.ns, &args).context("spawn the sender")?;
        for r in &receivers {
            r.wait_for_output("started", Duration::from_secs(10))
                .context("session start")?;
        }
        Ok(Running { receivers, sender })
    }

    /// The `--network` of a host with address `local`: `<local>;<group>`.
    pub fn network(&self, local: Ipv4Addr) -> String {
        format!("{local};{}", self.group)
    }

    /// A receiver on the host with address `local`, which gives up after `idle_timeout_s`
    /// seconds without data: `pgm recv --ip --network <local;group> --count <count> --verify
    /// --size <size> --idle-timeout <idle_timeout_s> -o /dev/null`.
    pub fn recv_args(&self, local: Ipv4Addr, idle_timeout_s: u32) -> Vec<String> {
        let mut args = self.common("recv", local);
        args.extend([
            "--verify".to_owned(),
            "--size".to_owned(),
            self.size.to_string(),
        ]);
        args.extend(["--idle-timeout".to_owned(), idle_timeout_s.to_string()]);
        args.extend(["-o".to_owned(), "/dev/null".to_owned()]);
        args
    }

    /// The sender on the host with address `local`, at `rate` bytes/s, answering NAKs for
    /// `linger_s` seconds after the last message: `pgm send --ip --network <local;group>
    /// --count <count> --size <size> --rate <rate> --linger <linger_s>`.
    pub fn send_args(&self, local: Ipv4Addr, rate: u64, linger_s: u32) -> Vec<String> {
        let mut args = self.common("send", local);
        args.extend(["--size".to_owned(), self.size.to_string()]);
        args.extend(["--rate".to_owned(), rate.to_string()]);
        args.extend(["--linger".to_owned(), linger_s.to_string()]);
        args
    }

    fn common(&self, command: &str, local: Ipv4Addr) -> Vec<String> {
        vec![
            self.pgm.to_string_lossy().into_owned(),
            command.to_owned(),
            "--ip".to_owned(),
            "--network".to_owned(),
            self.network(local),
            "--count".to_owned(),
            self.count.to_string(),
        ]
    }
}

/// Waits up to `timeout` for a receiver ([`Transfer::recv_args`], or any program that exits
/// with status 0 once it has delivered everything) to exit. `Ok` only if it exited with status
/// 0; otherwise an error giving its status (or that it still runs) and its stderr.
pub fn wait_delivered(receiver: &Process, timeout: Duration) -> Result<()> {
    let status = match receiver.wait_timeout(timeout)? {
        Some(s) if s.success() => return Ok(()),
        Some(s) => s.to_string(),
        None => format!("still running after {timeout:?}"),
    };
    bail!(
        "did not deliver everything ({status}): {}",
        receiver.stderr().unwrap_or_default()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_lines() {
        let t = Transfer {
            pgm: Path::new("/t/pgm"),
            group: Ipv4Addr::new(239, 192, 7, 1),
            count: 3000,
            size: 1000,
        };
        let local = Ipv4Addr::new(10, 7, 3, 11);
        assert_eq!(
            t.recv_args(local, 15).join(" "),
            "/t/pgm recv --ip --network 10.7.3.11;239.192.7.1 --count 3000 --verify --size 1000 \
             --idle-timeout 15 -o /dev/null"
        );
        assert_eq!(
            t.send_args(local, 1_000_000, 8).join(" "),
            "/t/pgm send --ip --network 10.7.3.11;239.192.7.1 --count 3000 --size 1000 \
             --rate 1000000 --linger 8"
        );
    }
}
