//! FRR as a peer: [`Frr`] (zebra + bgpd, and bfdd when asked, in a
//! namespace, vtysh) and the parser of `show bgp ipv4 unicast json detail`.

use super::{
    check_alive, excerpt, instance_dir, log_tail, need_binary, parse_json, remove_dir, run_cli, s,
    wait_for, RibEntry, RibSource, CLI_TIMEOUT, START_TIMEOUT,
};
use crate::{sh, Netns, Proc};
use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// FRR zebra + bgpd in a namespace, with their own pid files, zserv socket
/// and vty sockets in a directory owned by user `frr`.
pub struct Frr {
    bgpd: Proc,
    zebra: Proc,
    bfdd: Option<Proc>,
    ns: String,
    pub dir: PathBuf,
}

const FRR_DIR: &str = "/usr/lib/frr";

impl Frr {
    /// Starts zebra, then bgpd with `bgpd_conf`, and waits until vtysh
    /// reaches bgpd. Config lines either daemon rejected (FRR logs them and
    /// runs on) make this fail.
    pub fn start(ns: &Netns, scratch_dir: &Path, bgpd_conf: &str) -> Result<Frr> {
        Frr::start_daemons(ns, scratch_dir, bgpd_conf, None)
    }

    /// As [`Frr::start`], with bfdd (config `bfdd_conf`, e.g. `bfd` profiles)
    /// started after zebra and before bgpd, so `neighbor X bfd` registers
    /// its sessions at once.
    pub fn start_with_bfdd(
        ns: &Netns,
        scratch_dir: &Path,
        bgpd_conf: &str,
        bfdd_conf: &str,
    ) -> Result<Frr> {
        Frr::start_daemons(ns, scratch_dir, bgpd_conf, Some(bfdd_conf))
    }

    fn start_daemons(
        ns: &Netns,
        scratch_dir: &Path,
        bgpd_conf: &str,
        bfdd_conf: Option<&str>,
    ) -> Result<Frr> {
        let label = format!("FRR@{}", ns.name);
        let zebra_bin = format!("{FRR_DIR}/zebra");
        let bgpd_bin = format!("{FRR_DIR}/bgpd");
        need_binary(&label, &zebra_bin)?;
        need_binary(&label, &bgpd_bin)?;
        need_binary(&label, "vtysh")?;
        let bfdd_bin = format!("{FRR_DIR}/bfdd");
        if bfdd_conf.is_some() {
            need_binary(&label, &bfdd_bin)?;
        }
        let dir = instance_dir(scratch_dir, "frr")?;
        let setup = || -> Result<()> {
            // The daemons drop to user frr: it must reach and write the directory.
            for a in dir.ancestors().skip(1) {
                use std::os::unix::fs::PermissionsExt;
                let mode = std::fs::metadata(a)?.permissions().mode();
                if mode & 0o001 == 0 {
                    bail!(
                        "{label}: {} (mode {mode:o}) is not searchable by user frr; use a scratch directory under /tmp",
                        a.display()
                    );
                }
            }
            std::fs::write(
                dir.join("zebra.conf"),
                "hostname zebra\nlog stdout informational\n",
            )?;
            std::fs::write(dir.join("bgpd.conf"), bgpd_conf)?;
            if let Some(c) = bfdd_conf {
                std::fs::write(dir.join("bfdd.conf"), c)?;
            }
            sh(&["chown", "-R", "frr:frr", s(&dir)]).with_context(|| {
                format!("{label}: chown to user frr (is package frr installed?)")
            })?;
            Ok(())
        };
        if let Err(e) = setup() {
            remove_dir(&dir);
            return Err(e);
        }
        let daemon = |name: &str, bin: &str| {
            let conf = dir.join(format!("{name}.conf"));
            let pid = dir.join(format!("{name}.pid"));
            let zserv = dir.join("zserv.api");
            ns.spawn(
                &[
                    bin,
                    "-f",
                    s(&conf),
                    "-i",
                    s(&pid),
                    "-z",
                    s(&zserv),
                    "--vty_socket",
                    s(&dir),
                    "-P",
                    "0",
                    "-u",
                    "frr",
                    "-g",
                    "frr",
                    "--log",
                    "stdout",
                ],
                &dir.join(format!("{name}.log")),
            )
        };
        let zebra = match daemon("zebra", &zebra_bin) {
            Ok(p) => p,
            Err(e) => {
                remove_dir(&dir);
                return Err(e.context(label));
            }
        };
        // bgpd connects to zserv.api: start it once zebra listens.
        let zserv = dir.join("zserv.api");
        let zlabel = format!("{label} (zebra)");
        if let Err(e) = wait_for(
            &format!("{zlabel}: {} to appear", zserv.display()),
            START_TIMEOUT,
            || check_alive(&zlabel, &zebra),
            |_| Ok(zserv.exists().then_some(())),
        ) {
            drop(zebra);
            remove_dir(&dir);
            return Err(e);
        }
        let bfdd = match bfdd_conf.map(|_| daemon("bfdd", &bfdd_bin)).transpose() {
            Ok(p) => p,
            Err(e) => {
                drop(zebra);
                remove_dir(&dir);
                return Err(e.context(label));
            }
        };
        let bgpd = match daemon("bgpd", &bgpd_bin) {
            Ok(p) => p,
            Err(e) => {
                drop(bfdd);
                drop(zebra);
                remove_dir(&dir);
                return Err(e.context(label));
            }
        };
        let f = Frr {
            bgpd,
            zebra,
            bfdd,
            ns: ns.name.clone(),
            dir,
        };
        wait_for(
            &format!("{label}: vtysh reaching bgpd (`show bgp summary json`)"),
            START_TIMEOUT,
            || f.check_alive(),
            |_| f.vtysh("show bgp summary json").map(|_| Some(())),
        )?;
        // FRR keeps running on config errors; a test wants them loud.
        let mut daemons = vec![("zebra", &f.zebra), ("bgpd", &f.bgpd)];
        if let Some(b) = &f.bfdd {
            daemons.push(("bfdd", b));
        }
        for (name, p) in daemons {
            let text = p.log_text();
            let errs: Vec<&str> = text
                .lines()
                .filter(|l| l.contains("on config line"))
                .collect();
            if !errs.is_empty() {
                bail!("{label}: {name} rejected its config:\n{}", errs.join("\n"));
            }
        }
        Ok(f)
    }

    fn check_alive(&self) -> Result<()> {
        check_alive(&format!("{} (zebra)", self.label()), &self.zebra)?;
        if let Some(b) = &self.bfdd {
            check_alive(&format!("{} (bfdd)", self.label()), b)?;
        }
        check_alive(&format!("{} (bgpd)", self.label()), &self.bgpd)
    }

    /// The PIDs of every FRR daemon of this instance (to freeze them all).
    pub fn pids(&self) -> Vec<u32> {
        let mut p = vec![self.zebra.pid(), self.bgpd.pid()];
        p.extend(self.bfdd.as_ref().map(|b| b.pid()));
        p
    }

    /// `show bfd peers json`: bfdd's sessions (`peer`, `status`, ...).
    pub fn bfd_peers_json(&self) -> Result<Vec<Value>> {
        let v = self.vtysh_json("show bfd peers json")?;
        Ok(v.as_array().cloned().unwrap_or_default())
    }

    pub fn bgpd_pid(&self) -> u32 {
        self.bgpd.pid()
    }

    pub fn zebra_pid(&self) -> u32 {
        self.zebra.pid()
    }

    /// zebra's, bgpd's (and bfdd's) logs.
    pub fn log(&self) -> String {
        let mut t = format!(
            "--- zebra\n{}--- bgpd\n{}",
            self.zebra.log_text(),
            self.bgpd.log_text()
        );
        if let Some(b) = &self.bfdd {
            t.push_str(&format!("--- bfdd\n{}", b.log_text()));
        }
        t
    }

    /// `vtysh --vty_socket DIR -c CMD` in the namespace; returns stdout.
    /// vtysh exits non-zero on `% Unknown command` and similar.
    pub fn vtysh(&self, cmd: &str) -> Result<String> {
        self.vtysh_lines(&[cmd])
    }

    /// One vtysh run with several `-c` lines (e.g. a configuration session).
    pub fn vtysh_lines(&self, cmds: &[&str]) -> Result<String> {
        let mut args = vec!["vtysh", "--vty_socket", s(&self.dir)];
        for c in cmds {
            args.extend_from_slice(&["-c", c]);
        }
        run_cli(&self.label(), &self.ns, &args, CLI_TIMEOUT)
    }

    /// Applies configuration lines: `conf t`, LINES..., `end`.
    pub fn configure(&self, lines: &[&str]) -> Result<()> {
        let mut all = vec!["configure terminal"];
        all.extend_from_slice(lines);
        all.push("end");
        self.vtysh_lines(&all).map(|_| ())
    }

    /// Runs a vtysh command and parses its output as JSON (end it in `json`).
    pub fn vtysh_json(&self, cmd: &str) -> Result<Value> {
        let out = self.vtysh(cmd)?;
        parse_json(&self.label(), &format!("vtysh -c '{cmd}'"), &out)
    }

    /// `show bgp ipv4 unicast summary json` (`peers.ADDR.state`, `pfxRcd`, ...).
    pub fn bgp_summary_json(&self) -> Result<Value> {
        self.vtysh_json("show bgp ipv4 unicast summary json")
    }

    /// `show bgp neighbors json`: keyed by address (or interface for
    /// unnumbered peers), with `bgpState`.
    pub fn neighbors_json(&self) -> Result<Value> {
        self.vtysh_json("show bgp neighbors json")
    }

    /// Waits until `peer` (address or interface name) is Established;
    /// returns the time waited.
    pub fn wait_established(&self, peer: &str, timeout: Duration) -> Result<Duration> {
        let start = Instant::now();
        wait_for(
            &format!(
                "{}: neighbor {peer} Established (`show bgp neighbors json`)",
                self.label()
            ),
            timeout,
            || self.check_alive(),
            |last| {
                let v = self.neighbors_json()?;
                match v[peer]["bgpState"].as_str() {
                    Some("Established") => Ok(Some(())),
                    Some(st) => {
                        *last = format!("bgpState {st}");
                        Ok(None)
                    }
                    None => {
                        *last = format!("no neighbor {peer}");
                        Ok(None)
                    }
                }
            },
        )
        .map_err(|e| anyhow!("{e:#}\nbgpd log tail:\n{}", log_tail(&self.bgpd.log, 10)))?;
        Ok(start.elapsed())
    }

    /// The BGP IPv4 unicast table as [`RibEntry`]s, every path. Read from
    /// `show bgp ipv4 unicast json detail`: plain `json` has no communities,
    /// originator or cluster list in FRR 8.4.
    pub fn routes_json(&self) -> Result<Vec<RibEntry>> {
        let cmd = "show bgp ipv4 unicast json detail";
        let out = self.vtysh(cmd)?;
        parse_frr_routes(&out)
            .with_context(|| format!("{}: parsing output of `vtysh -c '{cmd}'`", self.label()))
    }

    /// Stops bgpd, bfdd, then zebra (SIGTERM, SIGKILL after `timeout` each).
    pub fn stop(&mut self, timeout: Duration) {
        self.bgpd.terminate(timeout);
        if let Some(b) = &mut self.bfdd {
            b.terminate(timeout);
        }
        self.zebra.terminate(timeout);
    }
}

impl RibSource for Frr {
    fn label(&self) -> String {
        format!("FRR@{}", self.ns)
    }
    fn loc_rib(&self) -> Result<Vec<RibEntry>> {
        self.routes_json()
    }
    fn check_running(&self) -> Result<()> {
        self.check_alive()
    }
}

impl Drop for Frr {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(5));
        remove_dir(&self.dir);
    }
}

/// Parses FRR's `show bgp ipv4 unicast json detail` (8.4): `routes` maps a
/// prefix to an array whose first element is a header (`prefix`,
/// `advertisedTo`) and the rest are paths (`aspath.segments`, `origin`,
/// `metric`, `locPrf`, `community.list`, `largeCommunity.list`,
/// `originatorId`, `clusterList.list`, `bestpath.overall`, `nexthops[].ip`).
/// Also accepts the per-prefix form (`show bgp ipv4 unicast P json`: `paths`).
pub fn parse_frr_routes(text: &str) -> Result<Vec<RibEntry>> {
    let v: Value = serde_json::from_str(text.trim())
        .map_err(|e| anyhow!("not JSON ({e}): {}", excerpt(text)))?;
    let mut out = Vec::new();
    let mut add = |prefix: &str, p: &Value| {
        if p.get("nexthops").is_none() && p.get("aspath").is_none() {
            return; // the header element
        }
        let list = |v: &Value| -> Vec<String> {
            v["list"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        };
        let mut as_path = Vec::new();
        for seg in p["aspath"]["segments"].as_array().into_iter().flatten() {
            as_path.extend(
                seg["list"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|x| x.as_u64().map(|x| x as u32)),
            );
        }
        let best = match &p["bestpath"] {
            Value::Object(o) => o.get("overall").and_then(Value::as_bool).unwrap_or(false),
            Value::Bool(b) => *b,
            _ => false,
        };
        out.push(RibEntry {
            prefix: prefix.to_string(),
            next_hop: p["nexthops"][0]["ip"].as_str().unwrap_or("").to_string(),
            as_path,
            origin: p["origin"].as_str().unwrap_or("").to_ascii_lowercase(),
            med: p["metric"].as_u64().map(|x| x as u32),
            local_pref: p["locPrf"].as_u64().map(|x| x as u32),
            communities: list(&p["community"]),
            large_communities: list(&p["largeCommunity"]),
            originator_id: p["originatorId"].as_str().map(str::to_string),
            cluster_list: list(&p["clusterList"]),
            best,
        });
    };
    if let Some(routes) = v.get("routes") {
        let routes = routes
            .as_object()
            .ok_or_else(|| anyhow!("`routes` is not an object"))?;
        for (prefix, paths) in routes {
            for p in paths
                .as_array()
                .ok_or_else(|| anyhow!("{prefix}: expected an array"))?
            {
                add(prefix, p);
            }
        }
    } else if let (Some(prefix), Some(paths)) = (v["prefix"].as_str(), v["paths"].as_array()) {
        for p in paths {
            add(prefix, p);
        }
    } else if !v.as_object().is_some_and(|o| o.is_empty()) {
        bail!("no `routes` in {}", excerpt(text));
    }
    Ok(out)
}
