//! Config builders for the peer daemons: an iBGP speaker ([`IbgpConf`])
//! rendered as gobgpd TOML, FRR bgpd.conf or BIRD 2 config, and the
//! route-reflector / client shorthands the tests use.

use std::fmt::Write as _;

/// An iBGP speaker for the config builders: one session per neighbor, all in
/// `asn`, IPv4 unicast, local `networks` originated.
#[derive(Debug, Clone)]
pub struct IbgpConf<'a> {
    pub asn: u32,
    pub router_id: &'a str,
    /// Address the sessions use (gobgpd also listens only there).
    pub local_addr: &'a str,
    pub neighbors: &'a [&'a str],
    /// Neighbors are route-reflector clients (cluster id = router id).
    pub rr_clients: bool,
    /// Wait for neighbors to dial instead of dialing (gobgpd's own dial has a
    /// 5 s floor, so make gobgpd the passive end).
    pub passive: bool,
    /// Prefixes this speaker originates (gobgpd: add them with
    /// [`GoBgp::add_route`](super::GoBgp::add_route) instead; its config has no static routes).
    pub networks: &'a [&'a str],
}

/// gobgpd as a passive route reflector for `clients` (the clients dial).
pub fn gobgp_rr_config(asn: u32, router_id: &str, listen_addr: &str, clients: &[&str]) -> String {
    gobgp_config(&IbgpConf {
        asn,
        router_id,
        local_addr: listen_addr,
        neighbors: clients,
        rr_clients: true,
        passive: true,
        networks: &[],
    })
}

/// gobgpd TOML for an [`IbgpConf`] (`networks` is ignored).
pub fn gobgp_config(c: &IbgpConf) -> String {
    let mut t = format!(
        "[global.config]\n  as = {}\n  router-id = \"{}\"\n  local-address-list = [\"{}\"]\n",
        c.asn, c.router_id, c.local_addr
    );
    for n in c.neighbors {
        let _ = write!(
            t,
            "\n[[neighbors]]\n  [neighbors.config]\n    neighbor-address = \"{n}\"\n    peer-as = {}\n",
            c.asn
        );
        let _ = write!(
            t,
            "  [neighbors.transport.config]\n    local-address = \"{}\"\n    passive-mode = {}\n",
            c.local_addr, c.passive
        );
        // 1 s between connect attempts (gobgpd still waits ~5 s before its first).
        t.push_str("  [neighbors.timers.config]\n    connect-retry = 1\n");
        if c.rr_clients {
            let _ = write!(
                t,
                "  [neighbors.route-reflector.config]\n    route-reflector-client = true\n    route-reflector-cluster-id = \"{}\"\n",
                c.router_id
            );
        }
    }
    t
}

/// FRR bgpd.conf for an RR client of the reflectors `rrs`, originating `networks`.
pub fn frr_client_config(asn: u32, router_id: &str, rrs: &[&str], networks: &[&str]) -> String {
    frr_config(&IbgpConf {
        asn,
        router_id,
        local_addr: "",
        neighbors: rrs,
        rr_clients: false,
        passive: false,
        networks,
    })
}

/// FRR bgpd.conf for an [`IbgpConf`] (`local_addr` is used as update-source
/// when not empty). Connect retry is 1 s; networks need no IGP route.
pub fn frr_config(c: &IbgpConf) -> String {
    let mut t = format!(
        "hostname bgpd-{}\nlog stdout informational\n!\nrouter bgp {}\n bgp router-id {}\n bgp log-neighbor-changes\n no bgp default ipv4-unicast\n no bgp network import-check\n",
        c.router_id, c.asn, c.router_id
    );
    if c.rr_clients {
        let _ = writeln!(t, " bgp cluster-id {}", c.router_id);
    }
    for n in c.neighbors {
        let _ = writeln!(t, " neighbor {n} remote-as {}", c.asn);
        let _ = writeln!(t, " neighbor {n} timers connect 1");
        if !c.local_addr.is_empty() {
            let _ = writeln!(t, " neighbor {n} update-source {}", c.local_addr);
        }
        if c.passive {
            let _ = writeln!(t, " neighbor {n} passive");
        }
    }
    t.push_str(" address-family ipv4 unicast\n");
    for n in c.neighbors {
        let _ = writeln!(t, "  neighbor {n} activate");
        if c.rr_clients {
            let _ = writeln!(t, "  neighbor {n} route-reflector-client");
        }
    }
    for p in c.networks {
        let _ = writeln!(t, "  network {p}");
    }
    t.push_str(" exit-address-family\n!\n");
    t
}

/// BIRD protocol name of the session to `neighbor` in the builders'
/// configs: `n10_10_0_1` (use it with [`Bird::wait_established`](super::Bird::wait_established)).
pub fn bird_protocol_name(neighbor: &str) -> String {
    format!("n{}", neighbor.replace(['.', ':', '%'], "_"))
}

/// BIRD config for an RR client of `rrs`, originating `networks` (static
/// blackholes in protocol `local_nets`).
pub fn bird_client_config(
    asn: u32,
    router_id: &str,
    local_addr: &str,
    rrs: &[&str],
    networks: &[&str],
) -> String {
    bird_config(&IbgpConf {
        asn,
        router_id,
        local_addr,
        neighbors: rrs,
        rr_clients: false,
        passive: false,
        networks,
    })
}

/// BIRD config for an [`IbgpConf`]: one `protocol bgp` per neighbor named by
/// [`bird_protocol_name`], the neighbor on a shared subnet (`direct`, so
/// received next hops resolve on the interface), first connect after 1 s.
pub fn bird_config(c: &IbgpConf) -> String {
    let mut t = format!(
        "router id {};\nlog stderr all;\nprotocol device {{}}\nprotocol static local_nets {{\n  ipv4;\n",
        c.router_id
    );
    for p in c.networks {
        let _ = writeln!(t, "  route {p} blackhole;");
    }
    t.push_str("}\n");
    for n in c.neighbors {
        let _ = write!(
            t,
            "protocol bgp {} {{\n  local {} as {};\n  neighbor {n} as {};\n  direct;\n  connect delay time 1;\n  connect retry time 1;\n",
            bird_protocol_name(n),
            c.local_addr,
            c.asn,
            c.asn
        );
        if c.rr_clients {
            let _ = write!(t, "  rr client;\n  rr cluster id {};\n", c.router_id);
        }
        if c.passive {
            t.push_str("  passive on;\n");
        }
        t.push_str("  ipv4 { import all; export all; };\n}\n");
    }
    t
}
