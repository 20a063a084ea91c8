//! The CER capture plane (DESIGN.md section 3): BGP decides who owns a /32,
//! capture makes the local provider network hand its packets to this CER.
//! `provider` is the interface every cloud client implements; `reconciler`
//! drives them from the ownership view with path-signature fencing;
//! `batch` turns its per-/32 calls into the fewest provider calls and
//! `budget` paces them below the provider's API token buckets;
//! `latency` histograms how long each action took;
//! `origin` remembers which holder each captured /32 came from, so a
//! release hands it back.

pub mod azure;
pub mod batch;
pub mod budget;
pub mod latency;
pub mod oci;
pub mod oci_sign;
pub mod origin;
pub mod provider;
pub mod reconciler;

pub use budget::{BucketConfig, Budget, BudgetStatus};
pub use origin::{Origin, Origins};
pub use provider::{CaptureError, CaptureProvider, ErrorKind, Fence, Holding, Item};
pub use reconciler::{Desired, Intent, Reconciler, ReconcilerConfig};
