//! `cargo xtask rollback [--to TAG] --dir PATH [--host ...]`: return the target to the previous
//! successful release from its history (or to TAG), with the same zero-downtime switch as
//! `deploy`. Fast: the images are already on the target, so nothing is pulled. With `--env`, every
//! host goes back together to the release their histories agree on (or `--to TAG`), all or none.
//! Like a deploy, it runs the release command of the release it installs (its migrations find
//! the newer schema and apply nothing).
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
    /// Do not run the release's command (org.kiora.release-command of its php image; its
    /// migrations apply nothing on a newer schema anyway).
    #[arg(long)]
    pub skip_release_command: bool,
    #[command(flatten)]
    pub target: TargetArgs,
}

pub fn run(ctx: &Ctx, args: &Args) -> Result<()> {
    if let Some((swarm, env_file)) =
        args.target
            .swarm(&ctx.root, &ctx.config.registry, &ctx.runner)?
    {
        let secrets = swarm::secrets(env_file.as_deref())?;
        return swarm.rollback(args.to.as_deref(), &secrets);
    }
    let mut fleet = args.target.fleet(&ctx.root)?;
    fleet.release_command = !args.skip_release_command;
    rollout::rollback(&ctx.runner, &fleet, args.to.as_deref()).map(drop)
}
