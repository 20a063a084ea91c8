//! nfs-ganesha with rpcbind (NFS v3) in a private mount namespace, the
//! libnfs client (`nfs-cp`), and the portmapper's registrations (`rpcinfo -p`).

use crate::{ns_run, ns_spawn, ns_try, send_signal, tag, text, Proc};
use anyhow::{bail, ensure, Context, Result};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// nfs-ganesha (VFS FSAL, NFS v3 over TCP and UDP) exporting a directory,
/// with rpcbind beside it. Both run in a private mount namespace with their
/// own tmpfs /run (rpcbind and ganesha use fixed /run paths).
pub struct Nfs {
    ganesha: Proc,
    rpcbind_pid_file: PathBuf,
    /// The exported directory; NFS v3 clients mount it by this path.
    pub export: PathBuf,
    pub addr: String,
    pub log: PathBuf,
}

impl Nfs {
    pub fn start(ns: &str, dir: &Path, addr: &str) -> Result<Nfs> {
        let t = tag();
        let export = dir.join(format!("nfs-export-{t}"));
        std::fs::create_dir_all(&export)?;
        let conf = dir.join(format!("ganesha-{t}.conf"));
        let log = dir.join(format!("ganesha-{t}.log"));
        let rpcbind_pid_file = dir.join(format!("rpcbind-{t}.pid"));
        std::fs::write(
            &conf,
            format!(
                "NFS_CORE_PARAM {{ Protocols = 3; Bind_addr = {addr}; Enable_NLM = false; Enable_RQUOTA = false; }}\n\
                 NFSV4 {{ Graceless = true; }}\n\
                 EXPORT {{ Export_Id = 1; Path = {export}; Pseudo = /export; Access_Type = RW;\n\
                   Squash = No_Root_Squash; SecType = sys; Protocols = 3; Transports = TCP, UDP;\n\
                   FSAL {{ Name = VFS; }} }}\n",
                export = export.display()
            ),
        )?;
        let script = dir.join(format!("nfs-{t}.sh"));
        std::fs::write(
            &script,
            format!(
                "set -e\nmount -t tmpfs cer-nfs-run /run\nmkdir -p /run/rpcbind /run/ganesha\n\
                 rpcbind -f -w &\necho $! > {rp}\n\
                 i=0; while [ ! -S /run/rpcbind.sock ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done\n\
                 exec ganesha.nfsd -F -f {conf} -L {log} -p {dir}/ganesha-{t}.pid -N NIV_EVENT\n",
                rp = rpcbind_pid_file.display(),
                conf = conf.display(),
                log = log.display(),
                dir = dir.display(),
            ),
        )?;
        // `unshare` without --fork execs sh, which execs ganesha: one PID.
        let ganesha = ns_spawn(
            ns,
            &[
                "unshare",
                "-m",
                "--propagation",
                "private",
                "sh",
                script.to_str().unwrap(),
            ],
            &dir.join(format!("nfs-{t}.out")),
        )?;
        let nfs = Nfs {
            ganesha,
            rpcbind_pid_file,
            export,
            addr: addr.to_string(),
            log,
        };
        // Up when mountd is registered and NFS answers a NULL call over TCP.
        let start = Instant::now();
        loop {
            let o = ns_try(ns, &["rpcinfo", "-t", addr, "nfs", "3"]);
            let m = ns_try(ns, &["rpcinfo", "-t", addr, "mountd", "3"]);
            if o.status.success() && m.status.success() {
                break;
            }
            if start.elapsed() > Duration::from_secs(20) {
                bail!(
                    "nfs-ganesha on {addr} not answering: {}{}\n{}\n{}",
                    text(&o),
                    text(&m),
                    nfs.ganesha.log_text(),
                    std::fs::read_to_string(&nfs.log).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Ok(nfs)
    }

    /// `nfs://ADDR/EXPORT/name` for libnfs.
    pub fn url(&self, name: &str) -> String {
        format!("nfs://{}{}/{name}", self.addr, self.export.display())
    }
}

impl Drop for Nfs {
    fn drop(&mut self) {
        if let Ok(p) = std::fs::read_to_string(&self.rpcbind_pid_file) {
            if let Ok(pid) = p.trim().parse::<u32>() {
                send_signal(pid, libc::SIGTERM);
            }
        }
        self.ganesha.terminate(Duration::from_secs(5));
        // The tmpfs on /run goes with the mount namespace (its last process).
    }
}

/// `nfs-cp SRC DST` in `ns` (either side may be an nfs:// URL).
pub fn nfs_cp(ns: &str, src: &str, dst: &str) -> Result<()> {
    ns_run(ns, &["nfs-cp", src, dst]).with_context(|| format!("nfs-cp {src} {dst}"))?;
    Ok(())
}

/// One line of `rpcinfo -p`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RpcProgram {
    pub program: u32,
    pub version: u32,
    pub proto: String,
    pub port: u16,
    pub service: String,
}

/// `rpcinfo -p ADDR` from `ns`: the portmapper's registrations.
pub fn rpcinfo(ns: &str, addr: &str) -> Result<Vec<RpcProgram>> {
    let out = ns_run(ns, &["rpcinfo", "-p", addr])?;
    parse_rpcinfo(&String::from_utf8_lossy(&out.stdout))
}

pub fn parse_rpcinfo(text: &str) -> Result<Vec<RpcProgram>> {
    let mut v = Vec::new();
    for line in text.lines().skip_while(|l| !l.contains("program")).skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 4 {
            continue;
        }
        v.push(RpcProgram {
            program: f[0]
                .parse()
                .with_context(|| format!("rpcinfo line {line}"))?,
            version: f[1].parse()?,
            proto: f[2].to_string(),
            port: f[3].parse()?,
            service: f.get(4).unwrap_or(&"").to_string(),
        });
    }
    ensure!(!v.is_empty(), "rpcinfo listed nothing: {text}");
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rpcinfo_lines() {
        let t = "   program vers proto   port  service\n    100000    4   tcp    111  portmapper\n    100003    3   tcp   2049  nfs\n";
        let v = parse_rpcinfo(t).unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(v[1].service, "nfs");
        assert_eq!(v[1].port, 2049);
    }
}
