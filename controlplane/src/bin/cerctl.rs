//! cerctl: the CER operator's CLI.
//!
//! `cerctl dataplane show ...` reads the dataplane's admin socket;
//! `cerctl dataplane feed ...` is a debug FIB feeder (cer-control is the
//! production feeder: a full sync from it replaces what this installed).

use anyhow::Result;
use cer_controlplane::dataplane::{admin, endpoint_action, parse_via, FibFile};
use cer_shared::admin::AdminRequest;
use cer_shared::feed::{FeedCommand, FibChange};
use cer_shared::feed_client::FeedClient;
use cer_shared::{Ipv4Prefix, MacAddr};
use clap::{Parser, Subcommand};
use serde_json::Value;
use std::net::Ipv4Addr;
use std::path::PathBuf;

#[derive(Parser)]
#[command(version, about = "CER operator CLI")]
struct Cli {
    #[command(subcommand)]
    cmd: Top,
}

#[derive(Subcommand)]
enum Top {
    /// Inspect or drive cer-dataplane directly.
    #[command(alias = "dp")]
    Dataplane {
        /// The dataplane admin socket.
        #[arg(long, default_value = "/run/cer/dataplane.sock", global = true)]
        admin_socket: PathBuf,
        #[command(subcommand)]
        cmd: Dp,
    },
}

#[derive(Subcommand)]
enum Dp {
    /// Show dataplane state.
    Show {
        #[arg(value_enum)]
        what: ShowWhat,
        /// Raw JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Debug FIB feeder.
    Feed {
        /// The dataplane feed socket.
        #[arg(long, default_value = "/run/cer/feed.sock")]
        socket: PathBuf,
        #[command(subcommand)]
        cmd: FeedCmd,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ShowWhat {
    State,
    Counters,
    Ports,
    Neighbors,
    ProxyArp,
    Snapshot,
    Fib,
    Feed,
}

#[derive(Subcommand)]
enum FeedCmd {
    /// Replace the whole feed state with a FIB file (TOML).
    Sync {
        file: PathBuf,
    },
    /// Set a /32 endpoint: deliver on a port, into a tunnel, or drop.
    EndpointSet {
        ip: Ipv4Addr,
        #[arg(long)]
        port: Option<String>,
        #[arg(long)]
        tunnel: Option<u32>,
        #[arg(long)]
        drop: bool,
    },
    EndpointDel {
        ip: Ipv4Addr,
    },
    /// Set an underlay route; `--via PORT[:GATEWAY]`, repeat for ECMP.
    RouteSet {
        prefix: Ipv4Prefix,
        #[arg(long, required = true)]
        via: Vec<String>,
    },
    RouteDel {
        prefix: Ipv4Prefix,
    },
    NeighborSet {
        port: String,
        ip: Ipv4Addr,
        mac: MacAddr,
    },
    NeighborDel {
        port: String,
        ip: Ipv4Addr,
    },
    ProxyArpAdd {
        ip: Ipv4Addr,
    },
    ProxyArpDel {
        ip: Ipv4Addr,
    },
    /// Open or close the proxy-ARP gate.
    ProxyArpActive {
        #[arg(action = clap::ArgAction::Set)]
        active: bool,
    },
    /// Send gratuitous ARPs for IP on PORT.
    Garp {
        port: String,
        ip: Ipv4Addr,
        #[arg(long, default_value_t = 3)]
        count: u8,
    },
}

fn main() {
    if let Err(e) = run(Cli::parse()) {
        eprintln!("cerctl: error: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.cmd {
        Top::Dataplane { admin_socket, cmd } => match cmd {
            Dp::Show { what, json } => show(&admin_socket, what, json),
            Dp::Feed { socket, cmd } => feed(&socket, cmd),
        },
    }
}

fn feed(socket: &std::path::Path, cmd: FeedCmd) -> Result<()> {
    let mut c = FeedClient::connect(socket, "cerctl")?;
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
        ShowWhat::ProxyArp => AdminRequest::ProxyArp,
        ShowWhat::Snapshot => AdminRequest::Snapshot,
        ShowWhat::Fib => AdminRequest::Fib { limit: Some(1000) },
        ShowWhat::Feed => AdminRequest::Feed,
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
                "{:<8} {:<16} {:<18} {:<18} {:>5} {:<5} {:>12} {:>12}",
                "PORT", "DRIVER", "MAC", "ADDRESS", "MTU", "LINK", "RX", "TX"
            );
            for p in data.as_array().into_iter().flatten() {
                println!(
                    "{:<8} {:<16} {:<18} {:<18} {:>5} {:<5} {:>12} {:>12}",
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
                    p["hw"]["opackets"]
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
                    .map(|h| match h["gateway"].as_str() {
                        Some(gw) => format!("{} via {gw}", s(&h["port"])),
                        None => format!("{} on-link", s(&h["port"])),
                    })
                    .collect();
                println!("  {:<20} {}", s(&r["prefix"]), hops.join(", "));
            }
        }
        _ => println!("{}", serde_json::to_string_pretty(&data)?),
    }
    Ok(())
}

fn s(v: &Value) -> String {
    v.as_str()
        .map(String::from)
        .unwrap_or_else(|| v.to_string())
}

fn print_counters(data: &Value) {
    for core in data.as_array().into_iter().flatten() {
        println!(
            "lcore {} (snapshot {}, {} busy polls)",
            core["lcore"], core["snapshot_version"], core["bursts"]
        );
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
