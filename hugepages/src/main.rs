//! `cer-hugepages`: the operator's and scripts' front end to the
//! `cer_hugepages` library (status, reserve, mount, unmount, ensure, check).

use std::process::ExitCode;

use anyhow::{Context, Result};
use cer_hugepages::cli::{Cli, Command};
use cer_hugepages::{PageSize, Status};
use clap::Parser;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cer-hugepages: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn default_size(size: Option<PageSize>) -> Result<PageSize> {
    match size {
        Some(s) => Ok(s),
        None => Ok(cer_hugepages::status()?.default_size()),
    }
}

fn run(command: Command) -> Result<()> {
    match command {
        Command::Status { json } => {
            let st = cer_hugepages::status()?;
            if json {
                println!("{}", serde_json::to_string_pretty(&st)?);
            } else {
                print!("{}", render_status(&st));
            }
        }
        Command::Reserve { pages, size, node } => {
            let size = default_size(size)?;
            let before = cer_hugepages::status()?;
            let was = match node {
                None => before.pool(size).map(|p| p.total),
                Some(n) => before.node_pool(size, n).map(|p| p.total),
            };
            let now = cer_hugepages::reserve(size, pages, node)
                .with_context(|| format!("reserving {pages} pages of {size}"))?;
            let place = node.map_or_else(|| "system-wide".to_string(), |n| format!("node {n}"));
            match was {
                Some(w) => println!("{size} pool ({place}): {now} pages (was {w})"),
                None => println!("{size} pool ({place}): {now} pages"),
            }
        }
        Command::Mount { path, size } => {
            let size = default_size(size)?;
            let before = cer_hugepages::status()?;
            let m = cer_hugepages::ensure_mounted(&path, size)?;
            if before.mounts.contains(&m) {
                println!("hugetlbfs ({size}) already mounted on {}", m.path.display());
            } else {
                println!("mounted hugetlbfs ({size}) on {}", m.path.display());
            }
        }
        Command::Unmount { path } => {
            cer_hugepages::unmount(&path)?;
            println!("unmounted {}", path.display());
        }
        Command::Ensure {
            mb,
            size,
            path,
            json,
        } => {
            let size = default_size(size)?;
            let plan = cer_hugepages::ensure_with(mb, size, path.as_deref())?;
            if json {
                println!("{}", serde_json::to_string_pretty(&plan)?);
            } else {
                println!("{plan}");
            }
        }
        Command::Check { mb } => {
            cer_hugepages::check_available(mb)?;
            println!("{mb} MiB of hugepages available on mounted hugetlbfs");
        }
    }
    Ok(())
}

fn render_status(st: &Status) -> String {
    let mut out = format!("default hugepage size: {}\n", st.default_size());
    out.push_str(&format!(
        "{:<5} {:<6} {:>8} {:>8} {:>8} {:>8} {:>10}\n",
        "size", "node", "total", "free", "resv", "surplus", "MiB avail"
    ));
    for p in &st.pools {
        let node = p.node.map_or_else(|| "all".to_string(), |n| n.to_string());
        let resv = if p.node.is_some() {
            "-".to_string()
        } else {
            p.reserved.to_string()
        };
        out.push_str(&format!(
            "{:<5} {:<6} {:>8} {:>8} {:>8} {:>8} {:>10}\n",
            p.size.to_string(),
            node,
            p.total,
            p.free,
            resv,
            p.surplus,
            p.size.mib_of(p.available())
        ));
    }
    if st.mounts.is_empty() {
        out.push_str("hugetlbfs mounts: none (DPDK cannot use hugepages until one is mounted)\n");
    } else {
        out.push_str("hugetlbfs mounts:\n");
        for m in &st.mounts {
            out.push_str(&format!("  {} ({})\n", m.path.display(), m.page_size()));
        }
    }
    out.push_str(&format!(
        "available to DPDK (free on mounted sizes): {} MiB\n",
        st.available_mounted_mib()
    ));
    out
}
