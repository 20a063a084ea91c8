//! CER control plane: cer-control (BGP speaker, SAM ownership, FIB feed,
//! admin API) and the operator-side helpers cerctl uses.

pub mod cli;
pub mod control;
pub mod dataplane;
