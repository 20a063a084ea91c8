//! A reload applied to the running state: the file read again, the plan
//! made (`control::reload`, nothing applied when it refuses), then each
//! change through the same paths the rest of the state uses. No session is
//! reset: policies reach existing routes by re-evaluation or ROUTE-REFRESH.

use super::ControlState;
use crate::control::config::ControlConfig;
use crate::control::reload;
use cer_bgp::route::{Ipv4Prefix, Prefix};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Instant;

impl ControlState {
    /// `cerctl reload` and SIGHUP: what changed, or why nothing did.
    pub(super) fn reload(&mut self) -> Result<Value, String> {
        let path = self
            .config_path
            .clone()
            .ok_or("cer-control was started without a configuration file")?;
        let new = ControlConfig::load(&path)
            .map_err(|e| format!("reload refused, nothing applied: {e}"))?;
        let plan = reload::plan(&self.cfg, &new).map_err(|r| r.to_string())?;
        if plan.pool_changed {
            // This node's endpoints (config and `cerctl endpoint add`) must
            // stay inside the pool, as at start.
            let outside: Vec<String> = self
                .endpoints
                .iter()
                .filter(|e| !new.sam.pool.iter().any(|p| p.contains(e.ip)))
                .map(|e| e.ip.to_string())
                .collect();
            if !outside.is_empty() {
                return Err(format!(
                    "reload refused, nothing applied: sam.pool: this node's endpoint(s) {} would be outside the new pool (cerctl endpoint remove them first)",
                    outside.join(", ")
                ));
            }
        }
        let old_pool = self.cfg.sam.pool.clone();
        let mut applied: Vec<Value> = Vec::new();
        // Removed neighbors go first, while the old configuration names them.
        for name in &plan.removed {
            if let Some(id) = self.speaker.find_peer(name) {
                let changed = self.speaker.remove_neighbor(id);
                self.after(changed);
            }
            applied
                .push(json!({"neighbor": name, "change": "removed (Cease, peer de-configured)"}));
        }
        let old_networks: BTreeSet<Ipv4Prefix> = self.cfg.bgp.networks.iter().copied().collect();
        self.cfg = new;
        // Unnumbered neighbors are indexes into the neighbor list: follow it.
        for i in self.unnumbered.ifaces.iter_mut() {
            if let Some(k) = self
                .cfg
                .bgp
                .neighbors
                .iter()
                .position(|n| n.interface.as_deref() == Some(i.name.as_str()))
            {
                i.neighbor = k;
            }
        }
        for (i, n) in self.cfg.bgp.neighbors.clone().iter().enumerate() {
            let name = n.name();
            let id = self.speaker.find_peer(&name);
            if plan.added.contains(&name) {
                if let Some(address) = n.address {
                    let remote = SocketAddr::new(address, n.port.unwrap_or(179));
                    let cfg = self.neighbor_config(i, remote, None);
                    self.speaker.add_neighbor(cfg);
                }
                applied.push(json!({"neighbor": name, "change": "added"}));
                continue;
            }
            let Some(id) = id else { continue };
            if plan.import_changed.contains(&name) {
                let policy = self.cfg.policy(&n.import_policy).cloned();
                let (how, changed) = self.speaker.set_import_policy(id, policy);
                self.after(changed);
                applied.push(json!({
                    "neighbor": name,
                    "change": format!("import policy {}: {}", n.import_policy.as_deref().unwrap_or("(none)"), how.describe()),
                }));
            }
            if plan.export_changed.contains(&name) {
                let policy = self.cfg.policy(&n.export_policy).cloned();
                self.speaker.set_export(id, policy, n.next_hop_self);
                applied.push(json!({
                    "neighbor": name,
                    "change": format!("export policy {} (next_hop_self {}): its update group's view re-sent as a difference", n.export_policy.as_deref().unwrap_or("(none)"), n.next_hop_self),
                }));
            }
            if plan.keep_received_changed.contains(&name) {
                self.speaker.set_keep_received(id, n.keep_received);
                applied.push(json!({"neighbor": name, "change": format!("keep_received = {}", n.keep_received)}));
            }
            if plan.description_changed.contains(&name) {
                self.speaker.set_description(id, n.description.clone());
                applied.push(json!({"neighbor": name, "change": "description"}));
            }
        }
        if plan.networks_changed {
            let new_networks: BTreeSet<Ipv4Prefix> =
                self.cfg.bgp.networks.iter().copied().collect();
            for net in old_networks.difference(&new_networks) {
                let changed = self.speaker.withdraw_local(Prefix::V4(*net));
                self.after(changed);
            }
            for net in new_networks.difference(&old_networks) {
                let a = self.local_attrs(self.cfg.sam.local_pref);
                let changed = self.speaker.originate(Prefix::V4(*net), a);
                self.after(changed);
            }
            applied.push(json!({"change": "bgp.networks"}));
        }
        if plan.tunnels_changed {
            // Every owner's FIB entry again, with the new tunnel map.
            let owned: Vec<Ipv4Prefix> = self.sam.owners().map(|o| o.prefix).collect();
            let now = Instant::now();
            for p in owned {
                self.fib_for(p, now);
            }
            applied.push(json!({"change": "tunnels: every owner's FIB entry re-derived"}));
        }
        if plan.pool_changed {
            // Every /32 the old or the new pool covers is decided again
            // (endpoint or not, its owner, its FIB entry and underlay route).
            self.sam.pool = self.cfg.sam.pool.clone();
            let covered = |p: &Ipv4Prefix| {
                old_pool
                    .iter()
                    .chain(self.cfg.sam.pool.iter())
                    .any(|pool| pool.contains(p.addr()) || p.contains(pool.addr()))
            };
            let mut affected: BTreeSet<Ipv4Prefix> = self
                .speaker
                .rib()
                .iter_best()
                .filter_map(|(p, _)| match p {
                    Prefix::V4(p) if covered(p) => Some(*p),
                    _ => None,
                })
                .collect();
            affected.extend(self.sam.owners().map(|o| o.prefix));
            let n = affected.len();
            self.after(affected.into_iter().map(Prefix::V4).collect());
            applied.push(json!({"change": format!("sam.pool: {n} prefix(es) decided again")}));
        }
        if plan.pool_changed || plan.reconciler_changed {
            if let Some(r) = &self.reconciler {
                r.retune(crate::control::capture::reconciler_config(&self.cfg));
                applied.push(json!({"change": "capture reconciler retuned (concurrency, timeouts, resync, pool, pair NICs)"}));
            } else if plan.reconciler_changed {
                applied.push(
                    json!({"change": "capture.reconciler (no cloud reconciler runs on this node)"}),
                );
            }
        }
        if plan.local_pref_changed {
            applied.push(json!({"change": "sam.local_pref (endpoints added from now on)"}));
        }
        log::info!(
            "reload of {}: {}",
            path.display(),
            if applied.is_empty() {
                "no change".to_string()
            } else {
                serde_json::to_string(&applied).unwrap_or_default()
            }
        );
        Ok(json!({
            "file": path.display().to_string(),
            "changed": !applied.is_empty(),
            "applied": applied,
        }))
    }
}
