//! The programs the namespace tests run: the workspace's own binaries and the OpenPGM peer.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use anyhow::{Context, Result, bail};

/// The workspace's target directory (`CARGO_TARGET_DIR`, else `<workspace>/target`).
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"))
}

/// A binary of this workspace (`pgm`, `pgm-routerd`, `pgm-dlrd`), built by the test command
/// (`scripts/test.sh` runs `cargo build --workspace --bins` first). Fails with a message
/// saying how to build it if it is missing.
pub fn workspace_bin(name: &str) -> Result<PathBuf> {
    for profile in ["debug", "release"] {
        let p = target_dir().join(profile).join(name);
        if p.is_file() {
            return Ok(p);
        }
    }
    bail!(
        "{name} is not built: run `cargo build --workspace --bins` (scripts/test.sh does) \
         before the namespace tests"
    )
}

/// The OpenPGM 5.3 test peer (`netns-tests/peers/openpgm`), built once per test process
/// against Debian's `libpgm-dev` into the target directory.
pub fn openpgm_peer() -> Result<PathBuf> {
    static PEER: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    PEER.get_or_init(|| {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("peers/openpgm");
        let out = target_dir().join(format!("pgmpeer-{}", std::process::id()));
        let status = Command::new("bash")
            .arg(src.join("build.sh"))
            .arg(&out)
            .status()
            .map_err(|e| format!("running build.sh: {e}"))?;
        if !status.success() || !out.is_file() {
            return Err(format!(
                "building the OpenPGM peer failed ({status}); is libpgm-dev installed? \
                 (scripts/install-deps.sh)"
            ));
        }
        Ok(out)
    })
    .clone()
    .map_err(anyhow::Error::msg)
    .context("OpenPGM peer")
}
