//! The interface between the reconciler and a cloud's capture mechanism
//! (AWS secondary IPs, Azure ipConfigurations, OCI private IPs): observe who
//! holds a /32, capture it onto this router's NIC, release it, or hand it
//! back to the NIC it was captured from. Every mutating provider call is
//! preceded by a fence check, so an action planned from a path signature that
//! is no longer current never reaches the provider.

use async_trait::async_trait;
use futures_util::future::join_all;
use std::net::Ipv4Addr;
use std::sync::Arc;

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
    /// Assigned to one of this router's NICs (the provider's id of it) that
    /// is not attached to this router's instance (detached by an operator,
    /// or attached elsewhere): the provider keeps the address there but
    /// delivers its traffic to no instance of ours. A capture moves it onto
    /// an attached NIC of ours; a release removes it from that NIC.
    Detached(String),
}

impl Holding {
    /// On one of this router's NICs, attached or not: what a release must
    /// remove.
    pub fn on_our_nic(&self) -> bool {
        matches!(self, Holding::Ours | Holding::Detached(_))
    }
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
    /// Every NIC this router may capture onto is at the provider's address
    /// quota (AWS addresses per ENI of the instance type, Azure
    /// ipConfigurations per NIC, OCI secondary IPs per VNIC). An alarm, not
    /// a retry loop: the reconciler tries again only when one of its own
    /// addresses is released (room appeared) or at the periodic resync.
    Quota,
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
/// planned from is still the current one. Cheap to clone (the batcher hands
/// it to the call that carries several actions).
#[derive(Clone)]
pub struct Fence {
    current: Arc<dyn Fn() -> bool + Send + Sync>,
}

impl Fence {
    pub fn new(current: impl Fn() -> bool + Send + Sync + 'static) -> Fence {
        Fence {
            current: Arc::new(current),
        }
    }

    /// Whether the action is still current (no error, nothing counted).
    pub fn is_current(&self) -> bool {
        (self.current)()
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
    pub fn open() -> Fence {
        Fence::new(|| true)
    }
}

/// One /32 of a batched mutation, with the fence of the action it belongs to.
#[derive(Clone)]
pub struct Item {
    pub ip: Ipv4Addr,
    pub fence: Fence,
}

/// Adds item index `i` to the group of `key` (NIC ids, in first-seen order):
/// how the clients split a batch into one call per NIC.
pub fn group_by(groups: &mut Vec<(String, Vec<usize>)>, key: &str, i: usize) {
    match groups.iter_mut().find(|(k, _)| k == key) {
        Some((_, v)) => v.push(i),
        None => groups.push((key.to_string(), vec![i])),
    }
}

/// Runs `f` for every item at once (a client whose API has no call taking
/// several addresses still overlaps the round trips) and answers in order.
pub async fn each<'a, F, Fut>(items: &'a [Item], f: F) -> Vec<Result<(), CaptureError>>
where
    F: Fn(&'a Item) -> Fut,
    Fut: std::future::Future<Output = Result<(), CaptureError>> + 'a,
{
    let mut set = Vec::with_capacity(items.len());
    for it in items {
        set.push(f(it));
    }
    join_all(set).await
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
    async fn capture(&self, ip: Ipv4Addr, fence: &Fence) -> Result<(), CaptureError>;

    /// Removes `ip` from this router's NIC if it is there; never touches
    /// another NIC. Idempotent. Same fence rule as `capture`. The reconciler
    /// calls it only for a /32 that nobody held before it captured it (else
    /// `hand_back`).
    async fn release(&self, ip: Ipv4Addr, fence: &Fence) -> Result<(), CaptureError>;

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
    async fn hand_back(&self, ip: Ipv4Addr, to: &str, fence: &Fence) -> Result<(), CaptureError>;

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

    /// The client-side API budgets (token buckets) of this client, for
    /// `cerctl` and the metrics. Default: none.
    fn budgets(&self) -> Vec<crate::budget::BudgetStatus> {
        Vec::new()
    }

    /// Who holds each of `ips`, in order, in as few calls as the API allows
    /// (the batcher gathers every /32 waiting for an observation). Default:
    /// one `observe` each, overlapped.
    async fn observe_many(&self, ips: &[Ipv4Addr]) -> Vec<Result<Holding, CaptureError>> {
        let mut futs = Vec::with_capacity(ips.len());
        for &ip in ips {
            futs.push(self.observe(ip));
        }
        join_all(futs).await
    }

    /// `capture` for several /32s in as few calls as the API allows (one per
    /// NIC where a call takes several addresses). Each item's fence is
    /// checked right before the call that carries it: a stale item leaves
    /// the batch (`Fenced`), the rest goes on. One result per item, in order.
    async fn capture_many(&self, items: &[Item]) -> Vec<Result<(), CaptureError>> {
        each(items, |it| self.capture(it.ip, &it.fence)).await
    }

    /// `release` for several /32s; fencing as in `capture_many`.
    async fn release_many(&self, items: &[Item]) -> Vec<Result<(), CaptureError>> {
        each(items, |it| self.release(it.ip, &it.fence)).await
    }

    /// `hand_back` for several /32s, each to its own NIC (`to[i]`); fencing
    /// as in `capture_many`.
    async fn hand_back_many(&self, items: &[Item], to: &[String]) -> Vec<Result<(), CaptureError>> {
        let mut futs = Vec::with_capacity(items.len());
        for (it, to) in items.iter().zip(to) {
            futs.push(self.hand_back(it.ip, to, &it.fence));
        }
        join_all(futs).await
    }
}

/// The single-address calls of a client whose batch calls are the real ones
/// (AWS, Azure): one item through `*_many`.
pub mod one {
    use super::*;

    pub async fn observe<P: CaptureProvider + ?Sized>(
        p: &P,
        ip: Ipv4Addr,
    ) -> Result<Holding, CaptureError> {
        p.observe_many(&[ip])
            .await
            .pop()
            .unwrap_or(Ok(Holding::Nobody))
    }

    fn item(ip: Ipv4Addr, fence: &Fence) -> [Item; 1] {
        [Item {
            ip,
            fence: fence.clone(),
        }]
    }

    pub async fn capture<P: CaptureProvider + ?Sized>(
        p: &P,
        ip: Ipv4Addr,
        fence: &Fence,
    ) -> Result<(), CaptureError> {
        p.capture_many(&item(ip, fence))
            .await
            .pop()
            .unwrap_or(Ok(()))
    }

    pub async fn release<P: CaptureProvider + ?Sized>(
        p: &P,
        ip: Ipv4Addr,
        fence: &Fence,
    ) -> Result<(), CaptureError> {
        p.release_many(&item(ip, fence))
            .await
            .pop()
            .unwrap_or(Ok(()))
    }

    pub async fn hand_back<P: CaptureProvider + ?Sized>(
        p: &P,
        ip: Ipv4Addr,
        to: &str,
        fence: &Fence,
    ) -> Result<(), CaptureError> {
        p.hand_back_many(&item(ip, fence), &[to.to_string()])
            .await
            .pop()
            .unwrap_or(Ok(()))
    }
}
