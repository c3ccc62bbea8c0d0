//! `deploy/check.sh` passes: the systemd units verify (`systemd-analyze verify`, exposure,
//! policy), the Prometheus configuration and alert rules check and pass their unit tests
//! (`promtool`), and the Grafana dashboard is valid JSON using only exported metric names.

use std::path::Path;
use std::process::Command;

#[test]
fn deploy_check_script_passes() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/check.sh");
    let out = Command::new("bash")
        .arg(&script)
        .output()
        .expect("run deploy/check.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Exit status 2: systemd-analyze, promtool or jq is missing. As root (CI) that is a failure:
    // scripts/install-deps.sh installs them.
    if out.status.code() == Some(2) && !pgm_netns_tests::lab::is_root() {
        eprintln!("SKIPPED deploy_check_script_passes: {stderr}");
        return;
    }
    assert!(
        out.status.success(),
        "deploy/check.sh failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    assert!(stdout.contains("all checks passed"), "{stdout}");
}
