//! vsftpd as an anonymous FTP server in a namespace, and curl downloads
//! from it in passive or active mode ([`ftp_get`]).

use crate::{ns_run, ns_spawn, sh, tag, wait_listen, Proc};
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A vsftpd serving `root` anonymously on `addr` (read-only, passive and
/// active mode), with its protocol log (which shows the client address it saw).
pub struct Ftp {
    pub proc: Proc,
    pub root: PathBuf,
    pub addr: String,
    pub log: PathBuf,
}

impl Ftp {
    pub fn start(ns: &str, dir: &Path, addr: &str) -> Result<Ftp> {
        let t = tag();
        let root = dir.join(format!("ftp-root-{t}"));
        std::fs::create_dir_all(&root)?;
        // vsftpd refuses an anonymous root writable by the ftp user; the
        // files must be readable by it.
        sh(&[
            "chmod",
            "755",
            dir.to_str().unwrap(),
            root.to_str().unwrap(),
        ])?;
        let log = dir.join(format!("vsftpd-{t}.log"));
        let conf = dir.join(format!("vsftpd-{t}.conf"));
        std::fs::write(
            &conf,
            format!(
                "listen=YES\nlisten_ipv6=NO\nlisten_address={addr}\nbackground=NO\n\
                 anonymous_enable=YES\nno_anon_password=YES\nanon_root={root}\n\
                 local_enable=NO\nwrite_enable=NO\n\
                 pasv_enable=YES\npasv_min_port=40000\npasv_max_port=40100\n\
                 port_enable=YES\nconnect_from_port_20=YES\nseccomp_sandbox=NO\n\
                 xferlog_enable=YES\nlog_ftp_protocol=YES\ndual_log_enable=YES\n\
                 vsftpd_log_file={log}\nsecure_chroot_dir=/var/run/vsftpd/empty\n",
                root = root.display(),
                log = log.display()
            ),
        )?;
        std::fs::create_dir_all("/var/run/vsftpd/empty")?;
        let proc = ns_spawn(
            ns,
            &["vsftpd", conf.to_str().unwrap()],
            &dir.join(format!("vsftpd-{t}.out")),
        )?;
        wait_listen(ns, addr, 21, Duration::from_secs(5))
            .with_context(|| format!("vsftpd: {}", proc.log_text()))?;
        Ok(Ftp {
            proc,
            root,
            addr: addr.to_string(),
            log,
        })
    }

    /// The server's protocol log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// How an FTP client opens the data connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FtpMode {
    /// PASV: the client connects to the server's data port.
    Passive,
    /// PORT (no EPRT): the server connects back to the client's address.
    Active,
}

/// Downloads `ftp://server/name` with curl from `ns` (bound to `client_addr`)
/// into `out`.
pub fn ftp_get(
    ns: &str,
    client_addr: &str,
    server: &str,
    name: &str,
    mode: FtpMode,
    out: &Path,
) -> Result<()> {
    let url = format!("ftp://{server}/{name}");
    let mut args = vec![
        "curl",
        "-sS",
        "--max-time",
        "60",
        "--interface",
        client_addr,
        "-o",
        out.to_str().unwrap(),
    ];
    if mode == FtpMode::Active {
        args.extend_from_slice(&["-P", client_addr, "--disable-eprt"]);
    } else {
        args.push("--disable-epsv");
    }
    args.push(&url);
    ns_run(ns, &args).with_context(|| format!("ftp {mode:?} {url}"))?;
    Ok(())
}
