//! CER control plane. For now: the operator-side pieces of the dataplane
//! (admin client, FIB file format for the debug feeder). cer-control (BGP,
//! ownership, capture) builds on these.

pub mod dataplane;
