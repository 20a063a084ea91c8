//! wireguard-go (userspace WireGuard; this kernel has no wireguard module) as
//! a test peer inside a network namespace the test created, configured and
//! read with `wg` from wireguard-tools.
//!
//! - [`WgGo::start`] runs `wireguard-go -f IFNAME` in the foreground as a
//!   child of the test (stopped by PID on drop: SIGTERM, then SIGKILL after
//!   5 s), sets its key and port, and puts an address on the interface.
//! - Interface names must be unique across namespaces: the UAPI socket path
//!   `/var/run/wireguard/IFNAME.sock` is shared by every namespace, so `start`
//!   refuses a name whose socket exists, and drop removes a socket a killed
//!   wireguard-go left behind. `wg show IFNAME` works from any namespace
//!   (never plain `wg show`, which lists everyone's interfaces).
//! - `wireguard-go` needs `/dev/net/tun`; it prints a banner saying the kernel
//!   module would be better, which is harmless.
//! - Keys: [`genkey`] / [`pubkey`] run `wg genkey` / `wg pubkey`; the private
//!   key reaches `wg set` through a 0600 file in the instance directory.
//!
//! Declare a [`WgGo`] *after* the [`Netns`] it runs in, so it stops before the
//! namespace goes.

use crate::{pid_alive, Netns, Proc};
use anyhow::{anyhow, bail, Context, Result};
use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Time limit of one `wg` call.
pub const WG_TIMEOUT: Duration = Duration::from_secs(10);
/// Time wireguard-go gets to create its interface and UAPI socket.
pub const START_TIMEOUT: Duration = Duration::from_secs(10);
const UAPI_DIR: &str = "/var/run/wireguard";
const POLL: Duration = Duration::from_millis(50);

/// Runs a command with a time limit (killed by PID when it runs over) and
/// optional stdin; fails with its output when it fails.
fn run(args: &[&str], stdin: Option<&str>, timeout: Duration) -> Result<String> {
    let mut cmd = Command::new(args[0]);
    cmd.args(&args[1..]);
    let f = crate::run_limited(cmd, &args.join(" "), stdin, timeout)?;
    if !f.status.success() {
        bail!(
            "{} failed ({}): {}{}",
            args.join(" "),
            f.status,
            f.stdout,
            f.stderr
        );
    }
    Ok(f.stdout)
}

/// A new private key (`wg genkey`), base64.
pub fn genkey() -> Result<String> {
    Ok(run(&["wg", "genkey"], None, WG_TIMEOUT)?.trim().to_string())
}

/// The public key of a private key (`wg pubkey`), base64.
pub fn pubkey(private_key: &str) -> Result<String> {
    Ok(run(
        &["wg", "pubkey"],
        Some(&format!("{private_key}\n")),
        WG_TIMEOUT,
    )?
    .trim()
    .to_string())
}

/// One peer line of `wg show IFNAME dump`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WgPeerState {
    pub public_key: String,
    pub preshared_key: bool,
    pub endpoint: Option<SocketAddr>,
    pub allowed_ips: Vec<String>,
    /// None until the first handshake (wg prints 0); second resolution.
    pub latest_handshake: Option<SystemTime>,
    /// Bytes of UDP payload received / sent (handshakes, keepalives, data).
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub persistent_keepalive: Option<u16>,
}

/// `wg show IFNAME dump`, without the private key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WgShow {
    pub public_key: String,
    pub listen_port: u16,
    pub peers: Vec<WgPeerState>,
}

impl WgShow {
    pub fn peer(&self, public_key: &str) -> Option<&WgPeerState> {
        self.peers.iter().find(|p| p.public_key == public_key)
    }
}

/// Parses `wg show IFNAME dump`: an interface line (private key, public key,
/// listen port, fwmark), then one line per peer (public key, preshared key,
/// endpoint, allowed ips, latest handshake, rx, tx, persistent keepalive),
/// tab separated, `(none)` / `off` / `0` for unset.
pub fn parse_dump(text: &str) -> Result<WgShow> {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let head: Vec<&str> = lines
        .next()
        .ok_or_else(|| anyhow!("empty wg dump"))?
        .split('\t')
        .collect();
    if head.len() != 4 {
        bail!("wg dump interface line has {} fields, not 4", head.len());
    }
    let mut show = WgShow {
        public_key: head[1].to_string(),
        listen_port: head[2]
            .parse()
            .with_context(|| format!("wg dump listen port '{}'", head[2]))?,
        peers: Vec::new(),
    };
    for line in lines {
        let f: Vec<&str> = line.split('\t').collect();
        if f.len() != 8 {
            bail!("wg dump peer line has {} fields, not 8: {line}", f.len());
        }
        let num = |i: usize, what: &str| -> Result<u64> {
            f[i].parse()
                .with_context(|| format!("wg dump {what} '{}' in: {line}", f[i]))
        };
        let handshake = num(4, "latest handshake")?;
        show.peers.push(WgPeerState {
            public_key: f[0].to_string(),
            preshared_key: f[1] != "(none)",
            endpoint: match f[2] {
                "(none)" => None,
                e => Some(
                    e.parse()
                        .with_context(|| format!("wg dump endpoint '{e}'"))?,
                ),
            },
            allowed_ips: match f[3] {
                "(none)" => Vec::new(),
                a => a.split(',').map(str::to_string).collect(),
            },
            latest_handshake: (handshake > 0).then(|| UNIX_EPOCH + Duration::from_secs(handshake)),
            rx_bytes: num(5, "rx bytes")?,
            tx_bytes: num(6, "tx bytes")?,
            persistent_keepalive: match f[7] {
                "off" | "0" => None,
                k => Some(
                    k.parse()
                        .with_context(|| format!("wg dump keepalive '{k}'"))?,
                ),
            },
        });
    }
    Ok(show)
}

/// A wireguard-go instance: one interface in one namespace.
pub struct WgGo {
    pub ifname: String,
    pub public_key: String,
    pub listen_port: u16,
    pub dir: PathBuf,
    ns: String,
    proc: Option<Proc>,
}

impl WgGo {
    /// Starts `wireguard-go -f IFNAME` in `ns`, sets its private key and
    /// listen port, and puts `address_cidr` on the interface (link up).
    /// Files (key, log) go to `scratch_dir/wg-IFNAME/`.
    pub fn start(
        ns: &Netns,
        scratch_dir: &Path,
        ifname: &str,
        private_key: &str,
        listen_port: u16,
        address_cidr: &str,
    ) -> Result<WgGo> {
        if ifname.is_empty() || ifname.len() > 15 {
            bail!("wireguard interface name '{ifname}' must be 1-15 bytes");
        }
        let socket = uapi_socket(ifname);
        if socket.exists() {
            bail!(
                "{} exists: interface name '{ifname}' is in use in some namespace (UAPI sockets are shared); pick a unique name",
                socket.display()
            );
        }
        let dir = scratch_dir.join(format!("wg-{ifname}"));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let public_key = pubkey(private_key).context("wg pubkey of the private key")?;
        let key_file = dir.join("private.key");
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&key_file)
            .and_then(|mut f| writeln!(f, "{private_key}"))
            .with_context(|| format!("writing {}", key_file.display()))?;
        let log = dir.join("wireguard-go.log");
        let proc = ns.spawn(&["wireguard-go", "-f", ifname], &log)?;
        let mut wg = WgGo {
            ifname: ifname.to_string(),
            public_key,
            listen_port,
            dir,
            ns: ns.name.clone(),
            proc: Some(proc),
        };
        wg.wait_ready()?;
        wg.wg(&[
            "set",
            ifname,
            "listen-port",
            &listen_port.to_string(),
            "private-key",
            &key_file.display().to_string(),
        ])?;
        ns.addr(ifname, address_cidr)
            .with_context(|| format!("address {address_cidr} on {ifname} in {}", ns.name))?;
        Ok(wg)
    }

    /// Waits for the UAPI socket to answer `wg show IFNAME`.
    fn wait_ready(&mut self) -> Result<()> {
        let start = Instant::now();
        loop {
            if uapi_socket(&self.ifname).exists() && self.show().is_ok() {
                return Ok(());
            }
            if !pid_alive(self.pid()) {
                bail!(
                    "wireguard-go {} in {} exited during start:\n{}",
                    self.ifname,
                    self.ns,
                    self.log_text()
                );
            }
            if start.elapsed() > START_TIMEOUT {
                bail!(
                    "wireguard-go {} in {}: no UAPI socket after {START_TIMEOUT:?}:\n{}",
                    self.ifname,
                    self.ns,
                    self.log_text()
                );
            }
            std::thread::sleep(POLL);
        }
    }

    /// Runs `wg ARGS` inside the instance's namespace (with a time limit).
    pub fn wg(&self, args: &[&str]) -> Result<String> {
        let mut full = vec!["ip", "netns", "exec", &self.ns, "wg"];
        full.extend_from_slice(args);
        run(&full, None, WG_TIMEOUT)
            .with_context(|| format!("wireguard-go {} in {}", self.ifname, self.ns))
    }

    /// Adds (or updates) a peer: `wg set IFNAME peer PUB [endpoint E]
    /// [allowed-ips A,B] [persistent-keepalive N]`.
    pub fn add_peer(
        &self,
        public_key: &str,
        endpoint: Option<SocketAddr>,
        allowed_ips: &[&str],
        keepalive: Option<u16>,
    ) -> Result<()> {
        let endpoint = endpoint.map(|e| e.to_string());
        let allowed = allowed_ips.join(",");
        let keepalive = keepalive.map(|k| k.to_string());
        let mut args = vec!["set", &self.ifname, "peer", public_key];
        if let Some(e) = &endpoint {
            args.extend(["endpoint", e.as_str()]);
        }
        if !allowed.is_empty() {
            args.extend(["allowed-ips", allowed.as_str()]);
        }
        if let Some(k) = &keepalive {
            args.extend(["persistent-keepalive", k.as_str()]);
        }
        self.wg(&args).map(|_| ())
    }

    /// Removes a peer and with it every session and counter it had.
    pub fn remove_peer(&self, public_key: &str) -> Result<()> {
        self.wg(&["set", &self.ifname, "peer", public_key, "remove"])
            .map(|_| ())
    }

    /// `wg show IFNAME dump`, parsed.
    pub fn show(&self) -> Result<WgShow> {
        parse_dump(&self.wg(&["show", &self.ifname, "dump"])?)
            .with_context(|| format!("wg show {} dump", self.ifname))
    }

    /// Waits until some peer has completed a handshake; returns it.
    pub fn wait_handshake(&self, timeout: Duration) -> Result<WgPeerState> {
        self.wait_peer(timeout, "a handshake with any peer", |s| {
            s.peers
                .iter()
                .find(|p| p.latest_handshake.is_some())
                .cloned()
        })
    }

    /// Waits until `public_key`'s latest handshake is later than `after`
    /// (any handshake when None). wg reports whole seconds.
    pub fn wait_peer_handshake(
        &self,
        public_key: &str,
        after: Option<SystemTime>,
        timeout: Duration,
    ) -> Result<WgPeerState> {
        self.wait_peer(
            timeout,
            &format!("a handshake with {public_key} after {after:?}"),
            |s| {
                s.peer(public_key)
                    .filter(|p| match (p.latest_handshake, after) {
                        (Some(t), Some(a)) => t > a,
                        (Some(_), None) => true,
                        (None, _) => false,
                    })
                    .cloned()
            },
        )
    }

    /// Polls `show` until `found` returns a peer or `timeout` passes.
    pub fn wait_peer(
        &self,
        timeout: Duration,
        what: &str,
        found: impl Fn(&WgShow) -> Option<WgPeerState>,
    ) -> Result<WgPeerState> {
        let start = Instant::now();
        let mut last: String;
        loop {
            match self.show() {
                Ok(s) => {
                    if let Some(p) = found(&s) {
                        return Ok(p);
                    }
                    last = format!("{s:?}");
                }
                Err(e) => last = format!("error: {e:#}"),
            }
            if start.elapsed() > timeout {
                bail!(
                    "wireguard-go {} in {}: no {what} within {timeout:?}; last wg show: {last}\nlog:\n{}",
                    self.ifname,
                    self.ns,
                    self.log_text()
                );
            }
            std::thread::sleep(POLL);
        }
    }

    pub fn pid(&self) -> u32 {
        self.proc.as_ref().map(|p| p.pid()).unwrap_or(0)
    }

    pub fn log_text(&self) -> String {
        self.proc.as_ref().map(|p| p.log_text()).unwrap_or_default()
    }
}

impl Drop for WgGo {
    fn drop(&mut self) {
        // SIGTERM by PID (then SIGKILL): wireguard-go removes its interface
        // and socket on a clean exit.
        drop(self.proc.take());
        let socket = uapi_socket(&self.ifname);
        if socket.exists() {
            let _ = std::fs::remove_file(&socket);
        }
        if std::env::var_os("CER_KEEP_SCRATCH").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn uapi_socket(ifname: &str) -> PathBuf {
    Path::new(UAPI_DIR).join(format!("{ifname}.sock"))
}

/// Binds a UDP socket inside `ns` (the socket stays in that namespace
/// wherever it is used): a short-lived thread enters the namespace, binds
/// and hands the socket back; the test's own threads never switch.
pub fn bind_udp_in(ns: &Netns, addr: SocketAddr) -> Result<std::net::UdpSocket> {
    let path = Path::new("/var/run/netns").join(&ns.name);
    std::thread::scope(|s| {
        s.spawn(|| -> Result<std::net::UdpSocket> {
            use std::os::fd::AsRawFd;
            let f = std::fs::File::open(&path)
                .with_context(|| format!("opening {}", path.display()))?;
            // SAFETY: setns(2) on an open namespace file; it changes only the
            // network namespace of this short-lived thread.
            let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
            if rc != 0 {
                bail!(
                    "setns into {}: {}",
                    ns.name,
                    std::io::Error::last_os_error()
                );
            }
            std::net::UdpSocket::bind(addr)
                .with_context(|| format!("binding udp {addr} in {}", ns.name))
        })
        .join()
        .map_err(|_| anyhow!("thread binding udp {addr} in {} panicked", ns.name))?
    })
}
