//! Configuration for the PGM daemons and tools: one TOML file, one section per role
//! (`[router]`, `[dlr]`, `[host]`) and the `[admin]` listener.
//!
//! [`Config::from_file`] reads and checks a file and reports every problem at once, each with
//! its file, line, column and dotted key ([`ConfigErrors`]); `--check-config` prints them one
//! per line:
//!
//! ```text
//! router.toml:20:1: router.timers.nak_elim_iv: unknown key; did you mean `nak_elim_ivl`?
//! router.toml:22:14: router.timers.tsi_expiry: must not be zero
//! router.toml:26:12: router.limits.max_tsis: 0 is out of range 1..=10000000
//! ```
//!
//! The defaults of every key are in the `Default` impls of the section types and are the
//! engines' own defaults. This crate does not depend on `pgm-core`: the daemons convert the
//! sections into engine configurations. Commented examples of each role are in
//! `deploy/examples/`.
//!
//! ```
//! let config = pgm_config::Config::from_str(
//!     r#"
//!     [[router.interface]]
//!     name = "eth0"
//!     [router.timers]
//!     nak_rdata_ivl = "3s"
//!     "#,
//!     "router.toml",
//! )
//! .unwrap();
//! let router = config.router.unwrap();
//! assert_eq!(router.timers.nak_rdata_ivl, std::time::Duration::from_secs(3));
//! assert_eq!(router.limits.max_tsis, 4096);
//! ```
#![warn(missing_docs)]

#[cfg(feature = "daemon")]
pub mod daemon;
mod error;
mod model;
mod parse;
mod values;

use std::path::Path;

pub use error::{ConfigError, ConfigErrors, ErrorKind};
pub use model::{
    AdminSection, Config, DEFAULT_NFLOG_GROUP, Dataplane, DlrSection, DlrServe, DlrSession,
    HostEncapsulation, HostNetwork, HostSection, InterceptMode, Locations, PollSettings,
    RouterInterface, RouterLimits, RouterMode, RouterSection, RouterTimers, StaticRoute, Tsi,
};
pub use values::{format_duration, parse_byte_size, parse_duration};

/// Whether a network interface of that name exists on this host; given to
/// [`Config::check_interfaces`].
pub type InterfaceExists = dyn Fn(&str) -> bool;

impl Config {
    /// Reads and checks the configuration file at `path`; errors name the file as `path`
    /// was written.
    pub fn from_file(path: &Path) -> Result<Self, ConfigErrors> {
        let origin = path.display().to_string();
        match std::fs::read_to_string(path) {
            Ok(text) => Self::from_str(&text, &origin),
            Err(error) => Err(ConfigErrors(vec![ConfigError {
                file: origin,
                line: 0,
                column: 0,
                key: String::new(),
                reason: format!("cannot read: {error}"),
                kind: ErrorKind::Io,
            }])),
        }
    }

    /// Parses and checks configuration text; `origin` is the file name used in errors.
    ///
    /// Sections absent from the text are `None` (`admin` takes its defaults); keys absent
    /// from a section take their defaults. Every problem is reported, in file order.
    pub fn from_str(text: &str, origin: &str) -> Result<Self, ConfigErrors> {
        parse::parse(text, origin)
    }

    /// Checks that every interface the configuration names exists on this host, with
    /// `exists` answering for one name (the daemons pass a lookup of `if_nametoindex`).
    ///
    /// Checked: `[[router.interface]]` names (routes may only name those), `dlr.interfaces`,
    /// and the interface of `host.network` when it is a name rather than an address. Errors
    /// carry the position of the key when the configuration was read from a file.
    pub fn check_interfaces(&self, exists: &InterfaceExists) -> Result<(), ConfigErrors> {
        let mut names: Vec<(String, &str)> = Vec::new();
        if let Some(router) = &self.router {
            for (i, interface) in router.interfaces.iter().enumerate() {
                names.push((format!("router.interface[{i}].name"), &interface.name));
            }
        }
        if let Some(dlr) = &self.dlr {
            for (i, name) in dlr.interfaces.iter().enumerate() {
                names.push((format!("dlr.interfaces[{i}]"), name));
            }
        }
        if let Some(HostNetwork { interface, .. }) =
            self.host.as_ref().and_then(|host| host.network.as_ref())
        {
            if interface.parse::<std::net::Ipv4Addr>().is_err() {
                names.push(("host.network".to_owned(), interface));
            }
        }
        let mut errors: Vec<ConfigError> = names
            .into_iter()
            .filter(|(_, name)| !exists(name))
            .map(|(key, name)| {
                let (line, column) = self.locations.position(&key).unwrap_or((0, 0));
                ConfigError {
                    file: self.locations.file.clone(),
                    line,
                    column,
                    key,
                    reason: format!("interface `{name}` does not exist on this host"),
                    kind: ErrorKind::NoSuchInterface,
                }
            })
            .collect();
        if errors.is_empty() {
            return Ok(());
        }
        errors.sort_by_key(|e| (e.line, e.column));
        Err(ConfigErrors(errors))
    }
}
