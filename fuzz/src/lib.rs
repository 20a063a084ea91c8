//! Harnesses of CER's fuzz targets (`fuzz_targets/`, run by `scripts/fuzz`):
//! each drives a real component the way its input reaches it in
//! production, and checks what must hold whatever the input.
//!
//! - `dataplane`: the packet pipeline on in-memory ports (every port kind,
//!   every tunnel kind, a WireGuard session up);
//! - `control`: the dataplane's FIB feed protocol and admin requests;
//! - `replies` + `providers`: the Azure and OCI capture clients against a
//!   loopback server answering with the input's replies.
//!
//! The BGP targets use `cer_bgp` directly; AWS and cer-control's admin API
//! live in `controlplane/fuzz` (they build the AWS SDK).

pub mod control;
pub mod dataplane;
pub mod providers;
pub mod replies;
