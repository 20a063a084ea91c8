//! Azure capture: a /32 is captured as an extra ipConfiguration on this router's NIC (ARM REST,
//! `Microsoft.Network/networkInterfaces`), authenticated with a managed identity token from the
//! instance metadata service (cached until shortly before it expires).
//!
//! - `observe` lists the NICs of our NIC's resource group (`value` / `nextLink` paging) and
//!   reports which one holds the address inside our NIC's virtual network.
//! - `capture` is the two-step move DESIGN.md section 3 describes: GET the old NIC and PUT it
//!   back without the address's ipConfiguration (`If-Match` etag), poll the long-running
//!   operation (`Azure-AsyncOperation` or `Location`, honouring `Retry-After`) until it
//!   succeeded, check the fence again, then GET our NIC and PUT it with a new Static
//!   ipConfiguration for the address. A NIC's primary ipConfiguration is never removed: an
//!   address that is another NIC's primary is a `Config` error.
//! - `release` removes the address's ipConfiguration from our NIC only.
//! - `hand_back` gives an address back to the NIC it was captured from: GET that NIC first (404:
//!   `HolderGone`, nothing removed), remove the ipConfiguration from our NIC (LRO polled), check
//!   the fence again, then create it on that NIC (named `cer-a-b-c-d`: the original name is not
//!   kept). If that NIC disappears between the two steps, the address is left on no NIC and the
//!   call fails `HolderGone` (the reconciler releases to nobody when the holder is gone).
//!
//! Several NICs (`extra_nic_ids`): captures fill each NIC to the ipConfiguration quota before the
//! next. A NIC of ours without `properties.virtualMachine` (or on another VM than the one our
//! NICs were first seen on) is detached: its addresses are observed `Detached` and moved onto an
//! attached NIC by the next capture, new captures avoid it, and with every NIC detached a capture
//! fails `Config`, naming the NIC and the VM (nothing leaves its old NIC).
//!
//! Within one call, 429 (`RetryableError`, `RetryableErrorDueToAnotherOperation`), 412 etag races
//! and `PrivateIPAddressIsAllocated` (the old NIC's removal still settling) are retried a bounded
//! number of times; then the call fails `Throttled` or `Transient` and the reconciler backs off.
//! `fence.check` runs right before every PUT and between the two steps. Every request has a
//! timeout, and long-running operations are polled for a bounded time.

use std::net::Ipv4Addr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::budget::{BucketConfig, Budget, BudgetStatus};
use crate::provider::{group_by, CaptureError, CaptureProvider, ErrorKind, Fence, Holding, Item};
use futures_util::future::join_all;

const PROVIDER: &str = "azure";
const DEFAULT_ARM: &str = "https://management.azure.com";
const DEFAULT_IMDS: &str = "http://169.254.169.254";
const DEFAULT_API_VERSION: &str = "2023-09-01";
const IMDS_TOKEN_API_VERSION: &str = "2018-02-01";
/// Most list pages followed (a resource group with more NICs than this is refused).
const MAX_PAGES: usize = 200;

/// The `[capture.azure]` configuration.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AzureConfig {
    /// ARM resource id of this router's NIC.
    pub nic_id: String,
    /// ARM endpoint (default `https://management.azure.com`).
    pub arm_endpoint: Option<String>,
    /// Instance metadata service for the managed identity token (default
    /// `http://169.254.169.254`).
    pub imds_endpoint: Option<String>,
    /// Client id of a user-assigned managed identity (absent: the system-assigned one).
    pub client_id: Option<String>,
    /// ARM API version of `Microsoft.Network` calls (default `2023-09-01`).
    pub api_version: Option<String>,
    /// ipConfigurations a NIC may hold (Azure's limit: 256).
    pub max_ip_configs: Option<usize>,
    /// More NICs of this router (same resource group and virtual network) that may hold
    /// captured addresses once `nic_id` is full, in preference order.
    #[serde(default)]
    pub extra_nic_ids: Option<Vec<String>>,
    /// Client-side budget of ARM writes (PUT, DELETE) per subscription (ARM: 200, 10/s).
    pub write_budget: Option<BucketConfig>,
    /// Client-side budget of ARM reads (ARM: 1200, 20/s).
    pub read_budget: Option<BucketConfig>,
}

/// ipConfigurations per NIC (Azure networking limits).
pub const MAX_IP_CONFIGS: usize = 256;
/// ARM's write bucket per subscription and region.
pub const WRITE_BUDGET: BucketConfig = BucketConfig::new(200, 10.0);
/// ARM's read bucket per subscription and region.
pub const READ_BUDGET: BucketConfig = BucketConfig::new(1200, 20.0);

/// The subscription, resource group and name of an ARM NIC id.
fn parse_nic_id(id: &str) -> Option<(String, String, String)> {
    let parts: Vec<&str> = id.split('/').collect();
    match parts.as_slice() {
        ["", subs, s, rgs, g, prov, ns, kind, name]
            if subs.eq_ignore_ascii_case("subscriptions")
                && rgs.eq_ignore_ascii_case("resourceGroups")
                && prov.eq_ignore_ascii_case("providers")
                && ns.eq_ignore_ascii_case("Microsoft.Network")
                && kind.eq_ignore_ascii_case("networkInterfaces")
                && !s.is_empty()
                && !g.is_empty()
                && !name.is_empty() =>
        {
            Some((s.to_string(), g.to_string(), name.to_string()))
        }
        _ => None,
    }
}

fn check_endpoint(field: &str, v: &str) -> Result<(), String> {
    match url::Url::parse(v) {
        Ok(u) if (u.scheme() == "http" || u.scheme() == "https") && u.host().is_some() => Ok(()),
        _ => Err(format!(
            "capture.azure.{field} = {v:?}: expected an http(s) URL"
        )),
    }
}

impl AzureConfig {
    /// Checks the configuration; errors name the field and its value.
    pub fn validate(&self) -> Result<(), String> {
        if parse_nic_id(&self.nic_id).is_none() {
            return Err(format!(
                "capture.azure.nic_id = {:?}: expected /subscriptions/S/resourceGroups/G/providers/Microsoft.Network/networkInterfaces/NAME",
                self.nic_id
            ));
        }
        if let Some(e) = &self.arm_endpoint {
            check_endpoint("arm_endpoint", e)?;
        }
        if let Some(e) = &self.imds_endpoint {
            check_endpoint("imds_endpoint", e)?;
        }
        if let Some(c) = &self.client_id {
            if c.trim().is_empty() || c.contains(char::is_whitespace) {
                return Err(format!(
                    "capture.azure.client_id = {c:?}: expected a client id"
                ));
            }
        }
        if let Some(b) = &self.write_budget {
            b.validate("capture.azure.write_budget")?;
        }
        let scope = |id: &str| {
            parse_nic_id(id).map(|(s, g, _)| (s.to_ascii_lowercase(), g.to_ascii_lowercase()))
        };
        for x in self.extra_nic_ids.iter().flatten() {
            if parse_nic_id(x).is_none() || scope(x) != scope(&self.nic_id) {
                return Err(format!(
                    "capture.azure.extra_nic_ids: {x:?}: expected a NIC id in the subscription and resource group of nic_id"
                ));
            }
        }
        if let Some(b) = &self.read_budget {
            b.validate("capture.azure.read_budget")?;
        }
        if self.max_ip_configs == Some(0) {
            return Err(
                "capture.azure.max_ip_configs = 0: a NIC holds its primary at least".into(),
            );
        }
        if let Some(v) = &self.api_version {
            let ok = !v.is_empty()
                && v.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
            if !ok {
                return Err(format!(
                    "capture.azure.api_version = {v:?}: expected e.g. \"2023-09-01\""
                ));
            }
        }
        Ok(())
    }
}

/// Time limits of the client (defaults suit production; tests shorten them).
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// Connect timeout of one HTTP request.
    pub connect: Duration,
    /// Whole-request timeout of one HTTP request.
    pub request: Duration,
    /// How long a long-running operation is polled before the call fails `Transient`.
    pub operation: Duration,
    /// Attempts of one step on 429 / 412 / `PrivateIPAddressIsAllocated` (at least 1).
    pub attempts: u32,
    /// Longest wait between attempts or polls, whatever `Retry-After` says.
    pub max_wait: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            connect: Duration::from_secs(5),
            request: Duration::from_secs(30),
            operation: Duration::from_secs(120),
            attempts: 4,
            max_wait: Duration::from_secs(10),
        }
    }
}

/// The Azure capture provider for one NIC.
pub struct AzureProvider {
    http: reqwest::Client,
    timing: Timing,
    nic_id: String,
    arm: String,
    imds: String,
    client_id: Option<String>,
    api_version: String,
    /// `/subscriptions/S/resourceGroups/G`.
    scope: String,
    /// Cached managed identity token and when to stop using it.
    token: tokio::sync::Mutex<Option<(String, SystemTime)>>,
    max_ip_configs: usize,
    /// Our other NICs, preference order after `nic_id`.
    extra: Vec<String>,
    writes: Budget,
    reads: Budget,
    /// The VM our NICs are attached to, learned from the first listing that
    /// shows one of them attached (`properties.virtualMachine.id`); a NIC of
    /// ours without it (or on another VM) is detached from this router.
    vm: std::sync::Mutex<Option<String>>,
    /// Our NICs last seen detached (logged when this changes).
    detached: std::sync::Mutex<Vec<String>>,
}

/// The VM a NIC is attached to, as ARM reports it.
fn vm_of(nic: &Value) -> Option<&str> {
    nic.pointer("/properties/virtualMachine/id")
        .and_then(Value::as_str)
        .filter(|v| !v.is_empty())
}

/// One listing of our resource group's NICs, as `look` reads it.
struct Look {
    /// Who holds each address asked about: (NIC id, primary configuration).
    holders: Vec<Option<(String, bool)>>,
    /// Our NICs the listing has, preference order: (id, ipConfigurations).
    own: Vec<(String, usize)>,
    /// Our NICs not attached to our VM.
    detached: Vec<String>,
    /// Our VM, when known.
    vm: Option<String>,
}

impl Look {
    fn is_detached(&self, id: &str) -> bool {
        self.detached.iter().any(|d| d.eq_ignore_ascii_case(id))
    }

    /// The error for a capture when every NIC of ours is detached.
    fn all_detached(&self, ip: Ipv4Addr) -> CaptureError {
        CaptureError::new(
            ErrorKind::Config,
            PROVIDER,
            "add ipConfiguration",
            format!(
                "{ip} cannot be captured: {}; no NIC of this router is attached to deliver it (retried; attach the NIC again)",
                self.detached
                    .iter()
                    .map(|d| format!(
                        "NIC {d} is detached from VM {} (no properties.virtualMachine)",
                        self.vm.as_deref().unwrap_or("unknown")
                    ))
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
        )
    }
}

/// One ARM answer.
struct ArmResp {
    status: StatusCode,
    headers: HeaderMap,
    body: Value,
}

impl ArmResp {
    fn code(&self) -> String {
        self.body
            .pointer("/error/code")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    }

    fn describe(&self) -> String {
        let code = self.code();
        let msg = self
            .body
            .pointer("/error/message")
            .and_then(Value::as_str)
            .unwrap_or("");
        if code.is_empty() && msg.is_empty() {
            format!("HTTP {}", self.status.as_u16())
        } else {
            format!("HTTP {} {code}: {msg}", self.status.as_u16())
        }
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    fn retry_after(&self, max: Duration) -> Duration {
        self.header("retry-after")
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs)
            .unwrap_or(Duration::from_secs(1))
            .min(max)
    }

    fn etag(&self) -> Option<String> {
        self.header("etag").map(str::to_string).or_else(|| {
            self.body
                .get("etag")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
    }
}

/// Maps an unsuccessful ARM answer to an error. `own` is true for calls about our own NIC, whose
/// absence or refusal needs the operator.
fn classify(step: &str, r: &ArmResp, own: bool) -> CaptureError {
    let code = r.code();
    let kind = match r.status.as_u16() {
        429 => ErrorKind::Throttled,
        409 | 412 => ErrorKind::Transient,
        401 | 403 => ErrorKind::Config,
        404 if own => ErrorKind::Config,
        404 => ErrorKind::Transient,
        s if s >= 500 => ErrorKind::Transient,
        400 if code.contains("Quota") || code.contains("Limit") => ErrorKind::Quota,
        _ if code == "PrivateIPAddressIsAllocated"
            || code == "RetryableError"
            || code == "RetryableErrorDueToAnotherOperation"
            || code == "AnotherOperationInProgress" =>
        {
            ErrorKind::Transient
        }
        _ => ErrorKind::Config,
    };
    CaptureError::new(kind, PROVIDER, step, r.describe())
}

fn transport_error(step: &str, e: &reqwest::Error) -> CaptureError {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    CaptureError::new(ErrorKind::Transient, PROVIDER, step, format!("{what}: {e}"))
}

fn same_ip(v: &Value, ip: Ipv4Addr) -> bool {
    v.pointer("/properties/privateIPAddress")
        .and_then(Value::as_str)
        .and_then(|s| s.parse::<Ipv4Addr>().ok())
        == Some(ip)
}

fn is_primary(v: &Value) -> bool {
    v.pointer("/properties/primary")
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

fn configs(nic: &Value) -> &[Value] {
    nic.pointer("/properties/ipConfigurations")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// The virtual network id (lower case) of a NIC: its primary configuration's subnet id up to
/// `/subnets/`.
fn vnet_of(nic: &Value) -> Option<String> {
    let cfgs = configs(nic);
    let c = cfgs
        .iter()
        .find(|c| is_primary(c))
        .or_else(|| cfgs.first())?;
    let subnet = c
        .pointer("/properties/subnet/id")?
        .as_str()?
        .to_ascii_lowercase();
    let i = subnet.find("/subnets/")?;
    Some(subnet[..i].to_string())
}

/// The configuration name this router gives an address it captures.
pub fn config_name(ip: Ipv4Addr) -> String {
    format!("cer-{}", ip.to_string().replace('.', "-"))
}

impl AzureProvider {
    /// A client for `cfg` (validated here). Fetches nothing yet: the first call gets a token.
    pub fn new(cfg: &AzureConfig) -> Result<AzureProvider, CaptureError> {
        Self::with_timing(cfg, Timing::default())
    }

    /// As [`AzureProvider::new`] with other time limits.
    pub fn with_timing(cfg: &AzureConfig, timing: Timing) -> Result<AzureProvider, CaptureError> {
        cfg.validate()
            .map_err(|e| CaptureError::new(ErrorKind::Config, PROVIDER, "configuration", e))?;
        let (s, g, _) = parse_nic_id(&cfg.nic_id).ok_or_else(|| {
            CaptureError::new(ErrorKind::Config, PROVIDER, "configuration", "bad nic_id")
        })?;
        let http = reqwest::Client::builder()
            .connect_timeout(timing.connect)
            .timeout(timing.request)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| {
                CaptureError::new(
                    ErrorKind::Config,
                    PROVIDER,
                    "HTTP client",
                    format!("cannot build the HTTP client: {e}"),
                )
            })?;
        let trim = |s: &str| s.trim_end_matches('/').to_string();
        Ok(AzureProvider {
            http,
            timing: Timing {
                attempts: timing.attempts.max(1),
                ..timing
            },
            nic_id: cfg.nic_id.clone(),
            arm: trim(cfg.arm_endpoint.as_deref().unwrap_or(DEFAULT_ARM)),
            imds: trim(cfg.imds_endpoint.as_deref().unwrap_or(DEFAULT_IMDS)),
            client_id: cfg.client_id.clone(),
            api_version: cfg
                .api_version
                .clone()
                .unwrap_or_else(|| DEFAULT_API_VERSION.to_string()),
            scope: format!("/subscriptions/{s}/resourceGroups/{g}"),
            token: tokio::sync::Mutex::new(None),
            max_ip_configs: cfg.max_ip_configs.unwrap_or(MAX_IP_CONFIGS),
            extra: cfg.extra_nic_ids.clone().unwrap_or_default(),
            writes: Budget::new("azure writes", cfg.write_budget.unwrap_or(WRITE_BUDGET)),
            reads: Budget::new("azure reads", cfg.read_budget.unwrap_or(READ_BUDGET)),
            vm: std::sync::Mutex::new(None),
            detached: std::sync::Mutex::new(Vec::new()),
        })
    }

    fn is_ours(&self, id: &str) -> bool {
        id.eq_ignore_ascii_case(&self.nic_id)
            || self.extra.iter().any(|x| id.eq_ignore_ascii_case(x))
    }

    /// Our NICs, preference order.
    fn own_nics(&self) -> impl Iterator<Item = &String> {
        std::iter::once(&self.nic_id).chain(self.extra.iter())
    }

    /// A managed identity token for ARM, from the cache or the metadata service.
    async fn token(&self) -> Result<String, CaptureError> {
        let step = "managed identity token";
        let mut cached = self.token.lock().await;
        if let Some((t, until)) = cached.as_ref() {
            if SystemTime::now() < *until {
                return Ok(t.clone());
            }
        }
        let mut url = url::Url::parse(&format!("{}/metadata/identity/oauth2/token", self.imds))
            .map_err(|e| CaptureError::new(ErrorKind::Config, PROVIDER, step, e.to_string()))?;
        url.query_pairs_mut()
            .append_pair("api-version", IMDS_TOKEN_API_VERSION)
            .append_pair("resource", &format!("{}/", self.arm));
        if let Some(c) = &self.client_id {
            url.query_pairs_mut().append_pair("client_id", c);
        }
        let r = self
            .http
            .get(url)
            .header("Metadata", "true")
            .send()
            .await
            .map_err(|e| transport_error(step, &e))?;
        let status = r.status();
        let text = r.text().await.map_err(|e| transport_error(step, &e))?;
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if !status.is_success() {
            let kind = match status.as_u16() {
                429 => ErrorKind::Throttled,
                s if s >= 500 => ErrorKind::Transient,
                _ => ErrorKind::Config,
            };
            let code = body.get("error").and_then(Value::as_str).unwrap_or("");
            let msg = body
                .get("error_description")
                .and_then(Value::as_str)
                .unwrap_or("");
            return Err(CaptureError::new(
                kind,
                PROVIDER,
                step,
                format!("HTTP {} {code}: {msg}", status.as_u16()),
            ));
        }
        let token = body
            .get("access_token")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                CaptureError::new(
                    ErrorKind::Transient,
                    PROVIDER,
                    step,
                    "the metadata service answered without an access_token",
                )
            })?
            .to_string();
        let num = |v: Option<&Value>| -> Option<u64> {
            match v? {
                Value::String(s) => s.parse().ok(),
                Value::Number(n) => n.as_u64(),
                _ => None,
            }
        };
        // The relative `expires_in` first: `expires_on` is on the issuer's clock, and a host
        // clock behind it would keep an expired token (ARM judges expiry by its own clock;
        // requests carry no client timestamp, so this is all the host's clock affects).
        let now = SystemTime::now();
        let expires = num(body.get("expires_in"))
            .map(|s| now + Duration::from_secs(s))
            .or_else(|| num(body.get("expires_on")).map(|s| UNIX_EPOCH + Duration::from_secs(s)))
            .unwrap_or(now + Duration::from_secs(300));
        // Renew five minutes early (or half-way for short-lived tokens).
        let left = expires.duration_since(now).unwrap_or(Duration::ZERO);
        let until = now + left.saturating_sub(Duration::from_secs(300).min(left / 2));
        *cached = Some((token.clone(), until));
        Ok(token)
    }

    /// One ARM request (`path_or_url`: an ARM path, or an absolute URL on the ARM endpoint).
    async fn call(
        &self,
        method: Method,
        path_or_url: &str,
        body: Option<&Value>,
        if_match: Option<&str>,
        step: &str,
    ) -> Result<ArmResp, CaptureError> {
        let url = if path_or_url.starts_with('/') {
            let sep = if path_or_url.contains('?') { '&' } else { '?' };
            format!(
                "{}{path_or_url}{sep}api-version={}",
                self.arm, self.api_version
            )
        } else {
            // nextLink / operation URLs: only ever to the ARM endpoint (they carry our token).
            let origin = |u: &str| url::Url::parse(u).ok().map(|u| u.origin());
            if origin(path_or_url).is_none() || origin(path_or_url) != origin(&self.arm) {
                return Err(CaptureError::new(
                    ErrorKind::Transient,
                    PROVIDER,
                    step,
                    format!("refusing to follow {path_or_url}: not on {}", self.arm),
                ));
            }
            path_or_url.to_string()
        };
        let token = self.token().await?;
        // Reads take their token here; a PUT took its token before its fence
        // check (token, fence, call: a wait for the budget never sits between
        // the fence and the call).
        let budget = if method == Method::GET {
            self.reads.take().await;
            &self.reads
        } else {
            &self.writes
        };
        let mut req = self.http.request(method, &url).bearer_auth(token);
        if let Some(m) = if_match {
            req = req.header("If-Match", m);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let r = req.send().await.map_err(|e| transport_error(step, &e))?;
        let status = r.status();
        let headers = r.headers().clone();
        let text = r.text().await.map_err(|e| transport_error(step, &e))?;
        if status == StatusCode::TOO_MANY_REQUESTS {
            let wait = headers
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            budget.throttled(wait);
        }
        if status == StatusCode::UNAUTHORIZED {
            // The token may have been revoked or rotated: fetch a new one next time.
            *self.token.lock().await = None;
        }
        Ok(ArmResp {
            status,
            headers,
            body: serde_json::from_str(&text).unwrap_or(Value::Null),
        })
    }

    /// Every NIC of our resource group.
    async fn list_nics(&self) -> Result<Vec<Value>, CaptureError> {
        let step = "list network interfaces";
        let mut next = format!(
            "{}/providers/Microsoft.Network/networkInterfaces",
            self.scope
        );
        let mut out = Vec::new();
        for _ in 0..MAX_PAGES {
            let r = self.call_retrying(Method::GET, &next, step, true).await?;
            let Some(value) = r.body.get("value").and_then(Value::as_array) else {
                return Err(CaptureError::new(
                    ErrorKind::Transient,
                    PROVIDER,
                    step,
                    "the answer has no value array",
                ));
            };
            out.extend(value.iter().cloned());
            match r.body.get("nextLink").and_then(Value::as_str) {
                Some(l) if !l.is_empty() => next = l.to_string(),
                _ => return Ok(out),
            }
        }
        Err(CaptureError::new(
            ErrorKind::Config,
            PROVIDER,
            step,
            format!("more than {MAX_PAGES} pages of network interfaces"),
        ))
    }

    /// A read with 429 retries; unsuccessful answers become errors.
    async fn call_retrying(
        &self,
        method: Method,
        path: &str,
        step: &str,
        own: bool,
    ) -> Result<ArmResp, CaptureError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let r = self.call(method.clone(), path, None, None, step).await?;
            if r.status.is_success() {
                return Ok(r);
            }
            if r.status == StatusCode::TOO_MANY_REQUESTS && attempt < self.timing.attempts {
                tokio::time::sleep(r.retry_after(self.timing.max_wait)).await;
                continue;
            }
            return Err(classify(step, &r, own));
        }
    }

    /// Waits for the long-running operation a PUT answer names (if any) to end.
    async fn wait_operation(&self, put: &ArmResp, step: &str) -> Result<(), CaptureError> {
        let step = format!("{step} (operation)");
        let (url, async_op) = match (put.header("azure-asyncoperation"), put.header("location")) {
            (Some(u), _) => (u.to_string(), true),
            (None, Some(u)) => (u.to_string(), false),
            (None, None) => return Ok(()),
        };
        let deadline = tokio::time::Instant::now() + self.timing.operation;
        let mut wait = put.retry_after(self.timing.max_wait);
        loop {
            if tokio::time::Instant::now() + wait > deadline {
                return Err(CaptureError::new(
                    ErrorKind::Transient,
                    PROVIDER,
                    step,
                    format!(
                        "operation still running after {:?}: {url}",
                        self.timing.operation
                    ),
                ));
            }
            tokio::time::sleep(wait).await;
            let r = self.call(Method::GET, &url, None, None, &step).await?;
            wait = r.retry_after(self.timing.max_wait);
            if r.status == StatusCode::TOO_MANY_REQUESTS || r.status == StatusCode::ACCEPTED {
                continue;
            }
            if !r.status.is_success() {
                return Err(classify(&step, &r, false));
            }
            if !async_op {
                // Location polling: 200 means done.
                return Ok(());
            }
            match r.body.get("status").and_then(Value::as_str).unwrap_or("") {
                "Succeeded" => return Ok(()),
                "Failed" | "Canceled" | "Cancelled" => {
                    let code = r
                        .body
                        .pointer("/error/code")
                        .and_then(Value::as_str)
                        .unwrap_or("");
                    let msg = r
                        .body
                        .pointer("/error/message")
                        .and_then(Value::as_str)
                        .unwrap_or("");
                    return Err(CaptureError::new(
                        ErrorKind::Transient,
                        PROVIDER,
                        step,
                        format!(
                            "operation {}: {code}: {msg}",
                            r.body["status"].as_str().unwrap_or("")
                        ),
                    ));
                }
                _ => continue,
            }
        }
    }

    /// GET `nic`, drop the items whose fence went stale, let `edit` change the body for the
    /// live addresses (None: nothing to change; it may also refuse some addresses, e.g. over
    /// the NIC's quota), PUT with the etag, wait for the operation: one PUT for every address.
    /// Retries etag races, 429 and allocation conflicts. Another NIC that does not exist is
    /// done when removing from it (`Gone::Done`: its configurations went with it) and
    /// `HolderGone` when adding to it (`Gone::Refused`). One answer per item, in order.
    async fn modify_many(
        &self,
        nic: &str,
        gone: Gone,
        step: &str,
        items: &[Item],
        edit: &Edit<'_>,
    ) -> Vec<Result<(), CaptureError>> {
        let own = self.is_ours(nic);
        let role = match (own, gone) {
            (true, _) => "our NIC",
            (false, Gone::Done) => "old NIC",
            (false, Gone::Refused) => "holder NIC",
        };
        let get_step = format!("GET {role}");
        let put_step = format!("PUT {role}");
        let fence_step = format!("{put_step} ({step})");
        let mut out: Vec<Option<Result<(), CaptureError>>> = vec![None; items.len()];
        let mut attempt = 0;
        loop {
            attempt += 1;
            let live: Vec<usize> = (0..items.len()).filter(|&i| out[i].is_none()).collect();
            if live.is_empty() {
                break;
            }
            let got = match self.call_retrying(Method::GET, nic, &get_step, own).await {
                Ok(r) => r,
                Err(e) if !own && e.message.starts_with("HTTP 404") => {
                    let r = match gone {
                        // The old NIC is gone, so are its configurations.
                        Gone::Done => Ok(()),
                        Gone::Refused => Err(holder_gone(nic, &get_step, &e)),
                    };
                    live.iter().for_each(|&i| out[i] = Some(r.clone()));
                    break;
                }
                Err(e) => {
                    live.iter().for_each(|&i| out[i] = Some(Err(e.clone())));
                    break;
                }
            };
            // The PUT's budget token first, then the fence per address, then the PUT.
            self.writes.take().await;
            let mut carried = Vec::new();
            for &i in &live {
                match items[i].fence.check(PROVIDER, &fence_step) {
                    Ok(()) => carried.push(i),
                    Err(e) => out[i] = Some(Err(e)),
                }
            }
            if carried.is_empty() {
                break;
            }
            let ips: Vec<Ipv4Addr> = carried.iter().map(|&i| items[i].ip).collect();
            let (body, refused) = match edit(&got.body, &ips) {
                Ok(x) => x,
                Err(e) => {
                    carried.iter().for_each(|&i| out[i] = Some(Err(e.clone())));
                    break;
                }
            };
            for (ip, e) in refused {
                for &i in &carried {
                    if items[i].ip == ip {
                        out[i] = Some(Err(e.clone()));
                    }
                }
            }
            let carried: Vec<usize> = carried.into_iter().filter(|&i| out[i].is_none()).collect();
            let Some(body) = body else {
                carried.iter().for_each(|&i| out[i] = Some(Ok(())));
                break;
            };
            let etag = got.etag();
            let r = match self
                .call(Method::PUT, nic, Some(&body), etag.as_deref(), &put_step)
                .await
            {
                Ok(r) => r,
                Err(e) => {
                    carried.iter().for_each(|&i| out[i] = Some(Err(e.clone())));
                    break;
                }
            };
            if r.status.is_success() {
                let done = self.wait_operation(&r, &put_step).await;
                carried.iter().for_each(|&i| out[i] = Some(done.clone()));
                break;
            }
            let code = r.code();
            let retry = r.status == StatusCode::TOO_MANY_REQUESTS
                || r.status == StatusCode::PRECONDITION_FAILED
                || code == "PrivateIPAddressIsAllocated"
                || code == "RetryableError"
                || code == "RetryableErrorDueToAnotherOperation";
            if retry && attempt < self.timing.attempts {
                let wait = if r.status == StatusCode::PRECONDITION_FAILED {
                    Duration::from_millis(100)
                } else {
                    r.retry_after(self.timing.max_wait)
                };
                log::debug!("azure {put_step}: {}; retrying in {wait:?}", r.describe());
                tokio::time::sleep(wait).await;
                continue;
            }
            let mut err = classify(&put_step, &r, own);
            if !own && gone == Gone::Refused && r.status == StatusCode::NOT_FOUND {
                err = holder_gone(nic, &put_step, &err);
            }
            carried
                .iter()
                .for_each(|&i| out[i] = Some(Err(err.clone())));
            break;
        }
        out.into_iter().map(|o| o.unwrap_or(Ok(()))).collect()
    }

    /// Removes the addresses' ipConfigurations from `nic` in one PUT (never a primary one).
    async fn remove_many(&self, nic: &str, items: &[Item]) -> Vec<Result<(), CaptureError>> {
        let nic_name = nic.to_string();
        let edit = move |body: &Value, ips: &[Ipv4Addr]| -> EditResult {
            let cfgs = configs(body);
            let mut refused = Vec::new();
            let mut drop = Vec::new();
            for &ip in ips {
                match cfgs.iter().find(|c| same_ip(c, ip)) {
                    None => {}
                    Some(c) if is_primary(c) => refused.push((
                        ip,
                        CaptureError::new(
                            ErrorKind::Config,
                            PROVIDER,
                            "remove ipConfiguration",
                            format!("{ip} is the primary address of NIC {nic_name}: never removed"),
                        ),
                    )),
                    Some(_) => drop.push(ip),
                }
            }
            if drop.is_empty() {
                return Ok((None, refused));
            }
            let mut b = body.clone();
            if let Some(arr) = b
                .pointer_mut("/properties/ipConfigurations")
                .and_then(Value::as_array_mut)
            {
                arr.retain(|c| !drop.iter().any(|ip| same_ip(c, *ip)));
            }
            Ok((Some(b), refused))
        };
        let what = match items {
            [one] => format!("remove {}", one.ip),
            _ => format!("remove {} addresses", items.len()),
        };
        self.modify_many(nic, Gone::Done, &what, items, &edit).await
    }

    /// Adds ipConfigurations for the addresses to `nic` (ours, or the holder they go back
    /// to) in one PUT, in the subnet of that NIC's primary configuration. Past the NIC's
    /// quota of ipConfigurations the rest is refused (`Quota`) without a call.
    async fn add_many(&self, nic: &str, items: &[Item]) -> Vec<Result<(), CaptureError>> {
        let max = self.max_ip_configs;
        let nic_name = nic.to_string();
        let edit = move |body: &Value, ips: &[Ipv4Addr]| -> EditResult {
            let cfgs = configs(body);
            let subnet = cfgs
                .iter()
                .find(|c| is_primary(c))
                .or_else(|| cfgs.first())
                .and_then(|c| c.pointer("/properties/subnet/id"))
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    CaptureError::new(
                        ErrorKind::Transient,
                        PROVIDER,
                        "GET NIC",
                        "the NIC has no ipConfiguration with a subnet",
                    )
                })?
                .to_string();
            let mut b = body.clone();
            let Some(arr) = b
                .pointer_mut("/properties/ipConfigurations")
                .and_then(Value::as_array_mut)
            else {
                return Err(CaptureError::new(
                    ErrorKind::Transient,
                    PROVIDER,
                    "GET NIC",
                    "the NIC has no ipConfigurations array",
                ));
            };
            let mut refused = Vec::new();
            let mut changed = false;
            for &ip in ips {
                if arr.iter().any(|c| same_ip(c, ip)) {
                    continue;
                }
                if arr.len() >= max {
                    refused.push((
                        ip,
                        CaptureError::new(
                            ErrorKind::Quota,
                            PROVIDER,
                            "add ipConfiguration",
                            format!(
                                "{ip} cannot be captured: NIC {nic_name} holds {} ipConfigurations, Azure's quota per NIC is {max}",
                                arr.len()
                            ),
                        ),
                    ));
                    continue;
                }
                let taken = |arr: &Vec<Value>, n: &str| {
                    arr.iter().any(|c| {
                        c.get("name")
                            .and_then(Value::as_str)
                            .is_some_and(|x| x.eq_ignore_ascii_case(n))
                    })
                };
                let mut name = config_name(ip);
                let mut i = 1;
                while taken(arr, &name) {
                    i += 1;
                    name = format!("{}-{i}", config_name(ip));
                }
                arr.push(json!({
                    "name": name,
                    "properties": {
                        "privateIPAddress": ip.to_string(),
                        "privateIPAllocationMethod": "Static",
                        "privateIPAddressVersion": "IPv4",
                        "primary": false,
                        "subnet": { "id": subnet },
                    }
                }));
                changed = true;
            }
            Ok((changed.then_some(b), refused))
        };
        let what = match items {
            [one] => format!("add {}", one.ip),
            _ => format!("add {} addresses", items.len()),
        };
        self.modify_many(nic, Gone::Refused, &what, items, &edit)
            .await
    }

    /// One PUT per NIC of `groups` (item indexes per NIC id) adding or removing its items'
    /// addresses, every NIC at once: (item index, its result).
    async fn per_nic(
        &self,
        items: &[Item],
        groups: &[(String, Vec<usize>)],
        change: Change,
    ) -> Vec<(usize, Result<(), CaptureError>)> {
        let calls = groups.iter().map(|(nic, idx)| async move {
            let sub: Vec<Item> = idx.iter().map(|&i| items[i].clone()).collect();
            let results = match change {
                Change::Add => self.add_many(nic, &sub).await,
                Change::Remove => self.remove_many(nic, &sub).await,
            };
            idx.iter().copied().zip(results).collect::<Vec<_>>()
        });
        join_all(calls).await.into_iter().flatten().collect()
    }

    /// Who holds each address of `ips` in our NIC's virtual network: (NIC id, primary
    /// configuration).
    async fn holders(&self, ips: &[Ipv4Addr]) -> Result<Vec<Option<(String, bool)>>, CaptureError> {
        Ok(self.look(ips).await?.holders)
    }

    /// One listing of our resource group's NICs: who holds each address of `ips` in our NIC's
    /// virtual network, and how many ipConfigurations each of our NICs has (preference order;
    /// a NIC the listing lacks is left out).
    async fn look(&self, ips: &[Ipv4Addr]) -> Result<Look, CaptureError> {
        let nics = self.list_nics().await?;
        let id_of = |n: &Value| {
            n.get("id")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        let ours = nics
            .iter()
            .find(|n| self.is_ours(&id_of(n)))
            .ok_or_else(|| {
                CaptureError::new(
                    ErrorKind::Config,
                    PROVIDER,
                    "list network interfaces",
                    format!("NIC {} is not in its resource group's list", self.nic_id),
                )
            })?;
        let vnet = vnet_of(ours);
        let mut by_ip: std::collections::HashMap<Ipv4Addr, (String, bool)> =
            std::collections::HashMap::new();
        for n in &nics {
            if vnet.is_some() && vnet_of(n) != vnet {
                continue;
            }
            for c in configs(n) {
                if let Some(ip) = c
                    .pointer("/properties/privateIPAddress")
                    .and_then(Value::as_str)
                    .and_then(|s| s.parse::<Ipv4Addr>().ok())
                {
                    by_ip.entry(ip).or_insert_with(|| (id_of(n), is_primary(c)));
                }
            }
        }
        let own: Vec<(String, usize)> = self
            .own_nics()
            .filter_map(|id| {
                nics.iter()
                    .find(|n| id_of(n).eq_ignore_ascii_case(id))
                    .map(|n| (id.clone(), configs(n).len()))
            })
            .collect();
        // Our VM: learned once from a NIC of ours that is attached (the
        // preferred one first). Unknown: nothing is flagged detached.
        let vm = {
            let mut known = self.vm.lock().unwrap_or_else(|p| p.into_inner());
            if known.is_none() {
                *known = self
                    .own_nics()
                    .find_map(|id| {
                        nics.iter()
                            .find(|n| id_of(n).eq_ignore_ascii_case(id))
                            .and_then(|n| vm_of(n))
                    })
                    .map(str::to_string);
            }
            known.clone()
        };
        let detached: Vec<String> = match &vm {
            None => Vec::new(),
            Some(vm) => self
                .own_nics()
                .filter(|id| {
                    nics.iter()
                        .find(|n| id_of(n).eq_ignore_ascii_case(id))
                        .is_some_and(|n| !vm_of(n).is_some_and(|v| v.eq_ignore_ascii_case(vm)))
                })
                .cloned()
                .collect(),
        };
        self.note_detached(&detached, vm.as_deref());
        Ok(Look {
            holders: ips.iter().map(|ip| by_ip.get(ip).cloned()).collect(),
            own,
            detached,
            vm,
        })
    }

    /// Logs NICs of ours that became detached from our VM, or attached again.
    fn note_detached(&self, now: &[String], vm: Option<&str>) {
        let mut seen = self.detached.lock().unwrap_or_else(|p| p.into_inner());
        for id in now {
            if !seen.contains(id) {
                log::warn!(
                    "azure: this router's NIC {id} is detached from VM {} (no properties.virtualMachine): its addresses are captured again onto an attached NIC, new captures avoid it",
                    vm.unwrap_or("unknown")
                );
            }
        }
        for id in seen.iter() {
            if !now.contains(id) {
                log::info!("azure: this router's NIC {id} is attached again");
            }
        }
        *seen = now.to_vec();
    }
}

type EditResult = Result<(Option<Value>, Vec<(Ipv4Addr, CaptureError)>), CaptureError>;
type Edit<'a> = dyn Fn(&Value, &[Ipv4Addr]) -> EditResult + Send + Sync + 'a;

/// What `per_nic` does to each NIC's addresses.
#[derive(Debug, Clone, Copy)]
enum Change {
    Add,
    Remove,
}

/// What a NIC other than ours that does not exist means to `modify_many`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Gone {
    /// Removing from it: nothing left to remove.
    Done,
    /// Adding to it (a hand-back): the holder is gone.
    Refused,
}

fn holder_gone(nic: &str, step: &str, e: &CaptureError) -> CaptureError {
    CaptureError::new(
        ErrorKind::HolderGone,
        PROVIDER,
        step,
        format!("NIC {nic} no longer exists ({})", e.message),
    )
}

#[async_trait]
impl CaptureProvider for AzureProvider {
    fn name(&self) -> &'static str {
        PROVIDER
    }

    fn describe(&self) -> String {
        let nics = if self.extra.is_empty() {
            format!("Azure NIC {} ipConfigurations", self.nic_id)
        } else {
            format!(
                "Azure NICs {} + {} ipConfigurations",
                self.nic_id,
                self.extra.join(" + ")
            )
        };
        let detached = self.detached.lock().unwrap_or_else(|p| p.into_inner());
        if detached.is_empty() {
            nics
        } else {
            format!("{nics}; detached from the VM: {}", detached.join(", "))
        }
    }

    async fn observe(&self, ip: Ipv4Addr) -> Result<Holding, CaptureError> {
        crate::provider::one::observe(self, ip).await
    }

    async fn capture(&self, ip: Ipv4Addr, fence: &Fence) -> Result<(), CaptureError> {
        crate::provider::one::capture(self, ip, fence).await
    }

    async fn release(&self, ip: Ipv4Addr, fence: &Fence) -> Result<(), CaptureError> {
        crate::provider::one::release(self, ip, fence).await
    }

    async fn hand_back(&self, ip: Ipv4Addr, to: &str, fence: &Fence) -> Result<(), CaptureError> {
        crate::provider::one::hand_back(self, ip, to, fence).await
    }

    fn is_own_nic(&self, id: &str) -> bool {
        self.is_ours(id)
    }

    async fn held(&self) -> Result<Option<Vec<Ipv4Addr>>, CaptureError> {
        let mut out = Vec::new();
        for nic in self.own_nics() {
            let r = self
                .call_retrying(Method::GET, nic, "GET our NIC", true)
                .await?;
            out.extend(
                configs(&r.body)
                    .iter()
                    .filter(|c| !is_primary(c))
                    .filter_map(|c| {
                        c.pointer("/properties/privateIPAddress")
                            .and_then(Value::as_str)
                            .and_then(|s| s.parse::<Ipv4Addr>().ok())
                    }),
            );
        }
        Ok(Some(out))
    }

    fn budgets(&self) -> Vec<BudgetStatus> {
        vec![self.writes.status(), self.reads.status()]
    }

    /// One listing of the resource group's NICs answers every address.
    async fn observe_many(&self, ips: &[Ipv4Addr]) -> Vec<Result<Holding, CaptureError>> {
        match self.look(ips).await {
            Ok(look) => look
                .holders
                .iter()
                .map(|h| {
                    Ok(match h {
                        None => Holding::Nobody,
                        Some((id, _)) if self.is_ours(id) && look.is_detached(id) => {
                            Holding::Detached(id.clone())
                        }
                        Some((id, _)) if self.is_ours(id) => Holding::Ours,
                        Some((id, _)) => Holding::Elsewhere(id.clone()),
                    })
                })
                .collect(),
            Err(e) => ips.iter().map(|_| Err(e.clone())).collect(),
        }
    }

    /// First the plan: each address gets one of our NICs with room (each filled to the
    /// ipConfiguration quota before the next); what fits nowhere is refused (`Quota`) and never
    /// leaves its old NIC. Step 1: one PUT per old NIC without the addresses' configurations
    /// (the old NICs in parallel), each operation waited for; the fence again for each
    /// address; step 2: one PUT per NIC of ours with its share (in parallel).
    async fn capture_many(&self, items: &[Item]) -> Vec<Result<(), CaptureError>> {
        let ips: Vec<Ipv4Addr> = items.iter().map(|i| i.ip).collect();
        let look = match self.look(&ips).await {
            Ok(h) => h,
            Err(e) => return items.iter().map(|_| Err(e.clone())).collect(),
        };
        let own = &look.own;
        // On one of our attached NICs: nothing to do; on a detached one of
        // ours: moved like from any other NIC.
        let attached_ours = |id: &str| self.is_ours(id) && !look.is_detached(id);
        let mut out: Vec<Option<Result<(), CaptureError>>> = vec![None; items.len()];
        // A detached NIC takes nothing.
        let mut room: Vec<(String, usize)> = own
            .iter()
            .map(|(id, n)| {
                let r = if look.is_detached(id) {
                    0
                } else {
                    self.max_ip_configs.saturating_sub(*n)
                };
                (id.clone(), r)
            })
            .collect();
        let any_attached = own.iter().any(|(id, _)| !look.is_detached(id));
        let mut target: Vec<Option<String>> = vec![None; items.len()];
        for (i, h) in look.holders.iter().enumerate() {
            if matches!(h, Some((id, _)) if attached_ours(id)) || matches!(h, Some((_, true))) {
                continue;
            }
            if !any_attached {
                out[i] = Some(Err(look.all_detached(items[i].ip)));
                continue;
            }
            match room.iter_mut().find(|(_, r)| *r > 0) {
                Some((id, r)) => {
                    *r -= 1;
                    target[i] = Some(id.clone());
                }
                None => {
                    out[i] = Some(Err(CaptureError::new(
                        ErrorKind::Quota,
                        PROVIDER,
                        "add ipConfiguration",
                        format!(
                            "{} cannot be captured: every NIC of this router is at Azure's quota of {} ipConfigurations per NIC ({})",
                            items[i].ip,
                            self.max_ip_configs,
                            own.iter().map(|(id, n)| format!("{id}: {n}")).collect::<Vec<_>>().join(", ")
                        ),
                    )))
                }
            }
        }
        let mut from: Vec<(String, Vec<usize>)> = Vec::new();
        for (i, h) in look.holders.iter().cloned().enumerate() {
            if out[i].is_some() {
                continue;
            }
            match h {
                Some((id, _)) if attached_ours(&id) => out[i] = Some(Ok(())),
                Some((id, true)) => {
                    out[i] = Some(Err(CaptureError::new(
                        ErrorKind::Config,
                        PROVIDER,
                        "capture",
                        format!(
                            "{} is the primary address of NIC {id}: never moved",
                            items[i].ip
                        ),
                    )))
                }
                Some((old, false)) => group_by(&mut from, &old, i),
                None => {}
            }
        }
        // Step 1, every old NIC at once.
        for (i, r) in self.per_nic(items, &from, Change::Remove).await {
            if let Err(e) = r.and_then(|()| {
                items[i].fence.check(
                    PROVIDER,
                    "between removing from the old NIC and adding to ours",
                )
            }) {
                out[i] = Some(Err(e));
            }
        }
        // Step 2: one PUT per NIC of ours, in parallel.
        let mut groups: Vec<(String, Vec<usize>)> = Vec::new();
        for i in 0..items.len() {
            if out[i].is_some() {
                continue;
            }
            group_by(&mut groups, target[i].as_deref().unwrap_or(&self.nic_id), i);
        }
        for (i, r) in self.per_nic(items, &groups, Change::Add).await {
            out[i] = Some(r);
        }
        out.into_iter().map(|o| o.unwrap_or(Ok(()))).collect()
    }

    /// One PUT per NIC of ours holding some of the addresses (in parallel), without them.
    async fn release_many(&self, items: &[Item]) -> Vec<Result<(), CaptureError>> {
        if self.extra.is_empty() {
            let nic = self.nic_id.clone();
            return self.remove_many(&nic, items).await;
        }
        let ips: Vec<Ipv4Addr> = items.iter().map(|i| i.ip).collect();
        let holders = match self.holders(&ips).await {
            Ok(h) => h,
            Err(e) => return items.iter().map(|_| Err(e.clone())).collect(),
        };
        let mut out: Vec<Option<Result<(), CaptureError>>> = vec![None; items.len()];
        let mut groups: Vec<(String, Vec<usize>)> = Vec::new();
        for (i, h) in holders.into_iter().enumerate() {
            match h {
                Some((id, _)) if self.is_ours(&id) => group_by(&mut groups, &id, i),
                // Not on a NIC of ours: nothing to release.
                _ => out[i] = Some(Ok(())),
            }
        }
        for (i, r) in self.per_nic(items, &groups, Change::Remove).await {
            out[i] = Some(r);
        }
        out.into_iter().map(|o| o.unwrap_or(Ok(()))).collect()
    }

    /// Each NIC the addresses go back to must exist before anything leaves ours. Then one
    /// PUT of ours without them (operation waited for), the fence again per address, and one
    /// PUT per NIC they go back to. An address already held by another NIC is left alone; one
    /// on nobody (an earlier hand-back stopped between the steps) goes straight to its NIC.
    async fn hand_back_many(&self, items: &[Item], to: &[String]) -> Vec<Result<(), CaptureError>> {
        let mut out: Vec<Option<Result<(), CaptureError>>> = vec![None; items.len()];
        let mut targets: Vec<String> = Vec::new();
        for (i, t) in to.iter().enumerate() {
            if self.is_ours(t) || parse_nic_id(t).is_none() {
                out[i] = Some(Err(CaptureError::new(
                    ErrorKind::Config,
                    PROVIDER,
                    "hand back",
                    format!(
                        "{t} is this router's own NIC or not a NIC id: nothing to hand {} back to",
                        items[i].ip
                    ),
                )));
            } else if !targets.contains(t) {
                targets.push(t.clone());
            }
        }
        for t in &targets {
            if let Err(e) = self
                .call_retrying(Method::GET, t, "GET holder NIC", false)
                .await
            {
                let e = if e.message.starts_with("HTTP 404") {
                    holder_gone(t, "GET holder NIC", &e)
                } else {
                    e
                };
                for (i, ti) in to.iter().enumerate() {
                    if ti == t && out[i].is_none() {
                        out[i] = Some(Err(e.clone()));
                    }
                }
            }
        }
        let ips: Vec<Ipv4Addr> = items.iter().map(|i| i.ip).collect();
        let holders = match self.holders(&ips).await {
            Ok(h) => h,
            Err(e) => return items.iter().map(|_| Err(e.clone())).collect(),
        };
        let mut on_ours: Vec<(String, Vec<usize>)> = Vec::new();
        for (i, h) in holders.into_iter().enumerate() {
            if out[i].is_some() {
                continue;
            }
            match h {
                // Held by its NIC already, or by a third NIC: not ours to move.
                Some((id, _)) if !self.is_ours(&id) => out[i] = Some(Ok(())),
                Some((_, true)) => {
                    out[i] = Some(Err(CaptureError::new(
                        ErrorKind::Config,
                        PROVIDER,
                        "hand back",
                        format!(
                            "{} is the primary address of our NIC: never moved",
                            items[i].ip
                        ),
                    )))
                }
                Some((id, false)) => group_by(&mut on_ours, &id, i),
                None => {}
            }
        }
        // Step 1: one PUT per NIC of ours holding some (in parallel).
        for (i, r) in self.per_nic(items, &on_ours, Change::Remove).await {
            if let Err(e) = r.and_then(|()| {
                items[i].fence.check(
                    PROVIDER,
                    &format!("between removing from our NIC and adding to {}", to[i]),
                )
            }) {
                out[i] = Some(Err(e));
            }
        }
        // Step 2: one PUT per NIC they go back to. Gone between the steps: the address stays
        // on nobody, where that NIC's deletion would have left it (the reconciler's answer to
        // `HolderGone` anyway).
        for t in &targets {
            let idx: Vec<usize> = (0..items.len())
                .filter(|&i| out[i].is_none() && to[i] == *t)
                .collect();
            if idx.is_empty() {
                continue;
            }
            let sub: Vec<Item> = idx.iter().map(|&i| items[i].clone()).collect();
            for (&i, r) in idx.iter().zip(self.add_many(t, &sub).await) {
                out[i] = Some(match r {
                    Err(e) if e.kind == ErrorKind::HolderGone => Err(CaptureError {
                        message: format!("{}; {} left on no NIC", e.message, items[i].ip),
                        ..e
                    }),
                    Ok(()) => {
                        log::info!("azure: handed {} back to {t}", items[i].ip);
                        Ok(())
                    }
                    r => r,
                });
            }
        }
        out.into_iter().map(|o| o.unwrap_or(Ok(()))).collect()
    }
}
