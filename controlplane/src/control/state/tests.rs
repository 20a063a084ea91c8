//! The control state's admin answers (`northbound.rs`) as JSON, from a state that was
//! never started: no sockets, no runtime, no BGP session. Endpoint requests
//! go through the same paths as in the running process.

use super::*;
use crate::control::fibfeed::FeedStatus;
use serde_json::Value;
use std::sync::{Arc, Mutex};

const CONFIG: &str = r#"
[node]
name = "cer-t"
router_id = "10.10.0.2"
asn = 65000
transport_address = "10.10.0.2"

[bgp]

[sam]
identity = "65000:1002"
site_identities = ["65000:1003"]
marker_community = "65000:999"
marker_prefix = "10.255.0.2/32"
pool = ["10.77.60.0/24"]
state_file = "STATE"

[[tunnel]]
id = 3
remote = "10.10.0.3"

[dataplane]
lan_port = "lan"

[capture]
mode = "onprem"
single_router = true
"#;

/// A started control state (marker originated; no neighbors, so no session task and
/// no runtime) over a fresh state file (kept alive by the returned directory).
fn started() -> (ControlState, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("endpoints.json");
    let text = CONFIG.replace("STATE", state.to_str().unwrap());
    let cfg = ControlConfig::parse(&text, std::path::Path::new("t.toml")).unwrap();
    let (events, _rx) = mpsc::channel(16);
    let status: SharedStatus = Arc::new(Mutex::new(FeedStatus::default()));
    let mut c = ControlState::new(cfg, events, None, status).unwrap();
    c.start().unwrap();
    (c, dir)
}

fn ok(r: ControlResponse) -> Value {
    match r {
        ControlResponse::Ok { data } => data,
        ControlResponse::Error { message } => panic!("error: {message}"),
    }
}

fn err(r: ControlResponse) -> String {
    match r {
        ControlResponse::Error { message } => message,
        ControlResponse::Ok { data } => panic!("expected an error, got {data}"),
    }
}

#[test]
fn status_names_the_node_and_is_not_ready_before_the_initial_sync() {
    let (mut c, _d) = started();
    let s = ok(c.admin(ControlRequest::Status));
    assert_eq!(s["node"], "cer-t");
    assert_eq!(s["asn"], 65000);
    assert_eq!(s["identity"], "65000:1002");
    assert_eq!(s["ready"], false);
    assert!(s["capture"]["mechanism"].as_str().is_some(), "{s}");
}

#[test]
fn an_added_endpoint_is_owned_here_and_explained() {
    let (mut c, _d) = started();
    let ip: Ipv4Addr = "10.77.60.10".parse().unwrap();
    let a = ok(c.admin(ControlRequest::EndpointAdd {
        ip,
        local_pref: Some(150),
    }));
    assert_eq!(a["advertised"], "10.77.60.10");
    assert_eq!(a["local_pref"], 150);

    let owners = ok(c.admin(ControlRequest::Owners));
    let o = owners
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["prefix"] == "10.77.60.10/32")
        .unwrap_or_else(|| panic!("{owners}"));
    assert_eq!(o["identity"], "65000:1002");
    assert_eq!(o["local"], true);
    assert_eq!(o["site_local"], true);
    assert_eq!(o["local_pref"], 150);

    let e = ok(c.admin(ControlRequest::Explain { ip }));
    assert_eq!(e["in_pool"], true);
    assert_eq!(e["owner"]["local"], true);
    assert!(e["fib"].to_string().contains("owned here"), "{}", e["fib"]);
    // Delivered on the LAN port: observed there and after decapsulation;
    // no tunnel of its own.
    assert_eq!(e["transport"]["tunnel"], serde_json::Value::Null, "{e}");
    let inner = &e["capture_points"]["inner"];
    assert_eq!(inner["filter"], "host 10.77.60.10", "{e}");
    let points = inner["points"].to_string();
    assert!(points.contains(":tx") && points.contains(":rx"), "{e}");

    // Moving what is already ours changes nothing.
    let m = ok(c.admin(ControlRequest::EndpointMove { ip }));
    assert_eq!(m["already_owner"], "10.77.60.10");

    // Removed: withdrawn, no owner left.
    ok(c.admin(ControlRequest::EndpointRemove { ip }));
    let owners = ok(c.admin(ControlRequest::Owners));
    assert!(!owners.to_string().contains("10.77.60.10/32"), "{owners}");
    let e = err(c.admin(ControlRequest::EndpointRemove { ip }));
    assert!(e.contains("not an endpoint"), "{e}");
}

#[test]
fn addresses_outside_the_pool_are_refused_with_the_pool_named() {
    let (mut c, _d) = started();
    let e = err(c.admin(ControlRequest::EndpointAdd {
        ip: "192.0.2.1".parse().unwrap(),
        local_pref: None,
    }));
    assert!(
        e.contains("192.0.2.1") && e.contains("10.77.60.0/24"),
        "{e}"
    );
}

#[test]
fn bgp_summary_and_rib_views() {
    let (mut c, _d) = started();
    ok(c.admin(ControlRequest::EndpointAdd {
        ip: "10.77.60.11".parse().unwrap(),
        local_pref: None,
    }));
    let s = ok(c.admin(ControlRequest::BgpSummary));
    assert_eq!(s["asn"], 65000);
    assert_eq!(s["route_reflector"], false);
    assert!(s["loc_rib_prefixes"].as_u64().unwrap() >= 1, "{s}");
    let rib = ok(c.admin(ControlRequest::BgpRib {
        prefix: Some("10.77.60.11/32".into()),
    }));
    assert!(rib.to_string().contains("10.77.60.11/32"), "{rib}");
    let e = err(c.admin(ControlRequest::BgpRib {
        prefix: Some("not-a-prefix".into()),
    }));
    assert!(e.contains("not-a-prefix"), "{e}");
}

/// A cloud pair member advertises its capture preference as its marker's
/// LOCAL_PREF, and `show capture` names its role: standby while it has no
/// BGP session (it never elects itself cut off from the WAN).
#[test]
fn a_cloud_pair_member_advertises_its_preference_and_stands_by_without_bgp() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("endpoints.json");
    let text = CONFIG.replace("STATE", state.to_str().unwrap()).replace(
        "mode = \"onprem\"\nsingle_router = true",
        "mode = \"aws\"\npair_preference = 200\npair_nics = [\"eni-partner\"]\n[capture.aws]\nregion = \"eu-west-1\"",
    );
    let cfg = ControlConfig::parse(&text, std::path::Path::new("t.toml")).unwrap();
    let (events, _rx) = mpsc::channel(16);
    let status: SharedStatus = Arc::new(Mutex::new(FeedStatus::default()));
    let mut c = ControlState::new(cfg, events, None, status).unwrap();
    c.start().unwrap();
    let marker = Prefix::V4("10.255.0.2/32".parse().unwrap());
    let lp = c.speaker.rib().best(&marker).map(|p| p.local_pref());
    assert_eq!(lp, Some(200), "the marker carries the pair preference");
    assert_eq!(
        c.sam.marker_preference(c.speaker.rib(), c.sam.identity),
        Some(200)
    );
    let cap = ok(c.admin(ControlRequest::Capture));
    assert_eq!(cap["pair"]["role"], "standby", "{cap}");
    assert_eq!(cap["pair"]["preference"], 200);
    assert_eq!(cap["pair"]["active"], Value::Null);
}

/// Chaos seed 1 found it: a cloud CER restarted while its WAN was cut hit
/// the feed's start-up deadline with no BGP session, activated its
/// reconciler on an empty RIB and released every remote /32 on its NIC to
/// nobody. The reconciler now waits for routes, not for the clock.
#[test]
fn capture_starts_from_converged_routes_never_from_the_deadline_alone() {
    let d = Duration::from_secs(2);
    // The feed's deadline passed (ready), no session: no capture.
    assert!(!capture_may_start(true, true, false, None, d));
    // A session up and End-of-RIB from every established peer.
    assert!(capture_may_start(true, true, true, Some(Duration::ZERO), d));
    // A peer that never sends End-of-RIB: the delay after it came up.
    assert!(!capture_may_start(
        true,
        true,
        false,
        Some(Duration::from_millis(500)),
        d
    ));
    assert!(capture_may_start(true, true, false, Some(d), d));
    // Never before the initial sync.
    assert!(!capture_may_start(false, true, true, Some(d), d));
    // No neighbor configured: nothing to wait for.
    assert!(capture_may_start(true, false, false, None, d));
}
