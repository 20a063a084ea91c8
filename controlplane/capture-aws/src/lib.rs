//! `cer-capture-aws`: the AWS capture mechanism of the CER capture plane (DESIGN.md section 3):
//! a remote-owned /32 is captured as a secondary private IP of this router's ENI with
//! `AssignPrivateIpAddresses` (`AllowReassignment=true`, which moves it from whichever ENI held
//! it), and released with `UnassignPrivateIpAddresses`. Moves are asynchronous in EC2:
//! [`AwsProvider::capture`] returns once EC2 accepted the change and the reconciler confirms it
//! with [`AwsProvider::observe`] (`DescribeNetworkInterfaces`).
//!
//! The client is the real AWS SDK (`aws-sdk-ec2`, `aws-config`):
//!
//! - credentials come from the standard chain (environment, profile, web identity, ECS, IMDS
//!   role); none at all is a `Config` error naming what to set;
//! - this router's ENI, the instance and the region are discovered through IMDSv2 unless
//!   configured ([`AwsConfig`]);
//! - every call is bounded ([`CONNECT_TIMEOUT`], [`ATTEMPT_TIMEOUT`], [`OPERATION_TIMEOUT`])
//!   and the SDK retries at most once ([`MAX_ATTEMPTS`]): the reconciler owns backoff and jitter;
//! - failures are classified into [`cer_capture::ErrorKind`] (see [`error`]).
//!
//! A release hands the address back to the ENI it was captured from when the reconciler remembers
//! one ([`AwsProvider::hand_back`]: `AssignPrivateIpAddresses` to that ENI with
//! `AllowReassignment`, one call that moves it from ours); an ENI that no longer exists
//! (`InvalidNetworkInterfaceID.NotFound`) is [`cer_capture::ErrorKind::HolderGone`] and the
//! address stays on ours.
//!
//! `observe` first asks EC2 for the ENIs of our VPC holding the address
//! (`addresses.private-ip-address` filter); when that finds nobody it lists the ENIs of our
//! subnet (the only subnet an address can be captured from) and matches on the client side,
//! because some EC2 implementations (moto) match that filter against primary addresses only.

pub mod error;

use std::net::Ipv4Addr;
use std::time::Duration;

use async_trait::async_trait;
use aws_config::imds::client::Client as ImdsClient;
use aws_config::meta::region::RegionProviderChain;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region};
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_sdk_ec2::types::{Filter, NetworkInterface};
use aws_sdk_ec2::Client;
use cer_capture::{CaptureError, CaptureProvider, ErrorKind, Fence, Holding};

use error::{credentials_error, imds_error, sdk_error, PROVIDER};

/// TCP connect timeout of every EC2 and IMDS call.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Timeout of one attempt of an EC2 call.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(4);
/// Timeout of one EC2 call, retries included: no provider call takes longer.
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(10);
/// Attempts per EC2 call (the first one and one retry).
pub const MAX_ATTEMPTS: u32 = 2;
/// Read timeout of one IMDS request.
const IMDS_READ_TIMEOUT: Duration = Duration::from_secs(2);
/// Bound on resolving credentials at start-up.
const CREDENTIALS_TIMEOUT: Duration = Duration::from_secs(15);
/// Bound on the pages read when listing the ENIs of our subnet.
const MAX_PAGES: usize = 50;

/// The `[aws]` section of the cer-control configuration.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsConfig {
    /// Region, e.g. "eu-west-1"; default: from IMDS, else the standard chain (AWS_REGION,
    /// profile).
    pub region: Option<String>,
    /// EC2 endpoint override (tests: the emulator or moto), e.g. "http://127.0.0.1:8700".
    pub endpoint_url: Option<String>,
    /// This router's ENI; default: discovered via IMDSv2.
    pub eni_id: Option<String>,
    /// IMDS override, e.g. "http://127.0.0.1:8711".
    pub imds_endpoint: Option<String>,
    /// Which of the instance's ENIs to use when discovering (default 0).
    pub device_index: Option<u32>,
}

fn check_url(field: &str, v: &str) -> Result<(), String> {
    let rest = v
        .strip_prefix("http://")
        .or_else(|| v.strip_prefix("https://"));
    match rest {
        Some(r)
            if !r.is_empty()
                && !r.starts_with('/')
                && !r.chars().any(|c| c.is_whitespace() || c.is_control()) =>
        {
            Ok(())
        }
        _ => Err(format!(
            "aws.{field} = {v:?}: expected an http:// or https:// URL with a host"
        )),
    }
}

impl AwsConfig {
    /// Checks the shape of every set field; the error names the field and its value.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(r) = &self.region {
            let ok = !r.is_empty()
                && r.len() <= 64
                && r.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                && !r.starts_with('-')
                && !r.ends_with('-');
            if !ok {
                return Err(format!(
                    "aws.region = {r:?}: expected a region name such as \"eu-west-1\""
                ));
            }
        }
        if let Some(u) = &self.endpoint_url {
            check_url("endpoint_url", u)?;
        }
        if let Some(u) = &self.imds_endpoint {
            check_url("imds_endpoint", u)?;
        }
        if let Some(e) = &self.eni_id {
            let ok = e.strip_prefix("eni-").is_some_and(|h| {
                !h.is_empty() && h.len() <= 32 && h.chars().all(|c| c.is_ascii_alphanumeric())
            });
            if !ok {
                return Err(format!(
                    "aws.eni_id = {e:?}: expected an ENI id such as \"eni-0123456789abcdef0\""
                ));
            }
        }
        if let Some(d) = self.device_index {
            if d > 127 {
                return Err(format!(
                    "aws.device_index = {d}: expected a device index between 0 and 127"
                ));
            }
        }
        Ok(())
    }
}

/// What IMDS told about this instance.
#[derive(Debug, Clone)]
struct Discovered {
    instance_id: String,
    region: String,
    eni_id: String,
}

fn imds_client(cfg: &AwsConfig) -> Result<ImdsClient, CaptureError> {
    let mut b = ImdsClient::builder()
        .max_attempts(MAX_ATTEMPTS)
        .connect_timeout(CONNECT_TIMEOUT)
        .read_timeout(IMDS_READ_TIMEOUT);
    if let Some(url) = &cfg.imds_endpoint {
        b = b.endpoint(url).map_err(|e| {
            CaptureError::new(
                ErrorKind::Config,
                PROVIDER,
                "config",
                format!("aws.imds_endpoint = {url:?}: {e}"),
            )
        })?;
    }
    Ok(b.build())
}

async fn imds_get(imds: &ImdsClient, path: &str) -> Result<String, CaptureError> {
    let v = imds.get(path).await.map_err(|e| imds_error(path, e))?;
    Ok(v.as_ref().trim().to_string())
}

/// Instance id, region and the ENI at `device_index`, through IMDSv2.
async fn discover(imds: &ImdsClient, device_index: u32) -> Result<Discovered, CaptureError> {
    let instance_id = imds_get(imds, "/latest/meta-data/instance-id").await?;
    let region = imds_get(imds, "/latest/meta-data/placement/region").await?;
    let macs_path = "/latest/meta-data/network/interfaces/macs/";
    let macs = imds_get(imds, macs_path).await?;
    let mut seen = Vec::new();
    for mac in macs.lines().map(|l| l.trim().trim_end_matches('/')) {
        if mac.is_empty() || mac.contains('/') || mac.contains("..") {
            continue;
        }
        let base = format!("{macs_path}{mac}");
        let dev = imds_get(imds, &format!("{base}/device-number")).await?;
        let Ok(dev) = dev.parse::<u32>() else {
            return Err(CaptureError::new(
                ErrorKind::Transient,
                PROVIDER,
                format!("IMDS {base}/device-number"),
                format!("not a device number: {dev:?}"),
            ));
        };
        seen.push(dev);
        if dev == device_index {
            let eni_id = imds_get(imds, &format!("{base}/interface-id")).await?;
            if !eni_id.starts_with("eni-") {
                return Err(CaptureError::new(
                    ErrorKind::Transient,
                    PROVIDER,
                    format!("IMDS {base}/interface-id"),
                    format!("not an ENI id: {eni_id:?}"),
                ));
            }
            return Ok(Discovered {
                instance_id,
                region,
                eni_id,
            });
        }
    }
    seen.sort_unstable();
    Err(CaptureError::new(
        ErrorKind::Config,
        PROVIDER,
        "IMDS discovery",
        format!(
            "instance {instance_id} has no ENI with device index {device_index} (device indexes: {seen:?}); set aws.device_index or aws.eni_id"
        ),
    ))
}

fn config_error(step: &str, message: impl Into<String>) -> CaptureError {
    CaptureError::new(ErrorKind::Config, PROVIDER, step, message)
}

/// The addresses of one ENI as EC2 reports them.
#[derive(Debug, Clone)]
struct EniAddrs {
    primary: Option<Ipv4Addr>,
    all: Vec<Ipv4Addr>,
}

fn addrs_of(eni: &NetworkInterface) -> EniAddrs {
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

/// Who holds `ip` among `enis`: ours wins (an implementation that keeps an address on two
/// ENIs still delivers it to us), else the lowest other ENI id.
fn holding_in(enis: &[NetworkInterface], ours: &str, ip: Ipv4Addr) -> Option<Holding> {
    let mut elsewhere: Option<&str> = None;
    for eni in enis {
        if !addrs_of(eni).all.contains(&ip) {
            continue;
        }
        let Some(id) = eni.network_interface_id() else {
            continue;
        };
        if id == ours {
            return Some(Holding::Ours);
        }
        if elsewhere.is_none_or(|e| id < e) {
            elsewhere = Some(id);
        }
    }
    elsewhere.map(|e| Holding::Elsewhere(e.to_string()))
}

fn filter(name: &str, value: &str) -> Filter {
    Filter::builder().name(name).values(value).build()
}

/// The AWS capture provider for one ENI.
pub struct AwsProvider {
    client: Client,
    eni_id: String,
    instance_id: Option<String>,
    region: String,
    vpc_id: String,
    subnet_id: String,
}

impl std::fmt::Debug for AwsProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsProvider")
            .field("eni_id", &self.eni_id)
            .field("instance_id", &self.instance_id)
            .field("region", &self.region)
            .field("vpc_id", &self.vpc_id)
            .field("subnet_id", &self.subnet_id)
            .finish()
    }
}

impl AwsProvider {
    /// Validates `cfg`, discovers what is not configured through IMDSv2, resolves
    /// credentials and checks the ENI with `DescribeNetworkInterfaces`.
    pub async fn new(cfg: &AwsConfig) -> Result<AwsProvider, CaptureError> {
        cfg.validate().map_err(|e| config_error("config", e))?;
        let imds = imds_client(cfg)?;
        let (eni_id, instance_id, imds_region) = match &cfg.eni_id {
            Some(e) => (e.clone(), None, None),
            None => {
                let d = discover(&imds, cfg.device_index.unwrap_or(0)).await?;
                (d.eni_id, Some(d.instance_id), Some(d.region))
            }
        };
        let region = match (&cfg.region, imds_region) {
            (Some(r), _) => r.clone(),
            (None, Some(r)) => r,
            (None, None) => {
                let chain = RegionProviderChain::first_try(
                    aws_config::environment::EnvironmentVariableRegionProvider::new(),
                )
                .or_else(aws_config::profile::region::ProfileFileRegionProvider::new())
                .or_else(
                    aws_config::imds::region::ImdsRegionProvider::builder()
                        .imds_client(imds.clone())
                        .build(),
                );
                match chain.region().await {
                    Some(r) => r.to_string(),
                    None => {
                        return Err(config_error(
                            "config",
                            "no AWS region: set aws.region in the configuration or AWS_REGION",
                        ))
                    }
                }
            }
        };

        let credentials =
            aws_config::default_provider::credentials::DefaultCredentialsChain::builder()
                .region(Region::new(region.clone()))
                .imds_client(imds.clone())
                .build()
                .await;
        let credentials = SharedCredentialsProvider::new(credentials);
        match tokio::time::timeout(CREDENTIALS_TIMEOUT, credentials.provide_credentials()).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(credentials_error(e)),
            Err(_) => {
                return Err(CaptureError::new(
                    ErrorKind::Transient,
                    PROVIDER,
                    "credentials",
                    format!(
                        "resolving credentials took longer than {CREDENTIALS_TIMEOUT:?}; {}",
                        error::MISSING_CREDENTIALS
                    ),
                ))
            }
        }

        let timeouts = TimeoutConfig::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .operation_attempt_timeout(ATTEMPT_TIMEOUT)
            .operation_timeout(OPERATION_TIMEOUT)
            .build();
        let sdk = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(region.clone()))
            .credentials_provider(credentials)
            .timeout_config(timeouts)
            .retry_config(RetryConfig::standard().with_max_attempts(MAX_ATTEMPTS))
            .load()
            .await;
        let mut ec2 = aws_sdk_ec2::config::Builder::from(&sdk);
        if let Some(url) = &cfg.endpoint_url {
            ec2 = ec2.endpoint_url(url);
        }
        let client = Client::from_conf(ec2.build());

        let mut provider = AwsProvider {
            client,
            eni_id,
            instance_id,
            region,
            vpc_id: String::new(),
            subnet_id: String::new(),
        };
        let eni = provider.our_eni().await?;
        provider.vpc_id = eni
            .vpc_id()
            .filter(|v| !v.is_empty())
            .ok_or_else(|| {
                CaptureError::new(
                    ErrorKind::Transient,
                    PROVIDER,
                    "DescribeNetworkInterfaces",
                    format!("ENI {} reported without a VPC id", provider.eni_id),
                )
            })?
            .to_string();
        provider.subnet_id = eni.subnet_id().unwrap_or_default().to_string();
        if provider.instance_id.is_none() {
            provider.instance_id = eni
                .attachment()
                .and_then(|a| a.instance_id())
                .map(str::to_string);
        }
        log::info!("{}", provider.describe());
        Ok(provider)
    }

    /// A provider on an EC2 client the caller built (its endpoint, retry
    /// and timeout policy), for an ENI already known: no IMDS discovery and
    /// no check call. The fuzz target uses it to drive the SDK's XML parsing
    /// and our reply handling without the production retry backoff.
    pub fn from_client(
        client: Client,
        eni_id: &str,
        region: &str,
        vpc_id: &str,
        subnet_id: &str,
    ) -> AwsProvider {
        AwsProvider {
            client,
            eni_id: eni_id.to_string(),
            instance_id: None,
            region: region.to_string(),
            vpc_id: vpc_id.to_string(),
            subnet_id: subnet_id.to_string(),
        }
    }

    /// This router's ENI id.
    pub fn eni_id(&self) -> &str {
        &self.eni_id
    }

    /// Our ENI as EC2 reports it now.
    async fn our_eni(&self) -> Result<NetworkInterface, CaptureError> {
        let step = "DescribeNetworkInterfaces";
        let out = self
            .client
            .describe_network_interfaces()
            .network_interface_ids(&self.eni_id)
            .send()
            .await
            .map_err(|e| sdk_error(step, e))?;
        out.network_interfaces()
            .iter()
            .find(|n| n.network_interface_id() == Some(self.eni_id.as_str()))
            .cloned()
            .ok_or_else(|| {
                config_error(
                    step,
                    format!("this router's ENI {} was not reported by EC2", self.eni_id),
                )
            })
    }

    /// ENIs matching `filters`, every page (bounded).
    async fn list(&self, filters: Vec<Filter>) -> Result<Vec<NetworkInterface>, CaptureError> {
        let step = "DescribeNetworkInterfaces";
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let page = self
                .client
                .describe_network_interfaces()
                .set_filters(Some(filters.clone()))
                .max_results(1000)
                .set_next_token(token.take())
                .send()
                .await
                .map_err(|e| sdk_error(step, e))?;
            out.extend(page.network_interfaces().iter().cloned());
            match page.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_string()),
                _ => return Ok(out),
            }
        }
        Err(CaptureError::new(
            ErrorKind::Transient,
            PROVIDER,
            step,
            format!("more than {MAX_PAGES} pages of ENIs: giving up"),
        ))
    }
}

#[async_trait]
impl CaptureProvider for AwsProvider {
    fn name(&self) -> &'static str {
        PROVIDER
    }

    fn describe(&self) -> String {
        format!(
            "AWS ENI {} secondary private IPs (instance {}, {}, subnet {}, region {})",
            self.eni_id,
            self.instance_id.as_deref().unwrap_or("unknown"),
            self.vpc_id,
            if self.subnet_id.is_empty() {
                "unknown"
            } else {
                &self.subnet_id
            },
            self.region
        )
    }

    async fn observe(&self, ip: Ipv4Addr) -> Result<Holding, CaptureError> {
        let ip_s = ip.to_string();
        let enis = self
            .list(vec![
                filter("vpc-id", &self.vpc_id),
                filter("addresses.private-ip-address", &ip_s),
            ])
            .await?;
        if let Some(h) = holding_in(&enis, &self.eni_id, ip) {
            return Ok(h);
        }
        if self.subnet_id.is_empty() {
            return Ok(Holding::Nobody);
        }
        let enis = self
            .list(vec![filter("subnet-id", &self.subnet_id)])
            .await?;
        Ok(holding_in(&enis, &self.eni_id, ip).unwrap_or(Holding::Nobody))
    }

    async fn capture(&self, ip: Ipv4Addr, fence: &Fence) -> Result<(), CaptureError> {
        if addrs_of(&self.our_eni().await?).all.contains(&ip) {
            return Ok(());
        }
        let step = "AssignPrivateIpAddresses";
        fence.check(PROVIDER, step)?;
        self.client
            .assign_private_ip_addresses()
            .network_interface_id(&self.eni_id)
            .private_ip_addresses(ip.to_string())
            .allow_reassignment(true)
            .send()
            .await
            .map_err(|e| sdk_error(step, e))?;
        log::info!("aws: assigned {ip} to {} (AllowReassignment)", self.eni_id);
        Ok(())
    }

    async fn release(&self, ip: Ipv4Addr, fence: &Fence) -> Result<(), CaptureError> {
        let addrs = addrs_of(&self.our_eni().await?);
        if !addrs.all.contains(&ip) {
            return Ok(());
        }
        let step = "UnassignPrivateIpAddresses";
        if addrs.primary == Some(ip) {
            return Err(config_error(
                step,
                format!(
                    "{ip} is the primary private IP of {}: it is never released",
                    self.eni_id
                ),
            ));
        }
        fence.check(PROVIDER, step)?;
        let r = self
            .client
            .unassign_private_ip_addresses()
            .network_interface_id(&self.eni_id)
            .private_ip_addresses(ip.to_string())
            .send()
            .await;
        match r {
            Ok(_) => {
                log::info!("aws: unassigned {ip} from {}", self.eni_id);
                Ok(())
            }
            Err(e) => {
                let err = sdk_error(step, e);
                // Moved away between our check and the call: already released.
                if err.kind == ErrorKind::Config
                    && err.message.starts_with("InvalidParameterValue")
                    && !addrs_of(&self.our_eni().await?).all.contains(&ip)
                {
                    return Ok(());
                }
                Err(err)
            }
        }
    }

    async fn hand_back(&self, ip: Ipv4Addr, to: &str, fence: &Fence) -> Result<(), CaptureError> {
        let step = format!("AssignPrivateIpAddresses to {to}");
        if self.is_own_nic(to) {
            return Err(config_error(
                &step,
                format!("{to} is this router's own ENI: nothing to hand {ip} back to"),
            ));
        }
        let ours = addrs_of(&self.our_eni().await?);
        if ours.primary == Some(ip) {
            return Err(config_error(
                &step,
                format!(
                    "{ip} is the primary private IP of {}: it never moves",
                    self.eni_id
                ),
            ));
        }
        // Not on ours: held by `to` already or by a third ENI (not ours to move), or on nobody
        // (an earlier hand-back or someone else removed it: assign it to `to`).
        if !ours.all.contains(&ip) && matches!(self.observe(ip).await?, Holding::Elsewhere(_)) {
            return Ok(());
        }
        fence.check(PROVIDER, &step)?;
        let r = self
            .client
            .assign_private_ip_addresses()
            .network_interface_id(to)
            .private_ip_addresses(ip.to_string())
            .allow_reassignment(true)
            .send()
            .await;
        match r {
            Ok(_) => {
                log::info!("aws: handed {ip} back to {to} (AllowReassignment)");
                Ok(())
            }
            Err(e) => {
                let mut err = sdk_error(&step, e);
                if err
                    .message
                    .starts_with("InvalidNetworkInterfaceID.NotFound")
                {
                    err.kind = ErrorKind::HolderGone;
                    err.message = format!("ENI {to} no longer exists: {}", err.message);
                }
                Err(err)
            }
        }
    }

    fn is_own_nic(&self, id: &str) -> bool {
        id == self.eni_id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validate_names_field_and_value() {
        assert!(AwsConfig::default().validate().is_ok());
        let ok = AwsConfig {
            region: Some("eu-west-1".into()),
            endpoint_url: Some("http://127.0.0.1:8700".into()),
            eni_id: Some("eni-0abc".into()),
            imds_endpoint: Some("http://127.0.0.1:8711".into()),
            device_index: Some(1),
        };
        assert!(ok.validate().is_ok());
        let e = AwsConfig {
            region: Some("EU West".into()),
            ..Default::default()
        }
        .validate()
        .unwrap_err();
        assert!(e.contains("aws.region") && e.contains("EU West"), "{e}");
        let e = AwsConfig {
            eni_id: Some("i-0abc".into()),
            ..Default::default()
        }
        .validate()
        .unwrap_err();
        assert!(e.contains("aws.eni_id") && e.contains("i-0abc"), "{e}");
        let e = AwsConfig {
            endpoint_url: Some("127.0.0.1:8700".into()),
            ..Default::default()
        }
        .validate()
        .unwrap_err();
        assert!(
            e.contains("aws.endpoint_url") && e.contains("127.0.0.1:8700"),
            "{e}"
        );
        let e = AwsConfig {
            imds_endpoint: Some("ftp://x".into()),
            ..Default::default()
        }
        .validate()
        .unwrap_err();
        assert!(
            e.contains("aws.imds_endpoint") && e.contains("ftp://x"),
            "{e}"
        );
        let e = AwsConfig {
            device_index: Some(500),
            ..Default::default()
        }
        .validate()
        .unwrap_err();
        assert!(e.contains("aws.device_index") && e.contains("500"), "{e}");
    }

    #[test]
    fn config_rejects_unknown_fields() {
        let v = serde_json::json!({"region": "eu-west-1", "eni": "eni-1"});
        assert!(serde_json::from_value::<AwsConfig>(v).is_err());
        let v = serde_json::json!({"region": "eu-west-1", "eni_id": "eni-1", "device_index": 2});
        let c: AwsConfig = serde_json::from_value(v).unwrap();
        assert_eq!(c.device_index, Some(2));
    }

    fn eni(id: &str, primary: &str, secondary: &[&str]) -> NetworkInterface {
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

    #[test]
    fn holding_prefers_ours_then_lowest_id() {
        let ip: Ipv4Addr = "10.0.1.100".parse().unwrap();
        let enis = vec![
            eni("eni-c", "10.0.1.30", &["10.0.1.100"]),
            eni("eni-b", "10.0.1.20", &["10.0.1.100"]),
        ];
        assert_eq!(
            holding_in(&enis, "eni-a", ip),
            Some(Holding::Elsewhere("eni-b".into()))
        );
        let mut with_ours = enis.clone();
        with_ours.push(eni("eni-a", "10.0.1.10", &["10.0.1.100"]));
        assert_eq!(holding_in(&with_ours, "eni-a", ip), Some(Holding::Ours));
        assert_eq!(
            holding_in(&enis, "eni-a", "10.0.1.7".parse().unwrap()),
            None
        );
        // A primary address counts too.
        assert_eq!(
            holding_in(&enis, "eni-a", "10.0.1.30".parse().unwrap()),
            Some(Holding::Elsewhere("eni-c".into()))
        );
    }
}
