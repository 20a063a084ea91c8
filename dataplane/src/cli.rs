//! cer-dataplane's command line (clap): the binary parses it, `cer-docgen`
//! renders its man page from it.

use clap::Parser;
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "cer-dataplane",
    version,
    about = "CER userspace IPv4 router on DPDK"
)]
pub struct Args {
    /// Node configuration file (TOML).
    #[arg(long, short)]
    pub config: PathBuf,
    /// Validate the config, print the EAL arguments, and exit.
    #[arg(long)]
    pub check: bool,
}
