//! The EC2 instance types the emulator knows: per type, how many ENIs an instance may have and how
//! many IPv4 addresses (the primary included) each ENI may hold, which bound
//! `AssignPrivateIpAddresses`, plus the few other figures `DescribeInstanceTypes` reports.
//!
//! Values are AWS's (`DescribeInstanceTypes` / the EC2 user guide's "IP addresses per network
//! interface per instance type" table), cross-checked against moto's copy of AWS's data in
//! `tests/moto_shape.rs`.

/// One instance type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InstanceType {
    pub name: &'static str,
    /// ENIs an instance of this type may have attached (`MaximumNetworkInterfaces`).
    pub maximum_network_interfaces: u32,
    /// IPv4 addresses per ENI, the primary included (`Ipv4AddressesPerInterface`).
    pub ipv4_addresses_per_interface: u32,
    pub ipv6_addresses_per_interface: u32,
    pub default_vcpus: u32,
    pub memory_mib: u64,
    pub network_performance: &'static str,
    pub traits: Traits,
}

/// The yes/no facts `DescribeInstanceTypes` reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Traits {
    pub bare_metal: bool,
    pub burstable: bool,
    pub current_generation: bool,
    pub free_tier_eligible: bool,
    pub efa_supported: bool,
    pub encryption_in_transit: bool,
}

/// The instance type of instances the seed gives none (the emulator's choice: a mid-size
/// type with room for 8 ENIs of 30 addresses).
pub const DEFAULT_INSTANCE_TYPE: &str = "c5.4xlarge";

const fn t(
    name: &'static str,
    enis: u32,
    ipv4: u32,
    vcpus: u32,
    memory_mib: u64,
    network_performance: &'static str,
    traits: Traits,
) -> InstanceType {
    InstanceType {
        name,
        maximum_network_interfaces: enis,
        ipv4_addresses_per_interface: ipv4,
        // Every type here has as many IPv6 as IPv4 addresses per ENI.
        ipv6_addresses_per_interface: ipv4,
        default_vcpus: vcpus,
        memory_mib,
        network_performance,
        traits,
    }
}

/// Nitro, not burstable, previous generation (as AWS now lists m5 and c5).
const PREVIOUS: Traits = Traits {
    bare_metal: false,
    burstable: false,
    current_generation: false,
    free_tier_eligible: false,
    efa_supported: false,
    encryption_in_transit: false,
};
const METAL: Traits = Traits {
    bare_metal: true,
    ..PREVIOUS
};
const BURSTABLE: Traits = Traits {
    burstable: true,
    current_generation: true,
    ..PREVIOUS
};
const FREE_TIER: Traits = Traits {
    free_tier_eligible: true,
    ..BURSTABLE
};
const NETWORK_OPTIMIZED: Traits = Traits {
    current_generation: true,
    efa_supported: true,
    encryption_in_transit: true,
    ..PREVIOUS
};

/// Every known type, by name.
pub const INSTANCE_TYPES: &[InstanceType] = &[
    t("c5.18xlarge", 15, 50, 72, 147_456, "25 Gigabit", PREVIOUS),
    t("c5.2xlarge", 4, 15, 8, 16_384, "Up to 10 Gigabit", PREVIOUS),
    t(
        "c5.4xlarge",
        8,
        30,
        16,
        32_768,
        "Up to 10 Gigabit",
        PREVIOUS,
    ),
    t("c5.9xlarge", 8, 30, 36, 73_728, "12 Gigabit", PREVIOUS),
    t("c5.large", 3, 10, 2, 4_096, "Up to 10 Gigabit", PREVIOUS),
    t("c5.metal", 15, 50, 96, 196_608, "25 Gigabit", METAL),
    t("c5.xlarge", 4, 15, 4, 8_192, "Up to 10 Gigabit", PREVIOUS),
    t(
        "c5n.18xlarge",
        15,
        50,
        72,
        196_608,
        "100 Gigabit",
        NETWORK_OPTIMIZED,
    ),
    t("m5.2xlarge", 4, 15, 8, 32_768, "Up to 10 Gigabit", PREVIOUS),
    t(
        "m5.4xlarge",
        8,
        30,
        16,
        65_536,
        "Up to 10 Gigabit",
        PREVIOUS,
    ),
    t("m5.large", 3, 10, 2, 8_192, "Up to 10 Gigabit", PREVIOUS),
    t("m5.xlarge", 4, 15, 4, 16_384, "Up to 10 Gigabit", PREVIOUS),
    t("t3.large", 3, 12, 2, 8_192, "Up to 5 Gigabit", BURSTABLE),
    t("t3.micro", 2, 2, 2, 1_024, "Up to 5 Gigabit", FREE_TIER),
];

/// The type named `name` (exact, as EC2 spells it).
pub fn lookup(name: &str) -> Option<&'static InstanceType> {
    INSTANCE_TYPES.iter().find(|t| t.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_consistent() {
        assert!(lookup(DEFAULT_INSTANCE_TYPE).is_some());
        let m5 = lookup("m5.large").unwrap();
        assert_eq!(
            (
                m5.maximum_network_interfaces,
                m5.ipv4_addresses_per_interface
            ),
            (3, 10)
        );
        assert_eq!(lookup("c5.metal").unwrap().ipv4_addresses_per_interface, 50);
        assert!(lookup("m5.huge").is_none());
        for (i, a) in INSTANCE_TYPES.iter().enumerate() {
            assert!(a.ipv4_addresses_per_interface >= 1, "{}", a.name);
            assert!(
                INSTANCE_TYPES[i + 1..].iter().all(|b| b.name != a.name),
                "{} twice",
                a.name
            );
        }
    }
}
