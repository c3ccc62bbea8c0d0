//! Why a packet was refused.

/// Why a buffer is not a valid PGM packet.
///
/// One variant per drop reason, so that every malformed packet can be counted under its reason
/// (see [`WireError::reason`]). Nothing in `wire` panics on bad input: it returns one of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The buffer ends before the fixed part of the header or of the type-specific fields.
    #[error("packet truncated")]
    Truncated,
    /// The version bits (the two high bits of the type byte) are not zero (§8).
    #[error("unsupported PGM version")]
    BadVersion,
    /// The type byte names no PGM packet type, or a type other than the one expected.
    #[error("unknown or unexpected packet type {0:#04x}")]
    BadType(u8),
    /// An NLA's address family is neither IPv4 (1) nor IPv6 (2).
    #[error("unsupported NLA address family {0}")]
    BadAfi(u16),
    /// The TSDU length disagrees with the buffer: the buffer is shorter than header, options
    /// and TSDU, or carries bytes past them.
    #[error("TSDU length disagrees with the packet length")]
    BadLength,
    /// The Options field says options are present but the first option is not `OPT_LENGTH`,
    /// or `OPT_LENGTH` appears again later in the chain.
    #[error("option chain does not start with a single OPT_LENGTH")]
    MissingOptLength,
    /// `OPT_LENGTH` states a total length that the packet cannot hold or that is smaller than
    /// the options it frames.
    #[error("OPT_LENGTH total disagrees with the packet")]
    BadOptLength,
    /// An option's length is shorter than its header or than its type requires, or does not
    /// fit its type's layout (e.g. a NAK list that is not a whole number of sequence numbers).
    #[error("option has a bad length")]
    BadOptionLength,
    /// An option runs past the end of the option chain.
    #[error("option overruns the option chain")]
    OptionOverrun,
    /// More options than the limit of 16 of §9.
    #[error("more than 16 options")]
    TooManyOptions,
    /// The option chain ends without an option carrying the OPT_END bit (§9).
    #[error("option chain lacks OPT_END")]
    MissingOptEnd,
    /// `OPT_NAK_LIST` carries more than 62 sequence numbers (§9.3).
    #[error("NAK list longer than 62 entries")]
    NakListTooLong,
    /// The checksum does not match the packet's contents (§8).
    #[error("bad checksum")]
    BadChecksum,
    /// A data packet carries no checksum, which §8 makes mandatory on ODATA and RDATA.
    #[error("data packet without checksum")]
    MissingChecksum,
    /// The caller's buffer is too small for the packet being emitted.
    #[error("buffer too small to emit the packet")]
    BufferTooSmall,
    /// A value cannot be represented on the wire (an option list over 16 entries, a NAK list
    /// over 62 entries, a TSDU over 65535 bytes, an option longer than 255 bytes).
    #[error("value not representable on the wire")]
    Unrepresentable,
}

impl WireError {
    /// A stable, snake_case label for this reason, for metrics (`reason="bad_checksum"`).
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Truncated => "truncated",
            Self::BadVersion => "bad_version",
            Self::BadType(_) => "bad_type",
            Self::BadAfi(_) => "bad_afi",
            Self::BadLength => "bad_length",
            Self::MissingOptLength => "missing_opt_length",
            Self::BadOptLength => "bad_opt_length",
            Self::BadOptionLength => "bad_option_length",
            Self::OptionOverrun => "option_overrun",
            Self::TooManyOptions => "too_many_options",
            Self::MissingOptEnd => "missing_opt_end",
            Self::NakListTooLong => "nak_list_too_long",
            Self::BadChecksum => "bad_checksum",
            Self::MissingChecksum => "missing_checksum",
            Self::BufferTooSmall => "buffer_too_small",
            Self::Unrepresentable => "unrepresentable",
        }
    }

    /// Every reason label, in declaration order, so a metrics exporter can pre-register them.
    pub const ALL_REASONS: [&'static str; 16] = [
        "truncated",
        "bad_version",
        "bad_type",
        "bad_afi",
        "bad_length",
        "missing_opt_length",
        "bad_opt_length",
        "bad_option_length",
        "option_overrun",
        "too_many_options",
        "missing_opt_end",
        "nak_list_too_long",
        "bad_checksum",
        "missing_checksum",
        "buffer_too_small",
        "unrepresentable",
    ];
}
