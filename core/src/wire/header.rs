//! The common PGM header (§8) and the layout of each packet type.

use core::fmt;

use super::checksum;
use super::options::{self, OptionList};
use super::{Field, Gsi, Result, WireError};

/// Byte positions of the common header's fields (§8).
pub(crate) mod field {
    use super::Field;

    pub(crate) const SPORT: Field = 0..2;
    pub(crate) const DPORT: Field = 2..4;
    pub(crate) const TYPE: usize = 4;
    pub(crate) const OPTIONS: usize = 5;
    pub(crate) const CHECKSUM: Field = 6..8;
    pub(crate) const GSI: Field = 8..14;
    pub(crate) const TSDU_LEN: Field = 14..16;
}

/// Length of the common header.
pub const HEADER_LEN: usize = 16;

/// Bits of the header's Options field, as deployed PGM and Wireshark place them (the
/// project's `ARCHITECTURE.md`, "Wire facts"): §8 numbers its bits from the MSB, but every
/// implementation puts "options present" in the least significant bit.
pub mod flags {
    /// One or more option extensions follow the type-specific header (§8 "bit 0").
    pub const OPT_PRESENT: u8 = 0x01;
    /// One or more options are network-significant (§8 "bit 1").
    pub const OPT_NETWORK: u8 = 0x02;
    /// The packet is a parity packet of a variable-sized transmission group (OPT_VAR_PKTLEN).
    pub const OPT_VAR_PKTLEN: u8 = 0x40;
    /// The packet is a parity packet (OPT_PARITY, Appendix A).
    pub const OPT_PARITY: u8 = 0x80;
}

/// A PGM packet type: the low six bits of the type byte (§8; the two high bits are the
/// version, zero here).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PacketType {
    /// Source Path Message, 0x00 (§8.1).
    Spm,
    /// Poll request, 0x01 (§14.7.1).
    Poll,
    /// Poll response, 0x02 (§14.7.2).
    Polr,
    /// Original data, 0x04 (§8.2).
    Odata,
    /// Repair data, 0x05 (§8.2).
    Rdata,
    /// Negative acknowledgement, 0x08 (§8.3).
    Nak,
    /// Null negative acknowledgement, 0x09 (§8.3).
    Nnak,
    /// NAK confirmation, 0x0A (§8.3).
    Ncf,
    /// SPM request, 0x0C (§13.6).
    Spmr,
    /// PGMCC acknowledgement, 0x0D (draft-ietf-rmt-bb-pgmcc-03 §2.1.2; the code OpenPGM and
    /// Wireshark use).
    Ack,
    /// Any other value, kept so that it can be reported.
    Unknown(u8),
}

impl PacketType {
    /// Every known type, in type-code order.
    pub const ALL: [Self; 10] = [
        Self::Spm,
        Self::Poll,
        Self::Polr,
        Self::Odata,
        Self::Rdata,
        Self::Nak,
        Self::Nnak,
        Self::Ncf,
        Self::Spmr,
        Self::Ack,
    ];

    /// The type code on the wire.
    pub fn code(self) -> u8 {
        match self {
            Self::Spm => 0x00,
            Self::Poll => 0x01,
            Self::Polr => 0x02,
            Self::Odata => 0x04,
            Self::Rdata => 0x05,
            Self::Nak => 0x08,
            Self::Nnak => 0x09,
            Self::Ncf => 0x0A,
            Self::Spmr => 0x0C,
            Self::Ack => 0x0D,
            Self::Unknown(c) => c,
        }
    }

    /// The type for a code (the low six bits of the type byte).
    pub fn from_code(code: u8) -> Self {
        match code {
            0x00 => Self::Spm,
            0x01 => Self::Poll,
            0x02 => Self::Polr,
            0x04 => Self::Odata,
            0x05 => Self::Rdata,
            0x08 => Self::Nak,
            0x09 => Self::Nnak,
            0x0A => Self::Ncf,
            0x0C => Self::Spmr,
            0x0D => Self::Ack,
            other => Self::Unknown(other),
        }
    }

    /// A stable lowercase label for metrics (`type="odata"`).
    pub fn label(self) -> &'static str {
        match self {
            Self::Spm => "spm",
            Self::Poll => "poll",
            Self::Polr => "polr",
            Self::Odata => "odata",
            Self::Rdata => "rdata",
            Self::Nak => "nak",
            Self::Nnak => "nnak",
            Self::Ncf => "ncf",
            Self::Spmr => "spmr",
            Self::Ack => "ack",
            Self::Unknown(_) => "unknown",
        }
    }

    /// Whether packets of this type travel upstream, towards the source (NAK, NNAK, POLR,
    /// SPMR, ACK): their destination-port field holds the data-source port (§8.3).
    pub fn is_upstream(self) -> bool {
        matches!(
            self,
            Self::Nak | Self::Nnak | Self::Polr | Self::Spmr | Self::Ack
        )
    }

    /// Whether this type carries application data (ODATA, RDATA).
    pub fn is_data(self) -> bool {
        matches!(self, Self::Odata | Self::Rdata)
    }
}

impl fmt::Display for PacketType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unknown(c) => write!(f, "unknown({c:#04x})"),
            other => f.write_str(&other.label().to_ascii_uppercase()),
        }
    }
}

/// Where the parts of a packet lie: `[0, body_end)` header and type-specific fields,
/// `[body_end, options_end)` the option chain (with OPT_LENGTH), then the TSDU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Layout {
    pub(crate) body_end: usize,
    pub(crate) options_end: usize,
}

/// Reads a big-endian u16 at `at`, or `None` past the end.
pub(crate) fn be16(buf: &[u8], at: usize) -> Option<u16> {
    let b = buf.get(at..at + 2)?;
    Some(u16::from_be_bytes([b[0], b[1]]))
}

/// Reads a big-endian u32 at `at`, or `None` past the end.
pub(crate) fn be32(buf: &[u8], at: usize) -> Option<u32> {
    let b = buf.get(at..at + 4)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// Length of an NLA (AFI, reserved, address) at `at`, or the reason it is not one.
fn nla_len(buf: &[u8], at: usize) -> Result<usize> {
    let afi = be16(buf, at).ok_or(WireError::Truncated)?;
    let len = 4 + super::Afi::from_value(afi)?.addr_len();
    if buf.len() < at + len {
        return Err(WireError::Truncated);
    }
    Ok(len)
}

/// End of the type-specific fields of a packet of type `ty`, validating the NLAs on the way.
pub(crate) fn body_end(buf: &[u8], ty: PacketType) -> Result<usize> {
    let need = |n: usize| {
        if buf.len() < n {
            Err(WireError::Truncated)
        } else {
            Ok(n)
        }
    };
    match ty {
        // sqn, trail, lead, then the path NLA (§8.1).
        PacketType::Spm => {
            let at = HEADER_LEN + 12;
            Ok(at + nla_len(buf, at)?)
        }
        // sqn, round, sub-type, path NLA, back-off interval, random string, mask (§14.7.1).
        PacketType::Poll => {
            let at = HEADER_LEN + 8;
            need(at + nla_len(buf, at)? + 12)
        }
        // sqn, round, reserved (§14.7.2).
        PacketType::Polr => need(HEADER_LEN + 8),
        // sqn, trail (§8.2).
        PacketType::Odata | PacketType::Rdata => need(HEADER_LEN + 8),
        // sqn, source NLA, group NLA (§8.3).
        PacketType::Nak | PacketType::Nnak | PacketType::Ncf => {
            let src = HEADER_LEN + 4;
            let grp = src + nla_len(buf, src)?;
            Ok(grp + nla_len(buf, grp)?)
        }
        // header only (§13.6).
        PacketType::Spmr => Ok(HEADER_LEN),
        // RX_MAX, bitmap (PGMCC).
        PacketType::Ack => need(HEADER_LEN + 8),
        PacketType::Unknown(c) => Err(WireError::BadType(c)),
    }
}

/// A read/write view of a PGM packet's common header (§8), over any packet type.
///
/// See the [module documentation](super) for the checked/unchecked contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps a buffer without checking it. Accessors may panic if it is not a valid packet.
    pub const fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// Wraps a buffer after checking that it is a whole, well-formed PGM packet of a known
    /// type: header, type-specific fields, NLAs, option chain and TSDU length
    /// ([`Packet::check_len`]). The checksum is not verified.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// Checks everything [`Packet::new_checked`] promises, so that no accessor panics.
    pub fn check_len(&self) -> Result<()> {
        self.layout().map(|_| ())
    }

    /// Validates the packet and returns where its parts lie.
    pub(crate) fn layout(&self) -> Result<Layout> {
        let buf = self.buffer.as_ref();
        if buf.len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        let ty = buf[field::TYPE];
        if ty & 0xC0 != 0 {
            return Err(WireError::BadVersion);
        }
        let body_end = body_end(buf, PacketType::from_code(ty))?;
        let options_end = if buf[field::OPTIONS] & flags::OPT_PRESENT != 0 {
            body_end + options::validate_chain(&buf[body_end..])?
        } else {
            body_end
        };
        let tsdu = usize::from(self.tsdu_length());
        if buf.len() != options_end + tsdu {
            return Err(WireError::BadLength);
        }
        Ok(Layout {
            body_end,
            options_end,
        })
    }

    /// Gives back the buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The whole buffer.
    pub fn as_bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    /// The source-port field: the data-source port on downstream packets, the
    /// data-destination port on upstream ones (§8.3).
    pub fn source_port(&self) -> u16 {
        let b = self.buffer.as_ref();
        u16::from_be_bytes([b[0], b[1]])
    }

    /// The destination-port field.
    pub fn dest_port(&self) -> u16 {
        let b = self.buffer.as_ref();
        u16::from_be_bytes([b[2], b[3]])
    }

    /// The raw type byte, version bits included.
    pub fn type_byte(&self) -> u8 {
        self.buffer.as_ref()[field::TYPE]
    }

    /// The packet type.
    pub fn packet_type(&self) -> PacketType {
        PacketType::from_code(self.type_byte() & 0x3F)
    }

    /// The header's Options field (see [`flags`]).
    pub fn options_flags(&self) -> u8 {
        self.buffer.as_ref()[field::OPTIONS]
    }

    /// The checksum field. Zero means the sender computed none.
    pub fn checksum(&self) -> u16 {
        let b = self.buffer.as_ref();
        u16::from_be_bytes([b[6], b[7]])
    }

    /// The Global Source ID.
    pub fn gsi(&self) -> Gsi {
        let mut g = [0u8; 6];
        g.copy_from_slice(&self.buffer.as_ref()[field::GSI]);
        Gsi(g)
    }

    /// The TSDU length: the bytes of application data after header and options.
    pub fn tsdu_length(&self) -> u16 {
        let b = self.buffer.as_ref();
        u16::from_be_bytes([b[14], b[15]])
    }

    /// The port that, with the GSI, forms the TSI: the source port of downstream packets,
    /// the destination port of upstream ones (§8.3).
    pub fn tsi_port(&self) -> u16 {
        if self.packet_type().is_upstream() {
            self.dest_port()
        } else {
            self.source_port()
        }
    }

    /// The transport session identifier of the session this packet belongs to.
    pub fn tsi(&self) -> super::Tsi {
        super::Tsi::new(self.gsi(), self.tsi_port())
    }

    /// Verifies the checksum (§8). A zero field means "no checksum" and passes, except on
    /// ODATA and RDATA, where the checksum is mandatory ([`WireError::MissingChecksum`]).
    pub fn verify_checksum(&self) -> Result<()> {
        if cfg!(fuzzing) {
            return Ok(());
        }
        let b = self.buffer.as_ref();
        if self.checksum() == 0 {
            if self.packet_type().is_data() {
                return Err(WireError::MissingChecksum);
            }
            return Ok(());
        }
        // Summing the packet with its checksum in place gives 0xFFFF when it is right.
        if checksum::sum(b) == 0xFFFF {
            Ok(())
        } else {
            Err(WireError::BadChecksum)
        }
    }

    /// The option chain, empty when the Options field says none are present. On a packet
    /// that did not pass [`Packet::check_len`] this never panics but may stop early.
    pub fn options(&self) -> OptionList<'_> {
        Packet::new_unchecked(self.buffer.as_ref()).options_ref()
    }

    /// The TSDU: the bytes after header and options (application data on ODATA/RDATA).
    pub fn payload(&self) -> &[u8] {
        Packet::new_unchecked(self.buffer.as_ref()).payload_ref()
    }
}

impl<'a> Packet<&'a [u8]> {
    /// [`Packet::payload`], borrowed for the buffer's lifetime rather than the view's.
    pub fn payload_ref(&self) -> &'a [u8] {
        let b: &'a [u8] = self.buffer;
        let len = usize::from(self.tsdu_length());
        b.len()
            .checked_sub(len)
            .and_then(|at| b.get(at..))
            .unwrap_or(&[])
    }

    /// [`Packet::options`], borrowed for the buffer's lifetime rather than the view's.
    pub fn options_ref(&self) -> OptionList<'a> {
        let b: &'a [u8] = self.buffer;
        if b.len() < HEADER_LEN || b[field::OPTIONS] & flags::OPT_PRESENT == 0 {
            return OptionList::EMPTY;
        }
        let Ok(end) = body_end(b, self.packet_type()) else {
            return OptionList::EMPTY;
        };
        OptionList::from_chain(&b[end..])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the source-port field.
    pub fn set_source_port(&mut self, v: u16) {
        self.buffer.as_mut()[field::SPORT].copy_from_slice(&v.to_be_bytes());
    }

    /// Sets the destination-port field.
    pub fn set_dest_port(&mut self, v: u16) {
        self.buffer.as_mut()[field::DPORT].copy_from_slice(&v.to_be_bytes());
    }

    //= https://www.rfc-editor.org/rfc/rfc3208#section-8
    //# The high-order two bits of the Type field encode a version
    //# number, 0x0 in this instance.  The low-order nibble of the type
    //# field encodes the specific packet type.  The intervening two
    //# bits (the low-order two bits of the high-order nibble) are
    //# reserved and MUST be zero.
    /// Sets the type byte to a packet type, version 0.
    pub fn set_packet_type(&mut self, t: PacketType) {
        self.buffer.as_mut()[field::TYPE] = t.code();
    }

    /// Sets the header's Options field.
    pub fn set_options_flags(&mut self, v: u8) {
        self.buffer.as_mut()[field::OPTIONS] = v;
    }

    /// Sets the checksum field.
    pub fn set_checksum(&mut self, v: u16) {
        self.buffer.as_mut()[field::CHECKSUM].copy_from_slice(&v.to_be_bytes());
    }

    /// Sets the GSI.
    pub fn set_gsi(&mut self, g: Gsi) {
        self.buffer.as_mut()[field::GSI].copy_from_slice(&g.0);
    }

    /// Sets the TSDU length.
    pub fn set_tsdu_length(&mut self, v: u16) {
        self.buffer.as_mut()[field::TSDU_LEN].copy_from_slice(&v.to_be_bytes());
    }

    /// Recomputes and writes the checksum over the whole buffer.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let c = checksum(self.buffer.as_ref());
        self.set_checksum(c);
    }

    /// Mutable access to the whole buffer, for the typed views' setters.
    pub(crate) fn bytes_mut(&mut self) -> &mut [u8] {
        self.buffer.as_mut()
    }
}

impl<T: AsRef<[u8]>> fmt::Display for Packet<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.buffer.as_ref().len() < HEADER_LEN {
            return f.write_str("PGM (truncated)");
        }
        write!(
            f,
            "PGM {} tsi={} sport={} dport={} tsdu={}",
            self.packet_type(),
            self.tsi(),
            self.source_port(),
            self.dest_port(),
            self.tsdu_length()
        )
    }
}
