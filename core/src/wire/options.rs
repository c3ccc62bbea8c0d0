//! Option extensions (§9, and the options of Appendices A, B and E).
//!
//! An option chain is an `OPT_LENGTH` (type 0x00, 4 bytes, the total length of all options)
//! followed by TLVs; the last carries the OPT_END bit (0x80 of its type byte). Each option's
//! common header is four bytes:
//!
//! ```text
//! byte 0: E | type (7 bits)       byte 1: length of the whole option, header included
//! byte 2: reserved | F | OPX      byte 3: U | option-specific (7 bits)
//! ```
//!
//! with, as OpenPGM and Wireshark place them, OP_ENCODED (F) at 0x08 and OPX at 0x03 of byte 2,
//! and OP_ENCODED_NULL (U) at 0x80 of byte 3. Byte 2 is kept as read: OpenPGM fills it with
//! arbitrary values in OPT_NAK_LIST, so its OPX bits are only meaningful for unknown options.

use core::fmt;

use super::header::{be16, be32};
use super::{Nla, Result, Sqn, WireError};

/// Length of an option's common header.
pub const OPTION_HEADER_LEN: usize = 4;
/// The most options a packet may carry (§9), `OPT_LENGTH` not counted.
pub const MAX_OPTIONS: usize = 16;
/// The most sequence numbers an `OPT_NAK_LIST` may carry (§9.3).
pub const MAX_NAK_LIST: usize = 62;

/// The OPT_END bit of an option's type byte.
const OPT_END: u8 = 0x80;
/// OP_ENCODED (F) in byte 2.
const OP_ENCODED: u8 = 0x08;
/// The OPX bits in byte 2.
const OPX_MASK: u8 = 0x03;
/// OP_ENCODED_NULL (U) in byte 3.
const OP_ENCODED_NULL: u8 = 0x80;

/// An option type code (§9, §11.8, §12.7, §15.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum OptionType {
    /// OPT_LENGTH, 0x00.
    Length,
    /// OPT_FRAGMENT, 0x01.
    Fragment,
    /// OPT_NAK_LIST, 0x02.
    NakList,
    /// OPT_JOIN, 0x03.
    Join,
    /// OPT_NAK_BO_IVL, 0x04.
    NakBoIvl,
    /// OPT_NAK_BO_RNG, 0x05.
    NakBoRng,
    /// OPT_REDIRECT, 0x07.
    Redirect,
    /// OPT_PARITY_PRM, 0x08.
    ParityPrm,
    /// OPT_PARITY_GRP, 0x09.
    ParityGrp,
    /// OPT_CURR_TGSIZE, 0x0A.
    CurrTgsize,
    /// OPT_NBR_UNREACH, 0x0B.
    NbrUnreach,
    /// OPT_PATH_NLA, 0x0C.
    PathNla,
    /// OPT_SYN, 0x0D.
    Syn,
    /// OPT_FIN, 0x0E.
    Fin,
    /// OPT_RST, 0x0F.
    Rst,
    /// OPT_CR, 0x10.
    Cr,
    /// OPT_CRQST, 0x11.
    Crqst,
    /// OPT_PGMCC_DATA, 0x12 (PGMCC; OpenPGM's and Wireshark's code, see `docs/pgmcc.md`).
    PgmccData,
    /// OPT_PGMCC_FEEDBACK, 0x13 (PGMCC; OpenPGM's and Wireshark's code).
    PgmccFeedback,
    /// OPT_INVALID, 0x7F: an option a network element invalidated (§9).
    Invalid,
    /// A type this implementation does not know.
    Unknown(u8),
}

impl OptionType {
    /// The 7-bit type code.
    pub fn code(self) -> u8 {
        match self {
            Self::Length => 0x00,
            Self::Fragment => 0x01,
            Self::NakList => 0x02,
            Self::Join => 0x03,
            Self::NakBoIvl => 0x04,
            Self::NakBoRng => 0x05,
            Self::Redirect => 0x07,
            Self::ParityPrm => 0x08,
            Self::ParityGrp => 0x09,
            Self::CurrTgsize => 0x0A,
            Self::NbrUnreach => 0x0B,
            Self::PathNla => 0x0C,
            Self::Syn => 0x0D,
            Self::Fin => 0x0E,
            Self::Rst => 0x0F,
            Self::Cr => 0x10,
            Self::Crqst => 0x11,
            Self::PgmccData => 0x12,
            Self::PgmccFeedback => 0x13,
            Self::Invalid => 0x7F,
            Self::Unknown(c) => c & 0x7F,
        }
    }

    /// The type for a 7-bit code.
    pub fn from_code(code: u8) -> Self {
        match code & 0x7F {
            0x00 => Self::Length,
            0x01 => Self::Fragment,
            0x02 => Self::NakList,
            0x03 => Self::Join,
            0x04 => Self::NakBoIvl,
            0x05 => Self::NakBoRng,
            0x07 => Self::Redirect,
            0x08 => Self::ParityPrm,
            0x09 => Self::ParityGrp,
            0x0A => Self::CurrTgsize,
            0x0B => Self::NbrUnreach,
            0x0C => Self::PathNla,
            0x0D => Self::Syn,
            0x0E => Self::Fin,
            0x0F => Self::Rst,
            0x10 => Self::Cr,
            0x11 => Self::Crqst,
            0x12 => Self::PgmccData,
            0x13 => Self::PgmccFeedback,
            0x7F => Self::Invalid,
            other => Self::Unknown(other),
        }
    }
}

/// The Option Extensibility bits (§9): what a network element does with an option it does not
/// know.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Opx {
    /// 00: ignore the option.
    Ignore,
    /// 01: invalidate it by changing its type to OPT_INVALID (0x7F).
    Invalidate,
    /// 10: discard the packet.
    Discard,
    /// 11: reserved.
    Reserved,
}

/// The option common header's flag bytes, kept as read so that emitting reproduces them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct OptFlags {
    /// Byte 2 of the option header: reserved bits, OP_ENCODED (0x08) and OPX (0x03).
    pub byte2: u8,
    /// OP_ENCODED_NULL, the high bit of byte 3.
    pub encoded_null: bool,
}

impl OptFlags {
    /// OP_ENCODED (F): the option was recovered through FEC (Appendix A).
    pub fn encoded(&self) -> bool {
        self.byte2 & OP_ENCODED != 0
    }

    /// The OPX bits. Meaningful only on options unknown to the reader (§9).
    pub fn opx(&self) -> Opx {
        match self.byte2 & OPX_MASK {
            0 => Opx::Ignore,
            1 => Opx::Invalidate,
            2 => Opx::Discard,
            _ => Opx::Reserved,
        }
    }

    /// Flags with the given OPX bits and nothing else set.
    pub fn with_opx(opx: Opx) -> Self {
        let bits = match opx {
            Opx::Ignore => 0,
            Opx::Invalidate => 1,
            Opx::Discard => 2,
            Opx::Reserved => 3,
        };
        Self {
            byte2: bits,
            encoded_null: false,
        }
    }
}

/// A list of sequence numbers, as carried by `OPT_NAK_LIST`: either the option's bytes on the
/// wire (parsed, zero-copy) or a caller's slice (to emit). Equality compares the numbers.
#[derive(Clone, Copy)]
pub enum SqnList<'a> {
    /// Big-endian 32-bit sequence numbers, a multiple of four bytes long.
    Wire(&'a [u8]),
    /// Sequence numbers in memory.
    Slice(&'a [Sqn]),
}

impl<'a> SqnList<'a> {
    /// How many sequence numbers the list holds.
    pub fn len(&self) -> usize {
        match self {
            Self::Wire(b) => b.len() / 4,
            Self::Slice(s) => s.len(),
        }
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The `i`th sequence number.
    pub fn get(&self, i: usize) -> Option<Sqn> {
        match self {
            Self::Wire(b) => be32(b, i.checked_mul(4)?).map(Sqn),
            Self::Slice(s) => s.get(i).copied(),
        }
    }

    /// The sequence numbers in order.
    pub fn iter(&self) -> impl Iterator<Item = Sqn> + use<'a> {
        let list = *self;
        (0..list.len()).filter_map(move |i| list.get(i))
    }
}

impl PartialEq for SqnList<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl Eq for SqnList<'_> {}

impl fmt::Debug for SqnList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// The value of one option, by type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum OptionValue<'a> {
    /// OPT_FRAGMENT (§9.2): this TSDU is a fragment of an APDU.
    Fragment {
        /// Sequence number of the packet holding the APDU's first fragment.
        first_sqn: Sqn,
        /// Offset of this fragment in the APDU (OPT_FRAG_OFF).
        offset: u32,
        /// Total length of the APDU (OPT_FRAG_LEN).
        length: u32,
    },
    /// OPT_NAK_LIST (§9.3): further sequence numbers a NAK, NNAK or NCF applies to.
    NakList(SqnList<'a>),
    /// OPT_JOIN (§9.4): late joiners may request repairs from this sequence number on.
    Join {
        /// OPT_JOIN_MIN.
        min_sqn: Sqn,
    },
    /// OPT_NAK_BO_IVL (§15.4.1): the NAK back-off interval to use.
    NakBoIvl {
        /// NAK_BO_IVL in microseconds.
        ivl_us: u32,
        /// The POLL_SQN the value corresponds to; zero if not set through polling.
        poll_sqn: Sqn,
    },
    /// OPT_NAK_BO_RNG (§15.4.2): bounds for the NAK back-off interval.
    NakBoRng {
        /// Maximum NAK_BO_IVL in microseconds.
        max_us: u32,
        /// Minimum NAK_BO_IVL in microseconds.
        min_us: u32,
    },
    /// OPT_REDIRECT (§9.5.5): a DLR's own address, for NAKs.
    Redirect(Nla),
    /// OPT_PARITY_PRM (§11.8.1): FEC parameters of the session.
    ParityPrm {
        /// P: the source sends pro-active parity.
        proactive: bool,
        /// O: the source sends on-demand parity.
        on_demand: bool,
        /// PARITY_PRM_TGS, the transmission group size.
        tg_size: u32,
    },
    /// OPT_PARITY_GRP (§11.8.2): the parity group number of a parity packet.
    ParityGrp {
        /// PRM_GROUP.
        group: u32,
    },
    /// OPT_CURR_TGSIZE (§11.8.3): the actual size of this transmission group.
    CurrTgsize {
        /// PRM_ATGSIZE.
        size: u32,
    },
    /// OPT_NBR_UNREACH (§15.4.3): the sender cannot reach downstream neighbours by multicast.
    NbrUnreach,
    /// OPT_PATH_NLA (§15.4.4): the NLA of the sending element's interface. The RFC gives the
    /// field no AFI, so its length tells the family (4 bytes IPv4, 16 bytes IPv6).
    PathNla(Nla),
    /// OPT_SYN (§9.6): the first data packet of the session.
    Syn,
    /// OPT_FIN (§9.7): the last data packet of the session, or an SPM after it.
    Fin,
    /// OPT_RST (§9.8): the session is reset.
    Rst {
        /// N: NAKs for earlier data will go unanswered.
        no_naks: bool,
        /// The 6-bit application error code.
        error_code: u8,
    },
    /// OPT_CR (§12.7.1): a congestion report.
    Cr {
        /// The L, P and R bits (0x04, 0x02, 0x01): which loads are reported.
        which: u8,
        /// OPT_CR_LEAD, the reference sequence number.
        lead: Sqn,
        /// OPT_CR_NE_WL.
        ne_worst_link: u16,
        /// OPT_CR_NE_WP.
        ne_worst_path: u16,
        /// OPT_CR_RX_WP.
        rx_worst_path: u16,
        /// OPT_CR_RCVR, the worst receiver.
        receiver: Nla,
    },
    /// OPT_CRQST (§12.7.2): a congestion report request.
    Crqst {
        /// The L, P and R bits (0x04, 0x02, 0x01): which loads are requested.
        which: u8,
    },
    /// OPT_PGMCC_DATA (PGMCC, draft-ietf-rmt-bb-pgmcc-03 §2.1.1): carried by ODATA and RDATA.
    PgmccData {
        /// The source's timestamp, in milliseconds of an arbitrary epoch.
        tstamp: u32,
        /// The current acker; the unspecified address (0.0.0.0 or ::) when there is none,
        /// which asks receivers to volunteer.
        acker: Nla,
    },
    /// OPT_PGMCC_FEEDBACK (PGMCC §2.1.2): a receiver's report, in ACKs and NAKs.
    PgmccFeedback {
        /// The timestamp of the most recent data packet, echoed (corrected for the time it
        /// was held, in NAKs).
        tstamp: u32,
        /// The receiver's loss rate, 0 = none, 65535 = all.
        loss_rate: u16,
        /// The reporting receiver's own address.
        receiver: Nla,
    },
    /// OPT_INVALID (0x7F): an option a network element invalidated; its contents are kept.
    Invalid {
        /// The 7 option-specific bits of byte 3.
        specific: u8,
        /// The bytes after the option's header.
        data: &'a [u8],
    },
    /// An option of a type this implementation does not know, kept whole.
    Unknown {
        /// The 7-bit type code.
        code: u8,
        /// The 7 option-specific bits of byte 3.
        specific: u8,
        /// The bytes after the option's header.
        data: &'a [u8],
    },
}

/// One option: its common header flags and its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PgmOption<'a> {
    /// Byte 2 and OP_ENCODED_NULL as carried (see [`OptFlags`]).
    pub flags: OptFlags,
    /// The option's type and contents.
    pub value: OptionValue<'a>,
}

impl<'a> From<OptionValue<'a>> for PgmOption<'a> {
    fn from(value: OptionValue<'a>) -> Self {
        Self {
            //= https://www.rfc-editor.org/rfc/rfc3208#section-9
            //# OP_ENCODED and
            //# OP_ENCODED_NULL MUST be normally set to zero except when the option
            //# is used in FEC packets to preserve original options.
            flags: OptFlags::default(),
            value,
        }
    }
}

impl<'a> PgmOption<'a> {
    /// The option's type.
    pub fn option_type(&self) -> OptionType {
        match self.value {
            OptionValue::Fragment { .. } => OptionType::Fragment,
            OptionValue::NakList(_) => OptionType::NakList,
            OptionValue::Join { .. } => OptionType::Join,
            OptionValue::NakBoIvl { .. } => OptionType::NakBoIvl,
            OptionValue::NakBoRng { .. } => OptionType::NakBoRng,
            OptionValue::Redirect(_) => OptionType::Redirect,
            OptionValue::ParityPrm { .. } => OptionType::ParityPrm,
            OptionValue::ParityGrp { .. } => OptionType::ParityGrp,
            OptionValue::CurrTgsize { .. } => OptionType::CurrTgsize,
            OptionValue::NbrUnreach => OptionType::NbrUnreach,
            OptionValue::PathNla(_) => OptionType::PathNla,
            OptionValue::Syn => OptionType::Syn,
            OptionValue::Fin => OptionType::Fin,
            OptionValue::Rst { .. } => OptionType::Rst,
            OptionValue::Cr { .. } => OptionType::Cr,
            OptionValue::Crqst { .. } => OptionType::Crqst,
            OptionValue::PgmccData { .. } => OptionType::PgmccData,
            OptionValue::PgmccFeedback { .. } => OptionType::PgmccFeedback,
            OptionValue::Invalid { .. } => OptionType::Invalid,
            OptionValue::Unknown { code, .. } => OptionType::Unknown(code),
        }
    }

    /// Whether the option is network-significant, i.e. sets the header's OPT_NETWORK bit (§9).
    /// Unknown and invalidated options count as not network-significant; `in_odata` applies
    /// the exception of OPT_CURR_TGSIZE (§11.8.3).
    pub fn is_network_significant(&self, in_odata: bool) -> bool {
        match self.value {
            OptionValue::NakList(_)
            | OptionValue::Redirect(_)
            | OptionValue::ParityPrm { .. }
            | OptionValue::Cr { .. }
            | OptionValue::Crqst { .. }
            | OptionValue::NakBoIvl { .. }
            | OptionValue::NakBoRng { .. }
            | OptionValue::NbrUnreach
            | OptionValue::PathNla(_) => true,
            OptionValue::CurrTgsize { .. } => !in_odata,
            _ => false,
        }
    }

    /// The option's length on the wire, header included.
    pub fn wire_len(&self) -> usize {
        OPTION_HEADER_LEN
            + match self.value {
                OptionValue::Fragment { .. } => 12,
                OptionValue::NakList(l) => 4 * l.len(),
                OptionValue::Join { .. }
                | OptionValue::ParityPrm { .. }
                | OptionValue::ParityGrp { .. }
                | OptionValue::CurrTgsize { .. } => 4,
                OptionValue::NakBoIvl { .. } | OptionValue::NakBoRng { .. } => 8,
                OptionValue::Redirect(n) => n.wire_len(),
                OptionValue::PathNla(n) => n.afi().addr_len(),
                OptionValue::NbrUnreach
                | OptionValue::Syn
                | OptionValue::Fin
                | OptionValue::Rst { .. }
                | OptionValue::Crqst { .. } => 0,
                OptionValue::Cr { receiver, .. } => 12 + receiver.wire_len(),
                OptionValue::PgmccData { acker: nla, .. }
                | OptionValue::PgmccFeedback { receiver: nla, .. } => 4 + nla.wire_len(),
                OptionValue::Invalid { data, .. } | OptionValue::Unknown { data, .. } => data.len(),
            }
    }

    /// Parses one option from the start of `buf`, returning it and its length. Errors name
    /// the first problem; the OPT_END bit is reported separately by the caller.
    fn parse(buf: &'a [u8]) -> Result<(Self, usize)> {
        let hdr = buf
            .get(..OPTION_HEADER_LEN)
            .ok_or(WireError::OptionOverrun)?;
        let len = usize::from(hdr[1]);
        if len < OPTION_HEADER_LEN {
            return Err(WireError::BadOptionLength);
        }
        let opt = buf.get(..len).ok_or(WireError::OptionOverrun)?;
        let body = &opt[OPTION_HEADER_LEN..];
        let specific = hdr[3] & 0x7F;
        let flags = OptFlags {
            byte2: hdr[2],
            encoded_null: hdr[3] & OP_ENCODED_NULL != 0,
        };
        let exact = |n: usize| {
            if body.len() == n {
                Ok(())
            } else {
                Err(WireError::BadOptionLength)
            }
        };
        let u32_at = |at: usize| be32(body, at).ok_or(WireError::BadOptionLength);
        let value = match OptionType::from_code(hdr[0]) {
            OptionType::Length => return Err(WireError::MissingOptLength),
            OptionType::Fragment => {
                exact(12)?;
                OptionValue::Fragment {
                    first_sqn: Sqn(u32_at(0)?),
                    offset: u32_at(4)?,
                    length: u32_at(8)?,
                }
            }
            OptionType::NakList => {
                if body.len() % 4 != 0 {
                    return Err(WireError::BadOptionLength);
                }
                if body.len() / 4 > MAX_NAK_LIST {
                    return Err(WireError::NakListTooLong);
                }
                OptionValue::NakList(SqnList::Wire(body))
            }
            OptionType::Join => {
                exact(4)?;
                OptionValue::Join {
                    min_sqn: Sqn(u32_at(0)?),
                }
            }
            OptionType::NakBoIvl => {
                exact(8)?;
                OptionValue::NakBoIvl {
                    ivl_us: u32_at(0)?,
                    poll_sqn: Sqn(u32_at(4)?),
                }
            }
            OptionType::NakBoRng => {
                exact(8)?;
                OptionValue::NakBoRng {
                    max_us: u32_at(0)?,
                    min_us: u32_at(4)?,
                }
            }
            OptionType::Redirect => {
                let (nla, n) = Nla::parse(body).map_err(|e| match e {
                    WireError::Truncated => WireError::BadOptionLength,
                    other => other,
                })?;
                exact(n)?;
                OptionValue::Redirect(nla)
            }
            OptionType::ParityPrm => {
                exact(4)?;
                OptionValue::ParityPrm {
                    proactive: specific & 0x02 != 0,
                    on_demand: specific & 0x01 != 0,
                    tg_size: u32_at(0)?,
                }
            }
            OptionType::ParityGrp => {
                exact(4)?;
                OptionValue::ParityGrp { group: u32_at(0)? }
            }
            OptionType::CurrTgsize => {
                exact(4)?;
                OptionValue::CurrTgsize { size: u32_at(0)? }
            }
            OptionType::NbrUnreach => {
                exact(0)?;
                OptionValue::NbrUnreach
            }
            OptionType::PathNla => {
                let afi = match body.len() {
                    4 => super::Afi::Ipv4,
                    16 => super::Afi::Ipv6,
                    _ => return Err(WireError::BadOptionLength),
                };
                OptionValue::PathNla(Nla::from_afi_bytes(afi, body))
            }
            OptionType::Syn => {
                exact(0)?;
                OptionValue::Syn
            }
            OptionType::Fin => {
                exact(0)?;
                OptionValue::Fin
            }
            OptionType::Rst => {
                exact(0)?;
                OptionValue::Rst {
                    no_naks: specific & 0x40 != 0,
                    error_code: specific & 0x3F,
                }
            }
            OptionType::Cr => {
                if body.len() < 12 {
                    return Err(WireError::BadOptionLength);
                }
                let (receiver, n) = Nla::parse(&body[12..]).map_err(|e| match e {
                    WireError::Truncated => WireError::BadOptionLength,
                    other => other,
                })?;
                exact(12 + n)?;
                OptionValue::Cr {
                    which: specific & 0x07,
                    lead: Sqn(u32_at(0)?),
                    ne_worst_link: be16(body, 4).unwrap_or(0),
                    ne_worst_path: be16(body, 6).unwrap_or(0),
                    rx_worst_path: be16(body, 8).unwrap_or(0),
                    receiver,
                }
            }
            OptionType::Crqst => {
                exact(0)?;
                OptionValue::Crqst {
                    which: specific & 0x07,
                }
            }
            OptionType::PgmccData | OptionType::PgmccFeedback => {
                // Timestamp, then an NLA whose reserved field holds the loss rate in the
                // feedback option (OpenPGM's layout).
                let (nla, n) = Nla::parse(body.get(4..).unwrap_or(&[])).map_err(|e| match e {
                    WireError::Truncated => WireError::BadOptionLength,
                    other => other,
                })?;
                exact(4 + n)?;
                let tstamp = u32_at(0)?;
                if OptionType::from_code(hdr[0]) == OptionType::PgmccData {
                    OptionValue::PgmccData { tstamp, acker: nla }
                } else {
                    OptionValue::PgmccFeedback {
                        tstamp,
                        loss_rate: be16(body, 6).unwrap_or(0),
                        receiver: nla,
                    }
                }
            }
            OptionType::Invalid => OptionValue::Invalid {
                specific,
                data: body,
            },
            OptionType::Unknown(code) => OptionValue::Unknown {
                code,
                specific,
                data: body,
            },
        };
        Ok((Self { flags, value }, len))
    }

    /// Writes the option into the start of `buf`, which holds at least [`Self::wire_len`]
    /// bytes; `end` sets the OPT_END bit.
    fn emit(&self, buf: &mut [u8], end: bool) -> Result<()> {
        let len = self.wire_len();
        let len8 = u8::try_from(len).map_err(|_| WireError::Unrepresentable)?;
        let out = buf.get_mut(..len).ok_or(WireError::BufferTooSmall)?;
        //= https://www.rfc-editor.org/rfc/rfc3208#section-9
        //# Last are 7 bits designated for option specific
        //# information which may be defined on a per-option basis.  If not
        //# defined for a particular option, they MUST be set to 0.
        let mut specific = 0u8;
        let body = &mut out[OPTION_HEADER_LEN..];
        let put32 = |b: &mut [u8], at: usize, v: u32| {
            b[at..at + 4].copy_from_slice(&v.to_be_bytes());
        };
        match self.value {
            OptionValue::Fragment {
                first_sqn,
                offset,
                length,
            } => {
                put32(body, 0, first_sqn.0);
                put32(body, 4, offset);
                put32(body, 8, length);
            }
            OptionValue::NakList(list) => {
                for (i, s) in list.iter().enumerate() {
                    put32(body, 4 * i, s.0);
                }
            }
            OptionValue::Join { min_sqn } => put32(body, 0, min_sqn.0),
            OptionValue::NakBoIvl { ivl_us, poll_sqn } => {
                put32(body, 0, ivl_us);
                put32(body, 4, poll_sqn.0);
            }
            OptionValue::NakBoRng { max_us, min_us } => {
                put32(body, 0, max_us);
                put32(body, 4, min_us);
            }
            OptionValue::Redirect(nla) => nla.emit(body),
            OptionValue::ParityPrm {
                proactive,
                on_demand,
                tg_size,
            } => {
                specific = (u8::from(proactive) << 1) | u8::from(on_demand);
                put32(body, 0, tg_size);
            }
            OptionValue::ParityGrp { group } => put32(body, 0, group),
            OptionValue::CurrTgsize { size } => put32(body, 0, size),
            OptionValue::NbrUnreach | OptionValue::Syn | OptionValue::Fin => {}
            OptionValue::PathNla(nla) => nla.emit_addr(body),
            OptionValue::Rst {
                no_naks,
                error_code,
            } => specific = (u8::from(no_naks) << 6) | (error_code & 0x3F),
            OptionValue::Cr {
                which,
                lead,
                ne_worst_link,
                ne_worst_path,
                rx_worst_path,
                receiver,
            } => {
                specific = which & 0x07;
                put32(body, 0, lead.0);
                body[4..6].copy_from_slice(&ne_worst_link.to_be_bytes());
                body[6..8].copy_from_slice(&ne_worst_path.to_be_bytes());
                body[8..10].copy_from_slice(&rx_worst_path.to_be_bytes());
                body[10..12].copy_from_slice(&[0, 0]);
                receiver.emit(&mut body[12..]);
            }
            OptionValue::Crqst { which } => specific = which & 0x07,
            OptionValue::PgmccData { tstamp, acker } => {
                put32(body, 0, tstamp);
                acker.emit(&mut body[4..]);
            }
            OptionValue::PgmccFeedback {
                tstamp,
                loss_rate,
                receiver,
            } => {
                put32(body, 0, tstamp);
                receiver.emit(&mut body[4..]);
                body[6..8].copy_from_slice(&loss_rate.to_be_bytes());
            }
            OptionValue::Invalid {
                specific: s, data, ..
            }
            | OptionValue::Unknown {
                specific: s, data, ..
            } => {
                specific = s & 0x7F;
                body.copy_from_slice(data);
            }
        }
        out[0] = self.option_type().code() | if end { OPT_END } else { 0 };
        out[1] = len8;
        out[2] = self.flags.byte2;
        out[3] = specific
            | if self.flags.encoded_null {
                OP_ENCODED_NULL
            } else {
                0
            };
        Ok(())
    }
}

/// Validates an option chain that starts with `OPT_LENGTH` at the start of `buf` (which may
/// extend past the chain) and returns the chain's total length.
pub(crate) fn validate_chain(buf: &[u8]) -> Result<usize> {
    let hdr = buf.get(..OPTION_HEADER_LEN).ok_or(WireError::Truncated)?;
    if hdr[0] & 0x7F != OptionType::Length.code() || usize::from(hdr[1]) != OPTION_HEADER_LEN {
        return Err(WireError::MissingOptLength);
    }
    let total = usize::from(u16::from_be_bytes([hdr[2], hdr[3]]));
    if total < OPTION_HEADER_LEN || total > buf.len() {
        return Err(WireError::BadOptLength);
    }
    let mut rest = &buf[OPTION_HEADER_LEN..total];
    let mut count = 0;
    loop {
        if rest.is_empty() {
            return Err(WireError::MissingOptEnd);
        }
        if count == MAX_OPTIONS {
            return Err(WireError::TooManyOptions);
        }
        let (_, len) = PgmOption::parse(rest)?;
        count += 1;
        let end = rest[0] & OPT_END != 0;
        rest = &rest[len..];
        if end {
            // The OPT_END option must be the last byte of what OPT_LENGTH frames.
            return if rest.is_empty() {
                Ok(total)
            } else {
                Err(WireError::BadOptLength)
            };
        }
    }
}

/// The options of a packet: either a validated chain on the wire (parsed, zero-copy) or a
/// caller's slice (to emit). Equality compares the options in order.
#[derive(Clone, Copy)]
pub enum OptionList<'a> {
    /// The chain's options after `OPT_LENGTH`, as on the wire.
    Wire(&'a [u8]),
    /// Options in memory, to emit in this order. Network-significant options must come
    /// before the others (§9.1); the emitter does not reorder them.
    Slice(&'a [PgmOption<'a>]),
}

impl<'a> OptionList<'a> {
    /// No options.
    pub const EMPTY: Self = Self::Slice(&[]);

    /// The options of a chain that starts with OPT_LENGTH at the start of `chain`. Never
    /// panics; on a malformed chain the iterator stops at the first problem.
    pub(crate) fn from_chain(chain: &'a [u8]) -> Self {
        let total = be16(chain, 2).map_or(0, usize::from);
        match chain.get(OPTION_HEADER_LEN..total) {
            Some(opts) => Self::Wire(opts),
            None => Self::EMPTY,
        }
    }

    /// Iterates over the options.
    pub fn iter(&self) -> OptionIter<'a> {
        match *self {
            Self::Wire(b) => OptionIter::Wire { rest: b, count: 0 },
            Self::Slice(s) => OptionIter::Slice(s.iter()),
        }
    }

    /// Whether there are no options.
    pub fn is_empty(&self) -> bool {
        self.iter().next().is_none()
    }

    /// The first option of the given type.
    pub fn find(&self, t: OptionType) -> Option<PgmOption<'a>> {
        self.iter().find(|o| o.option_type() == t)
    }

    /// The bytes the chain takes on the wire, OPT_LENGTH included; zero for no options.
    pub fn wire_len(&self) -> usize {
        let mut n = 0;
        for o in self.iter() {
            n += o.wire_len();
        }
        if n == 0 { 0 } else { n + OPTION_HEADER_LEN }
    }

    /// Whether any option is network-significant (the header's OPT_NETWORK bit).
    pub fn any_network_significant(&self, in_odata: bool) -> bool {
        self.iter().any(|o| o.is_network_significant(in_odata))
    }

    /// Writes OPT_LENGTH and the options into the start of `buf`, setting OPT_END on the
    /// last. Returns the bytes written (zero when there are no options).
    pub(crate) fn emit(&self, buf: &mut [u8]) -> Result<usize> {
        let total = self.wire_len();
        if total == 0 {
            return Ok(0);
        }
        let count = self.iter().count();
        if count > MAX_OPTIONS {
            return Err(WireError::Unrepresentable);
        }
        let total16 = u16::try_from(total).map_err(|_| WireError::Unrepresentable)?;
        let out = buf.get_mut(..total).ok_or(WireError::BufferTooSmall)?;
        //= https://www.rfc-editor.org/rfc/rfc3208#section-9.1
        //# When option extensions are appended to the standard PGM header, the
        //# extensions MUST be preceded by an option extension length field
        //# specifying the total length of all option extensions.
        out[0] = OptionType::Length.code();
        out[1] = OPTION_HEADER_LEN as u8;
        out[2..4].copy_from_slice(&total16.to_be_bytes());
        let mut at = OPTION_HEADER_LEN;
        for (i, o) in self.iter().enumerate() {
            if let OptionValue::NakList(l) = o.value {
                if l.len() > MAX_NAK_LIST {
                    return Err(WireError::Unrepresentable);
                }
            }
            //= https://www.rfc-editor.org/rfc/rfc3208#section-9.1
            //# To provide an indication of the end of option extensions, OPT_END
            //# (0x80) MUST be set in the Option Type field of the trailing option
            //# extension.
            //= https://www.rfc-editor.org/rfc/rfc3208#section-9
            //# The OPT_END bit MUST be set in the last
            //# option in the option list, whichever that might be.
            o.emit(&mut out[at..], i + 1 == count)?;
            at += o.wire_len();
        }
        Ok(total)
    }
}

impl PartialEq for OptionList<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.iter().eq(other.iter())
    }
}

impl Eq for OptionList<'_> {}

impl fmt::Debug for OptionList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<'a> IntoIterator for OptionList<'a> {
    type Item = PgmOption<'a>;
    type IntoIter = OptionIter<'a>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

/// Iterator over an [`OptionList`].
#[derive(Debug, Clone)]
pub enum OptionIter<'a> {
    /// Over a chain on the wire.
    Wire {
        /// What remains of the chain.
        rest: &'a [u8],
        /// Options yielded so far.
        count: usize,
    },
    /// Over a slice.
    Slice(core::slice::Iter<'a, PgmOption<'a>>),
}

impl<'a> Iterator for OptionIter<'a> {
    type Item = PgmOption<'a>;

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            Self::Slice(it) => it.next().copied(),
            Self::Wire { rest, count } => {
                if rest.is_empty() || *count >= MAX_OPTIONS {
                    return None;
                }
                let Ok((opt, len)) = PgmOption::parse(rest) else {
                    *rest = &[];
                    return None;
                };
                let end = rest[0] & OPT_END != 0;
                *rest = if end { &[] } else { &rest[len..] };
                *count += 1;
                Some(opt)
            }
        }
    }
}
