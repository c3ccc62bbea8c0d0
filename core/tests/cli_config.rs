//! `pgm --config`: the `[host]` section of a pgm-config file gives the CLI's defaults, and a
//! bad file is refused with every problem located by file, line, column and key.

#![cfg(feature = "cli")]

use std::process::Command;

fn pgm(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_pgm"))
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("run pgm");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_bad_config_is_refused_naming_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "[host]\nnetwork = \"lo;239.192.9.9\"\nnak_bo_ivll = \"10ms\"\nrate = \"fast\"\n",
    )
    .unwrap();
    let p = path.to_str().unwrap();
    let (ok, err) = pgm(&["--config", p, "recv", "--idle-timeout", "0.1"]);
    assert!(!ok, "{err}");
    assert!(
        err.contains(&format!("{p}:3:1: host.nak_bo_ivll: unknown key")),
        "{err}"
    );
    assert!(err.contains("did you mean `nak_bo_ivl`"), "{err}");
    assert!(err.contains(&format!("{p}:4:8: host.rate:")), "{err}");
}

#[test]
fn the_network_comes_from_the_config_unless_the_command_line_gives_one() {
    let (ok, err) = pgm(&["recv", "--idle-timeout", "0.1"]);
    assert!(!ok);
    assert!(err.contains("no network"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("host.toml");
    std::fs::write(
        &path,
        "[host]\nnetwork = \"lo;239.192.9.9\"\nport = 7611\nudp_multicast_port = 3611\n",
    )
    .unwrap();
    let p = path.to_str().unwrap();
    let (ok, err) = pgm(&[
        "--config",
        p,
        "recv",
        "--idle-timeout",
        "0.2",
        "-o",
        "/dev/null",
    ]);
    assert!(ok, "{err}");
    assert!(err.contains("idle timeout: received 0 messages"), "{err}");
    // The command line wins: a network that does not parse is refused even with a config.
    let (ok, err) = pgm(&[
        "--config",
        p,
        "recv",
        "--network",
        "lo",
        "--idle-timeout",
        "0.1",
    ]);
    assert!(!ok);
    assert!(err.contains("INTERFACE;GROUP"), "{err}");
}
