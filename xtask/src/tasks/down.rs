//! `cargo xtask down`: stop what `cargo xtask up` started. The volumes (the database's
//! included) are kept unless `--volumes` is given.

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
    let mut stack = LocalStack::new(&ctx.root, &ctx.config, &ctx.root, project, "dev", 0)?;
    // The file compose.yaml names for db's secret, as `up` gave it.
    stack.password_file = crate::deploy::local_env::db_password_file(project)?;
    stack.remove(&ctx.runner, volumes)
}
