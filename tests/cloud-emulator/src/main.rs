//! `cer-cloud-emulator`: see the library docs for the APIs it serves.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;

use cer_cloud_emulator::Seed;

#[derive(Parser, Debug)]
#[command(
    name = "cer-cloud-emulator",
    about = "Local emulator of the cloud provider APIs used by the CER capture plane"
)]
struct Args {
    /// Main listener: EC2 query API, IMDS and the /_emulator control API (loopback by default).
    #[arg(long, default_value = "127.0.0.1:8700")]
    listen: SocketAddr,
    /// Seed state (TOML, or JSON for *.json).
    #[arg(long)]
    state: Option<PathBuf>,
    /// Extra IMDS listener for one instance, as ADDR=INSTANCE (repeatable).
    #[arg(long = "imds", value_parser = parse_imds)]
    imds: Vec<(SocketAddr, String)>,
    /// Overrides the seed's move_delay_ms.
    #[arg(long)]
    move_delay_ms: Option<u64>,
}

fn parse_imds(s: &str) -> Result<(SocketAddr, String), String> {
    let (a, i) = s
        .split_once('=')
        .ok_or_else(|| format!("expected ADDR=INSTANCE, got {s:?}"))?;
    let addr: SocketAddr = a.parse().map_err(|e| format!("bad address {a:?}: {e}"))?;
    if i.is_empty() {
        return Err("empty instance id".to_string());
    }
    Ok((addr, i.to_string()))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let args = Args::parse();
    let mut seed = match &args.state {
        Some(p) => Seed::load(p)?,
        None => Seed::default(),
    };
    if let Some(ms) = args.move_delay_ms {
        seed.move_delay_ms = ms;
    }
    let running = cer_cloud_emulator::start(seed, args.listen, &args.imds).await?;
    log::info!("listening on {} (EC2, IMDS, /_emulator)", running.addr);
    // One line on stdout for scripts that start the emulator on port 0.
    println!("cer-cloud-emulator listening on {}", running.addr);
    for (instance, addr) in &running.imds_addrs {
        log::info!("IMDS for {instance} on {addr}");
    }
    tokio::signal::ctrl_c().await?;
    log::info!("stopping");
    running.stop();
    Ok(())
}
