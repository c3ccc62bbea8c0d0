//! ODATA and RDATA (§8.2).

use super::Sqn;
use super::header::be32;
use super::view::typed_view;

mod field {
    use crate::wire::Field;

    pub(super) const SQN: Field = 16..20;
    pub(super) const TRAIL: Field = 20..24;
}

typed_view!(
    /// A view of an ODATA or RDATA packet (§8.2). The TSDU is [`Packet::payload`](
    /// super::Packet::payload).
    DataPacket,
    super::PacketType::Odata | super::PacketType::Rdata
);

impl<T: AsRef<[u8]>> DataPacket<T> {
    /// OD_SQN / RD_SQN: the sequence number the source gave the data.
    pub fn sqn(&self) -> Sqn {
        Sqn(be32(self.as_bytes(), field::SQN.start).unwrap_or(0))
    }

    /// OD_TRAIL / RD_TRAIL: the trailing edge of the source's transmit window.
    pub fn trail(&self) -> Sqn {
        Sqn(be32(self.as_bytes(), field::TRAIL.start).unwrap_or(0))
    }
}

/// The type-specific fields of an ODATA or RDATA packet, and its TSDU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataRepr<'a> {
    /// The data's sequence number.
    pub sqn: Sqn,
    /// The trailing edge of the transmit window.
    pub trail: Sqn,
    /// The TSDU (application data).
    pub payload: &'a [u8],
}

impl<'a> DataRepr<'a> {
    pub(crate) fn parse(p: &DataPacket<&'a [u8]>) -> Self {
        Self {
            sqn: p.sqn(),
            trail: p.trail(),
            payload: super::Packet::new_unchecked(p.into_inner()).payload_ref(),
        }
    }

    pub(crate) const fn body_len(&self) -> usize {
        8
    }

    pub(crate) fn emit(&self, buf: &mut [u8]) {
        buf[field::SQN].copy_from_slice(&self.sqn.0.to_be_bytes());
        buf[field::TRAIL].copy_from_slice(&self.trail.0.to_be_bytes());
    }
}
