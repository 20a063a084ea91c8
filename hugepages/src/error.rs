//! The one error type of this crate. Every variant names the file, path or
//! value involved and, where the operator can do something about it, what to do.

use std::io;
use std::path::PathBuf;

use crate::PageSize;

/// What went wrong while discovering, reserving or mounting hugepages.
#[derive(Debug, thiserror::Error)]
pub enum HugepageError {
    /// A sysfs or procfs file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },

    /// A sysfs or procfs file held something that is not what the kernel writes there.
    #[error("{}: cannot parse {what} from {value:?}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// What was expected (e.g. "a page count").
        what: &'static str,
        /// The offending text.
        value: String,
    },

    /// The kernel exposes no hugepage pools at all.
    #[error(
        "{} does not exist: this kernel has no hugetlbfs support (CONFIG_HUGETLBFS) \
         or /sys is not mounted; use a kernel with hugepages or run DPDK with --no-huge",
        path.display()
    )]
    NoHugetlb {
        /// The missing sysfs directory.
        path: PathBuf,
    },

    /// The requested page size has no pool in this kernel.
    #[error(
        "hugepage size {size} is not supported here ({} does not exist); supported sizes: {supported}. \
         1G pages need a CPU with pdpe1gb",
        path.display()
    )]
    UnsupportedSize {
        /// The requested size.
        size: PageSize,
        /// The missing pool directory.
        path: PathBuf,
        /// The sizes the kernel does offer, comma separated.
        supported: String,
    },

    /// The requested NUMA node has no pool of that size (or does not exist).
    #[error(
        "NUMA node {node} has no {size} hugepage pool ({} does not exist); nodes present: {present}",
        path.display()
    )]
    NoSuchNode {
        /// The requested node.
        node: u32,
        /// The page size asked for.
        size: PageSize,
        /// The missing pool directory.
        path: PathBuf,
        /// The nodes that exist, comma separated (empty on non-NUMA kernels).
        present: String,
    },

    /// Writing a page count to sysfs failed.
    #[error("cannot write {value} to {}: {source}{}", path.display(), write_hint(source))]
    Write {
        /// The sysfs file.
        path: PathBuf,
        /// The value written.
        value: u64,
        /// The underlying error.
        source: io::Error,
    },

    /// The kernel reserved fewer pages than asked for.
    #[error(
        "asked the kernel for {wanted} hugepages of {size}, it has {got}: not enough free contiguous memory. \
         Free memory (stop other workloads; `sync; echo 3 > /proc/sys/vm/drop_caches; \
         echo 1 > /proc/sys/vm/compact_memory`) and retry, or reserve them at boot with \
         `default_hugepagesz={size} hugepagesz={size} hugepages={wanted}` on the kernel command line"
    )]
    Short {
        /// Pages asked for (the pool total).
        wanted: u64,
        /// Pages the pool holds after the write.
        got: u64,
        /// The page size.
        size: PageSize,
    },

    /// A page size given by the user could not be understood.
    #[error(
        "invalid hugepage size {value:?}: use 2M or 1G (also accepted: 2048kB, 2MB, 1GiB, ...)"
    )]
    InvalidSize {
        /// The text given.
        value: String,
    },

    /// A mount point path cannot be passed to mount(2).
    #[error("invalid mount point {}: {reason}", path.display())]
    InvalidPath {
        /// The path.
        path: PathBuf,
        /// Why it is rejected.
        reason: &'static str,
    },

    /// The mount point directory could not be created.
    #[error("cannot create mount point {}: {source}", path.display())]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },

    /// mount(2) failed.
    #[error("mount -t hugetlbfs -o {options} hugetlbfs {} failed: {source}{}", path.display(), mount_hint(source))]
    Mount {
        /// The mount point.
        path: PathBuf,
        /// The mount options passed.
        options: String,
        /// The underlying error.
        source: io::Error,
    },

    /// umount(2) failed.
    #[error("umount {} failed: {source}{}", path.display(), umount_hint(source))]
    Unmount {
        /// The mount point.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },

    /// Something other than hugetlbfs is mounted where hugetlbfs was asked for.
    #[error(
        "{} is already a {fstype} mount, not hugetlbfs: choose another mount point (--path) or unmount it",
        path.display()
    )]
    MountedOther {
        /// The mount point.
        path: PathBuf,
        /// The filesystem type mounted there.
        fstype: String,
    },

    /// hugetlbfs is mounted at the path, but with another page size.
    #[error(
        "{} is a hugetlbfs mount of {mounted} pages, not {wanted}: use another mount point (--path) \
         or `umount {}` first",
        path.display(),
        path.display()
    )]
    MountedOtherSize {
        /// The mount point.
        path: PathBuf,
        /// The page size of the existing mount.
        mounted: PageSize,
        /// The page size asked for.
        wanted: PageSize,
    },

    /// The path is not a mount point, so there is nothing to unmount.
    #[error("{} is not a hugetlbfs mount point (see /proc/mounts); nothing to unmount", path.display())]
    NotMounted {
        /// The path.
        path: PathBuf,
    },

    /// No hugetlbfs is mounted, so DPDK cannot use any hugepage.
    #[error(
        "{needed_mib} MiB of hugepages needed but no hugetlbfs is mounted ({free_mib} MiB free in the pools); \
         run `scripts/hugepages --mb {needed_mib}` as root"
    )]
    NoMount {
        /// MiB needed.
        needed_mib: u64,
        /// MiB free in all pools (unusable without a mount).
        free_mib: u64,
    },

    /// Not enough free hugepage memory on the mounted page sizes.
    #[error(
        "{needed_mib} MiB of hugepages needed, only {free_mib} MiB free on mounted hugetlbfs ({detail}); \
         run `scripts/hugepages --mb {needed_mib}` as root"
    )]
    NotEnough {
        /// MiB needed.
        needed_mib: u64,
        /// MiB free and usable.
        free_mib: u64,
        /// Per page size: free pages, total pages, mount point.
        detail: String,
    },
}

fn write_hint(e: &io::Error) -> &'static str {
    match e.kind() {
        io::ErrorKind::PermissionDenied => "; run as root",
        io::ErrorKind::NotFound => "; the pool disappeared: check the page size and NUMA node",
        _ => "",
    }
}

fn mount_hint(e: &io::Error) -> &'static str {
    match e.raw_os_error() {
        Some(libc::EPERM) | Some(libc::EACCES) => "; run as root (CAP_SYS_ADMIN)",
        Some(libc::ENODEV) => "; this kernel has no hugetlbfs filesystem",
        Some(libc::EINVAL) => "; the kernel does not support this pagesize= option",
        _ => "",
    }
}

fn umount_hint(e: &io::Error) -> &'static str {
    match e.raw_os_error() {
        Some(libc::EBUSY) => {
            "; files on it are still mapped or open (a running cer-dataplane?): stop it first"
        }
        Some(libc::EPERM) => "; run as root",
        _ => "",
    }
}
