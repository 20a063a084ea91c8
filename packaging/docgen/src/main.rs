//! `cer-docgen OUT_DIR`: writes the man pages (`OUT_DIR/man/`: cerctl(1) and a
//! page per cerctl subcommand, cer-control(8), cer-dataplane(8),
//! cer-hugepages(8)) and cerctl's bash, zsh and fish completions
//! (`OUT_DIR/completions/`) from the binaries' own clap command lines, so that
//! they never drift from what the binaries accept.

use anyhow::{Context, Result};
use clap::{Command, CommandFactory};
use clap_complete::Shell;
use std::path::{Path, PathBuf};

fn main() {
    let Some(out) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: cer-docgen OUT_DIR");
        std::process::exit(2);
    };
    if let Err(e) = run(&out) {
        eprintln!("cer-docgen: error: {e:#}");
        std::process::exit(1);
    }
}

fn run(out: &Path) -> Result<()> {
    let man = out.join("man");
    let completions = out.join("completions");
    for d in [&man, &completions] {
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    let cerctl = cer_controlplane::cli::cerctl::Cli::command();
    pages(&man, cerctl.clone(), "1", "cerctl")?;
    page(
        &man,
        cer_controlplane::cli::control::Args::command(),
        "8",
        "cer-control",
    )?;
    page(
        &man,
        cer_dataplane::cli::Args::command(),
        "8",
        "cer-dataplane",
    )?;
    pages(
        &man,
        cer_hugepages::cli::Cli::command(),
        "8",
        "cer-hugepages",
    )?;
    for (shell, file) in [
        (Shell::Bash, "cerctl"),
        (Shell::Zsh, "_cerctl"),
        (Shell::Fish, "cerctl.fish"),
    ] {
        let mut cmd = cerctl.clone();
        let mut buf = Vec::new();
        clap_complete::generate(shell, &mut cmd, "cerctl", &mut buf);
        write(&completions.join(file), &buf)?;
    }
    Ok(())
}

/// The page of `cmd` and, named `NAME-SUB`, one per subcommand (recursively).
fn pages(dir: &Path, cmd: Command, section: &'static str, name: &str) -> Result<()> {
    page(dir, cmd.clone(), section, name)?;
    for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
        // clap names are &'static (without its `string` feature): a
        // one-shot generator can leak the few it makes.
        let sub_name: &'static str = format!("{name}-{}", sub.get_name()).leak();
        pages(dir, sub.clone().name(sub_name), section, sub_name)?;
    }
    Ok(())
}

fn page(dir: &Path, cmd: Command, section: &'static str, name: &str) -> Result<()> {
    let mut buf = Vec::new();
    clap_mangen::Man::new(cmd)
        .section(section)
        .manual("CER")
        .source(format!("CER {}", env!("CARGO_PKG_VERSION")))
        .render(&mut buf)
        .with_context(|| format!("rendering {name}({section})"))?;
    write(&dir.join(format!("{name}.{section}")), &buf)
}

fn write(path: &Path, data: &[u8]) -> Result<()> {
    std::fs::write(path, data).with_context(|| format!("writing {}", path.display()))
}
