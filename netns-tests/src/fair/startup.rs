//! What a PGM source sends in its first seconds (`--capture-start`): a tcpdump on the source
//! host's `eth0`, decoded by tshark as PGM/UDP.
//!
//! It answers one question: how much ODATA leaves before the first feedback (an ACK or a NAK
//! from a receiver) reaches the source. Until a PGMCC source has elected an acker, it sends
//! under its rate limit alone (`core/src/proto/pgmcc.rs`, "No acker, no window"); with
//! `--rate 0` that is as fast as the host can.

use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use pgm_netns_tests::lab::Capture;

use super::sleep_until;
use super::topo::{Host, Star};

/// PGM packet types (RFC 3208 §8; ACK 0x0D as OpenPGM sends it, `docs/pgmcc.md`).
const ODATA: u8 = 0x04;
const RDATA: u8 = 0x05;
const NAK: u8 = 0x08;
const ACK: u8 = 0x0d;

/// The first seconds of one source, from a capture on its host.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct Startup {
    /// Seconds the capture covers from the first ODATA.
    pub(crate) secs: f64,
    /// From the first ODATA to the first ACK or NAK arriving, ms.
    pub(crate) feedback_ms: Option<f64>,
    /// ODATA sent before that feedback.
    pub(crate) odata_before: u64,
    /// ODATA and RDATA sent over the whole capture.
    pub(crate) odata: u64,
    pub(crate) rdata: u64,
    /// ODATA sent in the first 100 ms.
    pub(crate) odata_100ms: u64,
}

/// Starts capturing UDP on `host`'s `eth0` if `secs` (`--capture-start`) is not zero.
pub(crate) fn start_capture(secs: u64, star: &Star, host: &Host) -> Result<Option<Capture>> {
    if secs == 0 {
        return Ok(None);
    }
    star.lab.capture(&host.ns, "eth0", Some("udp")).map(Some)
}

/// Stops `cap` at `until` and reads what `source` sent.
pub(crate) fn finish_capture(
    cap: Option<Capture>,
    until: Instant,
    source: &Host,
) -> Result<Option<(String, Startup)>> {
    let Some(cap) = cap else {
        return Ok(None);
    };
    sleep_until(until);
    let path = cap.stop()?;
    let s = analyse(&path, source.addr)?;
    println!(
        "    {} start-up: first feedback after {} ms; ODATA before it {}, in the first 100 ms {}; \
         in {:.1} s ODATA {}, RDATA {}",
        source.name,
        s.feedback_ms
            .map_or_else(|| "-".to_owned(), |f| format!("{f:.1}")),
        s.odata_before,
        s.odata_100ms,
        s.secs,
        s.odata,
        s.rdata
    );
    Ok(Some((source.name.clone(), s)))
}

/// Prints the `--capture-start` figures of every run as a table.
pub(crate) fn print_startup_table(secs: u64, rows: &[(String, u32, &(String, Startup))]) {
    println!(
        "\n### The sources' first {} s (capture on the source host)\n",
        secs
    );
    println!(
        "| scenario | run | source | first ACK or NAK after ms | ODATA before it | ODATA in the first 100 ms | ODATA, RDATA in the capture |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (sc, run, (name, s)) in rows {
        println!(
            "| {sc} | {run} | {name} | {} | {} | {} | {}, {} |",
            s.feedback_ms
                .map_or_else(|| "-".to_owned(), |f| format!("{f:.1}")),
            s.odata_before,
            s.odata_100ms,
            s.odata,
            s.rdata
        );
    }
}

/// Reads `pcap` (taken on `source`'s host) with tshark.
pub(crate) fn analyse(pcap: &Path, source: Ipv4Addr) -> Result<Startup> {
    let out = Command::new("tshark")
        .arg("-n")
        .arg("-r")
        .arg(pcap)
        .args([
            "-d",
            "udp.port==3055,pgm",
            "-d",
            "udp.port==3056,pgm",
            "-Y",
            "pgm",
        ])
        .args(["-T", "fields", "-E", "separator=/t"])
        .args([
            "-e",
            "frame.time_relative",
            "-e",
            "ip.src",
            "-e",
            "pgm.hdr.type",
        ])
        .output()
        .context("tshark")?;
    if !out.status.success() {
        bail!("tshark: {}", String::from_utf8_lossy(&out.stderr));
    }
    let rows = parse_rows(&String::from_utf8_lossy(&out.stdout));
    Ok(summarise(&rows, source))
}

/// `(seconds, source address, type)` per line of tshark's fields.
fn parse_rows(text: &str) -> Vec<(f64, Ipv4Addr, u8)> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split('\t');
            let t = f.next()?.trim().parse().ok()?;
            let src = f.next()?.trim().parse().ok()?;
            let ty = f.next()?.trim();
            let ty = match ty.strip_prefix("0x") {
                Some(hex) => u8::from_str_radix(hex, 16).ok()?,
                None => ty.parse().ok()?,
            };
            Some((t, src, ty))
        })
        .collect()
}

fn summarise(rows: &[(f64, Ipv4Addr, u8)], source: Ipv4Addr) -> Startup {
    let mut s = Startup::default();
    let Some(first) = rows
        .iter()
        .find(|r| r.1 == source && r.2 == ODATA)
        .map(|r| r.0)
    else {
        return s;
    };
    let feedback = rows
        .iter()
        .find(|r| r.1 != source && (r.2 == ACK || r.2 == NAK) && r.0 >= first)
        .map(|r| r.0);
    s.feedback_ms = feedback.map(|f| (f - first) * 1000.0);
    let hundred = Duration::from_millis(100).as_secs_f64();
    for &(t, src, ty) in rows {
        if src != source {
            continue;
        }
        match ty {
            ODATA => {
                s.odata += 1;
                if feedback.is_none_or(|f| t < f) {
                    s.odata_before += 1;
                }
                if t - first < hundred {
                    s.odata_100ms += 1;
                }
            }
            RDATA => s.rdata += 1,
            _ => {}
        }
        s.secs = s.secs.max(t - first);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_odata_before_the_first_feedback() {
        let src = Ipv4Addr::new(10, 1, 1, 11);
        let rcv = Ipv4Addr::new(10, 1, 1, 13);
        let text = "0.000\t10.1.1.11\t0x00\n\
                    0.010\t10.1.1.11\t0x04\n\
                    0.011\t10.1.1.11\t0x04\n\
                    0.030\t10.1.1.13\t0x0d\n\
                    0.031\t10.1.1.11\t0x04\n\
                    0.200\t10.1.1.11\t0x05\n";
        let rows = parse_rows(text);
        assert_eq!(rows.len(), 6);
        assert_eq!(rows[3], (0.030, rcv, ACK));
        let s = summarise(&rows, src);
        assert_eq!(s.odata_before, 2);
        assert_eq!(s.odata, 3);
        assert_eq!(s.rdata, 1);
        assert_eq!(s.odata_100ms, 3);
        assert!((s.feedback_ms.unwrap_or_default() - 20.0).abs() < 1e-6);
    }
}
