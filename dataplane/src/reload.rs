//! Reloading the node file (`cerctl dataplane reload`, SIGHUP): what changed
//! between the running config and the file, and whether all of it can be
//! applied without a restart. Pure: the manager applies a `ReloadPlan`
//! (`Manager::reload`); a change that needs a restart refuses the whole
//! reload, every such field named (`Refusal`), and nothing is applied.
//!
//! Applied live, because they only change what the manager publishes in the
//! next snapshot: static routes (`[[route]]`), tunnels other than WireGuard
//! (`[[tunnel]]`: added, removed, or any field changed), each port's
//! `proxy_arp`, and the ARP timers `dataplane.arp_reachable_secs` /
//! `arp_stale_secs`. Everything else is read once at start (ports and their
//! queues, cores, EAL and memory, sockets, metrics) and needs a restart.
//! WireGuard tunnels need one too: their peer state (keys, sessions, rate
//! limiter) lives on the polling core that owns the tunnel, created at start.
//!
//! The comparison is on the configs' serialized form, so a field added to
//! the config later is covered without touching this file: it is a restart
//! field unless listed as live here.

use cer_shared::config::{NodeConfig, TunnelKind};
use serde_json::Value;
use std::collections::BTreeSet;

/// What a reload changes; applied at once by the manager.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReloadPlan {
    /// The static routes differ (the set is replaced as a whole).
    pub routes: bool,
    /// Tunnel ids added, removed or changed (the tunnel table is replaced).
    pub tunnels: BTreeSet<u32>,
    /// Ports (config index) whose `proxy_arp` changed, with the new value.
    pub proxy_arp: Vec<(usize, bool)>,
    /// The ARP timers changed.
    pub arp_timers: bool,
    /// One line per change, for the operator (`routes: 2 -> 3`, ...).
    pub changes: Vec<String>,
}

impl ReloadPlan {
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }
}

/// Fields whose change needs a restart of cer-dataplane; none was applied.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Refusal {
    pub needs_restart: Vec<String>,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "reload refused, nothing applied: needs a restart of cer-dataplane: {}",
            self.needs_restart.join(", ")
        )
    }
}

/// Compares the running config with the new one.
pub fn plan(old: &NodeConfig, new: &NodeConfig) -> Result<ReloadPlan, Refusal> {
    let mut p = ReloadPlan::default();
    let mut restart: Vec<String> = Vec::new();
    let (o, n) = (to_value(old), to_value(new));

    // Sections other than ports, routes and tunnels (serialized as `port`,
    // `route`, `tunnel`): leaf by leaf, whatever sections the config has.
    let sections: BTreeSet<String> = o
        .as_object()
        .into_iter()
        .chain(n.as_object())
        .flat_map(|m| m.keys().cloned())
        .filter(|k| !["port", "route", "tunnel"].contains(&k.as_str()))
        .collect();
    for section in &sections {
        let section = section.as_str();
        let mut diffs = Vec::new();
        diff(section, &o[section], &n[section], &mut diffs);
        for path in diffs {
            match path.as_str() {
                "dataplane.arp_reachable_secs" | "dataplane.arp_stale_secs" => {
                    p.arp_timers = true;
                    p.changes.push(format!(
                        "{path}: {} -> {}",
                        lookup(&o, &path),
                        lookup(&n, &path)
                    ));
                }
                _ => restart.push(path),
            }
        }
    }

    // Ports: matched by position (a port's index is its identity on the
    // cores); a different name at a position is an added/removed port.
    let names = |c: &NodeConfig| c.ports.iter().map(|p| p.name.clone()).collect::<Vec<_>>();
    if names(old) != names(new) {
        restart.push(format!(
            "port (added, removed or renamed: [{}] -> [{}])",
            names(old).join(", "),
            names(new).join(", ")
        ));
    } else {
        for (i, (op, np)) in old.ports.iter().zip(&new.ports).enumerate() {
            let mut diffs = Vec::new();
            let at = format!("port[{}]", op.name);
            diff(&at, &to_value(op), &to_value(np), &mut diffs);
            for path in diffs {
                if path == format!("{at}.proxy_arp") {
                    p.proxy_arp.push((i, np.proxy_arp));
                    p.changes
                        .push(format!("{path}: {} -> {}", op.proxy_arp, np.proxy_arp));
                } else {
                    restart.push(path);
                }
            }
        }
    }

    // Static routes: replaced as a whole.
    if o["route"] != n["route"] {
        p.routes = true;
        let (before, after) = (route_set(old), route_set(new));
        let added = after.difference(&before).count();
        let removed = before.difference(&after).count();
        p.changes.push(format!(
            "route: {} -> {} static routes ({added} added or changed, {removed} removed or changed)",
            old.routes.len(),
            new.routes.len()
        ));
    }

    // Tunnels, by id.
    let ids: BTreeSet<u32> = old
        .tunnels
        .iter()
        .chain(&new.tunnels)
        .map(|t| t.id)
        .collect();
    for id in ids {
        let ot = old.tunnels.iter().find(|t| t.id == id);
        let nt = new.tunnels.iter().find(|t| t.id == id);
        let what = match (ot, nt) {
            (None, Some(_)) => "added",
            (Some(_), None) => "removed",
            (Some(a), Some(b)) if to_value(a) != to_value(b) => "changed",
            _ => continue,
        };
        let wireguard = ot
            .into_iter()
            .chain(nt)
            .any(|t| t.kind == TunnelKind::Wireguard);
        if wireguard {
            restart.push(format!("tunnel[{id}] (wireguard, {what})"));
        } else {
            p.tunnels.insert(id);
            let kind = nt
                .or(ot)
                .and_then(|t| to_value(&t.kind).as_str().map(str::to_string))
                .unwrap_or_default();
            p.changes.push(format!("tunnel[{id}] ({kind}) {what}"));
        }
    }

    if restart.is_empty() {
        Ok(p)
    } else {
        Err(Refusal {
            needs_restart: restart,
        })
    }
}

fn to_value<T: serde::Serialize>(v: &T) -> Value {
    // The config types are plain data: serializing them cannot fail.
    serde_json::to_value(v).unwrap_or(Value::Null)
}

/// Every leaf path where `a` and `b` differ (arrays compared whole).
fn diff(path: &str, a: &Value, b: &Value, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                let null = Value::Null;
                diff(
                    &format!("{path}.{k}"),
                    x.get(k).unwrap_or(&null),
                    y.get(k).unwrap_or(&null),
                    out,
                );
            }
        }
        _ if a != b => out.push(path.to_string()),
        _ => {}
    }
}

/// The value at a dotted path, for messages (numbers and strings only).
fn lookup(v: &Value, path: &str) -> String {
    let mut cur = v;
    for k in path.split('.') {
        cur = &cur[k];
    }
    cur.to_string()
}

fn route_set(c: &NodeConfig) -> BTreeSet<String> {
    c.routes.iter().map(|r| to_value(r).to_string()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
[node]
name = "t"
router_address = "10.0.0.1"

[dataplane]
cores = [1]
arp_reachable_secs = 30

[[port]]
name = "lan"
driver = "af_packet"
iface = "veth0"
address = "10.1.0.1/24"
proxy_arp = true

[[port]]
name = "wan"
driver = "af_packet"
iface = "veth1"
address = "10.2.0.1/24"

[[route]]
prefix = "10.9.0.0/16"
via = ["10.2.0.254"]

[[tunnel]]
id = 1
kind = "gre"
local = "10.2.0.1"
remote = "10.2.0.9"

[[tunnel]]
id = 2
kind = "wireguard"
local = "10.2.0.1"
remote = "10.2.0.8"
private_key = "aGVsbG8gd29ybGQgaGVsbG8gd29ybGQgaGVsbG8gd28="
peer_public_key = "aGVsbG8gd29ybGQgaGVsbG8gd29ybGQgaGVsbG8gd28="
"#;

    fn cfg(text: &str) -> NodeConfig {
        NodeConfig::parse(text, std::path::Path::new("node.toml"))
            .unwrap_or_else(|e| panic!("{e}\n{text}"))
    }

    /// BASE with each `(from, to)` replaced once.
    fn edited(edits: &[(&str, &str)]) -> NodeConfig {
        let mut text = BASE.to_string();
        for (from, to) in edits {
            assert!(text.contains(from), "{from}");
            text = text.replacen(from, to, 1);
        }
        cfg(&text)
    }

    fn with(from: &str, to: &str) -> NodeConfig {
        edited(&[(from, to)])
    }

    #[test]
    fn the_same_file_changes_nothing() {
        let p = plan(&cfg(BASE), &cfg(BASE)).unwrap();
        assert!(p.is_empty(), "{p:?}");
    }

    #[test]
    fn routes_tunnels_proxy_arp_and_timers_are_live() {
        let old = cfg(BASE);
        let new = edited(&[
            (
                "[[tunnel]]\nid = 1",
                "[[route]]\nprefix = \"10.8.0.0/16\"\nvia = [\"10.2.0.253\"]\n\n\
                 [[tunnel]]\nid = 3\nkind = \"ipip\"\nlocal = \"10.2.0.1\"\nremote = \"10.2.0.7\"\n\n\
                 [[tunnel]]\nid = 1",
            ),
            ("proxy_arp = true", "proxy_arp = false"),
            ("arp_reachable_secs = 30", "arp_reachable_secs = 60"),
        ]);
        let p = plan(&old, &new).unwrap();
        assert!(p.routes);
        assert_eq!(p.tunnels, BTreeSet::from([3]));
        assert_eq!(p.proxy_arp, vec![(0, false)]);
        assert!(p.arp_timers);
        assert_eq!(p.changes.len(), 4, "{:?}", p.changes);
        assert!(p.changes.iter().any(|c| c == "tunnel[3] (ipip) added"));
        assert!(p
            .changes
            .iter()
            .any(|c| c.starts_with("route: 1 -> 2 static routes")));
    }

    #[test]
    fn a_changed_or_removed_tunnel_is_live() {
        let p = plan(
            &cfg(BASE),
            &with("remote = \"10.2.0.9\"", "remote = \"10.2.0.9\"\nmtu = 1300"),
        )
        .unwrap();
        assert_eq!(p.tunnels, BTreeSet::from([1]));
        assert_eq!(p.changes, vec!["tunnel[1] (gre) changed".to_string()]);
        let gone = with(
            "[[tunnel]]\nid = 1\nkind = \"gre\"",
            "[[tunnel]]\nid = 4\nkind = \"gre\"",
        );
        let p = plan(&cfg(BASE), &gone).unwrap();
        assert_eq!(p.tunnels, BTreeSet::from([1, 4]));
    }

    #[test]
    fn restart_fields_refuse_the_reload_by_name() {
        for (from, to, field) in [
            ("cores = [1]", "cores = [1, 2]", "dataplane.cores"),
            (
                "address = \"10.1.0.1/24\"",
                "address = \"10.1.0.2/24\"",
                "port[lan].address",
            ),
            (
                "iface = \"veth0\"",
                "iface = \"veth0\"\nmtu = 9000",
                "port[lan].mtu",
            ),
            ("name = \"t\"", "name = \"u\"", "node.name"),
            (
                "[dataplane]",
                "[metrics]\nlisten = \"127.0.0.1:9999\"\n[dataplane]",
                "metrics.listen",
            ),
            (
                "remote = \"10.2.0.8\"",
                "remote = \"10.2.0.6\"",
                "tunnel[2] (wireguard, changed)",
            ),
        ] {
            let e = plan(&cfg(BASE), &with(from, to)).unwrap_err();
            assert_eq!(e.needs_restart, vec![field.to_string()], "{to}");
            assert!(e.to_string().contains(field), "{e}");
        }
        // A port added: named with both lists.
        let e = plan(
            &cfg(BASE),
            &cfg(&format!(
                "{BASE}\n[[port]]\nname = \"x\"\ndriver = \"af_packet\"\niface = \"v2\"\naddress = \"10.3.0.1/24\"\n"
            )),
        )
        .unwrap_err();
        assert!(
            e.needs_restart[0].contains("[lan, wan] -> [lan, wan, x]"),
            "{e}"
        );
    }

    #[test]
    fn a_refusal_names_every_field_and_keeps_live_ones_out() {
        let new = edited(&[
            ("cores = [1]", "cores = [2]"),
            ("proxy_arp = true", "proxy_arp = false"),
            ("10.2.0.254", "10.2.0.253"),
            ("10.2.0.8", "10.2.0.5"),
        ]);
        let e = plan(&cfg(BASE), &new).unwrap_err();
        assert_eq!(
            e.needs_restart,
            vec![
                "dataplane.cores".to_string(),
                "tunnel[2] (wireguard, changed)".to_string()
            ]
        );
    }
}
