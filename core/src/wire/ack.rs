//! ACK (type 0x0D): the PGMCC acker's acknowledgement (draft-ietf-rmt-bb-pgmcc-03 §2.1.2).
//!
//! The draft gives the fields but no packet format. The layout is the one OpenPGM 5.3 sends and
//! Wireshark decodes (`docs/pgmcc.md`): the common header as in a NAK (the destination-port
//! field holds the source's TSI port, the GSI is the source's), then RX_MAX and the bitmap,
//! then options, among them OPT_PGMCC_FEEDBACK.

use super::Sqn;
use super::header::be32;
use super::view::typed_view;

mod field {
    use crate::wire::Field;

    pub(super) const RX_MAX: Field = 16..20;
    pub(super) const BITMAP: Field = 20..24;
}

typed_view!(
    /// A view of an ACK. Its TSI port is the destination-port field, as in a NAK.
    AckPacket,
    super::PacketType::Ack
);

impl<T: AsRef<[u8]>> AckPacket<T> {
    /// RX_MAX: the highest sequence number the acker has received.
    pub fn rx_max(&self) -> Sqn {
        Sqn(be32(self.as_bytes(), field::RX_MAX.start).unwrap_or(0))
    }

    /// The receive status of RX_MAX−31 … RX_MAX: bit `i` (least significant first) set when
    /// RX_MAX−`i` has been received.
    pub fn bitmap(&self) -> u32 {
        be32(self.as_bytes(), field::BITMAP.start).unwrap_or(0)
    }
}

/// The type-specific fields of an ACK.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AckRepr {
    /// RX_MAX: the highest sequence number received.
    pub rx_max: Sqn,
    /// The receive status of RX_MAX−31 … RX_MAX, RX_MAX in the least significant bit.
    pub bitmap: u32,
}

impl AckRepr {
    pub(crate) fn parse<T: AsRef<[u8]>>(p: &AckPacket<T>) -> Self {
        Self {
            rx_max: p.rx_max(),
            bitmap: p.bitmap(),
        }
    }

    pub(crate) const fn body_len(&self) -> usize {
        8
    }

    pub(crate) fn emit(&self, buf: &mut [u8]) {
        buf[field::RX_MAX].copy_from_slice(&self.rx_max.0.to_be_bytes());
        buf[field::BITMAP].copy_from_slice(&self.bitmap.to_be_bytes());
    }
}
