//! BIRD 2 as a peer: [`Bird`] (start, `birdc`, reconfigure, session state)
//! and the parser of `birdc show route all`.

use super::{
    check_alive, excerpt, instance_dir, log_tail, need_binary, remove_dir, run_cli, s, wait_for,
    RibEntry, RibSource, CLI_TIMEOUT, START_TIMEOUT,
};
use crate::{Netns, Proc};
use anyhow::{anyhow, bail, Context, Result};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A BIRD 2 in a namespace, control socket in its directory.
pub struct Bird {
    proc: Proc,
    ns: String,
    pub dir: PathBuf,
}

impl Bird {
    /// Starts `bird -f` with `conf` and waits until birdc answers.
    pub fn start(ns: &Netns, scratch_dir: &Path, conf: &str) -> Result<Bird> {
        let label = format!("BIRD@{}", ns.name);
        need_binary(&label, "bird")?;
        need_binary(&label, "birdc")?;
        let dir = instance_dir(scratch_dir, "bird")?;
        let cfg = dir.join("bird.conf");
        std::fs::write(&cfg, conf)?;
        let proc = ns.spawn(
            &[
                "bird",
                "-f",
                "-c",
                s(&cfg),
                "-s",
                s(&dir.join("bird.ctl")),
                "-P",
                s(&dir.join("bird.pid")),
            ],
            &dir.join("bird.log"),
        );
        let proc = match proc {
            Ok(p) => p,
            Err(e) => {
                remove_dir(&dir);
                return Err(e.context(label));
            }
        };
        let b = Bird {
            proc,
            ns: ns.name.clone(),
            dir,
        };
        wait_for(
            &format!("{label}: birdc answering (`show status`)"),
            START_TIMEOUT,
            || b.check_alive(),
            |_| b.birdc("show status").map(|_| Some(())),
        )?;
        Ok(b)
    }

    fn check_alive(&self) -> Result<()> {
        check_alive(&self.label(), &self.proc)
    }

    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    pub fn log(&self) -> String {
        self.proc.log_text()
    }

    /// `birdc -s CTL CMD` in the namespace; returns the reply without the
    /// `BIRD x.y ready.` banner. Replies BIRD marks as errors (`syntax
    /// error`, `No such ...`, `Unknown ...`) are errors.
    pub fn birdc(&self, cmd: &str) -> Result<String> {
        let ctl = self.dir.join("bird.ctl");
        let out = run_cli(
            &self.label(),
            &self.ns,
            &["birdc", "-s", s(&ctl), cmd],
            CLI_TIMEOUT,
        )?;
        let body: String = out
            .lines()
            .filter(|l| !(l.starts_with("BIRD ") && l.ends_with(" ready.")))
            .map(|l| format!("{l}\n"))
            .collect();
        let first = body.lines().next().unwrap_or("");
        if first.starts_with("syntax error")
            || first.starts_with("No such")
            || first.starts_with("Unknown")
            || first.starts_with("Permission denied")
        {
            bail!("{}: `birdc {cmd}` failed: {}", self.label(), body.trim());
        }
        Ok(body)
    }

    /// Replaces the configuration and applies it (`birdc configure`).
    pub fn reconfigure(&self, conf: &str) -> Result<()> {
        std::fs::write(self.dir.join("bird.conf"), conf)?;
        let out = self.birdc("configure")?;
        if !out.contains("Reconfigured") && !out.contains("Reconfiguration in progress") {
            bail!(
                "{}: `birdc configure` did not apply: {}",
                self.label(),
                out.trim()
            );
        }
        Ok(())
    }

    /// The `BGP state:` of `protocol` (`show protocols all NAME`), e.g. `Established`.
    pub fn bgp_state(&self, protocol: &str) -> Result<String> {
        let out = self.birdc(&format!("show protocols all {protocol}"))?;
        out.lines()
            .find_map(|l| {
                l.trim()
                    .strip_prefix("BGP state:")
                    .map(|s| s.trim().to_string())
            })
            .ok_or_else(|| {
                anyhow!(
                    "{}: no `BGP state:` in `birdc show protocols all {protocol}`: {}",
                    self.label(),
                    excerpt(&out)
                )
            })
    }

    /// Waits until BGP protocol `protocol` is Established; returns the time waited.
    pub fn wait_established(&self, protocol: &str, timeout: Duration) -> Result<Duration> {
        let start = Instant::now();
        wait_for(
            &format!(
                "{}: protocol {protocol} Established (`show protocols all {protocol}`)",
                self.label()
            ),
            timeout,
            || self.check_alive(),
            |last| {
                let st = self.bgp_state(protocol)?;
                if st == "Established" {
                    Ok(Some(()))
                } else {
                    *last = format!("BGP state {st}");
                    Ok(None)
                }
            },
        )
        .map_err(|e| anyhow!("{e:#}\nlog tail:\n{}", log_tail(&self.proc.log, 10)))?;
        Ok(start.elapsed())
    }

    /// Every route in BIRD's tables (`show route all`) as [`RibEntry`]s.
    pub fn routes(&self) -> Result<Vec<RibEntry>> {
        let out = self.birdc("show route all")?;
        parse_bird_routes(&out)
            .with_context(|| format!("{}: parsing output of `birdc show route all`", self.label()))
    }

    /// Stops BIRD (SIGTERM, SIGKILL after `timeout`); returns its exit code.
    pub fn stop(&mut self, timeout: Duration) -> Option<i32> {
        self.proc.terminate(timeout)
    }
}

impl RibSource for Bird {
    fn label(&self) -> String {
        format!("BIRD@{}", self.ns)
    }
    fn loc_rib(&self) -> Result<Vec<RibEntry>> {
        self.routes()
    }
    fn check_running(&self) -> Result<()> {
        self.check_alive()
    }
}

impl Drop for Bird {
    fn drop(&mut self) {
        self.proc.terminate(Duration::from_secs(5));
        remove_dir(&self.dir);
    }
}

/// `(a,b) (c,d)` / `(a, b, c)` -> `["a:b", "c:d"]` / `["a:b:c"]`.
fn bird_tuples(v: &str) -> Vec<String> {
    v.split('(')
        .filter_map(|t| t.split_once(')'))
        .map(|(inner, _)| {
            inner
                .split(',')
                .map(str::trim)
                .collect::<Vec<_>>()
                .join(":")
        })
        .collect()
}

/// Parses BIRD 2's `show route all`:
///
/// ```text
/// Table master4:
/// 10.97.0.1/32         unicast [n10_10_0_1 11:12:35.719 from 10.10.0.1] * (100) [i]
///         via 10.10.0.3 on eth0
///         Type: BGP univ
///         BGP.origin: IGP
///         BGP.as_path: 65001 {65002 65003}
///         BGP.next_hop: 10.10.0.3
///         BGP.local_pref: 100
///         BGP.community: (65000,100)
///         BGP.large_community: (65000, 1, 2)
///         BGP.originator_id: 10.10.0.3
///         BGP.cluster_list: 10.10.0.1
///                      unicast [n10_10_0_9 ...] (100) [i]      <- another path
/// ```
/// `*` after the brackets marks the best path. The next hop is
/// `BGP.next_hop` (first address), else the `via` address.
pub fn parse_bird_routes(text: &str) -> Result<Vec<RibEntry>> {
    let mut out: Vec<RibEntry> = Vec::new();
    let mut prefix = String::new();
    let mut via = String::new();
    let mut have_bgp_nh = false;
    for (no, line) in text.lines().enumerate() {
        let t = line.trim();
        if t.is_empty()
            || t.starts_with("Table ")
            || (t.starts_with("BIRD ") && t.ends_with("ready."))
        {
            continue;
        }
        let bad = || anyhow!("line {}: unexpected {line:?}", no + 1);
        let path_header = |rest: &str| -> Result<RibEntry> {
            let after = rest.split_once(']').ok_or_else(bad)?.1;
            Ok(RibEntry {
                best: after.split_whitespace().next() == Some("*"),
                ..RibEntry::default()
            })
        };
        if !line.starts_with(char::is_whitespace) {
            // New prefix and its first path.
            let (p, rest) = t.split_once(char::is_whitespace).ok_or_else(bad)?;
            if !p.contains('/') {
                return Err(bad());
            }
            prefix = p.to_string();
            let mut r = path_header(rest)?;
            r.prefix = prefix.clone();
            finish_bird(&mut out, &via, have_bgp_nh);
            via.clear();
            have_bgp_nh = false;
            out.push(r);
        } else if line.starts_with(' ') && t.contains('[') && t.contains(']') {
            // Another path for the same prefix (attribute lines start with a tab).
            if prefix.is_empty() {
                return Err(bad());
            }
            let mut r = path_header(t)?;
            r.prefix = prefix.clone();
            finish_bird(&mut out, &via, have_bgp_nh);
            via.clear();
            have_bgp_nh = false;
            out.push(r);
        } else if let Some(rest) = t.strip_prefix("via ") {
            if via.is_empty() {
                via = rest.split_whitespace().next().unwrap_or("").to_string();
            }
        } else if let Some((k, v)) = t.split_once(':') {
            let r = out.last_mut().ok_or_else(bad)?;
            let v = v.trim();
            let num = || v.parse::<u32>().map_err(|_| bad());
            match k {
                "BGP.origin" => r.origin = v.to_ascii_lowercase(),
                "BGP.as_path" => {
                    r.as_path = v
                        .split(|c: char| c.is_whitespace() || c == '{' || c == '}' || c == ',')
                        .filter(|x| !x.is_empty())
                        .map(|x| x.parse::<u32>().map_err(|_| bad()))
                        .collect::<Result<_>>()?
                }
                "BGP.next_hop" => {
                    r.next_hop = v.split_whitespace().next().unwrap_or("").to_string();
                    have_bgp_nh = true;
                }
                "BGP.med" => r.med = Some(num()?),
                "BGP.local_pref" => r.local_pref = Some(num()?),
                "BGP.community" => r.communities = bird_tuples(v),
                "BGP.large_community" => r.large_communities = bird_tuples(v),
                "BGP.originator_id" => r.originator_id = Some(v.to_string()),
                "BGP.cluster_list" => {
                    r.cluster_list = v.split_whitespace().map(str::to_string).collect()
                }
                _ => {}
            }
        } else if t.starts_with("dev ") || t.starts_with("Type") {
            // `dev eth0` (device route) or attributes without a value.
        } else {
            return Err(bad());
        }
    }
    finish_bird(&mut out, &via, have_bgp_nh);
    Ok(out)
}

fn finish_bird(out: &mut [RibEntry], via: &str, have_bgp_nh: bool) {
    if let Some(r) = out.last_mut() {
        if !have_bgp_nh && r.next_hop.is_empty() {
            r.next_hop = via.to_string();
        }
    }
}
