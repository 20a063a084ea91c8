//! A node-file reload applied by the manager: the file read and validated
//! again, the plan made (`crate::reload`, nothing applied when it refuses),
//! then the changes put into the FIB and published as one new snapshot.
//! The cores switch to it at their next burst, as for any feed change: no
//! port, queue, core or feed session is touched, and the feed's endpoints,
//! routes and neighbors stay as they are.

use super::Manager;
use crate::fib::Fib;
use crate::snapshot::EndpointAction;
use cer_shared::config::NodeConfig;
use serde_json::{json, Value};
use std::time::Duration;

impl Manager {
    /// Reloads the node file; `by` names who asked (`cerctl`, `SIGHUP`).
    /// The answer lists what changed, or says why nothing did.
    pub(super) fn reload(&mut self, by: &str) -> Result<Value, String> {
        let result = self.reload_inner();
        match &result {
            Ok(v) => log::info!("reload ({by}): {v}"),
            Err(e) => log::error!("reload ({by}): {e}"),
        }
        result
    }

    fn reload_inner(&mut self) -> Result<Value, String> {
        let Some((path, running)) = self.config.as_ref() else {
            return Err("this dataplane was started without a node file to reload".into());
        };
        let path = path.clone();
        let new =
            NodeConfig::load(&path).map_err(|e| format!("reload refused, nothing applied: {e}"))?;
        let plan = crate::reload::plan(running, &new).map_err(|r| r.to_string())?;
        let mut notes: Vec<String> = Vec::new();
        if plan.routes {
            self.fib.set_config_routes(Fib::config_routes(&new));
            let unreachable: Vec<String> = new
                .routes
                .iter()
                .filter(|r| r.via.iter().all(|gw| new.port_for_gateway(*gw).is_none()))
                .map(|r| r.prefix.to_string())
                .collect();
            if !unreachable.is_empty() {
                notes.push(format!(
                    "routes with no gateway on a port's subnet (not forwarded): {}",
                    unreachable.join(", ")
                ));
            }
        }
        if !plan.tunnels.is_empty() {
            self.fib
                .set_tunnels(crate::tunnel::TunnelTable::from_config(&new));
            // Endpoints the feed points at a tunnel that is gone: their
            // packets are dropped (counted) until the controller moves them.
            let orphans = self
                .fib
                .feed
                .endpoints
                .values()
                .filter(|a| match a {
                    EndpointAction::Tunnel { tunnel } => {
                        plan.tunnels.contains(tunnel)
                            && !new.tunnels.iter().any(|t| t.id == *tunnel)
                    }
                    _ => false,
                })
                .count();
            if orphans > 0 {
                notes.push(format!(
                    "{orphans} fed endpoint(s) point at a removed tunnel: dropped as tunnel_not_configured until the controller moves them"
                ));
            }
        }
        for (port, on) in &plan.proxy_arp {
            self.fib.set_proxy_arp(*port, *on);
        }
        if plan.arp_timers {
            self.fib.reachable = Duration::from_secs(u64::from(new.dataplane.arp_reachable_secs));
            self.fib.stale_gc = Duration::from_secs(u64::from(new.dataplane.arp_stale_secs));
        }
        self.config = Some((path.clone(), new));
        let before = self.fib.version();
        self.publish();
        Ok(json!({
            "file": path.display().to_string(),
            "changed": !plan.is_empty(),
            "applied": plan.changes,
            "notes": notes,
            "snapshot_generation": if self.fib.version() != before { Some(self.fib.version()) } else { None },
        }))
    }
}
