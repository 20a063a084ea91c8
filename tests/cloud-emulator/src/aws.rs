//! The AWS EC2 query API subset: `AssignPrivateIpAddresses`, `UnassignPrivateIpAddresses`,
//! `DescribeNetworkInterfaces`, `DescribeInstanceTypes`, on EC2's wire format (form-encoded
//! `Action=...&Version=...`, XML in the `2016-11-15` namespace, EC2 error documents), each call
//! metered by its action's request token bucket.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::{Instant, UNIX_EPOCH};

use hyper::{Method, Response, StatusCode};

use crate::faults::FaultKind;
use crate::instance_types::{InstanceType, INSTANCE_TYPES};
use crate::limits::{Admission, Class};
use crate::server::{iso8601, reply, Body, Emulator, Gate, Outcome, Req};
use crate::state::{ChangeError, Nic, State};
use crate::stats::{CallResult, UNKNOWN_ACTION};

pub const XMLNS: &str = "http://ec2.amazonaws.com/doc/2016-11-15/";
/// Account id reported as owner.
pub const OWNER_ID: &str = "123456789012";

/// An EC2 error: HTTP status, code, message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ec2Error {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

fn bad(code: &'static str, message: impl Into<String>) -> Ec2Error {
    Ec2Error {
        status: StatusCode::BAD_REQUEST,
        code,
        message: message.into(),
    }
}

fn invalid(message: impl Into<String>) -> Ec2Error {
    bad("InvalidParameterValue", message)
}

fn missing(name: &str) -> Ec2Error {
    bad(
        "MissingParameter",
        format!("The request must contain the parameter {name}"),
    )
}

/// Escapes text for XML element content (never used in attributes; quotes stay literal, as
/// EC2 writes them).
pub fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

fn error_response(e: &Ec2Error, request_id: &str) -> Response<Body> {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>{}</Code><Message>{}</Message></Error></Errors><RequestID>{}</RequestID></Response>",
        e.code,
        xml_escape(&e.message),
        request_id
    );
    let mut r = reply(e.status, "text/xml;charset=UTF-8", body);
    r.headers_mut().insert(
        "x-amzn-requestid",
        request_id.parse().expect("request id is ASCII"),
    );
    r
}

fn ok_response(action: &str, request_id: &str, inner: &str) -> Response<Body> {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<{action}Response xmlns=\"{XMLNS}\">\n    <requestId>{request_id}</requestId>\n{inner}</{action}Response>"
    );
    let mut r = reply(StatusCode::OK, "text/xml;charset=UTF-8", body);
    r.headers_mut().insert(
        "x-amzn-requestid",
        request_id.parse().expect("request id is ASCII"),
    );
    r
}

/// The error answered for an injected fault.
pub fn fault_error(kind: FaultKind) -> Ec2Error {
    match kind {
        FaultKind::Throttle => Ec2Error {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: "RequestLimitExceeded",
            message: "Request limit exceeded.".to_string(),
        },
        FaultKind::Denied => Ec2Error {
            status: StatusCode::FORBIDDEN,
            code: "UnauthorizedOperation",
            message: "You are not authorized to perform this operation.".to_string(),
        },
        _ => Ec2Error {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: "InternalError",
            message: "An internal error has occurred".to_string(),
        },
    }
}

/// Query parameters (URL query plus form body), first value wins per name.
#[derive(Debug, Default)]
pub struct Params(BTreeMap<String, String>);

impl Params {
    pub fn parse(req: &Req) -> Params {
        let mut m = BTreeMap::new();
        let form = req
            .header("content-type")
            .map(|c| {
                c.to_ascii_lowercase()
                    .starts_with("application/x-www-form-urlencoded")
            })
            .unwrap_or(req.method == Method::POST);
        let body: &[u8] = if form { &req.body } else { b"" };
        for (k, v) in
            form_urlencoded::parse(req.query.as_bytes()).chain(form_urlencoded::parse(body))
        {
            m.entry(k.into_owned()).or_insert_with(|| v.into_owned());
        }
        Params(m)
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// True when the request names ids, a filter or a page: what keeps a describe out of
    /// AWS's smaller "unfiltered and unpaginated" bucket.
    fn narrowed(&self) -> bool {
        self.0.keys().any(|k| {
            k.starts_with("Filter.")
                || k.starts_with("NetworkInterfaceId.")
                || k == "MaxResults"
                || k == "NextToken"
        })
    }

    /// Values of `prefix.N` ordered by N (N >= 1); a bad index is an error.
    pub fn list(&self, prefix: &str) -> Result<Vec<&str>, Ec2Error> {
        let mut out = BTreeMap::new();
        let p = format!("{prefix}.");
        for (k, v) in self.0.range(p.clone()..) {
            let Some(rest) = k.strip_prefix(&p) else {
                break;
            };
            if rest.contains('.') {
                continue;
            }
            let n: u32 = rest
                .parse()
                .ok()
                .filter(|n| *n >= 1)
                .ok_or_else(|| invalid(format!("Invalid parameter index in {k}")))?;
            out.insert(n, v.as_str());
        }
        Ok(out.into_values().collect())
    }

    fn bool(&self, name: &str) -> Result<bool, Ec2Error> {
        match self.get(name) {
            None => Ok(false),
            Some(v) if v.eq_ignore_ascii_case("true") => Ok(true),
            Some(v) if v.eq_ignore_ascii_case("false") => Ok(false),
            Some(v) => Err(invalid(format!(
                "Invalid value '{v}' for {name}. Valid values: true, false"
            ))),
        }
    }

    /// `Filter.N.Name` / `Filter.N.Value.M`.
    fn filters(&self) -> Result<Vec<(String, Vec<String>)>, Ec2Error> {
        let mut by_index: BTreeMap<u32, (Option<String>, BTreeMap<u32, String>)> = BTreeMap::new();
        for (k, v) in self.0.range("Filter.".to_string()..) {
            let Some(rest) = k.strip_prefix("Filter.") else {
                break;
            };
            let mut parts = rest.split('.');
            let n: u32 = parts
                .next()
                .and_then(|n| n.parse().ok())
                .filter(|n| *n >= 1)
                .ok_or_else(|| invalid(format!("Invalid parameter {k}")))?;
            let entry = by_index.entry(n).or_default();
            match (parts.next(), parts.next(), parts.next()) {
                (Some("Name"), None, None) => entry.0 = Some(v.clone()),
                (Some("Value"), Some(m), None) => {
                    let m: u32 = m
                        .parse()
                        .ok()
                        .filter(|m| *m >= 1)
                        .ok_or_else(|| invalid(format!("Invalid parameter {k}")))?;
                    entry.1.insert(m, v.clone());
                }
                _ => {
                    return Err(bad(
                        "UnknownParameter",
                        format!("The parameter {k} is not recognized"),
                    ))
                }
            }
        }
        by_index
            .into_iter()
            .map(|(n, (name, values))| {
                let name = name.ok_or_else(|| missing(&format!("Filter.{n}.Name")))?;
                if values.is_empty() {
                    return Err(invalid(format!("The filter '{name}' requires a value")));
                }
                if values.len() > 200 || values.values().any(|v| v.len() > 1024) {
                    return Err(invalid(format!(
                        "The filter '{name}' has too many or too long values"
                    )));
                }
                Ok((name, values.into_values().collect()))
            })
            .collect()
    }
}

fn parse_ip(v: &str) -> Result<Ipv4Addr, Ec2Error> {
    v.parse()
        .map_err(|_| invalid(format!("Invalid value '{v}' for IP address")))
}

fn check_eni_id(id: &str) -> Result<(), Ec2Error> {
    let ok = id
        .strip_prefix("eni-")
        .is_some_and(|h| !h.is_empty() && h.chars().all(|c| c.is_ascii_alphanumeric()));
    if ok {
        Ok(())
    } else {
        Err(bad(
            "InvalidNetworkInterfaceId.Malformed",
            format!("Invalid id: \"{id}\" (expecting \"eni-...\")"),
        ))
    }
}

/// How far a SigV4 request's date may be from the emulator's clock (AWS: 15 minutes).
pub const MAX_DATE_SKEW_SECS: u64 = 15 * 60;

/// A SigV4 `X-Amz-Date` (`YYYYMMDDTHHMMSSZ`), or else an HTTP `Date`, as a time.
fn request_date(req: &Req) -> Option<std::time::SystemTime> {
    let Some(d) = req.header("x-amz-date") else {
        return req
            .header("date")
            .and_then(|d| httpdate::parse_http_date(d).ok());
    };
    let b = d.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let s = d.get(r)?;
        if s.bytes().all(|c| c.is_ascii_digit()) {
            s.parse().ok()
        } else {
            None
        }
    };
    let (y, m, day) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (h, min, sec) = (num(9..11)?, num(11..13)?, num(13..15)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&day) || h > 23 || min > 59 || sec > 60 {
        return None;
    }
    // Days from civil (Howard Hinnant), the inverse of `iso8601`.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = u64::try_from(days * 86_400 + h * 3600 + min * 60 + sec).ok()?;
    UNIX_EPOCH.checked_add(std::time::Duration::from_secs(secs))
}

/// Checks a SigV4 `Authorization` header: its shape (the signature itself is not verified) and
/// its date, `X-Amz-Date` (or `Date`), which must be within 15 minutes of the emulator's clock
/// (else 400 `RequestExpired`, EC2's answer to a skewed clock).
fn check_auth(emulator: &Emulator, req: &Req) -> Result<(), Ec2Error> {
    let Some(auth) = req.headers.get("authorization") else {
        return Ok(());
    };
    let ok = auth.to_str().ok().is_some_and(|a| {
        a.starts_with("AWS4-HMAC-SHA256 ")
            && a.contains("Credential=")
            && a.contains("SignedHeaders=")
            && a.contains("Signature=")
    });
    if !ok {
        return Err(bad(
            "IncompleteSignature",
            "Authorization header requires 'Credential', 'SignedHeaders' and 'Signature' (AWS4-HMAC-SHA256).",
        ));
    }
    if req.header("x-amz-date").is_none() && req.header("date").is_none() {
        return Err(bad(
            "IncompleteSignature",
            "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.",
        ));
    }
    let date = request_date(req).ok_or_else(|| {
        bad(
            "IncompleteSignature",
            "Date must be in ISO-8601 'basic format' (YYYYMMDD'T'HHMMSS'Z') in X-Amz-Date, or an HTTP date in Date.",
        )
    })?;
    let now = emulator.now();
    let skew = now
        .duration_since(date)
        .unwrap_or_else(|e| e.duration())
        .as_secs();
    if skew > MAX_DATE_SKEW_SECS {
        log::info!("aws: request refused, its date is {skew}s off the emulator's clock");
        return Err(bad("RequestExpired", "Request has expired."));
    }
    Ok(())
}

/// The actions served.
const ACTIONS: &[&str] = &[
    "AssignPrivateIpAddresses",
    "UnassignPrivateIpAddresses",
    "DescribeNetworkInterfaces",
    "DescribeInstanceTypes",
];

/// The request token bucket a call draws from, and its scope. AWS meters each action on its
/// own; a `DescribeNetworkInterfaces` without ids, filter or page draws from the smaller
/// "unfiltered and unpaginated" bucket.
fn bucket(action: &'static str, params: &Params) -> (Class, &'static str) {
    match action {
        "AssignPrivateIpAddresses" => (Class::AwsAssign, ""),
        "UnassignPrivateIpAddresses" => (Class::AwsUnassign, ""),
        "DescribeNetworkInterfaces" if !params.narrowed() => (Class::AwsDescribeUnfiltered, ""),
        _ => (Class::AwsDescribe, action),
    }
}

/// Serves one EC2 query API request and counts it.
pub async fn handle(emulator: &Emulator, req: &Req) -> Outcome {
    let params = Params::parse(req);
    let action = ACTIONS
        .iter()
        .copied()
        .find(|a| params.get("Action") == Some(*a));
    let (outcome, result) = serve(emulator, req, &params, action).await;
    emulator.record("aws", action.unwrap_or(UNKNOWN_ACTION), result);
    outcome
}

fn answered(r: Response<Body>) -> (Outcome, CallResult) {
    let result = CallResult::of(r.status());
    (Outcome::Reply(r), result)
}

async fn serve(
    emulator: &Emulator,
    req: &Req,
    params: &Params,
    action: Option<&'static str>,
) -> (Outcome, CallResult) {
    let request_id = emulator.request_id();
    if req.method != Method::POST && req.method != Method::GET {
        return answered(error_response(
            &bad(
                "InvalidAction",
                format!("The HTTP method {} is not supported", req.method),
            ),
            &request_id,
        ));
    }
    if req.too_large {
        return answered(error_response(
            &bad("RequestEntityTooLarge", "Request body too large"),
            &request_id,
        ));
    }
    // A call takes its token before anything else is checked; refused, it is not executed.
    if let Some(a) = action {
        let (class, scope) = bucket(a, params);
        if let Admission::Throttled { .. } = emulator.admit(class, scope) {
            log::info!("{a}: throttled by its request token bucket");
            let r = error_response(&fault_error(FaultKind::Throttle), &request_id);
            return (Outcome::Reply(r), CallResult::Throttled);
        }
    }
    let given = params.get("Action").unwrap_or("");
    let pre = check_auth(emulator, req).and_then(|_| {
        if given.is_empty() {
            return Err(bad(
                "MissingAction",
                "The request must contain the parameter Action",
            ));
        }
        let Some(action) = action else {
            return Err(bad(
                "InvalidAction",
                format!("The action {given} is not valid for this web service."),
            ));
        };
        if params.get("Version").is_none() {
            return Err(missing("Version"));
        }
        Ok(action)
    });
    let action = match pre {
        Ok(a) => a,
        Err(e) => return answered(error_response(&e, &request_id)),
    };
    match emulator.fault_gate("aws", action).await {
        Gate::Proceed => answered(run(emulator, action, params, &request_id)),
        Gate::Fail(kind) => {
            let r = error_response(&fault_error(kind), &request_id);
            let result = if kind == FaultKind::Throttle {
                CallResult::Throttled
            } else {
                CallResult::Failed
            };
            (Outcome::Reply(r), result)
        }
        Gate::Timeout { apply, hold } => {
            if apply {
                let _ = run(emulator, action, params, &request_id);
            }
            tokio::time::sleep(hold).await;
            (Outcome::Drop, CallResult::Failed)
        }
    }
}

fn run(emulator: &Emulator, action: &str, params: &Params, request_id: &str) -> Response<Body> {
    let result = (|| {
        if params.bool("DryRun")? {
            // Permissions are not modelled: a dry run would always have succeeded.
            return Err(Ec2Error {
                status: StatusCode::PRECONDITION_FAILED,
                code: "DryRunOperation",
                message: "Request would have succeeded, but DryRun flag is set.".to_string(),
            });
        }
        let mut state = emulator.state();
        match action {
            "AssignPrivateIpAddresses" => assign(&mut state, params),
            "UnassignPrivateIpAddresses" => unassign(&mut state, params),
            "DescribeInstanceTypes" => describe_instance_types(params),
            _ => describe(&mut state, params, emulator),
        }
    })();
    match result {
        Ok(inner) => ok_response(action, request_id, &inner),
        Err(e) => {
            log::info!("{action}: {} {}", e.code, e.message);
            error_response(&e, request_id)
        }
    }
}

fn change_error(e: ChangeError) -> Ec2Error {
    match e {
        ChangeError::NicNotFound(id) => bad(
            "InvalidNetworkInterfaceID.NotFound",
            format!("The networkInterface ID '{id}' does not exist"),
        ),
        ChangeError::OutsideSubnet(ip) => invalid(format!(
            "Address {ip} does not fall within the subnet's address range"
        )),
        ChangeError::InUse { ip, holder: _ } | ChangeError::PrimaryElsewhere { ip, holder: _ } => {
            bad("PrivateIpAddressInUse", format!("Address {ip} is in use."))
        }
        ChangeError::IsPrimary(ip) => invalid(format!(
            "The primary private IP address {ip} cannot be unassigned"
        )),
        ChangeError::NotAssigned(ip) => invalid(format!(
            "Some of the specified addresses are not assigned to interface ({ip})"
        )),
        ChangeError::LimitExceeded { .. } => bad(
            "PrivateIpAddressLimitExceeded",
            "Number of private addresses will exceed limit.",
        ),
    }
}

fn eni_param(params: &Params) -> Result<String, Ec2Error> {
    let id = params
        .get("NetworkInterfaceId")
        .ok_or_else(|| missing("NetworkInterfaceId"))?;
    check_eni_id(id)?;
    Ok(id.to_string())
}

fn ip_list(params: &Params) -> Result<Vec<Ipv4Addr>, Ec2Error> {
    let mut ips = Vec::new();
    for v in params.list("PrivateIpAddress")? {
        let ip = parse_ip(v)?;
        if !ips.contains(&ip) {
            ips.push(ip);
        }
    }
    Ok(ips)
}

fn items(tag: &str, values: impl IntoIterator<Item = String>, indent: &str) -> String {
    let mut out = String::new();
    let mut any = false;
    for v in values {
        if !any {
            out.push_str(&format!("{indent}<{tag}>\n"));
            any = true;
        }
        out.push_str(&format!("{indent}    <item>{v}</item>\n"));
    }
    if any {
        out.push_str(&format!("{indent}</{tag}>\n"));
    } else {
        out.push_str(&format!("{indent}<{tag}/>\n"));
    }
    out
}

fn assign(state: &mut State, params: &Params) -> Result<String, Ec2Error> {
    let eni = eni_param(params)?;
    let allow = params.bool("AllowReassignment")?;
    let mut ips = ip_list(params)?;
    let count = match params.get("SecondaryPrivateIpAddressCount") {
        None => None,
        Some(v) => Some(
            v.parse::<u32>()
                .ok()
                .filter(|n| (1..=50).contains(n))
                .ok_or_else(|| {
                    invalid(format!(
                        "Invalid value '{v}' for SecondaryPrivateIpAddressCount"
                    ))
                })?,
        ),
    };
    match (ips.is_empty(), count) {
        (true, None) => {
            return Err(missing(
                "PrivateIpAddress or SecondaryPrivateIpAddressCount",
            ));
        }
        (false, Some(_)) => {
            return Err(bad(
                "InvalidParameterCombination",
                "Specify either PrivateIpAddresses or SecondaryPrivateIpAddressCount, not both",
            ))
        }
        (true, Some(n)) => {
            ips = state
                .free_addresses(&eni, n as usize)
                .map_err(change_error)?
                .ok_or_else(|| {
                    bad(
                        "InsufficientFreeAddressesInSubnet",
                        "The specified subnet does not have enough free addresses to satisfy the request.",
                    )
                })?;
        }
        (false, None) => {}
    }
    state
        .assign(Instant::now(), &eni, &ips, allow)
        .map_err(change_error)?;
    let set = items(
        "assignedPrivateIpAddressesSet",
        ips.iter()
            .map(|ip| format!("<privateIpAddress>{ip}</privateIpAddress>")),
        "    ",
    );
    Ok(format!(
        "    <return>true</return>\n    <networkInterfaceId>{}</networkInterfaceId>\n{set}    <assignedIpv4PrefixSet/>\n",
        xml_escape(&eni)
    ))
}

fn unassign(state: &mut State, params: &Params) -> Result<String, Ec2Error> {
    let eni = eni_param(params)?;
    let ips = ip_list(params)?;
    if ips.is_empty() {
        return Err(missing("PrivateIpAddress"));
    }
    state
        .unassign(Instant::now(), &eni, &ips)
        .map_err(change_error)?;
    Ok("    <return>true</return>\n".to_string())
}

/// EC2 filter wildcards: `*` any run, `?` one character. Iterative (linear space, no recursion),
/// so hostile patterns can neither overflow the stack nor backtrack exponentially.
fn glob(pattern: &str, value: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let v: Vec<char> = value.chars().collect();
    let (mut pi, mut vi) = (0, 0);
    let mut star: Option<usize> = None;
    let mut mark = 0;
    while vi < v.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == v[vi]) {
            pi += 1;
            vi += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = vi;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            vi = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

const FILTERS: &[&str] = &[
    "network-interface-id",
    "addresses.private-ip-address",
    "addresses.primary",
    "private-ip-address",
    "attachment.instance-id",
    "attachment.device-index",
    "subnet-id",
    "vpc-id",
    "mac-address",
    "availability-zone",
    "status",
    "owner-id",
];

fn filter_values(state: &State, nic: &Nic, name: &str) -> Vec<String> {
    let subnet = state.subnets.get(&nic.subnet);
    match name {
        "network-interface-id" => vec![nic.id.clone()],
        "addresses.private-ip-address" => std::iter::once(nic.primary_ip)
            .chain(nic.secondary_ips.iter().copied())
            .map(|ip| ip.to_string())
            .collect(),
        "addresses.primary" => {
            let mut v = vec!["true".to_string()];
            if !nic.secondary_ips.is_empty() {
                v.push("false".to_string());
            }
            v
        }
        "private-ip-address" => vec![nic.primary_ip.to_string()],
        "attachment.instance-id" => nic.instance.iter().cloned().collect(),
        "attachment.device-index" => nic
            .instance
            .as_ref()
            .map(|_| nic.device_index.to_string())
            .into_iter()
            .collect(),
        "subnet-id" => vec![nic.subnet.clone()],
        "vpc-id" => subnet.map(|s| s.vpc.clone()).into_iter().collect(),
        "mac-address" => vec![nic.mac.clone()],
        "availability-zone" => subnet
            .map(|s| s.availability_zone.clone())
            .into_iter()
            .collect(),
        "status" => vec![if nic.instance.is_some() {
            "in-use"
        } else {
            "available"
        }
        .to_string()],
        "owner-id" => vec![OWNER_ID.to_string()],
        _ => Vec::new(),
    }
}

fn describe(state: &mut State, params: &Params, emulator: &Emulator) -> Result<String, Ec2Error> {
    let ids: Vec<String> = params
        .list("NetworkInterfaceId")?
        .into_iter()
        .map(str::to_string)
        .collect();
    for id in &ids {
        check_eni_id(id)?;
    }
    let filters = params.filters()?;
    for (name, _) in &filters {
        if !FILTERS.contains(&name.as_str()) {
            return Err(invalid(format!("The filter '{name}' is invalid")));
        }
    }
    let max_results = match params.get("MaxResults") {
        None => None,
        Some(v) => {
            if !ids.is_empty() {
                return Err(bad(
                    "InvalidParameterCombination",
                    "The parameter NetworkInterfaceIds cannot be used with the parameter MaxResults",
                ));
            }
            Some(
                v.parse::<usize>()
                    .ok()
                    .filter(|n| (5..=1000).contains(n))
                    .ok_or_else(|| {
                        invalid(format!(
                            "Value ( {v} ) for parameter maxResults is invalid. Expecting a value between 5 and 1000."
                        ))
                    })?,
            )
        }
    };
    let start = match params.get("NextToken") {
        None => 0,
        Some(t) => t
            .strip_prefix("emu-")
            .and_then(|n| n.parse::<usize>().ok())
            .ok_or_else(|| invalid(format!("Invalid value '{t}' for NextToken")))?,
    };
    state.settle(Instant::now());
    let view = state.visible(Instant::now()).clone();
    let missing_ids: Vec<&String> = ids
        .iter()
        .filter(|id| !view.nics.contains_key(*id))
        .collect();
    if !missing_ids.is_empty() {
        let list: Vec<&str> = missing_ids.iter().map(|s| s.as_str()).collect();
        return Err(bad(
            "InvalidNetworkInterfaceID.NotFound",
            format!(
                "The networkInterface ID '{}' does not exist",
                list.join(", ")
            ),
        ));
    }
    let matching: Vec<&Nic> = view
        .nics
        .values()
        .filter(|n| n.provider == "aws")
        .filter(|n| ids.is_empty() || ids.contains(&n.id))
        .filter(|n| {
            filters.iter().all(|(name, values)| {
                let have = filter_values(state, n, name);
                values.iter().any(|want| have.iter().any(|h| glob(want, h)))
            })
        })
        .collect();
    let end = max_results.map_or(matching.len(), |m| (start + m).min(matching.len()));
    let page = matching.get(start.min(matching.len())..end).unwrap_or(&[]);
    let mut out = String::new();
    if page.is_empty() {
        out.push_str("    <networkInterfaceSet/>\n");
    } else {
        out.push_str("    <networkInterfaceSet>\n");
        for n in page {
            out.push_str(&nic_xml(state, n, emulator));
        }
        out.push_str("    </networkInterfaceSet>\n");
    }
    if end < matching.len() {
        out.push_str(&format!("    <nextToken>emu-{end}</nextToken>\n"));
    }
    Ok(out)
}

/// `DescribeInstanceTypes`: `InstanceType.N` (absent: every known type), filter
/// `instance-type`, `MaxResults` (5-100) / `NextToken`.
fn describe_instance_types(params: &Params) -> Result<String, Ec2Error> {
    let names = params.list("InstanceType")?;
    let unknown: Vec<&str> = names
        .iter()
        .copied()
        .filter(|n| crate::instance_types::lookup(n).is_none())
        .collect();
    if !unknown.is_empty() {
        return Err(bad(
            "InvalidInstanceType",
            format!(
                "The following supplied instance types do not exist: [{}]",
                unknown.join(", ")
            ),
        ));
    }
    let filters = params.filters()?;
    if let Some((name, _)) = filters.iter().find(|(n, _)| n != "instance-type") {
        return Err(invalid(format!("The filter '{name}' is invalid")));
    }
    let max_results = match params.get("MaxResults") {
        None => None,
        Some(v) => Some(
            v.parse::<usize>()
                .ok()
                .filter(|n| (5..=100).contains(n))
                .ok_or_else(|| {
                    invalid(format!(
                        "Value ( {v} ) for parameter maxResults is invalid. Expecting a value between 5 and 100."
                    ))
                })?,
        ),
    };
    let start = match params.get("NextToken") {
        None => 0,
        Some(t) => t
            .strip_prefix("emu-")
            .and_then(|n| n.parse::<usize>().ok())
            .ok_or_else(|| invalid(format!("Invalid value '{t}' for NextToken")))?,
    };
    let matching: Vec<&InstanceType> = INSTANCE_TYPES
        .iter()
        .filter(|t| names.is_empty() || names.contains(&t.name))
        .filter(|t| {
            filters
                .iter()
                .all(|(_, values)| values.iter().any(|v| glob(v, t.name)))
        })
        .collect();
    let end = max_results.map_or(matching.len(), |m| (start + m).min(matching.len()));
    let page = matching.get(start.min(matching.len())..end).unwrap_or(&[]);
    let mut out = String::new();
    if page.is_empty() {
        out.push_str("    <instanceTypeSet/>\n");
    } else {
        out.push_str("    <instanceTypeSet>\n");
        for t in page {
            out.push_str(&instance_type_xml(t));
        }
        out.push_str("    </instanceTypeSet>\n");
    }
    if end < matching.len() {
        out.push_str(&format!("    <nextToken>emu-{end}</nextToken>\n"));
    }
    Ok(out)
}

/// One `instanceTypeSet` item as EC2 writes it (the fields the emulator models).
fn instance_type_xml(t: &InstanceType) -> String {
    let f = &t.traits;
    let perf = xml_escape(t.network_performance);
    let hypervisor = if f.bare_metal {
        String::new()
    } else {
        "            <hypervisor>nitro</hypervisor>\n".to_string()
    };
    format!(
        "        <item>
            <instanceType>{name}</instanceType>
            <currentGeneration>{current}</currentGeneration>
            <freeTierEligible>{free}</freeTierEligible>
            <supportedUsageClasses>
                <item>on-demand</item>
                <item>spot</item>
            </supportedUsageClasses>
            <supportedRootDeviceTypes>
                <item>ebs</item>
            </supportedRootDeviceTypes>
            <supportedVirtualizationTypes>
                <item>hvm</item>
            </supportedVirtualizationTypes>
            <bareMetal>{metal}</bareMetal>
{hypervisor}            <vCpuInfo>
                <defaultVCpus>{vcpus}</defaultVCpus>
            </vCpuInfo>
            <memoryInfo>
                <sizeInMiB>{memory}</sizeInMiB>
            </memoryInfo>
            <instanceStorageSupported>false</instanceStorageSupported>
            <networkInfo>
                <networkPerformance>{perf}</networkPerformance>
                <maximumNetworkInterfaces>{enis}</maximumNetworkInterfaces>
                <maximumNetworkCards>1</maximumNetworkCards>
                <defaultNetworkCardIndex>0</defaultNetworkCardIndex>
                <networkCards>
                    <item>
                        <networkCardIndex>0</networkCardIndex>
                        <networkPerformance>{perf}</networkPerformance>
                        <maximumNetworkInterfaces>{enis}</maximumNetworkInterfaces>
                        <interfaceTypeSet>
                            <item>interface</item>
                        </interfaceTypeSet>
                    </item>
                </networkCards>
                <ipv4AddressesPerInterface>{ipv4}</ipv4AddressesPerInterface>
                <ipv6AddressesPerInterface>{ipv6}</ipv6AddressesPerInterface>
                <ipv6Supported>true</ipv6Supported>
                <enaSupport>required</enaSupport>
                <efaSupported>{efa}</efaSupported>
                <encryptionInTransitSupported>{eit}</encryptionInTransitSupported>
            </networkInfo>
            <burstablePerformanceSupported>{burst}</burstablePerformanceSupported>
            <supportedInRegion>true</supportedInRegion>
        </item>
",
        name = t.name,
        current = f.current_generation,
        free = f.free_tier_eligible,
        metal = f.bare_metal,
        vcpus = t.default_vcpus,
        memory = t.memory_mib,
        enis = t.maximum_network_interfaces,
        ipv4 = t.ipv4_addresses_per_interface,
        ipv6 = t.ipv6_addresses_per_interface,
        efa = f.efa_supported,
        eit = f.encryption_in_transit,
        burst = f.burstable,
    )
}

fn nic_xml(state: &State, n: &Nic, emulator: &Emulator) -> String {
    let subnet = state.subnets.get(&n.subnet);
    let vpc = subnet.map_or("vpc-emulator", |s| s.vpc.as_str());
    let az = subnet.map_or("", |s| s.availability_zone.as_str());
    let e = xml_escape;
    let dns = |ip: Ipv4Addr| format!("ip-{}.ec2.internal", ip.to_string().replace('.', "-"));
    let mut x = String::new();
    x.push_str("        <item>\n");
    x.push_str(&format!(
        "            <networkInterfaceId>{}</networkInterfaceId>\n",
        e(&n.id)
    ));
    x.push_str(&format!(
        "            <subnetId>{}</subnetId>\n",
        e(&n.subnet)
    ));
    x.push_str(&format!("            <vpcId>{}</vpcId>\n", e(vpc)));
    x.push_str(&format!(
        "            <availabilityZone>{}</availabilityZone>\n",
        e(az)
    ));
    if n.description.is_empty() {
        x.push_str("            <description/>\n");
    } else {
        x.push_str(&format!(
            "            <description>{}</description>\n",
            e(&n.description)
        ));
    }
    x.push_str(&format!("            <ownerId>{OWNER_ID}</ownerId>\n"));
    x.push_str("            <requesterManaged>false</requesterManaged>\n");
    let status = if n.instance.is_some() {
        "in-use"
    } else {
        "available"
    };
    x.push_str(&format!("            <status>{status}</status>\n"));
    x.push_str(&format!(
        "            <macAddress>{}</macAddress>\n",
        e(&n.mac)
    ));
    x.push_str(&format!(
        "            <privateIpAddress>{}</privateIpAddress>\n",
        n.primary_ip
    ));
    x.push_str(&format!(
        "            <privateDnsName>{}</privateDnsName>\n",
        dns(n.primary_ip)
    ));
    x.push_str("            <sourceDestCheck>true</sourceDestCheck>\n");
    x.push_str("            <groupSet/>\n");
    if let Some(i) = &n.instance {
        x.push_str("            <attachment>\n");
        x.push_str(&format!(
            "                <attachmentId>eni-attach-{:016x}</attachmentId>\n",
            crate::state::fnv1a(n.id.as_bytes())
        ));
        x.push_str(&format!(
            "                <instanceId>{}</instanceId>\n",
            e(i)
        ));
        x.push_str(&format!(
            "                <instanceOwnerId>{OWNER_ID}</instanceOwnerId>\n"
        ));
        x.push_str(&format!(
            "                <deviceIndex>{}</deviceIndex>\n",
            n.device_index
        ));
        x.push_str("                <status>attached</status>\n");
        x.push_str(&format!(
            "                <attachTime>{}</attachTime>\n",
            iso8601(emulator.started)
        ));
        x.push_str(&format!(
            "                <deleteOnTermination>{}</deleteOnTermination>\n",
            n.device_index == 0
        ));
        x.push_str("            </attachment>\n");
    }
    x.push_str("            <tagSet/>\n");
    x.push_str("            <privateIpAddressesSet>\n");
    for (ip, primary) in
        std::iter::once((n.primary_ip, true)).chain(n.secondary_ips.iter().map(|ip| (*ip, false)))
    {
        x.push_str(&format!(
            "                <item>\n                    <privateIpAddress>{ip}</privateIpAddress>\n                    <privateDnsName>{}</privateDnsName>\n                    <primary>{primary}</primary>\n                </item>\n",
            dns(ip)
        ));
    }
    x.push_str("            </privateIpAddressesSet>\n");
    x.push_str("            <ipv6AddressesSet/>\n");
    x.push_str("            <interfaceType>interface</interfaceType>\n");
    x.push_str("        </item>\n");
    x
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globbing() {
        assert!(glob("10.0.1.*", "10.0.1.100"));
        assert!(glob("eni-?", "eni-a"));
        assert!(!glob("eni-?", "eni-ab"));
        assert!(glob("*", ""));
        assert!(!glob("a", "b"));
        assert!(glob("*1*0*", "10.0.1.100"));
        assert!(!glob("*x*", "10.0.1.100"));
        assert!(glob("a*b*c", "aXbYc"));
        assert!(!glob("a*b*c", "aXbY"));
        let hostile = "*a".repeat(50_000);
        assert!(!glob(&hostile, &"a".repeat(40_000)));
    }

    #[test]
    fn amz_dates() {
        let req = |d: &str| Req {
            method: Method::POST,
            path: "/".into(),
            query: String::new(),
            headers: [(
                hyper::header::HeaderName::from_static("x-amz-date"),
                d.parse().unwrap(),
            )]
            .into_iter()
            .collect(),
            body: Default::default(),
            too_large: false,
            peer: None,
        };
        let t = |d: &str| request_date(&req(d)).map(iso8601);
        assert_eq!(
            t("20240229T235959Z").as_deref(),
            Some("2024-02-29T23:59:59.000Z")
        );
        assert_eq!(
            t("19700101T000000Z").as_deref(),
            Some("1970-01-01T00:00:00.000Z")
        );
        assert_eq!(
            t("20261207T055000Z").as_deref(),
            Some("2026-12-07T05:50:00.000Z")
        );
        for bad in [
            "2024-02-29T23:59:59Z",
            "20241329T000000Z",
            "2024022XT000000Z",
            "x",
            "",
        ] {
            assert_eq!(t(bad), None, "{bad}");
        }
    }

    #[test]
    fn escaping() {
        assert_eq!(xml_escape("<a&'\">"), "&lt;a&amp;'\"&gt;");
    }
}
