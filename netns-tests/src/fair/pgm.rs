//! The `pgm` tool as the fairness harness runs it: command lines, and what it prints at exit.

use std::net::Ipv4Addr;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use anyhow::Result;
use pgm_netns_tests::lab::Process;

use super::now;
use super::topo::Host;

/// `pgm send` of `count` messages from `host` to `group`.
pub(crate) fn send_args(
    pgm: &str,
    host: &Host,
    group: Ipv4Addr,
    count: u64,
    size: usize,
    pgmcc: bool,
    rate: u64,
) -> Vec<String> {
    let mut v: Vec<String> = [pgm, "send", "--network"]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    v.push(format!("{};{group}", host.addr));
    v.extend(["--count".to_owned(), count.to_string()]);
    v.extend(["--size".to_owned(), size.to_string()]);
    v.extend(["--linger".to_owned(), "2".to_owned()]);
    v.extend([
        "--pgmcc".to_owned(),
        if pgmcc { "on" } else { "off" }.to_owned(),
    ]);
    v.extend(["--rate".to_owned(), rate.to_string()]);
    v
}

/// `pgm recv` on `host` of `source`'s session on `group`: into `out`, or verified
/// (`verify = Some(count)`).
pub(crate) fn recv_args(
    pgm: &str,
    host: &Host,
    group: Ipv4Addr,
    source: Ipv4Addr,
    out: &str,
    verify: Option<(u64, usize)>,
) -> Vec<String> {
    let mut v: Vec<String> = [pgm, "recv", "--network"]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    v.push(format!("{};{group}", host.addr));
    v.extend(["--source".to_owned(), source.to_string()]);
    v.extend(["--idle-timeout".to_owned(), "5".to_owned()]);
    v.extend(["-o".to_owned(), out.to_owned()]);
    if let Some((count, size)) = verify {
        v.extend([
            "--verify".to_owned(),
            "--count".to_owned(),
            count.to_string(),
        ]);
        v.extend(["--size".to_owned(), size.to_string()]);
    }
    v
}

/// What a `pgm send` printed when it finished.
#[derive(Clone, Debug, Default)]
pub(crate) struct SenderReport {
    /// Whether it finished its count (and printed its counters) in time.
    pub(crate) finished: bool,
    /// Seconds from its start to its exit (linger included).
    pub(crate) secs: f64,
    pub(crate) rdata: Option<u64>,
    pub(crate) naks: Option<u64>,
    pub(crate) acks: Option<u64>,
    pub(crate) elections: Option<u64>,
    pub(crate) halvings: Option<u64>,
    pub(crate) probes: Option<u64>,
    pub(crate) timeouts: Option<u64>,
}

/// The number after `key ` in `line`, after `from` (the first occurrence).
pub(crate) fn number_after(line: &str, from: &str, key: &str) -> Option<u64> {
    let rest = &line[line.find(from)? + from.len()..];
    let at = rest.find(&format!("{key} "))? + key.len() + 1;
    let digits: String = rest[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

impl SenderReport {
    pub(crate) fn parse(stderr: &str, finished: bool, secs: f64) -> Self {
        let find = |prefix: &str| {
            stderr
                .lines()
                .find(|l| l.starts_with(prefix))
                .unwrap_or_default()
                .to_owned()
        };
        let sent_line = find("pgm: sent ");
        let cc_line = find("pgm: PGMCC: ");
        let cc = |key: &str| number_after(&cc_line, "PGMCC:", key);
        Self {
            finished,
            secs,
            rdata: number_after(&sent_line, "ODATA", "RDATA"),
            naks: number_after(&sent_line, "RDATA", "NAKs received"),
            acks: cc("acks"),
            elections: cc("elections"),
            halvings: cc("halvings"),
            probes: cc("probes"),
            timeouts: cc("timeouts"),
        }
    }

    /// `acks/halvings/probes/timeouts`, or `-` with PGMCC off or unfinished.
    pub(crate) fn cc_cell(&self) -> String {
        match (self.acks, self.halvings, self.probes, self.timeouts) {
            (Some(a), Some(h), Some(p), Some(t)) => format!("{a}/{h}/{p}/{t}"),
            _ if !self.finished => "unfinished".to_owned(),
            _ => "-".to_owned(),
        }
    }

    pub(crate) fn rdata_cell(&self) -> String {
        self.rdata.map_or_else(|| "-".to_owned(), |r| r.to_string())
    }
}

/// Waits up to `timeout` for `pgm send` to exit and reads its report.
pub(crate) fn finish_sender(
    send: &Process,
    started: Instant,
    timeout: Duration,
) -> Result<SenderReport> {
    let status = send.wait_timeout(timeout)?;
    let secs = now().duration_since(started).as_secs_f64();
    let finished = status.is_some_and(|s: ExitStatus| s.success());
    if status.is_none() {
        let _ = send.kill();
    }
    Ok(SenderReport::parse(&send.stderr()?, finished, secs))
}

/// `acks_sent=N` from a `pgm recv`'s stderr.
pub(crate) fn acks_sent(recv: &Process) -> u64 {
    recv.stderr()
        .ok()
        .and_then(|e| {
            let at = e.find("acks_sent=")? + "acks_sent=".len();
            e[at..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect::<String>()
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

/// Prints a process's stderr lines that start with `pgm:` (its summary), indented.
pub(crate) fn print_summary(label: &str, p: &Process) {
    let text = p.stderr().unwrap_or_default();
    for l in text.lines().filter(|l| {
        l.starts_with("pgm: sent")
            || l.starts_with("pgm: PGMCC")
            || l.starts_with("pgm: request")
            || l.contains(": received ")
            || l.contains("unrecoverable")
            || l.starts_with("pgm: packets not taken")
    }) {
        println!("    {label}: {l}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sender_report_is_parsed() {
        let err = "pgm: sending as TSI 1.2.3.4.5.6.32768 to 239.192.7.1\n\
                   pgm: sent 100 messages, 140000 bytes; ODATA 100, RDATA 7, NAKs received 5, NCFs 5, SPMs 9\n\
                   pgm: PGMCC: acks 90 (others 0, invalid 0), reports 12, elections 1, halvings 3, probes 2, timeouts 1, ackers dropped 0\n";
        let r = SenderReport::parse(err, true, 1.0);
        assert_eq!(r.rdata, Some(7));
        assert_eq!(r.naks, Some(5));
        assert_eq!(r.acks, Some(90));
        assert_eq!(r.elections, Some(1));
        assert_eq!(r.cc_cell(), "90/3/2/1");
    }
}
