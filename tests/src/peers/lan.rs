//! [`Lan`]: a layer-2 segment (a Linux bridge in a namespace of its own)
//! that test namespaces plug into.

use crate::{tag, Netns};
use anyhow::Result;

/// A layer-2 segment: a Linux bridge in a namespace of its own, with one veth
/// per attached namespace. Removed with its namespace on drop.
pub struct Lan {
    pub ns: Netns,
}

impl Lan {
    pub fn new() -> Result<Lan> {
        let ns = Netns::new("lan")?;
        ns.run(&["ip", "link", "add", "br0", "type", "bridge"])?;
        ns.run(&["ip", "link", "set", "br0", "up"])?;
        Ok(Lan { ns })
    }

    /// Plugs `ns` into the bridge as interface `iface` with address `cidr`.
    pub fn attach(&self, ns: &Netns, iface: &str, cidr: &str) -> Result<()> {
        let port = format!("lp{}", tag());
        crate::veth(&port, &self.ns, iface, ns)?;
        self.ns
            .run(&["ip", "link", "set", &port, "master", "br0"])?;
        self.ns.run(&["ip", "link", "set", &port, "up"])?;
        ns.addr(iface, cidr)
    }
}
