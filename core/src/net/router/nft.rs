//! The nftables table through which the network element assists sources that omit Router
//! Alert (OpenPGM's default). Two rules match every PGM type but ODATA (`@th,32,8` is the PGM
//! type byte) sent to an assisted group:
//!
//! ```text
//! prerouting: ip protocol 113 @th,32,8 != 4 ip daddr @groups ip option ra missing
//!                 log group G queue-threshold 1
//! forward:    ip protocol 113 @th,32,8 != 4 ip daddr @groups counter drop
//! ```
//!
//! The first hands each such packet, once and as it arrived (TTL not yet decremented, whether
//! or not the kernel would forward it), to `nfnetlink_log` group `G`, where the daemon's
//! [`super::nflog::NflogSocket`] receives it; packets with Router Alert are left to the
//! daemon's Router Alert socket. The second stops the kernel forwarding them (once per
//! outgoing interface), so the daemon forwards them per RFC 3208 §7. Local delivery is left
//! alone. The type is tested before the set lookup, so an ODATA packet costs two compares in
//! each hook. The table is the daemon's: created at start (any leftover of a crashed run
//! replaced) and deleted by [`NftTable::remove`] or on drop.

use std::io::{self, Write};
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

/// The daemon's table.
#[derive(Debug)]
pub struct NftTable {
    name: String,
    removed: bool,
}

impl NftTable {
    /// Creates table `ip <name>` with an empty `groups` set and the two rules, logging to
    /// `nfnetlink_log` group `log_group`.
    pub fn install(name: &str, log_group: u16) -> io::Result<Self> {
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("bad nftables table name {name:?}"),
            ));
        }
        nft_script(&ruleset(name, log_group))?;
        Ok(Self {
            name: name.to_owned(),
            removed: false,
        })
    }

    /// The table's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Makes `group` an assisted group.
    pub fn add_group(&self, group: Ipv4Addr) -> io::Result<()> {
        nft_script(&format!(
            "add element ip {} groups {{ {group} }}\n",
            self.name
        ))
    }

    /// Stops assisting `group`.
    pub fn remove_group(&self, group: Ipv4Addr) -> io::Result<()> {
        nft_script(&format!(
            "delete element ip {} groups {{ {group} }}\n",
            self.name
        ))
    }

    /// The packets the drop rule has stopped so far.
    pub fn dropped_packets(&self) -> io::Result<u64> {
        let out = Command::new("nft")
            .args(["list", "chain", "ip", &self.name, "forward"])
            .output()?;
        let text = String::from_utf8_lossy(&out.stdout);
        Ok(text
            .split_whitespace()
            .skip_while(|w| *w != "packets")
            .nth(1)
            .and_then(|n| n.parse().ok())
            .unwrap_or(0))
    }

    /// Deletes the table.
    pub fn remove(&mut self) -> io::Result<()> {
        if self.removed {
            return Ok(());
        }
        self.removed = true;
        nft_script(&format!("delete table ip {}\n", self.name))
    }
}

impl Drop for NftTable {
    fn drop(&mut self) {
        let _ = self.remove();
    }
}

/// The table, replacing any leftover of the same name.
fn ruleset(name: &str, log_group: u16) -> String {
    format!(
        "table ip {name} {{}}\n\
         delete table ip {name}\n\
         table ip {name} {{\n\
         \tset groups {{ type ipv4_addr; }}\n\
         \tchain prerouting {{\n\
         \t\ttype filter hook prerouting priority -140; policy accept;\n\
         \t\tip protocol 113 @th,32,8 != 4 ip daddr @groups ip option ra missing \
         log group {log_group} queue-threshold 1\n\
         \t}}\n\
         \tchain forward {{\n\
         \t\ttype filter hook forward priority -10; policy accept;\n\
         \t\tip protocol 113 @th,32,8 != 4 ip daddr @groups counter drop\n\
         \t}}\n\
         }}\n"
    )
}

fn nft_script(script: &str) -> io::Result<()> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| io::Error::new(e.kind(), format!("cannot run nft: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(script.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    if out.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "nft failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ruleset_names_the_table_everywhere() {
        let r = ruleset("pgm_routerd", 113);
        assert_eq!(r.matches("ip pgm_routerd").count(), 3);
        // The type before the set: ODATA never reaches the lookup.
        assert_eq!(
            r.matches("ip protocol 113 @th,32,8 != 4 ip daddr @groups")
                .count(),
            2
        );
        assert!(r.contains("ra missing log group 113 queue-threshold 1\n"));
        assert!(r.contains("@groups counter drop\n"));
        assert!(NftTable::install("bad name;", 113).is_err());
    }
}
