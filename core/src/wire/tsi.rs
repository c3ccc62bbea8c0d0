//! Transport session identifiers (§3.1).

use core::fmt;

/// The Global Source ID: 48 bits that identify a source for the life of its sessions (§8).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct Gsi(pub [u8; 6]);

impl fmt::Debug for Gsi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Gsi {
    /// Dotted decimal, as OpenPGM and Wireshark print a GSI (`1.2.3.4.5.6`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let g = self.0;
        write!(f, "{}.{}.{}.{}.{}.{}", g[0], g[1], g[2], g[3], g[4], g[5])
    }
}

/// The Transport Session Identifier: a GSI and the source's data-source port (§3.1).
///
/// Downstream packets (SPM, ODATA, RDATA, NCF, POLL) carry the data-source port in their
/// source-port field; upstream packets (NAK, NNAK, SPMR, POLR) carry it in their
/// destination-port field (§8.3). The typed views' `tsi()` accessors take care of that.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct Tsi {
    /// The source's Global Source ID.
    pub gsi: Gsi,
    /// The source's data-source port.
    pub sport: u16,
}

impl Tsi {
    /// A TSI from its parts.
    pub fn new(gsi: Gsi, sport: u16) -> Self {
        Self { gsi, sport }
    }
}

impl fmt::Debug for Tsi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Tsi {
    /// `gsi.port`, the form OpenPGM prints (`1.2.3.4.5.6.4242`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.gsi, self.sport)
    }
}
