//! Observation points: where a capture sees packets (a NIC port's rx or tx,
//! a tunnel's inner or outer packets), their names on the command line
//! (`port:lan:rx`, `tunnel:3:inner`) and in pcapng (`port lan rx`), and the
//! link type of what each one sees.

use super::libpcap::Dlt;
use std::fmt;

/// One observation point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Point {
    /// Frames received on a NIC port (by config index), as the driver gave them.
    PortRx(u16),
    /// Frames handed to a NIC port's driver for transmit.
    PortTx(u16),
    /// A tunnel's inner IPv4 packets: before encapsulation (outbound) and
    /// after decapsulation (inbound).
    TunnelInner(u32),
    /// A tunnel's outer IPv4 packets: after encapsulation (outbound) and
    /// before decapsulation (inbound).
    TunnelOuter(u32),
}

impl Point {
    /// Port points see Ethernet frames; tunnel points see IPv4 packets with
    /// no link-layer header (pcapng LINKTYPE_RAW, filters compiled for DLT_RAW).
    pub fn link(self) -> Dlt {
        match self {
            Point::PortRx(_) | Point::PortTx(_) => Dlt::Ethernet,
            Point::TunnelInner(_) | Point::TunnelOuter(_) => Dlt::Raw,
        }
    }

    /// The command-line name (`port:lan:rx`, `tunnel:3:outer`).
    pub fn name(self, ports: &[String]) -> String {
        let port = |p: u16| ports.get(usize::from(p)).cloned().unwrap_or_default();
        match self {
            Point::PortRx(p) => format!("port:{}:rx", port(p)),
            Point::PortTx(p) => format!("port:{}:tx", port(p)),
            Point::TunnelInner(t) => format!("tunnel:{t}:inner"),
            Point::TunnelOuter(t) => format!("tunnel:{t}:outer"),
        }
    }

    /// The pcapng interface name (`port lan rx`, `tunnel 3 inner`).
    pub fn if_name(self, ports: &[String]) -> String {
        self.name(ports).replace(':', " ")
    }

    /// Every point of a dataplane with these ports and tunnel ids.
    pub fn all(ports: &[String], tunnels: &[u32]) -> Vec<Point> {
        let mut v = Vec::new();
        for p in 0..ports.len() as u16 {
            v.push(Point::PortRx(p));
            v.push(Point::PortTx(p));
        }
        for &t in tunnels {
            v.push(Point::TunnelInner(t));
            v.push(Point::TunnelOuter(t));
        }
        v
    }

    /// Parses a command-line name against the dataplane's ports and tunnels.
    pub fn parse(s: &str, ports: &[String], tunnels: &[u32]) -> Result<Point, PointError> {
        let unknown = || PointError {
            point: s.into(),
            why: String::new(),
            valid: Point::all(ports, tunnels)
                .iter()
                .map(|p| p.name(ports))
                .collect(),
        };
        let why = |why: String| PointError { why, ..unknown() };
        let parts: Vec<&str> = s.split(':').collect();
        match parts.as_slice() {
            ["port", name, dir] => {
                let Some(i) = ports.iter().position(|p| p == name) else {
                    return Err(why(format!("no port named {name:?}")));
                };
                match *dir {
                    "rx" => Ok(Point::PortRx(i as u16)),
                    "tx" => Ok(Point::PortTx(i as u16)),
                    _ => Err(why(format!("a port point is rx or tx, not {dir:?}"))),
                }
            }
            ["tunnel", id, side] => {
                let Ok(id) = id.parse::<u32>() else {
                    return Err(why(format!("tunnel id {id:?} is not a number")));
                };
                if !tunnels.contains(&id) {
                    return Err(why(format!("no tunnel {id}")));
                }
                match *side {
                    "inner" => Ok(Point::TunnelInner(id)),
                    "outer" => Ok(Point::TunnelOuter(id)),
                    _ => Err(why(format!(
                        "a tunnel point is inner or outer, not {side:?}"
                    ))),
                }
            }
            _ => Err(why(
                "expected port:NAME:rx|tx or tunnel:ID:inner|outer".into()
            )),
        }
    }
}

/// An observation point that does not exist, with the ones that do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PointError {
    pub point: String,
    pub why: String,
    pub valid: Vec<String>,
}

impl fmt::Display for PointError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "no observation point {:?} ({}); valid points: {}",
            self.point,
            self.why,
            self.valid.join(", ")
        )
    }
}

impl std::error::Error for PointError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_name() {
        let ports = vec!["lan".to_string(), "wan".to_string()];
        let tunnels = [3];
        for s in [
            "port:lan:rx",
            "port:wan:tx",
            "tunnel:3:inner",
            "tunnel:3:outer",
        ] {
            let p = Point::parse(s, &ports, &tunnels).unwrap();
            assert_eq!(p.name(&ports), s);
        }
        assert_eq!(Point::PortRx(0).if_name(&ports), "port lan rx");
        let e = Point::parse("port:dmz:rx", &ports, &tunnels).unwrap_err();
        let text = e.to_string();
        assert!(text.contains("no port named \"dmz\""), "{text}");
        assert!(text.contains("tunnel:3:outer"), "{text}");
        let e = Point::parse("tunnel:4:inner", &ports, &tunnels).unwrap_err();
        assert!(e.to_string().contains("no tunnel 4"), "{e}");
        assert!(Point::parse("tunnel:3:middle", &ports, &tunnels).is_err());
        assert!(Point::parse("lan", &ports, &tunnels).is_err());
    }
}
