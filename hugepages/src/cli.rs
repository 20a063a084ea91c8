//! cer-hugepages' command line (clap): the binary parses it, `cer-docgen`
//! renders its man page from it.

use std::path::PathBuf;

use crate::PageSize;
use clap::{Parser, Subcommand};

/// Hugepage pools and hugetlbfs mounts for the CER dataplane.
#[derive(Debug, Parser)]
#[command(name = "cer-hugepages", version)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show the pools (system-wide and per NUMA node) and hugetlbfs mounts.
    Status {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Set a pool to N pages (absolute, like writing nr_hugepages).
    Reserve {
        /// Pool total to set.
        #[arg(long)]
        pages: u64,
        /// Page size: 2M or 1G (default: the kernel's default size).
        #[arg(long)]
        size: Option<PageSize>,
        /// NUMA node (default: system-wide, spread by the kernel).
        #[arg(long)]
        node: Option<u32>,
    },
    /// Mount hugetlbfs (no-op when the same mount is already there).
    Mount {
        /// Mount point, created if missing.
        #[arg(long, default_value = crate::DEFAULT_MOUNT_PATH)]
        path: PathBuf,
        /// Page size: 2M or 1G (default: the kernel's default size).
        #[arg(long)]
        size: Option<PageSize>,
    },
    /// Unmount a hugetlbfs mount point.
    Unmount {
        /// Mount point.
        #[arg(long)]
        path: PathBuf,
    },
    /// Reserve and mount enough hugepages for N MiB (only adds what is missing).
    Ensure {
        /// MiB of hugepage memory needed.
        #[arg(long)]
        mb: u64,
        /// Page size: 2M or 1G (default: the kernel's default size).
        #[arg(long)]
        size: Option<PageSize>,
        /// Mount point (default: reuse a mount of that size, else /dev/hugepages).
        #[arg(long)]
        path: Option<PathBuf>,
        /// Print what was found and done as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Exit 0 if N MiB are free on mounted hugetlbfs, else say what to do and exit 1.
    Check {
        /// MiB of hugepage memory needed.
        #[arg(long)]
        mb: u64,
    },
}
