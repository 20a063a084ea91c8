//! OCI Core Services `privateIps` (API version 20160918): ListPrivateIps, GetPrivateIp,
//! UpdatePrivateIp (move to another VNIC, `if-match` etag), CreatePrivateIp, DeletePrivateIp;
//! request signatures (draft-cavage HTTP signatures, RSA-SHA256) verified against the seed's API
//! keys and the security tokens this emulator issued; and the instance principal pieces: the
//! instance metadata identity documents (`/opc/v2/identity/{cert,key,intermediate}.pem`) and the
//! X.509 federation endpoint (`POST /v1/x509`) that trades a signed leaf certificate plus a
//! session public key for a security token (`keyId="ST$<token>"`).

use std::net::Ipv4Addr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::{STANDARD as B64, URL_SAFE_NO_PAD as B64URL};
use base64::Engine as _;
use rsa::pkcs1::{DecodeRsaPrivateKey, DecodeRsaPublicKey};
use rsa::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePublicKey};
use rsa::signature::Verifier;
use rsa::traits::PublicKeyParts;
use rsa::{RsaPrivateKey, RsaPublicKey};
use sha2::{Digest, Sha256};

use hyper::{Method, Response, StatusCode};
use serde_json::{json, Value};

use crate::faults::FaultKind;
use crate::limits::{Admission, Class};
use crate::server::{iso8601, json, Body, Emulator, Gate, Outcome, Req};
use crate::state::{fnv1a, ChangeError, Nic, State};
use crate::stats::CallResult;

const PREFIX: &str = "/20160918/privateIps";
const COMPARTMENT: &str = "ocid1.compartment.oc1..emulator";
/// How far a signed request's `date` may be from the emulator's clock (OCI: 5 minutes).
pub const MAX_DATE_SKEW_SECS: u64 = 300;

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
        // OCI does not tell "not allowed" from "does not exist".
        FaultKind::Denied => err(
            StatusCode::NOT_FOUND,
            "NotAuthorizedOrNotFound",
            "Authorization failed or requested resource not found.",
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

fn not_authenticated(why: impl Into<String>) -> OciError {
    let why = why.into();
    log::info!("oci signature refused: {why}");
    err(
        StatusCode::UNAUTHORIZED,
        "NotAuthenticated",
        format!("The required information to complete authentication was not provided or was incorrect: {why}"),
    )
}

/// The DER body of the first PEM block labelled `label`.
pub fn pem_der(pem: &str, label: &str) -> Option<Vec<u8>> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = pem.find(&begin)? + begin.len();
    let stop = start + pem[start..].find(&end)?;
    let b64: String = pem[start..stop]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    B64.decode(b64).ok()
}

/// An RSA public key from PEM (SPKI `PUBLIC KEY` or PKCS#1 `RSA PUBLIC KEY`).
pub fn parse_public_key(pem: &str) -> Result<RsaPublicKey, String> {
    RsaPublicKey::from_public_key_pem(pem.trim())
        .or_else(|_| RsaPublicKey::from_pkcs1_pem(pem.trim()))
        .map_err(|e| format!("not an RSA public key in PEM: {e}"))
}

/// An RSA private key from PEM (PKCS#8 or PKCS#1).
pub fn parse_private_key(pem: &str) -> Result<RsaPrivateKey, String> {
    RsaPrivateKey::from_pkcs8_pem(pem.trim())
        .or_else(|_| RsaPrivateKey::from_pkcs1_pem(pem.trim()))
        .map_err(|e| format!("not an RSA private key in PEM: {e}"))
}

/// The colon-separated lower-case hex SHA-1 of a certificate's DER, as OCI prints fingerprints.
pub fn cert_fingerprint(der: &[u8]) -> String {
    use sha1::Digest as _;
    let d = sha1::Sha1::digest(der);
    d.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The `key="value"` parameters of an `Authorization: Signature ...` header.
fn auth_params(header: &str) -> Option<Vec<(String, String)>> {
    let rest = header.strip_prefix("Signature ")?;
    let mut out = Vec::new();
    for part in rest.split(',') {
        let (k, v) = part.trim().split_once('=')?;
        let v = v.strip_prefix('"')?.strip_suffix('"')?;
        out.push((k.trim().to_string(), v.to_string()));
    }
    Some(out)
}

/// Which key a request must be signed with.
enum KeySource {
    /// Signature verification is not configured: shape check only.
    ShapeOnly,
    Key(RsaPublicKey),
}

/// Checks a request's OCI signature. `federation` allows the instance principal's leaf
/// certificate key (`{tenancy}/fed-x509/{fingerprint}`), which only the federation endpoint
/// accepts.
fn check_auth(emulator: &Emulator, req: &Req, federation: bool) -> Result<(), OciError> {
    let header = req
        .header("authorization")
        .ok_or_else(|| not_authenticated("no Authorization header"))?;
    let params =
        auth_params(header).ok_or_else(|| not_authenticated("malformed Signature header"))?;
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let (Some(key_id), Some(signature), Some(headers)) =
        (get("keyId"), get("signature"), get("headers"))
    else {
        return Err(not_authenticated(
            "keyId, headers and signature are required",
        ));
    };
    if get("algorithm") != Some("rsa-sha256") {
        return Err(not_authenticated("algorithm must be rsa-sha256"));
    }
    if get("version").is_some_and(|v| v != "1") {
        return Err(not_authenticated("version must be 1"));
    }
    let source = {
        let state = emulator.state();
        let configured = !state.oci_api_keys.is_empty() || state.oci_instance_principal.is_some();
        if let Some(token) = key_id.strip_prefix("ST$") {
            let tokens = emulator
                .oci_tokens
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            match tokens.get(token) {
                Some((pem, exp)) if *exp > emulator.now() => {
                    KeySource::Key(parse_public_key(pem).map_err(not_authenticated)?)
                }
                Some(_) => return Err(not_authenticated("the security token has expired")),
                None => return Err(not_authenticated("unknown security token")),
            }
        } else if let Some(pem) = state.oci_api_keys.get(key_id) {
            KeySource::Key(parse_public_key(pem).map_err(not_authenticated)?)
        } else if let (true, Some(ip)) = (federation, &state.oci_instance_principal) {
            let fp = pem_der(&ip.cert_pem, "CERTIFICATE")
                .map(|d| cert_fingerprint(&d))
                .unwrap_or_default();
            if !key_id.eq_ignore_ascii_case(&format!("{}/fed-x509/{fp}", ip.tenancy)) {
                return Err(not_authenticated(format!(
                    "unknown federation keyId {key_id}"
                )));
            }
            let key = parse_private_key(&ip.key_pem).map_err(not_authenticated)?;
            KeySource::Key(key.to_public_key())
        } else if configured {
            return Err(not_authenticated(format!("unknown keyId {key_id}")));
        } else {
            KeySource::ShapeOnly
        }
    };
    let KeySource::Key(key) = source else {
        return Ok(());
    };
    let names: Vec<String> = headers
        .split_whitespace()
        .map(|h| h.to_ascii_lowercase())
        .collect();
    let mut required = vec!["(request-target)", "host"];
    let has_body = req.method == Method::POST || req.method == Method::PUT;
    if has_body {
        required.extend(["x-content-sha256", "content-type", "content-length"]);
    }
    for r in required {
        if !names.iter().any(|n| n == r) {
            return Err(not_authenticated(format!("header {r} must be signed")));
        }
    }
    if !names.iter().any(|n| n == "date" || n == "x-date") {
        return Err(not_authenticated("date or x-date must be signed"));
    }
    let date = req
        .header("x-date")
        .or_else(|| req.header("date"))
        .and_then(|d| httpdate::parse_http_date(d).ok())
        .ok_or_else(|| not_authenticated("missing or malformed date"))?;
    let now = emulator.now();
    let skew = now.duration_since(date).unwrap_or_else(|e| e.duration());
    if skew > Duration::from_secs(MAX_DATE_SKEW_SECS) {
        return Err(not_authenticated(format!(
            "date is more than 5 minutes off ({}s; the server's time is in the Date header)",
            skew.as_secs()
        )));
    }
    if has_body {
        let want = B64.encode(Sha256::digest(&req.body));
        if req.header("x-content-sha256") != Some(want.as_str()) {
            return Err(not_authenticated(
                "x-content-sha256 does not match the body",
            ));
        }
    }
    let mut lines = Vec::new();
    for n in &names {
        if n == "(request-target)" {
            let target = if req.query.is_empty() {
                req.path.clone()
            } else {
                format!("{}?{}", req.path, req.query)
            };
            lines.push(format!(
                "(request-target): {} {target}",
                req.method.as_str().to_ascii_lowercase()
            ));
        } else {
            let v = req
                .header(n)
                .ok_or_else(|| not_authenticated(format!("signed header {n} is missing")))?;
            lines.push(format!("{n}: {v}"));
        }
    }
    let signing_string = lines.join("\n");
    let sig = B64
        .decode(signature)
        .ok()
        .and_then(|b| rsa::pkcs1v15::Signature::try_from(b.as_slice()).ok())
        .ok_or_else(|| not_authenticated("signature is not base64"))?;
    rsa::pkcs1v15::VerifyingKey::<Sha256>::new(key)
        .verify(signing_string.as_bytes(), &sig)
        .map_err(|_| not_authenticated(format!("signature does not verify for keyId {key_id}")))
}

/// `/opc/v2/identity/{cert,key,intermediate}.pem` (instance metadata, `Authorization: Bearer
/// Oracle`) and `POST /v1/x509` (federation).
fn identity(emulator: &Emulator, req: &Req, action: &str) -> Result<Response<Body>, OciError> {
    let ip = emulator
        .state()
        .oci_instance_principal
        .clone()
        .ok_or_else(|| not_found("no instance principal is configured"))?;
    if action == "GetIdentityDocument" {
        if req.method != Method::GET {
            return Err(err(
                StatusCode::METHOD_NOT_ALLOWED,
                "MethodNotAllowed",
                "GET only",
            ));
        }
        if req.header("authorization") != Some("Bearer Oracle") {
            return Err(err(
                StatusCode::UNAUTHORIZED,
                "NotAuthenticated",
                "Authorization: Bearer Oracle is required",
            ));
        }
        let body = match req.path.as_str() {
            "/opc/v2/identity/cert.pem" => ip.cert_pem,
            "/opc/v2/identity/key.pem" => ip.key_pem,
            "/opc/v2/identity/intermediate.pem" => ip.intermediate_pem,
            other => return Err(not_found(other)),
        };
        return Ok(crate::server::reply(StatusCode::OK, "text/plain", body));
    }
    if req.method != Method::POST {
        return Err(err(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "POST only",
        ));
    }
    check_auth(emulator, req, true)?;
    let b = body(req)?;
    let leaf = pem_der(&ip.cert_pem, "CERTIFICATE").unwrap_or_default();
    let sent = b
        .get("certificate")
        .and_then(Value::as_str)
        .and_then(|c| B64.decode(c).ok())
        .ok_or_else(|| invalid("certificate (base64 DER) is required"))?;
    if sent != leaf {
        return Err(not_authenticated("the certificate is not this instance's"));
    }
    let session = b
        .get("publicKey")
        .and_then(Value::as_str)
        .and_then(|k| B64.decode(k).ok())
        .and_then(|der| RsaPublicKey::from_public_key_der(&der).ok())
        .ok_or_else(|| invalid("publicKey (base64 DER SubjectPublicKeyInfo) is required"))?;
    let pem = session
        .to_public_key_pem(rsa::pkcs8::LineEnding::LF)
        .map_err(|e| invalid(format!("publicKey: {e}")))?;
    let now = emulator.now();
    let exp = now + Duration::from_secs(ip.token_ttl_secs);
    let secs = |t: SystemTime| {
        t.duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    };
    let header = B64URL.encode(json!({"alg": "RS256", "typ": "JWT"}).to_string());
    let claims = B64URL.encode(
        json!({
            "sub": "ocid1.instance.oc1..emulator",
            "tenant": ip.tenancy,
            "iat": secs(now),
            "exp": secs(exp),
            "jti": format!("{:032x}", emulator.random128()),
            "jwk": {
                "kty": "RSA",
                "kid": "emulator-session",
                "n": B64URL.encode(session.n().to_bytes_be()),
                "e": B64URL.encode(session.e().to_bytes_be()),
                "alg": "RS256",
            },
        })
        .to_string(),
    );
    let token = format!(
        "{header}.{claims}.{}",
        B64URL.encode(emulator.random128().to_be_bytes())
    );
    emulator
        .oci_tokens
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(token.clone(), (pem, exp));
    Ok(json(StatusCode::OK, &json!({ "token": token })))
}

/// Serves one `/20160918/privateIps` request.
pub async fn handle(emulator: &Emulator, req: &Req) -> Outcome {
    let request_id = emulator.request_id();
    let rest = req.path.strip_prefix(PREFIX).unwrap_or("");
    let id = rest.strip_prefix('/').filter(|s| !s.is_empty());
    let identity_action = if req.path.starts_with("/opc/") {
        Some("GetIdentityDocument")
    } else if req.path == "/v1/x509" {
        Some("X509Federation")
    } else {
        None
    };
    if let Some(action) = identity_action {
        return match emulator.fault_gate("oci", action).await {
            Gate::Proceed => Outcome::Reply(match identity(emulator, req, action) {
                Ok(r) => with_request_id(r, &request_id),
                Err(e) => {
                    log::info!("oci {action}: {} {}", e.code, e.message);
                    error_response(&e, &request_id)
                }
            }),
            Gate::Fail(kind) => Outcome::Reply(error_response(&fault_error(kind), &request_id)),
            Gate::Timeout { hold, .. } => {
                tokio::time::sleep(hold).await;
                Outcome::Drop
            }
        };
    }
    let action = match (&req.method, id) {
        (&Method::GET, None) => "ListPrivateIps",
        (&Method::POST, None) => "CreatePrivateIp",
        (&Method::GET, Some(_)) => "GetPrivateIp",
        (&Method::PUT, Some(_)) => "UpdatePrivateIp",
        (&Method::DELETE, Some(_)) => "DeletePrivateIp",
        _ => "Unsupported",
    };
    let (outcome, result) = serve_private_ips(emulator, req, action, id, &request_id).await;
    emulator.record("oci", action, result);
    outcome
}

/// One `privateIps` call: metered (reads and mutations per tenancy), then faults, then the API.
async fn serve_private_ips(
    emulator: &Emulator,
    req: &Req,
    action: &'static str,
    id: Option<&str>,
    request_id: &str,
) -> (Outcome, CallResult) {
    let class = if req.method == Method::GET || req.method == Method::HEAD {
        Class::OciReads
    } else {
        Class::OciMutations
    };
    // A call takes its token before anything else is checked; refused, it is not executed.
    if let Admission::Throttled { .. } = emulator.admit(class, "") {
        log::info!("oci {action}: throttled");
        let e = err(
            StatusCode::TOO_MANY_REQUESTS,
            "TooManyRequests",
            "User-rate limit exceeded.",
        );
        return (
            Outcome::Reply(error_response(&e, request_id)),
            CallResult::Throttled,
        );
    }
    let rest = req.path.strip_prefix(PREFIX).unwrap_or("");
    let run = || -> Response<Body> {
        let result = check_auth(emulator, req, false).and_then(|_| {
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
            Ok(r) => with_request_id(r, request_id),
            Err(e) => {
                log::info!("oci {action}: {} {}", e.code, e.message);
                error_response(&e, request_id)
            }
        }
    };
    match emulator.fault_gate("oci", action).await {
        Gate::Proceed => {
            let r = run();
            let result = CallResult::of(r.status());
            (Outcome::Reply(r), result)
        }
        Gate::Fail(kind) => {
            let result = if kind == FaultKind::Throttle {
                CallResult::Throttled
            } else {
                CallResult::Failed
            };
            (
                Outcome::Reply(error_response(&fault_error(kind), request_id)),
                result,
            )
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
        ChangeError::LimitExceeded { nic, limit } => err(
            StatusCode::BAD_REQUEST,
            "LimitExceeded",
            format!(
                "Fulfilling this request exceeds the limit of {} secondary private IPs per VNIC ({nic}).",
                limit.saturating_sub(1)
            ),
        ),
    }
}
