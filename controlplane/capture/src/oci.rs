//! OCI capture: a /32 is captured as a secondary private IP of this router's VNIC (Core Services
//! `privateIps`, API version 20160918). Every request is signed ([`crate::oci_sign`]) with an API
//! key or an instance principal's security token.
//!
//! - `observe`: `ListPrivateIps?ipAddress=A&subnetId=S`: nobody, our VNIC or another VNIC.
//! - `capture`: on our VNIC already: nothing to do. On another VNIC: `GetPrivateIp` for its etag,
//!   then `UpdatePrivateIp {vnicId: ours}` with `if-match` (an etag race is retried a bounded
//!   number of times, then `Transient`). Nobody: `CreatePrivateIp {vnicId, ipAddress}`. OCI has
//!   no "unassign if already assigned" flag: that decision is this client's. A VNIC's primary
//!   private IP never moves (`Config` error).
//! - `release`: `DeletePrivateIp` only while the address is a secondary of our VNIC, with the
//!   etag read when that was checked (so an address moved meanwhile is not deleted).
//! - `hand_back`: on our VNIC (or on no VNIC): `UpdatePrivateIp {vnicId: holder}` with `if-match`,
//!   one call that moves it; on nobody: `CreatePrivateIp` on the holder. A 404 for the holder
//!   VNIC is `HolderGone` (nothing moved) only when that VNIC has no private IP left in our subnet:
//!   OCI's `NotAuthorizedOrNotFound` also means "exists, but not for you", which is `Config`.
//!
//! Detached VNICs: OCI deletes a secondary VNIC when it is detached from its instance, with its
//! private IPs (they go to nobody). A VNIC of ours whose primary private IP the subnet listing no
//! longer shows takes no capture (the addresses it held are captured again, from nobody, onto
//! the others); with none left a capture fails `Config`, saying so.
//!
//! Clock skew: OCI refuses a request whose signed `date` is more than 5 minutes off its clock
//! (401 `NotAuthenticated`). The client learns the API's clock from the `Date` header of every
//! reply ([`crate::oci_sign::Clock`]) and signs with it; a 401 whose `Date` shows a new skew is
//! signed again and sent once more (it was not executed). The skew is logged, shown by
//! `describe`, and named in the error of a refusal while it is large.
//!
//! `fence.check` runs right before every mutating call (after its API budget token). 429 is `Throttled`; 5xx, timeouts, 409
//! and 412 are `Transient`; 401/403, our VNIC or subnet unknown (404 on list) and a bad key file
//! are `Config`.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::budget::{BucketConfig, Budget, BudgetStatus};
use crate::oci_sign::{skew_text, Clock, Credentials, SKEW_WARN};
use crate::provider::{CaptureError, CaptureProvider, ErrorKind, Fence, Holding, Item};

const PROVIDER: &str = "oci";
const API: &str = "/20160918";
const DEFAULT_IMDS: &str = "http://169.254.169.254";

/// How the OCI client authenticates.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum OciAuth {
    /// An API signing key of a user.
    ApiKey {
        tenancy: String,
        user: String,
        /// The key's fingerprint as the console shows it (`aa:bb:...`).
        fingerprint: String,
        /// The private key (PEM, PKCS#1 or PKCS#8, unencrypted).
        key_file: PathBuf,
    },
    /// The instance's own identity (dynamic group policies).
    InstancePrincipal {
        /// Instance metadata service (default `http://169.254.169.254`).
        imds_endpoint: Option<String>,
        /// Federation endpoint (default `https://auth.{region}.oraclecloud.com`).
        auth_endpoint: Option<String>,
    },
}

/// The `[capture.oci]` configuration.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OciConfig {
    /// OCID of this router's VNIC.
    pub vnic_id: String,
    /// OCID of the subnet the captured addresses live in (our VNIC's subnet).
    pub subnet_id: String,
    /// Core Services endpoint (default `https://iaas.{region}.oraclecloud.com`).
    pub endpoint: Option<String>,
    /// Region identifier, e.g. `eu-frankfurt-1` (needed when an endpoint is defaulted).
    pub region: Option<String>,
    pub auth: OciAuth,
    /// Client-side budget of private IP changes (PUT, POST, DELETE); OCI publishes no
    /// figure: the default (50, 10/s) matches the emulator's.
    #[serde(default)]
    pub write_budget: Option<BucketConfig>,
    /// Client-side budget of reads (default 100, 20/s).
    #[serde(default)]
    pub read_budget: Option<BucketConfig>,
    /// Secondary private IPs a VNIC may hold (OCI's limit: 64).
    #[serde(default)]
    pub max_secondary_ips: Option<usize>,
    /// More VNICs of this router in the subnet that may hold captured addresses once
    /// `vnic_id` is full, in preference order.
    #[serde(default)]
    pub extra_vnic_ids: Option<Vec<String>>,
}

/// Secondary private IPs per VNIC (OCI limit).
pub const MAX_SECONDARY_IPS: usize = 64;

/// Most pages of a subnet's private IPs read to observe many addresses at once.
const MAX_SUBNET_PAGES: usize = 200;

/// Default client-side budget of OCI private IP changes.
pub const WRITE_BUDGET: BucketConfig = BucketConfig::new(50, 10.0);
/// Default client-side budget of OCI reads.
pub const READ_BUDGET: BucketConfig = BucketConfig::new(100, 20.0);

fn check_url(field: &str, v: &str) -> Result<(), String> {
    match url::Url::parse(v) {
        Ok(u) if (u.scheme() == "http" || u.scheme() == "https") && u.host().is_some() => Ok(()),
        _ => Err(format!(
            "capture.oci.{field} = {v:?}: expected an http(s) URL"
        )),
    }
}

fn check_ocid(field: &str, v: &str, kind: &str) -> Result<(), String> {
    let ok = v.starts_with(&format!("ocid1.{kind}."))
        && v.split('.').count() >= 4
        && !v.contains(|c: char| c.is_whitespace() || c == '/' || c == '?' || c == '&');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "capture.oci.{field} = {v:?}: expected an OCID ocid1.{kind}.<realm>.[region].<id>"
        ))
    }
}

impl OciConfig {
    /// Checks the configuration; errors name the field and its value.
    pub fn validate(&self) -> Result<(), String> {
        check_ocid("vnic_id", &self.vnic_id, "vnic")?;
        for v in self.extra_vnic_ids.iter().flatten() {
            check_ocid("extra_vnic_ids", v, "vnic")?;
        }
        check_ocid("subnet_id", &self.subnet_id, "subnet")?;
        if let Some(r) = &self.region {
            let ok = !r.is_empty()
                && r.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
            if !ok {
                return Err(format!(
                    "capture.oci.region = {r:?}: expected a region identifier like \"eu-frankfurt-1\""
                ));
            }
        }
        match &self.endpoint {
            Some(e) => check_url("endpoint", e)?,
            None if self.region.is_none() => {
                return Err(
                    "capture.oci.region: required when capture.oci.endpoint is not set".into(),
                )
            }
            None => {}
        }
        match &self.auth {
            OciAuth::ApiKey {
                tenancy,
                user,
                fingerprint,
                key_file,
            } => {
                check_ocid("auth.tenancy", tenancy, "tenancy")?;
                check_ocid("auth.user", user, "user")?;
                let fp_ok = fingerprint.split(':').count() == 16
                    && fingerprint
                        .split(':')
                        .all(|p| p.len() == 2 && p.chars().all(|c| c.is_ascii_hexdigit()));
                if !fp_ok {
                    return Err(format!(
                        "capture.oci.auth.fingerprint = {fingerprint:?}: expected 16 colon-separated hex bytes"
                    ));
                }
                if key_file.as_os_str().is_empty() {
                    return Err("capture.oci.auth.key_file = \"\": expected a PEM file".into());
                }
            }
            OciAuth::InstancePrincipal {
                imds_endpoint,
                auth_endpoint,
            } => {
                if let Some(e) = imds_endpoint {
                    check_url("auth.imds_endpoint", e)?;
                }
                match auth_endpoint {
                    Some(e) => check_url("auth.auth_endpoint", e)?,
                    None if self.region.is_none() => {
                        return Err("capture.oci.region: required when capture.oci.auth.auth_endpoint is not set".into())
                    }
                    None => {}
                }
            }
        }
        Ok(())
    }
}

/// Time limits and retries of the client.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub connect: Duration,
    /// Whole-request timeout of one HTTP request.
    pub request: Duration,
    /// Attempts of an etag-guarded change on 412 (at least 1).
    pub attempts: u32,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            connect: Duration::from_secs(5),
            request: Duration::from_secs(30),
            attempts: 3,
        }
    }
}

/// The OCI capture provider for one VNIC.
pub struct OciProvider {
    http: reqwest::Client,
    timing: Timing,
    endpoint: url::Url,
    vnic_id: String,
    subnet_id: String,
    creds: Credentials,
    writes: Budget,
    reads: Budget,
    max_secondary_ips: usize,
    /// Our other VNICs, preference order after `vnic_id`.
    extra: Vec<String>,
    /// The API's clock as learned from its replies (requests are signed with it).
    clock: Clock,
    /// Our VNICs last seen gone from the subnet (logged when this changes).
    gone: std::sync::Mutex<Vec<String>>,
}

/// One OCI answer.
struct OciResp {
    status: StatusCode,
    etag: Option<String>,
    /// `opc-next-page`: the `page` token of the next page of a list.
    next_page: Option<String>,
    body: Value,
    /// What the operator should know besides the code and message (the clock skew).
    note: Option<String>,
}

impl OciResp {
    fn describe(&self) -> String {
        let code = self.body.get("code").and_then(Value::as_str).unwrap_or("");
        let msg = self
            .body
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("");
        match &self.note {
            Some(n) => format!("HTTP {} {code}: {msg} ({n})", self.status.as_u16()),
            None => format!("HTTP {} {code}: {msg}", self.status.as_u16()),
        }
    }
}

fn classify(step: &str, r: &OciResp) -> CaptureError {
    let code = r.body.get("code").and_then(Value::as_str).unwrap_or("");
    let kind = match r.status.as_u16() {
        429 => ErrorKind::Throttled,
        400 if code.contains("Limit") || code.contains("Quota") => ErrorKind::Quota,
        409 | 412 => ErrorKind::Transient,
        s if s >= 500 => ErrorKind::Transient,
        _ => ErrorKind::Config,
    };
    CaptureError::new(kind, PROVIDER, step, r.describe())
}

/// A private IP as ListPrivateIps / GetPrivateIp report it.
struct PrivateIp {
    id: String,
    vnic: Option<String>,
    primary: bool,
}

/// The items of a successful list answer.
fn list_items<'a>(step: &str, r: &'a OciResp) -> Result<&'a Vec<Value>, CaptureError> {
    if !r.status.is_success() {
        return Err(classify(step, r));
    }
    r.body.as_array().ok_or_else(|| {
        CaptureError::new(
            ErrorKind::Transient,
            PROVIDER,
            step,
            "the answer is not a list",
        )
    })
}

fn private_ip(v: &Value) -> Option<PrivateIp> {
    Some(PrivateIp {
        id: v.get("id")?.as_str()?.to_string(),
        vnic: v.get("vnicId").and_then(Value::as_str).map(str::to_string),
        primary: v.get("isPrimary").and_then(Value::as_bool).unwrap_or(false),
    })
}

impl OciProvider {
    /// A client for `cfg` (validated here; an API key file is read and parsed now).
    pub fn new(cfg: &OciConfig) -> Result<OciProvider, CaptureError> {
        Self::with_timing(cfg, Timing::default())
    }

    /// As [`OciProvider::new`] with other time limits.
    pub fn with_timing(cfg: &OciConfig, timing: Timing) -> Result<OciProvider, CaptureError> {
        let cfg_err =
            |m: String| CaptureError::new(ErrorKind::Config, PROVIDER, "configuration", m);
        cfg.validate().map_err(cfg_err)?;
        let region = cfg.region.clone().unwrap_or_default();
        let endpoint = cfg
            .endpoint
            .clone()
            .unwrap_or_else(|| format!("https://iaas.{region}.oraclecloud.com"));
        let endpoint = url::Url::parse(endpoint.trim_end_matches('/'))
            .map_err(|e| cfg_err(format!("capture.oci.endpoint = {endpoint:?}: {e}")))?;
        let creds = match &cfg.auth {
            OciAuth::ApiKey {
                tenancy,
                user,
                fingerprint,
                key_file,
            } => Credentials::api_key(tenancy, user, fingerprint, key_file)?,
            OciAuth::InstancePrincipal {
                imds_endpoint,
                auth_endpoint,
            } => Credentials::instance_principal(
                imds_endpoint.as_deref().unwrap_or(DEFAULT_IMDS),
                &auth_endpoint
                    .clone()
                    .unwrap_or_else(|| format!("https://auth.{region}.oraclecloud.com")),
            ),
        };
        let http = reqwest::Client::builder()
            .connect_timeout(timing.connect)
            .timeout(timing.request)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| cfg_err(format!("cannot build the HTTP client: {e}")))?;
        Ok(OciProvider {
            http,
            timing: Timing {
                attempts: timing.attempts.max(1),
                ..timing
            },
            endpoint,
            vnic_id: cfg.vnic_id.clone(),
            subnet_id: cfg.subnet_id.clone(),
            creds,
            writes: Budget::new("oci writes", cfg.write_budget.unwrap_or(WRITE_BUDGET)),
            reads: Budget::new("oci reads", cfg.read_budget.unwrap_or(READ_BUDGET)),
            max_secondary_ips: cfg.max_secondary_ips.unwrap_or(MAX_SECONDARY_IPS),
            extra: cfg.extra_vnic_ids.clone().unwrap_or_default(),
            clock: Clock::default(),
            gone: std::sync::Mutex::new(Vec::new()),
        })
    }

    /// One signed request. `path` is under the API version (`/privateIps...`). A change
    /// carries its action's fence, checked after the signature, right before it leaves.
    #[allow(clippy::too_many_arguments)]
    async fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
        if_match: Option<&str>,
        step: &str,
        fence: Option<&Fence>,
    ) -> Result<OciResp, CaptureError> {
        let mut url = self.endpoint.clone();
        let base = url.path().trim_end_matches('/').to_string();
        url.set_path(&format!("{base}{API}{path}"));
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        let bytes = body.map(|b| b.to_string().into_bytes());
        let mut attempt = 0;
        loop {
            attempt += 1;
            // Signed with the API's time (the host's corrected by the skew learned from the
            // replies' Date headers).
            let headers = self
                .creds
                .sign(
                    &self.http,
                    &self.clock,
                    method.as_str(),
                    &url,
                    bytes.as_deref(),
                )
                .await?;
            // Reads take their token here; a change took its token before its
            // fence check (token, fence, call: a wait for the budget never sits
            // between the fence and the call). A change signed again (below)
            // takes another.
            let budget = if method == Method::GET {
                self.reads.take().await;
                &self.reads
            } else {
                if attempt > 1 {
                    self.writes.take().await;
                }
                &self.writes
            };
            // The fence last, right before the request leaves (after its
            // budget token and its signature).
            if let Some(f) = fence {
                f.check(PROVIDER, step)?;
            }
            let mut req = self
                .http
                .request(method.clone(), url.clone())
                .header("accept", "application/json");
            for (k, v) in headers {
                req = req.header(k, v);
            }
            if let Some(m) = if_match {
                req = req.header("if-match", m);
            }
            if let Some(b) = &bytes {
                req = req.body(b.clone());
            }
            // Its own task: a batch runs its calls in one task, which goes on to
            // sign the next request (CPU) right after this one's fence check; the
            // request must not wait for that to leave.
            let sent_at = SystemTime::now();
            let sent = tokio::spawn(req.send()).await.map_err(|e| {
                CaptureError::new(
                    ErrorKind::Transient,
                    PROVIDER,
                    step,
                    format!("request task failed: {e}"),
                )
            })?;
            let r = sent.map_err(|e| {
                let what = if e.is_timeout() {
                    "timed out"
                } else {
                    "request failed"
                };
                CaptureError::new(ErrorKind::Transient, PROVIDER, step, format!("{what}: {e}"))
            })?;
            let learned = self.clock.learn(
                r.headers().get("date").and_then(|v| v.to_str().ok()),
                sent_at,
                SystemTime::now(),
            );
            let status = r.status();
            let etag = r
                .headers()
                .get("etag")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let next_page = r
                .headers()
                .get("opc-next-page")
                .and_then(|v| v.to_str().ok())
                .filter(|v| !v.is_empty())
                .map(str::to_string);
            let text = r.text().await.map_err(|e| {
                CaptureError::new(
                    ErrorKind::Transient,
                    PROVIDER,
                    step,
                    format!("reading the answer: {e}"),
                )
            })?;
            let skew = self.clock.skew_ms();
            let skewed = Duration::from_millis(skew.unsigned_abs()) >= SKEW_WARN;
            if status == StatusCode::UNAUTHORIZED {
                if learned.is_some() && attempt == 1 {
                    // Refused with a Date that shows our clock off: the date we signed was
                    // outside OCI's 5 minutes. Not executed; signed again with the API's time.
                    log::warn!(
                        "oci: {step} refused (HTTP 401) with {}: signing it again with the API's time",
                        skew_text(skew)
                    );
                    continue;
                }
                self.creds.invalidate().await;
            }
            if status == StatusCode::TOO_MANY_REQUESTS {
                budget.throttled(None);
            }
            return Ok(OciResp {
                status,
                etag,
                next_page,
                body: serde_json::from_str(&text).unwrap_or(Value::Null),
                // A refusal while the clock is off names the skew (explain, logs).
                note: (skewed && status == StatusCode::UNAUTHORIZED).then(|| skew_text(skew)),
            });
        }
    }

    /// The private IP object for `ip` in our subnet, if any.
    async fn find(&self, ip: Ipv4Addr) -> Result<Option<PrivateIp>, CaptureError> {
        let step = "ListPrivateIps";
        let a = ip.to_string();
        let r = self
            .call(
                Method::GET,
                "/privateIps",
                &[("ipAddress", &a), ("subnetId", &self.subnet_id)],
                None,
                None,
                step,
                None,
            )
            .await?;
        let items = list_items(step, &r)?;
        Ok(items
            .iter()
            .filter(|v| v.get("ipAddress").and_then(Value::as_str) == Some(a.as_str()))
            .find_map(private_ip))
    }

    /// GetPrivateIp: the object and its etag (None: it no longer exists).
    async fn get(&self, id: &str) -> Result<Option<(PrivateIp, Option<String>)>, CaptureError> {
        let step = "GetPrivateIp";
        let r = self
            .call(
                Method::GET,
                &format!("/privateIps/{id}"),
                &[],
                None,
                None,
                step,
                None,
            )
            .await?;
        if r.status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !r.status.is_success() {
            return Err(classify(step, &r));
        }
        let p = private_ip(&r.body).ok_or_else(|| {
            CaptureError::new(ErrorKind::Transient, PROVIDER, step, "the answer has no id")
        })?;
        Ok(Some((p, r.etag)))
    }

    /// What a 404 on a hand-back to VNIC `to` means. OCI answers 404 `NotAuthorizedOrNotFound`
    /// both for a VNIC that does not exist and for one this principal may not use, and only the
    /// first is `HolderGone` (the reconciler then releases the address to nobody): a VNIC that
    /// held an address of our subnet has its primary private IP there too (a secondary comes
    /// from its VNIC's subnet), so a VNIC still listed in our subnet exists and the 404 is a
    /// missing permission (`Config`, retried, nothing released).
    async fn vnic_refused(&self, ip: Ipv4Addr, to: &str, step: &str, r: &OciResp) -> CaptureError {
        match self.vnic_in_subnet(to).await {
            Ok(false) => CaptureError::new(
                ErrorKind::HolderGone,
                PROVIDER,
                step,
                format!(
                    "VNIC {to} no longer exists ({}; no private IP of it in subnet {})",
                    r.describe(),
                    self.subnet_id
                ),
            ),
            Ok(true) => CaptureError::new(
                ErrorKind::Config,
                PROVIDER,
                step,
                format!(
                    "{}: VNIC {to} exists (listed in subnet {}), so this principal may not assign {ip} to it: allow it (e.g. `manage private-ips` and `use vnics` in that VNIC's compartment)",
                    r.describe(),
                    self.subnet_id
                ),
            ),
            Err(e) => e,
        }
    }

    /// Whether VNIC `vnic` has a private IP in our subnet (ListPrivateIps by subnet, paged).
    async fn vnic_in_subnet(&self, vnic: &str) -> Result<bool, CaptureError> {
        // Bounded: 1000 pages of a subnet's private IPs.
        self.walk_private_ips(
            ("subnetId", self.subnet_id.as_str()),
            1000,
            "ListPrivateIps (subnet)",
            "too many pages of private IPs in the subnet",
            |items| {
                items
                    .iter()
                    .any(|v| v.get("vnicId").and_then(Value::as_str) == Some(vnic))
            },
        )
        .await
    }

    /// ListPrivateIps filtered by `filter`, page by page: each page's items go
    /// to `visit` until it returns true (then: true) or the pages end (then:
    /// false). More than `max_pages` pages is a transient error (`too_many`).
    async fn walk_private_ips(
        &self,
        filter: (&str, &str),
        max_pages: usize,
        step: &str,
        too_many: &str,
        mut visit: impl FnMut(&[Value]) -> bool,
    ) -> Result<bool, CaptureError> {
        let mut page: Option<String> = None;
        for _ in 0..max_pages {
            let mut query = vec![filter];
            if let Some(p) = &page {
                query.push(("page", p.as_str()));
            }
            let r = self
                .call(Method::GET, "/privateIps", &query, None, None, step, None)
                .await?;
            if visit(list_items(step, &r)?) {
                return Ok(true);
            }
            match r.next_page {
                Some(p) => page = Some(p),
                None => return Ok(false),
            }
        }
        Err(CaptureError::new(
            ErrorKind::Transient,
            PROVIDER,
            step,
            too_many,
        ))
    }

    /// Logs VNICs of ours that disappeared from the subnet (or came back).
    fn note_gone(&self, now: &[String]) {
        let mut seen = self.gone.lock().unwrap_or_else(|p| p.into_inner());
        for v in now {
            if !seen.contains(v) {
                log::warn!(
                    "oci: this router's VNIC {v} no longer exists in subnet {} (OCI deletes a VNIC detached from its instance): new captures avoid it, the addresses it held are captured again onto the others",
                    self.subnet_id
                );
            }
        }
        *seen = now.to_vec();
    }

    /// Whether `vnic` is one of this router's VNICs.
    fn is_own(&self, vnic: &str) -> bool {
        vnic == self.vnic_id || self.extra.iter().any(|x| x == vnic)
    }

    /// Our VNICs, preference order.
    fn own_vnics(&self) -> impl Iterator<Item = &String> {
        std::iter::once(&self.vnic_id).chain(self.extra.iter())
    }

    /// Every private IP object of our subnet, by address (paged listing).
    async fn subnet_ips(
        &self,
    ) -> Result<std::collections::HashMap<Ipv4Addr, PrivateIp>, CaptureError> {
        let mut by_ip = std::collections::HashMap::new();
        self.walk_private_ips(
            ("subnetId", self.subnet_id.as_str()),
            MAX_SUBNET_PAGES,
            "ListPrivateIps",
            "too many pages of private IPs in the subnet",
            |items| {
                for v in items {
                    let addr = v
                        .get("ipAddress")
                        .and_then(Value::as_str)
                        .and_then(|a| a.parse::<Ipv4Addr>().ok());
                    if let (Some(a), Some(p)) = (addr, private_ip(v)) {
                        by_ip.insert(a, p);
                    }
                }
                false
            },
        )
        .await?;
        Ok(by_ip)
    }

    /// A capture onto our VNIC refused: a 404 while our VNIC has no private IP left in the
    /// subnet means it no longer exists (OCI deletes a secondary VNIC when it is detached from
    /// its instance), which the operator must know in those words.
    async fn onto_ours_refused(&self, ip: Ipv4Addr, step: &str, r: &OciResp) -> CaptureError {
        let e = classify(step, r);
        if r.status != StatusCode::NOT_FOUND {
            return e;
        }
        match self.vnic_in_subnet(&self.vnic_id).await {
            Ok(false) => self.vnics_gone(ip, std::slice::from_ref(&self.vnic_id), &e.message),
            _ => e,
        }
    }

    /// The error for a capture when every VNIC of ours (`gone`) no longer exists.
    fn vnics_gone(&self, ip: Ipv4Addr, gone: &[String], detail: &str) -> CaptureError {
        CaptureError::new(
            ErrorKind::Config,
            PROVIDER,
            "CreatePrivateIp",
            format!(
                "{ip} cannot be captured: this router's VNIC {} no longer exists in subnet {} (OCI deletes a VNIC detached from its instance: configure the VNIC attached in its place; retried){}",
                gone.join(", "),
                self.subnet_id,
                if detail.is_empty() {
                    String::new()
                } else {
                    format!(" ({detail})")
                }
            ),
        )
    }

    fn primary_error(&self, ip: Ipv4Addr, vnic: &str, what: &str) -> CaptureError {
        CaptureError::new(
            ErrorKind::Config,
            PROVIDER,
            what,
            format!("{ip} is the primary private IP of VNIC {vnic}: never moved or deleted"),
        )
    }
}

#[async_trait]
impl CaptureProvider for OciProvider {
    fn name(&self) -> &'static str {
        PROVIDER
    }

    fn describe(&self) -> String {
        let skew = self.clock.skew_ms();
        format!(
            "OCI VNIC {} secondary private IPs (subnet {}){}",
            self.own_vnics().cloned().collect::<Vec<_>>().join(" + "),
            self.subnet_id,
            if Duration::from_millis(skew.unsigned_abs()) >= SKEW_WARN {
                format!("; {}, corrected", skew_text(skew))
            } else {
                String::new()
            }
        )
    }

    async fn observe(&self, ip: Ipv4Addr) -> Result<Holding, CaptureError> {
        Ok(match self.find(ip).await? {
            Some(PrivateIp { vnic: Some(v), .. }) if self.is_own(&v) => Holding::Ours,
            Some(PrivateIp { vnic: Some(v), .. }) => Holding::Elsewhere(v),
            // A private IP object on no VNIC (reserved) delivers to nobody.
            Some(PrivateIp { vnic: None, .. }) | None => Holding::Nobody,
        })
    }

    async fn capture(&self, ip: Ipv4Addr, fence: &Fence) -> Result<(), CaptureError> {
        if !self.extra.is_empty() {
            // Several VNICs: the batch path picks one with room.
            return crate::provider::one::capture(self, ip, fence).await;
        }
        let mut attempt = 0;
        loop {
            attempt += 1;
            let Some(found) = self.find(ip).await? else {
                let step = "CreatePrivateIp";
                self.writes.take().await;
                let body = json!({ "vnicId": self.vnic_id, "ipAddress": ip.to_string() });
                let r = self
                    .call(
                        Method::POST,
                        "/privateIps",
                        &[],
                        Some(&body),
                        None,
                        step,
                        Some(fence),
                    )
                    .await?;
                if r.status.is_success() {
                    return Ok(());
                }
                // 409: created elsewhere meanwhile; look again (bounded).
                if r.status == StatusCode::CONFLICT && attempt < self.timing.attempts {
                    continue;
                }
                return Err(self.onto_ours_refused(ip, step, &r).await);
            };
            if found.vnic.as_deref().is_some_and(|v| self.is_own(v)) {
                return Ok(());
            }
            if found.primary {
                return Err(self.primary_error(
                    ip,
                    found.vnic.as_deref().unwrap_or("?"),
                    "UpdatePrivateIp",
                ));
            }
            let Some((current, etag)) = self.get(&found.id).await? else {
                if attempt < self.timing.attempts {
                    continue;
                }
                return Err(CaptureError::new(
                    ErrorKind::Transient,
                    PROVIDER,
                    "GetPrivateIp",
                    format!("private IP {} disappeared while moving {ip}", found.id),
                ));
            };
            if current.vnic.as_deref().is_some_and(|v| self.is_own(v)) {
                return Ok(());
            }
            let step = "UpdatePrivateIp";
            self.writes.take().await;
            let body = json!({ "vnicId": self.vnic_id });
            let r = self
                .call(
                    Method::PUT,
                    &format!("/privateIps/{}", found.id),
                    &[],
                    Some(&body),
                    etag.as_deref(),
                    step,
                    Some(fence),
                )
                .await?;
            if r.status.is_success() {
                return Ok(());
            }
            if r.status == StatusCode::PRECONDITION_FAILED && attempt < self.timing.attempts {
                log::debug!("oci {step} {ip}: {}; retrying", r.describe());
                continue;
            }
            return Err(self.onto_ours_refused(ip, step, &r).await);
        }
    }

    async fn release(&self, ip: Ipv4Addr, fence: &Fence) -> Result<(), CaptureError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let Some(found) = self.find(ip).await? else {
                return Ok(());
            };
            if !found.vnic.as_deref().is_some_and(|v| self.is_own(v)) {
                return Ok(());
            }
            if found.primary {
                let vnic = found.vnic.as_deref().unwrap_or(&self.vnic_id);
                return Err(self.primary_error(ip, vnic, "DeletePrivateIp"));
            }
            let Some((current, etag)) = self.get(&found.id).await? else {
                return Ok(());
            };
            if !current.vnic.as_deref().is_some_and(|v| self.is_own(v)) {
                return Ok(());
            }
            let step = "DeletePrivateIp";
            self.writes.take().await;
            let r = self
                .call(
                    Method::DELETE,
                    &format!("/privateIps/{}", found.id),
                    &[],
                    None,
                    etag.as_deref(),
                    step,
                    Some(fence),
                )
                .await?;
            if r.status.is_success() || r.status == StatusCode::NOT_FOUND {
                return Ok(());
            }
            if r.status == StatusCode::PRECONDITION_FAILED && attempt < self.timing.attempts {
                continue;
            }
            return Err(classify(step, &r));
        }
    }

    async fn hand_back(&self, ip: Ipv4Addr, to: &str, fence: &Fence) -> Result<(), CaptureError> {
        if self.is_own(to) {
            return Err(CaptureError::new(
                ErrorKind::Config,
                PROVIDER,
                "hand back",
                format!("{to} is this router's own VNIC: nothing to hand {ip} back to"),
            ));
        }
        let mut attempt = 0;
        loop {
            attempt += 1;
            let Some(found) = self.find(ip).await? else {
                // On nobody (an earlier hand-back or someone else removed it): create it there.
                let step = format!("CreatePrivateIp on {to}");
                self.writes.take().await;
                let body = json!({ "vnicId": to, "ipAddress": ip.to_string() });
                let r = self
                    .call(
                        Method::POST,
                        "/privateIps",
                        &[],
                        Some(&body),
                        None,
                        &step,
                        Some(fence),
                    )
                    .await?;
                if r.status.is_success() {
                    log::info!("oci: handed {ip} (on no VNIC) back to {to}");
                    return Ok(());
                }
                if r.status == StatusCode::NOT_FOUND {
                    return Err(self.vnic_refused(ip, to, &step, &r).await);
                }
                // 409: created meanwhile; look again (bounded).
                if r.status == StatusCode::CONFLICT && attempt < self.timing.attempts {
                    continue;
                }
                return Err(classify(&step, &r));
            };
            match found.vnic.as_deref() {
                // Held by `to` already, or by a third VNIC: not ours to move.
                Some(v) if !self.is_own(v) => return Ok(()),
                _ => {}
            }
            if found.primary {
                return Err(self.primary_error(ip, &self.vnic_id, "UpdatePrivateIp"));
            }
            let Some((current, etag)) = self.get(&found.id).await? else {
                if attempt < self.timing.attempts {
                    continue;
                }
                return Err(CaptureError::new(
                    ErrorKind::Transient,
                    PROVIDER,
                    "GetPrivateIp",
                    format!(
                        "private IP {} disappeared while handing {ip} back",
                        found.id
                    ),
                ));
            };
            if current.vnic.as_deref().is_some_and(|v| !self.is_own(v)) {
                return Ok(());
            }
            let step = format!("UpdatePrivateIp to {to}");
            self.writes.take().await;
            let body = json!({ "vnicId": to });
            let r = self
                .call(
                    Method::PUT,
                    &format!("/privateIps/{}", found.id),
                    &[],
                    Some(&body),
                    etag.as_deref(),
                    &step,
                    Some(fence),
                )
                .await?;
            if r.status.is_success() {
                log::info!("oci: handed {ip} back to {to}");
                return Ok(());
            }
            if r.status == StatusCode::NOT_FOUND {
                // Either the private IP went meanwhile (look again) or the VNIC is gone.
                if self.get(&found.id).await?.is_some() {
                    return Err(self.vnic_refused(ip, to, &step, &r).await);
                }
                if attempt < self.timing.attempts {
                    continue;
                }
            }
            if r.status == StatusCode::PRECONDITION_FAILED && attempt < self.timing.attempts {
                log::debug!("oci {step} {ip}: {}; retrying", r.describe());
                continue;
            }
            return Err(classify(&step, &r));
        }
    }

    fn is_own_nic(&self, id: &str) -> bool {
        self.is_own(id)
    }

    fn budgets(&self) -> Vec<BudgetStatus> {
        vec![self.writes.status(), self.reads.status()]
    }

    /// One listing of the subnet's private IPs (paged) answers every address; a single
    /// address is one filtered lookup.
    async fn observe_many(&self, ips: &[Ipv4Addr]) -> Vec<Result<Holding, CaptureError>> {
        if ips.len() == 1 {
            return vec![self.observe(ips[0]).await];
        }
        let by_ip = match self.subnet_ips().await {
            Ok(m) => m,
            Err(e) => return ips.iter().map(|_| Err(e.clone())).collect(),
        };
        ips.iter()
            .map(|ip| {
                Ok(match by_ip.get(ip).and_then(|p| p.vnic.as_deref()) {
                    Some(v) if self.is_own(v) => Holding::Ours,
                    Some(v) => Holding::Elsewhere(v.to_string()),
                    // A private IP object on no VNIC (reserved) delivers to nobody.
                    None => Holding::Nobody,
                })
            })
            .collect()
    }

    /// One listing of the subnet, then one call per address that must move (OCI has no
    /// call taking several), all in flight at once under the budget: `UpdatePrivateIp` to
    /// our VNIC, or `CreatePrivateIp` on it for an address nobody holds. The listing's
    /// view stands in for the per-address GET of the single-address path, so the move
    /// carries no `if-match` (the fence guards against our own stale plans). Past the
    /// VNIC's quota of secondary IPs the rest is refused (`Quota`) without a call.
    async fn capture_many(&self, items: &[Item]) -> Vec<Result<(), CaptureError>> {
        if items.len() == 1 && self.extra.is_empty() {
            return vec![self.capture(items[0].ip, &items[0].fence).await];
        }
        let by_ip = match self.subnet_ips().await {
            Ok(m) => m,
            Err(e) => return items.iter().map(|_| Err(e.clone())).collect(),
        };
        // A VNIC of ours whose primary private IP the subnet no longer lists does not exist
        // any more (OCI deletes a VNIC detached from its instance): it takes nothing.
        let gone: Vec<String> = self
            .own_vnics()
            .filter(|v| {
                !by_ip
                    .values()
                    .any(|p| p.primary && p.vnic.as_deref() == Some(v.as_str()))
            })
            .cloned()
            .collect();
        self.note_gone(&gone);
        // Room on each of our VNICs, filled in preference order.
        let mut room: Vec<(String, usize)> = self
            .own_vnics()
            .map(|v| {
                if gone.contains(v) {
                    return (v.clone(), 0);
                }
                let held = by_ip
                    .values()
                    .filter(|p| p.vnic.as_deref() == Some(v.as_str()) && !p.primary)
                    .count();
                (v.clone(), self.max_secondary_ips.saturating_sub(held))
            })
            .collect();
        let all_gone = gone.len() == 1 + self.extra.len();
        let mut out: Vec<Option<Result<(), CaptureError>>> = vec![None; items.len()];
        let mut calls = Vec::new();
        for (i, it) in items.iter().enumerate() {
            let found = by_ip.get(&it.ip);
            match found {
                Some(p) if p.vnic.as_deref().is_some_and(|v| self.is_own(v)) => {
                    out[i] = Some(Ok(()));
                    continue;
                }
                Some(p) if p.primary => {
                    out[i] = Some(Err(self.primary_error(
                        it.ip,
                        p.vnic.as_deref().unwrap_or("?"),
                        "UpdatePrivateIp",
                    )));
                    continue;
                }
                _ => {}
            }
            if all_gone {
                out[i] = Some(Err(self.vnics_gone(it.ip, &gone, "")));
                continue;
            }
            let Some((vnic, r)) = room.iter_mut().find(|(_, r)| *r > 0) else {
                out[i] = Some(Err(CaptureError::new(
                    ErrorKind::Quota,
                    PROVIDER,
                    "UpdatePrivateIp",
                    format!(
                        "{} cannot be captured: every VNIC of this router ({}) holds OCI's quota of {} secondary private IPs",
                        it.ip,
                        self.own_vnics().cloned().collect::<Vec<_>>().join(", "),
                        self.max_secondary_ips
                    ),
                )));
                continue;
            };
            *r -= 1;
            let vnic = vnic.clone();
            let id = found.map(|p| p.id.clone());
            calls.push(async move {
                // A move of the existing private IP object, or a new one on our VNIC.
                let (method, path, body, step) = match id {
                    Some(id) => (
                        Method::PUT,
                        format!("/privateIps/{id}"),
                        json!({ "vnicId": vnic }),
                        "UpdatePrivateIp",
                    ),
                    None => (
                        Method::POST,
                        "/privateIps".to_string(),
                        json!({ "vnicId": vnic, "ipAddress": it.ip.to_string() }),
                        "CreatePrivateIp",
                    ),
                };
                self.writes.take().await;
                let r = self
                    .call(method, &path, &[], Some(&body), None, step, Some(&it.fence))
                    .await?;
                if r.status.is_success() {
                    Ok(())
                } else {
                    Err(classify(step, &r))
                }
            });
        }
        let mut results = futures_util::future::join_all(calls).await.into_iter();
        for o in out.iter_mut() {
            if o.is_none() {
                *o = results.next();
            }
        }
        out.into_iter().map(|o| o.unwrap_or(Ok(()))).collect()
    }

    /// One listing of the subnet, then one `DeletePrivateIp` per address on our VNIC, all in
    /// flight at once under the budget.
    async fn release_many(&self, items: &[Item]) -> Vec<Result<(), CaptureError>> {
        if items.len() == 1 {
            return vec![self.release(items[0].ip, &items[0].fence).await];
        }
        let by_ip = match self.subnet_ips().await {
            Ok(m) => m,
            Err(e) => return items.iter().map(|_| Err(e.clone())).collect(),
        };
        let mut out: Vec<Option<Result<(), CaptureError>>> = vec![None; items.len()];
        let mut calls = Vec::new();
        for (i, it) in items.iter().enumerate() {
            match by_ip.get(&it.ip) {
                Some(p) if p.vnic.as_deref().is_some_and(|v| self.is_own(v)) => {
                    if p.primary {
                        out[i] = Some(Err(self.primary_error(
                            it.ip,
                            &self.vnic_id,
                            "DeletePrivateIp",
                        )));
                        continue;
                    }
                    let id = p.id.clone();
                    calls.push(async move {
                        let step = "DeletePrivateIp";
                        self.writes.take().await;
                        let r = self
                            .call(
                                Method::DELETE,
                                &format!("/privateIps/{id}"),
                                &[],
                                None,
                                None,
                                step,
                                Some(&it.fence),
                            )
                            .await?;
                        if r.status.is_success() || r.status == StatusCode::NOT_FOUND {
                            Ok(())
                        } else {
                            Err(classify(step, &r))
                        }
                    });
                }
                // Not on our VNIC: nothing to release.
                _ => out[i] = Some(Ok(())),
            }
        }
        let mut results = futures_util::future::join_all(calls).await.into_iter();
        for o in out.iter_mut() {
            if o.is_none() {
                *o = results.next();
            }
        }
        out.into_iter().map(|o| o.unwrap_or(Ok(()))).collect()
    }

    async fn held(&self) -> Result<Option<Vec<Ipv4Addr>>, CaptureError> {
        let mut out = Vec::new();
        for vnic in self.own_vnics() {
            // Bounded: a VNIC has at most a few dozen private IPs.
            self.walk_private_ips(
                ("vnicId", vnic.as_str()),
                100,
                "ListPrivateIps",
                "too many pages of private IPs",
                |items| {
                    out.extend(
                        items
                            .iter()
                            .filter(|v| {
                                !v.get("isPrimary").and_then(Value::as_bool).unwrap_or(false)
                            })
                            .filter_map(|v| v.get("ipAddress")?.as_str()?.parse::<Ipv4Addr>().ok()),
                    );
                    false
                },
            )
            .await?;
        }
        Ok(Some(out))
    }
}
