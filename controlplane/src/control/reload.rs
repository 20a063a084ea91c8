//! `cerctl reload` / SIGHUP: the difference between the running
//! configuration and a newly read one, decided before anything is applied.
//! A change that a running process can take (neighbors added or removed,
//! import/export policy, next-hop-self, description, keep_received,
//! networks, tunnels, the default endpoint LOCAL_PREF) becomes a
//! `ReloadPlan`; a change that needs a session reset or a process restart
//! refuses the whole reload, every such field named (`Refusal`). Pure: the
//! control state applies a plan (`ControlState::reload`).

use super::config::{Bgp, Capture, ControlConfig, Neighbor, Node, Sam};
use cer_bgp::policy::Policy;
use serde::Serialize;
use std::fmt::Debug;

/// What a reload changes, neighbor by neighbor and table by table.
#[derive(Debug, Default, Clone, PartialEq, Serialize)]
pub struct ReloadPlan {
    /// Neighbors (by address or interface) to add.
    pub added: Vec<String>,
    pub removed: Vec<String>,
    /// Neighbors whose import policy changed (its name or its terms).
    pub import_changed: Vec<String>,
    /// Neighbors whose export policy or next-hop-self changed.
    pub export_changed: Vec<String>,
    /// Neighbors whose keep_received changed.
    pub keep_received_changed: Vec<String>,
    pub description_changed: Vec<String>,
    pub networks_changed: bool,
    pub tunnels_changed: bool,
    pub local_pref_changed: bool,
    /// `sam.pool` changed: which /32s are endpoints is decided again.
    pub pool_changed: bool,
    /// `capture.reconciler` or `capture.pair_nics` changed: the cloud
    /// reconciler is retuned.
    pub reconciler_changed: bool,
}

impl ReloadPlan {
    pub fn is_empty(&self) -> bool {
        *self == ReloadPlan::default()
    }
}

/// Why a reload was refused: the fields whose change needs a session
/// reset (per neighbor) or a restart of cer-control.
#[derive(Debug, Default, Clone, PartialEq, Serialize)]
pub struct Refusal {
    pub needs_session_reset: Vec<String>,
    pub needs_restart: Vec<String>,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "reload refused, nothing applied:")?;
        if !self.needs_session_reset.is_empty() {
            write!(
                f,
                " needs a session reset (remove the neighbor in one reload, add it back in another): {};",
                self.needs_session_reset.join(", ")
            )?;
        }
        if !self.needs_restart.is_empty() {
            write!(
                f,
                " needs a restart of cer-control: {}",
                self.needs_restart.join(", ")
            )?;
        }
        Ok(())
    }
}

/// Equal by their printed form: the configuration types are plain data.
fn same<T: Debug>(a: &T, b: &T) -> bool {
    format!("{a:?}") == format!("{b:?}")
}

/// Names every field of the configuration, without `..`: a field added to one
/// of these structs does not compile here until its author has decided, in
/// `plan` below, whether a change to it is live, needs a session reset or
/// needs a restart. So a reload never ignores a field silently (the
/// dataplane's node-file reload gets the same from its serialized diff).
/// `[[policy]]`, `[[tunnel]]`, `[dataplane]`, `[admin]` and `[metrics]` are
/// compared whole.
fn every_field_is_classified(c: &ControlConfig) {
    let ControlConfig {
        node,
        bgp,
        policies: _,
        sam,
        tunnels: _,
        dataplane: _,
        admin: _,
        capture,
        metrics: _,
    } = c;
    let Node {
        name: _,
        router_id: _,
        asn: _,
        transport_address: _,
    } = node;
    let Bgp {
        listen: _,
        hold_time: _,
        connect_retry_secs: _,
        graceful_restart_secs: _,
        route_reflector: _,
        cluster_id: _,
        always_compare_med: _,
        networks: _,
        maximum_paths: _,
        neighbors,
    } = bgp;
    for n in neighbors {
        // Live: description, next_hop_self, import/export policy,
        // keep_received; session reset: `session_fields`; the name
        // (address or interface) is the neighbor's key.
        let Neighbor {
            address: _,
            interface: _,
            dataplane_port: _,
            ra_timeout_secs: _,
            remote_as: _,
            description: _,
            passive: _,
            local_address: _,
            rr_client: _,
            next_hop_self: _,
            import_policy: _,
            export_policy: _,
            port: _,
            bfd: _,
            bfd_min_tx_ms: _,
            bfd_min_rx_ms: _,
            bfd_multiplier: _,
            bfd_multihop: _,
            bfd_key: _,
            bfd_key_id: _,
            add_path: _,
            password: _,
            ttl_security: _,
            keep_received: _,
        } = n;
    }
    let Sam {
        identity: _,
        site_identities: _,
        marker_community: _,
        marker_prefix: _,
        pool: _,
        local_pref: _,
        state_file: _,
        endpoints: _,
    } = sam;
    let Capture {
        mode: _,
        vrrp_notify_fifo: _,
        vrrp_instance: _,
        keepalived_pid_file: _,
        keepalived_json_file: _,
        single_router: _,
        garp_count: _,
        vrrp_stall_settle_ms: _,
        vrrp_track_file: _,
        pair_preference: _,
        pair_nics: _,
        aws: _,
        azure: _,
        oci: _,
        reconciler: _,
    } = capture;
}

/// The plan that turns `old` into `new`, or every field that cannot change
/// in a running process.
pub fn plan(old: &ControlConfig, new: &ControlConfig) -> Result<ReloadPlan, Refusal> {
    every_field_is_classified(new);
    let mut refuse = Refusal::default();
    let mut restart = |field: &str, changed: bool| {
        if changed {
            refuse.needs_restart.push(field.to_string());
        }
    };
    restart("node.name", old.node.name != new.node.name);
    restart("node.router_id", old.node.router_id != new.node.router_id);
    restart("node.asn", old.node.asn != new.node.asn);
    restart(
        "node.transport_address",
        old.node.transport_address != new.node.transport_address,
    );
    let (ob, nb) = (&old.bgp, &new.bgp);
    restart("bgp.listen", ob.listen != nb.listen);
    restart("bgp.hold_time", ob.hold_time != nb.hold_time);
    restart(
        "bgp.connect_retry_secs",
        ob.connect_retry_secs != nb.connect_retry_secs,
    );
    restart(
        "bgp.graceful_restart_secs",
        ob.graceful_restart_secs != nb.graceful_restart_secs,
    );
    restart(
        "bgp.route_reflector",
        ob.route_reflector != nb.route_reflector,
    );
    restart("bgp.cluster_id", ob.cluster_id != nb.cluster_id);
    restart(
        "bgp.always_compare_med",
        ob.always_compare_med != nb.always_compare_med,
    );
    restart("bgp.maximum_paths", ob.maximum_paths != nb.maximum_paths);
    let (os, ns) = (&old.sam, &new.sam);
    restart("sam.identity", os.identity != ns.identity);
    restart(
        "sam.site_identities",
        os.site_identities != ns.site_identities,
    );
    restart(
        "sam.marker_community",
        os.marker_community != ns.marker_community,
    );
    restart("sam.marker_prefix", os.marker_prefix != ns.marker_prefix);
    restart("sam.state_file", os.state_file != ns.state_file);
    restart(
        "sam.endpoints (once running, endpoints change with cerctl endpoint add/remove)",
        os.endpoints != ns.endpoints,
    );
    restart("dataplane", !same(&old.dataplane, &new.dataplane));
    restart("admin", !same(&old.admin, &new.admin));
    restart("metrics", !same(&old.metrics, &new.metrics));
    // Capture: the reconciler's tuning and the pair's NICs are live; the
    // rest is read at start (the provider client, the VRRP follower, the
    // feed thread's GARP count).
    let (oc, nc) = (&old.capture, &new.capture);
    restart("capture.mode", oc.mode != nc.mode);
    restart(
        "capture.vrrp_notify_fifo",
        oc.vrrp_notify_fifo != nc.vrrp_notify_fifo,
    );
    restart(
        "capture.vrrp_instance",
        oc.vrrp_instance != nc.vrrp_instance,
    );
    restart(
        "capture.keepalived_pid_file",
        oc.keepalived_pid_file != nc.keepalived_pid_file,
    );
    restart(
        "capture.keepalived_json_file",
        oc.keepalived_json_file != nc.keepalived_json_file,
    );
    restart(
        "capture.single_router",
        oc.single_router != nc.single_router,
    );
    restart("capture.garp_count", oc.garp_count != nc.garp_count);
    restart(
        "capture.vrrp_stall_settle_ms",
        oc.vrrp_stall_settle_ms != nc.vrrp_stall_settle_ms,
    );
    restart(
        "capture.vrrp_track_file",
        oc.vrrp_track_file != nc.vrrp_track_file,
    );
    restart(
        "capture.pair_preference",
        oc.pair_preference != nc.pair_preference,
    );
    restart("capture.aws", !same(&oc.aws, &nc.aws));
    restart("capture.azure", !same(&oc.azure, &nc.azure));
    restart("capture.oci", !same(&oc.oci, &nc.oci));

    let mut plan = ReloadPlan {
        networks_changed: ob.networks != nb.networks,
        tunnels_changed: !same(&old.tunnels, &new.tunnels),
        local_pref_changed: os.local_pref != ns.local_pref,
        pool_changed: os.pool != ns.pool,
        reconciler_changed: !same(&oc.reconciler, &nc.reconciler) || oc.pair_nics != nc.pair_nics,
        ..ReloadPlan::default()
    };
    for n in &nb.neighbors {
        let name = n.name();
        match ob.neighbors.iter().find(|o| o.name() == name) {
            None => {
                plan.added.push(name.clone());
                started_only(n, &name, "added", &mut refuse.needs_restart);
            }
            Some(o) => {
                refuse.needs_session_reset.extend(
                    session_fields(o, n)
                        .into_iter()
                        .map(|f| format!("bgp.neighbor[{name}].{f}")),
                );
                let policy = |c: &ControlConfig, p: &Option<String>| -> Option<Policy> {
                    c.policy(p).cloned()
                };
                if policy(old, &o.import_policy) != policy(new, &n.import_policy) {
                    plan.import_changed.push(name.clone());
                }
                if policy(old, &o.export_policy) != policy(new, &n.export_policy)
                    || o.next_hop_self != n.next_hop_self
                {
                    plan.export_changed.push(name.clone());
                }
                if o.keep_received != n.keep_received {
                    plan.keep_received_changed.push(name.clone());
                }
                if o.description != n.description {
                    plan.description_changed.push(name.clone());
                }
            }
        }
    }
    for o in &ob.neighbors {
        let name = o.name();
        if !nb.neighbors.iter().any(|n| n.name() == name) {
            plan.removed.push(name.clone());
            started_only(o, &name, "removed", &mut refuse.needs_restart);
        }
    }
    if refuse.needs_restart.is_empty() && refuse.needs_session_reset.is_empty() {
        Ok(plan)
    } else {
        Err(refuse)
    }
}

/// The neighbor fields a session negotiates or its sockets carry: a change
/// needs the session reset.
fn session_fields(o: &Neighbor, n: &Neighbor) -> Vec<&'static str> {
    let mut out = Vec::new();
    let mut check = |f: &'static str, changed: bool| {
        if changed {
            out.push(f);
        }
    };
    check("remote_as", !same(&o.remote_as, &n.remote_as));
    check("local_address", o.local_address != n.local_address);
    check("port", o.port != n.port);
    check("passive", o.passive != n.passive);
    check("rr_client", o.rr_client != n.rr_client);
    check("add_path", o.add_path != n.add_path);
    check("password", o.password != n.password);
    check("ttl_security", o.ttl_security != n.ttl_security);
    check("dataplane_port", o.dataplane_port != n.dataplane_port);
    check("ra_timeout_secs", o.ra_timeout_secs != n.ra_timeout_secs);
    check(
        "bfd",
        o.bfd != n.bfd
            || o.bfd_min_tx_ms != n.bfd_min_tx_ms
            || o.bfd_min_rx_ms != n.bfd_min_rx_ms
            || o.bfd_multiplier != n.bfd_multiplier
            || o.bfd_multihop != n.bfd_multihop
            || o.bfd_key != n.bfd_key
            || o.bfd_key_id != n.bfd_key_id,
    );
    out
}

/// A neighbor added or removed whose parts are set up only at start: BFD
/// sessions, TCP-MD5 keys on the listeners, unnumbered interface watchers.
fn started_only(n: &Neighbor, name: &str, what: &str, into: &mut Vec<String>) {
    for (field, set) in [
        ("bfd", n.bfd),
        ("password", n.password.is_some()),
        ("interface", n.interface.is_some()),
    ] {
        if set {
            into.push(format!(
                "bgp.neighbor[{name}].{field} (a neighbor with {field} {what})"
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    const BASE: &str = r#"
[node]
name = "a"
router_id = "10.0.0.1"
asn = 65000
transport_address = "10.0.0.1"
[bgp]
[[bgp.neighbor]]
address = "10.0.0.2"
remote_as = 65002
import_policy = "in"
[[bgp.neighbor]]
address = "10.0.0.3"
remote_as = "internal"
[[policy]]
name = "in"
default = "accept"
[[policy.term]]
match = { prefix = ["10.88.2.0/24"] }
action = { accept = false }
[sam]
identity = "65000:1"
marker_community = "65000:999"
marker_prefix = "10.255.0.1/32"
pool = ["10.77.60.0/24"]
[admin]
socket = "/run/x.sock"
"#;

    fn cfg(text: &str) -> ControlConfig {
        ControlConfig::parse(text, Path::new("t.toml")).unwrap_or_else(|e| panic!("{e}\n{text}"))
    }

    fn with(from: &str, to: &str) -> ControlConfig {
        assert!(BASE.contains(from), "{from}");
        cfg(&BASE.replacen(from, to, 1))
    }

    #[test]
    fn the_same_file_changes_nothing() {
        assert!(plan(&cfg(BASE), &cfg(BASE)).unwrap().is_empty());
    }

    #[test]
    fn the_pool_and_the_reconciler_tuning_are_live() {
        let p = plan(
            &cfg(BASE),
            &with("pool = [\"10.77.60.0/24\"]", "pool = [\"10.77.0.0/16\"]"),
        )
        .unwrap();
        assert!(p.pool_changed && !p.reconciler_changed, "{p:?}");
        let p = plan(
            &cfg(BASE),
            &with(
                "[admin]",
                "[capture]\n[capture.reconciler]\nconcurrency = 8\nresync_secs = 5\n[admin]",
            ),
        )
        .unwrap();
        assert!(p.reconciler_changed && !p.pool_changed, "{p:?}");
    }

    #[test]
    fn neighbors_come_and_go_and_policies_change() {
        let new = cfg(&BASE
            .replace(
                "[[bgp.neighbor]]\naddress = \"10.0.0.3\"\nremote_as = \"internal\"\n",
                "[[bgp.neighbor]]\naddress = \"10.0.0.4\"\nremote_as = 65004\ndescription = \"new\"\n",
            )
            .replace("10.88.2.0/24", "10.88.3.0/24"));
        let p = plan(&cfg(BASE), &new).unwrap();
        assert_eq!(p.added, vec!["10.0.0.4"]);
        assert_eq!(p.removed, vec!["10.0.0.3"]);
        // The policy's terms changed, not its name.
        assert_eq!(p.import_changed, vec!["10.0.0.2"]);
        assert!(p.export_changed.is_empty());
        let p = plan(
            &cfg(BASE),
            &with(
                "import_policy = \"in\"",
                "export_policy = \"in\"\nkeep_received = false",
            ),
        )
        .unwrap();
        assert_eq!(p.import_changed, vec!["10.0.0.2"]);
        assert_eq!(p.export_changed, vec!["10.0.0.2"]);
        assert_eq!(p.keep_received_changed, vec!["10.0.0.2"]);
        let p = plan(
            &cfg(BASE),
            &with("[bgp]\n", "[bgp]\nnetworks = [\"10.9.0.0/16\"]\n"),
        )
        .unwrap();
        assert!(p.networks_changed);
        let p = plan(
            &cfg(BASE),
            &with(
                "pool = [\"10.77.60.0/24\"]",
                "pool = [\"10.77.60.0/24\"]\nlocal_pref = 150",
            ),
        )
        .unwrap();
        assert!(p.local_pref_changed);
        let p = plan(
            &cfg(BASE),
            &cfg(&format!(
                "{BASE}[[tunnel]]\nid = 2\nremote = \"10.0.0.2\"\n"
            )),
        )
        .unwrap();
        assert!(p.tunnels_changed);
    }

    #[test]
    fn session_fields_refuse_the_reload_by_name() {
        for (from, to, field) in [
            ("remote_as = 65002", "remote_as = 65009", "remote_as"),
            (
                "remote_as = 65002",
                "remote_as = 65002\nadd_path = \"receive\"",
                "add_path",
            ),
            (
                "remote_as = 65002",
                "remote_as = 65002\npassword = \"k\"",
                "password",
            ),
            (
                "remote_as = 65002",
                "remote_as = 65002\nlocal_address = \"10.0.0.1\"",
                "local_address",
            ),
            (
                "remote_as = 65002",
                "remote_as = 65002\nport = 1179",
                "port",
            ),
            (
                "remote_as = 65002",
                "remote_as = 65002\nttl_security = true",
                "ttl_security",
            ),
            ("remote_as = 65002", "remote_as = 65002\nbfd = true", "bfd"),
            (
                "remote_as = 65002",
                "remote_as = 65002\npassive = true",
                "passive",
            ),
        ] {
            let e = plan(&cfg(BASE), &with(from, to)).unwrap_err();
            assert_eq!(
                e.needs_session_reset,
                vec![format!("bgp.neighbor[10.0.0.2].{field}")],
                "{to}"
            );
            assert!(e.needs_restart.is_empty());
            assert!(e.to_string().contains(field), "{e}");
        }
    }

    #[test]
    fn process_fields_refuse_the_reload_by_name() {
        for (from, to, field) in [
            (
                "router_id = \"10.0.0.1\"",
                "router_id = \"10.0.0.9\"",
                "node.router_id",
            ),
            ("asn = 65000", "asn = 65001", "node.asn"),
            (
                "socket = \"/run/x.sock\"",
                "socket = \"/run/y.sock\"",
                "admin",
            ),
            ("[bgp]\n", "[bgp]\nhold_time = 30\n", "bgp.hold_time"),
            (
                "[bgp]\n",
                "[bgp]\nroute_reflector = true\n",
                "bgp.route_reflector",
            ),
            ("[bgp]\n", "[bgp]\nlisten = [\"10.0.0.1\"]\n", "bgp.listen"),
            (
                "identity = \"65000:1\"",
                "identity = \"65000:2\"",
                "sam.identity",
            ),
            (
                "marker_prefix = \"10.255.0.1/32\"",
                "marker_prefix = \"10.255.0.9/32\"",
                "sam.marker_prefix",
            ),
            (
                "[admin]",
                "[dataplane]\nlan_port = \"x\"\n[admin]",
                "dataplane",
            ),
            (
                "[admin]",
                "[capture]\ngarp_count = 5\n[admin]",
                "capture.garp_count",
            ),
        ] {
            let e = plan(&cfg(BASE), &with(from, to)).unwrap_err();
            assert_eq!(e.needs_restart, vec![field.to_string()], "{to}");
        }
    }

    #[test]
    fn neighbors_set_up_at_start_only_cannot_come_or_go() {
        let added = format!(
            "{BASE}[[bgp.neighbor]]\naddress = \"10.0.0.5\"\nremote_as = 65005\nbfd = true\npassword = \"k\"\n"
        );
        let e = plan(&cfg(BASE), &cfg(&added)).unwrap_err();
        assert_eq!(e.needs_restart.len(), 2, "{e}");
        assert!(
            e.needs_restart[0].starts_with("bgp.neighbor[10.0.0.5].bfd"),
            "{e}"
        );
        // And all-or-nothing: an acceptable change beside it is refused too.
        let e = plan(
            &cfg(BASE),
            &cfg(&added.replace("10.88.2.0/24", "10.88.3.0/24")),
        )
        .unwrap_err();
        assert!(!e.needs_restart.is_empty());
    }
}
