//! A running `cer-control` in a test's namespace (or the host's) and
//! `cerctl` against its admin socket.

use crate::{bin, sh, Netns, Proc};
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// A running cer-control and its admin socket; `cerctl` against it.
pub struct Control {
    pub proc: Proc,
    pub socket: PathBuf,
}

impl Control {
    /// Writes `body` (a cer-control TOML without `[admin]`) to `dir/NAME.toml`,
    /// adds the admin socket, starts cer-control in `ns` (or in the host
    /// namespace when `ns` is None) and waits until it is ready.
    pub fn start(ns: Option<&Netns>, dir: &Path, name: &str, body: &str) -> Result<Control> {
        Control::start_with_admin(ns, dir, name, body, "")
    }

    /// As [`Control::start`], with more `[admin]` lines (`mode`, `group`).
    pub fn start_with_admin(
        ns: Option<&Netns>,
        dir: &Path,
        name: &str,
        body: &str,
        admin: &str,
    ) -> Result<Control> {
        let socket = dir.join(format!("{name}.sock"));
        let path = dir.join(format!("{name}.toml"));
        std::fs::write(
            &path,
            format!(
                "{body}\n[admin]\nsocket = \"{}\"\n{admin}\n",
                socket.display()
            ),
        )?;
        let log = dir.join(format!("{name}.log"));
        let argv = [
            bin("cer-control").display().to_string(),
            "--config".into(),
            path.display().to_string(),
        ];
        let refs: Vec<&str> = argv.iter().map(|s| s.as_str()).collect();
        let mut proc = match ns {
            Some(ns) => ns.spawn(&refs, &log)?,
            None => {
                let f = std::fs::File::create(&log)?;
                let child = Command::new(refs[0])
                    .args(&refs[1..])
                    .stdin(Stdio::null())
                    .stdout(f.try_clone()?)
                    .stderr(f)
                    .spawn()?;
                Proc::from_child(child, &log)
            }
        };
        proc.wait_for_log("cer-control: ready", Duration::from_secs(10))?;
        Ok(Control { proc, socket })
    }

    pub fn ctl(&self, args: &[&str]) -> Result<String> {
        let mut full = vec![bin("cerctl").display().to_string()];
        full.extend(args.iter().map(|s| s.to_string()));
        full.push("--socket".into());
        full.push(self.socket.display().to_string());
        let refs: Vec<&str> = full.iter().map(|s| s.as_str()).collect();
        Ok(String::from_utf8_lossy(&sh(&refs)?.stdout).into_owned())
    }

    pub fn json(&self, args: &[&str]) -> Result<serde_json::Value> {
        let mut a = args.to_vec();
        a.push("--json");
        serde_json::from_str(&self.ctl(&a)?).context("cerctl --json output")
    }
}
