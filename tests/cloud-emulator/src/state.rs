//! Cloud-agnostic state: subnets, NICs, which NIC holds each private IP, pending (asynchronous)
//! moves, the per-NIC version used as an etag, and how many addresses each NIC may hold.
//!
//! Two views are kept. The *target* view reflects every accepted request at once and is what new
//! requests are validated against (so two assigns in a row see each other). The *visible* view is
//! what `Describe*`, IMDS and the holder API report: accepted changes reach it in order, each one
//! `move_delay` after it was accepted, which is how the provider fabric lags behind the API.

use std::collections::{BTreeMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::instance_types::{self, InstanceType, DEFAULT_INSTANCE_TYPE};
use crate::limits::Limits;

/// VPC of subnets that name none.
pub const DEFAULT_VPC: &str = "vpc-emulator";

/// Default delay between an accepted change and its visibility.
pub const DEFAULT_MOVE_DELAY_MS: u64 = 500;

fn default_provider() -> String {
    "aws".to_string()
}

fn default_region() -> String {
    "us-east-1".to_string()
}

fn default_move_delay() -> u64 {
    DEFAULT_MOVE_DELAY_MS
}

/// An IPv4 prefix (`a.b.c.d/len`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    pub addr: Ipv4Addr,
    pub len: u8,
}

impl Cidr {
    pub fn parse(s: &str) -> Option<Cidr> {
        let (a, l) = s.split_once('/')?;
        let addr: Ipv4Addr = a.parse().ok()?;
        let len: u8 = l.parse().ok()?;
        if len > 32 {
            return None;
        }
        Some(Cidr { addr, len })
    }

    fn mask(&self) -> u32 {
        if self.len == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(self.len))
        }
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        (u32::from(ip) & self.mask()) == (u32::from(self.addr) & self.mask())
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

/// A subnet as written in the seed file.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SubnetSeed {
    pub id: String,
    pub cidr: String,
    #[serde(default)]
    pub vpc: Option<String>,
    #[serde(default)]
    pub availability_zone: Option<String>,
}

/// A NIC as written in the seed file.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct NicSeed {
    pub id: String,
    #[serde(default = "default_provider")]
    pub provider: String,
    #[serde(default)]
    pub instance: Option<String>,
    pub subnet: String,
    pub primary_ip: Ipv4Addr,
    #[serde(default)]
    pub secondary_ips: Vec<Ipv4Addr>,
    /// Defaults to a MAC derived from the NIC id.
    #[serde(default)]
    pub mac: Option<String>,
    /// Defaults to the NIC's position among the instance's NICs.
    #[serde(default)]
    pub device_index: Option<u32>,
    #[serde(default)]
    pub description: Option<String>,
}

/// The seed file (`--state FILE`, JSON or TOML).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Seed {
    #[serde(default = "default_region")]
    pub region: String,
    #[serde(default = "default_move_delay")]
    pub move_delay_ms: u64,
    /// Instance that `/latest/meta-data` describes on the main listener for a caller it cannot
    /// tell apart (default: first NIC's).
    #[serde(default)]
    pub imds_instance: Option<String>,
    /// IMDS callers by source address -> their instance, for addresses no NIC holds (e.g. a
    /// management network in front of the metadata service). A caller whose address a NIC
    /// holds is that NIC's instance; any other gets `imds_instance`.
    #[serde(default)]
    pub imds_clients: BTreeMap<Ipv4Addr, String>,
    /// Location reported for Azure NICs and used in operation URLs.
    #[serde(default = "default_azure_location")]
    pub azure_location: String,
    #[serde(default)]
    pub subnets: Vec<SubnetSeed>,
    #[serde(default)]
    pub nics: Vec<NicSeed>,
    /// Page size of Azure list operations (`value` + `nextLink`).
    #[serde(default = "default_azure_page")]
    pub azure_list_page_size: usize,
    /// OCI API signing keys: `keyId` (`tenancy/user/fingerprint`) -> PEM public key (SPKI or
    /// PKCS#1). When a key or an instance principal is configured, every OCI request must carry
    /// a valid signature; otherwise only the header's shape is checked.
    #[serde(default)]
    pub oci_api_keys: BTreeMap<String, String>,
    /// OCI instance principal: the identity the emulated instance metadata service hands out and
    /// the federation endpoint accepts.
    #[serde(default)]
    pub oci_instance_principal: Option<OciInstancePrincipalSeed>,
    /// AWS instance id -> EC2 instance type (a name from [`instance_types::INSTANCE_TYPES`]):
    /// bounds the ENIs per instance and the addresses per ENI.
    #[serde(default)]
    pub instance_types: BTreeMap<String, String>,
    /// The type of AWS instances `instance_types` does not name, and of unattached ENIs.
    #[serde(default = "default_instance_type")]
    pub default_instance_type: String,
    /// Most ipConfigurations (the primary included) an Azure NIC may have.
    #[serde(default = "default_azure_max_ip_configs")]
    pub azure_max_ip_configs: usize,
    /// Most secondary private IPs an OCI VNIC may have.
    #[serde(default = "default_oci_max_secondary_ips")]
    pub oci_max_secondary_ips: usize,
    /// API rate limits (token buckets).
    #[serde(default)]
    pub limits: Limits,
    /// The emulator's clock runs this many seconds ahead of the host's (negative: behind): the
    /// signature date checks (AWS `X-Amz-Date`, OCI `date`) and the `Date` header of every reply
    /// use it, as a provider whose clock differs from the client's would.
    #[serde(default)]
    pub clock_offset_secs: i64,
}

/// Largest clock offset accepted (one year either way).
pub const MAX_CLOCK_OFFSET_SECS: i64 = 366 * 86_400;

fn default_instance_type() -> String {
    DEFAULT_INSTANCE_TYPE.to_string()
}

/// Azure's documented limit of private IP addresses per network interface.
pub const DEFAULT_AZURE_MAX_IP_CONFIGS: usize = 256;

fn default_azure_max_ip_configs() -> usize {
    DEFAULT_AZURE_MAX_IP_CONFIGS
}

/// OCI's documented limit of secondary private IPs per VNIC.
pub const DEFAULT_OCI_MAX_SECONDARY_IPS: usize = 64;

fn default_oci_max_secondary_ips() -> usize {
    DEFAULT_OCI_MAX_SECONDARY_IPS
}

/// The instance principal identity served at `/opc/v2/identity/*` and accepted by `/v1/x509`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct OciInstancePrincipalSeed {
    /// Tenancy OCID (the leaf certificate's subject OU `opc-tenant:...` names it).
    pub tenancy: String,
    /// Leaf certificate (PEM).
    pub cert_pem: String,
    /// Leaf private key (PEM, PKCS#1 or PKCS#8).
    pub key_pem: String,
    /// Intermediate certificate (PEM).
    pub intermediate_pem: String,
    /// Lifetime of issued security tokens (default 1200 s, as OCI's).
    #[serde(default = "default_token_ttl")]
    pub token_ttl_secs: u64,
}

fn default_token_ttl() -> u64 {
    1200
}

fn default_azure_page() -> usize {
    50
}

fn default_azure_location() -> String {
    "westeurope".to_string()
}

impl Default for Seed {
    fn default() -> Self {
        Seed {
            region: default_region(),
            move_delay_ms: DEFAULT_MOVE_DELAY_MS,
            imds_instance: None,
            imds_clients: BTreeMap::new(),
            azure_location: default_azure_location(),
            subnets: Vec::new(),
            nics: Vec::new(),
            azure_list_page_size: default_azure_page(),
            oci_api_keys: BTreeMap::new(),
            oci_instance_principal: None,
            instance_types: BTreeMap::new(),
            default_instance_type: default_instance_type(),
            azure_max_ip_configs: DEFAULT_AZURE_MAX_IP_CONFIGS,
            oci_max_secondary_ips: DEFAULT_OCI_MAX_SECONDARY_IPS,
            limits: Limits::default(),
            clock_offset_secs: 0,
        }
    }
}

impl Seed {
    /// Reads a seed file; `.json` is JSON, anything else TOML.
    pub fn load(path: &Path) -> anyhow::Result<Seed> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
        let seed: Seed = if path.extension().is_some_and(|e| e == "json") {
            serde_json::from_str(&text)
                .map_err(|e| anyhow::anyhow!("parsing {}: {e}", path.display()))?
        } else {
            toml::from_str(&text).map_err(|e| anyhow::anyhow!("parsing {}: {e}", path.display()))?
        };
        seed.validate()?;
        Ok(seed)
    }

    /// Checks ids are unique, subnets exist, addresses are inside their subnet and held once.
    pub fn validate(&self) -> anyhow::Result<()> {
        let mut subnets = BTreeMap::new();
        for s in &self.subnets {
            let cidr = Cidr::parse(&s.cidr)
                .ok_or_else(|| anyhow::anyhow!("subnet {}: bad cidr {:?}", s.id, s.cidr))?;
            let vpc = s.vpc.clone().unwrap_or_else(|| DEFAULT_VPC.to_string());
            if subnets.insert(s.id.clone(), (cidr, vpc)).is_some() {
                anyhow::bail!("subnet {}: duplicate id", s.id);
            }
        }
        let mut ids = BTreeMap::new();
        // Addresses are unique within one network (provider + VPC / VNet / VCN).
        let mut held: BTreeMap<(String, Ipv4Addr), &str> = BTreeMap::new();
        for n in &self.nics {
            if ids.insert(n.id.clone(), ()).is_some() {
                anyhow::bail!("nic {}: duplicate id", n.id);
            }
            let (cidr, vpc) = subnets
                .get(&n.subnet)
                .ok_or_else(|| anyhow::anyhow!("nic {}: unknown subnet {:?}", n.id, n.subnet))?;
            let network = format!("{}/{vpc}", n.provider);
            for ip in std::iter::once(&n.primary_ip).chain(n.secondary_ips.iter()) {
                if !cidr.contains(*ip) {
                    anyhow::bail!("nic {}: {ip} is outside subnet {} ({cidr})", n.id, n.subnet);
                }
                if let Some(other) = held.insert((network.clone(), *ip), &n.id) {
                    anyhow::bail!("nic {}: {ip} is already held by {other}", n.id);
                }
            }
            if let Some(mac) = &n.mac {
                if parse_mac(mac).is_none() {
                    anyhow::bail!("nic {}: bad mac {mac:?}", n.id);
                }
            }
        }
        for (client, instance) in &self.imds_clients {
            if !self
                .nics
                .iter()
                .any(|n| n.instance.as_deref() == Some(instance.as_str()))
            {
                anyhow::bail!(
                    "imds_clients: {client} names {instance:?}, which no NIC is attached to"
                );
            }
        }
        if self.clock_offset_secs.abs() > MAX_CLOCK_OFFSET_SECS {
            anyhow::bail!("clock_offset_secs must be within +-{MAX_CLOCK_OFFSET_SECS}");
        }
        if self.azure_list_page_size == 0 {
            anyhow::bail!("azure_list_page_size must be at least 1");
        }
        self.validate_quotas()?;
        self.limits.validate().map_err(|e| anyhow::anyhow!(e))?;
        for (key_id, pem) in &self.oci_api_keys {
            crate::oci::parse_public_key(pem)
                .map_err(|e| anyhow::anyhow!("oci_api_keys {key_id:?}: {e}"))?;
        }
        if let Some(ip) = &self.oci_instance_principal {
            crate::oci::parse_private_key(&ip.key_pem)
                .map_err(|e| anyhow::anyhow!("oci_instance_principal.key_pem: {e}"))?;
            for (name, pem) in [
                ("cert_pem", &ip.cert_pem),
                ("intermediate_pem", &ip.intermediate_pem),
            ] {
                crate::oci::pem_der(pem, "CERTIFICATE").ok_or_else(|| {
                    anyhow::anyhow!("oci_instance_principal.{name}: not a PEM certificate")
                })?;
            }
        }
        Ok(())
    }
}

impl Seed {
    /// The instance type of AWS instance `instance` (unattached ENIs: the default type).
    fn instance_type_of(&self, instance: Option<&str>) -> anyhow::Result<&'static InstanceType> {
        let name = instance
            .and_then(|i| self.instance_types.get(i))
            .unwrap_or(&self.default_instance_type);
        instance_types::lookup(name).ok_or_else(|| {
            let known: Vec<&str> = instance_types::INSTANCE_TYPES
                .iter()
                .map(|t| t.name)
                .collect();
            anyhow::anyhow!(
                "unknown instance type {name:?} (known: {})",
                known.join(", ")
            )
        })
    }

    /// Checks instance types and that no NIC or instance starts over its provider's limits.
    fn validate_quotas(&self) -> anyhow::Result<()> {
        self.instance_type_of(None)
            .map_err(|e| anyhow::anyhow!("default_instance_type: {e}"))?;
        for (instance, name) in &self.instance_types {
            instance_types::lookup(name).ok_or_else(|| {
                anyhow::anyhow!("instance_types: {instance}: unknown instance type {name:?}")
            })?;
            if !self
                .nics
                .iter()
                .any(|n| n.provider == "aws" && n.instance.as_deref() == Some(instance.as_str()))
            {
                anyhow::bail!(
                    "instance_types: {instance} is not an instance any AWS NIC is attached to"
                );
            }
        }
        if self.azure_max_ip_configs == 0 {
            anyhow::bail!("azure_max_ip_configs must be at least 1 (the primary)");
        }
        let mut enis: BTreeMap<&str, u32> = BTreeMap::new();
        for n in &self.nics {
            let addresses = 1 + n.secondary_ips.len();
            let (limit, what) = match n.provider.as_str() {
                "aws" => {
                    let t = self.instance_type_of(n.instance.as_deref())?;
                    if let Some(i) = &n.instance {
                        let c = enis.entry(i).or_insert(0);
                        *c += 1;
                        if *c > t.maximum_network_interfaces {
                            anyhow::bail!(
                                "instance {i} ({}) has more than {} network interfaces",
                                t.name,
                                t.maximum_network_interfaces
                            );
                        }
                    }
                    (t.ipv4_addresses_per_interface as usize, t.name)
                }
                "azure" => (self.azure_max_ip_configs, "azure_max_ip_configs"),
                "oci" => (1 + self.oci_max_secondary_ips, "oci_max_secondary_ips"),
                _ => continue,
            };
            if addresses > limit {
                anyhow::bail!(
                    "nic {}: {addresses} addresses, more than the {limit} {what} allows",
                    n.id
                );
            }
        }
        Ok(())
    }
}

fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut out = [0u8; 6];
    let mut parts = s.split(':');
    for b in &mut out {
        let p = parts.next()?;
        if p.len() != 2 {
            return None;
        }
        *b = u8::from_str_radix(p, 16).ok()?;
    }
    parts.next().is_none().then_some(out)
}

/// A MAC derived from the NIC id (locally administered, stable).
fn derive_mac(id: &str) -> String {
    let h = fnv1a(id.as_bytes());
    let b = h.to_be_bytes();
    format!(
        "02:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        b[3], b[4], b[5], b[6], b[7]
    )
}

pub(crate) fn fnv1a(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in data {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

/// A subnet.
#[derive(Clone, Debug, Serialize)]
pub struct Subnet {
    pub id: String,
    pub cidr: String,
    pub vpc: String,
    pub availability_zone: String,
    #[serde(skip)]
    pub prefix: Cidr,
}

/// A NIC (AWS ENI, Azure NIC, OCI VNIC).
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Nic {
    pub id: String,
    pub provider: String,
    /// The address space the NIC's addresses are unique in: `provider/vpc` (a VPC, VNet or VCN).
    /// The same address may be held once per network, e.g. captured at two sites at once.
    pub network: String,
    pub instance: Option<String>,
    pub subnet: String,
    pub mac: String,
    pub device_index: u32,
    pub description: String,
    pub primary_ip: Ipv4Addr,
    /// Secondary addresses in assignment order.
    pub secondary_ips: Vec<Ipv4Addr>,
    /// Names of the secondary addresses (Azure ipConfiguration names); unnamed ones are
    /// reported as `ipconfig-<a>-<b>-<c>-<d>`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub names: BTreeMap<Ipv4Addr, String>,
    /// Bumped by every change to the NIC's addresses.
    pub version: u64,
}

impl Nic {
    pub fn etag(&self) -> String {
        format!("{:016x}-{}", fnv1a(self.id.as_bytes()), self.version)
    }

    /// The name of a secondary address's configuration (Azure ipConfiguration name).
    pub fn name_of(&self, ip: Ipv4Addr) -> String {
        self.names
            .get(&ip)
            .cloned()
            .unwrap_or_else(|| format!("ipconfig-{}", ip.to_string().replace('.', "-")))
    }

    pub fn holds(&self, ip: Ipv4Addr) -> bool {
        self.primary_ip == ip || self.secondary_ips.contains(&ip)
    }
}

/// An accepted change.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Change {
    /// Add `ips` as secondaries of `nic`, taking them from whichever NIC holds them.
    Assign { nic: String, ips: Vec<Ipv4Addr> },
    /// Remove secondaries `ips` from `nic`.
    Unassign { nic: String, ips: Vec<Ipv4Addr> },
    /// Replace `nic`'s secondaries by exactly these (address, name) pairs (Azure PUT NIC).
    Set {
        nic: String,
        secondaries: Vec<(Ipv4Addr, String)>,
    },
    /// `nic` is deleted (its VM terminated): its addresses are free.
    Delete { nic: String },
}

#[derive(Clone, Debug)]
struct Pending {
    seq: u64,
    accepted: SystemTime,
    visible_at: Instant,
    change: Change,
}

/// NICs keyed by id.
#[derive(Clone, Debug, Default)]
pub struct View {
    pub nics: BTreeMap<String, Nic>,
}

impl View {
    /// A NIC holding `ip` (primary or secondary) in any network.
    pub fn holder(&self, ip: Ipv4Addr) -> Option<&Nic> {
        self.nics.values().find(|n| n.holds(ip))
    }

    /// The NIC holding `ip` in `network`.
    pub fn holder_in(&self, network: &str, ip: Ipv4Addr) -> Option<&Nic> {
        self.nics
            .values()
            .find(|n| n.network == network && n.holds(ip))
    }

    fn network_of(&self, nic: &str) -> String {
        self.nics
            .get(nic)
            .map(|n| n.network.clone())
            .unwrap_or_default()
    }

    fn apply(&mut self, change: &Change) {
        match change {
            Change::Assign { nic, ips } => {
                let network = self.network_of(nic);
                for ip in ips {
                    for other in self.nics.values_mut() {
                        if other.id != *nic
                            && other.network == network
                            && other.secondary_ips.contains(ip)
                        {
                            other.secondary_ips.retain(|x| x != ip);
                            other.version += 1;
                        }
                    }
                }
                if let Some(n) = self.nics.get_mut(nic) {
                    let mut changed = false;
                    for ip in ips {
                        if !n.holds(*ip) {
                            n.secondary_ips.push(*ip);
                            changed = true;
                        }
                    }
                    if changed {
                        n.version += 1;
                    }
                }
            }
            Change::Set { nic, secondaries } => {
                let ips: Vec<Ipv4Addr> = secondaries.iter().map(|(ip, _)| *ip).collect();
                let network = self.network_of(nic);
                for other in self.nics.values_mut() {
                    if other.id != *nic
                        && other.network == network
                        && other.secondary_ips.iter().any(|ip| ips.contains(ip))
                    {
                        other.secondary_ips.retain(|x| !ips.contains(x));
                        other.names.retain(|k, _| !ips.contains(k));
                        other.version += 1;
                    }
                }
                if let Some(n) = self.nics.get_mut(nic) {
                    n.secondary_ips = ips;
                    n.names = secondaries
                        .iter()
                        .map(|(ip, name)| (*ip, name.clone()))
                        .collect();
                    n.version += 1;
                }
            }
            Change::Unassign { nic, ips } => {
                if let Some(n) = self.nics.get_mut(nic) {
                    let before = n.secondary_ips.len();
                    n.secondary_ips.retain(|x| !ips.contains(x));
                    if n.secondary_ips.len() != before {
                        n.version += 1;
                    }
                }
            }
            Change::Delete { nic } => {
                self.nics.remove(nic);
            }
        }
    }
}

/// Why a change was refused (mapped to provider error codes by each API front end).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChangeError {
    NicNotFound(String),
    /// The address is outside the NIC's subnet.
    OutsideSubnet(Ipv4Addr),
    /// Held by another NIC and reassignment was not allowed.
    InUse {
        ip: Ipv4Addr,
        holder: String,
    },
    /// The address is another NIC's primary address (never movable).
    PrimaryElsewhere {
        ip: Ipv4Addr,
        holder: String,
    },
    /// Unassign of the NIC's primary address.
    IsPrimary(Ipv4Addr),
    /// Unassign of an address the NIC does not hold.
    NotAssigned(Ipv4Addr),
    /// The NIC would hold more than `limit` addresses (the primary included).
    LimitExceeded {
        nic: String,
        limit: usize,
    },
}

/// Why a NIC could not be detached or attached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DetachError {
    NotFound(String),
    NotAttached(String),
    /// The instance's primary NIC (device index 0): AWS and Azure refuse to detach it.
    Primary {
        nic: String,
        instance: String,
    },
    /// Attach without an instance, for a NIC never attached.
    NoInstance(String),
    AttachedElsewhere {
        nic: String,
        instance: String,
    },
}

impl std::fmt::Display for DetachError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DetachError::NotFound(n) => write!(f, "no such NIC: {n}"),
            DetachError::NotAttached(n) => write!(f, "{n} is not attached to an instance"),
            DetachError::Primary { nic, instance } => write!(
                f,
                "{nic} is the primary network interface (device index 0) of {instance}: it cannot be detached"
            ),
            DetachError::NoInstance(n) => {
                write!(f, "{n} was never attached: name the instance to attach it to")
            }
            DetachError::AttachedElsewhere { nic, instance } => {
                write!(f, "{nic} is attached to {instance}: detach it first")
            }
        }
    }
}

/// One entry of the holder view.
#[derive(Clone, Debug, Serialize)]
pub struct Holder {
    pub ip: Ipv4Addr,
    pub provider: String,
    pub network: String,
    pub nic: String,
    pub instance: Option<String>,
    pub subnet: String,
    pub mac: String,
    pub primary: bool,
    /// Whether the NIC is attached to an instance. The addresses of a detached NIC stay on it
    /// (as at every provider), but its traffic reaches no instance: the lab's fabric should not
    /// deliver to it.
    pub attached: bool,
}

/// A pending change as reported by the control API.
#[derive(Clone, Debug, Serialize)]
pub struct PendingReport {
    pub seq: u64,
    #[serde(flatten)]
    pub change: Change,
    pub accepted_unix_ms: u64,
    pub visible_in_ms: u64,
}

/// Who sent the request that caused a change (set per request by the server, see
/// [`REQUEST`]): the client's address, the request line and when it arrived.
#[derive(Clone, Debug, Serialize, Default)]
pub struct RequestInfo {
    pub client: String,
    pub method: String,
    pub path: String,
    pub received_unix_ms: u64,
}

tokio::task_local! {
    /// The request being served by the current task (absent in unit tests and for changes made
    /// outside a request).
    pub static REQUEST: RequestInfo;
}

/// One accepted change in the journal (`GET /_emulator/journal`): the audit trail of every
/// mutation the provider executed, with the request that caused it.
#[derive(Clone, Debug, Serialize)]
pub struct JournalEntry {
    pub seq: u64,
    #[serde(flatten)]
    pub change: Change,
    pub accepted_unix_ms: u64,
    pub request: Option<RequestInfo>,
}

/// Entries the journal keeps (the oldest are dropped first; `journal_dropped` counts them).
pub const JOURNAL_MAX: usize = 100_000;

/// The whole provider state.
#[derive(Debug)]
pub struct State {
    pub region: String,
    pub azure_list_page_size: usize,
    pub oci_api_keys: BTreeMap<String, String>,
    pub oci_instance_principal: Option<OciInstancePrincipalSeed>,
    pub azure_location: String,
    /// AWS instance id -> its type (others: `default_instance_type`).
    pub instance_types: BTreeMap<String, &'static InstanceType>,
    pub default_instance_type: &'static InstanceType,
    pub azure_max_ip_configs: usize,
    pub oci_max_secondary_ips: usize,
    pub move_delay: Duration,
    pub imds_instance: Option<String>,
    pub imds_clients: BTreeMap<Ipv4Addr, String>,
    pub subnets: BTreeMap<String, Subnet>,
    target: View,
    visible: View,
    pending: VecDeque<Pending>,
    next_seq: u64,
    /// Bumped whenever the visible view changes (lets the fabric poll cheaply).
    pub generation: u64,
    journal: VecDeque<JournalEntry>,
    /// Journal entries dropped because it was full.
    pub journal_dropped: u64,
    /// Detached NICs -> the instance they were detached from (re-attached there by default).
    pub detached_from: BTreeMap<String, String>,
}

impl State {
    pub fn from_seed(seed: &Seed) -> anyhow::Result<State> {
        seed.validate()?;
        let mut subnets = BTreeMap::new();
        for s in &seed.subnets {
            let prefix =
                Cidr::parse(&s.cidr).ok_or_else(|| anyhow::anyhow!("subnet {}: bad cidr", s.id))?;
            subnets.insert(
                s.id.clone(),
                Subnet {
                    id: s.id.clone(),
                    cidr: prefix.to_string(),
                    vpc: s.vpc.clone().unwrap_or_else(|| DEFAULT_VPC.to_string()),
                    availability_zone: s
                        .availability_zone
                        .clone()
                        .unwrap_or_else(|| format!("{}a", seed.region)),
                    prefix,
                },
            );
        }
        let mut view = View::default();
        let mut per_instance: BTreeMap<String, u32> = BTreeMap::new();
        for n in &seed.nics {
            let device_index = match (n.device_index, &n.instance) {
                (Some(d), _) => d,
                (None, Some(i)) => {
                    let c = per_instance.entry(i.clone()).or_insert(0);
                    *c += 1;
                    *c - 1
                }
                (None, None) => 0,
            };
            view.nics.insert(
                n.id.clone(),
                Nic {
                    id: n.id.clone(),
                    provider: n.provider.clone(),
                    network: format!(
                        "{}/{}",
                        n.provider,
                        subnets
                            .get(&n.subnet)
                            .map_or(DEFAULT_VPC, |s: &Subnet| s.vpc.as_str())
                    ),
                    instance: n.instance.clone(),
                    subnet: n.subnet.clone(),
                    mac: n
                        .mac
                        .clone()
                        .map(|m| m.to_ascii_lowercase())
                        .unwrap_or_else(|| derive_mac(&n.id)),
                    device_index,
                    description: n.description.clone().unwrap_or_default(),
                    primary_ip: n.primary_ip,
                    secondary_ips: n.secondary_ips.clone(),
                    names: BTreeMap::new(),
                    version: 1,
                },
            );
        }
        let imds_instance = seed
            .imds_instance
            .clone()
            .or_else(|| seed.nics.iter().find_map(|n| n.instance.clone()));
        let default_instance_type = seed.instance_type_of(None)?;
        let mut instance_types = BTreeMap::new();
        for instance in seed.instance_types.keys() {
            instance_types.insert(instance.clone(), seed.instance_type_of(Some(instance))?);
        }
        Ok(State {
            region: seed.region.clone(),
            azure_list_page_size: seed.azure_list_page_size,
            oci_api_keys: seed.oci_api_keys.clone(),
            oci_instance_principal: seed.oci_instance_principal.clone(),
            azure_location: seed.azure_location.clone(),
            instance_types,
            default_instance_type,
            azure_max_ip_configs: seed.azure_max_ip_configs,
            oci_max_secondary_ips: seed.oci_max_secondary_ips,
            move_delay: Duration::from_millis(seed.move_delay_ms),
            imds_instance,
            imds_clients: seed.imds_clients.clone(),
            subnets,
            target: view.clone(),
            visible: view,
            pending: VecDeque::new(),
            next_seq: 1,
            generation: 1,
            journal: VecDeque::new(),
            journal_dropped: 0,
            detached_from: BTreeMap::new(),
        })
    }

    /// Applies every pending change whose time has come (in acceptance order).
    pub fn settle(&mut self, now: Instant) {
        while let Some(p) = self.pending.front() {
            if p.visible_at > now {
                break;
            }
            let p = self.pending.pop_front().expect("front exists");
            self.visible.apply(&p.change);
            self.generation += 1;
        }
    }

    /// The visible view, settled to `now`.
    pub fn visible(&mut self, now: Instant) -> &View {
        self.settle(now);
        &self.visible
    }

    /// The instance IMDS describes to a caller on the main listener: the one `imds_clients`
    /// names for its address, else the instance of the NIC that holds its address (a real
    /// IMDS answers the instance the request comes from), else `imds_instance`.
    pub fn imds_instance_for(&mut self, now: Instant, client: Option<IpAddr>) -> Option<String> {
        let v4 = client.and_then(|c| match c {
            IpAddr::V4(a) => Some(a),
            IpAddr::V6(a) => a.to_ipv4_mapped(),
        });
        if let Some(ip) = v4 {
            if let Some(i) = self.imds_clients.get(&ip) {
                return Some(i.clone());
            }
            let view = self.visible(now);
            let nic = view
                .nics
                .values()
                .find(|n| n.primary_ip == ip && n.instance.is_some())
                .or_else(|| {
                    view.nics
                        .values()
                        .find(|n| n.holds(ip) && n.instance.is_some())
                });
            if let Some(i) = nic.and_then(|n| n.instance.clone()) {
                return Some(i);
            }
        }
        self.imds_instance.clone()
    }

    /// The view including every accepted change.
    pub fn target(&self) -> &View {
        &self.target
    }

    /// The instance type of AWS instance `instance` (unattached: the default type).
    pub fn instance_type(&self, instance: Option<&str>) -> &'static InstanceType {
        instance
            .and_then(|i| self.instance_types.get(i).copied())
            .unwrap_or(self.default_instance_type)
    }

    /// Most addresses (the primary included) `n` may hold: AWS by its instance's type, Azure
    /// `azure_max_ip_configs`, OCI one primary plus `oci_max_secondary_ips`.
    pub fn address_limit(&self, n: &Nic) -> Option<usize> {
        match n.provider.as_str() {
            "aws" => Some(
                self.instance_type(n.instance.as_deref())
                    .ipv4_addresses_per_interface as usize,
            ),
            "azure" => Some(self.azure_max_ip_configs),
            "oci" => Some(1 + self.oci_max_secondary_ips),
            _ => None,
        }
    }

    /// Refuses a change that would leave `n` holding `addresses` addresses, over its limit.
    fn check_limit(&self, n: &Nic, addresses: usize) -> Result<(), ChangeError> {
        match self.address_limit(n) {
            Some(limit) if addresses > limit => Err(ChangeError::LimitExceeded {
                nic: n.id.clone(),
                limit,
            }),
            _ => Ok(()),
        }
    }

    /// Validates and accepts an assignment of secondary `ips` to `nic`. Returns the addresses.
    pub fn assign(
        &mut self,
        now: Instant,
        nic: &str,
        ips: &[Ipv4Addr],
        allow_reassignment: bool,
    ) -> Result<(), ChangeError> {
        self.settle(now);
        let n = self
            .target
            .nics
            .get(nic)
            .ok_or_else(|| ChangeError::NicNotFound(nic.to_string()))?;
        let subnet = self.subnets.get(&n.subnet).map(|s| s.prefix);
        for ip in ips {
            if let Some(prefix) = subnet {
                if !prefix.contains(*ip) {
                    return Err(ChangeError::OutsideSubnet(*ip));
                }
            }
            if let Some(h) = self.target.holder_in(&n.network, *ip) {
                if h.id == nic {
                    continue;
                }
                if h.primary_ip == *ip {
                    return Err(ChangeError::PrimaryElsewhere {
                        ip: *ip,
                        holder: h.id.clone(),
                    });
                }
                if !allow_reassignment {
                    return Err(ChangeError::InUse {
                        ip: *ip,
                        holder: h.id.clone(),
                    });
                }
            }
        }
        // All or nothing: the whole request is refused when it would overfill the NIC.
        let mut new: Vec<Ipv4Addr> = ips.iter().copied().filter(|ip| !n.holds(*ip)).collect();
        new.sort_unstable();
        new.dedup();
        self.check_limit(n, 1 + n.secondary_ips.len() + new.len())?;
        self.accept(
            now,
            Change::Assign {
                nic: nic.to_string(),
                ips: ips.to_vec(),
            },
        );
        Ok(())
    }

    /// True while an accepted change of `nic` is not yet visible (Azure: an operation is running).
    pub fn busy(&mut self, now: Instant, nic: &str) -> bool {
        self.settle(now);
        self.pending.iter().any(|p| match &p.change {
            Change::Assign { nic: n, .. }
            | Change::Unassign { nic: n, .. }
            | Change::Set { nic: n, .. }
            | Change::Delete { nic: n } => n == nic,
        })
    }

    /// When the last accepted change becomes visible.
    pub fn last_visible_at(&self) -> Option<Instant> {
        self.pending.back().map(|p| p.visible_at)
    }

    /// Validates and accepts a full replacement of `nic`'s secondaries (Azure semantics: an
    /// address still held by another NIC in either view is allocated, so a move needs the release
    /// on the old NIC to complete first).
    pub fn set_secondaries(
        &mut self,
        now: Instant,
        nic: &str,
        secondaries: &[(Ipv4Addr, String)],
    ) -> Result<bool, ChangeError> {
        self.settle(now);
        let n = self
            .target
            .nics
            .get(nic)
            .ok_or_else(|| ChangeError::NicNotFound(nic.to_string()))?;
        self.check_limit(n, 1 + secondaries.len())?;
        let subnet = self.subnets.get(&n.subnet).map(|s| s.prefix);
        for (ip, _) in secondaries {
            if let Some(prefix) = subnet {
                if !prefix.contains(*ip) {
                    return Err(ChangeError::OutsideSubnet(*ip));
                }
            }
            for view in [&self.target, &self.visible] {
                if let Some(h) = view.holder_in(&n.network, *ip) {
                    if h.id != nic {
                        return Err(ChangeError::InUse {
                            ip: *ip,
                            holder: h.id.clone(),
                        });
                    }
                }
            }
        }
        let unchanged = n.secondary_ips.len() == secondaries.len()
            && secondaries
                .iter()
                .all(|(ip, name)| n.secondary_ips.contains(ip) && n.name_of(*ip) == *name);
        if unchanged {
            return Ok(false);
        }
        self.accept(
            now,
            Change::Set {
                nic: nic.to_string(),
                secondaries: secondaries.to_vec(),
            },
        );
        Ok(true)
    }

    /// The `count` lowest free addresses of `nic`'s subnet (AWS reserves the first four and the
    /// last address of a subnet); `None` when the subnet has too few.
    pub fn free_addresses(
        &self,
        nic: &str,
        count: usize,
    ) -> Result<Option<Vec<Ipv4Addr>>, ChangeError> {
        let n = self
            .target
            .nics
            .get(nic)
            .ok_or_else(|| ChangeError::NicNotFound(nic.to_string()))?;
        let Some(subnet) = self.subnets.get(&n.subnet) else {
            return Ok(None);
        };
        let base = u64::from(u32::from(subnet.prefix.addr) & subnet.prefix.mask());
        let size = 1u64 << (32 - u32::from(subnet.prefix.len));
        let mut out = Vec::new();
        for off in 4..size.saturating_sub(1) {
            if out.len() == count {
                break;
            }
            let ip = Ipv4Addr::from((base + off) as u32);
            if self.target.holder_in(&n.network, ip).is_none() {
                out.push(ip);
            }
        }
        Ok((out.len() == count).then_some(out))
    }

    /// Validates and accepts the removal of secondary `ips` from `nic`.
    pub fn unassign(
        &mut self,
        now: Instant,
        nic: &str,
        ips: &[Ipv4Addr],
    ) -> Result<(), ChangeError> {
        self.settle(now);
        let n = self
            .target
            .nics
            .get(nic)
            .ok_or_else(|| ChangeError::NicNotFound(nic.to_string()))?;
        for ip in ips {
            if n.primary_ip == *ip {
                return Err(ChangeError::IsPrimary(*ip));
            }
            if !n.secondary_ips.contains(ip) {
                return Err(ChangeError::NotAssigned(*ip));
            }
        }
        self.accept(
            now,
            Change::Unassign {
                nic: nic.to_string(),
                ips: ips.to_vec(),
            },
        );
        Ok(())
    }

    /// Deletes `nic` (as when its VM is terminated): every API refuses it from now on (target
    /// view), and its addresses leave the visible view after the move delay like any change.
    pub fn delete_nic(&mut self, now: Instant, nic: &str) -> Result<(), ChangeError> {
        self.settle(now);
        if !self.target.nics.contains_key(nic) {
            return Err(ChangeError::NicNotFound(nic.to_string()));
        }
        self.accept(
            now,
            Change::Delete {
                nic: nic.to_string(),
            },
        );
        Ok(())
    }

    /// Detaches `nic` from its instance, at once in both views (an attachment is not an
    /// address change: nothing is journaled): its addresses stay on it, DescribeNetworkInterfaces
    /// reports it `available` without an attachment, Azure without `virtualMachine`, the holder
    /// view with `attached: false`. The primary NIC of an AWS or Azure instance (device index
    /// 0) cannot be detached, as at those providers. Returns the instance it was attached to.
    pub fn detach(&mut self, now: Instant, nic: &str) -> Result<String, DetachError> {
        self.settle(now);
        let n = self
            .target
            .nics
            .get(nic)
            .ok_or_else(|| DetachError::NotFound(nic.to_string()))?;
        let Some(instance) = n.instance.clone() else {
            return Err(DetachError::NotAttached(nic.to_string()));
        };
        if n.device_index == 0 && n.provider != "oci" {
            return Err(DetachError::Primary {
                nic: nic.to_string(),
                instance,
            });
        }
        self.set_instance(nic, None);
        self.detached_from.insert(nic.to_string(), instance.clone());
        Ok(instance)
    }

    /// Attaches `nic` to `instance` (default: the one it was detached from), at once in both
    /// views. Attaching it where it is already attached is a no-op.
    pub fn attach(
        &mut self,
        now: Instant,
        nic: &str,
        instance: Option<&str>,
    ) -> Result<String, DetachError> {
        self.settle(now);
        let n = self
            .target
            .nics
            .get(nic)
            .ok_or_else(|| DetachError::NotFound(nic.to_string()))?;
        let want = match (instance, self.detached_from.get(nic), &n.instance) {
            (Some(i), _, _) => i.to_string(),
            (None, Some(i), _) => i.clone(),
            (None, None, Some(i)) => i.clone(),
            (None, None, None) => return Err(DetachError::NoInstance(nic.to_string())),
        };
        match &n.instance {
            Some(i) if *i == want => return Ok(want),
            Some(i) => {
                return Err(DetachError::AttachedElsewhere {
                    nic: nic.to_string(),
                    instance: i.clone(),
                })
            }
            None => {}
        }
        self.set_instance(nic, Some(want.clone()));
        self.detached_from.remove(nic);
        Ok(want)
    }

    fn set_instance(&mut self, nic: &str, instance: Option<String>) {
        for view in [&mut self.target, &mut self.visible] {
            if let Some(n) = view.nics.get_mut(nic) {
                n.instance = instance.clone();
                n.version += 1;
            }
        }
        self.generation += 1;
    }

    fn accept(&mut self, now: Instant, change: Change) {
        self.target.apply(&change);
        let seq = self.next_seq;
        self.next_seq += 1;
        let accepted = SystemTime::now();
        if self.journal.len() == JOURNAL_MAX {
            self.journal.pop_front();
            self.journal_dropped += 1;
        }
        self.journal.push_back(JournalEntry {
            seq,
            change: change.clone(),
            accepted_unix_ms: unix_ms(accepted),
            request: REQUEST.try_with(|r| r.clone()).ok(),
        });
        self.pending.push_back(Pending {
            seq,
            accepted,
            visible_at: now + self.move_delay,
            change,
        });
        // A zero delay is visible at once.
        self.settle(now);
    }

    /// Holder view (visible state): every private address with the NIC holding it.
    pub fn holders(&mut self, now: Instant) -> Vec<Holder> {
        self.settle(now);
        let mut out = Vec::new();
        for n in self.visible.nics.values() {
            for (ip, primary) in std::iter::once((n.primary_ip, true))
                .chain(n.secondary_ips.iter().map(|ip| (*ip, false)))
            {
                out.push(Holder {
                    ip,
                    provider: n.provider.clone(),
                    network: n.network.clone(),
                    nic: n.id.clone(),
                    instance: n.instance.clone(),
                    subnet: n.subnet.clone(),
                    mac: n.mac.clone(),
                    primary,
                    attached: n.instance.is_some(),
                });
            }
        }
        out.sort_by(|a, b| {
            (u32::from(a.ip), &a.network, &a.nic).cmp(&(u32::from(b.ip), &b.network, &b.nic))
        });
        out
    }

    /// Journal entries with `seq > since`, oldest first.
    pub fn journal(&self, since: u64) -> Vec<JournalEntry> {
        self.journal
            .iter()
            .filter(|e| e.seq > since)
            .cloned()
            .collect()
    }

    /// Pending changes (accepted, not yet visible).
    pub fn pending(&mut self, now: Instant) -> Vec<PendingReport> {
        self.settle(now);
        self.pending
            .iter()
            .map(|p| PendingReport {
                seq: p.seq,
                change: p.change.clone(),
                accepted_unix_ms: unix_ms(p.accepted),
                visible_in_ms: p.visible_at.saturating_duration_since(now).as_millis() as u64,
            })
            .collect()
    }
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seed() -> Seed {
        toml::from_str(
            r#"
            move_delay_ms = 100
            [[subnets]]
            id = "subnet-1"
            cidr = "10.0.1.0/24"
            [[nics]]
            id = "eni-a"
            instance = "i-a"
            subnet = "subnet-1"
            primary_ip = "10.0.1.10"
            secondary_ips = ["10.0.1.100"]
            [[nics]]
            id = "eni-b"
            instance = "i-b"
            subnet = "subnet-1"
            primary_ip = "10.0.1.20"
            "#,
        )
        .unwrap()
    }

    #[test]
    fn move_is_delayed_and_ordered() {
        let mut s = State::from_seed(&seed()).unwrap();
        let t0 = Instant::now();
        let ip: Ipv4Addr = "10.0.1.100".parse().unwrap();
        assert!(matches!(
            s.assign(t0, "eni-b", &[ip], false),
            Err(ChangeError::InUse { .. })
        ));
        s.assign(t0, "eni-b", &[ip], true).unwrap();
        assert_eq!(s.target().holder(ip).unwrap().id, "eni-b");
        assert_eq!(s.visible(t0).holder(ip).unwrap().id, "eni-a");
        s.unassign(t0 + Duration::from_millis(50), "eni-b", &[ip])
            .unwrap();
        let t1 = t0 + Duration::from_millis(100);
        // First change visible, second not yet: the visible view lags but stays ordered.
        assert_eq!(s.visible(t1).holder(ip).unwrap().id, "eni-b");
        assert_eq!(s.pending(t1).len(), 1);
        assert_eq!(s.visible(t1).nics["eni-a"].version, 2);
        let v = s.visible(t1 + Duration::from_millis(50)).holder(ip);
        assert!(v.is_none());
        assert_eq!(s.visible(t1).nics["eni-b"].version, 3);
    }

    #[test]
    fn journal_records_every_accepted_change_with_its_request() {
        let mut s = State::from_seed(&seed()).unwrap();
        let t0 = Instant::now();
        let ip: Ipv4Addr = "10.0.1.100".parse().unwrap();
        // Refused: not journaled.
        assert!(s.assign(t0, "eni-b", &[ip], false).is_err());
        s.assign(t0, "eni-b", &[ip], true).unwrap();
        let info = RequestInfo {
            client: "169.254.169.10:40000".into(),
            method: "POST".into(),
            path: "/".into(),
            received_unix_ms: 7,
        };
        REQUEST.sync_scope(info, || s.unassign(t0, "eni-b", &[ip]).unwrap());
        let j = s.journal(0);
        assert_eq!(j.len(), 2);
        assert!(matches!(&j[0].change, Change::Assign { nic, .. } if nic == "eni-b"));
        assert!(j[0].request.is_none());
        assert_eq!(
            j[1].request.as_ref().unwrap().client,
            "169.254.169.10:40000"
        );
        assert_eq!(s.journal(j[0].seq).len(), 1);
        let v = serde_json::to_value(&j[1]).unwrap();
        assert_eq!(v["op"], "unassign");
        assert_eq!(v["request"]["received_unix_ms"], 7);
    }

    #[test]
    fn addresses_are_unique_per_network_only() {
        let seed: Seed = toml::from_str(
            r#"
            move_delay_ms = 0
            [[subnets]]
            id = "subnet-1"
            cidr = "10.0.0.0/24"
            vpc = "vpc-1"
            [[subnets]]
            id = "subnet-2"
            cidr = "10.0.0.0/24"
            vpc = "vpc-2"
            [[subnets]]
            id = "azure-subnet"
            cidr = "10.0.0.0/24"
            [[nics]]
            id = "eni-a"
            subnet = "subnet-1"
            primary_ip = "10.0.0.10"
            secondary_ips = ["10.0.0.100"]
            [[nics]]
            id = "eni-b"
            subnet = "subnet-1"
            primary_ip = "10.0.0.11"
            [[nics]]
            id = "eni-x"
            subnet = "subnet-2"
            primary_ip = "10.0.0.10"
            secondary_ips = ["10.0.0.100"]
            [[nics]]
            id = "nic-z"
            provider = "azure"
            subnet = "azure-subnet"
            primary_ip = "10.0.0.11"
            secondary_ips = ["10.0.0.100"]
            "#,
        )
        .unwrap();
        let mut s = State::from_seed(&seed).unwrap();
        let t = Instant::now();
        let ip: Ipv4Addr = "10.0.0.100".parse().unwrap();
        // A move inside vpc-1 leaves the other networks' holders alone.
        s.assign(t, "eni-b", &[ip], true).unwrap();
        let holders: Vec<String> = s
            .holders(t)
            .into_iter()
            .filter(|h| h.ip == ip)
            .map(|h| format!("{} {}", h.network, h.nic))
            .collect();
        assert_eq!(
            holders,
            [
                "aws/vpc-1 eni-b",
                "aws/vpc-2 eni-x",
                "azure/vpc-emulator nic-z"
            ]
        );
        // Held twice in one network is refused.
        let mut bad = seed.clone();
        bad.nics[1].secondary_ips.push(ip);
        assert!(bad.validate().is_err());
    }

    #[test]
    fn a_deleted_nic_is_refused_and_frees_its_addresses() {
        let mut s = State::from_seed(&seed()).unwrap();
        let t0 = Instant::now();
        let ip: Ipv4Addr = "10.0.1.100".parse().unwrap();
        s.delete_nic(t0, "eni-a").unwrap();
        assert_eq!(
            s.assign(t0, "eni-a", &[ip], true),
            Err(ChangeError::NicNotFound("eni-a".into()))
        );
        assert_eq!(
            s.delete_nic(t0, "eni-a"),
            Err(ChangeError::NicNotFound("eni-a".into()))
        );
        // Visible after the move delay, like any change.
        assert_eq!(s.visible(t0).holder(ip).unwrap().id, "eni-a");
        let t1 = t0 + Duration::from_millis(100);
        assert!(s.visible(t1).holder(ip).is_none());
        // The freed address can be taken without reassignment.
        s.assign(t1, "eni-b", &[ip], false).unwrap();
    }

    #[test]
    fn a_detached_nic_keeps_its_addresses_and_is_attached_back() {
        let mut seed = seed();
        seed.nics[1].device_index = Some(1);
        let mut s = State::from_seed(&seed).unwrap();
        let t0 = Instant::now();
        let ip: Ipv4Addr = "10.0.1.100".parse().unwrap();
        let g = s.generation;
        assert!(matches!(
            s.detach(t0, "eni-a"),
            Err(DetachError::Primary { .. })
        ));
        s.assign(t0, "eni-b", &[ip], true).unwrap();
        assert_eq!(s.detach(t0, "eni-b"), Ok("i-b".to_string()));
        assert!(s.generation > g);
        assert_eq!(
            s.detach(t0, "eni-b"),
            Err(DetachError::NotAttached("eni-b".into()))
        );
        // At once in both views; the pending move still lands on it.
        assert_eq!(s.target().nics["eni-b"].instance, None);
        let later = t0 + Duration::from_millis(150);
        let h: Vec<Holder> = s
            .holders(later)
            .into_iter()
            .filter(|h| h.ip == ip)
            .collect();
        assert_eq!((h[0].nic.as_str(), h[0].attached), ("eni-b", false));
        assert_eq!(h[0].instance, None);
        assert!(s
            .holders(later)
            .iter()
            .any(|h| h.nic == "eni-a" && h.attached));
        assert_eq!(s.attach(later, "eni-b", None), Ok("i-b".to_string()));
        assert_eq!(s.attach(later, "eni-b", None), Ok("i-b".to_string()));
        assert!(matches!(
            s.attach(later, "eni-b", Some("i-z")),
            Err(DetachError::AttachedElsewhere { .. })
        ));
        assert!(s.holders(later).iter().all(|h| h.attached));
        assert_eq!(
            s.attach(later, "eni-x", None),
            Err(DetachError::NotFound("eni-x".into()))
        );
    }

    #[test]
    fn primary_never_moves_and_seed_is_checked() {
        let mut s = State::from_seed(&seed()).unwrap();
        let t0 = Instant::now();
        let p: Ipv4Addr = "10.0.1.10".parse().unwrap();
        assert!(matches!(
            s.assign(t0, "eni-b", &[p], true),
            Err(ChangeError::PrimaryElsewhere { .. })
        ));
        assert_eq!(
            s.unassign(t0, "eni-a", &[p]),
            Err(ChangeError::IsPrimary(p))
        );
        let out: Ipv4Addr = "10.9.9.9".parse().unwrap();
        assert_eq!(
            s.assign(t0, "eni-b", &[out], false),
            Err(ChangeError::OutsideSubnet(out))
        );
        let mut bad = seed();
        bad.nics[1]
            .secondary_ips
            .push("10.0.1.100".parse().unwrap());
        assert!(bad.validate().is_err());
        assert_eq!(Cidr::parse("10.0.0.0/33"), None);
        assert!(parse_mac("02:00:00:00:00:0g").is_none());
    }

    /// IMDS answers the caller's instance: the one `imds_clients` names for its address, else
    /// the instance of the NIC holding its address, else `imds_instance` (callers it cannot map).
    #[test]
    fn imds_answers_the_instance_the_caller_comes_from() {
        let mut seed = seed();
        seed.imds_instance = Some("i-a".into());
        seed.imds_clients
            .insert("169.254.169.11".parse().unwrap(), "i-b".into());
        let mut s = State::from_seed(&seed).unwrap();
        let t0 = Instant::now();
        let ip = |a: &str| Some(a.parse::<IpAddr>().unwrap());
        // Mapped management address, a NIC's primary and secondary address.
        assert_eq!(
            s.imds_instance_for(t0, ip("169.254.169.11")).as_deref(),
            Some("i-b")
        );
        assert_eq!(
            s.imds_instance_for(t0, ip("10.0.1.20")).as_deref(),
            Some("i-b")
        );
        assert_eq!(
            s.imds_instance_for(t0, ip("10.0.1.100")).as_deref(),
            Some("i-a")
        );
        assert_eq!(
            s.imds_instance_for(t0, ip("::ffff:10.0.1.20")).as_deref(),
            Some("i-b")
        );
        // Unknown callers, and none: the default instance, as before.
        assert_eq!(
            s.imds_instance_for(t0, ip("127.0.0.1")).as_deref(),
            Some("i-a")
        );
        assert_eq!(
            s.imds_instance_for(t0, ip("169.254.169.10")).as_deref(),
            Some("i-a")
        );
        assert_eq!(s.imds_instance_for(t0, None).as_deref(), Some("i-a"));
        // A secondary address that moved: its new holder's instance once the move is visible.
        let sec: Ipv4Addr = "10.0.1.100".parse().unwrap();
        s.assign(t0, "eni-b", &[sec], true).unwrap();
        assert_eq!(
            s.imds_instance_for(t0, ip("10.0.1.100")).as_deref(),
            Some("i-a")
        );
        let later = t0 + Duration::from_millis(150);
        assert_eq!(
            s.imds_instance_for(later, ip("10.0.1.100")).as_deref(),
            Some("i-b")
        );
        // The seed is checked: a client mapped to an instance no NIC is attached to.
        let mut bad = seed.clone();
        bad.imds_clients
            .insert("169.254.169.12".parse().unwrap(), "i-nope".into());
        assert!(bad.validate().is_err());
        // TOML and JSON seeds spell the map with address keys.
        let t: Seed = toml::from_str(
            "imds_clients = { \"169.254.169.10\" = \"i-a\" }\n[[subnets]]\nid = \"s\"\ncidr = \"10.0.1.0/24\"\n[[nics]]\nid = \"eni-a\"\ninstance = \"i-a\"\nsubnet = \"s\"\nprimary_ip = \"10.0.1.10\"\n",
        )
        .unwrap();
        t.validate().unwrap();
        let j: Seed = serde_json::from_str(&serde_json::to_string(&t).unwrap()).unwrap();
        assert_eq!(j.imds_clients, t.imds_clients);
    }
}
