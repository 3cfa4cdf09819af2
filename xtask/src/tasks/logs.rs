//! `cargo xtask logs [--service S]... [--since T] [-f] --dir PATH [--host ...]`: the live
//! release's logs on a target, per service or all; `-f` follows them until Ctrl-C (exit 130).

use anyhow::{bail, Result};

use crate::ctx::Ctx;
use crate::deploy::deployment::Deployment;
use crate::deploy::ops::{logs_for, LogOptions, Service, Since};
use crate::deploy::options::TargetArgs;
use crate::deploy::stack::Stack;

#[derive(clap::Args)]
pub struct Args {
    /// Only this service's logs (repeatable); default: php, worker and nginx of the live release.
    #[arg(long = "service", short = 's', value_enum)]
    pub services: Vec<Service>,
    /// Only lines since then: 10m, 2h30m, an RFC 3339 time or a Unix time.
    #[arg(long)]
    pub since: Option<Since>,
    /// Only the last N lines of each container (before following).
    #[arg(long)]
    pub tail: Option<u32>,
    /// Keep following the logs until Ctrl-C.
    #[arg(short, long)]
    pub follow: bool,
    #[command(flatten)]
    pub target: TargetArgs,
}

pub fn run(ctx: &Ctx, args: &Args) -> Result<()> {
    let opts = args.target.options()?;
    let runner = &ctx.runner;
    opts.target.check(runner)?;
    let d = Deployment::new(&opts.target, runner, &opts.stack);
    let stack = Stack::new(&d);
    let Some(live) = stack.live()? else {
        bail!(
            "nothing is deployed on {} yet: no logs to show",
            opts.target.describe()
        )
    };
    let options = LogOptions {
        follow: args.follow,
        since: args.since.clone(),
        tail: args.tail,
    };
    let cmd = logs_for(&stack, &opts.stack, live, &args.services, &options)?;
    match runner.attached(&d.remote.cmd(cmd), false)? {
        0 => Ok(()),
        code => bail!(
            "`docker compose logs` on {} failed (exit code {code})",
            opts.target.describe()
        ),
    }
}
