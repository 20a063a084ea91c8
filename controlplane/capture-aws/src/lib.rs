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
//! - failures are classified into [`cer_capture::ErrorKind`] (see [`error`]);
//! - clock skew: EC2 refuses a request whose SigV4 date is more than 15 minutes off its clock
//!   (400 `RequestExpired`). The SDK's clock skew interceptor learns EC2's time from every
//!   reply's `Date` header and signs later requests with it, but does not retry
//!   `RequestExpired` itself; `ClockSkewRetry` does (once, signed with EC2's time), so a host
//!   clock off by any amount costs one refused request per jump. A refusal that still gets
//!   through is `Transient` and names the skew.
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

pub mod enis;
pub mod error;

use std::net::Ipv4Addr;
use std::sync::Arc;
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
use cer_capture::provider::group_by;
use cer_capture::{
    BucketConfig, Budget, BudgetStatus, CaptureError, CaptureProvider, ErrorKind, Fence, Holding,
    Item,
};
use std::collections::HashMap;

use enis::{detached_why, holding_in, plan, Own};
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
    /// Every ENI of this router that may hold captured addresses, in
    /// preference order; default: the capture ENI, then the instance's other
    /// ENIs in its subnet (by device index). Captures spread over them when
    /// one is full.
    pub eni_ids: Option<Vec<String>>,
    /// The instance type, whose `Ipv4AddressesPerInterface`
    /// (`DescribeInstanceTypes`) caps the addresses per ENI; default: from
    /// IMDS. Unknown: EC2's `PrivateIpAddressLimitExceeded` is the only
    /// quota signal.
    pub instance_type: Option<String>,
    /// Client-side budget of `AssignPrivateIpAddresses` +
    /// `UnassignPrivateIpAddresses` (EC2's mutating bucket: 100, 5/s).
    pub mutating_budget: Option<BucketConfig>,
    /// Client-side budget of `Describe*` calls (EC2's non-mutating bucket:
    /// 100, 20/s).
    pub describe_budget: Option<BucketConfig>,
}

/// EC2's documented bucket for mutating actions (per account and region).
pub const MUTATING_BUDGET: BucketConfig = BucketConfig::new(100, 5.0);
/// EC2's documented bucket for filtered non-mutating actions.
pub const DESCRIBE_BUDGET: BucketConfig = BucketConfig::new(100, 20.0);
/// Most values one `Filter` of a Describe call takes.
const FILTER_VALUES: usize = 200;

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

fn check_eni(field: &str, e: &str) -> Result<(), String> {
    let ok = e.strip_prefix("eni-").is_some_and(|h| {
        !h.is_empty() && h.len() <= 32 && h.chars().all(|c| c.is_ascii_alphanumeric())
    });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "aws.{field} = {e:?}: expected an ENI id such as \"eni-0123456789abcdef0\""
        ))
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
            check_eni("eni_id", e)?;
        }
        for e in self.eni_ids.iter().flatten() {
            check_eni("eni_ids", e)?;
        }
        if let Some(t) = &self.instance_type {
            let ok = !t.is_empty()
                && t.len() <= 64
                && t.contains('.')
                && t.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-');
            if !ok {
                return Err(format!(
                    "aws.instance_type = {t:?}: expected an instance type such as \"c5.4xlarge\""
                ));
            }
        }
        if let Some(b) = &self.mutating_budget {
            b.validate("aws.mutating_budget")?;
        }
        if let Some(b) = &self.describe_budget {
            b.validate("aws.describe_budget")?;
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

fn filter(name: &str, value: &str) -> Filter {
    Filter::builder().name(name).values(value).build()
}

/// Retries (once, within the SDK's attempts) a request EC2 refused because its SigV4 date was
/// too far from EC2's clock (`RequestExpired`, ...) when the reply's `Date` shows the skew.
/// The SDK's clock skew interceptor (`aws-runtime` `ServiceClockSkewInterceptor`) measures the
/// skew from every reply's `Date` and signs the next attempt and every later request with
/// EC2's time, but its own retry classifier does not know EC2's `RequestExpired`: without this
/// the first call after the host clock drifted would fail.
#[derive(Debug)]
struct ClockSkewRetry;

impl aws_sdk_ec2::config::retry::ClassifyRetry for ClockSkewRetry {
    fn classify_retry(
        &self,
        ctx: &aws_sdk_ec2::config::interceptors::InterceptorContext,
    ) -> aws_sdk_ec2::config::retry::RetryAction {
        use aws_sdk_ec2::config::retry::RetryAction;
        let Some(r) = ctx.response() else {
            return RetryAction::NoActionIndicated;
        };
        if r.status().as_u16() != 400 && r.status().as_u16() != 401 && r.status().as_u16() != 403 {
            return RetryAction::NoActionIndicated;
        }
        let body = r.body().bytes().unwrap_or_default();
        let text = String::from_utf8_lossy(body);
        let code = text
            .split_once("<Code>")
            .and_then(|(_, rest)| rest.split_once("</Code>"))
            .map(|(c, _)| c.trim());
        let date = r.headers().get("date");
        match error::clock_skew(code, date) {
            Some(skew) if skew.unsigned_abs() >= error::SKEW_THRESHOLD.as_secs() => {
                log::warn!(
                    "aws: {} refused: {}; retried with EC2's time",
                    code.unwrap_or("request"),
                    error::skew_text(skew)
                );
                RetryAction::transient_error()
            }
            _ => RetryAction::NoActionIndicated,
        }
    }

    fn name(&self) -> &'static str {
        "CER clock skew (RequestExpired)"
    }
}

/// Keeps the client-side budgets true to what EC2 sees: the SDK retries a
/// call on its own (a throttle reply, a timed-out attempt: [`MAX_ATTEMPTS`]),
/// and every attempt after the first is an EC2 request our `take` never
/// paid for, so it is charged here; every throttle reply (HTTP 503:
/// `RequestLimitExceeded`, or `Unavailable`) reaches the budget here too,
/// also when the SDK's retry then succeeds and the caller never sees it.
struct AttemptMeter {
    mutating: Arc<Budget>,
    describing: Arc<Budget>,
}

impl std::fmt::Debug for AttemptMeter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AttemptMeter")
    }
}

impl AttemptMeter {
    /// The budget an operation draws from (none for what we do not meter).
    fn budget(&self, cfg: &aws_sdk_ec2::config::ConfigBag) -> Option<&Budget> {
        let op = cfg
            .load::<aws_smithy_runtime_api::client::orchestrator::Metadata>()?
            .name();
        match op {
            "AssignPrivateIpAddresses" | "UnassignPrivateIpAddresses" => Some(&self.mutating),
            o if o.starts_with("Describe") => Some(&self.describing),
            _ => None,
        }
    }
}

impl aws_sdk_ec2::config::Intercept for AttemptMeter {
    fn name(&self) -> &'static str {
        "CER API budget (SDK retry attempts, throttle replies)"
    }

    fn read_before_attempt(
        &self,
        _ctx: &aws_sdk_ec2::config::interceptors::BeforeTransmitInterceptorContextRef<'_>,
        _rc: &aws_sdk_ec2::config::RuntimeComponents,
        cfg: &mut aws_sdk_ec2::config::ConfigBag,
    ) -> Result<(), aws_sdk_ec2::error::BoxError> {
        let attempt = cfg
            .load::<aws_smithy_runtime_api::client::retries::RequestAttempts>()
            .map_or(1, |a| a.attempts());
        if attempt > 1 {
            if let Some(b) = self.budget(cfg) {
                b.charge();
            }
        }
        Ok(())
    }

    fn read_after_attempt(
        &self,
        ctx: &aws_sdk_ec2::config::interceptors::FinalizerInterceptorContextRef<'_>,
        _rc: &aws_sdk_ec2::config::RuntimeComponents,
        cfg: &mut aws_sdk_ec2::config::ConfigBag,
    ) -> Result<(), aws_sdk_ec2::error::BoxError> {
        if ctx.response().is_some_and(|r| r.status().as_u16() == 503) {
            if let Some(b) = self.budget(cfg) {
                b.throttled(None);
            }
        }
        Ok(())
    }
}

/// The AWS capture provider for one router: its capture ENI, and any other
/// ENIs of the instance in the capture subnet when one is full.
pub struct AwsProvider {
    client: Client,
    eni_id: String,
    /// Every ENI of ours that may hold captures, preference order
    /// (`eni_id` first).
    enis: Vec<String>,
    instance_id: Option<String>,
    instance_type: Option<String>,
    /// `Ipv4AddressesPerInterface` of the instance type (primary included).
    per_eni: Option<usize>,
    region: String,
    vpc_id: String,
    subnet_id: String,
    mutating: Arc<Budget>,
    describing: Arc<Budget>,
    /// Addresses assigned to our ENIs that EC2 may not report yet (its
    /// reads are eventually consistent): (ENI, when assigned). Counted when
    /// spreading captures, so a second batch does not overfill an ENI whose
    /// first batch is still invisible.
    recent: std::sync::Mutex<HashMap<Ipv4Addr, (String, tokio::time::Instant)>>,
    /// Our ENIs last seen detached from our instance, with why (logged when
    /// this changes, shown by `describe`).
    detached: std::sync::Mutex<Vec<(String, String)>>,
}

/// How long an assignment EC2 accepted counts as possibly invisible.
const RECENT: Duration = Duration::from_secs(30);

impl std::fmt::Debug for AwsProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsProvider")
            .field("enis", &self.enis)
            .field("instance_id", &self.instance_id)
            .field("instance_type", &self.instance_type)
            .field("per_eni", &self.per_eni)
            .field("region", &self.region)
            .field("vpc_id", &self.vpc_id)
            .field("subnet_id", &self.subnet_id)
            .finish()
    }
}

fn all<T>(n: usize, e: &CaptureError) -> Vec<Result<T, CaptureError>> {
    (0..n).map(|_| Err(e.clone())).collect()
}

impl AwsProvider {
    /// Validates `cfg`, discovers what is not configured through IMDSv2, resolves
    /// credentials, checks the ENI with `DescribeNetworkInterfaces`, finds the instance's
    /// other ENIs in the capture subnet and the instance type's address limit.
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
        let discovered = imds_region.is_some();
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
        let mutating = Arc::new(Budget::new(
            "aws mutating",
            cfg.mutating_budget.unwrap_or(MUTATING_BUDGET),
        ));
        let describing = Arc::new(Budget::new(
            "aws describe",
            cfg.describe_budget.unwrap_or(DESCRIBE_BUDGET),
        ));
        let meter = AttemptMeter {
            mutating: mutating.clone(),
            describing: describing.clone(),
        };
        let mut ec2 = aws_sdk_ec2::config::Builder::from(&sdk)
            .retry_classifier(ClockSkewRetry)
            .interceptor(meter);
        if let Some(url) = &cfg.endpoint_url {
            ec2 = ec2.endpoint_url(url);
        }
        let client = Client::from_conf(ec2.build());

        let mut provider = AwsProvider::from_client(client, &eni_id, &region, "", "");
        provider.instance_id = instance_id;
        provider.mutating = mutating;
        provider.describing = describing;
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
        if provider.instance_id.is_none() {
            log::warn!(
                "aws: ENI {} is attached to no instance: captures go to it as configured, and a detached ENI cannot be told from an attached one",
                provider.eni_id
            );
        }
        provider.enis = match &cfg.eni_ids {
            Some(ids) => {
                let mut v = vec![provider.eni_id.clone()];
                v.extend(ids.iter().filter(|i| **i != provider.eni_id).cloned());
                v
            }
            None => provider.sibling_enis().await?,
        };
        provider.instance_type = match &cfg.instance_type {
            Some(t) => Some(t.clone()),
            None if discovered => match imds_get(&imds, "/latest/meta-data/instance-type").await {
                Ok(t) if !t.is_empty() => Some(t),
                Ok(_) => None,
                Err(e) => {
                    log::warn!("aws: instance type unknown ({e}): EC2 alone enforces the addresses per ENI");
                    None
                }
            },
            None => None,
        };
        if let Some(t) = provider.instance_type.clone() {
            match provider.addresses_per_eni(&t).await {
                Ok(n) => provider.per_eni = n,
                Err(e) => log::warn!(
                    "aws: DescribeInstanceTypes {t} failed ({e}): EC2 alone enforces the addresses per ENI"
                ),
            }
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
            enis: vec![eni_id.to_string()],
            instance_id: None,
            instance_type: None,
            per_eni: None,
            region: region.to_string(),
            vpc_id: vpc_id.to_string(),
            subnet_id: subnet_id.to_string(),
            mutating: Arc::new(Budget::new("aws mutating", MUTATING_BUDGET)),
            describing: Arc::new(Budget::new("aws describe", DESCRIBE_BUDGET)),
            recent: std::sync::Mutex::new(HashMap::new()),
            detached: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// This router's capture ENI id.
    pub fn eni_id(&self) -> &str {
        &self.eni_id
    }

    /// Every ENI of ours that may hold captures, preference order.
    pub fn eni_ids(&self) -> &[String] {
        &self.enis
    }

    /// The instance type's addresses per ENI, when known.
    pub fn addresses_per_eni_limit(&self) -> Option<usize> {
        self.per_eni
    }

    /// One metered EC2 call: a token from `budget` first. Its retry attempts
    /// and throttle replies reach the budget through [`AttemptMeter`].
    async fn metered<T>(
        &self,
        budget: &Budget,
        call: impl std::future::Future<Output = Result<T, CaptureError>>,
    ) -> Result<T, CaptureError> {
        budget.take().await;
        call.await
    }

    /// Our capture ENI as EC2 reports it now.
    async fn our_eni(&self) -> Result<NetworkInterface, CaptureError> {
        let step = "DescribeNetworkInterfaces";
        let out = self
            .metered(&self.describing, async {
                self.client
                    .describe_network_interfaces()
                    .network_interface_ids(&self.eni_id)
                    .send()
                    .await
                    .map_err(|e| sdk_error(step, e))
            })
            .await?;
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

    /// Our ENI, then the instance's other ENIs in the same subnet by device index.
    async fn sibling_enis(&self) -> Result<Vec<String>, CaptureError> {
        let mut out = vec![self.eni_id.clone()];
        let (Some(instance), false) = (&self.instance_id, self.subnet_id.is_empty()) else {
            return Ok(out);
        };
        let mut found: Vec<(i32, String)> = self
            .list(vec![
                filter("attachment.instance-id", instance),
                filter("subnet-id", &self.subnet_id),
            ])
            .await?
            .iter()
            .filter_map(|n| {
                let id = n.network_interface_id()?;
                let dev = n.attachment().and_then(|a| a.device_index()).unwrap_or(0);
                (id != self.eni_id).then(|| (dev, id.to_string()))
            })
            .collect();
        found.sort();
        out.extend(found.into_iter().map(|(_, id)| id));
        Ok(out)
    }

    /// `Ipv4AddressesPerInterface` of `instance_type` (`DescribeInstanceTypes`).
    async fn addresses_per_eni(&self, instance_type: &str) -> Result<Option<usize>, CaptureError> {
        let step = "DescribeInstanceTypes";
        let t = aws_sdk_ec2::types::InstanceType::from(instance_type);
        let out = self
            .metered(&self.describing, async {
                self.client
                    .describe_instance_types()
                    .instance_types(t)
                    .send()
                    .await
                    .map_err(|e| sdk_error(step, e))
            })
            .await?;
        Ok(out
            .instance_types()
            .iter()
            .find_map(|i| i.network_info()?.ipv4_addresses_per_interface())
            .and_then(|n| usize::try_from(n).ok()))
    }

    /// Our ENIs as EC2 reports them now (one call).
    async fn own(&self) -> Result<Own, CaptureError> {
        let step = "DescribeNetworkInterfaces";
        let out = self
            .metered(&self.describing, async {
                self.client
                    .describe_network_interfaces()
                    .set_network_interface_ids(Some(self.enis.clone()))
                    .send()
                    .await
                    .map_err(|e| sdk_error(step, e))
            })
            .await?;
        let own = Own::new(
            &self.enis,
            out.network_interfaces(),
            self.instance_id.as_deref(),
        );
        if own.enis.first().map(|(id, _)| id.as_str()) != Some(self.eni_id.as_str()) {
            return Err(config_error(
                step,
                format!("this router's ENI {} was not reported by EC2", self.eni_id),
            ));
        }
        self.note_detached(&own.detached);
        Ok(own)
    }

    /// Logs ENIs of ours that became detached from our instance, or attached
    /// again.
    fn note_detached(&self, now: &[(String, String)]) {
        let mut seen = self.detached.lock().unwrap_or_else(|p| p.into_inner());
        for (id, why) in now {
            if !seen.iter().any(|(s, _)| s == id) {
                log::warn!(
                    "aws: this router's ENI {id} is detached from instance {} ({why}): its addresses are captured again onto an attached ENI, new captures avoid it",
                    self.instance_id.as_deref().unwrap_or("unknown")
                );
            }
        }
        for (id, _) in seen.iter() {
            if !now.iter().any(|(n, _)| n == id) {
                log::info!("aws: this router's ENI {id} is attached again");
            }
        }
        *seen = now.to_vec();
    }

    /// The error for captures when every ENI of ours is detached.
    fn all_detached(&self, own: &Own, ip: Ipv4Addr) -> CaptureError {
        let instance = self.instance_id.as_deref().unwrap_or("unknown");
        let list: Vec<String> = own
            .detached
            .iter()
            .map(|(id, why)| format!("ENI {id} is detached from instance {instance} ({why})"))
            .collect();
        config_error(
            "AssignPrivateIpAddresses",
            format!(
                "{ip} cannot be captured: {}; no ENI of this router is attached to deliver it (retried; attach the ENI again)",
                list.join("; ")
            ),
        )
    }

    /// ENIs matching `filters`, every page (bounded).
    async fn list(&self, filters: Vec<Filter>) -> Result<Vec<NetworkInterface>, CaptureError> {
        let step = "DescribeNetworkInterfaces";
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let page = self
                .metered(&self.describing, async {
                    self.client
                        .describe_network_interfaces()
                        .set_filters(Some(filters.clone()))
                        .max_results(1000)
                        .set_next_token(token.take())
                        .send()
                        .await
                        .map_err(|e| sdk_error(step, e))
                })
                .await?;
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

    /// One `AssignPrivateIpAddresses` of `ips` to `eni` with AllowReassignment.
    async fn assign(&self, eni: &str, ips: &[Ipv4Addr], step: &str) -> Result<(), CaptureError> {
        // Prepaid: `grouped` took the token before the fence check.
        let r = self
            .client
            .assign_private_ip_addresses()
            .network_interface_id(eni)
            .set_private_ip_addresses(Some(ips.iter().map(Ipv4Addr::to_string).collect()))
            .allow_reassignment(true)
            .send()
            .await
            .map_err(|e| sdk_error(step, e));
        if r.is_ok() && self.is_own_nic(eni) {
            let now = tokio::time::Instant::now();
            let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
            recent.retain(|_, (_, t)| now.duration_since(*t) < RECENT);
            for ip in ips {
                recent.insert(*ip, (eni.to_string(), now));
            }
        } else if r.is_ok() {
            // Moved to another ENI (a hand-back): off ours.
            self.forget_recent(ips);
        }
        r.map(|_| ()).map_err(|mut e| {
            if e.message.starts_with("PrivateIpAddressLimitExceeded") {
                // Our count said there was room: our view of the ENI was
                // stale (eventual consistency, or someone else added
                // addresses). Look again shortly. With no known limit EC2's
                // refusal is the quota itself.
                e.kind = if self.per_eni.is_some() && self.is_own_nic(eni) {
                    ErrorKind::Transient
                } else {
                    ErrorKind::Quota
                };
                e.message = format!("{} ({})", e.message, self.quota_text(eni));
            }
            e
        })
    }

    /// One `UnassignPrivateIpAddresses` of `ips` from `eni`.
    async fn unassign(&self, eni: &str, ips: &[Ipv4Addr], step: &str) -> Result<(), CaptureError> {
        // Prepaid: `grouped` took the token before the fence check.
        self.client
            .unassign_private_ip_addresses()
            .network_interface_id(eni)
            .set_private_ip_addresses(Some(ips.iter().map(Ipv4Addr::to_string).collect()))
            .send()
            .await
            .map_err(|e| sdk_error(step, e))
            .map(|_| self.forget_recent(ips))
    }

    /// Addresses that left our ENIs no longer count as recently assigned.
    fn forget_recent(&self, ips: &[Ipv4Addr]) {
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        for ip in ips {
            recent.remove(ip);
        }
    }

    fn quota_text(&self, eni: &str) -> String {
        match (self.per_eni, &self.instance_type) {
            (Some(n), Some(t)) => format!(
                "quota {n} addresses per ENI (primary included) of instance type {t}; {} ENI(s) of this router in the capture subnet: {}",
                self.enis.len(),
                self.enis.join(", ")
            ),
            _ => format!("EC2 refused more addresses on {eni}; instance type unknown"),
        }
    }

    /// Runs one call for a group of items (fence-checked just before it);
    /// a refusal that may concern only some of them (an invalid or
    /// over-quota address) is retried one address at a time, so the rest
    /// goes on. `out[i]` receives each item's answer.
    async fn grouped<'f, F, Fut>(
        &self,
        items: &[Item],
        idx: &[usize],
        step: &str,
        out: &mut [Option<Result<(), CaptureError>>],
        call: F,
    ) where
        F: Fn(Vec<Ipv4Addr>) -> Fut,
        Fut: std::future::Future<Output = Result<(), CaptureError>> + 'f,
    {
        // The call's budget token first, then the fences, then the call: a
        // wait for the budget never sits between a fence check and its call.
        self.mutating.take().await;
        let mut live = Vec::new();
        for &i in idx {
            match items[i].fence.check(PROVIDER, step) {
                Ok(()) => live.push(i),
                Err(e) => out[i] = Some(Err(e)),
            }
        }
        if live.is_empty() {
            return;
        }
        let ips: Vec<Ipv4Addr> = live.iter().map(|&i| items[i].ip).collect();
        match call(ips).await {
            Ok(()) => live.iter().for_each(|&i| out[i] = Some(Ok(()))),
            Err(e) if live.len() > 1 && matches!(e.kind, ErrorKind::Config | ErrorKind::Quota) => {
                log::info!(
                    "aws: {step} of {} addresses refused ({e}): one by one",
                    live.len()
                );
                for (n, &i) in live.iter().enumerate() {
                    if n > 0 {
                        self.mutating.take().await;
                    }
                    out[i] = Some(match items[i].fence.check(PROVIDER, step) {
                        Ok(()) => call(vec![items[i].ip]).await,
                        Err(f) => Err(f),
                    });
                }
            }
            Err(e) => live.iter().for_each(|&i| out[i] = Some(Err(e.clone()))),
        }
    }
}

#[async_trait]
impl CaptureProvider for AwsProvider {
    fn name(&self) -> &'static str {
        PROVIDER
    }

    fn describe(&self) -> String {
        format!(
            "AWS ENI {} secondary private IPs (instance {}{}, {}, subnet {}, region {})",
            self.enis.join(" + "),
            self.instance_id.as_deref().unwrap_or("unknown"),
            match (&self.instance_type, self.per_eni) {
                (Some(t), Some(n)) => format!(" {t}: {n} addresses per ENI"),
                (Some(t), None) => format!(" {t}"),
                _ => String::new(),
            },
            self.vpc_id,
            if self.subnet_id.is_empty() {
                "unknown"
            } else {
                &self.subnet_id
            },
            self.region,
        ) + &{
            let d = self.detached.lock().unwrap_or_else(|p| p.into_inner());
            if d.is_empty() {
                String::new()
            } else {
                let list: Vec<String> = d.iter().map(|(id, why)| format!("{id}: {why}")).collect();
                format!("; detached from the instance: {}", list.join(", "))
            }
        }
    }

    async fn observe(&self, ip: Ipv4Addr) -> Result<Holding, CaptureError> {
        cer_capture::provider::one::observe(self, ip).await
    }

    async fn capture(&self, ip: Ipv4Addr, fence: &Fence) -> Result<(), CaptureError> {
        cer_capture::provider::one::capture(self, ip, fence).await
    }

    async fn release(&self, ip: Ipv4Addr, fence: &Fence) -> Result<(), CaptureError> {
        cer_capture::provider::one::release(self, ip, fence).await
    }

    async fn hand_back(&self, ip: Ipv4Addr, to: &str, fence: &Fence) -> Result<(), CaptureError> {
        cer_capture::provider::one::hand_back(self, ip, to, fence).await
    }

    fn is_own_nic(&self, id: &str) -> bool {
        self.enis.iter().any(|e| e == id)
    }

    async fn held(&self) -> Result<Option<Vec<Ipv4Addr>>, CaptureError> {
        Ok(Some(self.own().await?.secondaries()))
    }

    fn budgets(&self) -> Vec<BudgetStatus> {
        vec![self.mutating.status(), self.describing.status()]
    }

    /// One `DescribeNetworkInterfaces` per 200 addresses (the VPC's ENIs
    /// holding any of them); addresses found nowhere are looked up in one
    /// listing of the capture subnet, because some EC2 implementations (moto)
    /// match that filter against primary addresses only.
    async fn observe_many(&self, ips: &[Ipv4Addr]) -> Vec<Result<Holding, CaptureError>> {
        let mut found: HashMap<Ipv4Addr, Holding> = HashMap::new();
        let ours = |id: &str| self.is_own_nic(id);
        let instance = self.instance_id.as_deref();
        let detached = |n: &NetworkInterface| detached_why(n, instance).is_some();
        for chunk in ips.chunks(FILTER_VALUES) {
            let f = Filter::builder()
                .name("addresses.private-ip-address")
                .set_values(Some(chunk.iter().map(Ipv4Addr::to_string).collect()))
                .build();
            match self.list(vec![filter("vpc-id", &self.vpc_id), f]).await {
                Ok(enis) => {
                    for &ip in chunk {
                        if let Some(h) = holding_in(&enis, ours, detached, ip) {
                            found.insert(ip, h);
                        }
                    }
                }
                Err(e) => return all(ips.len(), &e),
            }
        }
        if found.len() < ips.len() && !self.subnet_id.is_empty() {
            match self.list(vec![filter("subnet-id", &self.subnet_id)]).await {
                Ok(enis) => {
                    for &ip in ips {
                        if let std::collections::hash_map::Entry::Vacant(v) = found.entry(ip) {
                            if let Some(h) = holding_in(&enis, ours, detached, ip) {
                                v.insert(h);
                            }
                        }
                    }
                }
                Err(e) => return all(ips.len(), &e),
            }
        }
        ips.iter()
            .map(|ip| Ok(found.get(ip).cloned().unwrap_or(Holding::Nobody)))
            .collect()
    }

    /// One look at our ENIs, then one `AssignPrivateIpAddresses` (with
    /// AllowReassignment) per ENI that takes some of the addresses: each ENI
    /// filled up to the instance type's limit before the next. What fits on
    /// none is a `Quota` error without a call.
    async fn capture_many(&self, items: &[Item]) -> Vec<Result<(), CaptureError>> {
        let own = match self.own().await {
            Ok(o) => o,
            Err(e) => return all(items.len(), &e),
        };
        let mut out: Vec<Option<Result<(), CaptureError>>> = vec![None; items.len()];
        let mut want = Vec::new();
        for (i, it) in items.iter().enumerate() {
            match own.holder(it.ip) {
                // On a detached ENI of ours: moved to an attached one.
                Some((eni, _)) if own.is_detached(eni) => want.push(it.ip),
                Some(_) => out[i] = Some(Ok(())),
                None => want.push(it.ip),
            }
        }
        if !want.is_empty() && !own.any_attached() {
            for (i, it) in items.iter().enumerate() {
                if out[i].is_none() {
                    out[i] = Some(Err(self.all_detached(&own, it.ip)));
                }
            }
            return out.into_iter().map(|o| o.unwrap_or(Ok(()))).collect();
        }
        // Count what we assigned that EC2 may not report yet.
        let mut own = own;
        {
            let now = tokio::time::Instant::now();
            let recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
            for (ip, (eni, t)) in recent.iter() {
                if now.duration_since(*t) >= RECENT || own.holder(*ip).is_some() {
                    continue;
                }
                if let Some((_, a)) = own.enis.iter_mut().find(|(id, _)| id == eni) {
                    a.all.push(*ip);
                }
            }
        }
        let (groups, left) = plan(&own, self.per_eni, &want);
        let step = "AssignPrivateIpAddresses";
        for ip in &left {
            for (i, it) in items.iter().enumerate() {
                if it.ip == *ip && out[i].is_none() {
                    out[i] = Some(Err(CaptureError::new(
                        ErrorKind::Quota,
                        PROVIDER,
                        step,
                        format!(
                            "{ip} cannot be captured: every ENI is full ({})",
                            self.quota_text(&self.eni_id)
                        ),
                    )));
                }
            }
        }
        for (eni, ips) in &groups {
            let idx: Vec<usize> = items
                .iter()
                .enumerate()
                .filter(|(i, it)| out[*i].is_none() && ips.contains(&it.ip))
                .map(|(i, _)| i)
                .collect();
            self.grouped(items, &idx, step, &mut out, |ips| async move {
                self.assign(eni, &ips, step).await?;
                log::info!(
                    "aws: assigned {} address(es) to {eni} (AllowReassignment): {}",
                    ips.len(),
                    list_text(&ips)
                );
                Ok(())
            })
            .await;
        }
        out.into_iter().map(|o| o.unwrap_or(Ok(()))).collect()
    }

    /// One look at our ENIs, then one `UnassignPrivateIpAddresses` per ENI
    /// holding some of the addresses. Never touches another ENI.
    async fn release_many(&self, items: &[Item]) -> Vec<Result<(), CaptureError>> {
        let own = match self.own().await {
            Ok(o) => o,
            Err(e) => return all(items.len(), &e),
        };
        let step = "UnassignPrivateIpAddresses";
        let mut out: Vec<Option<Result<(), CaptureError>>> = vec![None; items.len()];
        let mut groups: Vec<(String, Vec<usize>)> = Vec::new();
        for (i, it) in items.iter().enumerate() {
            match own.holder(it.ip) {
                None => out[i] = Some(Ok(())),
                Some((eni, true)) => {
                    out[i] = Some(Err(config_error(
                        step,
                        format!(
                            "{} is the primary private IP of {eni}: it is never released",
                            it.ip
                        ),
                    )))
                }
                Some((eni, false)) => group_by(&mut groups, eni, i),
            }
        }
        for (eni, idx) in &groups {
            self.grouped(items, idx, step, &mut out, |ips| async move {
                match self.unassign(eni, &ips, step).await {
                    Ok(()) => {
                        log::info!(
                            "aws: unassigned {} address(es) from {eni}: {}",
                            ips.len(),
                            list_text(&ips)
                        );
                        Ok(())
                    }
                    // Moved away between our look and the call: already released.
                    Err(err)
                        if err.kind == ErrorKind::Config
                            && err.message.starts_with("InvalidParameterValue")
                            && ips.len() == 1 =>
                    {
                        match self.own().await {
                            Ok(o) if o.holder(ips[0]).is_none() => Ok(()),
                            _ => Err(err),
                        }
                    }
                    Err(err) => Err(err),
                }
            })
            .await;
        }
        out.into_iter().map(|o| o.unwrap_or(Ok(()))).collect()
    }

    /// One `AssignPrivateIpAddresses` (AllowReassignment) per NIC the
    /// addresses go back to, which moves them off ours in the same call.
    /// An address no longer on ours and held by another ENI is left alone;
    /// one on nobody goes to its NIC.
    async fn hand_back_many(&self, items: &[Item], to: &[String]) -> Vec<Result<(), CaptureError>> {
        let mut out: Vec<Option<Result<(), CaptureError>>> = vec![None; items.len()];
        for (i, t) in to.iter().enumerate() {
            if self.is_own_nic(t) {
                out[i] = Some(Err(config_error(
                    &format!("AssignPrivateIpAddresses to {t}"),
                    format!(
                        "{t} is this router's own ENI: nothing to hand {} back to",
                        items[i].ip
                    ),
                )));
            }
        }
        let own = match self.own().await {
            Ok(o) => o,
            Err(e) => return all(items.len(), &e),
        };
        let mut off_ours = Vec::new();
        for (i, it) in items.iter().enumerate() {
            if out[i].is_some() {
                continue;
            }
            match own.holder(it.ip) {
                Some((eni, true)) => {
                    out[i] = Some(Err(config_error(
                        &format!("AssignPrivateIpAddresses to {}", to[i]),
                        format!(
                            "{} is the primary private IP of {eni}: it never moves",
                            it.ip
                        ),
                    )))
                }
                Some(_) => {}
                None => off_ours.push(i),
            }
        }
        // Not on ours: held by its NIC already or by a third ENI (not ours to
        // move), or on nobody (an earlier hand-back or someone else removed
        // it: assign it to its NIC).
        if !off_ours.is_empty() {
            let ips: Vec<Ipv4Addr> = off_ours.iter().map(|&i| items[i].ip).collect();
            let seen = self.observe_many(&ips).await;
            for (&i, h) in off_ours.iter().zip(seen) {
                match h {
                    Ok(Holding::Elsewhere(_)) => out[i] = Some(Ok(())),
                    Ok(_) => {}
                    Err(e) => out[i] = Some(Err(e)),
                }
            }
        }
        let mut groups: Vec<(String, Vec<usize>)> = Vec::new();
        for (i, t) in to.iter().enumerate() {
            if out[i].is_some() {
                continue;
            }
            group_by(&mut groups, t, i);
        }
        for (t, idx) in &groups {
            let step = format!("AssignPrivateIpAddresses to {t}");
            let step = step.as_str();
            self.grouped(items, idx, step, &mut out, |ips| async move {
                match self.assign(t, &ips, step).await {
                    Ok(()) => {
                        log::info!(
                            "aws: handed {} address(es) back to {t} (AllowReassignment): {}",
                            ips.len(),
                            list_text(&ips)
                        );
                        Ok(())
                    }
                    Err(mut err) => {
                        if err
                            .message
                            .starts_with("InvalidNetworkInterfaceID.NotFound")
                        {
                            err.kind = ErrorKind::HolderGone;
                            err.message = format!("ENI {t} no longer exists: {}", err.message);
                        }
                        Err(err)
                    }
                }
            })
            .await;
        }
        out.into_iter().map(|o| o.unwrap_or(Ok(()))).collect()
    }
}

/// The first few addresses of a batch, for logs.
fn list_text(ips: &[Ipv4Addr]) -> String {
    let mut s: Vec<String> = ips.iter().take(8).map(Ipv4Addr::to_string).collect();
    if ips.len() > 8 {
        s.push(format!("... ({} more)", ips.len() - 8));
    }
    s.join(" ")
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
            ..Default::default()
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
}
