//! The four-site lab driver: [`Lab`] brings `scripts/lab` up for one test,
//! reads its lab.json (sites, CER nodes, pairs, WAN) and queries the nodes'
//! admin sockets and the cloud provider emulators.

use crate::{ns_run, sh, tag, text};
use anyhow::{ensure, Context, Result};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

/// A four-site lab (`scripts/lab --name NAME`) brought up for one test and
/// taken down (`down`) when the value drops, also when the test fails
/// (`CER_KEEP_LAB=1` keeps it for debugging). It uses the binaries of this
/// build (`CER_LAB_BIN_DIR`), so a test never runs cargo.
pub struct Lab {
    pub name: String,
    /// `/run/cer-lab/NAME/lab.json` as last read.
    pub state: serde_json::Value,
    script: PathBuf,
    bin_dir: PathBuf,
}

/// A site pair of the lab and the transport it uses.
#[derive(Clone, Debug)]
pub struct Pair {
    pub a: String,
    pub b: String,
    pub transport: String,
    pub tunnel_mtu: u32,
}

impl Lab {
    /// `scripts/lab --name PREFIX<tag> [extra...] up`.
    pub fn up(prefix: &str, extra: &[&str]) -> Result<Lab> {
        let name = format!("{prefix}{}", tag());
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/lab");
        let bin_dir = crate::bin("cer-dataplane")
            .parent()
            .expect("bin dir")
            .to_path_buf();
        let mut lab = Lab {
            name,
            state: serde_json::Value::Null,
            script,
            bin_dir,
        };
        let t0 = Instant::now();
        let mut args: Vec<&str> = extra.to_vec();
        args.push("up");
        let out = lab.cmd(&args).output().context("running scripts/lab up")?;
        eprintln!(
            "lab {} up in {:.1} s:\n{}",
            lab.name,
            t0.elapsed().as_secs_f64(),
            text(&out)
        );
        ensure!(
            out.status.success(),
            "scripts/lab up failed: {}",
            text(&out)
        );
        lab.reload()?;
        Ok(lab)
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.script);
        c.arg("--name")
            .arg(&self.name)
            .args(args)
            .env("CER_LAB_BIN_DIR", &self.bin_dir)
            .stdin(Stdio::null());
        c
    }

    /// `scripts/lab --name NAME ARGS...`; fails with its output when it fails.
    pub fn run(&self, args: &[&str]) -> Result<String> {
        let out = self
            .cmd(args)
            .output()
            .with_context(|| format!("scripts/lab {}", args.join(" ")))?;
        let t = text(&out);
        ensure!(
            out.status.success(),
            "scripts/lab {} failed ({}): {t}",
            args.join(" "),
            out.status
        );
        Ok(t)
    }

    /// Re-reads lab.json.
    pub fn reload(&mut self) -> Result<()> {
        let p = Path::new("/run/cer-lab").join(&self.name).join("lab.json");
        self.state = serde_json::from_str(
            &std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?,
        )
        .with_context(|| format!("parsing {}", p.display()))?;
        Ok(())
    }

    pub fn site(&self, site: &str) -> &serde_json::Value {
        &self.state["sites"][site]
    }

    /// The site's workload namespace.
    pub fn wl(&self, site: &str) -> String {
        self.site(site)["netns"]["workload"]
            .as_str()
            .unwrap_or_else(|| panic!("lab.json: no workload namespace for {site}"))
            .to_string()
    }

    /// The site's own /32 (its workload address at bring-up).
    pub fn ip(&self, site: &str) -> String {
        self.site(site)["workload_ip"]
            .as_str()
            .unwrap_or_else(|| panic!("lab.json: no workload_ip for {site}"))
            .to_string()
    }

    /// The site's CER nodes (lab.json `cers[]`).
    pub fn cers(&self, site: &str) -> Vec<serde_json::Value> {
        self.site(site)["cers"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Transport addresses of the site's CERs.
    pub fn cer_addrs(&self, site: &str) -> Vec<String> {
        self.cers(site)
            .iter()
            .filter_map(|c| c["transport_address"].as_str().map(str::to_string))
            .collect()
    }

    /// One CER by node name (`onprem-a`, `aws`, ...).
    pub fn node(&self, node: &str) -> Result<serde_json::Value> {
        SITES
            .iter()
            .flat_map(|s| self.cers(s))
            .find(|c| c["node"] == node)
            .with_context(|| format!("lab.json: no CER node {node}"))
    }

    /// Every site pair with its transport and tunnel MTU.
    pub fn pairs(&self) -> Vec<Pair> {
        let mut v: Vec<Pair> = self.state["pairs"]
            .as_object()
            .into_iter()
            .flatten()
            .filter_map(|(_, p)| {
                Some(Pair {
                    a: p["sites"][0].as_str()?.to_string(),
                    b: p["sites"][1].as_str()?.to_string(),
                    transport: p["transport"].as_str()?.to_string(),
                    tunnel_mtu: p["tunnel_mtu"].as_u64()? as u32,
                })
            })
            .collect();
        v.sort_by(|x, y| (&x.a, &x.b).cmp(&(&y.a, &y.b)));
        v
    }

    /// The WAN router's namespace.
    pub fn wan_ns(&self) -> String {
        self.state["wan"]["netns"]
            .as_str()
            .unwrap_or("")
            .to_string()
    }

    /// The WAN router's interface towards `site` (the one holding the
    /// site's WAN gateway address): every outer packet of the site crosses it.
    pub fn wan_iface(&self, site: &str) -> Result<String> {
        let gw = self.state["wan"]["router"][site]
            .as_str()
            .with_context(|| format!("lab.json: no WAN router address for {site}"))?;
        let out = ns_run(&self.wan_ns(), &["ip", "-j", "addr", "show"])?;
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        v.as_array()
            .into_iter()
            .flatten()
            .find(|i| {
                i["addr_info"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|a| a["local"] == gw)
            })
            .and_then(|i| i["ifname"].as_str().map(str::to_string))
            .with_context(|| format!("no interface with {gw} in {}", self.wan_ns()))
    }

    /// `cerctl ARGS... --socket <node's cer-control>`.
    pub fn cerctl(&self, node: &str, args: &[&str]) -> Result<String> {
        let n = self.node(node)?;
        let socket = n["control_socket"].as_str().context("control_socket")?;
        let cerctl = self.bin_dir.join("cerctl");
        let mut full = vec![cerctl.to_str().unwrap()];
        full.extend_from_slice(args);
        full.extend_from_slice(&["--socket", socket]);
        Ok(String::from_utf8_lossy(&sh(&full)?.stdout).into_owned())
    }

    /// One JSON query to a node's cer-control admin socket (`owners`, `capture`, ...).
    pub fn control(&self, node: &str, cmd: &str) -> Result<serde_json::Value> {
        let n = self.node(node)?;
        crate::admin(
            Path::new(n["control_socket"].as_str().context("control_socket")?),
            cmd,
        )
    }

    /// One JSON query to a node's dataplane admin socket.
    pub fn dataplane(&self, node: &str, cmd: &str) -> Result<serde_json::Value> {
        let n = self.node(node)?;
        crate::admin(
            Path::new(n["dataplane_socket"].as_str().context("dataplane_socket")?),
            cmd,
        )
    }

    /// The route reflector's Loc-RIB (IPv4 unicast, every path), whichever
    /// reflector the lab runs: `gobgp global rib -j` (gobgpd), `show bgp
    /// ipv4 unicast json detail` (FRR), `bgp_rib` on its admin socket
    /// (cer-control).
    pub fn rr_rib(&self) -> Result<Vec<crate::peers::RibEntry>> {
        let rr = &self.state["rr"];
        let ns = rr["netns"].as_str().context("rr.netns")?;
        match rr["kind"].as_str() {
            Some("gobgp") => {
                let out = ns_run(ns, &["gobgp", "global", "rib", "-a", "ipv4", "-j"])?;
                crate::peers::parse_gobgp_rib(&String::from_utf8_lossy(&out.stdout))
            }
            Some("frr") => {
                let dir = format!(
                    "{}/rr-frr",
                    self.state["run_dir"].as_str().context("run_dir")?
                );
                let out = ns_run(
                    ns,
                    &[
                        "vtysh",
                        "--vty_socket",
                        &dir,
                        "-c",
                        "show bgp ipv4 unicast json detail",
                    ],
                )?;
                crate::peers::parse_frr_routes(&String::from_utf8_lossy(&out.stdout))
            }
            Some("cer") => {
                let sock = rr["control_socket"].as_str().context("rr.control_socket")?;
                let v = crate::admin(Path::new(sock), "bgp_rib")?;
                Ok(v.as_array()
                    .into_iter()
                    .flatten()
                    .map(|p| crate::peers::RibEntry {
                        prefix: p["prefix"].as_str().unwrap_or("").to_string(),
                        next_hop: p["next_hop"].as_str().unwrap_or("").to_string(),
                        communities: p["communities"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(|c| c.as_str().map(str::to_string))
                            .collect(),
                        local_pref: p["local_pref"].as_u64().map(|l| l as u32),
                        best: p["best"] == true,
                        ..Default::default()
                    })
                    .collect())
            }
            other => anyhow::bail!("unknown route reflector kind {other:?} in lab.json"),
        }
    }

    /// The on-prem CER whose proxy-ARP gate is open (the VRRP master).
    pub fn vrrp_master(&self) -> Option<String> {
        self.cers("onprem").iter().find_map(|c| {
            let node = c["node"].as_str()?;
            let pa = self.dataplane(node, "proxy_arp").ok()?;
            (pa["active"] == true).then(|| node.to_string())
        })
    }

    /// A GET on a cloud site's provider emulator (from its fabric namespace).
    pub fn emulator_get(&self, site: &str, path: &str) -> Result<serde_json::Value> {
        let emu = &self.site(site)["emulator"];
        let url = format!("{}{path}", emu["url"].as_str().context("emulator url")?);
        let out = ns_run(
            emu["netns"].as_str().context("emulator netns")?,
            &["curl", "-sS", "--max-time", "10", &url],
        )?;
        serde_json::from_slice(&out.stdout)
            .with_context(|| format!("{url}: {}", String::from_utf8_lossy(&out.stdout)))
    }

    /// A POST with a JSON body to a cloud site's provider emulator (e.g. `/_emulator/faults`).
    pub fn emulator_post(&self, site: &str, path: &str, body: &str) -> Result<serde_json::Value> {
        let emu = &self.site(site)["emulator"];
        let url = format!("{}{path}", emu["url"].as_str().context("emulator url")?);
        let out = ns_run(
            emu["netns"].as_str().context("emulator netns")?,
            &[
                "curl",
                "-sS",
                "--max-time",
                "10",
                "-X",
                "POST",
                "-H",
                "content-type: application/json",
                "--data",
                body,
                &url,
            ],
        )?;
        serde_json::from_slice(&out.stdout)
            .with_context(|| format!("{url}: {}", String::from_utf8_lossy(&out.stdout)))
    }

    /// A cloud pair member's role from its cer-control `capture` status
    /// (`pair.role`: "active" or "standby"); None when it does not answer
    /// (frozen, dead) or is no pair member.
    pub fn pair_role(&self, node: &str) -> Option<String> {
        self.control(node, "capture").ok()?["pair"]["role"]
            .as_str()
            .map(str::to_string)
    }

    /// The node names of a site's CERs (lab.json `cers[].node`).
    pub fn node_names(&self, site: &str) -> Vec<String> {
        self.cers(site)
            .iter()
            .filter_map(|c| c["node"].as_str().map(str::to_string))
            .collect()
    }

    /// A cloud CER's NIC as its provider names it (lab.json `cers[].nic`).
    pub fn cer_nic(&self, node: &str) -> Result<String> {
        self.node(node)?["nic"]
            .as_str()
            .map(str::to_string)
            .with_context(|| format!("lab.json: no nic for {node}"))
    }

    /// What a cloud site's provider (emulator) says holds each secondary
    /// address: ip -> NIC id (primary addresses left out).
    pub fn emulator_holders(
        &self,
        site: &str,
    ) -> Result<std::collections::BTreeMap<String, String>> {
        let v = self.emulator_get(site, "/_emulator/holders")?;
        Ok(v["holders"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|h| h["primary"] != true)
            .filter_map(|h| {
                Some((
                    h["ip"].as_str()?.to_string(),
                    h["nic"].as_str()?.to_string(),
                ))
            })
            .collect())
    }

    /// Runs `scripts/lab status` (for failure messages).
    pub fn status(&self) -> String {
        self.cmd(&["status"])
            .output()
            .map(|o| text(&o))
            .unwrap_or_default()
    }
}

/// The lab's sites.
pub const SITES: [&str; 4] = ["onprem", "aws", "azure", "oci"];

impl Drop for Lab {
    fn drop(&mut self) {
        if std::env::var_os("CER_KEEP_LAB").is_some() {
            eprintln!("CER_KEEP_LAB: leaving lab {} up", self.name);
            return;
        }
        let t0 = Instant::now();
        match self.cmd(&["down"]).output() {
            Ok(o) if o.status.success() => {
                eprintln!(
                    "lab {} down in {:.1} s",
                    self.name,
                    t0.elapsed().as_secs_f64()
                )
            }
            Ok(o) => eprintln!("lab {} down failed: {}", self.name, text(&o)),
            Err(e) => eprintln!("lab {} down: {e}", self.name),
        }
    }
}
