//! `cargo xtask rollback [--to TAG] --dir PATH [--host ...]`: return the target to the previous
//! successful release from its history (or to TAG), with the same zero-downtime switch as
//! `deploy`. Fast: the images are already on the target, so nothing is pulled.

use anyhow::Result;

use crate::ctx::Ctx;
use crate::deploy::options::TargetArgs;
use crate::deploy::switch::rollback;
use crate::reference::ReleaseTag;

#[derive(clap::Args)]
pub struct Args {
    /// Release to return to (default: the previous successful one in the history).
    #[arg(long)]
    pub to: Option<ReleaseTag>,
    #[command(flatten)]
    pub target: TargetArgs,
}

pub fn run(ctx: &Ctx, args: &Args) -> Result<()> {
    rollback(ctx, &args.target.options()?, args.to.as_deref()).map(drop)
}
