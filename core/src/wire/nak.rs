//! NAK, NNAK and NCF (§8.3).

use super::header::{HEADER_LEN, be32};
use super::view::typed_view;
use super::{Nla, Sqn};

mod field {
    use crate::wire::Field;

    pub(super) const SQN: Field = 16..20;
    pub(super) const SRC: usize = 20;
}

typed_view!(
    /// A view of a NAK, NNAK or NCF (§8.3). In NAKs and NNAKs the TSI's port is the
    /// destination-port field; in NCFs it is the source-port field ([`Packet::tsi`](
    /// super::Packet::tsi) picks the right one).
    NakPacket,
    super::PacketType::Nak | super::PacketType::Nnak | super::PacketType::Ncf
);

impl<T: AsRef<[u8]>> NakPacket<T> {
    /// NAK_SQN / NNAK_SQN / NCF_SQN: the (first) sequence number concerned.
    pub fn sqn(&self) -> Sqn {
        Sqn(be32(self.as_bytes(), field::SQN.start).unwrap_or(0))
    }

    /// The unicast NLA of the ODATA source, and the length it takes.
    fn source(&self) -> (Nla, usize) {
        Nla::parse(self.as_bytes().get(field::SRC..).unwrap_or(&[]))
            .unwrap_or((Nla(std::net::Ipv4Addr::UNSPECIFIED.into()), 8))
    }

    /// Every sequence number the packet concerns, in order: NAK_SQN, then the entries of its
    /// OPT_NAK_LIST if any (§9.3), at most 63 in all.
    pub fn sqns(&self) -> impl Iterator<Item = Sqn> + '_ {
        let list = self.options().iter().find_map(|o| match o.value {
            super::OptionValue::NakList(l) => Some(l),
            _ => None,
        });
        core::iter::once(self.sqn())
            .chain(list.into_iter().flat_map(|l| l.iter()))
            .take(1 + super::MAX_NAK_LIST)
    }

    /// NAK_SRC: the unicast NLA of the original source of the data.
    pub fn source_nla(&self) -> Nla {
        self.source().0
    }

    /// NAK_GRP: the multicast group NLA.
    pub fn group_nla(&self) -> Nla {
        let at = field::SRC + self.source().1;
        Nla::parse(self.as_bytes().get(at..).unwrap_or(&[]))
            .map_or(Nla(std::net::Ipv4Addr::UNSPECIFIED.into()), |(n, _)| n)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> NakPacket<T> {
    /// Rewrites NAK_SRC in place, updating the checksum incrementally (RFC 1624). The new NLA
    /// must be of the family carried; otherwise nothing changes and `false` is returned.
    ///
    /// A network element uses this to repair NAKs whose NAK_SRC is not the session's source:
    /// OpenPGM 5.3 receivers put their SPM_PATH there, and an OpenPGM source rejects such NAKs.
    pub fn rewrite_source(&mut self, nla: Nla) -> bool {
        if self.source_nla().afi() != nla.afi() {
            return false;
        }
        let at = field::SRC + 4;
        let len = nla.afi().addr_len();
        let mut old = [0u8; 16];
        old[..len].copy_from_slice(&self.as_bytes()[at..at + len]);
        let mut new = [0u8; 16];
        nla.emit_addr(&mut new);
        let csum = super::checksum_update(self.checksum(), &old[..len], &new[..len]);
        self.bytes_mut()[at..at + len].copy_from_slice(&new[..len]);
        self.set_checksum(csum);
        true
    }
}

/// The type-specific fields of a NAK, NNAK or NCF.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NakRepr {
    /// The (first) sequence number concerned; further ones go in OPT_NAK_LIST.
    pub sqn: Sqn,
    /// The unicast NLA of the ODATA source.
    pub source: Nla,
    /// The multicast group NLA.
    pub group: Nla,
}

impl NakRepr {
    pub(crate) fn parse<T: AsRef<[u8]>>(p: &NakPacket<T>) -> Self {
        Self {
            sqn: p.sqn(),
            source: p.source_nla(),
            group: p.group_nla(),
        }
    }

    pub(crate) fn body_len(&self) -> usize {
        4 + self.source.wire_len() + self.group.wire_len()
    }

    pub(crate) fn emit(&self, buf: &mut [u8]) {
        buf[field::SQN].copy_from_slice(&self.sqn.0.to_be_bytes());
        self.source.emit(&mut buf[field::SRC..]);
        let grp = field::SRC + self.source.wire_len();
        self.group.emit(&mut buf[grp..]);
        debug_assert_eq!(HEADER_LEN + 4, field::SRC);
    }
}
