//! Azure: ARM network interface resources (list a resource group's or subscription's NICs with
//! `nextLink` paging, GET / PUT NIC, long-running operation status) and the managed identity
//! token endpoint of the instance metadata service.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant, UNIX_EPOCH};

use hyper::{Method, Response, StatusCode};
use serde_json::{json, Value};

use crate::faults::FaultKind;
use crate::limits::{Admission, Class};
use crate::server::{json, Body, Emulator, Gate, Outcome, Req};
use crate::state::{ChangeError, Nic, State};
use crate::stats::CallResult;

const NIC_TYPE: &str = "Microsoft.Network/networkInterfaces";
const MAX_OPERATIONS: usize = 100_000;

/// An ARM error: status, code, message, optional Retry-After seconds.
struct ArmError {
    status: StatusCode,
    code: &'static str,
    message: String,
    retry_after: Option<u64>,
}

fn arm(status: StatusCode, code: &'static str, message: impl Into<String>) -> ArmError {
    ArmError {
        status,
        code,
        message: message.into(),
        retry_after: None,
    }
}

fn error_response(e: &ArmError, request_id: &str) -> Response<Body> {
    let mut r = json(
        e.status,
        &json!({ "error": { "code": e.code, "message": e.message, "details": [] } }),
    );
    let h = r.headers_mut();
    if let Ok(v) = request_id.parse() {
        h.insert("x-ms-request-id", v);
    }
    if let Some(s) = e.retry_after {
        h.insert("retry-after", s.into());
    }
    r
}

fn fault_error(kind: FaultKind) -> ArmError {
    match kind {
        FaultKind::Throttle => ArmError {
            status: StatusCode::TOO_MANY_REQUESTS,
            code: "RetryableError",
            message: "A retryable error occurred.".to_string(),
            retry_after: Some(1),
        },
        FaultKind::Denied => arm(
            StatusCode::FORBIDDEN,
            "AuthorizationFailed",
            "The client does not have authorization to perform the action.",
        ),
        _ => arm(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalServerError",
            "An error occurred.",
        ),
    }
}

fn query_param(req: &Req, name: &str) -> Option<String> {
    form_urlencoded::parse(req.query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// Serves `/subscriptions/...` (ARM: metered per subscription and counted) and
/// `/metadata/identity/oauth2/token` (managed identity: neither).
pub async fn handle(emulator: &Emulator, req: &Req) -> Outcome {
    let request_id = emulator.request_id();
    let path = req.path.to_ascii_lowercase();
    if path.starts_with("/metadata/") {
        return match emulator.fault_gate("azure", "GetToken").await {
            Gate::Proceed => Outcome::Reply(token(emulator, req)),
            Gate::Fail(kind) => Outcome::Reply(error_response(&fault_error(kind), &request_id)),
            Gate::Timeout { apply, hold } => {
                if apply {
                    let _ = token(emulator, req);
                }
                tokio::time::sleep(hold).await;
                Outcome::Drop
            }
        };
    }
    let action = if path.contains("/operations/") {
        "GetOperation"
    } else if req.method == Method::GET && is_nic_collection(&path) {
        "ListNetworkInterfaces"
    } else if req.method == Method::PUT {
        "PutNetworkInterface"
    } else if req.method == Method::DELETE {
        "DeleteNetworkInterface"
    } else {
        "GetNetworkInterface"
    };
    let (outcome, result) = serve_arm(emulator, req, action, &request_id).await;
    emulator.record("azure", action, result);
    outcome
}

/// The principal named in throttling messages (the managed identity's client id).
const ACTOR: &str = "00000000-0000-0000-0000-000000000000";

/// ARM's subscription rate limit a request counts against: its bucket, the response header
/// reporting what is left of it, and the word ARM's throttling message uses.
fn rate_class(method: &Method) -> (Class, &'static str, &'static str) {
    match *method {
        Method::GET | Method::HEAD => (
            Class::AzureReads,
            "x-ms-ratelimit-remaining-subscription-reads",
            "read",
        ),
        Method::DELETE => (
            Class::AzureDeletes,
            "x-ms-ratelimit-remaining-subscription-deletes",
            "delete",
        ),
        _ => (
            Class::AzureWrites,
            "x-ms-ratelimit-remaining-subscription-writes",
            "write",
        ),
    }
}

async fn serve_arm(
    emulator: &Emulator,
    req: &Req,
    action: &'static str,
    request_id: &str,
) -> (Outcome, CallResult) {
    let subscription = req.path.split('/').nth(2).unwrap_or("");
    let (class, header, kind) = rate_class(&req.method);
    // A call takes its token before anything else is checked; refused, it is not executed.
    let remaining = match emulator.admit(class, &subscription.to_ascii_lowercase()) {
        Admission::Unmetered => None,
        Admission::Admitted { remaining } => Some(remaining),
        Admission::Throttled { retry_after_secs } => {
            let e = ArmError {
                status: StatusCode::TOO_MANY_REQUESTS,
                code: "SubscriptionRequestsThrottled",
                message: format!(
                    "Number of '{kind}' requests for subscription '{subscription}' actor '{ACTOR}' exceeded. Please try again after '{retry_after_secs}' seconds after additional tokens are available. Refer to https://aka.ms/arm-throttling for additional information."
                ),
                retry_after: Some(retry_after_secs),
            };
            log::info!("azure {action}: throttled ({kind}s of {subscription})");
            let mut r = error_response(&e, request_id);
            r.headers_mut().insert(header, 0u64.into());
            return (Outcome::Reply(r), CallResult::Throttled);
        }
    };
    // Every metered answer reports what is left of its bucket.
    let report = |mut r: Response<Body>| {
        if let Some(n) = remaining {
            r.headers_mut().insert(header, n.into());
        }
        r
    };
    let run = || -> Response<Body> {
        match arm_request(emulator, req, action) {
            Ok(r) => r,
            Err(e) => {
                log::info!("azure {action}: {} {}", e.code, e.message);
                error_response(&e, request_id)
            }
        }
    };
    match emulator.fault_gate("azure", action).await {
        Gate::Proceed => {
            let r = report(run());
            let result = CallResult::of(r.status());
            (Outcome::Reply(r), result)
        }
        Gate::Fail(kind) => {
            let r = report(error_response(&fault_error(kind), request_id));
            let result = if kind == FaultKind::Throttle {
                CallResult::Throttled
            } else {
                CallResult::Failed
            };
            (Outcome::Reply(r), result)
        }
        Gate::Timeout { apply, hold } => {
            if apply {
                let _ = run();
            }
            tokio::time::sleep(hold).await;
            (Outcome::Drop, CallResult::Failed)
        }
    }
}

fn token(emulator: &Emulator, req: &Req) -> Response<Body> {
    let err = |status: StatusCode, e: &str, d: &str| {
        json(status, &json!({ "error": e, "error_description": d }))
    };
    if req.method != Method::GET {
        return err(
            StatusCode::METHOD_NOT_ALLOWED,
            "invalid_request",
            "GET only",
        );
    }
    if req.path != "/metadata/identity/oauth2/token" {
        return err(StatusCode::NOT_FOUND, "invalid_request", "unknown path");
    }
    if !req
        .header("metadata")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    {
        return err(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Required metadata header not specified",
        );
    }
    if query_param(req, "api-version").is_none() {
        return err(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Required query variable 'api-version' is missing",
        );
    }
    let Some(resource) = query_param(req, "resource") else {
        return err(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Required query variable 'resource' is missing",
        );
    };
    let now = emulator
        .now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    json(
        StatusCode::OK,
        &json!({
            "access_token": format!("emulator.{:032x}", emulator.random128()),
            "client_id": "00000000-0000-0000-0000-000000000000",
            "expires_in": "86399",
            "expires_on": (now + 86_399).to_string(),
            "ext_expires_in": "86399",
            "not_before": now.to_string(),
            "resource": resource,
            "token_type": "Bearer",
        }),
    )
}

fn arm_request(emulator: &Emulator, req: &Req, action: &str) -> Result<Response<Body>, ArmError> {
    let bearer = req
        .header("authorization")
        .and_then(|a| a.strip_prefix("Bearer "))
        .is_some_and(|t| !t.trim().is_empty());
    if !bearer {
        return Err(arm(
            StatusCode::UNAUTHORIZED,
            "AuthenticationFailed",
            "Authentication failed. The 'Authorization' header is missing or malformed.",
        ));
    }
    if query_param(req, "api-version").is_none() {
        return Err(arm(
            StatusCode::BAD_REQUEST,
            "MissingApiVersionParameter",
            "The api-version query parameter (?api-version=) is required for all requests.",
        ));
    }
    if req.too_large {
        return Err(arm(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestEntityTooLarge",
            "The request body is too large.",
        ));
    }
    match action {
        "GetOperation" => operation(emulator, req),
        "ListNetworkInterfaces" => list_nics(emulator, req),
        "PutNetworkInterface" => put_nic(emulator, req),
        _ if req.method == Method::GET => get_nic(emulator, req),
        _ => Err(arm(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            format!("The HTTP method {} is not supported", req.method),
        )),
    }
}

/// `/subscriptions/S[/resourceGroups/G]/providers/Microsoft.Network/networkInterfaces` (lower
/// case): a NIC collection.
fn is_nic_collection(path: &str) -> bool {
    let Some(scope) = path
        .trim_end_matches('/')
        .strip_suffix("/providers/microsoft.network/networkinterfaces")
    else {
        return false;
    };
    let parts: Vec<&str> = scope.split('/').collect();
    match parts.as_slice() {
        ["", "subscriptions", s] => !s.is_empty(),
        ["", "subscriptions", s, "resourcegroups", g] => !s.is_empty() && !g.is_empty(),
        _ => false,
    }
}

/// Lists the NICs of a resource group or subscription: `{"value": [...], "nextLink": url}`, a
/// page of `azure_list_page_size` at a time (`$skiptoken` carries the position).
fn list_nics(emulator: &Emulator, req: &Req) -> Result<Response<Body>, ArmError> {
    let path = req.path.trim_end_matches('/');
    let lower = path.to_ascii_lowercase();
    let scope = lower
        .strip_suffix("/providers/microsoft.network/networkinterfaces")
        .unwrap_or("")
        .to_string();
    let skip = match query_param(req, "$skiptoken") {
        None => 0,
        Some(t) => t
            .parse::<usize>()
            .map_err(|_| bad_request(format!("The $skiptoken {t} is invalid.")))?,
    };
    let mut state = emulator.state();
    let now = Instant::now();
    let page = state.azure_list_page_size.max(1);
    let ids: Vec<String> = state
        .target()
        .nics
        .values()
        .filter(|n| {
            n.provider == "azure" && n.id.to_ascii_lowercase().starts_with(&format!("{scope}/"))
        })
        .map(|n| n.id.clone())
        .collect();
    let mut value = Vec::new();
    for id in ids.iter().skip(skip).take(page) {
        let busy = state.busy(now, id);
        if let Some(n) = find_nic(&state, id) {
            value.push(nic_json(
                &state,
                n,
                if busy { "Updating" } else { "Succeeded" },
            ));
        }
    }
    let mut body = json!({ "value": value });
    if skip + page < ids.len() {
        let host = req.header("host").unwrap_or("127.0.0.1");
        let api = query_param(req, "api-version").unwrap_or_default();
        body["nextLink"] = json!(format!(
            "http://{host}{path}?api-version={api}&$skiptoken={}",
            skip + page
        ));
    }
    Ok(json(StatusCode::OK, &body))
}

/// The NIC whose ARM id is the request path (case-insensitive, as ARM ids are).
fn find_nic<'a>(state: &'a State, path: &str) -> Option<&'a Nic> {
    state
        .target()
        .nics
        .values()
        .find(|n| n.provider == "azure" && n.id.eq_ignore_ascii_case(path))
}

fn not_found(path: &str) -> ArmError {
    let name = path.rsplit('/').next().unwrap_or("");
    arm(
        StatusCode::NOT_FOUND,
        "ResourceNotFound",
        format!("The Resource '{NIC_TYPE}/{name}' under resource group was not found."),
    )
}

fn etag(n: &Nic) -> String {
    format!("W/\"{}\"", n.etag())
}

fn nic_json(state: &State, n: &Nic, provisioning: &str) -> Value {
    let name = n.id.rsplit('/').next().unwrap_or("");
    let e = etag(n);
    let cfg = |ip: Ipv4Addr, cname: &str, primary: bool| {
        json!({
            "name": cname,
            "id": format!("{}/ipConfigurations/{cname}", n.id),
            "etag": e,
            "type": "Microsoft.Network/networkInterfaces/ipConfigurations",
            "properties": {
                "provisioningState": provisioning,
                "privateIPAddress": ip.to_string(),
                "privateIPAllocationMethod": "Static",
                "subnet": { "id": n.subnet },
                "primary": primary,
                "privateIPAddressVersion": "IPv4",
            }
        })
    };
    let mut cfgs = vec![cfg(n.primary_ip, &primary_name(n), true)];
    for ip in &n.secondary_ips {
        cfgs.push(cfg(*ip, &n.name_of(*ip), false));
    }
    let mut props = json!({
        "provisioningState": provisioning,
        "resourceGuid": format!("{:016x}", crate::state::fnv1a(n.id.as_bytes())),
        "ipConfigurations": cfgs,
        "macAddress": n.mac.replace(':', "-").to_ascii_uppercase(),
        "enableAcceleratedNetworking": false,
        "enableIPForwarding": true,
        "primary": n.device_index == 0,
        "nicType": "Standard",
    });
    if let Some(vm) = &n.instance {
        props["virtualMachine"] = json!({ "id": vm });
    }
    json!({
        "name": name,
        "id": n.id,
        "etag": e,
        "type": NIC_TYPE,
        "location": state.azure_location,
        "properties": props,
    })
}

/// The primary ipConfiguration's name (Azure's default `ipconfig1`).
fn primary_name(n: &Nic) -> String {
    n.names
        .get(&n.primary_ip)
        .cloned()
        .unwrap_or_else(|| "ipconfig1".to_string())
}

fn get_nic(emulator: &Emulator, req: &Req) -> Result<Response<Body>, ArmError> {
    let mut state = emulator.state();
    let now = Instant::now();
    let id = find_nic(&state, &req.path)
        .map(|n| n.id.clone())
        .ok_or_else(|| not_found(&req.path))?;
    let busy = state.busy(now, &id);
    let n = find_nic(&state, &id).expect("found above");
    let mut r = json(
        StatusCode::OK,
        &nic_json(&state, n, if busy { "Updating" } else { "Succeeded" }),
    );
    if let Ok(v) = etag(n).parse() {
        r.headers_mut().insert("etag", v);
    }
    Ok(r)
}

fn bad_request(message: impl Into<String>) -> ArmError {
    arm(StatusCode::BAD_REQUEST, "InvalidRequestFormat", message)
}

/// More ipConfigurations than a NIC may have (`azure_max_ip_configs`, Azure's 256 private
/// addresses per NIC). The code is the emulator's choice in the Network provider's
/// `...CountLimitReached` style (ARM's real code for this case is not documented).
fn too_many_configs(nic: &str, limit: usize) -> ArmError {
    arm(
        StatusCode::BAD_REQUEST,
        "IpConfigurationCountLimitReached",
        format!("Network interface {nic} cannot have more than {limit} IP configurations."),
    )
}

fn put_nic(emulator: &Emulator, req: &Req) -> Result<Response<Body>, ArmError> {
    let body: Value = serde_json::from_slice(&req.body)
        .map_err(|e| bad_request(format!("Cannot parse the request: {e}")))?;
    let cfgs = body
        .pointer("/properties/ipConfigurations")
        .and_then(Value::as_array)
        .ok_or_else(|| bad_request("properties.ipConfigurations is required"))?;
    let mut state = emulator.state();
    let now = Instant::now();
    let nic = find_nic(&state, &req.path)
        .cloned()
        .ok_or_else(|| not_found(&req.path))?;
    if let Some(m) = req.header("if-match") {
        if m != "*" && m != etag(&nic) {
            return Err(arm(
                StatusCode::PRECONDITION_FAILED,
                "PreconditionFailed",
                format!(
                    "The etag {m} does not match the current etag {}",
                    etag(&nic)
                ),
            ));
        }
    }
    if cfgs.is_empty() {
        return Err(bad_request(format!(
            "Network interface {} must have one or more IP configurations.",
            nic.id
        )));
    }
    // Parse every configuration first: (name, address or None for Dynamic, primary).
    let mut parsed: Vec<(String, Option<Ipv4Addr>, bool)> = Vec::new();
    for c in cfgs {
        let name = c
            .get("name")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty() && s.len() <= 80)
            .ok_or_else(|| bad_request("Every ipConfiguration needs a name"))?
            .to_string();
        if parsed.iter().any(|(n, _, _)| n.eq_ignore_ascii_case(&name)) {
            return Err(bad_request(format!(
                "Duplicate ipConfiguration name {name}"
            )));
        }
        let props = c.get("properties").cloned().unwrap_or(Value::Null);
        let primary = props
            .get("primary")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let method = props
            .get("privateIPAllocationMethod")
            .and_then(Value::as_str)
            .unwrap_or("Dynamic");
        let ip = match props.get("privateIPAddress") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.parse::<Ipv4Addr>().map_err(|_| {
                arm(
                    StatusCode::BAD_REQUEST,
                    "PrivateIPAddressInvalid",
                    format!("Private static IP address {s} is invalid."),
                )
            })?),
            Some(other) => return Err(bad_request(format!("Bad privateIPAddress {other}"))),
        };
        if ip.is_none() && method.eq_ignore_ascii_case("static") {
            return Err(arm(
                StatusCode::BAD_REQUEST,
                "PrivateIPAddressMissing",
                format!(
                    "Private IP address is required when privateIPAllocationMethod is Static in IP configuration {}/ipConfigurations/{name}.",
                    nic.id
                ),
            ));
        }
        if let Some(sub) = props.pointer("/subnet/id").and_then(Value::as_str) {
            if !sub.eq_ignore_ascii_case(&nic.subnet) {
                return Err(bad_request(format!(
                    "ipConfiguration {name}: all IP configurations must use subnet {}",
                    nic.subnet
                )));
            }
        }
        parsed.push((name, ip, primary));
    }
    if let Some(limit) = state.address_limit(&nic).filter(|l| parsed.len() > *l) {
        return Err(too_many_configs(&nic.id, limit));
    }
    let primaries: Vec<&(String, Option<Ipv4Addr>, bool)> = parsed.iter().filter(|p| p.2).collect();
    if primaries.len() != 1 {
        return Err(bad_request(format!(
            "Network interface {} must have exactly one primary IP configuration.",
            nic.id
        )));
    }
    if primaries[0].1.is_some_and(|ip| ip != nic.primary_ip) {
        return Err(bad_request(
            "The emulator does not change the primary IP configuration's address",
        ));
    }
    if state.busy(now, &nic.id) {
        return Err(ArmError {
            status: StatusCode::TOO_MANY_REQUESTS,
            code: "RetryableErrorDueToAnotherOperation",
            message: format!(
                "Operation on {} is waiting for another operation on the same resource to complete.",
                nic.id
            ),
            retry_after: Some(1),
        });
    }
    // Dynamic secondaries get free addresses.
    let dynamic = parsed.iter().filter(|p| !p.2 && p.1.is_none()).count();
    let mut free = if dynamic > 0 {
        state
            .free_addresses(&nic.id, dynamic + parsed.len())
            .ok()
            .flatten()
            .unwrap_or_default()
    } else {
        Vec::new()
    };
    free.retain(|ip| !parsed.iter().any(|p| p.1 == Some(*ip)));
    let mut secondaries = Vec::new();
    for (name, ip, primary) in &parsed {
        if *primary {
            continue;
        }
        let ip = match ip {
            Some(ip) => *ip,
            None if !free.is_empty() => free.remove(0),
            None => {
                return Err(arm(
                    StatusCode::BAD_REQUEST,
                    "SubnetIsFull",
                    format!("Subnet {} has no free addresses.", nic.subnet),
                ))
            }
        };
        if ip == nic.primary_ip || secondaries.iter().any(|(x, _)| *x == ip) {
            return Err(bad_request(format!("Address {ip} is used twice")));
        }
        secondaries.push((ip, name.clone()));
    }
    let location = state.azure_location.clone();
    // The holder's ipConfiguration id, as Azure names it in PrivateIPAddressIsAllocated.
    let holder_config = |state: &State, holder: &str, ip: Ipv4Addr| -> String {
        match state
            .target()
            .nics
            .get(holder)
            .or_else(|| state.target().holder(ip))
        {
            Some(h) if h.primary_ip == ip => {
                format!("{}/ipConfigurations/{}", h.id, primary_name(h))
            }
            Some(h) => format!("{}/ipConfigurations/{}", h.id, h.name_of(ip)),
            None => holder.to_string(),
        }
    };
    let result = state.set_secondaries(now, &nic.id, &secondaries);
    let changed = result.map_err(|e| match e {
            ChangeError::InUse { ip, holder } => arm(
                StatusCode::BAD_REQUEST,
                "PrivateIPAddressIsAllocated",
                format!(
                    "IP configuration {}/ipConfigurations/{} is using the private IP address {ip} which is already allocated to resource {}.",
                    nic.id,
                    secondaries.iter().find(|s| s.0 == ip).map_or("", |s| s.1.as_str()),
                    holder_config(&state, &holder, ip)
                ),
            ),
            ChangeError::OutsideSubnet(ip) => arm(
                StatusCode::BAD_REQUEST,
                "PrivateIPAddressNotInSubnet",
                format!("Private static IP address {ip} does not belong to the range of subnet {}.", nic.subnet),
            ),
            ChangeError::LimitExceeded { limit, .. } => too_many_configs(&nic.id, limit),
            other => bad_request(format!("{other:?}")),
        })?;
    let n = find_nic(&state, &nic.id).expect("exists").clone();
    if !changed {
        return Ok(json(StatusCode::OK, &nic_json(&state, &n, "Succeeded")));
    }
    let done_at = state.last_visible_at().unwrap_or(now);
    drop(state);
    let op = format!("{:032x}", emulator.random128());
    {
        let mut ops = emulator.azure_ops.lock().unwrap_or_else(|e| e.into_inner());
        if ops.len() >= MAX_OPERATIONS {
            let horizon = now.checked_sub(Duration::from_secs(3600)).unwrap_or(now);
            ops.retain(|_, t| *t > horizon);
        }
        ops.insert(op.clone(), done_at);
    }
    let sub = req
        .path
        .split('/')
        .nth(2)
        .unwrap_or("00000000-0000-0000-0000-000000000000");
    let host = req.header("host").unwrap_or("127.0.0.1");
    let api = query_param(req, "api-version").unwrap_or_default();
    let url = format!(
        "http://{host}/subscriptions/{sub}/providers/Microsoft.Network/locations/{location}/operations/{op}?api-version={api}"
    );
    let state = emulator.state();
    let mut r = json(StatusCode::OK, &nic_json(&state, &n, "Updating"));
    let h = r.headers_mut();
    if let Ok(v) = url.parse() {
        h.insert("azure-asyncoperation", v);
    }
    h.insert("retry-after", 1u64.into());
    Ok(r)
}

fn operation(emulator: &Emulator, req: &Req) -> Result<Response<Body>, ArmError> {
    let id = req.path.rsplit('/').next().unwrap_or("");
    let done_at = emulator
        .azure_ops
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(id)
        .copied()
        .ok_or_else(|| {
            arm(
                StatusCode::NOT_FOUND,
                "OperationNotFound",
                format!("Operation {id} was not found."),
            )
        })?;
    // Settle so the holder view agrees with the operation's end.
    emulator.state().settle(Instant::now());
    if Instant::now() >= done_at {
        Ok(json(StatusCode::OK, &json!({ "status": "Succeeded" })))
    } else {
        let mut r = json(StatusCode::OK, &json!({ "status": "InProgress" }));
        r.headers_mut().insert("retry-after", 1u64.into());
        Ok(r)
    }
}
