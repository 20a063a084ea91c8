//! The Debian package (issue 17, item 5): `scripts/package` builds it from
//! this build's binaries; `dpkg -i` installs it; its systemd units pass
//! `systemd-analyze verify`; the installed binaries check the example configs
//! and run a small topology (the installed cer-dataplane on an af_packet port
//! in a namespace, answering a ping through its exception TAP, and the
//! installed cerctl asking it); man finds the
//! pages and bash loads cerctl's completion; `dpkg --purge` leaves none of it
//! behind. The package is purged when the test ends, also when it fails.

use anyhow::{bail, ensure, Context, Result};
use cer_e2e::config::{DataplaneConfig, Port};
use cer_e2e::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const UNITS: [&str; 3] = [
    "/lib/systemd/system/cer-hugepages.service",
    "/lib/systemd/system/cer-dataplane.service",
    "/lib/systemd/system/cer-control.service",
];
const BINS: [&str; 4] = ["cer-dataplane", "cer-control", "cerctl", "cer-hugepages"];

fn run(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    let t = text(&out);
    ensure!(out.status.success(), "{cmd:?} failed ({}): {t}", out.status);
    Ok(t)
}

fn installed() -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", "cer"])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
}

/// Purges the package when dropped (the test installed it).
struct Purge;

impl Drop for Purge {
    fn drop(&mut self) {
        match Command::new("dpkg").args(["--purge", "cer"]).output() {
            Ok(o) if o.status.success() => {}
            Ok(o) => eprintln!("dpkg --purge cer: {}", text(&o)),
            Err(e) => eprintln!("dpkg --purge cer: {e}"),
        }
    }
}

#[test]
fn the_debian_package_installs_verifies_runs_and_purges() -> Result<()> {
    if installed() {
        bail!("a package named cer is installed on this machine already: this test installs and purges its own; remove it first (dpkg --purge cer)");
    }
    let scratch = Scratch::new("pkg")?;
    let bin_dir = bin("cer-dataplane")
        .parent()
        .context("bin dir")?
        .to_path_buf();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/package");
    let out = run(Command::new(&script)
        .arg("--no-build")
        .arg("--bin-dir")
        .arg(&bin_dir)
        .arg("--out")
        .arg(&scratch.path))?;
    let deb = PathBuf::from(
        out.lines()
            .last()
            .context("scripts/package printed nothing")?,
    );
    ensure!(deb.exists(), "scripts/package said {deb:?}: {out}");

    // What is inside, before installing.
    let contents = run(Command::new("dpkg-deb").arg("--contents").arg(&deb))?;
    let mut want: Vec<String> = BINS.iter().map(|b| format!("./usr/bin/{b}")).collect();
    want.extend(UNITS.iter().map(|u| format!(".{u}")));
    want.extend(
        [
            "./etc/cer/dataplane.toml.example",
            "./etc/cer/control.toml.example",
            "./etc/default/cer",
            "./usr/share/man/man1/cerctl.1.gz",
            "./usr/share/man/man1/cerctl-explain.1.gz",
            "./usr/share/man/man8/cer-dataplane.8.gz",
            "./usr/share/man/man8/cer-control.8.gz",
            "./usr/share/man/man8/cer-hugepages.8.gz",
            "./usr/share/bash-completion/completions/cerctl",
            "./usr/share/zsh/vendor-completions/_cerctl",
            "./usr/share/fish/vendor_completions.d/cerctl.fish",
        ]
        .map(String::from),
    );
    for w in &want {
        ensure!(
            contents.lines().any(|l| l.ends_with(w.as_str())),
            "{w} is not in the package:\n{contents}"
        );
    }
    let depends = run(Command::new("dpkg-deb")
        .args(["--field"])
        .arg(&deb)
        .arg("Depends"))?;
    for lib in [
        "libc6",
        "librte-eal23",
        "librte-ethdev23",
        "librte-mempool-ring23",
    ] {
        ensure!(depends.contains(lib), "Depends lacks {lib}: {depends}");
    }
    // What dpkg keeps of an operator's edits across upgrades.
    let conffiles = run(Command::new("dpkg-deb")
        .arg("--info")
        .arg(&deb)
        .arg("conffiles"))?;
    for f in [
        "/etc/cer/dataplane.toml.example",
        "/etc/cer/control.toml.example",
        "/etc/default/cer",
    ] {
        ensure!(
            conffiles.lines().any(|l| l == f),
            "{f} is no conffile: {conffiles}"
        );
    }

    // Installed.
    run(Command::new("dpkg").arg("-i").arg(&deb))?;
    let _purge = Purge;
    ensure!(installed(), "dpkg -i did not install cer");
    for b in BINS {
        let v = run(Command::new(format!("/usr/bin/{b}")).arg("--version"))?;
        ensure!(
            v.contains(b) && v.contains(env!("CARGO_PKG_VERSION")),
            "{b} --version: {v}"
        );
    }
    run(Command::new("systemd-analyze").arg("verify").args(UNITS))?;
    run(Command::new("/usr/bin/cer-dataplane").args([
        "--config",
        "/etc/cer/dataplane.toml.example",
        "--check",
    ]))?;
    run(Command::new("/usr/bin/cer-control").args([
        "--config",
        "/etc/cer/control.toml.example",
        "--check",
    ]))?;
    let page = run(Command::new("man").args(["-w", "cerctl"]))?;
    ensure!(
        page.trim() == "/usr/share/man/man1/cerctl.1.gz",
        "man -w cerctl: {page}"
    );
    let page = run(Command::new("man").args(["-w", "8", "cer-dataplane"]))?;
    ensure!(
        page.trim() == "/usr/share/man/man8/cer-dataplane.8.gz",
        "man -w cer-dataplane: {page}"
    );
    let complete = run(Command::new("bash").args([
        "-c",
        "source /usr/share/bash-completion/completions/cerctl && complete -p cerctl",
    ]))?;
    ensure!(complete.contains("cerctl"), "bash completion: {complete}");

    // The installed binaries on a small topology: cer-dataplane on an
    // af_packet port facing a host namespace, which pings it, and the
    // installed cerctl asking it.
    let dp = Netns::new("pkgdp")?;
    let host = Netns::new("pkgh")?;
    veth("dplan", &dp, "eth0", &host)?;
    dp.run(&["ip", "link", "set", "dplan", "up"])?;
    host.run(&["ip", "link", "set", "eth0", "up"])?;
    host.addr("eth0", "10.93.0.2/24")?;
    let admin = scratch.file("dp.sock");
    let cfg = DataplaneConfig::new("pkg", "10.93.0.1")
        .admin_socket(&admin)
        .feed_socket(&scratch.file("feed.sock"))
        .file_prefix(&format!("pkg{}", tag()))
        // The exception TAP (DPDK's net_tap plugin, a Depends of the
        // package) carries the ping to the namespace's kernel.
        .port(Port::af_packet("lan", "dplan", "10.93.0.1/24").exception_tap("pkgtap"))
        .write(&scratch.file("dp.toml"))?;
    let mut proc = dp.spawn(
        &[
            "/usr/bin/cer-dataplane",
            "--config",
            cfg.to_str().context("path")?,
        ],
        &scratch.file("dp.log"),
    )?;
    proc.wait_for_log("cer-dataplane: ready", Duration::from_secs(20))?;
    ensure!(
        host.ping_until("10.93.0.1", Duration::from_secs(10)),
        "the installed cer-dataplane does not answer a ping"
    );
    let ports = run(Command::new("/usr/bin/cerctl").args([
        "dataplane",
        "show",
        "ports",
        "--admin-socket",
        admin.to_str().context("path")?,
    ]))?;
    ensure!(
        ports.contains("lan"),
        "cerctl dataplane show ports: {ports}"
    );
    drop(proc);

    // Purged: nothing of it left.
    run(Command::new("dpkg").args(["--purge", "cer"]))?;
    ensure!(!installed(), "still installed after dpkg --purge");
    for p in BINS
        .iter()
        .map(|b| format!("/usr/bin/{b}"))
        .chain(UNITS.iter().map(|u| u.to_string()))
        .chain(
            [
                "/etc/cer/dataplane.toml.example",
                "/etc/default/cer",
                "/usr/share/man/man1/cerctl.1.gz",
                "/var/lib/cer",
            ]
            .map(String::from),
        )
    {
        ensure!(!Path::new(&p).exists(), "{p} is left after dpkg --purge");
    }
    Ok(())
}
