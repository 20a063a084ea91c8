//! The real `cer-dataplane` in a test's namespace: [`start_dataplane`] with a
//! config file, and [`FeedTarget`], a one-port dataplane for tests that need
//! a real FIB consumer behind cer-control.

use crate::config::{DataplaneConfig, Port, Tunnel};
use crate::{admin, bin, tag, Netns, Proc};
use anyhow::Result;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Starts the real `cer-dataplane` in `ns` with the config file `cfg`
/// (output to `log`) and waits until it reports ready.
pub fn start_dataplane(ns: &Netns, cfg: &Path, log: &Path) -> Result<Proc> {
    let mut p = ns.spawn(
        &[
            bin("cer-dataplane").to_str().unwrap(),
            "--config",
            cfg.to_str().unwrap(),
        ],
        log,
    )?;
    p.wait_for_log("cer-dataplane: ready", Duration::from_secs(20))?;
    Ok(p)
}

/// A cer-dataplane with one LAN port (`dplan`, on a veth pair inside `ns`),
/// for tests that need a real FIB consumer: its admin and feed sockets.
pub struct FeedTarget {
    pub proc: Proc,
    pub admin: PathBuf,
    pub feed: PathBuf,
}

impl FeedTarget {
    pub fn start(ns: &Netns, dir: &Path, lan_cidr: &str) -> Result<FeedTarget> {
        Self::start_with_tunnels(ns, dir, lan_cidr, Vec::new())
    }

    /// `start`, with these tunnels configured (sourced from the router
    /// address, their remotes routed via `.254` on the LAN, which nobody
    /// answers: what enters them goes no further).
    pub fn start_with_tunnels(
        ns: &Netns,
        dir: &Path,
        lan_cidr: &str,
        tunnels: Vec<Tunnel>,
    ) -> Result<FeedTarget> {
        ns.run(&[
            "ip", "link", "add", "dplan", "type", "veth", "peer", "name", "dphost",
        ])?;
        ns.run(&["ip", "link", "set", "dplan", "up"])?;
        ns.run(&["ip", "link", "set", "dphost", "up"])?;
        let admin = dir.join("dp-admin.sock");
        let feed = dir.join("dp-feed.sock");
        let router = lan_cidr.split('/').next().unwrap_or(lan_cidr);
        let mut cfg = DataplaneConfig::new("feedtarget", router)
            .admin_socket(&admin)
            .feed_socket(&feed)
            .file_prefix(&format!("ft{}", tag()))
            .port(Port::af_packet("lan", "dplan", lan_cidr));
        if !tunnels.is_empty() {
            let net = router.rsplit_once('.').map(|(n, _)| n).unwrap_or(router);
            let gw = format!("{net}.254");
            for t in tunnels {
                let remote = format!("{}/32", t.remote());
                cfg = cfg.route(&remote, &[&gw]).tunnel(t);
            }
        }
        let cfg = cfg.write(&dir.join("dp.toml"))?;
        let proc = start_dataplane(ns, &cfg, &dir.join("dp.log"))?;
        Ok(FeedTarget { proc, admin, feed })
    }

    /// The dataplane's `/32` endpoints as `(ip, action)` pairs.
    pub fn endpoints(&self) -> Vec<(String, String)> {
        admin(&self.admin, "fib")
            .map(|f| {
                f["endpoints"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|e| {
                        (
                            e["ip"].as_str().unwrap_or("").to_string(),
                            e["action"].as_str().unwrap_or("").to_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn has(&self, ip: &str, action: &str) -> bool {
        self.endpoints().iter().any(|(i, a)| i == ip && a == action)
    }
}
