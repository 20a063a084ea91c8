//! Running commands, on the host ([`sh`]) and inside network namespaces.
//!
//! A namespace is either owned by the test ([`Netns`]: created with a unique
//! name, deleted with every process in it on drop) or only named (a lab
//! site's workload namespace). Both run commands the same way: the
//! `ns_*` functions take a name, and [`Netns`]'s methods call them with its
//! own. [`netns_command`] is the one place that builds `ip netns exec`.

use crate::{tag, Proc};
use anyhow::{bail, Context, Result};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Runs a command, failing with its output when it fails.
pub fn sh(args: &[&str]) -> Result<Output> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .with_context(|| format!("running {}", args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "{} failed ({}): {}{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(out)
}

/// Text of a command's stdout and stderr.
pub fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

/// `ip netns exec NS ARGS...`, not started yet (stdio left to the caller).
/// `ip netns exec` execs the program, so a started child's PID is the
/// program's own.
pub fn netns_command(ns: &str, args: &[&str]) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns]).args(args);
    c
}

/// Runs a command inside namespace `ns`; fails with its output when it fails.
pub fn ns_run(ns: &str, args: &[&str]) -> Result<Output> {
    let out = netns_command(ns, args)
        .output()
        .with_context(|| format!("running {} in {ns}", args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "ip netns exec {ns} {} failed ({}): {}",
            args.join(" "),
            out.status,
            text(&out)
        );
    }
    Ok(out)
}

/// Runs a command inside namespace `ns` and returns whatever it did.
pub fn ns_try(ns: &str, args: &[&str]) -> Output {
    netns_command(ns, args).output().expect("ip netns exec")
}

/// Starts a long-running process inside namespace `ns` (stdout and stderr to `log`).
pub fn ns_spawn(ns: &str, args: &[&str], log: &Path) -> Result<Proc> {
    let f = std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let child = netns_command(ns, args)
        .stdin(Stdio::null())
        .stdout(f.try_clone()?)
        .stderr(f)
        .spawn()
        .with_context(|| format!("starting {} in {ns}", args.join(" ")))?;
    Ok(Proc::from_child(child, log))
}

/// Waits until something listens on TCP `addr:port` inside `ns` (no
/// connection is made: one-shot servers would take it for their client).
pub fn wait_listen(ns: &str, addr: &str, port: u16, timeout: Duration) -> Result<()> {
    let want = format!("{addr}:{port}");
    let start = Instant::now();
    loop {
        let o = ns_try(ns, &["ss", "-Hltn"]);
        if String::from_utf8_lossy(&o.stdout)
            .split_whitespace()
            .any(|w| w == want)
        {
            return Ok(());
        }
        if start.elapsed() > timeout {
            bail!("nothing listens on {want} in {ns} after {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A network namespace, deleted (with every process in it) on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(prefix: &str) -> Result<Netns> {
        let name = format!("cer{prefix}{}", tag());
        sh(&["ip", "netns", "add", &name])?;
        let ns = Netns { name };
        ns.run(&["ip", "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// Runs a command inside the namespace; fails if it fails ([`ns_run`]).
    pub fn run(&self, args: &[&str]) -> Result<Output> {
        ns_run(&self.name, args)
    }

    /// Runs a command inside the namespace and returns its status and output ([`ns_try`]).
    pub fn try_run(&self, args: &[&str]) -> Output {
        ns_try(&self.name, args)
    }

    /// Starts a long-running process inside the namespace ([`ns_spawn`]).
    pub fn spawn(&self, args: &[&str], log: &Path) -> Result<Proc> {
        ns_spawn(&self.name, args, log)
    }

    /// `ip addr add` + `ip link set up` on an interface in this namespace.
    pub fn addr(&self, iface: &str, cidr: &str) -> Result<()> {
        self.run(&["ip", "addr", "add", cidr, "dev", iface])?;
        self.run(&["ip", "link", "set", iface, "up"])?;
        Ok(())
    }

    pub fn ping(&self, dst: &str, count: u32) -> bool {
        self.try_run(&[
            "ping",
            "-c",
            &count.to_string(),
            "-W",
            "1",
            "-i",
            "0.2",
            dst,
        ])
        .status
        .success()
    }

    /// Pings until one answer arrives or `timeout` passes.
    pub fn ping_until(&self, dst: &str, timeout: Duration) -> bool {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if self
                .try_run(&["ping", "-c", "1", "-W", "1", dst])
                .status
                .success()
            {
                return true;
            }
        }
        false
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // End what still runs in the namespace (only processes this test started live there).
        if let Ok(out) = Command::new("ip")
            .args(["netns", "pids", &self.name])
            .output()
        {
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                if let Ok(pid) = pid.parse::<i32>() {
                    // SAFETY: plain kill(2) on a PID inside our own namespace.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
            }
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// Creates a veth pair with ends in two namespaces.
pub fn veth(a: &str, ns_a: &Netns, b: &str, ns_b: &Netns) -> Result<()> {
    sh(&[
        "ip", "link", "add", a, "netns", &ns_a.name, "type", "veth", "peer", "name", b, "netns",
        &ns_b.name,
    ])?;
    Ok(())
}
