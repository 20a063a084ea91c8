//! `scripts/dpdk-setup` and `scripts/hugepages`, run as an operator would:
//! dry-run plans, refusals that change nothing, config errors that name the
//! field, and (as root, on an idle 2M pool) a real reserve/release cycle.

mod common;

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use cer_hugepages::PageSize;
use common::{can_touch_system, is_root, pool_total};
use tempfile::TempDir;

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../scripts")
        .join(name)
}

fn run(cmd: &mut Command) -> (i32, String, String) {
    let o: Output = cmd.output().expect("run script");
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn dpdk_setup(args: &[&str]) -> Command {
    let mut c = Command::new(script("dpdk-setup"));
    c.args(args);
    c
}

fn have_python311() -> bool {
    let ok = Command::new("/usr/bin/python3")
        .args(["-c", "import tomllib"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        eprintln!("skipped: /usr/bin/python3 has no tomllib (needs 3.11)");
    }
    ok
}

/// A node config with a PCI port on an address no machine has and an af_packet port.
const SAMPLE: &str = r#"
[node]
name = "cer-test"
router_address = "10.10.0.1"

[dataplane.memory]
memory_mb = 128

[[port]]
name = "wan"
driver = "pci"
pci = "0000:7f:1f.7"
address = "10.10.0.1/24"

[[port]]
name = "lan"
driver = "af_packet"
iface = "cer-test-lan"
address = "10.1.0.1/24"
"#;

fn write_config(dir: &TempDir, name: &str, text: &str) -> String {
    let p = dir.path().join(name);
    fs::write(&p, text).unwrap();
    p.to_str().unwrap().to_string()
}

fn vfio_available() -> bool {
    Path::new("/sys/bus/pci/drivers/vfio-pci").is_dir()
        || Command::new("modprobe")
            .args(["-n", "-q", "vfio-pci"])
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
}

#[test]
fn dpdk_setup_help() {
    if !have_python311() {
        return;
    }
    let (rc, out, _) = run(&mut dpdk_setup(&["--help"]));
    assert_eq!(rc, 0);
    for opt in [
        "--config",
        "--dry-run",
        "--unbind",
        "--status",
        "--force",
        "--no-hugepages",
    ] {
        assert!(out.contains(opt), "{opt} missing from help:\n{out}");
    }
}

#[test]
fn dry_run_prints_the_plan_and_changes_nothing() {
    if !have_python311() {
        return;
    }
    let t = TempDir::new().unwrap();
    let cfg = write_config(&t, "node.toml", SAMPLE);
    let state = t.path().join("devbind.json");
    let (rc, out, err) = run(&mut dpdk_setup(&[
        "--config",
        &cfg,
        "--dry-run",
        "--state",
        state.to_str().unwrap(),
    ]));
    assert_eq!(rc, 0, "stdout:\n{out}\nstderr:\n{err}");
    for needle in [
        "(dry run, nothing will be changed)",
        "port wan: pci 0000:7f:1f.7",
        "device:           not present on this machine",
        "current driver:   -",
        "target driver:    vfio-pci",
        "kernel interface: -",
        "default route:    no",
        "port lan: af_packet on cer-test-lan",
        "net_af_packet uses the kernel interface cer-test-lan; no binding needed",
        "hugepages: scripts/hugepages --mb 128 (would run)",
        "a real run would stop on:",
        "PCI device 0000:7f:1f.7 is not present",
    ] {
        assert!(out.contains(needle), "{needle:?} missing from:\n{out}");
    }
    assert!(!state.exists(), "a dry run must not write the state file");
}

#[test]
fn real_run_without_vfio_fails_clearly_and_changes_nothing() {
    if !have_python311() {
        return;
    }
    if vfio_available() {
        eprintln!("skipped: this machine has vfio-pci");
        return;
    }
    let t = TempDir::new().unwrap();
    let cfg = write_config(&t, "node.toml", SAMPLE);
    let state = t.path().join("devbind.json");
    let (rc, out, err) = run(&mut dpdk_setup(&[
        "--config",
        &cfg,
        "--state",
        state.to_str().unwrap(),
    ]));
    assert_eq!(rc, 1, "stdout:\n{out}\nstderr:\n{err}");
    assert!(err.contains("error: nothing was changed:"), "{err}");
    assert!(
        err.contains("vfio-pci is not available on this machine"),
        "{err}"
    );
    assert!(err.contains("CONFIG_VFIO_PCI"), "{err}");
    assert!(!state.exists(), "nothing recorded");
    assert!(
        !out.contains("hugepages: ready") && !out.contains("bound to vfio-pci"),
        "no step may run after a refusal:\n{out}"
    );
}

#[test]
fn config_errors_name_the_field() {
    if !have_python311() {
        return;
    }
    let t = TempDir::new().unwrap();
    let cases: &[(&str, String, &str)] = &[
        (
            "missing pci",
            SAMPLE.replace("pci = \"0000:7f:1f.7\"\n", ""),
            "port[0] (wan).pci: missing",
        ),
        (
            "garbage pci",
            SAMPLE.replace("0000:7f:1f.7", "slot-three"),
            "port[0] (wan).pci: 'slot-three' is not a PCI address",
        ),
        (
            "unknown driver",
            SAMPLE.replace("\"af_packet\"", "\"e1000\""),
            "port[1] (lan).driver: 'e1000' is not one of pci, af_packet, af_xdp",
        ),
        (
            "missing iface",
            SAMPLE.replace("iface = \"cer-test-lan\"\n", ""),
            "port[1] (lan).iface: missing",
        ),
        (
            "bad iface",
            SAMPLE.replace("cer-test-lan", "this-name-is-too-long"),
            "port[1] (lan).iface",
        ),
        (
            "missing name",
            SAMPLE.replace("name = \"wan\"\n", ""),
            "port[0].name: missing",
        ),
        (
            "name of wrong type",
            SAMPLE.replace("name = \"wan\"", "name = 7"),
            "port[0].name: must be a string, got integer 7",
        ),
        (
            "duplicate name",
            SAMPLE.replace("name = \"lan\"", "name = \"wan\""),
            "'wan' is used twice",
        ),
        (
            "bad memory",
            SAMPLE.replace("memory_mb = 128", "memory_mb = \"lots\""),
            "dataplane.memory.memory_mb",
        ),
        (
            "no ports",
            "[node]\nname = \"x\"\n".to_string(),
            "port: no [[port]] tables",
        ),
        ("not TOML", "[[port]\nname = ".to_string(), "invalid TOML"),
    ];
    for (what, text, needle) in cases {
        let cfg = write_config(&t, "bad.toml", text);
        let (rc, out, err) = run(&mut dpdk_setup(&["--config", &cfg, "--dry-run"]));
        assert_eq!(rc, 2, "{what}: stdout:\n{out}\nstderr:\n{err}");
        assert!(
            err.contains(needle),
            "{what}: {needle:?} missing from:\n{err}"
        );
        assert!(err.contains(&cfg), "{what}: the file is not named:\n{err}");
        assert!(out.is_empty(), "{what}: no plan on a bad config:\n{out}");
    }
    let (rc, _, err) = run(&mut dpdk_setup(&[
        "--config",
        "/nonexistent/node.toml",
        "--dry-run",
    ]));
    assert_eq!(rc, 2);
    assert!(
        err.contains("config /nonexistent/node.toml: cannot read"),
        "{err}"
    );
}

/// The PCI address of the device behind the interface that carries the
/// default route, if that is a PCI device.
fn default_route_pci() -> Option<(String, String)> {
    let o = Command::new("ip")
        .args(["-j", "route", "show", "default"])
        .output()
        .ok()?;
    let routes: serde_json::Value = serde_json::from_slice(&o.stdout).ok()?;
    let dev = routes
        .as_array()?
        .first()?
        .get("dev")?
        .as_str()?
        .to_string();
    let real = fs::canonicalize(format!("/sys/class/net/{dev}/device")).ok()?;
    let pci = real
        .ancestors()
        .filter_map(|p| p.file_name()?.to_str())
        .find(|n| n.len() == 12 && n.as_bytes()[4] == b':' && n.as_bytes()[10] == b'.')?
        .to_string();
    Some((pci, dev))
}

#[test]
fn default_route_device_is_refused() {
    if !have_python311() {
        return;
    }
    let Some((pci, dev)) = default_route_pci() else {
        eprintln!("skipped: the default route is not on a PCI device here");
        return;
    };
    let t = TempDir::new().unwrap();
    let cfg = write_config(&t, "node.toml", &SAMPLE.replace("0000:7f:1f.7", &pci));
    let (rc, out, err) = run(&mut dpdk_setup(&[
        "--config",
        &cfg,
        "--dry-run",
        "--no-hugepages",
    ]));
    assert_eq!(rc, 0, "stdout:\n{out}\nstderr:\n{err}");
    assert!(out.contains(&format!("kernel interface: {dev}")), "{out}");
    assert!(
        out.contains(&format!("default route:    yes ({dev})")),
        "{out}"
    );
    assert!(out.contains("carries the default route"), "{out}");
    assert!(
        out.contains("refusing (use --force if that is intended)"),
        "{out}"
    );
    assert!(out.contains("hugepages: skipped (--no-hugepages)"), "{out}");
}

/// A fake /sys with three PCI functions: one on ixgbe with a kernel
/// interface, one on vfio-pci that we recorded, one on vfio-pci unrecorded.
fn fake_sysfs(root: &Path) {
    let devs = root.join("bus/pci/devices");
    let drivers = root.join("bus/pci/drivers");
    for d in ["ixgbe", "vfio-pci"] {
        fs::create_dir_all(drivers.join(d)).unwrap();
    }
    for (addr, driver) in [
        ("0000:05:00.0", "ixgbe"),
        ("0000:05:00.1", "vfio-pci"),
        ("0000:05:00.2", "vfio-pci"),
    ] {
        let d = devs.join(addr);
        fs::create_dir_all(&d).unwrap();
        fs::write(d.join("vendor"), "0x8086\n").unwrap();
        fs::write(d.join("device"), "0x10fb\n").unwrap();
        fs::write(d.join("numa_node"), "0\n").unwrap();
        symlink(drivers.join(driver), d.join("driver")).unwrap();
    }
    let net = root.join("class/net/cerfake0");
    fs::create_dir_all(&net).unwrap();
    symlink(devs.join("0000:05:00.0"), net.join("device")).unwrap();
    fs::create_dir_all(root.join("kernel/iommu_groups/0")).unwrap();
}

const FAKE_PORTS: &str = r#"
[[port]]
name = "a"
driver = "pci"
pci = "0000:05:00.0"

[[port]]
name = "b"
driver = "pci"
pci = "0000:05:00.1"

[[port]]
name = "c"
driver = "af_xdp"
iface = "cer-test-xdp"
"#;

#[test]
fn plan_and_unbind_on_a_fake_sysfs() {
    if !have_python311() {
        return;
    }
    let t = TempDir::new().unwrap();
    let sys = t.path().join("sys");
    fake_sysfs(&sys);
    let cfg = write_config(&t, "node.toml", FAKE_PORTS);
    let state = t.path().join("devbind.json");
    let state_s = state.to_str().unwrap();

    let (rc, out, err) = run(
        dpdk_setup(&["--config", &cfg, "--dry-run", "--state", state_s]).env("CER_SYSFS", &sys),
    );
    assert_eq!(rc, 0, "stdout:\n{out}\nstderr:\n{err}");
    for needle in [
        "port a: pci 0000:05:00.0",
        "device:           8086:10fb, NUMA node 0",
        "current driver:   ixgbe",
        "kernel interface: cerfake0",
        "default route:    no",
        "action:           bind to vfio-pci (unbinding it from ixgbe)",
        "port b: pci 0000:05:00.1",
        "action:           none: already bound to vfio-pci",
        "port c: af_xdp on cer-test-xdp",
        "net_af_xdp uses the kernel interface cer-test-xdp; no binding needed",
        "vfio-pci: vfio-pci is loaded",
        "hugepages: scripts/hugepages --mb 512 (would run)",
        "a real run would go ahead",
    ] {
        assert!(out.contains(needle), "{needle:?} missing from:\n{out}");
    }
    assert!(!state.exists());

    // --unbind gives back the recorded driver, and only that.
    fs::write(
        &state,
        r#"{"version": 1, "devices": {"0000:05:00.1": {"driver": "ixgbe", "interfaces": ["eth3"], "port": "b"}}}"#,
    )
    .unwrap();
    let (rc, out, err) = run(dpdk_setup(&[
        "--config",
        &cfg,
        "--unbind",
        "--dry-run",
        "--state",
        state_s,
    ])
    .env("CER_SYSFS", &sys));
    assert_eq!(rc, 0, "stdout:\n{out}\nstderr:\n{err}");
    assert!(
        out.contains(
            "port[0] (a): 0000:05:00.0 is not bound to vfio-pci (driver: ixgbe): nothing to do"
        ),
        "{out}"
    );
    assert!(
        out.contains(
            "port[1] (b): would run dpdk-devbind.py -b ixgbe 0000:05:00.1 (back to ixgbe)"
        ),
        "{out}"
    );
    assert!(
        out.contains("port[2] (c): af_xdp on cer-test-xdp: nothing to unbind"),
        "{out}"
    );

    // A vfio-pci device with no record: say how to give it back by hand.
    let cfg_c = write_config(
        &t,
        "c.toml",
        &FAKE_PORTS.replace("0000:05:00.1", "0000:05:00.2"),
    );
    let (rc, _, err) = run(dpdk_setup(&[
        "--config",
        &cfg_c,
        "--unbind",
        "--dry-run",
        "--state",
        state_s,
    ])
    .env("CER_SYSFS", &sys));
    assert_eq!(rc, 1, "{err}");
    assert!(
        err.contains("0000:05:00.2 is bound to vfio-pci but"),
        "{err}"
    );
    assert!(
        err.contains("dpdk-devbind.py -b DRIVER 0000:05:00.2"),
        "{err}"
    );

    // A corrupt state file is named, not silently replaced.
    fs::write(&state, "{not json").unwrap();
    let (rc, _, err) = run(dpdk_setup(&[
        "--config",
        &cfg,
        "--unbind",
        "--dry-run",
        "--state",
        state_s,
    ])
    .env("CER_SYSFS", &sys));
    assert_eq!(rc, 1, "{err}");
    assert!(
        err.contains(&format!("state file {state_s} is unreadable")),
        "{err}"
    );
}

#[test]
fn af_packet_only_config_needs_no_binding() {
    if !have_python311() {
        return;
    }
    if !is_root() {
        eprintln!("skipped: a real run needs root");
        return;
    }
    let t = TempDir::new().unwrap();
    let cfg = write_config(
        &t,
        "lab.toml",
        "[[port]]\nname = \"lan\"\ndriver = \"af_packet\"\niface = \"cer-test-lan\"\n",
    );
    let state = t.path().join("devbind.json");
    let (rc, out, err) = run(&mut dpdk_setup(&[
        "--config",
        &cfg,
        "--no-hugepages",
        "--state",
        state.to_str().unwrap(),
    ]));
    assert_eq!(rc, 0, "stdout:\n{out}\nstderr:\n{err}");
    assert!(out.contains("no binding needed"), "{out}");
    assert!(!out.contains("vfio-pci:"), "no vfio for af_packet:\n{out}");
    assert!(out.contains("dpdk-setup: done"), "{out}");
    assert!(!state.exists());
}

fn hugepages_script(args: &[&str]) -> Command {
    let mut c = Command::new(script("hugepages"));
    c.args(args);
    c
}

#[test]
fn hugepages_script_usage() {
    let (rc, out, _) = run(&mut hugepages_script(&["--help"]));
    assert_eq!(rc, 0);
    for opt in ["--mb N", "--status", "--release", "--size", "--path"] {
        assert!(out.contains(opt), "{opt} missing from:\n{out}");
    }
    let (rc, _, err) = run(&mut hugepages_script(&["--frobnicate"]));
    assert_eq!(rc, 2);
    assert!(err.contains("unknown argument '--frobnicate'"), "{err}");
    let (rc, _, err) = run(&mut hugepages_script(&["--mb", "lots"]));
    assert_eq!(rc, 2);
    assert!(err.contains("invalid --mb 'lots'"), "{err}");
}

#[test]
fn hugepages_script_status() {
    if !Path::new("/sys/kernel/mm/hugepages").is_dir() {
        eprintln!("skipped: this kernel has no hugepages");
        return;
    }
    for bin in [None, Some(env!("CARGO_BIN_EXE_cer-hugepages"))] {
        let t = TempDir::new().unwrap();
        let mut c = hugepages_script(&["--status"]);
        c.env("CER_STATE_DIR", t.path());
        match bin {
            Some(b) => c.env("CER_HUGEPAGES_BIN", b),
            None => c.arg("--no-binary"),
        };
        let (rc, out, err) = run(&mut c);
        assert_eq!(rc, 0, "{err}");
        assert!(out.starts_with("default hugepage size: "), "{out}");
        assert!(out.contains("hugetlbfs mounts"), "{out}");
    }
}

/// Reserve + mount + release through the script, with the binary and with
/// plain sysfs writes. Only on an idle 2M pool: --release sets it to 0.
#[test]
fn hugepages_script_reserves_mounts_and_releases() {
    if !can_touch_system("hugepages_script_reserves_mounts_and_releases") {
        return;
    }
    let size = PageSize::SIZE_2M;
    let st = cer_hugepages::status().unwrap();
    if st.default_size() != size || st.pool(size).unwrap().total != 0 {
        eprintln!("skipped: the 2M pool is in use or not the default; --release would disturb it");
        return;
    }
    for mode in ["--no-binary", "binary"] {
        let state = TempDir::new().unwrap();
        let mnt = TempDir::new().unwrap();
        let path = fs::canonicalize(mnt.path()).unwrap();
        let _mount = common::MountGuard(path.clone());
        let mut args = vec!["--mb", "8", "--path", path.to_str().unwrap()];
        let mut c = hugepages_script(&[]);
        if mode == "--no-binary" {
            args.push("--no-binary");
        } else {
            c.env("CER_HUGEPAGES_BIN", env!("CARGO_BIN_EXE_cer-hugepages"));
        }
        c.args(&args).env("CER_STATE_DIR", state.path());
        let (rc, out, err) = run(&mut c);
        let _pool = common::PoolGuard {
            size,
            original: 0,
            ours: pool_total(size),
        };
        assert_eq!(rc, 0, "{mode}: stdout:\n{out}\nstderr:\n{err}");
        assert!(
            out.contains("hugepages: ready: 8 MiB of 2M hugepages"),
            "{out}"
        );
        assert!(pool_total(size) >= 4, "{mode}");
        let st = cer_hugepages::status().unwrap();
        assert!(
            st.mounts.iter().any(|m| m.path == path),
            "{mode}: not mounted"
        );
        let recorded = fs::read_to_string(state.path().join("hugepages.state")).unwrap();
        assert!(recorded.contains("pool 2048"), "{recorded}");
        assert!(
            recorded.contains(&format!("mount {}", path.display())),
            "{recorded}"
        );

        let (rc, out, err) =
            run(hugepages_script(&["--release"]).env("CER_STATE_DIR", state.path()));
        assert_eq!(rc, 0, "{mode}: stdout:\n{out}\nstderr:\n{err}");
        assert!(
            out.contains(&format!("unmounted {}", path.display())),
            "{out}"
        );
        assert!(out.contains("2M pool: "), "{out}");
        assert_eq!(pool_total(size), 0, "{mode}");
        let st = cer_hugepages::status().unwrap();
        assert!(
            !st.mounts.iter().any(|m| m.path == path),
            "{mode}: still mounted"
        );
        assert!(!state.path().join("hugepages.state").exists());
    }
}
