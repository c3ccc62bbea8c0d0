//! Packet captures with tcpdump inside a lab namespace, and decoding them with tshark.
//!
//! tcpdump runs as `tcpdump -i <iface> -w <file> -U --immediate-mode -n -Z root [filter]`:
//! packets are written as they arrive, and `-Z root` keeps tcpdump from switching to the
//! `tcpdump` user, which could not write into the lab directory.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::Duration;

use anyhow::{Result, bail};

use super::process::Process;
use super::util::{EXEC_TIMEOUT_TSHARK, run_checked};
use super::{Lab, Ns};

/// How long tcpdump may take to open the interface.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// A running tcpdump (see [`Lab::capture`]). Dropping it kills tcpdump; the file stays until the
/// lab is dropped.
#[derive(Debug)]
pub struct Capture {
    process: Process,
    path: PathBuf,
}

impl Capture {
    /// The pcap file being written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The tcpdump process.
    pub fn process(&self) -> &Process {
        &self.process
    }

    /// Stops tcpdump cleanly (a short settle for packets in flight, then SIGINT and a wait) and
    /// returns the path of the complete pcap file.
    pub fn stop(self) -> Result<PathBuf> {
        thread::sleep(Duration::from_millis(100));
        let status = self.process.stop(Duration::from_secs(5))?;
        if !status.success() {
            bail!(
                "tcpdump exited with {status}: {}",
                self.process.stderr().unwrap_or_default()
            );
        }
        Ok(self.path.clone())
    }
}

impl Lab {
    /// Starts capturing on `iface` in `ns`, with an optional pcap filter (`"ip proto 113"`), and
    /// returns once tcpdump is listening.
    pub fn capture(&self, ns: &Ns, iface: &str, filter: Option<&str>) -> Result<Capture> {
        let path = self.file(&format!("{}-{iface}", short_node(ns)), "pcap");
        let path_str = path.to_string_lossy().into_owned();
        #[rustfmt::skip]
        let mut args = vec!["tcpdump", "-i", iface, "-w", &path_str, "-U", "--immediate-mode",
                            "-n", "-Z", "root"];
        if let Some(filter) = filter {
            args.push(filter);
        }
        let process = self.spawn(ns, &args)?;
        process.wait_for_output("listening on", START_TIMEOUT)?;
        Ok(Capture { process, path })
    }
}

/// The node part of a lab namespace name (after the last `-`).
fn short_node(ns: &Ns) -> &str {
    ns.name().rsplit('-').next().unwrap_or(ns.name())
}

/// Decodes `pcap` with tshark and returns the requested fields of each packet matching the
/// display filter (`"pgm.type == 0x04"`, `"udp.dstport == 5000"`), one row per packet.
///
/// PGM/IP is decoded natively. tshark does not decode PGM/UDP unless told to with
/// `-d udp.port==3055,pgm`: run tshark directly for that.
pub fn tshark_fields(
    pcap: &Path,
    display_filter: &str,
    fields: &[&str],
) -> Result<Vec<Vec<String>>> {
    let mut cmd = Command::new("tshark");
    cmd.arg("-n").arg("-r").arg(pcap).args([
        "-Y",
        display_filter,
        "-T",
        "fields",
        "-E",
        "separator=/t",
    ]);
    for field in fields {
        cmd.args(["-e", field]);
    }
    let out = run_checked(cmd, EXEC_TIMEOUT_TSHARK)?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.split('\t').map(str::to_owned).collect())
        .collect())
}

/// How many packets of `pcap` match the tshark display filter.
pub fn tshark_count(pcap: &Path, display_filter: &str) -> Result<usize> {
    let mut cmd = Command::new("tshark");
    cmd.arg("-n").arg("-r").arg(pcap).args([
        "-Y",
        display_filter,
        "-T",
        "fields",
        "-e",
        "frame.number",
    ]);
    let out = run_checked(cmd, EXEC_TIMEOUT_TSHARK)?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .count())
}
