//! The `cer-hugepages` binary: argument handling and its read-only commands
//! on the live system.

use std::process::{Command, Output};

fn cer_hugepages(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cer-hugepages"))
        .args(args)
        .output()
        .expect("run cer-hugepages")
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn live_hugepages() -> bool {
    let ok = std::path::Path::new("/sys/kernel/mm/hugepages").is_dir();
    if !ok {
        eprintln!("skipped: this kernel has no hugepages");
    }
    ok
}

#[test]
fn help_lists_the_commands() {
    let o = cer_hugepages(&["--help"]);
    let (out, _) = text(&o);
    assert!(o.status.success());
    for cmd in ["status", "reserve", "mount", "unmount", "ensure", "check"] {
        assert!(out.contains(cmd), "{cmd} missing from:\n{out}");
    }
}

#[test]
fn status_json_is_machine_readable() {
    if !live_hugepages() {
        return;
    }
    let o = cer_hugepages(&["status", "--json"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(v["default_size_kib"].as_u64().unwrap() > 0);
    let pools = v["pools"].as_array().unwrap();
    assert!(!pools.is_empty());
    for key in ["size", "node", "total", "free", "reserved", "surplus"] {
        assert!(pools[0].get(key).is_some(), "pool lacks {key}: {out}");
    }
    assert!(v["mounts"].is_array());
}

#[test]
fn status_table_names_the_columns() {
    if !live_hugepages() {
        return;
    }
    let o = cer_hugepages(&["status"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(out.starts_with("default hugepage size: "), "{out}");
    assert!(out.contains("total"), "{out}");
    assert!(out.contains("available to DPDK"), "{out}");
}

#[test]
fn bad_size_is_rejected_with_the_accepted_forms() {
    let o = cer_hugepages(&["reserve", "--pages", "1", "--size", "3X"]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("invalid hugepage size \"3X\": use 2M or 1G"),
        "{err}"
    );
}

#[test]
fn check_fails_with_the_fix_when_short() {
    if !live_hugepages() {
        return;
    }
    // Far more than any test machine has.
    let o = cer_hugepages(&["check", "--mb", "100000000"]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.starts_with("cer-hugepages: 100000000 MiB of hugepages needed"),
        "{err}"
    );
    assert!(err.contains("scripts/hugepages --mb 100000000"), "{err}");
}

#[test]
fn unmount_of_a_plain_dir_is_refused() {
    let dir = tempfile::TempDir::new().unwrap();
    let o = cer_hugepages(&["unmount", "--path", dir.path().to_str().unwrap()]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("is not a hugetlbfs mount point"), "{err}");
}
