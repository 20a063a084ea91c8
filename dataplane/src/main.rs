//! `cer-dataplane --config FILE`: the userspace router process.

use anyhow::Result;
use cer_dataplane::cli::Args;
use cer_dataplane::engine;
use cer_shared::config::NodeConfig;
use clap::Parser;

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
    engine::run(cfg, Some(&args.config))
}
