//! The interface between the reconciler and a cloud's capture mechanism
//! (AWS secondary IPs, Azure ipConfigurations, OCI private IPs): observe who
//! holds a /32, capture it onto this router's NIC, release it, or hand it
//! back to the NIC it was captured from. Every mutating provider call is
//! preceded by a fence check, so an action planned from a path signature that
//! is no longer current never reaches the provider.

use async_trait::async_trait;
use std::net::Ipv4Addr;

/// Who holds a /32 in the provider network, as the provider reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Holding {
    /// Assigned to this router's NIC (captured).
    Ours,
    /// Assigned to another NIC: the provider's id of it (ENI id, NIC resource
    /// id, VNIC OCID), for logs and `cerctl explain`.
    Elsewhere(String),
    /// Not assigned to any NIC in this network.
    Nobody,
}

/// How the reconciler treats a failed provider call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// Throttled (RequestLimitExceeded, 429): back off longer.
    Throttled,
    /// Worth retrying soon: 5xx, timeouts, connection errors, etag races,
    /// Azure RetryableError / RetryableErrorDueToAnotherOperation.
    Transient,
    /// Needs the operator: missing or rejected credentials, unknown NIC,
    /// address outside every subnet. Still retried, at the maximum backoff,
    /// so a fixed configuration recovers without a restart.
    Config,
    /// The path signature changed before a provider call: the action was
    /// skipped, never executed.
    Fenced,
    /// The NIC an address was to be handed back to does not exist any more
    /// (the provider says so unambiguously: not an authorization failure):
    /// the hand-back was refused and nothing moved. The reconciler then
    /// releases the address to nobody, where that NIC's deletion would have
    /// left it.
    HolderGone,
}

/// A provider call that failed, with what to show the operator.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{provider} {step}: {message}")]
pub struct CaptureError {
    pub kind: ErrorKind,
    /// "aws", "azure", "oci".
    pub provider: &'static str,
    /// The step that failed, e.g. "AssignPrivateIpAddresses", "PUT old NIC".
    pub step: String,
    /// What went wrong, with the provider's error code when it gave one.
    pub message: String,
}

impl CaptureError {
    pub fn new(
        kind: ErrorKind,
        provider: &'static str,
        step: impl Into<String>,
        message: impl Into<String>,
    ) -> CaptureError {
        CaptureError {
            kind,
            provider,
            step: step.into(),
            message: message.into(),
        }
    }
}

/// The fence an action carries: true while the path signature the action was
/// planned from is still the current one.
pub struct Fence<'a> {
    current: &'a (dyn Fn() -> bool + Send + Sync),
}

impl<'a> Fence<'a> {
    pub fn new(current: &'a (dyn Fn() -> bool + Send + Sync)) -> Fence<'a> {
        Fence { current }
    }

    /// Call right before every mutating provider call (and between the steps
    /// of a multi-step move): `Err(Fenced)` means stop without calling.
    pub fn check(&self, provider: &'static str, step: &str) -> Result<(), CaptureError> {
        if (self.current)() {
            Ok(())
        } else {
            Err(CaptureError::new(
                ErrorKind::Fenced,
                provider,
                step,
                "path signature changed since the action was planned: skipped",
            ))
        }
    }

    /// A fence that never trips (tools, tests of a client alone).
    pub fn open() -> Fence<'static> {
        static OPEN: fn() -> bool = || true;
        Fence { current: &OPEN }
    }
}

/// One cloud's capture mechanism for this router's NIC.
///
/// Implementations keep no state about past actions: every call asks the
/// provider, so a restarted cer-control re-derives everything.
#[async_trait]
pub trait CaptureProvider: Send + Sync {
    /// "aws", "azure", "oci".
    fn name(&self) -> &'static str;

    /// A human description of what is captured where, e.g.
    /// "AWS ENI eni-0abc secondary private IPs (instance i-0123)".
    fn describe(&self) -> String;

    /// Who holds `ip` now, as the provider reports it (read-only).
    async fn observe(&self, ip: Ipv4Addr) -> Result<Holding, CaptureError>;

    /// Moves `ip` onto this router's NIC, from wherever it is. Idempotent: a
    /// no-op when already ours. Calls `fence.check` before every mutating
    /// provider call. Returning Ok means the provider accepted the change; it
    /// may still be in flight (AWS moves are asynchronous): the reconciler
    /// confirms with `observe`.
    async fn capture(&self, ip: Ipv4Addr, fence: &Fence<'_>) -> Result<(), CaptureError>;

    /// Removes `ip` from this router's NIC if it is there; never touches
    /// another NIC. Idempotent. Same fence rule as `capture`. The reconciler
    /// calls it only for a /32 that nobody held before it captured it (else
    /// `hand_back`).
    async fn release(&self, ip: Ipv4Addr, fence: &Fence<'_>) -> Result<(), CaptureError>;

    /// Gives `ip` back to NIC `to` (the holder the reconciler observed when
    /// it captured it): from this router's NIC, or from nobody (an earlier
    /// hand-back stopped half-way, e.g. between Azure's two steps). Never
    /// takes it from a third NIC: held elsewhere (by `to` or any other NIC)
    /// is Ok without a call. AWS: `AssignPrivateIpAddresses` to `to` with
    /// `AllowReassignment`; Azure: remove the ipConfiguration from our NIC,
    /// then create it on `to`; OCI: `UpdatePrivateIp` to `to` (or
    /// `CreatePrivateIp` on it). Same fence rule as `capture` (checked
    /// before every mutating call and between Azure's steps). `to` missing
    /// at the provider is `ErrorKind::HolderGone`; `to` being this router's
    /// own NIC is a `Config` error. Returning Ok means the provider accepted
    /// the change; the reconciler confirms it with `observe`.
    async fn hand_back(
        &self,
        ip: Ipv4Addr,
        to: &str,
        fence: &Fence<'_>,
    ) -> Result<(), CaptureError>;

    /// Whether a NIC id `observe` could report is this router's own NIC
    /// (ids are compared the way the provider compares them).
    fn is_own_nic(&self, id: &str) -> bool;

    /// Every address on this router's NIC besides its primary, when the
    /// provider can list them in one call. The reconciler sweeps with it at
    /// start and on every resync, so a pool /32 captured before a restart
    /// and owned by nobody since is released. `None`: not supported (the
    /// reconciler then only acts on /32s that BGP names).
    async fn held(&self) -> Result<Option<Vec<Ipv4Addr>>, CaptureError> {
        Ok(None)
    }
}
