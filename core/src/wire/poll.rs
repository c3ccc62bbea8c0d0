//! POLL and POLR (Appendix D, §14.7).

use super::header::{HEADER_LEN, be16, be32};
use super::view::typed_view;
use super::{Nla, Sqn};

mod field {
    use crate::wire::Field;

    pub(super) const SQN: Field = 16..20;
    pub(super) const ROUND: Field = 20..22;
    pub(super) const S_TYPE: Field = 22..24;
    pub(super) const PATH: usize = 24;
}

/// POLL_S_TYPE (§14.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PollSubtype {
    /// PGM_POLL_GENERAL (0): count the PGM children of an interface.
    General,
    /// PGM_POLL_DLR (1): discover Designated Local Repairers.
    Dlr,
    /// Any other value.
    Unknown(u16),
}

impl PollSubtype {
    /// The value on the wire.
    pub fn value(self) -> u16 {
        match self {
            Self::General => 0,
            Self::Dlr => 1,
            Self::Unknown(v) => v,
        }
    }

    /// The sub-type for a wire value.
    pub fn from_value(v: u16) -> Self {
        match v {
            0 => Self::General,
            1 => Self::Dlr,
            other => Self::Unknown(other),
        }
    }
}

typed_view!(
    /// A view of a POLL (§14.7.1).
    PollPacket,
    super::PacketType::Poll
);

impl<T: AsRef<[u8]>> PollPacket<T> {
    /// POLL_SQN.
    pub fn sqn(&self) -> Sqn {
        Sqn(be32(self.as_bytes(), field::SQN.start).unwrap_or(0))
    }

    /// POLL_ROUND.
    pub fn round(&self) -> u16 {
        be16(self.as_bytes(), field::ROUND.start).unwrap_or(0)
    }

    /// POLL_S_TYPE.
    pub fn subtype(&self) -> PollSubtype {
        PollSubtype::from_value(be16(self.as_bytes(), field::S_TYPE.start).unwrap_or(0))
    }

    fn path_and_len(&self) -> (Nla, usize) {
        Nla::parse(self.as_bytes().get(field::PATH..).unwrap_or(&[]))
            .unwrap_or((Nla(std::net::Ipv4Addr::UNSPECIFIED.into()), 8))
    }

    /// POLL_PATH: the NLA of the interface the POLL was sent on.
    pub fn path(&self) -> Nla {
        self.path_and_len().0
    }

    fn tail(&self, i: usize) -> u32 {
        let at = field::PATH + self.path_and_len().1 + 4 * i;
        be32(self.as_bytes(), at).unwrap_or(0)
    }

    /// POLL_BO_IVL in microseconds.
    pub fn backoff_ivl_us(&self) -> u32 {
        self.tail(0)
    }

    /// POLL_RAND.
    pub fn rand(&self) -> [u8; 4] {
        self.tail(1).to_be_bytes()
    }

    /// POLL_MASK.
    pub fn mask(&self) -> u32 {
        self.tail(2)
    }
}

/// The type-specific fields of a POLL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PollRepr {
    /// POLL_SQN.
    pub sqn: Sqn,
    /// POLL_ROUND.
    pub round: u16,
    /// POLL_S_TYPE.
    pub subtype: PollSubtype,
    /// POLL_PATH.
    pub path: Nla,
    /// POLL_BO_IVL in microseconds.
    pub backoff_ivl_us: u32,
    /// POLL_RAND.
    pub rand: [u8; 4],
    /// POLL_MASK.
    pub mask: u32,
}

impl PollRepr {
    pub(crate) fn parse<T: AsRef<[u8]>>(p: &PollPacket<T>) -> Self {
        Self {
            sqn: p.sqn(),
            round: p.round(),
            subtype: p.subtype(),
            path: p.path(),
            backoff_ivl_us: p.backoff_ivl_us(),
            rand: p.rand(),
            mask: p.mask(),
        }
    }

    pub(crate) fn body_len(&self) -> usize {
        8 + self.path.wire_len() + 12
    }

    pub(crate) fn emit(&self, buf: &mut [u8]) {
        buf[field::SQN].copy_from_slice(&self.sqn.0.to_be_bytes());
        buf[field::ROUND].copy_from_slice(&self.round.to_be_bytes());
        buf[field::S_TYPE].copy_from_slice(&self.subtype.value().to_be_bytes());
        self.path.emit(&mut buf[field::PATH..]);
        let at = field::PATH + self.path.wire_len();
        buf[at..at + 4].copy_from_slice(&self.backoff_ivl_us.to_be_bytes());
        buf[at + 4..at + 8].copy_from_slice(&self.rand);
        buf[at + 8..at + 12].copy_from_slice(&self.mask.to_be_bytes());
        debug_assert_eq!(HEADER_LEN + 8, field::PATH);
    }
}

typed_view!(
    /// A view of a POLR (§14.7.2). Its TSI port is the destination-port field.
    PolrPacket,
    super::PacketType::Polr
);

impl<T: AsRef<[u8]>> PolrPacket<T> {
    /// POLR_SQN: the POLL_SQN answered.
    pub fn sqn(&self) -> Sqn {
        Sqn(be32(self.as_bytes(), field::SQN.start).unwrap_or(0))
    }

    /// POLR_ROUND: the POLL_ROUND answered.
    pub fn round(&self) -> u16 {
        be16(self.as_bytes(), field::ROUND.start).unwrap_or(0)
    }
}

/// The type-specific fields of a POLR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PolrRepr {
    /// POLR_SQN.
    pub sqn: Sqn,
    /// POLR_ROUND.
    pub round: u16,
}

impl PolrRepr {
    pub(crate) fn parse<T: AsRef<[u8]>>(p: &PolrPacket<T>) -> Self {
        Self {
            sqn: p.sqn(),
            round: p.round(),
        }
    }

    pub(crate) const fn body_len(&self) -> usize {
        8
    }

    pub(crate) fn emit(&self, buf: &mut [u8]) {
        buf[field::SQN].copy_from_slice(&self.sqn.0.to_be_bytes());
        buf[field::ROUND].copy_from_slice(&self.round.to_be_bytes());
        buf[22..24].copy_from_slice(&[0, 0]);
    }
}
