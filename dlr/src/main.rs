//! `pgm-dlrd`: the PGM Designated Local Repairer daemon (RFC 3208 §9.5).
//!
//! Not implemented yet: tracked by the "Designated Local Repairer" issue. This binary says so
//! and exits non-zero rather than pretend to repair.

fn main() -> anyhow::Result<()> {
    anyhow::bail!("pgm-dlrd is not implemented yet (DLR issue open)")
}
