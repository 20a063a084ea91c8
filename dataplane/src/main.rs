//! `cer-dataplane --config FILE`: the userspace router process.

use anyhow::Result;
use cer_dataplane::engine;
use cer_shared::config::NodeConfig;
use clap::Parser;
use std::path::PathBuf;

#[derive(Parser)]
#[command(version, about = "CER userspace IPv4 router on DPDK")]
struct Args {
    /// Node configuration file (TOML).
    #[arg(long, short)]
    config: PathBuf,
    /// Validate the config, print the EAL arguments, and exit.
    #[arg(long)]
    check: bool,
}

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let args = Args::parse();
    if let Err(e) = run(&args) {
        eprintln!("cer-dataplane: error: {e:#}");
        std::process::exit(1);
    }
}

fn run(args: &Args) -> Result<()> {
    let cfg = NodeConfig::load(&args.config)?;
    if args.check {
        println!("config {} is valid", args.config.display());
        println!("EAL: {}", engine::eal_args(&cfg).join(" "));
        return Ok(());
    }
    engine::run(cfg)
}
