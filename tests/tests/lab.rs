//! The four-site lab (`scripts/lab`) end to end, as a user runs it: `up` (with
//! this build's binaries), `lab.json` as documented, a full mesh of pings
//! between the four sites' workloads through every transport pair (the
//! default topology uses all five transports), a second `up` that changes
//! nothing, `move` of a /32 between two clouds, `fail`/`heal` of the
//! on-prem VRRP master and of a cloud CER, and `down` leaving no namespace,
//! run dir or DPDK runtime dir behind. `down` also runs when the test fails
//! (`CER_KEEP_LAB=1` keeps the lab for debugging).

use anyhow::{bail, ensure, Context, Result};
use cer_e2e::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A lab brought up by this test; `down` on drop.
struct Lab {
    name: String,
    script: PathBuf,
    bin_dir: PathBuf,
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

impl Lab {
    fn new() -> Lab {
        Lab {
            name: format!("lt{}", tag()),
            script: Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/lab"),
            bin_dir: bin("cer-dataplane")
                .parent()
                .expect("bin dir")
                .to_path_buf(),
        }
    }

    fn cmd(&self, args: &[&str]) -> Output {
        Command::new(&self.script)
            .arg("--name")
            .arg(&self.name)
            .args(args)
            // This build's binaries: the test never runs cargo.
            .env("CER_LAB_BIN_DIR", &self.bin_dir)
            .stdin(Stdio::null())
            .output()
            .expect("running scripts/lab")
    }

    fn run(&self, args: &[&str]) -> Result<String> {
        let out = self.cmd(args);
        let t = text(&out);
        ensure!(
            out.status.success(),
            "scripts/lab {} failed ({}):\n{t}",
            args.join(" "),
            out.status
        );
        Ok(t)
    }

    fn state(&self) -> Result<Value> {
        let p = Path::new("/run/cer-lab").join(&self.name).join("lab.json");
        serde_json::from_str(&std::fs::read_to_string(&p).with_context(|| p.display().to_string())?)
            .context("lab.json")
    }

    /// Pings `ip` from `site`'s workload (`scripts/lab exec`) until one answer
    /// arrives or `timeout` passes (the first packets of a flow may wait for
    /// ARP and a WireGuard handshake).
    fn ping(&self, site: &str, ip: &str, timeout: Duration) -> bool {
        let start = Instant::now();
        while start.elapsed() < timeout {
            let out = self.cmd(&[
                "exec", site, "--", "ping", "-c", "2", "-i", "0.2", "-W", "1", ip,
            ]);
            if out.status.success() {
                return true;
            }
        }
        false
    }

    fn pid(&self, key: &str) -> String {
        std::fs::read_to_string(
            Path::new("/run/cer-lab")
                .join(&self.name)
                .join("pids")
                .join(format!("{key}.pid")),
        )
        .unwrap_or_default()
    }

    fn namespaces(&self) -> Vec<String> {
        let out = Command::new("ip")
            .args(["netns", "list"])
            .output()
            .expect("ip netns list");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .filter(|n| n.starts_with(&format!("{}-", self.name)))
            .map(String::from)
            .collect()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if std::env::var_os("CER_KEEP_LAB").is_some() {
            eprintln!("CER_KEEP_LAB set: lab {} left up", self.name);
            return;
        }
        let out = self.cmd(&["down"]);
        eprintln!(
            "scripts/lab --name {} down: {}",
            self.name,
            text(&out).trim()
        );
    }
}

/// Runs the capture points and filters `cerctl explain --json` gives for the
/// on-prem /32 on the AWS CER (`tunnel:N:inner`, `port:lan:rx`,
/// `tunnel:N:outer`) while the AWS workload pings it, then reads the pcapng
/// with tshark: every inner packet is between the two workloads' /32s,
/// every outer one between the two CERs' transport addresses.
fn no_nat_with_cerctl_capture(lab: &Lab, st: &Value) -> Result<()> {
    let all = sites(st);
    let ip_of = |site: &str| {
        all.iter()
            .find(|(s, _)| s == site)
            .map(|(_, ip)| ip.clone())
            .unwrap_or_default()
    };
    let (onprem, aws) = (ip_of("onprem"), ip_of("aws"));
    let cer = &st["sites"]["aws"]["cers"][0];
    let cerctl = cer["cerctl"][0].as_str().context("cerctl")?;
    let control = cer["control_socket"].as_str().context("control_socket")?;
    let dataplane = cer["dataplane_socket"]
        .as_str()
        .context("dataplane_socket")?;
    let out = Command::new(cerctl)
        .args(["explain", &onprem, "--json", "--socket", control])
        .args(["--dataplane-socket", dataplane])
        .output()?;
    let ex: Value = serde_json::from_slice(&out.stdout)
        .with_context(|| format!("explain --json: {}", text(&out)))?;
    let cp = &ex["capture_points"];
    let (inner_f, outer_f) = (
        cp["inner"]["filter"].as_str().context("inner filter")?,
        cp["outer"]["filter"].as_str().context("outer filter")?,
    );
    let transport: Vec<String> = outer_f
        .split("host ")
        .skip(1)
        .map(|h| h.split_whitespace().next().unwrap_or_default().to_string())
        .collect();
    ensure!(transport.len() == 2, "outer filter {outer_f}");
    let file = std::env::temp_dir().join(format!("{}-nonat.pcapng", lab.name));
    let mut args: Vec<String> = vec![
        "dataplane".into(),
        "--admin-socket".into(),
        dataplane.into(),
        "capture".into(),
    ];
    for p in ["inner", "outer"] {
        for point in cp[p]["points"].as_array().context("points")? {
            args.push("--point".into());
            args.push(point.as_str().unwrap_or_default().into());
        }
    }
    args.extend([
        "--filter".into(),
        format!("({inner_f}) or ({outer_f})"),
        "--duration".into(),
        "4s".into(),
        "-w".into(),
        file.display().to_string(),
    ]);
    let capture = Command::new(cerctl)
        .args(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    std::thread::sleep(Duration::from_millis(500));
    ensure!(
        lab.ping("aws", &onprem, Duration::from_secs(3)),
        "aws -> onprem during the capture"
    );
    let done = capture.wait_with_output()?;
    ensure!(done.status.success(), "cerctl capture: {}", text(&done));
    let read = Command::new("tshark")
        .arg("-r")
        .arg(&file)
        .args([
            "-T",
            "fields",
            "-e",
            "frame.interface_name",
            "-e",
            "ip.src",
            "-e",
            "ip.dst",
        ])
        .output()?;
    let _ = std::fs::remove_file(&file);
    let table = String::from_utf8_lossy(&read.stdout).into_owned();
    let (mut inner, mut outer) = (0, 0);
    for line in table.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        ensure!(f.len() == 3, "tshark line {line:?}");
        let ends = [f[1].to_string(), f[2].to_string()];
        if f[0].ends_with("outer") {
            outer += 1;
            ensure!(
                ends.iter().all(|a| transport.contains(a)),
                "an outer packet not between the transport addresses: {line}\n{table}"
            );
        } else {
            inner += 1;
            ensure!(
                ends.contains(&onprem) && ends.iter().all(|a| *a == onprem || *a == aws),
                "an inner packet not between the workloads' /32s (NAT?): {line}\n{table}"
            );
        }
    }
    // Two pings: each request on lan rx and tunnel inner, each reply at
    // tunnel inner; each request and reply once outer.
    ensure!(
        inner >= 6 && outer >= 4,
        "too few packets captured:\n{table}"
    );
    eprintln!("no NAT: {inner} inner and {outer} outer packets captured with cerctl");
    Ok(())
}

fn sites(state: &Value) -> Vec<(String, String)> {
    ["onprem", "aws", "azure", "oci"]
        .iter()
        .map(|s| {
            (
                s.to_string(),
                state["sites"][s]["workload_ip"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect()
}

#[test]
fn four_site_lab_up_full_mesh_move_fail_heal_down() -> Result<()> {
    let _g = serial();
    require_root();
    let t0 = Instant::now();
    let lab = Lab::new();

    let up = lab.run(&["up"])?;
    eprintln!("{up}");
    let up_secs = t0.elapsed().as_secs_f64();
    assert!(
        up.contains("Try it:") && up.contains("10.77.60.13"),
        "up prints where each /32 lives and how to try it:\n{up}"
    );

    // lab.json: what the acceptance tests drive the lab through.
    let st = lab.state()?;
    assert_eq!(st["name"], lab.name.as_str());
    assert_eq!(st["pool"], "10.77.60.0/24");
    assert_eq!(st["rr"]["address"], "100.64.0.1");
    let mut kinds: Vec<String> = st["pairs"]
        .as_object()
        .context("pairs")?
        .values()
        .map(|p| p["transport"].as_str().unwrap_or_default().to_string())
        .collect();
    kinds.sort();
    kinds.dedup();
    assert_eq!(
        kinds,
        ["fou", "gre", "gue", "ipip", "wireguard"],
        "the default topology exercises every transport"
    );
    for (site, ip) in sites(&st) {
        let s = &st["sites"][&site];
        assert!(!ip.is_empty(), "{site} workload_ip");
        assert!(s["netns"]["workload"].is_string(), "{site}: {s}");
        for cer in s["cers"].as_array().context("cers")? {
            let sock = cer["control_socket"].as_str().context("control_socket")?;
            assert!(Path::new(sock).exists(), "{site}: {sock}");
            assert!(cer["transport_address"].is_string());
            assert!(cer["cerctl"].is_array());
        }
        if site != "onprem" {
            assert_eq!(s["emulator"]["url"], "http://169.254.169.254", "{site}");
        }
    }
    assert_eq!(
        st["sites"]["onprem"]["cers"].as_array().map(|c| c.len()),
        Some(2)
    );
    assert_eq!(st["sites"]["aws"]["wan_mtu"], 9001);

    // Full mesh: every workload reaches every other site's /32.
    let all = sites(&st);
    let mut failed = Vec::new();
    for (from, _) in &all {
        for (to, ip) in &all {
            if from != to && !lab.ping(from, ip, Duration::from_secs(10)) {
                failed.push(format!("{from} -> {to} ({ip})"));
            }
        }
    }
    if !failed.is_empty() {
        bail!(
            "no answer for {}\n{}",
            failed.join(", "),
            lab.run(&["status"]).unwrap_or_else(|e| e.to_string())
        );
    }
    eprintln!(
        "full mesh (12 pairs) answered; {:.1} s since start",
        t0.elapsed().as_secs_f64()
    );

    // No NAT, proved on the AWS CER with cerctl alone: the capture `explain`
    // prints for the on-prem /32, run while the AWS workload pings it.
    no_nat_with_cerctl_capture(&lab, &st)?;

    // A second `up` changes nothing.
    let dp = lab.pid("aws-dp");
    let again = lab.run(&["up"])?;
    assert!(again.contains("already up"), "{again}");
    assert_eq!(
        lab.pid("aws-dp"),
        dp,
        "second up restarted the AWS dataplane"
    );

    // Move AWS's /32 to Azure: the Azure workload answers for it, from OCI.
    lab.run(&["move", "10.77.60.11", "azure"])?;
    assert!(
        lab.ping("oci", "10.77.60.11", Duration::from_secs(10)),
        "oci -> 10.77.60.11 after the move to azure\n{}",
        lab.run(&["status"])?
    );
    let out = lab.cmd(&[
        "exec", "azure", "--", "ip", "-br", "addr", "show", "dev", "eth0",
    ]);
    assert!(text(&out).contains("10.77.60.11/32"), "{}", text(&out));
    assert_eq!(lab.state()?["endpoints"]["10.77.60.11"], "azure");
    lab.run(&["move", "10.77.60.11", "aws"])?;

    // The on-prem VRRP master dies: the backup takes over proxy ARP.
    let failed_out = lab.run(&["fail", "onprem"])?;
    assert!(failed_out.contains("failed onprem-a"), "{failed_out}");
    assert!(
        lab.ping("onprem", "10.77.60.11", Duration::from_secs(20)),
        "onprem -> aws after the VRRP master died\n{}",
        lab.run(&["status"])?
    );
    lab.run(&["heal", "onprem"])?;

    // A cloud CER dies and comes back.
    lab.run(&["fail", "oci"])?;
    lab.run(&["heal", "oci"])?;
    assert!(
        lab.ping("aws", "10.77.60.13", Duration::from_secs(15)),
        "aws -> oci after heal\n{}",
        lab.run(&["status"])?
    );

    let down = lab.run(&["down"])?;
    assert!(down.contains("down"), "{down}");
    assert!(
        lab.namespaces().is_empty(),
        "left behind: {:?}",
        lab.namespaces()
    );
    assert!(!Path::new("/run/cer-lab").join(&lab.name).exists());
    let dpdk: Vec<String> = std::fs::read_dir("/var/run/dpdk")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(&format!("{}-", lab.name)))
                .collect()
        })
        .unwrap_or_default();
    assert!(dpdk.is_empty(), "DPDK runtime dirs left: {dpdk:?}");
    eprintln!(
        "lab test: up {up_secs:.1} s, whole test {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}
