//! `cargo xtask logs [--service S]... [--since T] [-f] --dir PATH [--host ...]`: the live
//! release's logs on a target, per service or all; `-f` follows them until Ctrl-C (exit 130).
//! `--env NAME`: the logs of every host of the environment at once (or `--primary`, `--only
//! HOST`), each line prefixed with its host (`web1 | ...`). On a swarm: `docker service logs` of
//! each service on the manager (every task's lines, on whatever node), prefixed with the service.

use anyhow::{bail, Context, Result};

use crate::cmd::{Cmd, Runner};
use crate::ctx::Ctx;
use crate::deploy::deployment::Deployment;
use crate::deploy::ops::{hanging_up_with_us, live_logs, LogOptions, Service, Since};
use crate::deploy::options::{HostChoice, TargetArgs};
use crate::deploy::swarm::Swarm;
use crate::deploy::swarm_ops;

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
    #[command(flatten)]
    pub hosts: HostChoice,
}

pub fn run(ctx: &Ctx, args: &Args) -> Result<()> {
    let options = LogOptions {
        follow: args.follow,
        since: args.since.clone(),
        tail: args.tail,
    };
    let runner = &ctx.runner;
    if let Some((swarm, _)) = args.target.swarm(&ctx.root, &ctx.config.registry, runner)? {
        return swarm_logs(ctx, args, &swarm, &options);
    }
    let fleet = args.hosts.narrow(args.target.fleet(&ctx.root)?)?;
    let Some(env) = &fleet.env else {
        // One target: its logs as compose writes them, attached to our output.
        let opts = args.target.options()?;
        opts.target.check(runner)?;
        let d = Deployment::new(&opts.target, runner, &opts.stack);
        let cmd = live_logs(&d, &args.services, &options)?;
        // Followed over ssh: the remote follower must end when we do (see hanging_up_with_us).
        let cmd = if args.follow {
            hanging_up_with_us(cmd)
        } else {
            cmd
        };
        return match runner.attached(&cmd, false)? {
            0 => Ok(()),
            code => bail!(
                "`docker compose logs` on {} failed (exit code {code})",
                opts.target.describe()
            ),
        };
    };
    // Every host's command first: a host that cannot show logs is refused before any starts.
    let mut cmds = Vec::new();
    for (h, d) in fleet.hosts.iter().zip(fleet.deployments(runner)) {
        let cmd = h
            .target
            .check(runner)
            .and_then(|()| live_logs(&d, &args.services, &options))
            .with_context(|| format!("{} of environment {env}", h.label))?;
        cmds.push((h.label.clone(), cmd));
    }
    let failed = stream_each(runner, cmds, args.follow)?;
    if !failed.is_empty() {
        bail!(
            "`docker compose logs` failed on {} of environment {env}",
            failed.join(", ")
        );
    }
    Ok(())
}

/// On a swarm: each service's `docker service logs` on the manager, one after the other, or all
/// at once when following; each line prefixed with its service.
fn swarm_logs(ctx: &Ctx, args: &Args, swarm: &Swarm, options: &LogOptions) -> Result<()> {
    if args.hosts.primary || args.hosts.only.is_some() {
        bail!("--primary and --only choose a host of a fleet; a swarm's logs come from its manager (--service chooses)");
    }
    let cmds = swarm_ops::log_services(&args.services)
        .into_iter()
        .map(|service| {
            let cmd = swarm_ops::service_logs(&swarm.stack, service, options);
            (service.name().to_string(), swarm.manager.cmd(cmd))
        })
        .collect();
    let failed = stream_each(&ctx.runner, cmds, options.follow)?;
    if !failed.is_empty() {
        bail!(
            "`docker service logs` failed on {} for {}; is the stack deployed (`status`)?",
            swarm.manager.target.describe(),
            failed.join(", ")
        );
    }
    Ok(())
}

/// Runs labelled log commands, each line prefixed with its label. Following: all at once, each
/// hanging up with us (see hanging_up_with_us); otherwise one after the other, so that each
/// one's lines stay together. The failed ones, as `LABEL (exit code N)`.
fn stream_each(runner: &Runner, cmds: Vec<(String, Cmd)>, follow: bool) -> Result<Vec<String>> {
    let codes = if follow {
        let followed: Vec<(String, Cmd)> = cmds
            .iter()
            .map(|(label, cmd)| (label.clone(), hanging_up_with_us(cmd.clone())))
            .collect();
        runner.stream_labelled(&followed)?
    } else {
        // Labels padded here, since each run sees one: every command's lines line up.
        let width = cmds.iter().map(|(l, _)| l.chars().count()).max();
        let mut codes = Vec::new();
        for (label, cmd) in &cmds {
            let label = format!("{label:<0$}", width.unwrap_or(0));
            codes.extend(runner.stream_labelled(&[(label, cmd.clone())])?);
        }
        codes
    };
    Ok(cmds
        .iter()
        .zip(&codes)
        .filter(|(_, &code)| code != 0)
        .map(|((label, _), code)| format!("{label} (exit code {code})"))
        .collect())
}
