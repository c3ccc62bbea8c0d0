//! A whole packet as a plain value: parse any PGM packet, emit any PGM packet.

use core::fmt;

use super::ack::{AckPacket, AckRepr};
use super::data::{DataPacket, DataRepr};
use super::header::{HEADER_LEN, PacketType, flags};
use super::nak::{NakPacket, NakRepr};
use super::poll::{PollPacket, PollRepr, PolrPacket, PolrRepr};
use super::spm::{SpmPacket, SpmRepr};
use super::{Gsi, OptionList, Packet, Result, Tsi, WireError};

/// The type-specific part of a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Body<'a> {
    /// SPM (§8.1).
    Spm(SpmRepr),
    /// POLL (§14.7.1).
    Poll(PollRepr),
    /// POLR (§14.7.2).
    Polr(PolrRepr),
    /// ODATA (§8.2).
    Odata(DataRepr<'a>),
    /// RDATA (§8.2).
    Rdata(DataRepr<'a>),
    /// NAK (§8.3).
    Nak(NakRepr),
    /// NNAK (§8.3).
    Nnak(NakRepr),
    /// NCF (§8.3).
    Ncf(NakRepr),
    /// SPMR (§13.6): no type-specific fields.
    Spmr,
    /// ACK (PGMCC).
    Ack(AckRepr),
}

impl Body<'_> {
    /// The packet type of this body.
    pub fn packet_type(&self) -> PacketType {
        match self {
            Self::Spm(_) => PacketType::Spm,
            Self::Poll(_) => PacketType::Poll,
            Self::Polr(_) => PacketType::Polr,
            Self::Odata(_) => PacketType::Odata,
            Self::Rdata(_) => PacketType::Rdata,
            Self::Nak(_) => PacketType::Nak,
            Self::Nnak(_) => PacketType::Nnak,
            Self::Ncf(_) => PacketType::Ncf,
            Self::Spmr => PacketType::Spmr,
            Self::Ack(_) => PacketType::Ack,
        }
    }

    fn body_len(&self) -> usize {
        match self {
            Self::Spm(r) => r.body_len(),
            Self::Poll(r) => r.body_len(),
            Self::Polr(r) => r.body_len(),
            Self::Odata(r) | Self::Rdata(r) => r.body_len(),
            Self::Nak(r) | Self::Nnak(r) | Self::Ncf(r) => r.body_len(),
            Self::Spmr => 0,
            Self::Ack(r) => r.body_len(),
        }
    }

    fn payload(&self) -> &[u8] {
        match self {
            Self::Odata(r) | Self::Rdata(r) => r.payload,
            _ => &[],
        }
    }
}

/// A whole PGM packet as a plain value: the common header's fields, the type-specific fields
/// and the options. The header's Options bits and TSDU length are derived on emit, so a
/// `Repr` cannot describe an inconsistent packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr<'a> {
    /// The source-port field (the data-source port downstream, the data-destination port
    /// upstream, §8.3).
    pub sport: u16,
    /// The destination-port field.
    pub dport: u16,
    /// The Global Source ID.
    pub gsi: Gsi,
    /// OPT_PARITY: a parity packet (Appendix A), or a parity NAK/NCF.
    pub parity: bool,
    /// OPT_VAR_PKTLEN: parity over a variable-sized transmission group (Appendix A).
    pub var_pktlen: bool,
    /// The type-specific fields.
    pub body: Body<'a>,
    /// The option extensions.
    pub options: OptionList<'a>,
}

impl<'a> Repr<'a> {
    /// Parses a packet. The view need not have been checked: this checks it.
    pub fn parse(packet: &Packet<&'a [u8]>) -> Result<Self> {
        packet.check_len()?;
        let bytes: &'a [u8] = packet.into_inner();
        let body = match packet.packet_type() {
            PacketType::Spm => Body::Spm(SpmRepr::parse(&SpmPacket::new_unchecked(bytes))),
            PacketType::Poll => Body::Poll(PollRepr::parse(&PollPacket::new_unchecked(bytes))),
            PacketType::Polr => Body::Polr(PolrRepr::parse(&PolrPacket::new_unchecked(bytes))),
            PacketType::Odata => Body::Odata(DataRepr::parse(&DataPacket::new_unchecked(bytes))),
            PacketType::Rdata => Body::Rdata(DataRepr::parse(&DataPacket::new_unchecked(bytes))),
            PacketType::Nak => Body::Nak(NakRepr::parse(&NakPacket::new_unchecked(bytes))),
            PacketType::Nnak => Body::Nnak(NakRepr::parse(&NakPacket::new_unchecked(bytes))),
            PacketType::Ncf => Body::Ncf(NakRepr::parse(&NakPacket::new_unchecked(bytes))),
            PacketType::Spmr => Body::Spmr,
            PacketType::Ack => Body::Ack(AckRepr::parse(&AckPacket::new_unchecked(bytes))),
            PacketType::Unknown(c) => return Err(WireError::BadType(c)),
        };
        let f = packet.options_flags();
        Ok(Self {
            sport: packet.source_port(),
            dport: packet.dest_port(),
            gsi: packet.gsi(),
            parity: f & flags::OPT_PARITY != 0,
            var_pktlen: f & flags::OPT_VAR_PKTLEN != 0,
            body,
            options: packet.options_ref(),
        })
    }

    /// Checks the bytes and parses them: `Packet::new_checked` then [`Repr::parse`].
    pub fn parse_bytes(bytes: &'a [u8]) -> Result<Self> {
        Self::parse(&Packet::new_unchecked(bytes))
    }

    /// The packet type.
    pub fn packet_type(&self) -> PacketType {
        self.body.packet_type()
    }

    /// The TSI of the session the packet belongs to.
    pub fn tsi(&self) -> Tsi {
        let port = if self.packet_type().is_upstream() {
            self.dport
        } else {
            self.sport
        };
        Tsi::new(self.gsi, port)
    }

    /// The length of the emitted packet: header, type-specific fields, options and TSDU.
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN + self.body.body_len() + self.options.wire_len() + self.body.payload().len()
    }

    /// The header's Options field this packet is emitted with: OPT_PRESENT and OPT_NETWORK
    /// derived from the options (§9.1), the parity bits from the fields.
    pub fn options_flags(&self) -> u8 {
        let mut f = 0;
        //= https://www.rfc-editor.org/rfc/rfc3208#section-9.1
        //# In addition, the presence of the options MUST be encoded in the
        //# Options field of the standard PGM header before the Checksum is
        //# computed.
        if !self.options.is_empty() {
            f |= flags::OPT_PRESENT;
        }
        let in_odata = matches!(self.body, Body::Odata(_));
        if self.options.any_network_significant(in_odata) {
            f |= flags::OPT_NETWORK;
        }
        if self.parity {
            f |= flags::OPT_PARITY;
        }
        if self.var_pktlen {
            f |= flags::OPT_VAR_PKTLEN;
        }
        f
    }

    /// Emits the packet into the start of `buf`, checksum included, and returns its length.
    /// Never allocates; fails with [`WireError::BufferTooSmall`] if `buf` is too short and
    /// [`WireError::Unrepresentable`] for values the wire cannot carry.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize> {
        let len = self.buffer_len();
        let payload = self.body.payload();
        let tsdu = u16::try_from(payload.len()).map_err(|_| WireError::Unrepresentable)?;
        let out = buf.get_mut(..len).ok_or(WireError::BufferTooSmall)?;
        let mut p = Packet::new_unchecked(&mut *out);
        p.set_source_port(self.sport);
        p.set_dest_port(self.dport);
        p.set_packet_type(self.packet_type());
        p.set_options_flags(self.options_flags());
        p.set_checksum(0);
        p.set_gsi(self.gsi);
        p.set_tsdu_length(tsdu);
        match &self.body {
            Body::Spm(r) => r.emit(out),
            Body::Poll(r) => r.emit(out),
            Body::Polr(r) => r.emit(out),
            Body::Odata(r) | Body::Rdata(r) => r.emit(out),
            Body::Nak(r) | Body::Nnak(r) | Body::Ncf(r) => r.emit(out),
            Body::Spmr => {}
            Body::Ack(r) => r.emit(out),
        }
        let opt_at = HEADER_LEN + self.body.body_len();
        let opt_len = self.options.emit(&mut out[opt_at..])?;
        out[opt_at + opt_len..].copy_from_slice(payload);
        Packet::new_unchecked(out).fill_checksum();
        Ok(len)
    }
}

impl fmt::Display for Repr<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PGM {} tsi={}", self.packet_type(), self.tsi())?;
        match &self.body {
            Body::Spm(r) => write!(
                f,
                " sqn={} trail={} lead={} path={}",
                r.sqn, r.trail, r.lead, r.path
            )?,
            Body::Poll(r) => write!(
                f,
                " sqn={} round={} subtype={:?} path={}",
                r.sqn, r.round, r.subtype, r.path
            )?,
            Body::Polr(r) => write!(f, " sqn={} round={}", r.sqn, r.round)?,
            Body::Odata(r) | Body::Rdata(r) => {
                write!(
                    f,
                    " sqn={} trail={} len={}",
                    r.sqn,
                    r.trail,
                    r.payload.len()
                )?;
            }
            Body::Nak(r) | Body::Nnak(r) | Body::Ncf(r) => {
                write!(f, " sqn={} src={} grp={}", r.sqn, r.source, r.group)?;
            }
            Body::Spmr => {}
            Body::Ack(r) => write!(f, " rx_max={} bitmap={:#010x}", r.rx_max, r.bitmap)?,
        }
        if !self.options.is_empty() {
            write!(f, " options={:?}", self.options)?;
        }
        Ok(())
    }
}
