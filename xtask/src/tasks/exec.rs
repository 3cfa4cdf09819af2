//! `cargo xtask exec [--new [--tag T]] [-i] --dir PATH [--host ...] -- CMD...`: a command in the
//! live release's php container, or in a throwaway container of a release with the target's
//! `.env` and data volume. Its exit status is ours; its argv is never joined into a shell string.

use std::io::IsTerminal;

use anyhow::{bail, Context, Result};

use crate::cmd::{Cmd, Exited};
use crate::ctx::Ctx;
use crate::deploy::deployment::Deployment;
use crate::deploy::ops::{exec_command, php_image_of, run_new_command, with_remote_tty, Attach};
use crate::deploy::options::TargetArgs;
use crate::deploy::stack::Stack;
use crate::reference::ReleaseTag;

#[derive(clap::Args)]
pub struct Args {
    /// Run in a new throwaway container (removed at the end) instead of the live php container.
    #[arg(long)]
    pub new: bool,
    /// With --new: the release whose php image runs it (default: the live one).
    #[arg(long, requires = "new")]
    pub tag: Option<ReleaseTag>,
    /// Keep stdin open, with a terminal when this one is (for a shell: `exec -i -- bash`).
    #[arg(short, long)]
    pub interactive: bool,
    #[command(flatten)]
    pub target: TargetArgs,
    /// The command and its arguments, after `--`; each is passed as one argument.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<String>,
}

pub fn run(ctx: &Ctx, args: &Args) -> Result<()> {
    let opts = args.target.options()?;
    let runner = &ctx.runner;
    opts.target.check(runner)?;
    let d = Deployment::new(&opts.target, runner, &opts.stack);
    let stack = Stack::new(&d);
    let attach = Attach {
        interactive: args.interactive,
        tty: args.interactive && std::io::stdin().is_terminal(),
    };
    let cmd = if args.new {
        new_container(&d, &stack, args, attach)?
    } else {
        let Some(live) = stack.live()? else {
            bail!(
                "nothing is deployed on {} yet; use --new --tag TAG to run in a release's image",
                opts.target.describe()
            )
        };
        let Some(php) = stack
            .containers(&stack.project(live), Some("php"))?
            .into_iter()
            .next()
        else {
            bail!(
                "the live release {} has no php container",
                stack.project(live)
            )
        };
        exec_command(&php, &args.command, attach)
    };
    let mut cmd = d.remote.cmd(cmd);
    if attach.tty {
        cmd = with_remote_tty(cmd);
    }
    match runner.attached(&cmd, args.interactive)? {
        0 => Ok(()),
        code => Err(Exited(code).into()),
    }
}

/// `docker run --rm` of the release's php image, pulled first if the target lacks it.
fn new_container(d: &Deployment, stack: &Stack, args: &Args, attach: Attach) -> Result<Cmd> {
    let tag = match &args.tag {
        Some(tag) => tag.to_string(),
        None => match stack.live_release()?.and_then(|(_, tag)| tag) {
            Some(tag) => tag,
            None => bail!(
                "nothing is deployed on {} yet: give the release with --tag",
                d.target().describe()
            ),
        },
    };
    let image = php_image_of(&d.read("compose.yaml")?, &tag)?;
    d.pull_missing(std::slice::from_ref(&image))
        .with_context(|| format!("getting {image} on the target"))?;
    let env = d.target().path(".env");
    let env_file = d
        .remote
        .succeeds(Cmd::new("test").args(["-f", &env]))?
        .then_some(env);
    let name = format!("{}-exec-{}", d.stack, std::process::id());
    Ok(run_new_command(
        d,
        &image,
        env_file.as_deref(),
        &name,
        &args.command,
        attach,
    ))
}
