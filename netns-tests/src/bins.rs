//! The programs the namespace tests run: the workspace's own binaries and the OpenPGM peer.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock, PoisonError};

use anyhow::{Context, Result, bail};

/// The workspace root (the parent of this crate's directory).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The workspace's target directory (`CARGO_TARGET_DIR`, else `<workspace>/target`).
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
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

/// Binary `bin` of workspace package `package`, brought up to date first.
///
/// Under cargo (`cargo test`, `cargo run`: the `CARGO` variable is set) this runs
/// `cargo build -q -p <package> --bin <bin>` in the profile the calling executable was built
/// with, one build at a time per process (tests run on parallel threads), and returns
/// `<target>/<profile>/<bin>`. Outside cargo nothing is built and the binary is taken as
/// [`workspace_bin`] finds it.
pub fn cargo_bin(package: &str, bin: &str) -> Result<PathBuf> {
    static BUILD: Mutex<()> = Mutex::new(());
    let profile = own_profile();
    if let Some(cargo) = std::env::var_os("CARGO") {
        let _one_at_a_time = BUILD.lock().unwrap_or_else(PoisonError::into_inner);
        let mut cmd = Command::new(cargo);
        cmd.current_dir(workspace_root())
            .args(["build", "-q", "-p", package, "--bin", bin]);
        if profile == Some("release") {
            cmd.arg("--release");
        }
        let status = cmd
            .status()
            .with_context(|| format!("cannot run cargo build -p {package} --bin {bin}"))?;
        if !status.success() {
            bail!("cargo build -p {package} --bin {bin} failed ({status})");
        }
    }
    if let Some(profile) = profile {
        let path = target_dir().join(profile).join(bin);
        if path.is_file() {
            return Ok(path);
        }
    }
    workspace_bin(bin)
}

/// The profile (`debug` or `release`) the running executable was built in: the name of its
/// directory, or of the directory above for test executables (`<target>/<profile>/deps/`).
fn own_profile() -> Option<&'static str> {
    let exe = std::env::current_exe().ok()?;
    let mut dir = exe.parent()?;
    if dir.file_name()? == "deps" {
        dir = dir.parent()?;
    }
    let name = dir.file_name()?;
    ["debug", "release"].into_iter().find(|p| name == *p)
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
