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

/// A TSI that does not read as `g1.g2.g3.g4.g5.g6.port` (six decimal bytes of GSI and a
/// decimal port, as [`Tsi`]'s `Display` writes it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a TSI (want six GSI bytes and a port, as in 1.2.3.4.5.6.4000): {0:?}")]
pub struct TsiParseError(pub String);

impl core::str::FromStr for Tsi {
    type Err = TsiParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || TsiParseError(s.to_owned());
        let parts: Vec<&str> = s.split('.').collect();
        let [g0, g1, g2, g3, g4, g5, port] = parts[..] else {
            return Err(bad());
        };
        let mut gsi = [0u8; 6];
        for (b, p) in gsi.iter_mut().zip([g0, g1, g2, g3, g4, g5]) {
            *b = p.parse().map_err(|_| bad())?;
        }
        let sport = port.parse().map_err(|_| bad())?;
        Ok(Self::new(Gsi(gsi), sport))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tsi_reads_back_what_it_prints() {
        let t = Tsi::new(Gsi([1, 2, 3, 4, 5, 255]), 4000);
        assert_eq!(t.to_string().parse::<Tsi>(), Ok(t));
        for bad in [
            "",
            "1.2.3.4.5.6",
            "1.2.3.4.5.6.7.8",
            "1.2.3.4.5.256.1",
            "a.2.3.4.5.6.7",
        ] {
            assert!(bad.parse::<Tsi>().is_err(), "{bad}");
        }
    }
}
