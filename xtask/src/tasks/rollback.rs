//! `cargo xtask rollback [--to TAG] --dir PATH [--host ...]`: return the target to the previous
//! successful release from its history (or to TAG), with the same zero-downtime switch as
//! `deploy`. Fast: the images are already on the target, so nothing is pulled. With `--env`, every
//! host goes back together to the release their histories agree on (or `--to TAG`), all or none.
//! On a swarm: the stack deployed again with the release before the live one (or TAG).

use anyhow::Result;

use crate::ctx::Ctx;
use crate::deploy::options::TargetArgs;
use crate::deploy::rollout;
use crate::deploy::swarm;
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
    if let Some((swarm, env_file)) =
        args.target
            .swarm(&ctx.root, &ctx.config.registry, &ctx.runner)?
    {
        let secret = swarm::app_secret(env_file.as_deref())?;
        return swarm.rollback(args.to.as_deref(), &secret);
    }
    let fleet = args.target.fleet(&ctx.root)?;
    rollout::rollback(&ctx.runner, &fleet, args.to.as_deref()).map(drop)
}
