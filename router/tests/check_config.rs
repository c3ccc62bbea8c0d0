//! `pgm-routerd --check-config` names the data plane it would run on this kernel, and, when
//! the configured plane cannot run, the kernel configuration option that is missing. The
//! expectations follow the kernel the test runs on: both branches are checks.

use std::path::PathBuf;
use std::process::Command;

fn kernel_has_mroute() -> bool {
    std::path::Path::new("/proc/net/ip_mr_vif").exists()
}

/// Runs `--check-config` on `toml`; returns (success, stdout, stderr).
fn check(name: &str, toml: &str) -> (bool, String, String) {
    let dir = std::env::temp_dir().join(format!("pgm-routerd-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path: PathBuf = dir.join(format!("{name}.toml"));
    std::fs::write(&path, toml).expect("write config");
    let out = Command::new(env!("CARGO_BIN_EXE_pgm-routerd"))
        .arg("--check-config")
        .arg("--config")
        .arg(&path)
        .output()
        .expect("run pgm-routerd");
    let _ = std::fs::remove_file(&path);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn config(extra: &str) -> String {
    format!("[router]\n{extra}[[router.interface]]\nname = \"lo\"\n")
}

#[test]
fn auto_picks_mroute_where_the_kernel_has_it_and_netdev_elsewhere() {
    let (ok, out, err) = check("auto", &config(""));
    assert!(ok, "{err}");
    if kernel_has_mroute() {
        assert!(out.contains("data plane: mroute (auto"), "{out}");
    } else {
        assert!(out.contains("data plane: netdev (auto"), "{out}");
        assert!(out.contains("CONFIG_IP_MROUTE"), "{out}");
    }
}

#[test]
fn a_plane_the_kernel_cannot_run_is_refused_naming_the_option() {
    let (ok, out, err) = check("mroute", &config("dataplane = \"mroute\"\n"));
    if kernel_has_mroute() {
        assert!(
            ok && out.contains("data plane: mroute (configured)"),
            "{out}{err}"
        );
    } else {
        assert!(!ok, "{out}");
        assert!(err.contains("CONFIG_IP_MROUTE"), "{err}");
        assert!(err.contains("dataplane = \"netdev\""), "{err}");
    }
    // Assist-only reads the kernel's multicast routing table: the same.
    let (ok, out, err) = check("assist", &config("mode = \"assist-only\"\n"));
    if kernel_has_mroute() {
        assert!(ok && out.contains("data plane: mroute"), "{out}{err}");
    } else {
        assert!(!ok && err.contains("CONFIG_IP_MROUTE"), "{out}{err}");
    }
}

#[test]
fn netdev_is_named_when_configured() {
    let (ok, out, err) = check("netdev", &config("dataplane = \"netdev\"\n"));
    assert!(ok, "{err}");
    assert!(out.contains("data plane: netdev (configured"), "{out}");
}

#[test]
fn netdev_cannot_run_beside_another_multicast_router() {
    let (ok, _, err) = check(
        "netdev-assist",
        &config("mode = \"assist-only\"\ndataplane = \"netdev\"\n"),
    );
    assert!(!ok);
    assert!(
        err.contains(":3:") && err.contains("router.dataplane"),
        "{err}"
    );
}
