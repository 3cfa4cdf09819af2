//! `cargo xtask exec [--new [--tag T]] [-i] --dir PATH [--host ...] -- CMD...`: a command in the
//! live release's php container, or in a throwaway container of a release with the target's
//! `.env` and data volume. Its exit status is ours; its argv is never joined into a shell string.
//! `--env NAME`: on every host of the environment in turn, each line prefixed with its host, the
//! exit status the first non-zero one (the hosts that failed are named); `--primary` or
//! `--only HOST`: on that one host, as on a single target (`-i` needs one host). On a swarm: in
//! the container of a running php task, on the node that runs it.

use std::io::IsTerminal;

use anyhow::{bail, Context, Result};

use crate::cmd::{Cmd, Exited};
use crate::ctx::Ctx;
use crate::deploy::deployment::Deployment;
use crate::deploy::ops::Service;
use crate::deploy::ops::{exec_command, php_image_of, run_new_command, with_remote_tty, Attach};
use crate::deploy::options::{HostChoice, TargetArgs};
use crate::deploy::stack::Stack;
use crate::deploy::swarm::Swarm;
use crate::deploy::swarm_ops;
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
    #[command(flatten)]
    pub hosts: HostChoice,
    /// The command and its arguments, after `--`; each is passed as one argument.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<String>,
}

pub fn run(ctx: &Ctx, args: &Args) -> Result<()> {
    let runner = &ctx.runner;
    if let Some((swarm, _)) = args.target.swarm(&ctx.root, &ctx.config.registry, runner)? {
        return on_swarm(ctx, args, &swarm);
    }
    let fleet = args.hosts.narrow(args.target.fleet(&ctx.root)?)?;
    let attach = Attach {
        interactive: args.interactive,
        tty: args.interactive && std::io::stdin().is_terminal(),
    };
    if fleet.hosts.len() > 1 {
        if args.interactive {
            bail!(
                "-i needs one host, and environment {} has {}: add --primary or --only HOST",
                fleet.env.as_deref().unwrap_or_default(),
                fleet.hosts.len()
            );
        }
        return on_every_host(ctx, args, &fleet);
    }
    // One target, or the one chosen host of an environment: attached to our terminal.
    let host = &fleet.hosts[0];
    host.target.check(runner)?;
    let d = Deployment::new(&host.target, runner, &fleet.stack);
    let cmd = command_on(&d, args, attach)?;
    match runner.attached(&cmd, args.interactive)? {
        0 => Ok(()),
        code => Err(Exited(code).into()),
    }
}

/// `exec --env`: the command on each host in turn, its output prefixed with the host. Every host
/// gets its turn, whatever the previous one did (a one-off task such as clearing a cache
/// belongs on all of them); the exit status is the first non-zero one.
fn on_every_host(ctx: &Ctx, args: &Args, fleet: &crate::deploy::rollout::Fleet) -> Result<()> {
    let runner = &ctx.runner;
    let env = fleet.env.as_deref().unwrap_or_default();
    let width = fleet.hosts.iter().map(|h| h.label.chars().count()).max();
    let mut failed: Vec<(String, i32)> = Vec::new();
    for (h, d) in fleet.hosts.iter().zip(fleet.deployments(runner)) {
        let label = format!("{:<1$}", h.label, width.unwrap_or(0));
        let cmd = h
            .target
            .check(runner)
            .and_then(|()| command_on(&d, args, Attach::default()));
        let code = match cmd {
            Ok(cmd) => runner.stream_labelled(&[(label, cmd)])?[0],
            Err(err) if err.is::<crate::interrupt::Interrupted>() => return Err(err),
            Err(err) => {
                // Said now, under its host: it could not run there at all.
                crate::progress::print_line(
                    false,
                    &crate::progress::host_line(&label, 0, &format!("cannot run: {err:#}")),
                );
                1
            }
        };
        if code != 0 {
            failed.push((h.label.clone(), code));
        }
    }
    let Some(&(_, first)) = failed.first() else {
        runner.say(format!(
            "the command exited 0 on every host of {env} ({})",
            fleet.hosts.len()
        ));
        return Ok(());
    };
    let list: Vec<String> = failed
        .iter()
        .map(|(host, code)| format!("{host} (exit status {code})"))
        .collect();
    // Printed even under -q: which hosts failed is the answer (the status alone cannot say).
    crate::progress::print_line(
        false,
        &format!(
            "error: the command failed on {} of {} hosts of {env}: {}",
            failed.len(),
            fleet.hosts.len(),
            list.join(", ")
        ),
    );
    Err(Exited(first).into())
}

/// The command for one target, as it runs there: `docker exec` in the live php container, or
/// with `--new` a throwaway container of a release.
fn command_on(d: &Deployment, args: &Args, attach: Attach) -> Result<Cmd> {
    let stack = Stack::new(d);
    let cmd = if args.new {
        new_container(d, &stack, args, attach)?
    } else {
        let Some(live) = stack.live()? else {
            bail!(
                "nothing is deployed on {} yet; use --new --tag TAG to run in a release's image",
                d.target().describe()
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
    Ok(cmd)
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

/// On a swarm: in the container of one running php task, on its node (php tasks share the
/// data volume, so one is enough, as on one host).
fn on_swarm(ctx: &Ctx, args: &Args, swarm: &Swarm) -> Result<()> {
    if args.new || args.hosts.primary || args.hosts.only.is_some() {
        bail!("on a swarm, exec runs in a running php task's container: --new, --primary and --only do not apply");
    }
    // No `check` of the node: it has no deploy directory, only the task's container.
    let (node, container) = swarm.task_container(Service::Php)?;
    let tty = args.interactive && std::io::stdin().is_terminal();
    let cmd = node.cmd(swarm_ops::exec_in(
        &container,
        args.interactive,
        tty,
        &args.command,
    ));
    let cmd = if tty { with_remote_tty(cmd) } else { cmd };
    match ctx.runner.attached(&cmd, args.interactive)? {
        0 => Ok(()),
        code => Err(Exited(code).into()),
    }
}
