//! Source Path Messages (§8.1).

use super::checksum;
use super::header::{HEADER_LEN, be32};
use super::view::typed_view;
use super::{Nla, Sqn};

mod field {
    use crate::wire::Field;

    pub(super) const SQN: Field = 16..20;
    pub(super) const TRAIL: Field = 20..24;
    pub(super) const LEAD: Field = 24..28;
    pub(super) const PATH: usize = 28;
}

typed_view!(
    /// A view of an SPM: sequence number, transmit window edges and the path NLA (§8.1).
    SpmPacket,
    super::PacketType::Spm
);

impl<T: AsRef<[u8]>> SpmPacket<T> {
    /// SPM_SQN.
    pub fn sqn(&self) -> Sqn {
        Sqn(be32(self.as_bytes(), field::SQN.start).unwrap_or(0))
    }

    /// SPM_TRAIL, the trailing edge of the transmit window.
    pub fn trail(&self) -> Sqn {
        Sqn(be32(self.as_bytes(), field::TRAIL.start).unwrap_or(0))
    }

    /// SPM_LEAD, the leading edge of the transmit window.
    pub fn lead(&self) -> Sqn {
        Sqn(be32(self.as_bytes(), field::LEAD.start).unwrap_or(0))
    }

    /// SPM_PATH: the NLA of the last PGM hop that forwarded this SPM (the source itself if
    /// none did).
    pub fn path(&self) -> Nla {
        match Nla::parse(&self.as_bytes()[field::PATH..]) {
            Ok((n, _)) => n,
            // Unreachable after `check_len`; an unchecked view gets the unspecified address.
            Err(_) => Nla(std::net::Ipv4Addr::UNSPECIFIED.into()),
        }
    }

    /// Whether the SPM carries no window information (SPM_TRAIL 0 and SPM_LEAD 0x80000000,
    /// §8.1).
    pub fn has_window(&self) -> bool {
        !(self.trail() == Sqn(0) && self.lead() == Sqn(0x8000_0000))
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> SpmPacket<T> {
    /// Rewrites SPM_PATH in place, as a network element does on forwarding (§7.1), and updates
    /// the checksum incrementally (RFC 1624) instead of re-summing the packet.
    ///
    /// The new NLA must be of the same family as the one carried (the packet cannot change
    /// length in place); otherwise nothing changes and `false` is returned.
    pub fn rewrite_path(&mut self, nla: Nla) -> bool {
        if self.path().afi() != nla.afi() {
            return false;
        }
        let at = field::PATH + 4;
        let len = nla.afi().addr_len();
        let mut old = [0u8; 16];
        old[..len].copy_from_slice(&self.as_bytes()[at..at + len]);
        let mut new = [0u8; 16];
        nla.emit_addr(&mut new);
        let csum = checksum::update(self.checksum(), &old[..len], &new[..len]);
        self.bytes_mut()[at..at + len].copy_from_slice(&new[..len]);
        self.set_checksum(csum);
        true
    }
}

/// The type-specific fields of an SPM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpmRepr {
    /// SPM_SQN.
    pub sqn: Sqn,
    /// SPM_TRAIL.
    pub trail: Sqn,
    /// SPM_LEAD.
    pub lead: Sqn,
    /// SPM_PATH.
    pub path: Nla,
}

impl SpmRepr {
    pub(crate) fn parse<T: AsRef<[u8]>>(p: &SpmPacket<T>) -> Self {
        Self {
            sqn: p.sqn(),
            trail: p.trail(),
            lead: p.lead(),
            path: p.path(),
        }
    }

    pub(crate) fn body_len(&self) -> usize {
        12 + self.path.wire_len()
    }

    /// Writes the fields after the common header; `buf` starts at the header.
    pub(crate) fn emit(&self, buf: &mut [u8]) {
        buf[field::SQN].copy_from_slice(&self.sqn.0.to_be_bytes());
        buf[field::TRAIL].copy_from_slice(&self.trail.0.to_be_bytes());
        buf[field::LEAD].copy_from_slice(&self.lead.0.to_be_bytes());
        self.path.emit(&mut buf[field::PATH..]);
        debug_assert_eq!(HEADER_LEN + 12, field::PATH);
    }
}
