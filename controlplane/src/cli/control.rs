//! cer-control's command line (clap): the binary parses it, `cer-docgen`
//! renders its man page from it.

use clap::Parser;
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "cer-control",
    version,
    about = "CER control process: BGP, /32 ownership, dataplane feed"
)]
pub struct Args {
    /// Node configuration file (TOML).
    #[arg(long, short)]
    pub config: PathBuf,
    /// Validate the config and exit.
    #[arg(long)]
    pub check: bool,
}
