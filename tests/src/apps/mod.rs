//! Protocol peers for the acceptance and failover tests, run inside network
//! namespaces given by name (a test's own `Netns` or a lab site's workload
//! namespace), each in its own file:
//!
//! | file | job |
//! |---|---|
//! | `files.rs` | random files and their sha256 |
//! | `ftp.rs` | vsftpd and curl downloads (passive / active) |
//! | `nfs.rs` | nfs-ganesha with rpcbind in a private mount namespace, `nfs-cp`, `rpcinfo` |
//! | `iperf.rs` | iperf3 transfers |
//! | `bulk.rs` | TCP bulk transfers with sha256 on both ends, `nc` file copies |
//! | `capture.rs` | tcpdump captures read back with tshark |
//! | `probe.rs` | a steady ping probe that measures outages |
//! | `lab.rs` | [`Lab`]: a four-site lab (`scripts/lab`) for one test, its lab.json |
//!
//! Every daemon is ended by its PID when its value drops. Commands run in
//! namespaces through the crate's `ns_run` / `ns_try` / `ns_spawn`.

mod bulk;
mod capture;
mod files;
mod ftp;
mod iperf;
mod lab;
mod nfs;
mod probe;

pub use bulk::*;
pub use capture::*;
pub use files::*;
pub use ftp::*;
pub use iperf::*;
pub use lab::*;
pub use nfs::*;
pub use probe::*;
