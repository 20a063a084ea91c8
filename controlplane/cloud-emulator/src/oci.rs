//! OCI Core Services `privateIps` (API version 20160918): ListPrivateIps, GetPrivateIp,
//! UpdatePrivateIp (move to another VNIC, `if-match` etag), CreatePrivateIp, DeletePrivateIp.

use std::net::Ipv4Addr;
use std::time::Instant;

use hyper::{Method, Response, StatusCode};
use serde_json::{json, Value};

use crate::faults::FaultKind;
use crate::server::{iso8601, json, Body, Emulator, Gate, Outcome, Req};
use crate::state::{fnv1a, ChangeError, Nic, State};

const PREFIX: &str = "/20160918/privateIps";
const COMPARTMENT: &str = "ocid1.compartment.oc1..emulator";

struct OciError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

fn err(status: StatusCode, code: &'static str, message: impl Into<String>) -> OciError {
    OciError {
        status,
        code,
        message: message.into(),
    }
}

fn invalid(message: impl Into<String>) -> OciError {
    err(StatusCode::BAD_REQUEST, "InvalidParameter", message)
}

fn not_found(what: &str) -> OciError {
    err(
        StatusCode::NOT_FOUND,
        "NotAuthorizedOrNotFound",
        format!("Authorization failed or requested resource not found: {what}"),
    )
}

fn with_request_id(mut r: Response<Body>, request_id: &str) -> Response<Body> {
    if let Ok(v) = request_id.parse() {
        r.headers_mut().insert("opc-request-id", v);
    }
    r
}

fn error_response(e: &OciError, request_id: &str) -> Response<Body> {
    let mut r = json(e.status, &json!({ "code": e.code, "message": e.message }));
    if e.status == StatusCode::TOO_MANY_REQUESTS {
        r.headers_mut().insert("retry-after", 1u64.into());
    }
    with_request_id(r, request_id)
}

fn fault_error(kind: FaultKind) -> OciError {
    match kind {
        FaultKind::Throttle => err(
            StatusCode::TOO_MANY_REQUESTS,
            "TooManyRequests",
            "Too many requests for the tenancy",
        ),
        _ => err(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalServerError",
            "Internal error occurred",
        ),
    }
}

/// The OCID of the private IP object for `ip` in `subnet` (stable across moves).
pub fn private_ip_id(subnet: &str, ip: Ipv4Addr) -> String {
    let h = fnv1a(format!("{subnet}/{ip}").as_bytes());
    format!("ocid1.privateip.oc1..emu{h:016x}")
}

fn query_param(req: &Req, name: &str) -> Option<String> {
    form_urlencoded::parse(req.query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// Checks the shape of an OCI (draft-cavage) `Authorization: Signature ...` header.
fn check_auth(req: &Req) -> Result<(), OciError> {
    let ok = req.header("authorization").is_some_and(|a| {
        a.starts_with("Signature ")
            && a.contains("keyId=\"")
            && a.contains("signature=\"")
            && a.contains("headers=\"")
            && a.contains("algorithm=\"rsa-sha256\"")
    });
    if ok {
        Ok(())
    } else {
        Err(err(
            StatusCode::UNAUTHORIZED,
            "NotAuthenticated",
            "The required information to complete authentication was not provided or was incorrect.",
        ))
    }
}

/// Serves one `/20160918/privateIps` request.
pub async fn handle(emulator: &Emulator, req: &Req) -> Outcome {
    let request_id = emulator.request_id();
    let rest = req.path.strip_prefix(PREFIX).unwrap_or("");
    let id = rest.strip_prefix('/').filter(|s| !s.is_empty());
    let action = match (&req.method, id) {
        (&Method::GET, None) => "ListPrivateIps",
        (&Method::POST, None) => "CreatePrivateIp",
        (&Method::GET, Some(_)) => "GetPrivateIp",
        (&Method::PUT, Some(_)) => "UpdatePrivateIp",
        (&Method::DELETE, Some(_)) => "DeletePrivateIp",
        _ => "Unsupported",
    };
    let run = || -> Response<Body> {
        let result = check_auth(req).and_then(|_| {
            let under_prefix = req.path.starts_with(PREFIX)
                && (rest.is_empty() || (rest.starts_with('/') && !rest[1..].contains('/')));
            if !under_prefix {
                return Err(not_found(&req.path));
            }
            if req.too_large {
                return Err(invalid("The request body is too large"));
            }
            let mut state = emulator.state();
            match action {
                "ListPrivateIps" => list(&mut state, emulator, req),
                "CreatePrivateIp" => create(&mut state, emulator, req),
                "GetPrivateIp" => get(&mut state, emulator, id.unwrap_or("")),
                "UpdatePrivateIp" => update(&mut state, emulator, req, id.unwrap_or("")),
                "DeletePrivateIp" => delete(&mut state, req, id.unwrap_or("")),
                _ => Err(err(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "MethodNotAllowed",
                    format!("{} is not allowed on {}", req.method, req.path),
                )),
            }
        });
        match result {
            Ok(r) => with_request_id(r, &request_id),
            Err(e) => {
                log::info!("oci {action}: {} {}", e.code, e.message);
                error_response(&e, &request_id)
            }
        }
    };
    match emulator.fault_gate("oci", action).await {
        Gate::Proceed => Outcome::Reply(run()),
        Gate::Fail(kind) => Outcome::Reply(error_response(&fault_error(kind), &request_id)),
        Gate::Timeout { apply, hold } => {
            if apply {
                let _ = run();
            }
            tokio::time::sleep(hold).await;
            Outcome::Drop
        }
    }
}

/// Etag of a private IP: changes whenever it moves or its VNIC changes.
fn ip_etag(n: &Nic, ip: Ipv4Addr) -> String {
    format!("{:016x}", fnv1a(format!("{ip}/{}", n.etag()).as_bytes()))
}

fn private_ip_json(state: &State, emulator: &Emulator, n: &Nic, ip: Ipv4Addr) -> Value {
    let ad = state
        .subnets
        .get(&n.subnet)
        .map(|s| s.availability_zone.clone())
        .unwrap_or_default();
    json!({
        "availabilityDomain": ad,
        "compartmentId": COMPARTMENT,
        "definedTags": {},
        "displayName": format!("privateip{}", ip.to_string().replace('.', "")),
        "freeformTags": {},
        "hostnameLabel": null,
        "id": private_ip_id(&n.subnet, ip),
        "ipAddress": ip.to_string(),
        "isPrimary": n.primary_ip == ip,
        "subnetId": n.subnet,
        "timeCreated": iso8601(emulator.started),
        "vlanId": null,
        "vnicId": n.id,
    })
}

fn one(
    state: &State,
    emulator: &Emulator,
    n: &Nic,
    ip: Ipv4Addr,
    status: StatusCode,
) -> Response<Body> {
    let mut r = json(status, &private_ip_json(state, emulator, n, ip));
    if let Ok(v) = ip_etag(n, ip).parse() {
        r.headers_mut().insert("etag", v);
    }
    r
}

/// The (NIC, address) of a private IP OCID in the target view.
fn resolve(state: &State, id: &str) -> Option<(Nic, Ipv4Addr)> {
    state
        .target()
        .nics
        .values()
        .filter(|n| n.provider == "oci")
        .flat_map(|n| {
            std::iter::once(n.primary_ip)
                .chain(n.secondary_ips.iter().copied())
                .map(move |ip| (n, ip))
        })
        .find(|(n, ip)| private_ip_id(&n.subnet, *ip) == id)
        .map(|(n, ip)| (n.clone(), ip))
}

fn oci_nic<'a>(state: &'a State, vnic: &str) -> Option<&'a Nic> {
    state
        .target()
        .nics
        .get(vnic)
        .filter(|n| n.provider == "oci")
}

fn list(state: &mut State, emulator: &Emulator, req: &Req) -> Result<Response<Body>, OciError> {
    let ip = query_param(req, "ipAddress");
    let subnet = query_param(req, "subnetId");
    let vnic = query_param(req, "vnicId");
    if vnic.is_none() && subnet.is_none() {
        return Err(invalid(
            "Either vnicId, subnetId, or both ipAddress and subnetId must be specified",
        ));
    }
    let ip = match ip {
        None => None,
        Some(s) => Some(
            s.parse::<Ipv4Addr>()
                .map_err(|_| invalid(format!("Invalid ipAddress {s}")))?,
        ),
    };
    if let Some(v) = &vnic {
        if oci_nic(state, v).is_none() {
            return Err(not_found(v));
        }
    }
    state.settle(Instant::now());
    let mut items = Vec::new();
    for n in state.target().nics.values().filter(|n| n.provider == "oci") {
        if vnic.as_ref().is_some_and(|v| *v != n.id)
            || subnet.as_ref().is_some_and(|s| *s != n.subnet)
        {
            continue;
        }
        for a in std::iter::once(n.primary_ip).chain(n.secondary_ips.iter().copied()) {
            if ip.is_none_or(|ip| ip == a) {
                items.push(private_ip_json(state, emulator, n, a));
            }
        }
    }
    Ok(json(StatusCode::OK, &Value::Array(items)))
}

fn get(state: &mut State, emulator: &Emulator, id: &str) -> Result<Response<Body>, OciError> {
    let (n, ip) = resolve(state, id).ok_or_else(|| not_found(id))?;
    Ok(one(state, emulator, &n, ip, StatusCode::OK))
}

fn body(req: &Req) -> Result<Value, OciError> {
    let v: Value = serde_json::from_slice(&req.body)
        .map_err(|e| invalid(format!("Could not parse the request body: {e}")))?;
    if !v.is_object() {
        return Err(invalid("The request body must be a JSON object"));
    }
    Ok(v)
}

fn check_if_match(req: &Req, n: &Nic, ip: Ipv4Addr) -> Result<(), OciError> {
    match req.header("if-match") {
        Some(m) if m != ip_etag(n, ip) => Err(err(
            StatusCode::PRECONDITION_FAILED,
            "NoEtagMatch",
            format!("The if-match etag {m} does not match the current etag"),
        )),
        _ => Ok(()),
    }
}

fn update(
    state: &mut State,
    emulator: &Emulator,
    req: &Req,
    id: &str,
) -> Result<Response<Body>, OciError> {
    let b = body(req)?;
    let (n, ip) = resolve(state, id).ok_or_else(|| not_found(id))?;
    check_if_match(req, &n, ip)?;
    let Some(target) = b.get("vnicId") else {
        // displayName / tags only: nothing the emulator models changes.
        return Ok(one(state, emulator, &n, ip, StatusCode::OK));
    };
    let target = target
        .as_str()
        .ok_or_else(|| invalid("vnicId must be a string"))?
        .to_string();
    let to = oci_nic(state, &target)
        .cloned()
        .ok_or_else(|| not_found(&target))?;
    if n.primary_ip == ip {
        return Err(invalid("The primary private IP of a VNIC cannot be moved"));
    }
    if to.subnet != n.subnet {
        return Err(invalid(format!(
            "VNIC {target} is not in subnet {}; a private IP only moves within its subnet",
            n.subnet
        )));
    }
    if to.id != n.id {
        state
            .assign(Instant::now(), &to.id, &[ip], true)
            .map_err(change_error)?;
    }
    let moved = oci_nic(state, &to.id)
        .cloned()
        .ok_or_else(|| not_found(&to.id))?;
    Ok(one(state, emulator, &moved, ip, StatusCode::OK))
}

fn create(state: &mut State, emulator: &Emulator, req: &Req) -> Result<Response<Body>, OciError> {
    let b = body(req)?;
    let vnic = b
        .get("vnicId")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid("vnicId is required"))?
        .to_string();
    let n = oci_nic(state, &vnic)
        .cloned()
        .ok_or_else(|| not_found(&vnic))?;
    let ip = match b.get("ipAddress") {
        None | Some(Value::Null) => state
            .free_addresses(&vnic, 1)
            .map_err(change_error)?
            .and_then(|v| v.first().copied())
            .ok_or_else(|| invalid(format!("Subnet {} has no free addresses", n.subnet)))?,
        Some(Value::String(s)) => s
            .parse::<Ipv4Addr>()
            .map_err(|_| invalid(format!("Invalid ipAddress {s}")))?,
        Some(_) => return Err(invalid("ipAddress must be a string")),
    };
    if n.holds(ip) {
        return Err(err(
            StatusCode::CONFLICT,
            "Conflict",
            format!("The IP address {ip} is already assigned to VNIC {vnic}"),
        ));
    }
    state
        .assign(Instant::now(), &vnic, &[ip], false)
        .map_err(change_error)?;
    let n = oci_nic(state, &vnic)
        .cloned()
        .ok_or_else(|| not_found(&vnic))?;
    Ok(one(state, emulator, &n, ip, StatusCode::OK))
}

fn delete(state: &mut State, req: &Req, id: &str) -> Result<Response<Body>, OciError> {
    let (n, ip) = resolve(state, id).ok_or_else(|| not_found(id))?;
    check_if_match(req, &n, ip)?;
    if n.primary_ip == ip {
        return Err(invalid(
            "The primary private IP of a VNIC cannot be deleted",
        ));
    }
    state
        .unassign(Instant::now(), &n.id, &[ip])
        .map_err(change_error)?;
    let mut r = Response::new(Body::default());
    *r.status_mut() = StatusCode::NO_CONTENT;
    Ok(r)
}

fn change_error(e: ChangeError) -> OciError {
    match e {
        ChangeError::NicNotFound(id) => not_found(&id),
        ChangeError::OutsideSubnet(ip) => {
            invalid(format!("The IP address {ip} is not in the VNIC's subnet"))
        }
        ChangeError::InUse { ip, holder } | ChangeError::PrimaryElsewhere { ip, holder } => err(
            StatusCode::CONFLICT,
            "Conflict",
            format!("The IP address {ip} is already in use by VNIC {holder}"),
        ),
        ChangeError::IsPrimary(ip) => invalid(format!("{ip} is a primary private IP")),
        ChangeError::NotAssigned(ip) => not_found(&ip.to_string()),
    }
}
