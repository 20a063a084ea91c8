//! The pre-policy Adj-RIB-In of one peer (what it sent, as it sent it,
//! with what import made of each path) and the per-neighbor RIB views built
//! from it: `received-routes` (before and after import policy) and
//! `advertised-routes` (what its update group's Adj-RIB-Out holds for it).
//!
//! Keeping the received paths is what lets an import-policy change be
//! applied by re-evaluating them (`Speaker::set_import_policy`) instead of
//! asking the peer to resend (ROUTE-REFRESH) or resetting the session, as
//! BIRD's `import table` and FRR's `soft-reconfiguration inbound` do. The
//! cost is one map entry per received path (`ENTRY_BYTES` plus the hash
//! table's spare room); the attribute sets themselves are interned with the
//! imported ones, so identical attributes are held once however many
//! prefixes or peers carry them.

use crate::route::{FastMap, Nlri, PathAttrs, PathSource, PeerId, Prefix};
use serde::Serialize;
use std::sync::Arc;

/// Why import dropped a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// The import policy rejected it.
    Policy,
    /// A loop or hygiene check before policy (AS loop, reflection loop).
    Check(&'static str),
}

/// What import made of one received path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportOutcome {
    /// Installed as received (after the RFC hygiene every path gets).
    Accepted,
    /// Installed with attributes the import policy changed.
    Modified,
    Rejected(Rejection),
}

impl ImportOutcome {
    pub fn name(self) -> &'static str {
        match self {
            ImportOutcome::Accepted => "accepted",
            ImportOutcome::Modified => "modified",
            ImportOutcome::Rejected(_) => "rejected",
        }
    }

    /// Why it was rejected, for operators.
    pub fn reason(self) -> Option<&'static str> {
        match self {
            ImportOutcome::Rejected(Rejection::Policy) => Some("import policy"),
            ImportOutcome::Rejected(Rejection::Check(why)) => Some(why),
            _ => None,
        }
    }
}

impl Serialize for ImportOutcome {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

/// One path as the peer sent it.
#[derive(Debug, Clone)]
pub struct Received {
    pub attrs: Arc<PathAttrs>,
    pub outcome: ImportOutcome,
}

/// Size of one entry of the pre-policy table: key and value, before the
/// hash table's own overhead (checked by a test).
pub const ENTRY_BYTES: usize = std::mem::size_of::<(Nlri, Received)>();
// What the README quotes as the memory cost per received path, checked at
// compile time.
const _: () = assert!(ENTRY_BYTES <= 64);

/// A peer's pre-policy Adj-RIB-In.
pub type AdjRibIn = FastMap<Nlri, Received>;

/// One row of `received-routes`.
#[derive(Debug, Clone)]
pub struct ReceivedRoute {
    pub nlri: Nlri,
    /// As the peer sent it; `None` when the neighbor does not keep its
    /// received paths (`keep_received = false`).
    pub pre_policy: Option<Arc<PathAttrs>>,
    /// As installed in the Adj-RIB-In after import; `None` when rejected.
    pub post_policy: Option<Arc<PathAttrs>>,
    /// `None` when not known (received paths not kept).
    pub outcome: Option<ImportOutcome>,
    /// Kept across the peer's restart (graceful restart), not yet refreshed.
    pub stale: bool,
}

/// A neighbor's `received-routes`.
#[derive(Debug, Clone)]
pub struct ReceivedRoutes {
    pub peer: PeerId,
    /// Whether the pre-policy paths are kept for this neighbor.
    pub keep_received: bool,
    /// The session's facts (decision process, path signatures); `None`
    /// before the first establishment.
    pub source: Option<Arc<PathSource>>,
    /// Sorted by NLRI.
    pub routes: Vec<ReceivedRoute>,
}

/// One row of `advertised-routes`.
#[derive(Debug, Clone)]
pub struct AdvertisedRoute {
    /// With our path id on an ADD-PATH session, 0 otherwise.
    pub nlri: Nlri,
    /// As sent, after export policy.
    pub attrs: Arc<PathAttrs>,
    /// The peer the path was learned from (`PeerId::LOCAL`: ours).
    pub from: PeerId,
    /// Owed: the peer fell behind and has not been sent this state yet.
    pub pending: bool,
}

/// A neighbor's `advertised-routes`.
#[derive(Debug, Clone)]
pub struct AdvertisedRoutes {
    pub peer: PeerId,
    /// Members of its update group (it included): they are sent the same
    /// UPDATEs, but for each member's own paths.
    pub group_members: Vec<PeerId>,
    /// Paths the group holds that came from this peer and so were not sent
    /// to it (a member never gets its own paths back).
    pub withheld_own: usize,
    /// Sorted by NLRI.
    pub routes: Vec<AdvertisedRoute>,
}

/// Whether `nlri` is inside the filter (none: everything).
pub fn selected(filter: Option<&Prefix>, nlri: &Nlri) -> bool {
    filter.is_none_or(|f| *f == nlri.prefix)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_is_a_key_a_pointer_and_an_outcome() {
        assert_eq!(
            ImportOutcome::Rejected(Rejection::Policy).name(),
            "rejected"
        );
        assert_eq!(
            ImportOutcome::Rejected(Rejection::Check("AS loop")).reason(),
            Some("AS loop")
        );
        assert_eq!(ImportOutcome::Modified.reason(), None);
    }
}
