//! What every PGM daemon does before its own work (feature `daemon`): parse the command
//! line (`--config`, `--check-config`, `--log-json`), read and check the configuration,
//! set up logging, run on a current-thread tokio runtime, and turn the outcome into an exit
//! status.
//!
//! ```no_run
//! use pgm_config::daemon::{self, DaemonSpec};
//!
//! const SPEC: DaemonSpec = DaemonSpec {
//!     name: "pgm-exampled",
//!     about: "An example daemon.",
//!     default_config: "/etc/pgm/example.toml",
//!     section: "router",
//!     has_section: |c| c.router.is_some(),
//!     interface_exists: |name| std::path::Path::new("/sys/class/net").join(name).exists(),
//!     describe: |_| Ok(Vec::new()),
//! };
//!
//! fn main() -> std::process::ExitCode {
//!     daemon::main(&SPEC, |config, path| async move {
//!         let _ = (config, path); // start and run the daemon here
//!         Ok::<(), std::io::Error>(())
//!     })
//! }
//! ```

use std::fmt::Display;
use std::future::Future;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Arg, ArgAction, Command, value_parser};

use crate::Config;

/// What distinguishes one daemon's start from another's.
#[derive(Debug, Clone, Copy)]
pub struct DaemonSpec {
    /// The program's name, as in `--help` and the logs: `pgm-routerd`.
    pub name: &'static str,
    /// One line for `--help`.
    pub about: &'static str,
    /// `--config` when not given.
    pub default_config: &'static str,
    /// The section the daemon needs, named in the error when it is missing: `router`.
    pub section: &'static str,
    /// Whether the configuration has that section.
    pub has_section: fn(&Config) -> bool,
    /// Whether a network interface of that name exists (for
    /// [`Config::check_interfaces`]).
    pub interface_exists: fn(&str) -> bool,
    /// What `--check-config` adds after the file itself passed: lines to print (what the
    /// daemon would do on this host), or why it could not run here.
    pub describe: fn(&Config) -> Result<Vec<String>, String>,
}

/// The command line every daemon takes.
fn command(spec: &DaemonSpec) -> Command {
    Command::new(spec.name)
        .about(spec.about)
        .version(env!("CARGO_PKG_VERSION"))
        .arg(
            Arg::new("config")
                .long("config")
                .short('c')
                .value_parser(value_parser!(PathBuf))
                .default_value(spec.default_config)
                .help("The TOML configuration file"),
        )
        .arg(
            Arg::new("check-config")
                .long("check-config")
                .action(ArgAction::SetTrue)
                .help("Check the configuration (and that its interfaces exist), print every problem and exit"),
        )
        .arg(
            Arg::new("log-json")
                .long("log-json")
                .action(ArgAction::SetTrue)
                .help("Log as JSON lines instead of text"),
        )
}

/// Reads and checks the configuration at `path` for the daemon `spec` describes: every
/// problem of the file, interfaces that do not exist, or the daemon's section missing.
pub fn load(spec: &DaemonSpec, path: &std::path::Path) -> Result<Config, String> {
    let config = Config::from_file(path).map_err(|e| e.to_string())?;
    config
        .check_interfaces(&spec.interface_exists)
        .map_err(|e| e.to_string())?;
    if !(spec.has_section)(&config) {
        return Err(format!(
            "{}: the configuration has no [{}] section",
            path.display(),
            spec.section
        ));
    }
    Ok(config)
}

/// The daemon's `main`: parses the command line, loads the configuration (printing every
/// problem and failing, or with `--check-config` printing "configuration OK" and stopping),
/// sets up `tracing` (text on a terminal with colours, or JSON lines; `RUST_LOG` filters,
/// default `info`), and runs `run(config, path)` on a current-thread tokio runtime. An error
/// from `run` is logged with its causes (`{:#}`) and gives a failing exit status.
pub fn main<F, Fut, E>(spec: &DaemonSpec, run: F) -> ExitCode
where
    F: FnOnce(Config, PathBuf) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: Display,
{
    let matches = command(spec).get_matches();
    let path = matches
        .get_one::<PathBuf>("config")
        .cloned()
        .unwrap_or_else(|| PathBuf::from(spec.default_config));
    let config = match load(spec, &path) {
        Ok(c) => c,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "{e}");
            return ExitCode::FAILURE;
        }
    };
    if matches.get_flag("check-config") {
        return match (spec.describe)(&config) {
            Ok(lines) => {
                let mut out = std::io::stdout();
                let _ = writeln!(out, "{}: configuration OK", path.display());
                for l in lines {
                    let _ = writeln!(out, "{l}");
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                let _ = writeln!(std::io::stderr(), "{}: {e}", path.display());
                ExitCode::FAILURE
            }
        };
    }
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    if matches.get_flag("log-json") {
        builder.json().init();
    } else {
        builder.init();
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the runtime");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(config, path)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "{} failed", spec.name);
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: DaemonSpec = DaemonSpec {
        name: "pgm-testd",
        about: "test",
        default_config: "/nonexistent/pgm-test.toml",
        section: "dlr",
        has_section: |c| c.dlr.is_some(),
        interface_exists: |name| name == "eth0",
        describe: |_| Ok(Vec::new()),
    };

    #[test]
    fn load_names_a_missing_section_and_missing_interfaces() {
        let dir = std::env::temp_dir().join(format!("pgm-daemon-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("a.toml");
        std::fs::write(&p, "[[router.interface]]\nname = \"eth0\"\n").unwrap();
        let e = load(&SPEC, &p).unwrap_err();
        assert!(e.ends_with("the configuration has no [dlr] section"), "{e}");
        std::fs::write(&p, "[dlr]\ninterfaces = [\"eth9\"]\n").unwrap();
        let e = load(&SPEC, &p).unwrap_err();
        assert!(
            e.contains("a.toml:2:") && e.contains("dlr.interfaces[0]"),
            "{e}"
        );
        std::fs::write(&p, "[dlr]\ninterfaces = [\"eth0\"]\n").unwrap();
        assert!(load(&SPEC, &p).is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_command_line_has_the_three_flags() {
        let m = command(&SPEC)
            .try_get_matches_from(["pgm-testd", "-c", "x.toml", "--check-config", "--log-json"])
            .unwrap();
        assert_eq!(
            m.get_one::<PathBuf>("config").unwrap(),
            &PathBuf::from("x.toml")
        );
        assert!(m.get_flag("check-config") && m.get_flag("log-json"));
        let m = command(&SPEC).try_get_matches_from(["pgm-testd"]).unwrap();
        assert_eq!(
            m.get_one::<PathBuf>("config").unwrap(),
            &PathBuf::from(SPEC.default_config)
        );
    }
}
