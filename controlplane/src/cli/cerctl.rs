//! cerctl's command line (clap): the binary parses it, `cer-docgen` renders
//! its man page and shell completions from it.

use cer_shared::{Ipv4Prefix, MacAddr};
use clap::{Parser, Subcommand};
use std::net::Ipv4Addr;
use std::path::PathBuf;

#[derive(Parser)]
#[command(name = "cerctl", version, about = "CER operator CLI")]
pub struct Cli {
    #[command(subcommand)]
    pub cmd: Top,
}

#[derive(Subcommand)]
pub enum Top {
    /// Show cer-control state.
    Show {
        #[command(subcommand)]
        what: ShowCmd,
        #[arg(long, global = true)]
        json: bool,
        /// cer-control's admin socket.
        #[arg(long, default_value = "/run/cer/control.sock", global = true)]
        socket: PathBuf,
    },
    /// Endpoints this node owns (advertises).
    Endpoint {
        #[command(subcommand)]
        cmd: EndpointCmd,
        #[arg(long, default_value = "/run/cer/control.sock", global = true)]
        socket: PathBuf,
    },
    /// Who owns a /32, how it is carried and captured, and how to prove no NAT.
    Explain {
        ip: Ipv4Addr,
        #[arg(long)]
        json: bool,
        #[arg(long, default_value = "/run/cer/control.sock")]
        socket: PathBuf,
        /// The dataplane's admin socket: link-local next hops are shown with
        /// the MAC the dataplane resolved for them.
        #[arg(long, default_value = "/run/cer/dataplane.sock")]
        dataplane_socket: PathBuf,
    },
    /// Re-read cer-control's configuration file and apply what changed
    /// (neighbors added or removed, policies, networks, tunnels) without a
    /// session reset; a change that needs a session reset or a restart
    /// refuses the whole reload, each such field named. SIGHUP does the same.
    Reload {
        #[arg(long)]
        json: bool,
        #[arg(long, default_value = "/run/cer/control.sock")]
        socket: PathBuf,
    },
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
pub enum ShowCmd {
    /// BGP state.
    Bgp {
        #[command(subcommand)]
        what: BgpShow,
    },
    /// BFD sessions to the neighbors with `bfd = true`, and refused packets.
    Bfd,
    /// The owner of every endpoint /32.
    Owners,
    /// Live node markers.
    Markers,
    /// What cer-control feeds the dataplane.
    Fib,
    /// Recent RIB-trap (ownership change) events.
    Trap {
        #[arg(long)]
        since: Option<u64>,
    },
    /// Process status.
    Status,
    /// Capture plane: mechanism, reconciler state per /32, fenced actions.
    Capture,
}

#[derive(Subcommand)]
pub enum BgpShow {
    Summary,
    /// The Loc-RIB: every candidate path, the best marked.
    Rib {
        prefix: Option<String>,
    },
    /// One neighbor's routes: what it sent (before and after import
    /// policy) or what it was sent (after export policy).
    Neighbor {
        /// The neighbor's address, or an unnumbered neighbor's interface.
        peer: String,
        #[arg(value_enum)]
        routes: NeighborRoutes,
        /// Only this prefix (an address means its /32).
        prefix: Option<String>,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum NeighborRoutes {
    /// Its Adj-RIB-In: each path as received and as imported, with the import outcome.
    ReceivedRoutes,
    /// What it was sent: its update group's Adj-RIB-Out without its own paths.
    AdvertisedRoutes,
}

#[derive(Subcommand)]
pub enum EndpointCmd {
    /// Advertise IP from this node.
    Add {
        ip: Ipv4Addr,
        #[arg(long)]
        local_pref: Option<u32>,
    },
    /// Stop advertising IP from this node.
    Remove { ip: Ipv4Addr },
    /// Take ownership of IP: advertise it here above the current owner's preference.
    Move { ip: Ipv4Addr },
}

#[derive(Subcommand)]
pub enum Dp {
    /// Show dataplane state.
    Show {
        #[arg(value_enum)]
        what: ShowWhat,
        /// Raw JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Capture packets on the polling cores into pcapng (NICs bound to
    /// vfio-pci are invisible to tcpdump). Port points see Ethernet frames;
    /// tunnel points see IPv4 packets without a link-layer header
    /// (LINKTYPE_RAW: the filter is compiled for raw IPv4). Ctrl-C stops it
    /// and leaves a complete file.
    Capture {
        /// Observation point, repeatable: `port:NAME:rx`, `port:NAME:tx`,
        /// `tunnel:ID:inner` (before encapsulation, after decapsulation) or
        /// `tunnel:ID:outer` (after encapsulation, before decapsulation).
        #[arg(long = "point", short = 'p', required = true)]
        points: Vec<String>,
        /// BPF filter (tcpdump syntax), compiled by libpcap.
        #[arg(long, short = 'f', default_value = "")]
        filter: String,
        /// Stop after this many packets.
        #[arg(long, short = 'c')]
        count: Option<u64>,
        /// Stop after this long (`10s`, `500ms`, `2m`; a bare number is seconds).
        #[arg(long, short = 'd', value_parser = parse_duration)]
        duration: Option<std::time::Duration>,
        /// Bytes kept of each packet (default 2048, at most 65535).
        #[arg(long, short = 's')]
        snaplen: Option<u32>,
        /// The pcapng file to write; `-` writes to stdout (pipe to `tshark -r -`).
        #[arg(long, short = 'w')]
        write: PathBuf,
    },
    /// Re-read the node file and apply what changed without a restart:
    /// static routes, tunnels other than WireGuard, proxy ARP per port and
    /// the ARP timers, published as one snapshot. A change that needs a
    /// restart (ports, cores, memory, sockets, WireGuard tunnels) refuses
    /// the whole reload, each such field named. SIGHUP does the same.
    Reload {
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
pub enum ShowWhat {
    State,
    Counters,
    Ports,
    Neighbors,
    /// IPv6 neighbors (RA/NS/NA) and each port's link-local address.
    Neighbors6,
    ProxyArp,
    Snapshot,
    Fib,
    Feed,
    /// Tunnels with WireGuard session state.
    Tunnels,
}

#[derive(Subcommand)]
pub enum FeedCmd {
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

/// `10s`, `500ms`, `2m`, or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let v: f64 = num
        .parse()
        .map_err(|_| format!("duration {s:?}: expected e.g. 10s, 500ms or 2m"))?;
    let secs = match unit {
        "ms" => v / 1000.0,
        "s" => v,
        "m" => v * 60.0,
        "h" => v * 3600.0,
        _ => {
            return Err(format!(
                "duration {s:?}: unit {unit:?} is not ms, s, m or h"
            ))
        }
    };
    if !secs.is_finite() || secs <= 0.0 {
        return Err(format!("duration {s:?}: must be positive"));
    }
    Ok(std::time::Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s").unwrap().as_secs(), 10);
        assert_eq!(parse_duration("3").unwrap().as_secs(), 3);
        assert_eq!(parse_duration("500ms").unwrap().as_millis(), 500);
        assert_eq!(parse_duration("2m").unwrap().as_secs(), 120);
        assert!(parse_duration("0").is_err());
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("s").is_err());
    }
}
