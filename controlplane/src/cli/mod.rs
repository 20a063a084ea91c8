//! The command lines of cerctl and cer-control, in the library so that the
//! binaries and `cer-docgen` (man pages, shell completions) share them.

pub mod cerctl;
pub mod control;
