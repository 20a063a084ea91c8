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
