//! cerctl: the CER operator's CLI.
//!
//! `cerctl show ...`, `cerctl endpoint ...` and `cerctl explain IP` ask
//! cer-control's admin socket; `cerctl dataplane show ...` reads the
//! dataplane's admin socket;
//! `cerctl dataplane feed ...` is a debug FIB feeder (cer-control is the
//! production feeder: a full sync from it replaces what this installed).

use anyhow::{Context, Result};
use cer_controlplane::control::admin::{ControlRequest, ControlResponse, RibSide};
use cer_controlplane::dataplane::{admin, endpoint_action, parse_via, FibFile};
use cer_shared::admin::AdminRequest;
use cer_shared::feed::{FeedCommand, FibChange};
use cer_shared::feed_client::FeedClient;
use clap::Parser;
use serde_json::Value;

use cer_controlplane::cli::cerctl::*;

fn main() {
    if let Err(e) = run(Cli::parse()) {
        eprintln!("cerctl: error: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.cmd {
        Top::Show { what, json, socket } => {
            let req = match &what {
                ShowCmd::Bgp {
                    what: BgpShow::Summary,
                } => ControlRequest::BgpSummary,
                ShowCmd::Bgp {
                    what: BgpShow::Rib { prefix },
                } => ControlRequest::BgpRib {
                    prefix: prefix.clone(),
                },
                ShowCmd::Bgp {
                    what:
                        BgpShow::Neighbor {
                            peer,
                            routes,
                            prefix,
                        },
                } => ControlRequest::BgpNeighborRoutes {
                    peer: peer.clone(),
                    side: match routes {
                        NeighborRoutes::ReceivedRoutes => RibSide::Received,
                        NeighborRoutes::AdvertisedRoutes => RibSide::Advertised,
                    },
                    prefix: prefix.clone(),
                },
                ShowCmd::Bfd => ControlRequest::Bfd,
                ShowCmd::Owners => ControlRequest::Owners,
                ShowCmd::Markers => ControlRequest::Markers,
                ShowCmd::Fib => ControlRequest::Fib,
                ShowCmd::Trap { since } => ControlRequest::Trap { since: *since },
                ShowCmd::Status => ControlRequest::Status,
                ShowCmd::Capture => ControlRequest::Capture,
            };
            let data = control(&socket, &req)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&data)?);
            } else {
                print_control(&what, &data);
            }
            Ok(())
        }
        Top::Endpoint { cmd, socket } => {
            let req = match cmd {
                EndpointCmd::Add { ip, local_pref } => {
                    ControlRequest::EndpointAdd { ip, local_pref }
                }
                EndpointCmd::Remove { ip } => ControlRequest::EndpointRemove { ip },
                EndpointCmd::Move { ip } => ControlRequest::EndpointMove { ip },
            };
            println!("{}", control(&socket, &req)?);
            Ok(())
        }
        Top::Explain {
            ip,
            json,
            socket,
            dataplane_socket,
        } => {
            let mut data = control(&socket, &ControlRequest::Explain { ip })?;
            resolve_link_locals(&mut data, &dataplane_socket);
            explain_from_dataplane(&mut data, &dataplane_socket);
            if json {
                println!("{}", serde_json::to_string_pretty(&data)?);
            } else {
                print_explain(&data);
            }
            Ok(())
        }
        Top::Reload { json, socket } => {
            let data = control(&socket, &ControlRequest::Reload)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&data)?);
            } else if data["changed"].as_bool() == Some(true) {
                println!("reloaded {}:", s(&data["file"]));
                for a in data["applied"].as_array().into_iter().flatten() {
                    match a["neighbor"].as_str() {
                        Some(n) => println!("  neighbor {n}: {}", s(&a["change"])),
                        None => println!("  {}", s(&a["change"])),
                    }
                }
            } else {
                println!("reloaded {}: no change", s(&data["file"]));
            }
            Ok(())
        }
        Top::Dataplane { admin_socket, cmd } => match cmd {
            Dp::Show { what, json } => show(&admin_socket, what, json),
            Dp::Feed { socket, cmd } => feed(&socket, cmd),
            Dp::Reload { json } => {
                let data = admin(&admin_socket, &AdminRequest::Reload)?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&data)?);
                    return Ok(());
                }
                let applied: Vec<&str> = data["applied"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|a| a.as_str())
                    .collect();
                if applied.is_empty() {
                    println!("reloaded {}: no change", s(&data["file"]));
                } else {
                    println!("reloaded {}:", s(&data["file"]));
                    for a in applied {
                        println!("  {a}");
                    }
                }
                for n in data["notes"].as_array().into_iter().flatten() {
                    println!("  note: {}", s(n));
                }
                Ok(())
            }
            Dp::Capture {
                points,
                filter,
                count,
                duration,
                snaplen,
                write,
            } => capture(
                &admin_socket,
                AdminRequest::Capture {
                    points,
                    filter,
                    count,
                    duration_ms: duration.map(|d| d.as_millis().max(1) as u64),
                    snaplen,
                },
                &write,
            ),
        },
    }
}

/// `cerctl dataplane capture`: the pcapng stream into a file or stdout, the
/// summary on stderr.
fn capture(socket: &std::path::Path, req: AdminRequest, write: &std::path::Path) -> Result<()> {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone()).context("installing the Ctrl-C handler")?;
    }
    let stdout = write.as_os_str() == "-";
    let name = if stdout {
        "stdout".to_string()
    } else {
        write.display().to_string()
    };
    let mut out: Box<dyn std::io::Write> = if stdout {
        Box::new(std::io::stdout().lock())
    } else {
        Box::new(
            std::fs::File::create(write)
                .with_context(|| format!("cannot create the capture file {name}"))?,
        )
    };
    let s = cer_controlplane::dataplane::capture(socket, &req, &mut out, &name, stop)?;
    eprintln!(
        "{} packets written, {} matched the filter, {} packets dropped by the capture ring (stopped: {})",
        s.written, s.matched, s.ring_drops, s.stopped
    );
    Ok(())
}

fn feed(socket: &std::path::Path, cmd: FeedCmd) -> Result<()> {
    // A one-shot session: it does not own the capture gate, so its end
    // leaves the gate as cer-control set it.
    let mut c = FeedClient::connect_with(socket, "cerctl", false)?;
    let version = match cmd {
        FeedCmd::Sync { file } => c.full_sync(FibFile::load(&file)?.changes()?)?,
        FeedCmd::Garp { port, ip, count } => {
            c.command(FeedCommand::GratuitousArp { port, ip, count })?
        }
        other => c.changes(vec![change(other)?])?,
    };
    println!("ok: dataplane {} at snapshot {version}", c.node);
    Ok(())
}

fn change(cmd: FeedCmd) -> Result<FibChange> {
    Ok(match cmd {
        FeedCmd::EndpointSet {
            ip,
            port,
            tunnel,
            drop,
        } => FibChange::EndpointSet {
            ip,
            action: endpoint_action(port, tunnel, drop)?,
        },
        FeedCmd::EndpointDel { ip } => FibChange::EndpointDel { ip },
        FeedCmd::RouteSet { prefix, via } => FibChange::RouteSet {
            prefix,
            nexthops: via.iter().map(|v| parse_via(v)).collect::<Result<_>>()?,
        },
        FeedCmd::RouteDel { prefix } => FibChange::RouteDel { prefix },
        FeedCmd::NeighborSet { port, ip, mac } => FibChange::NeighborSet { port, ip, mac },
        FeedCmd::NeighborDel { port, ip } => FibChange::NeighborDel { port, ip },
        FeedCmd::ProxyArpAdd { ip } => FibChange::ProxyArpSet { ip },
        FeedCmd::ProxyArpDel { ip } => FibChange::ProxyArpDel { ip },
        FeedCmd::ProxyArpActive { active } => FibChange::ProxyArpActive { active },
        FeedCmd::Sync { .. } | FeedCmd::Garp { .. } => unreachable!("handled by the caller"),
    })
}

fn show(socket: &std::path::Path, what: ShowWhat, json: bool) -> Result<()> {
    let req = match what {
        ShowWhat::State => AdminRequest::State,
        ShowWhat::Counters => AdminRequest::Counters,
        ShowWhat::Ports => AdminRequest::Ports,
        ShowWhat::Neighbors => AdminRequest::Neighbors,
        ShowWhat::Neighbors6 => AdminRequest::Neighbors6,
        ShowWhat::ProxyArp => AdminRequest::ProxyArp,
        ShowWhat::Snapshot => AdminRequest::Snapshot,
        ShowWhat::Fib => AdminRequest::Fib { limit: Some(1000) },
        ShowWhat::Feed => AdminRequest::Feed,
        ShowWhat::Tunnels => AdminRequest::Tunnels,
    };
    let data = admin(socket, &req)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&data)?);
        return Ok(());
    }
    match what {
        ShowWhat::Counters => print_counters(&data),
        ShowWhat::Neighbors => {
            println!(
                "{:<8} {:<16} {:<18} {:<10} {:>8}",
                "PORT", "IP", "MAC", "STATE", "AGE(s)"
            );
            for n in data.as_array().into_iter().flatten() {
                println!(
                    "{:<8} {:<16} {:<18} {:<10} {:>8}",
                    s(&n["port"]),
                    s(&n["ip"]),
                    s(&n["mac"]),
                    s(&n["state"]),
                    n["confirmed_secs_ago"].as_u64().unwrap_or(0)
                );
            }
        }
        ShowWhat::Ports => {
            println!(
                "{:<8} {:<16} {:<18} {:<18} {:>5} {:<5} {:>12} {:>12} {:>10}",
                "PORT", "DRIVER", "MAC", "ADDRESS", "MTU", "LINK", "RX", "TX", "RX-MISSED"
            );
            for p in data.as_array().into_iter().flatten() {
                println!(
                    "{:<8} {:<16} {:<18} {:<18} {:>5} {:<5} {:>12} {:>12} {:>10}",
                    s(&p["name"]),
                    s(&p["driver"]),
                    s(&p["mac"]),
                    s(&p["address"]),
                    p["mtu"],
                    if p["link_up"].as_bool() == Some(true) {
                        "up"
                    } else {
                        "down"
                    },
                    p["hw"]["ipackets"],
                    p["hw"]["opackets"],
                    // Frames lost before the dataplane saw them: the PMD's
                    // own count plus the kernel's in front of af_packet.
                    p["hw"]["imissed"].as_u64().unwrap_or(0)
                        + p["hw"]["kernel_ring_drops"].as_u64().unwrap_or(0)
                );
            }
        }
        ShowWhat::Fib => {
            println!(
                "snapshot {}: {} endpoints",
                data["version"], data["endpoints_total"]
            );
            for e in data["endpoints"].as_array().into_iter().flatten() {
                println!("  {:<16} {}", s(&e["ip"]), s(&e["action"]));
            }
            println!("routes:");
            for r in data["routes"].as_array().into_iter().flatten() {
                let hops: Vec<String> = r["nexthops"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|h| match (h["gateway"].as_str(), h["gateway6"].as_str()) {
                        (Some(gw), _) => format!("{} via {gw}", s(&h["port"])),
                        (None, Some(ll)) => format!(
                            "{} via {ll} ({})",
                            s(&h["port"]),
                            h["mac"].as_str().unwrap_or("unresolved")
                        ),
                        (None, None) => format!("{} on-link", s(&h["port"])),
                    })
                    .collect();
                println!("  {:<20} {}", s(&r["prefix"]), hops.join(", "));
            }
        }
        ShowWhat::Tunnels => print_tunnels(&data),
        _ => println!("{}", serde_json::to_string_pretty(&data)?),
    }
    Ok(())
}

fn print_tunnels(data: &Value) {
    println!(
        "{:>5} {:<10} {:<16} {:<16} {:>5} {:>6}  DETAIL",
        "ID", "KIND", "LOCAL", "REMOTE", "MTU", "PORT"
    );
    for t in data.as_array().into_iter().flatten() {
        let mut detail = Vec::new();
        if let Some(k) = t["gre_key"].as_u64() {
            detail.push(format!("key {k}"));
        }
        if t["force_fragment"].as_bool() == Some(true) {
            detail.push("force_fragment".into());
        }
        let w = &t["wireguard"];
        if w.is_object() {
            detail.push(format!("lcore {}", w["lcore"]));
            if w["session_established"].as_bool() == Some(true) {
                let age = w["handshake_age_ms"].as_u64().unwrap_or(0) / 1000;
                detail.push(format!("session up, handshake {age}s ago"));
            } else if w["published"].as_bool() == Some(true) {
                detail.push("no session".into());
            } else {
                detail.push("core not started".into());
            }
            detail.push(format!(
                "{} handshakes, rx {} B, tx {} B",
                w["handshakes"], w["rx_bytes"], w["tx_bytes"]
            ));
            if w["queued"].as_u64().unwrap_or(0) > 0 {
                detail.push(format!("{} queued for the handshake", w["queued"]));
            }
        }
        println!(
            "{:>5} {:<10} {:<16} {:<16} {:>5} {:>6}  {}",
            t["id"].as_u64().unwrap_or(0),
            s(&t["kind"]),
            s(&t["local"]),
            s(&t["remote"]),
            t["mtu"].as_u64().unwrap_or(0),
            if t["port"].as_u64().unwrap_or(0) > 0 && t["kind"] != "ipip" && t["kind"] != "gre" {
                t["port"].to_string()
            } else {
                "-".into()
            },
            detail.join(", ")
        );
    }
}

/// One request to cer-control's admin socket.
fn control(socket: &std::path::Path, req: &ControlRequest) -> Result<Value> {
    use std::io::{BufRead, BufReader, Write};
    let mut s = std::os::unix::net::UnixStream::connect(socket).with_context(|| {
        format!(
            "cannot connect to cer-control at {} (is it running? --socket)",
            socket.display()
        )
    })?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
    let mut line = serde_json::to_vec(req)?;
    line.push(b'\n');
    s.write_all(&line)?;
    let mut answer = String::new();
    BufReader::new(s).read_line(&mut answer)?;
    match serde_json::from_str::<ControlResponse>(&answer)
        .context("malformed answer from cer-control")?
    {
        ControlResponse::Ok { data } => Ok(data),
        ControlResponse::Error { message } => anyhow::bail!("cer-control: {message}"),
    }
}

fn print_control(what: &ShowCmd, d: &Value) {
    let rows = |v: &Value| v.as_array().cloned().unwrap_or_default();
    match what {
        ShowCmd::Bgp {
            what: BgpShow::Summary,
        } => {
            println!(
                "BGP router id {}, local AS {}, {} prefixes in the Loc-RIB{}",
                s(&d["router_id"]),
                d["asn"],
                d["loc_rib_prefixes"],
                if d["route_reflector"].as_bool() == Some(true) {
                    ", route reflector"
                } else {
                    ""
                }
            );
            println!(
                "{:<22} {:>10} {:<12} {:>8} {:>8} {:>8} {:>5} {:>5}  LAST ERROR",
                "NEIGHBOR", "AS", "STATE", "UP(s)", "PFX-RCV", "PFX-SENT", "TAW", "DISC"
            );
            for n in rows(&d["neighbors"]) {
                // Unnumbered peers are shown by interface, as FRR does.
                let u = &n["unnumbered"];
                let name = match u["interface"].as_str() {
                    Some(i) => i.to_string(),
                    None => s(&n["address"]),
                };
                println!(
                    "{:<22} {:>10} {:<12} {:>8} {:>8} {:>8} {:>5} {:>5}  {}",
                    name,
                    n["remote_as"]
                        .as_u64()
                        .map(|a| a.to_string())
                        .unwrap_or("-".into()),
                    s(&n["state"]),
                    n["uptime_secs"]
                        .as_u64()
                        .map(|a| a.to_string())
                        .unwrap_or("-".into()),
                    n["prefixes_received"].as_u64().unwrap_or(0),
                    n["prefixes_sent"].as_u64().unwrap_or(0),
                    n["treat_as_withdraw"].as_u64().unwrap_or(0),
                    n["attribute_discard"].as_u64().unwrap_or(0),
                    n["last_error"].as_str().unwrap_or("")
                );
                // A TCP-MD5 or GTSM mismatch only shows as timeouts: the cause.
                if let Some(d) = n["diagnosis"].as_str() {
                    println!("  cause: {d}");
                }
                let security: Vec<&str> = [("tcp_md5", "TCP-MD5"), ("ttl_security", "GTSM")]
                    .into_iter()
                    .filter(|(k, _)| n[*k].as_bool() == Some(true))
                    .map(|(_, name)| name)
                    .collect();
                if !security.is_empty() {
                    println!("  security: {}", security.join(", "));
                }
                // RFC 7606 actions on this peer's UPDATEs, by cause.
                if let Some(errors) = n["update_errors"].as_object().filter(|e| !e.is_empty()) {
                    let causes: Vec<String> = errors
                        .iter()
                        .map(|(cause, count)| format!("{cause} x{count}"))
                        .collect();
                    println!("  UPDATE errors: {}", causes.join(", "));
                }
                if u.is_object() {
                    println!(
                        "  unnumbered: dataplane port {}, peer {}{}",
                        u["dataplane_port"].as_str().unwrap_or("-"),
                        u["peer_link_local"].as_str().unwrap_or("not learned yet"),
                        match (u["learned_from"].as_str(), u["ra_interval_secs"].as_f64()) {
                            (Some(l), Some(iv)) =>
                                format!(" (learned from {l}, RA every {iv:.1} s)"),
                            (Some(l), None) => format!(" (learned from {l})"),
                            _ => String::new(),
                        }
                    );
                }
            }
        }
        ShowCmd::Bgp {
            what: BgpShow::Rib { .. },
        } => {
            println!(
                "  {:<18} {:<16} {:>5} {:<10} {:<8} {:<16} COMMUNITIES",
                "PREFIX", "NEXT HOP", "LP", "IDENTITY", "MARKER", "FROM"
            );
            for r in rows(d) {
                println!(
                    "{} {:<18} {:<16} {:>5} {:<10} {:<8} {:<16} {}{}{}",
                    if r["best"].as_bool() == Some(true) {
                        "*"
                    } else {
                        " "
                    },
                    s(&r["prefix"]),
                    s(&r["next_hop"]),
                    r["local_pref"],
                    r["identity"].as_str().unwrap_or("-"),
                    r["marker"].as_str().unwrap_or("-"),
                    s(&r["from"]),
                    rows(&r["communities"])
                        .iter()
                        .map(s)
                        .collect::<Vec<_>>()
                        .join(" "),
                    match r["path_id"].as_u64() {
                        Some(id) if id != 0 => format!(" (path id {id})"),
                        _ => String::new(),
                    },
                    if r["stale"].as_bool() == Some(true) {
                        " (stale)"
                    } else {
                        ""
                    }
                );
            }
        }
        ShowCmd::Bgp {
            what: BgpShow::Neighbor { .. },
        } => print_neighbor_routes(d),
        ShowCmd::Bfd => {
            if let Some(note) = d["note"].as_str() {
                println!("{note}");
            }
            println!(
                "{:<16} {:<16} {:<10} {:<9} {:<9} {:>9} {:>9} {:>8} {:>8} {:>5}  LAST BGP TEARDOWN",
                "PEER", "LOCAL", "KIND", "STATE", "REMOTE", "TX(ms)", "DETECT", "RX", "TX", "DOWNS"
            );
            for b in rows(&d["sessions"]) {
                println!(
                    "{:<16} {:<16} {:<10} {:<9} {:<9} {:>9.0} {:>9.0} {:>8} {:>8} {:>5}  {}",
                    s(&b["peer"]),
                    s(&b["local"]),
                    s(&b["kind"]),
                    s(&b["state"]),
                    s(&b["remote_state"]),
                    b["tx_interval_ms"].as_f64().unwrap_or(0.0),
                    b["detection_time_ms"].as_f64().unwrap_or(0.0),
                    b["rx"].as_u64().unwrap_or(0),
                    b["tx"].as_u64().unwrap_or(0),
                    b["down_count"].as_u64().unwrap_or(0),
                    match (
                        b["last_teardown"].as_str(),
                        b["last_teardown_secs_ago"].as_u64()
                    ) {
                        (Some(why), Some(ago)) => format!("{why}, {ago} s ago"),
                        _ => "-".into(),
                    }
                );
            }
            if let Some(drops) = d["drops"].as_object() {
                if !drops.is_empty() {
                    let list: Vec<String> = drops.iter().map(|(k, v)| format!("{k} {v}")).collect();
                    println!("refused packets: {}", list.join(", "));
                }
            }
        }
        ShowCmd::Owners => {
            println!(
                "{:<18} {:<12} {:<6} {:<16} {:>5} {:<16}  WHY",
                "PREFIX", "OWNER", "LOCAL", "NEXT HOP", "LP", "SIGNATURE"
            );
            for o in rows(d) {
                println!(
                    "{:<18} {:<12} {:<6} {:<16} {:>5} {:<16}  {}",
                    s(&o["prefix"]),
                    s(&o["identity"]),
                    if o["local"].as_bool() == Some(true) {
                        "yes"
                    } else {
                        "no"
                    },
                    s(&o["next_hop"]),
                    o["local_pref"],
                    s(&o["signature"]),
                    o["why"].as_str().unwrap_or("")
                );
            }
        }
        ShowCmd::Fib => {
            println!("dataplane feed: {}", d["feed"]);
            for e in rows(&d["entries"]) {
                println!("  {:<16} {}", s(&e["ip"]), s(&e["note"]));
            }
        }
        ShowCmd::Capture => print_capture(d),
        _ => println!("{}", serde_json::to_string_pretty(d).unwrap_or_default()),
    }
}

/// `show bgp neighbor X received-routes|advertised-routes` as a table,
/// FRR's columns (next hop, MED, LOCAL_PREF, AS path and origin), one line
/// per side of import policy, the rest of the attributes below.
fn print_neighbor_routes(d: &Value) {
    let rows = d["routes"].as_array().cloned().unwrap_or_default();
    let received = d["side"].as_str() == Some("received");
    if received {
        println!(
            "Routes received from {} ({}){}",
            s(&d["neighbor"]),
            s(&d["address"]),
            if d["keep_received"].as_bool() == Some(true) {
                ": as received (pre-policy) and as imported (post-policy)"
            } else {
                ": as imported only (keep_received = false)"
            }
        );
    } else {
        let group: Vec<String> = d["update_group"]
            .as_array()
            .map(|g| g.iter().map(s).collect())
            .unwrap_or_default();
        println!(
            "Routes advertised to {} ({}), update group [{}]; {} of the group's paths came from it and were not sent back",
            s(&d["neighbor"]),
            s(&d["address"]),
            group.join(", "),
            d["withheld_own_paths"]
        );
    }
    println!(
        "Status codes: > best, s stale, p pending (owed to a peer that fell behind)\n    {:<20} {:<10} {:<18} {:>6} {:>6}  {:<16} PATH",
        "NETWORK", if received { "IMPORT" } else { "FROM" }, "NEXT HOP", "MED", "LP", "SIGNATURE"
    );
    // The fixed columns, and the AS path with the origin code.
    let cols = |a: &Value| -> (String, String) {
        let n = |v: &Value| v.as_u64().map(|x| x.to_string()).unwrap_or("-".into());
        let origin = match a["origin"].as_str() {
            Some("igp") => "i",
            Some("egp") => "e",
            _ => "?",
        };
        (
            format!(
                "{:<18} {:>6} {:>6}",
                s(&a["next_hop"]),
                n(&a["med"]),
                n(&a["local_pref"])
            ),
            format!("{} {origin}", s(&a["as_path"])).trim().to_string(),
        )
    };
    let extras = |a: &Value| -> Vec<String> {
        let list = |k: &str| -> String {
            a[k].as_array()
                .map(|v| v.iter().map(s).collect::<Vec<_>>().join(" "))
                .unwrap_or_default()
        };
        let mut out = Vec::new();
        for (k, name) in [
            ("communities", "communities"),
            ("large_communities", "large communities"),
            ("extended_communities", "extended communities"),
            ("cluster_list", "cluster list"),
        ] {
            let v = list(k);
            if !v.is_empty() {
                out.push(format!("{name} {v}"));
            }
        }
        if let Some(o) = a["originator_id"].as_str() {
            out.push(format!("originator {o}"));
        }
        if let Some(ag) = a["aggregator"].as_str() {
            out.push(format!("aggregator {ag}"));
        }
        if a["atomic_aggregate"].as_bool() == Some(true) {
            out.push("atomic-aggregate".into());
        }
        out
    };
    let line = |codes: &str, net: &str, what: &str, a: &Value, sig: &Value| {
        let (head, path) = cols(a);
        println!(
            "{codes:<3} {net:<20} {what:<10} {head}  {:<16} {path}",
            sig.as_str().unwrap_or("-"),
        );
        let x = extras(a);
        if !x.is_empty() {
            println!("{:<36}{}", "", x.join("; "));
        }
    };
    for r in &rows {
        let mut net = s(&r["prefix"]);
        if let Some(id) = r["path_id"].as_u64().filter(|i| *i != 0) {
            net = format!("{net} id {id}");
        }
        if received {
            let codes = format!(
                "{}{}",
                if r["best"].as_bool() == Some(true) {
                    ">"
                } else {
                    ""
                },
                if r["stale"].as_bool() == Some(true) {
                    "s"
                } else {
                    ""
                }
            );
            let import = s(&r["import"]);
            if r["pre_policy"].is_object() {
                line(&codes, &net, "received", &r["pre_policy"], &Value::Null);
            }
            if r["post_policy"].is_object() {
                line(&codes, &net, &import, &r["post_policy"], &r["signature"]);
            } else {
                println!(
                    "{codes:<3} {net:<20} {:<10} ({})",
                    import,
                    r["reason"].as_str().unwrap_or("not installed")
                );
            }
        } else {
            let codes = if r["pending"].as_bool() == Some(true) {
                "p"
            } else {
                ">"
            };
            line(codes, &net, &s(&r["from"]), &r["attrs"], &r["signature"]);
        }
    }
    println!(
        "Total: {} {}",
        rows.len(),
        if received {
            "received paths"
        } else {
            "advertised paths"
        }
    );
}

fn print_capture(d: &Value) {
    println!("capture mode {}: {}", s(&d["mode"]), s(&d["mechanism"]));
    if let Some(p) = d["provider"].as_str().filter(|p| !p.is_empty()) {
        println!("provider: {p}");
    }
    if let Some(e) = d["provider_error"].as_str() {
        println!("PROVIDER CLIENT NOT RUNNING: {e}");
    }
    if d["gate"] != Value::Null {
        println!("gate: {}", d["gate"]);
    }
    if let Some(n) = d["dataplane_stalls"].as_u64().filter(|n| *n > 0) {
        println!(
            "dataplane stalls: {n} (each closed the gate until VRRP re-confirmed this router)"
        );
    }
    if let Some(w) = d["wan_track"].as_object() {
        println!(
            "WAN health for keepalived ({}): {}{}",
            s(&w["file"]),
            match w["wan_up"].as_bool() {
                Some(true) => "up (0)",
                Some(false) => "DOWN (1: keepalived goes to FAULT)",
                None => "not written yet",
            },
            w["last_error"]
                .as_str()
                .map(|e| format!("; WRITE FAILED: {e}"))
                .unwrap_or_default()
        );
    }
    if let Some(n) = d["stall_holds"].as_u64().filter(|n| *n > 0) {
        println!(
            "stalls: {n} (provider changes paused, then every /32 observed again){}",
            if d["stall_hold_until_unix_ms"].is_u64() {
                "; PAUSED NOW"
            } else {
                ""
            }
        );
    }
    if let Some(n) = d["fenced_total"].as_u64() {
        println!(
            "in flight {}, errors {}, fenced (stale, skipped) {}, released to nobody (captured-from NIC gone) {}",
            d["in_flight"], d["errors_total"], n, d["released_holder_gone_total"]
        );
    }
    if let Some(n) = d["over_quota"].as_u64().filter(|n| *n > 0) {
        println!(
            "QUOTA ALARM: {n} /32(s) cannot be captured, every NIC is at the provider's address quota: {}",
            d["quota_alarm"].as_str().unwrap_or("")
        );
    }
    if let Some(b) = d["batch"].as_object() {
        let n = |k: &str| b.get(k).and_then(Value::as_u64).unwrap_or(0);
        println!(
            "provider calls (/32s carried): observe {} ({}), capture {} ({}), release {} ({}), hand back {} ({}); largest batch {}",
            n("observe_calls"),
            n("observed_ips"),
            n("capture_calls"),
            n("captured_ips"),
            n("release_calls"),
            n("released_ips"),
            n("hand_back_calls"),
            n("handed_back_ips"),
            n("largest_batch")
        );
    }
    for b in d["budgets"].as_array().into_iter().flatten() {
        println!(
            "API budget {}: {:.1} of {} tokens ({} kept in reserve, +{}/s), {} calls, {} waited, {} throttle replies{}",
            s(&b["name"]),
            b["tokens"].as_f64().unwrap_or(0.0),
            b["capacity"],
            b["reserve"],
            b["refill_per_s"],
            b["calls"],
            b["waited"],
            b["throttled"],
            b["paused_ms"]
                .as_u64()
                .map(|m| format!("; PAUSED {m} ms (provider said slow down)"))
                .unwrap_or_default()
        );
    }
    if let Some(f) = d["origins_file"].as_str() {
        println!(
            "captured from (handed back there on release): {} remembered in {f}",
            d["origins_remembered"]
        );
    }
    if let Some(e) = d["origins_error"].as_str() {
        println!("ORIGINS NOT SAVED: {e}");
    }
    if let Some(ips) = d["ips"].as_object() {
        println!(
            "{:<16} {:<8} {:<10} {:<24} {:<24} {:>8} {:>6} {:>10}  LAST ERROR / NOTE",
            "IP",
            "DESIRED",
            "PHASE",
            "OBSERVED",
            "CAPTURED FROM",
            "ATTEMPTS",
            "FENCED",
            "CONFIRM-MS"
        );
        for (ip, v) in ips {
            println!(
                "{:<16} {:<8} {:<10} {:<24} {:<24} {:>8} {:>6} {:>10}  {}",
                ip,
                s(&v["desired"]),
                s(&v["phase"]),
                v["observed"].as_str().unwrap_or("-"),
                v["captured_from"].as_str().unwrap_or("-"),
                v["attempts"],
                v["fenced"],
                v["confirm_ms"]
                    .as_u64()
                    .map(|m| m.to_string())
                    .unwrap_or("-".into()),
                v["last_error"]
                    .as_str()
                    .or(v["note"].as_str())
                    .unwrap_or("")
            );
        }
    }
    for f in d["fencing"]["recent"].as_array().into_iter().flatten() {
        println!(
            "fenced: {} {} planned from {} (now {} {}) before {}",
            s(&f["ip"]),
            s(&f["planned"]),
            s(&f["planned_signature"]),
            f["current"].as_str().unwrap_or("none"),
            f["current_signature"].as_str().unwrap_or(""),
            s(&f["step"])
        );
    }
}

/// Adds to each link-local next hop of the explained underlay route the
/// MAC the dataplane resolved for it (its `neighbors6` table), live.
fn resolve_link_locals(d: &mut Value, dataplane: &std::path::Path) {
    // `get_mut`, not indexing: IndexMut would turn a null into an object.
    let Some(via) = d
        .get_mut("underlay")
        .and_then(|u| u.get_mut("via"))
        .and_then(|v| v.as_array_mut())
    else {
        return;
    };
    let n6 = admin(dataplane, &AdminRequest::Neighbors6);
    for v in via {
        v["resolved"] = match &n6 {
            Err(e) => Value::String(format!(
                "unknown: dataplane admin socket {}: {e:#}",
                dataplane.display()
            )),
            Ok(n6) => {
                let hit = n6["neighbors"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|n| n["port"] == v["port"] && n["ip"] == v["link_local"]);
                match hit {
                    Some(n) => serde_json::json!({"mac": n["mac"], "state": n["state"], "router": n["router"]}),
                    None => Value::String(
                        "NOT RESOLVED: the dataplane has no IPv6 neighbor entry for it yet (packets wait for its NS/NA; counter neighbor6_unresolved)".into(),
                    ),
                }
            }
        };
    }
}

/// Adds what only the dataplane knows to an explain answer: the tunnel as
/// the dataplane runs it (kind, transport addresses, MTU, WireGuard session
/// and counters), the kernel interfaces of the ports (exception TAPs), and
/// the `cerctl dataplane capture` commands for the capture points.
fn explain_from_dataplane(d: &mut Value, dataplane: &std::path::Path) {
    let ip = s(&d["ip"]);
    let sock = dataplane.display().to_string();
    let unreachable =
        |e: &anyhow::Error| Value::String(format!("unknown: dataplane admin socket {sock}: {e:#}"));
    if let Some(id) = d["transport"]["tunnel"]["id"].as_u64() {
        d["transport"]["tunnel"]["dataplane"] = match admin(dataplane, &AdminRequest::Tunnels) {
            Err(e) => unreachable(&e),
            Ok(list) => list
                .as_array()
                .into_iter()
                .flatten()
                .find(|t| t["id"].as_u64() == Some(id))
                .cloned()
                .unwrap_or_else(|| {
                    Value::String(format!(
                        "NOT IN THE DATAPLANE: tunnel {id} is not configured there (cerctl dataplane show tunnels)"
                    ))
                }),
        };
    }
    // The outer addresses as the dataplane encapsulates them.
    let live = &d["transport"]["tunnel"]["dataplane"];
    if let (Some(l), Some(r)) = (live["local"].as_str(), live["remote"].as_str()) {
        let (l, r) = (l.to_string(), r.to_string());
        if d["capture_points"]["outer"].is_object() {
            d["capture_points"]["outer"]["filter"] =
                Value::String(format!("host {l} and host {r}"));
        }
        d["no_nat_proof"]["outer_expect"] = Value::String(format!(
            "on the outer points src/dst are the CER transport addresses {l} and {r}"
        ));
    }
    let ports = admin(dataplane, &AdminRequest::Ports);
    let mut kernel = Vec::new();
    if let Ok(ports) = &ports {
        for p in ports.as_array().into_iter().flatten() {
            if let Some(tap) = p["exception_tap"].as_str() {
                kernel.push(serde_json::json!({
                    "port": p["name"],
                    "interface": tap,
                    "sees": "the exception path only (ARP, ICMP and BGP to the router itself), not transit traffic",
                    "command": format!("tcpdump -eni {tap} host {ip}"),
                }));
            }
        }
    }
    d["capture_points"]["kernel_interfaces"] = match &ports {
        Err(e) => unreachable(e),
        Ok(_) => Value::Array(kernel),
    };
    let file = |side: &str| format!("/tmp/cer-{ip}-{side}.pcapng");
    for side in ["inner", "outer"] {
        let cp = &d["capture_points"][side];
        if !cp.is_object() {
            continue;
        }
        let points: Vec<String> = cp["points"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| format!("--point {}", s(p)))
            .collect();
        let cmd = format!(
            "cerctl dataplane --admin-socket {sock} capture {} --filter '{}' --count 20 --duration 30s -w {}",
            points.join(" "),
            s(&cp["filter"]),
            file(side)
        );
        d["capture_points"][side]["command"] = Value::String(cmd);
    }
    // Q7: both sides in one capture, and what tshark must show.
    let inner = &d["capture_points"]["inner"];
    let outer = &d["capture_points"]["outer"];
    let mut points: Vec<String> = Vec::new();
    for p in inner["points"]
        .as_array()
        .into_iter()
        .chain(outer["points"].as_array())
        .flatten()
    {
        points.push(format!("--point {}", s(p)));
    }
    let filter = if outer.is_object() {
        format!("({}) or ({})", s(&inner["filter"]), s(&outer["filter"]))
    } else {
        s(&inner["filter"])
    };
    let both = file("both");
    d["no_nat_proof"]["capture"] = Value::String(format!(
        "cerctl dataplane --admin-socket {sock} capture {} --filter '{filter}' --count 40 --duration 30s -w {both}",
        points.join(" ")
    ));
    d["no_nat_proof"]["read"] = Value::String(format!(
        "tshark -r {both} -T fields -e frame.interface_name -e ip.src -e ip.dst"
    ));
}

fn print_explain(d: &Value) {
    println!(
        "{}{}",
        s(&d["ip"]),
        if d["in_pool"].as_bool() == Some(true) {
            ""
        } else {
            "  (not inside the endpoint pool)"
        }
    );
    println!("1. Owner (best marker-valid path):");
    match d["owner"].as_object() {
        Some(o) => {
            println!(
                "   {} {} via next hop {} (local-pref {}, originator {})",
                s(&o["identity"]),
                if o["local"].as_bool() == Some(true) {
                    "= this node"
                } else {
                    "(remote)"
                },
                s(&o["next_hop"]),
                o["local_pref"],
                s(&o["originator"])
            );
            println!(
                "   why: {}; path signature {}",
                s(&o["why"]),
                s(&o["signature"])
            );
        }
        None => println!("   none: no marker-valid path"),
    }
    for c in d["candidates"].as_array().into_iter().flatten() {
        println!(
            "   candidate {} nh {} lp {} from {}: marker {}",
            c["identity"].as_str().unwrap_or("(no identity)"),
            s(&c["next_hop"]),
            c["local_pref"],
            s(&c["from"]),
            if c["marker_present"].as_bool() == Some(true) {
                "present"
            } else {
                "ABSENT (path ignored)"
            }
        );
    }
    println!("2. Transport: workload {}", s(&d["transport"]["workload"]));
    let t = &d["transport"]["tunnel"];
    if t.is_object() {
        let dp = &t["dataplane"];
        if dp.is_object() {
            println!(
                "   tunnel {}: {} {} -> {}, inner MTU {} (outer overhead {} bytes){}",
                t["id"],
                s(&dp["kind"]),
                s(&dp["local"]),
                s(&dp["remote"]),
                dp["mtu"],
                dp["overhead"],
                match dp["gre_key"].as_u64() {
                    Some(k) => format!(", GRE key {k}"),
                    None => String::new(),
                }
            );
            let w = &dp["wireguard"];
            if w.is_object() {
                println!(
                    "   wireguard: session {}, last handshake {} ms ago, {} handshakes, tx {} B, rx {} B, est. loss {} ppm",
                    if w["session_established"].as_bool() == Some(true) {
                        "established"
                    } else {
                        "NOT established"
                    },
                    w["handshake_age_ms"],
                    w["handshakes"],
                    w["tx_bytes"],
                    w["rx_bytes"],
                    w["estimated_loss_ppm"]
                );
            }
        } else {
            println!("   tunnel {}: {}", t["id"], s(dp));
        }
    }
    for n in d["transport"]["ibgp_sessions"]
        .as_array()
        .into_iter()
        .flatten()
    {
        println!("   iBGP over {} ({})", s(&n["neighbor"]), s(&n["state"]));
    }
    println!("3. Capture points (on the polling cores: cerctl dataplane capture):");
    for side in ["inner", "outer"] {
        let c = &d["capture_points"][side];
        if c.is_object() {
            println!("   {side}: {}", s(&c["what"]));
            println!("     {}", s(&c["command"]));
        } else {
            println!("   {side}: none on this node (no tunnel carries it here)");
        }
    }
    match &d["capture_points"]["kernel_interfaces"] {
        Value::Array(k) => {
            for k in k {
                println!(
                    "   kernel: {} (port {}): {}; {}",
                    s(&k["interface"]),
                    s(&k["port"]),
                    s(&k["sees"]),
                    s(&k["command"])
                );
            }
        }
        other => println!("   kernel interfaces: {}", s(other)),
    }
    println!(
        "4. Local FIB: {} (dataplane {}, snapshot {})",
        d["fib"]["note"].as_str().unwrap_or("not imported"),
        if d["fib"]["dataplane_connected"].as_bool() == Some(true) {
            "connected"
        } else {
            "NOT connected"
        },
        d["fib"]["dataplane_snapshot"]
    );
    if d["underlay"].is_object() {
        let u = &d["underlay"];
        println!(
            "   underlay route {}{}: {}",
            s(&u["prefix"]),
            if u["ecmp"].as_bool() == Some(true) {
                " (ECMP)"
            } else {
                ""
            },
            s(&u["note"])
        );
        for v in u["via"].as_array().into_iter().flatten() {
            let r = &v["resolved"];
            println!(
                "   via {} on port {} (BGP unnumbered on {}): {}",
                s(&v["link_local"]),
                s(&v["port"]),
                s(&v["interface"]),
                match r["mac"].as_str() {
                    Some(mac) => format!("resolved to MAC {mac} ({})", s(&r["state"])),
                    None => r.as_str().unwrap_or("MAC not asked").to_string(),
                }
            );
        }
    }
    println!(
        "5. Capture (ingress): {}\n   here: {}",
        s(&d["capture"]["mechanism"]),
        d["capture"]["this_ip"].as_str().unwrap_or("-")
    );
    if let Some(e) = d["capture"]["provider_error"].as_str() {
        println!("   PROVIDER CLIENT NOT RUNNING: {e}");
    }
    if let Some(n) = d["capture"]["note"].as_str() {
        println!("   note: {n}");
    }
    if let Some(n) = d["capture"]["duplicate_holder"].as_str() {
        println!("   {n}");
    }
    println!(
        "6. Fencing: {} stale actions fenced for this /32 ({})",
        d["fencing"]["stale_actions_fenced"],
        s(&d["fencing"]["note"])
    );
    for f in d["fencing"]["recent"].as_array().into_iter().flatten() {
        println!(
            "   skipped {} planned from signature {} before {} (current: {} {})",
            s(&f["planned"]),
            s(&f["planned_signature"]),
            s(&f["step"]),
            f["current"].as_str().unwrap_or("none"),
            f["current_signature"].as_str().unwrap_or("")
        );
    }
    let p = &d["no_nat_proof"];
    println!(
        "7. Prove no NAT:\n   {}\n   {}",
        s(&p["capture"]),
        s(&p["read"])
    );
    println!("   {}\n   {}", s(&p["inner_expect"]), s(&p["outer_expect"]));
}

fn s(v: &Value) -> String {
    v.as_str()
        .map(String::from)
        .unwrap_or_else(|| v.to_string())
}

/// A core's busy share and forwarding cost, from its TSC cycle counters:
/// busy = polls that received packets; cycles/packet = busy cycles over the
/// packets received on NIC ports (TAP traffic excluded).
fn cycles_line(core: &Value) -> Option<String> {
    let n = |k: &str| core[k].as_u64().unwrap_or(0);
    let (busy, idle) = (n("busy_cycles"), n("idle_cycles"));
    if busy + idle == 0 {
        return None;
    }
    let packets: u64 = core["rx"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(k, _)| !k.starts_with("tap:"))
        .filter_map(|(_, v)| v.as_u64())
        .sum();
    let mut line = format!(
        "busy {:.1}% ({} busy / {} idle polls)",
        busy as f64 * 100.0 / (busy + idle) as f64,
        n("busy_polls"),
        n("idle_polls")
    );
    if packets > 0 {
        line += &format!(", {:.0} cycles/packet", busy as f64 / packets as f64);
    }
    let hz = n("tsc_hz");
    if hz > 0 {
        line += &format!(", {:.1} s measured", (busy + idle) as f64 / hz as f64);
    }
    if n("stalls") > 0 {
        line += &format!(
            ", {} stalls (polls over 100 us: the core was taken away)",
            n("stalls")
        );
    }
    Some(line)
}

/// How a core sleeps when idle and what wakes it (poll modes adaptive/shared).
fn wake_line(core: &Value) -> Option<String> {
    let mode = core["poll_mode"].as_str().unwrap_or("");
    if mode.is_empty() || mode == "busy" {
        return None;
    }
    let list = |k: &str| -> Vec<String> {
        core[k]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(String::from))
            .collect()
    };
    let n = |k: &str| core[k].as_u64().unwrap_or(0);
    let mut line = format!(
        "poll mode {mode}: {} sleeps ({} woken by traffic, {} by the timer)",
        n("sleeps"),
        n("wake_events"),
        n("wake_timeouts")
    );
    let sources = list("wake_sources");
    if !sources.is_empty() {
        line += &format!("; woken by {}", sources.join(", "));
    }
    let timer = list("wake_timer_for");
    if !timer.is_empty() {
        line += &format!(
            "; timed back-off every {} us for {}",
            n("wake_bound_us"),
            timer.join(", ")
        );
    }
    Some(line)
}

fn print_counters(data: &Value) {
    for core in data.as_array().into_iter().flatten() {
        println!(
            "lcore {} (snapshot {}, {} busy polls)",
            core["lcore"], core["snapshot_version"], core["bursts"]
        );
        if let Some(line) = cycles_line(core) {
            println!("  cycles  {line}");
        }
        if let Some(line) = wake_line(core) {
            println!("  idle    {line}");
        }
        for (title, key) in [
            ("rx", "rx"),
            ("tx", "tx"),
            ("events", "events"),
            ("drops", "drops"),
        ] {
            let nonzero: Vec<String> = core[key]
                .as_object()
                .into_iter()
                .flatten()
                .filter(|(_, v)| v.as_u64() != Some(0))
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            println!(
                "  {title:<7} {}",
                if nonzero.is_empty() {
                    "-".into()
                } else {
                    nonzero.join(" ")
                }
            );
        }
    }
}
