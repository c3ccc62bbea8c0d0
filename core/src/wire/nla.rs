//! Network-layer addresses (NLAs): an address family indicator and an address, as carried in
//! SPM_PATH, NAK source and group, POLL_PATH and OPT_REDIRECT (§8, AFIs per RFC 1700).

use core::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::{Result, WireError};

/// An address family indicator value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Afi {
    /// IPv4, AFI 1: a 4-byte address.
    Ipv4,
    /// IPv6, AFI 2: a 16-byte address.
    Ipv6,
}

impl Afi {
    /// The AFI number on the wire.
    pub fn value(self) -> u16 {
        match self {
            Self::Ipv4 => 0x0001,
            Self::Ipv6 => 0x0002,
        }
    }

    /// The AFI for a wire value, or [`WireError::BadAfi`].
    pub fn from_value(v: u16) -> Result<Self> {
        match v {
            0x0001 => Ok(Self::Ipv4),
            0x0002 => Ok(Self::Ipv6),
            other => Err(WireError::BadAfi(other)),
        }
    }

    /// The length in bytes of an address of this family.
    pub fn addr_len(self) -> usize {
        match self {
            Self::Ipv4 => 4,
            Self::Ipv6 => 16,
        }
    }
}

/// A network-layer address with its family.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Nla(pub IpAddr);

impl Nla {
    /// The NLA's address family.
    pub fn afi(&self) -> Afi {
        match self.0 {
            IpAddr::V4(_) => Afi::Ipv4,
            IpAddr::V6(_) => Afi::Ipv6,
        }
    }

    /// Bytes taken on the wire by the AFI, its reserved field and the address.
    pub fn wire_len(&self) -> usize {
        4 + self.afi().addr_len()
    }

    /// Reads an NLA (AFI, reserved, address) at the start of `buf`; returns it and its length.
    pub(crate) fn parse(buf: &[u8]) -> Result<(Self, usize)> {
        let afi = buf.get(0..2).ok_or(WireError::Truncated)?;
        let afi = Afi::from_value(u16::from_be_bytes([afi[0], afi[1]]))?;
        let len = 4 + afi.addr_len();
        let addr = buf.get(4..len).ok_or(WireError::Truncated)?;
        Ok((Self::from_afi_bytes(afi, addr), len))
    }

    /// Builds an NLA from a family and exactly `afi.addr_len()` bytes.
    pub(crate) fn from_afi_bytes(afi: Afi, addr: &[u8]) -> Self {
        match afi {
            Afi::Ipv4 => {
                let mut a = [0u8; 4];
                a.copy_from_slice(&addr[..4]);
                Self(IpAddr::V4(Ipv4Addr::from(a)))
            }
            Afi::Ipv6 => {
                let mut a = [0u8; 16];
                a.copy_from_slice(&addr[..16]);
                Self(IpAddr::V6(Ipv6Addr::from(a)))
            }
        }
    }

    /// Writes the AFI, a zero reserved field and the address into the start of `buf`, which
    /// must hold at least [`Nla::wire_len`] bytes.
    pub(crate) fn emit(&self, buf: &mut [u8]) {
        buf[0..2].copy_from_slice(&self.afi().value().to_be_bytes());
        buf[2..4].copy_from_slice(&[0, 0]);
        self.emit_addr(&mut buf[4..]);
    }

    /// Writes only the address bytes.
    pub(crate) fn emit_addr(&self, buf: &mut [u8]) {
        match self.0 {
            IpAddr::V4(a) => buf[..4].copy_from_slice(&a.octets()),
            IpAddr::V6(a) => buf[..16].copy_from_slice(&a.octets()),
        }
    }
}

impl From<IpAddr> for Nla {
    fn from(a: IpAddr) -> Self {
        Self(a)
    }
}

impl From<Ipv4Addr> for Nla {
    fn from(a: Ipv4Addr) -> Self {
        Self(IpAddr::V4(a))
    }
}

impl From<Ipv6Addr> for Nla {
    fn from(a: Ipv6Addr) -> Self {
        Self(IpAddr::V6(a))
    }
}

impl fmt::Debug for Nla {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Display for Nla {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}
