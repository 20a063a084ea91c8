//! ENI bookkeeping, no I/O: the addresses an ENI holds as EC2 reports them,
//! who holds an address among a set of ENIs, and where new captures go when
//! this router has several ENIs in the capture subnet and each holds at most
//! the instance type's `Ipv4AddressesPerInterface` (primary included).

use aws_sdk_ec2::types::NetworkInterface;
use cer_capture::Holding;
use std::collections::HashMap;
use std::net::Ipv4Addr;

/// The addresses of one ENI as EC2 reports them.
#[derive(Debug, Clone)]
pub struct EniAddrs {
    pub primary: Option<Ipv4Addr>,
    pub all: Vec<Ipv4Addr>,
}

pub fn addrs_of(eni: &NetworkInterface) -> EniAddrs {
    let primary = eni.private_ip_address().and_then(|a| a.parse().ok());
    let mut all: Vec<Ipv4Addr> = eni
        .private_ip_addresses()
        .iter()
        .filter_map(|p| p.private_ip_address())
        .filter_map(|a| a.parse().ok())
        .collect();
    if let Some(p) = primary {
        if !all.contains(&p) {
            all.push(p);
        }
    }
    EniAddrs { primary, all }
}

/// Why an ENI of ours does not deliver to our instance, from how EC2 reports
/// it (`None`: attached to `instance`). Without a known instance nothing is
/// flagged: a router started on an ENI attached to nothing (tools, tests)
/// captures onto it as configured.
pub fn detached_why(eni: &NetworkInterface, instance: Option<&str>) -> Option<String> {
    use aws_sdk_ec2::types::AttachmentStatus;
    let ours = instance?;
    let Some(a) = eni.attachment() else {
        return Some(format!(
            "EC2 reports it {} with no attachment",
            eni.status().map_or("without a status", |s| s.as_str())
        ));
    };
    if matches!(
        a.status(),
        Some(AttachmentStatus::Detaching | AttachmentStatus::Detached)
    ) {
        return Some(format!(
            "its attachment is {}",
            a.status().map_or("", |s| s.as_str())
        ));
    }
    match a.instance_id() {
        None => Some("its attachment names no instance".to_string()),
        Some(i) if i != ours => Some(format!("it is attached to {i}")),
        Some(_) => None,
    }
}

/// Who holds `ip` among `enis`: ours (any ENI `is_ours` accepts and
/// `detached` does not flag) wins, since an implementation that keeps an
/// address on two ENIs still delivers it to us; then a detached ENI of ours;
/// else the lowest other ENI id.
pub fn holding_in(
    enis: &[NetworkInterface],
    is_ours: impl Fn(&str) -> bool,
    detached: impl Fn(&NetworkInterface) -> bool,
    ip: Ipv4Addr,
) -> Option<Holding> {
    let mut elsewhere: Option<&str> = None;
    let mut ours_detached: Option<&str> = None;
    for eni in enis {
        if !addrs_of(eni).all.contains(&ip) {
            continue;
        }
        let Some(id) = eni.network_interface_id() else {
            continue;
        };
        if is_ours(id) {
            if !detached(eni) {
                return Some(Holding::Ours);
            }
            ours_detached = Some(id);
            continue;
        }
        if elsewhere.is_none_or(|e| id < e) {
            elsewhere = Some(id);
        }
    }
    if let Some(d) = ours_detached {
        return Some(Holding::Detached(d.to_string()));
    }
    elsewhere.map(|e| Holding::Elsewhere(e.to_string()))
}

/// This router's ENIs as EC2 reports them now, in preference order.
#[derive(Debug, Clone)]
pub struct Own {
    /// (ENI id, its addresses), preference order (the configured or
    /// discovered capture ENI first).
    pub enis: Vec<(String, EniAddrs)>,
    /// Our ENIs not attached to our instance, with why: they keep their
    /// addresses but deliver nothing to us, and take no new capture.
    pub detached: Vec<(String, String)>,
}

impl Own {
    /// Orders `reported` as `order` (ids EC2 did not report are missing);
    /// ENIs not attached to `instance` are flagged detached.
    pub fn new(order: &[String], reported: &[NetworkInterface], instance: Option<&str>) -> Own {
        let by_id: HashMap<&str, &NetworkInterface> = reported
            .iter()
            .filter_map(|n| n.network_interface_id().map(|id| (id, n)))
            .collect();
        Own {
            enis: order
                .iter()
                .filter_map(|id| by_id.get(id.as_str()).map(|n| (id.clone(), addrs_of(n))))
                .collect(),
            detached: order
                .iter()
                .filter_map(|id| {
                    let why = detached_why(by_id.get(id.as_str())?, instance)?;
                    Some((id.clone(), why))
                })
                .collect(),
        }
    }

    /// Whether our ENI `id` is detached from our instance.
    pub fn is_detached(&self, id: &str) -> bool {
        self.detached.iter().any(|(d, _)| d == id)
    }

    /// Whether any ENI of ours is attached.
    pub fn any_attached(&self) -> bool {
        self.enis.iter().any(|(id, _)| !self.is_detached(id))
    }

    /// The ENI of ours holding `ip`, and whether it is that ENI's primary.
    pub fn holder(&self, ip: Ipv4Addr) -> Option<(&str, bool)> {
        self.enis
            .iter()
            .find(|(_, a)| a.all.contains(&ip))
            .map(|(id, a)| (id.as_str(), a.primary == Some(ip)))
    }

    /// Every secondary address on our ENIs.
    pub fn secondaries(&self) -> Vec<Ipv4Addr> {
        self.enis
            .iter()
            .flat_map(|(_, a)| a.all.iter().copied().filter(|ip| a.primary != Some(*ip)))
            .collect()
    }
}

/// Where new captures go: `ips` spread over our attached ENIs in preference order,
/// filling each up to `per_eni` addresses (primary included; `None`: the
/// limit is unknown, everything goes to the first ENI and EC2 decides).
/// Returns (ENI id, its share) and the addresses that fit nowhere.
pub fn plan(
    own: &Own,
    per_eni: Option<usize>,
    ips: &[Ipv4Addr],
) -> (Vec<(String, Vec<Ipv4Addr>)>, Vec<Ipv4Addr>) {
    let mut groups: Vec<(String, Vec<Ipv4Addr>)> = Vec::new();
    let mut left = Vec::new();
    let Some(limit) = per_eni else {
        if let Some((id, _)) = own.enis.iter().find(|(id, _)| !own.is_detached(id)) {
            groups.push((id.clone(), ips.to_vec()));
        } else {
            left.extend_from_slice(ips);
        }
        return (groups, left);
    };
    // A detached ENI takes nothing.
    let mut room: Vec<usize> = own
        .enis
        .iter()
        .map(|(id, a)| {
            if own.is_detached(id) {
                0
            } else {
                limit.saturating_sub(a.all.len())
            }
        })
        .collect();
    for &ip in ips {
        match room.iter().position(|r| *r > 0) {
            Some(i) => {
                room[i] -= 1;
                let id = &own.enis[i].0;
                match groups.iter_mut().find(|(g, _)| g == id) {
                    Some((_, v)) => v.push(ip),
                    None => groups.push((id.clone(), vec![ip])),
                }
            }
            None => left.push(ip),
        }
    }
    (groups, left)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub fn eni(id: &str, primary: &str, secondary: &[&str]) -> NetworkInterface {
        use aws_sdk_ec2::types::NetworkInterfacePrivateIpAddress as P;
        let mut b = NetworkInterface::builder()
            .network_interface_id(id)
            .private_ip_address(primary)
            .private_ip_addresses(
                P::builder()
                    .private_ip_address(primary)
                    .primary(true)
                    .build(),
            );
        for s in secondary {
            b = b.private_ip_addresses(P::builder().private_ip_address(*s).primary(false).build());
        }
        b.build()
    }

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn holding_prefers_ours_then_lowest_id() {
        let a = ip("10.0.1.100");
        let enis = vec![
            eni("eni-c", "10.0.1.30", &["10.0.1.100"]),
            eni("eni-b", "10.0.1.20", &["10.0.1.100"]),
        ];
        let ours = |id: &str| id == "eni-a" || id == "eni-a2";
        let attached = |_: &NetworkInterface| false;
        assert_eq!(
            holding_in(&enis, ours, attached, a),
            Some(Holding::Elsewhere("eni-b".into()))
        );
        let mut with_ours = enis.clone();
        with_ours.push(eni("eni-a2", "10.0.1.11", &["10.0.1.100"]));
        assert_eq!(
            holding_in(&with_ours, ours, attached, a),
            Some(Holding::Ours)
        );
        assert_eq!(holding_in(&enis, ours, attached, ip("10.0.1.7")), None);
        // A primary address counts too.
        assert_eq!(
            holding_in(&enis, ours, attached, ip("10.0.1.30")),
            Some(Holding::Elsewhere("eni-c".into()))
        );
        // On a detached ENI of ours: neither ours nor someone else's.
        let detached = |n: &NetworkInterface| n.network_interface_id() == Some("eni-a2");
        assert_eq!(
            holding_in(&with_ours, ours, detached, a),
            Some(Holding::Detached("eni-a2".into()))
        );
        // Ours attached wins over ours detached.
        let mut both = with_ours.clone();
        both.push(eni("eni-a", "10.0.1.12", &["10.0.1.100"]));
        assert_eq!(holding_in(&both, ours, detached, a), Some(Holding::Ours));
    }

    #[test]
    fn captures_fill_each_eni_up_to_the_limit_then_the_next() {
        let reported = vec![
            eni("eni-b", "10.0.1.11", &[]),
            eni("eni-a", "10.0.1.10", &["10.0.1.100", "10.0.1.101"]),
        ];
        // Attached to our instance.
        let reported: Vec<NetworkInterface> = reported.into_iter().map(attach).collect();
        let own = Own::new(&["eni-a".into(), "eni-b".into()], &reported, Some("i-r"));
        assert!(own.detached.is_empty(), "{:?}", own.detached);
        assert_eq!(own.holder(ip("10.0.1.101")), Some(("eni-a", false)));
        assert_eq!(own.holder(ip("10.0.1.11")), Some(("eni-b", true)));
        assert_eq!(own.secondaries(), vec![ip("10.0.1.100"), ip("10.0.1.101")]);
        let new: Vec<Ipv4Addr> = (1..=6).map(|i| Ipv4Addr::new(10, 0, 1, 200 + i)).collect();
        // Four per ENI: eni-a has 3 (room 1), eni-b has 1 (room 3): 2 left.
        let (groups, left) = plan(&own, Some(4), &new);
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[0], ("eni-a".to_string(), new[..1].to_vec()));
        assert_eq!(groups[1], ("eni-b".to_string(), new[1..4].to_vec()));
        assert_eq!(left, new[4..].to_vec());
        // Unknown limit: everything to the first ENI.
        let (groups, left) = plan(&own, None, &new);
        assert_eq!(groups, vec![("eni-a".to_string(), new.clone())]);
        assert!(left.is_empty());
        // eni-a detached (no attachment): it takes nothing, eni-b everything it can.
        let reported2 = vec![
            reported[0].clone(),
            eni("eni-a", "10.0.1.10", &["10.0.1.100"]),
        ];
        let own = Own::new(&["eni-a".into(), "eni-b".into()], &reported2, Some("i-r"));
        assert!(own.is_detached("eni-a") && !own.is_detached("eni-b"));
        assert!(
            own.detached[0].1.contains("no attachment"),
            "{:?}",
            own.detached
        );
        let (groups, left) = plan(&own, Some(4), &new);
        assert_eq!(groups, vec![("eni-b".to_string(), new[..3].to_vec())]);
        assert_eq!(left, new[3..].to_vec());
        let (groups, _) = plan(&own, None, &new);
        assert_eq!(groups[0].0, "eni-b");
        // Attached to another instance counts as detached from ours.
        let other = attach_to(eni("eni-b", "10.0.1.11", &[]), "i-other");
        let own = Own::new(&["eni-b".into()], std::slice::from_ref(&other), Some("i-r"));
        assert!(own.detached[0].1.contains("i-other"));
        assert!(!own.any_attached());
        // Our instance unknown: nothing is flagged.
        let own = Own::new(&["eni-a".into(), "eni-b".into()], &reported2, None);
        assert!(own.detached.is_empty() && own.any_attached());
    }

    fn attach(n: NetworkInterface) -> NetworkInterface {
        attach_to(n, "i-r")
    }

    fn attach_to(n: NetworkInterface, instance: &str) -> NetworkInterface {
        use aws_sdk_ec2::types::{AttachmentStatus, NetworkInterfaceAttachment};
        let mut n = n;
        n.attachment = Some(
            NetworkInterfaceAttachment::builder()
                .instance_id(instance)
                .status(AttachmentStatus::Attached)
                .build(),
        );
        n
    }
}
