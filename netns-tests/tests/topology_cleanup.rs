//! A lab leaves nothing behind: after it is dropped (normally or while panicking) no namespace
//! or link with its prefix remains and the processes it spawned are gone; `cleanup_stale`
//! removes leftovers by prefix; parallel labs get distinct names and address blocks.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use pgm_netns_tests::lab::{self, Lab, LossSpec, RefTopology};

fn netns_names() -> Vec<String> {
    let out = Command::new("ip").args(["netns", "list"]).output().unwrap();
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect()
}

fn root_links() -> String {
    let out = Command::new("ip")
        .args(["-o", "link", "show"])
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn assert_gone(prefix: &str) {
    // Lab namespaces are `<prefix>-<node>`; the dash keeps lab 1 from matching lab 10.
    let prefix = &format!("{prefix}-");
    let left: Vec<String> = netns_names()
        .into_iter()
        .filter(|n| n.starts_with(prefix))
        .collect();
    assert!(left.is_empty(), "namespaces left behind: {left:?}");
    assert!(
        !root_links().contains(prefix),
        "links left behind:\n{}",
        root_links()
    );
    let mounts = std::fs::read_dir("/run/netns")
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
                .count()
        })
        .unwrap_or(0);
    assert_eq!(mounts, 0, "namespace files left in /run/netns");
}

fn pid_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

#[test]
fn drop_removes_namespaces_links_processes_and_tables() {
    if lab::skip_without_root("drop_removes_namespaces_links_processes_and_tables") {
        return;
    }
    let (prefix, pids, dir) = {
        let topo = RefTopology::build("drop").expect("build the reference topology");
        let prefix = topo.lab.prefix().to_owned();
        let names = netns_names();
        assert_eq!(
            names.iter().filter(|n| n.starts_with(&prefix)).count(),
            7,
            "{names:?}"
        );
        let sleeper = topo.lab.spawn(&topo.r1.ns, &["sleep", "600"]).unwrap();
        // A process that escapes its process group (like a daemon) is found by namespace.
        let escaped = topo
            .lab
            .exec(
                &topo.r2.ns,
                &["sh", "-c", "setsid sleep 600 >/dev/null 2>&1 & echo $!"],
            )
            .unwrap();
        let escaped: u32 = String::from_utf8_lossy(&escaped.stdout)
            .trim()
            .parse()
            .unwrap();
        let _rule = topo
            .lab
            .add_loss(&topo.r2.ns, &LossSpec::forward("lana", 10))
            .unwrap();
        let _capture = topo.lab.capture(&topo.source.ns, "eth0", None).unwrap();
        assert!(pid_alive(sleeper.pid()) && pid_alive(escaped));
        // Keep the handle alive so the lab, not the handle, has to kill it.
        let pids = [sleeper.pid(), escaped];
        std::mem::forget(sleeper);
        (prefix, pids, topo.lab.dir().to_owned())
    };
    assert_gone(&prefix);
    for pid in pids {
        // The escaped sleep is reparented to init, which reaps it shortly after the SIGKILL.
        let mut alive = pid_alive(pid);
        for _ in 0..100 {
            if !alive {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
            alive = pid_alive(pid);
        }
        assert!(!alive, "process {pid} survived the lab");
    }
    assert!(
        !dir.exists(),
        "work directory {} left behind",
        dir.display()
    );
}

#[test]
fn drop_while_panicking_still_cleans_up() {
    if lab::skip_without_root("drop_while_panicking_still_cleans_up") {
        return;
    }
    let prefix = std::sync::Mutex::new(String::new());
    let dir = std::sync::Mutex::new(None);
    let result = std::panic::catch_unwind(|| {
        let lab = Lab::new("panic").unwrap();
        *prefix.lock().unwrap() = lab.prefix().to_owned();
        *dir.lock().unwrap() = Some(lab.dir().to_owned());
        let a = lab.add_ns("a").unwrap();
        let b = lab.add_ns("b").unwrap();
        lab.add_veth(&a, "a0", &b, "b0").unwrap();
        lab.add_bridge(&b, "br0", true).unwrap();
        let _p = lab.spawn(&a, &["sleep", "600"]).unwrap();
        panic!("deliberate panic with a live lab");
    });
    assert!(result.is_err());
    let prefix = prefix.into_inner().unwrap();
    assert!(prefix.starts_with("pgl-panic-"), "{prefix}");
    assert_gone(&prefix);
    // A panicking lab keeps its directory for inspection; this one is not needed.
    if let Some(dir) = dir.into_inner().unwrap() {
        assert!(dir.exists());
        std::fs::remove_dir_all(dir).unwrap();
    }
}

#[test]
fn cleanup_stale_removes_leftovers_by_prefix() {
    if lab::skip_without_root("cleanup_stale_removes_leftovers_by_prefix") {
        return;
    }
    assert!(Lab::cleanup_stale("").is_err());
    assert!(
        Lab::cleanup_stale("opgm").is_err(),
        "foreign prefixes are refused"
    );
    let prefix = format!("{}-stale-{}-x", lab::ROOT, std::process::id());
    for node in ["a", "b"] {
        let name = format!("{prefix}-{node}");
        assert!(
            Command::new("ip")
                .args(["netns", "add", &name])
                .status()
                .unwrap()
                .success()
        );
    }
    let mut inside = Command::new("ip")
        .args(["netns", "exec", &format!("{prefix}-a"), "sleep", "600"])
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(Lab::cleanup_stale(&prefix).unwrap(), 2);
    assert_gone(&prefix);
    let status = inside.wait().unwrap();
    assert!(!status.success(), "the process inside was killed");
}

#[test]
fn parallel_labs_are_disjoint() {
    if lab::skip_without_root("parallel_labs_are_disjoint") {
        return;
    }
    let labs: Vec<Lab> = (0..4).map(|_| Lab::new("para").unwrap()).collect();
    for (i, a) in labs.iter().enumerate() {
        for b in &labs[i + 1..] {
            assert_ne!(a.prefix(), b.prefix());
            assert_ne!(a.block(), b.block());
            assert_ne!(a.dir(), b.dir());
        }
    }
    // The same node name in two labs gives two distinct namespaces.
    let x = labs[0].add_ns("same").unwrap();
    let y = labs[1].add_ns("same").unwrap();
    assert_ne!(x, y);
    assert!(labs[0].add_ns("same").is_err(), "duplicate node in one lab");
    assert!(labs[0].add_ns("Bad-Name").is_err());
    assert!(
        labs[0]
            .add_veth(&x, "this-name-is-too-long", &x, "b")
            .is_err()
    );
}
