//! Packet captures with tcpdump inside a lab namespace, and decoding them with tshark.
//!
//! tcpdump runs as
//! `tcpdump -i <iface> -w <file> -U --immediate-mode -B 65536 -s 4096 -n -Z root [filter]`:
//!
//! - packets are written as they arrive;
//! - the kernel buffer is 64 MiB (`-B` counts KiB): with libpcap's default of 2 MiB, tcpdump
//!   lost 5-8% of the packets of a loaded 2-core machine ("dropped by kernel"), which skews every
//!   count a test takes from a capture. [`Capture::finish`] reports how many were lost anyway;
//! - the snapshot length is 4096 bytes (every lab link has an MTU of 1500): in immediate mode
//!   libpcap's ring has one slot per packet, sized for the snapshot length, so the default of
//!   262144 bytes left 256 slots in 64 MiB, and a tcpdump that fell 256 packets behind on a
//!   loaded machine lost packets (seen in CI: 10-93 per capture of a router test);
//! - `-Z root` keeps tcpdump from switching to the `tcpdump` user, which could not write into
//!   the lab directory.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::Duration;

use anyhow::{Result, bail};

use super::pgm_pcap::{PgmFrame, read_pgm};
use super::process::Process;
use super::util::{EXEC_TIMEOUT_TSHARK, run_checked};
use super::{Lab, Ns};

/// How long tcpdump may take to open the interface.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// tcpdump's kernel buffer (`-B`), in KiB: 64 MiB.
const BUFFER_KIB: &str = "65536";
/// Bytes kept of each packet: more than a lab link's MTU.
const SNAPLEN: &str = "4096";

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
        Ok(self.finish()?.path)
    }

    /// Stops tcpdump like [`Capture::stop`] and returns the file with tcpdump's count of the
    /// packets it lost.
    pub fn finish(self) -> Result<CaptureFile> {
        thread::sleep(Duration::from_millis(100));
        let status = self.process.stop(Duration::from_secs(5))?;
        let stderr = self.process.stderr().unwrap_or_default();
        if !status.success() {
            bail!("tcpdump exited with {status}: {stderr}");
        }
        Ok(CaptureFile {
            path: self.path.clone(),
            dropped_by_kernel: kernel_drops(&stderr),
        })
    }

    /// Stops tcpdump ([`Capture::finish`]) and reads the PGM/IP packets of the file.
    pub fn stop_read_pgm(self) -> Result<Vec<PgmFrame>> {
        self.finish()?.read_pgm()
    }
}

/// A finished capture (see [`Capture::finish`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaptureFile {
    /// The complete pcap file.
    pub path: PathBuf,
    /// Packets the capture lost for lack of kernel buffer space (tcpdump's "dropped by kernel").
    pub dropped_by_kernel: u64,
}

impl CaptureFile {
    /// The PGM/IP packets of the file ([`read_pgm`]).
    pub fn read_pgm(&self) -> Result<Vec<PgmFrame>> {
        read_pgm(&self.path)
    }
}

/// The packets tcpdump says it lost for lack of kernel buffer space: the sum of the
/// `<n> packets dropped by kernel` lines of its stderr (its exit summary), 0 if there is none.
pub fn kernel_drops(tcpdump_stderr: &str) -> u64 {
    tcpdump_stderr
        .lines()
        .filter_map(|l| l.trim().strip_suffix(" packets dropped by kernel"))
        .filter_map(|n| n.trim().parse::<u64>().ok())
        .sum()
}

impl Lab {
    /// Starts capturing on `iface` in `ns`, with an optional pcap filter (`"ip proto 113"`), and
    /// returns once tcpdump is listening.
    pub fn capture(&self, ns: &Ns, iface: &str, filter: Option<&str>) -> Result<Capture> {
        let path = self.file(&format!("{}-{iface}", short_node(ns)), "pcap");
        let path_str = path.to_string_lossy().into_owned();
        #[rustfmt::skip]
        let mut args = vec!["tcpdump", "-i", iface, "-w", &path_str, "-U", "--immediate-mode",
                            "-B", BUFFER_KIB, "-s", SNAPLEN, "-n", "-Z", "root"];
        if let Some(filter) = filter {
            args.push(filter);
        }
        let process = self.spawn(ns, &args)?;
        process.wait_for_output("listening on", START_TIMEOUT)?;
        Ok(Capture { process, path })
    }

    /// [`Lab::capture`] of the PGM/IP packets only (filter `ip proto 113`).
    pub fn capture_pgm(&self, ns: &Ns, iface: &str) -> Result<Capture> {
        self.capture(ns, iface, Some("ip proto 113"))
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
    Ok(tshark(pcap, display_filter, fields)?
        .lines()
        .map(|l| l.split('\t').map(str::to_owned).collect())
        .collect())
}

/// How many packets of `pcap` match the tshark display filter.
pub fn tshark_count(pcap: &Path, display_filter: &str) -> Result<usize> {
    Ok(tshark(pcap, display_filter, &["frame.number"])?
        .lines()
        .filter(|l| !l.trim().is_empty())
        .count())
}

/// `tshark -n -r <pcap> -Y <filter> -T fields -E separator=/t -e <field>...`: its output.
fn tshark(pcap: &Path, display_filter: &str, fields: &[&str]) -> Result<String> {
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
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_tcpdump_drop_counts() {
        let log = "tcpdump: listening on eth0, link-type EN10MB (Ethernet)\n\
                   120 packets captured\n130 packets received by filter\n\
                   7 packets dropped by kernel\n";
        assert_eq!(kernel_drops(log), 7);
        assert_eq!(kernel_drops("tcpdump: listening on eth0\n"), 0);
        assert_eq!(kernel_drops("x packets dropped by kernel\n"), 0);
    }
}
