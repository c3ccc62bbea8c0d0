//! Test scaffolding: Ethernet + IPv4 (+ UDP) framing written by hand, and pcap output.

use std::fs::File;
use std::io::BufWriter;
use std::path::Path;
use std::time::Duration;

use pcap_file::pcap::{PcapPacket, PcapWriter};

/// The UDP port of PGM/UDP encapsulation (tshark's `-d udp.port==3055,pgm`).
pub(crate) const UDP_ENCAP_PORT: u16 = 3055;
/// IP protocol number of PGM.
pub(crate) const IPPROTO_PGM: u8 = 113;
/// IP protocol number of UDP.
pub(crate) const IPPROTO_UDP: u8 = 17;
/// The IP Router Alert option (RFC 2113), as PGM/IP carries it on NAKs and ODATA.
const ROUTER_ALERT: [u8; 4] = [0x94, 0x04, 0x00, 0x00];
/// Source and destination addresses of every frame (documentation and admin-scoped ranges).
const SRC: [u8; 4] = [192, 0, 2, 1];
const DST: [u8; 4] = [239, 192, 0, 1];

/// How a PGM packet is carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Encap {
    /// PGM directly over IPv4, protocol 113.
    Ip,
    /// PGM over UDP, both ports 3055: the UDP encapsulation of OpenPGM and Wireshark (RFC 3208
    /// defines none).
    Udp,
}

impl Encap {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::Ip => "PGM/IP",
            Self::Udp => "PGM/UDP",
        }
    }
}

/// One Ethernet frame and where the PGM packet starts in it.
pub(crate) struct Frame {
    pub(crate) bytes: Vec<u8>,
    pub(crate) pgm_at: usize,
    pub(crate) ip_len: usize,
}

/// The Internet checksum (RFC 1071) over the concatenation of `parts`, each of even length
/// except possibly the last.
fn internet_checksum(parts: &[&[u8]]) -> u16 {
    let mut sum: u32 = 0;
    for part in parts {
        for pair in part.chunks(2) {
            let hi = pair[0];
            let lo = pair.get(1).copied().unwrap_or(0);
            sum += u32::from(u16::from_be_bytes([hi, lo]));
        }
    }
    while sum > 0xFFFF {
        sum = (sum & 0xFFFF) + (sum >> 16);
    }
    !(sum as u16)
}

/// Frames `pgm` as Ethernet + IPv4 (+ UDP), with correct IP and UDP checksums.
pub(crate) fn frame(pgm: &[u8], encap: Encap, router_alert: bool) -> Frame {
    // Ethernet: the multicast MAC of 239.192.0.1, a locally administered source, IPv4.
    let mut f = vec![
        0x01, 0x00, 0x5e, 0x40, 0x00, 0x01, 0x02, 0x00, 0x5e, 0x00, 0x00, 0x01, 0x08, 0x00,
    ];
    let ihl = if router_alert { 24 } else { 20 };
    let l4_len = match encap {
        Encap::Ip => pgm.len(),
        Encap::Udp => 8 + pgm.len(),
    };
    let ip_len = ihl + l4_len;
    let total = u16::try_from(ip_len).expect("frame fits an IPv4 packet");
    let proto = match encap {
        Encap::Ip => IPPROTO_PGM,
        Encap::Udp => IPPROTO_UDP,
    };
    let mut ip = vec![0x40 | (ihl / 4) as u8, 0x00];
    ip.extend_from_slice(&total.to_be_bytes());
    // Identification, flags/fragment offset (DF), TTL 16, protocol, zero checksum.
    ip.extend_from_slice(&[0x12, 0x34, 0x40, 0x00, 16, proto, 0, 0]);
    ip.extend_from_slice(&SRC);
    ip.extend_from_slice(&DST);
    if router_alert {
        ip.extend_from_slice(&ROUTER_ALERT);
    }
    let c = internet_checksum(&[&ip]);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&ip);
    if encap == Encap::Udp {
        let udp_len = u16::try_from(l4_len).expect("fits a UDP datagram");
        let mut udp = Vec::with_capacity(8);
        udp.extend_from_slice(&UDP_ENCAP_PORT.to_be_bytes());
        udp.extend_from_slice(&UDP_ENCAP_PORT.to_be_bytes());
        udp.extend_from_slice(&udp_len.to_be_bytes());
        udp.extend_from_slice(&[0, 0]);
        let mut pseudo = Vec::with_capacity(12);
        pseudo.extend_from_slice(&SRC);
        pseudo.extend_from_slice(&DST);
        pseudo.extend_from_slice(&[0, IPPROTO_UDP]);
        pseudo.extend_from_slice(&udp_len.to_be_bytes());
        let c = match internet_checksum(&[&pseudo, &udp, pgm]) {
            0 => 0xFFFF,
            c => c,
        };
        udp[6..8].copy_from_slice(&c.to_be_bytes());
        f.extend_from_slice(&udp);
    }
    let pgm_at = f.len();
    f.extend_from_slice(pgm);
    Frame {
        bytes: f,
        pgm_at,
        ip_len,
    }
}

/// Writes `frames` into a pcap file (Ethernet link type), one second apart.
pub(crate) fn write_pcap(path: &Path, frames: &[Frame]) {
    let file = BufWriter::new(File::create(path).expect("create pcap"));
    let mut w = PcapWriter::new(file).expect("pcap header");
    for (i, f) in frames.iter().enumerate() {
        let len = u32::try_from(f.bytes.len()).expect("frame length");
        let ts = Duration::from_secs(1_000_000 + i as u64);
        w.write_packet(&PcapPacket::new(ts, len, &f.bytes))
            .expect("write pcap packet");
    }
    w.into_writer()
        .into_inner()
        .map_err(|e| e.into_error())
        .expect("flush pcap");
}
