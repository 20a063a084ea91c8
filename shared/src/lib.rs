//! Types both CER processes speak: the node configuration file, the FIB feed
//! protocol between cer-control and cer-dataplane, the dataplane admin API and
//! the address types they are built from, and the stall watch cer-control
//! uses to re-confirm its role after it was stopped (`stall`).

pub mod addr;
pub mod admin;
pub mod config;
pub mod feed;
pub mod feed_client;
pub mod framing;
pub mod metrics;
pub mod sockperm;
pub mod stall;
pub mod state_file;

pub use addr::{Ipv4Prefix, MacAddr};
