//! Hugepages for the CER dataplane: discovery of the kernel's pools (per page
//! size and NUMA node) and hugetlbfs mounts, reservation through sysfs, and
//! idempotent mounting. The dataplane calls [`check_available`] before EAL
//! init; operators use the `cer-hugepages` binary or `scripts/hugepages`.
//!
//! [`HugeSlice`] puts big lookup tables (the snapshot's /32 and neighbor
//! tables) on transparent 2 MiB pages.
//!
//! All reads go through `/sys/kernel/mm/hugepages`, `/sys/devices/system/node`,
//! `/proc/mounts` and `/proc/meminfo`; [`status_from`] reads the same layout
//! under another root, which is how the tests fake a machine.

pub mod cli;
mod error;
mod mount;
mod reserve;
mod size;
mod status;
mod table;

pub use error::HugepageError;
pub use mount::{ensure_mounted, remove_dpdk_files, unmount, Mount, DEFAULT_MOUNT_PATH};
pub use reserve::{check_available, check_status, ensure, ensure_with, reserve, Plan};
pub use size::PageSize;
pub use status::{status, status_from, Pool, Status};
pub use table::{HugeSlice, HUGE_2M};
