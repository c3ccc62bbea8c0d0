//! Reading the PGM/IP packets of a tcpdump capture, with their timestamps.
//!
//! [`read_pgm`] takes a classic pcap file (microsecond or nanosecond timestamps, either byte
//! order; link type Ethernet, raw IPv4, Linux cooked v1 or v2) and returns every IPv4 packet of
//! protocol 113 as a [`PgmFrame`]: capture time, IP source and destination, IP options seen and
//! the PGM bytes. Anything it cannot read (truncated records, other protocols, IPv6) is
//! skipped, never a panic; the file header alone must be valid.
//!
//! [`PgmFrame`]'s accessors decode the PGM packet with `pgm_core::wire` (type, sequence
//! numbers, SPM_PATH, NAK_SRC, OPT_REDIRECT), returning `None` or nothing for a packet that does
//! not parse or is of another type; [`count`] and [`odata_sqns`] summarise a capture.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use pgm_core::wire::{
    DataPacket, NakPacket, OptionType, OptionValue, Packet, PacketType, SpmPacket,
};

/// IP protocol number of PGM.
const IPPROTO_PGM: u8 = 113;

/// One PGM/IP packet of a capture.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PgmFrame {
    /// Capture timestamp (since the Unix epoch, as tcpdump wrote it).
    pub at: Duration,
    /// IPv4 source address.
    pub src: Ipv4Addr,
    /// IPv4 destination address.
    pub dst: Ipv4Addr,
    /// IPv4 time to live as captured.
    pub ttl: u8,
    /// Whether the IP header carries the Router Alert option (RFC 2113).
    pub router_alert: bool,
    /// Whether the IP header carries any option at all (Router Alert or another).
    pub ip_options: bool,
    /// The PGM packet (IP payload).
    pub pgm: Vec<u8>,
}

impl PgmFrame {
    /// The PGM packet type, if the PGM header parses.
    pub fn packet_type(&self) -> Option<PacketType> {
        Packet::new_checked(&self.pgm[..])
            .ok()
            .map(|p| p.packet_type())
    }

    /// Whether this is a PGM packet of type `t`.
    pub fn is(&self, t: PacketType) -> bool {
        self.packet_type() == Some(t)
    }

    /// The sequence number of an ODATA or RDATA packet.
    pub fn data_sqn(&self) -> Option<u32> {
        DataPacket::new_checked(&self.pgm[..])
            .ok()
            .map(|d| d.sqn().0)
    }

    /// Every sequence number a NAK, NNAK or NCF concerns: its own, then those of its
    /// OPT_NAK_LIST (§9.3). Empty for other packets.
    pub fn nak_sqns(&self) -> Vec<u32> {
        NakPacket::new_checked(&self.pgm[..])
            .map(|n| n.sqns().map(|q| q.0).collect())
            .unwrap_or_default()
    }

    /// NAK_SRC of a NAK, NNAK or NCF: the source the packet says the data came from (§8.3).
    pub fn nak_source(&self) -> Option<IpAddr> {
        NakPacket::new_checked(&self.pgm[..])
            .ok()
            .map(|n| n.source_nla().0)
    }

    /// SPM_PATH of an SPM: the address of the last network element (or the source) that
    /// forwarded it (§7.1, §8.1).
    pub fn spm_path(&self) -> Option<IpAddr> {
        SpmPacket::new_checked(&self.pgm[..])
            .ok()
            .map(|s| s.path().0)
    }

    /// The DLR a redirecting POLR announces in its OPT_REDIRECT (§9.5); `None` for other
    /// packets.
    pub fn redirect(&self) -> Option<IpAddr> {
        let p = Packet::new_checked(&self.pgm[..]).ok()?;
        if p.packet_type() != PacketType::Polr {
            return None;
        }
        match p.options().find(OptionType::Redirect)?.value {
            OptionValue::Redirect(nla) => Some(nla.0),
            _ => None,
        }
    }
}

/// How many frames satisfy `f`.
pub fn count(frames: &[PgmFrame], f: impl Fn(&PgmFrame) -> bool) -> usize {
    frames.iter().filter(|p| f(p)).count()
}

/// The sequence numbers of the ODATA packets among `frames`.
pub fn odata_sqns(frames: &[PgmFrame]) -> BTreeSet<u32> {
    data_sqns(frames, PacketType::Odata).collect()
}

/// The sequence numbers of the packets of type `t` (ODATA or RDATA) among `frames`, in
/// capture order.
pub fn data_sqns(frames: &[PgmFrame], t: PacketType) -> impl Iterator<Item = u32> + '_ {
    frames
        .iter()
        .filter(move |f| f.is(t))
        .filter_map(PgmFrame::data_sqn)
}

/// Every sequence number asked for by the NAKs among `frames` that satisfy `f` (each NAK's own
/// and its OPT_NAK_LIST's), in capture order.
pub fn naked_sqns(frames: &[PgmFrame], f: impl Fn(&PgmFrame) -> bool) -> Vec<u32> {
    frames
        .iter()
        .filter(|p| p.is(PacketType::Nak) && f(p))
        .flat_map(PgmFrame::nak_sqns)
        .collect()
}

/// The sequence numbers of the RDATA among `frames` that no NAK among them asked for: on a
/// link captured as a whole, repairs that a network element should not have sent there
/// (constrained RDATA forwarding, §7.8).
pub fn unrequested_rdata(frames: &[PgmFrame]) -> Vec<u32> {
    let naked: BTreeSet<u32> = naked_sqns(frames, |_| true).into_iter().collect();
    data_sqns(frames, PacketType::Rdata)
        .filter(|s| !naked.contains(s))
        .collect()
}

/// Reads the PGM/IP packets of the pcap file at `path`, in capture order.
pub fn read_pgm(path: &Path) -> Result<Vec<PgmFrame>> {
    let data = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    parse_pgm(&data).with_context(|| format!("{} is not a pcap file", path.display()))
}

/// [`read_pgm`] on the bytes of a pcap file.
pub fn parse_pgm(data: &[u8]) -> Result<Vec<PgmFrame>> {
    let Some(magic) = data.get(..4) else {
        bail!("shorter than a pcap header");
    };
    let (le, nanos) = match magic {
        [0xd4, 0xc3, 0xb2, 0xa1] => (true, false),
        [0xa1, 0xb2, 0xc3, 0xd4] => (false, false),
        [0x4d, 0x3c, 0xb2, 0xa1] => (true, true),
        [0xa1, 0xb2, 0x3c, 0x4d] => (false, true),
        _ => bail!("unknown pcap magic {magic:02x?}"),
    };
    let u32_at = |b: &[u8], o: usize| -> Option<u32> {
        let w: [u8; 4] = b.get(o..o + 4)?.try_into().ok()?;
        Some(if le {
            u32::from_le_bytes(w)
        } else {
            u32::from_be_bytes(w)
        })
    };
    let Some(linktype) = u32_at(data, 20) else {
        bail!("shorter than a pcap header");
    };
    let mut out = Vec::new();
    let mut at = 24;
    while let (Some(sec), Some(frac), Some(caplen)) =
        (u32_at(data, at), u32_at(data, at + 4), u32_at(data, at + 8))
    {
        let start = at + 16;
        let Some(frame) = usize::try_from(caplen)
            .ok()
            .and_then(|n| data.get(start..start.checked_add(n)?))
        else {
            break;
        };
        at = start + frame.len();
        let ts = Duration::from_secs(u64::from(sec))
            + if nanos {
                Duration::from_nanos(u64::from(frac))
            } else {
                Duration::from_micros(u64::from(frac))
            };
        if let Some(ip) = ipv4_payload(linktype, frame) {
            if let Some(f) = pgm_frame(ts, ip) {
                out.push(f);
            }
        }
    }
    Ok(out)
}

/// The IPv4 packet inside a link-layer frame, if it is one.
fn ipv4_payload(linktype: u32, frame: &[u8]) -> Option<&[u8]> {
    let (ethertype, ip) = match linktype {
        // Ethernet
        1 => (frame.get(12..14)?, frame.get(14..)?),
        // Raw IP (LINKTYPE_RAW, and DLT_RAW as some systems number it)
        101 | 12 | 14 => return frame.first().filter(|b| *b >> 4 == 4).map(|_| frame),
        // Linux cooked v1: protocol at 14
        113 => (frame.get(14..16)?, frame.get(16..)?),
        // Linux cooked v2: protocol at 0
        276 => (frame.get(0..2)?, frame.get(20..)?),
        _ => return None,
    };
    (ethertype == [0x08, 0x00]).then_some(ip)
}

fn pgm_frame(at: Duration, ip: &[u8]) -> Option<PgmFrame> {
    let first = *ip.first()?;
    if first >> 4 != 4 {
        return None;
    }
    let ihl = usize::from(first & 0x0f) * 4;
    if ihl < 20 || *ip.get(9)? != IPPROTO_PGM {
        return None;
    }
    let total = usize::from(u16::from_be_bytes(ip.get(2..4)?.try_into().ok()?));
    let end = total.min(ip.len());
    let addr = |o: usize| -> Option<Ipv4Addr> {
        let b: [u8; 4] = ip.get(o..o + 4)?.try_into().ok()?;
        Some(Ipv4Addr::from(b))
    };
    Some(PgmFrame {
        at,
        src: addr(12)?,
        dst: addr(16)?,
        ttl: *ip.get(8)?,
        router_alert: has_router_alert(ip.get(20..ihl)?),
        ip_options: ihl > 20,
        pgm: ip.get(ihl..end)?.to_vec(),
    })
}

/// Whether IPv4 options contain Router Alert (type 0x94).
fn has_router_alert(mut opts: &[u8]) -> bool {
    while let Some(&t) = opts.first() {
        match t {
            0 => return false,
            1 => opts = &opts[1..],
            0x94 => return true,
            _ => {
                let len = usize::from(opts.get(1).copied().unwrap_or(0));
                if len < 2 || len > opts.len() {
                    return false;
                }
                opts = &opts[len..];
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(ra: bool, proto: u8, payload: &[u8]) -> Vec<u8> {
        let ihl = if ra { 6 } else { 5 };
        let total = ihl * 4 + payload.len();
        let mut v = vec![0x40 | ihl as u8, 0, (total >> 8) as u8, total as u8];
        v.extend_from_slice(&[0, 0, 0, 0, 16, proto, 0, 0, 10, 0, 0, 2, 239, 1, 2, 3]);
        if ra {
            v.extend_from_slice(&[0x94, 4, 0, 0]);
        }
        v.extend_from_slice(payload);
        v
    }

    fn pcap(frames: &[(u32, u32, Vec<u8>)]) -> Vec<u8> {
        let mut v = vec![0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0];
        v.extend_from_slice(&[0; 8]);
        v.extend_from_slice(&65535u32.to_le_bytes());
        v.extend_from_slice(&1u32.to_le_bytes());
        for (sec, usec, ip) in frames {
            let mut f = vec![0u8; 12];
            f.extend_from_slice(&[0x08, 0x00]);
            f.extend_from_slice(ip);
            for x in [*sec, *usec, f.len() as u32, f.len() as u32] {
                v.extend_from_slice(&x.to_le_bytes());
            }
            v.extend_from_slice(&f);
        }
        v
    }

    #[test]
    fn reads_pgm_frames_with_times_and_router_alert() {
        let data = pcap(&[
            (5, 250_000, ip(true, 113, b"pgm-a")),
            (5, 500_000, ip(false, 17, b"udp")),
            (6, 1, ip(false, 113, b"pgm-b")),
        ]);
        let f = parse_pgm(&data).unwrap();
        assert_eq!(f.len(), 2);
        assert_eq!(f[0].at, Duration::from_millis(5250));
        assert!(f[0].router_alert);
        assert_eq!(f[0].pgm, b"pgm-a");
        assert_eq!(f[0].src, Ipv4Addr::new(10, 0, 0, 2));
        assert_eq!(f[0].dst, Ipv4Addr::new(239, 1, 2, 3));
        assert!(f[0].ip_options);
        assert!(!f[1].router_alert);
        assert!(!f[1].ip_options);
        assert_eq!(f[1].at, Duration::from_micros(6_000_001));
    }

    #[test]
    fn truncated_or_garbage_input_never_panics() {
        let data = pcap(&[(1, 0, ip(true, 113, b"abcdef"))]);
        for n in 0..data.len() {
            let _ = parse_pgm(&data[..n]);
        }
        assert!(parse_pgm(b"not a pcap file at all, no").is_err());
        let mut bad = data.clone();
        bad[24 + 8..24 + 12].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(parse_pgm(&bad).unwrap().is_empty());
    }
}
