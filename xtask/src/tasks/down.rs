//! `cargo xtask down`: stop what `cargo xtask up` started. The contacts volume is kept unless
//! `--volumes` is given.

use anyhow::Result;

use crate::config::LOCAL_PROJECT;
use crate::ctx::Ctx;
use crate::deploy::local_stack::LocalStack;

#[derive(clap::Args)]
pub struct Args {
    /// Also delete the contacts data volume.
    #[arg(long)]
    pub volumes: bool,
    /// Compose project name of the local stack.
    #[arg(long, env = "XTASK_LOCAL_PROJECT", default_value = LOCAL_PROJECT)]
    pub project_name: String,
}

pub fn run(ctx: &Ctx, args: &Args) -> Result<()> {
    let (volumes, project) = (args.volumes, args.project_name.as_str());
    let stack = LocalStack::new(&ctx.root, &ctx.config, &ctx.root, project, "dev", 0)?;
    stack.remove(&ctx.runner, volumes)
}
