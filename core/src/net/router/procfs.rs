//! The kernel's multicast routing table as `/proc/net/ip_mr_vif` and `/proc/net/ip_mr_cache`
//! show it (`net/ipv4/ipmr.c`), for assist-only mode: another daemon owns the MFC and the
//! network element only reads the outgoing interfaces of each `(S,G)`.

use std::io;
use std::net::Ipv4Addr;

/// One VIF.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelVif {
    /// VIF index.
    pub vif: u16,
    /// Interface name.
    pub name: String,
}

/// One MFC entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelMfc {
    /// The group.
    pub group: Ipv4Addr,
    /// The source (`0.0.0.0` for a `(*,G)` entry).
    pub origin: Ipv4Addr,
    /// The incoming VIF (`None` for unresolved entries).
    pub iif: Option<u16>,
    /// The outgoing VIFs.
    pub oifs: Vec<u16>,
}

/// Reads and parses `/proc/net/ip_mr_vif` of the calling thread's namespace.
pub fn read_vifs() -> io::Result<Vec<KernelVif>> {
    Ok(parse_vifs(&std::fs::read_to_string("/proc/net/ip_mr_vif")?))
}

/// Reads and parses `/proc/net/ip_mr_cache`.
pub fn read_mfc() -> io::Result<Vec<KernelMfc>> {
    Ok(parse_mfc(&std::fs::read_to_string(
        "/proc/net/ip_mr_cache",
    )?))
}

/// A `__be32` printed with `%08X` (native byte order).
fn hex_addr(s: &str) -> Option<Ipv4Addr> {
    u32::from_str_radix(s, 16)
        .ok()
        .map(|v| Ipv4Addr::from(v.to_ne_bytes()))
}

/// Parses `/proc/net/ip_mr_vif`: `idx name bytes_in pkts_in bytes_out pkts_out flags local
/// remote`, after a header line.
pub fn parse_vifs(text: &str) -> Vec<KernelVif> {
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let mut t = l.split_whitespace();
            let vif = t.next()?.parse().ok()?;
            let name = t.next()?.to_owned();
            Some(KernelVif { vif, name })
        })
        .collect()
}

/// Parses `/proc/net/ip_mr_cache`: `group origin iif pkts bytes wrong vif:ttl...`, after a
/// header line.
pub fn parse_mfc(text: &str) -> Vec<KernelMfc> {
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let mut t = l.split_whitespace();
            let group = hex_addr(t.next()?)?;
            let origin = hex_addr(t.next()?)?;
            let iif = t.next()?.parse::<i32>().ok()?;
            let oifs = t
                .skip(3)
                .filter_map(|o| o.split_once(':')?.0.parse().ok())
                .collect();
            Some(KernelMfc {
                group,
                origin,
                iif: u16::try_from(iif)
                    .ok()
                    .filter(|&v| usize::from(v) < super::MAXVIFS),
                oifs,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_tables_parse() {
        let vif = "Interface      BytesIn  PktsIn  BytesOut PktsOut Flags Local    Remote\n \
                   0 to-src            0       0         0       0 00008 00000005 00000000\n \
                   1 lana            100       1       100       1 00008 00000006 00000000\n";
        assert_eq!(
            parse_vifs(vif),
            vec![
                KernelVif {
                    vif: 0,
                    name: "to-src".into()
                },
                KernelVif {
                    vif: 1,
                    name: "lana".into()
                }
            ]
        );
        let g = Ipv4Addr::new(239, 192, 0, 1);
        let s = Ipv4Addr::new(10, 7, 1, 2);
        let hex = |a: Ipv4Addr| format!("{:08X}", u32::from_ne_bytes(a.octets()));
        let mfc = format!(
            "Group    Origin   Iif     Pkts    Bytes    Wrong Oifs\n\
             {} {} 0          5      500        0  1:1    2:1   \n\
             {} 00000000 -1         0        0        0\n",
            hex(g),
            hex(s),
            hex(g)
        );
        let e = parse_mfc(&mfc);
        assert_eq!(e.len(), 2);
        assert_eq!(
            e[0],
            KernelMfc {
                group: g,
                origin: s,
                iif: Some(0),
                oifs: vec![1, 2]
            }
        );
        assert_eq!(e[1].iif, None);
        assert!(e[1].origin.is_unspecified());
    }
}
