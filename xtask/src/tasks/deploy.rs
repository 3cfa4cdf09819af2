//! `cargo xtask deploy --tag x.y.z --dir PATH [--host user@host[:port]]`: put a release in
//! production with Docker Compose, on this machine or over ssh; `--env NAME` on every host of an
//! environment of deploy.yaml (a canary first, then waves), all switched or all put back.
//!
//! 1. check the target (reachable, host key known, directory and compose.yaml there, free disk);
//! 2. take the deploy lock (a second deploy is refused, naming who holds it and since when, or
//!    waits with `--lock-wait`; a dead deploy's lock is taken over and the target reconciled);
//! 3. pull the release on the target: the tag exists, before anything is stopped;
//! 4. back up the data volume (the last N archives are kept);
//! 5. switch: `rolling` (default) starts the release beside the live one, gates on health,
//!    points the edge at it and drains the old one; `recreate` is the old Makefile's procedure
//!    (stop, clear and copy the assets, start), with downtime;
//! 6. verify `/health` through the edge; on any failure (or Ctrl-C) put the previous release
//!    back, show the new containers' logs and exit non-zero;
//! 7. append to the target's history (time, tag, revision, who, strategy, result, deploy id).
//!
//! With `--env`, every host runs these steps, scheduled by `deploy/fleet.rs`: checks and pulls in
//! parallel, locks in a fixed order, a canary, then waves; no host drops its old release before
//! every host switched, and any failure (or Ctrl-C) puts every switched host back.
//! `rollback` runs the same switch towards an earlier tag.
//!
//! On a swarm (an environment of `kind: swarm`, or `--swarm --host MANAGER`), `deploy/swarm.rs`
//! deploys compose.swarm.yaml as a stack and swarm's own rolling update does the switch.

use std::time::Duration;

use anyhow::Result;

use crate::ctx::Ctx;
use crate::deploy::environments::parse_duration;
use crate::deploy::fleet::Wave;
use crate::deploy::options::TargetArgs;
use crate::deploy::rollout;
use crate::deploy::swarm;
use crate::deploy::switch::Strategy;
use crate::reference::ReleaseTag;

#[derive(clap::Args)]
pub struct Args {
    /// Release tag to deploy (must be in the registry).
    #[arg(long)]
    pub tag: ReleaseTag,
    /// rolling: new containers beside the old, switch once healthy; recreate: the old Makefile's stop-and-start [default: rolling].
    #[arg(long, value_enum)]
    pub strategy: Option<Strategy>,
    /// Hosts switched together after the canary: a number, or a share of the fleet such as 50% [default: 1]. With --env only.
    #[arg(long, conflicts_with = "dir", value_parser = parse_wave)]
    pub wave: Option<Wave>,
    /// The host that switches first, alone [default: the environment's canary, else its first host].
    #[arg(long, conflicts_with = "dir", value_name = "HOST")]
    pub canary_host: Option<String>,
    /// Keep checking the canary this long before the other hosts switch, e.g. 30s or 2m.
    #[arg(long, conflicts_with = "dir", value_parser = parse_wait)]
    pub canary_wait: Option<Duration>,
    /// When another deploy holds a host's lock, wait for it this long (90s, 10m, 1h) instead of failing.
    #[arg(long, value_name = "DURATION", value_parser = parse_wait)]
    pub lock_wait: Option<Duration>,
    #[command(flatten)]
    pub target: TargetArgs,
}

fn parse_wave(text: &str) -> Result<Wave, String> {
    Wave::parse(text).map_err(|e| e.to_string())
}

fn parse_wait(text: &str) -> Result<Duration, String> {
    parse_duration(text).map_err(|e| e.to_string())
}

pub fn run(ctx: &Ctx, args: &Args) -> Result<()> {
    if let Some((swarm, env_file)) =
        args.target
            .swarm(&ctx.root, &ctx.config.registry, &ctx.runner)?
    {
        let secret = swarm::app_secret(env_file.as_deref())?;
        return swarm.deploy(&args.tag, &secret);
    }
    let mut fleet = args.target.fleet(&ctx.root)?;
    if let Some(strategy) = args.strategy {
        fleet.strategy = strategy;
    }
    if let Some(wave) = args.wave {
        fleet.wave = wave;
    }
    if let Some(host) = &args.canary_host {
        fleet.canary = fleet.host_index(host)?;
    }
    if let Some(wait) = args.canary_wait {
        fleet.canary_wait = Some(wait);
    }
    fleet.lock_wait = args.lock_wait;
    rollout::deploy(&ctx.runner, &fleet, &args.tag, "deploy").map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: Args,
    }

    #[test]
    fn fleet_flags_need_an_environment() {
        let parse = |a: &[&str]| Cli::try_parse_from(std::iter::once("x").chain(a.iter().copied()));
        for flag in [
            ["--wave", "2"],
            ["--canary-host", "web1"],
            ["--canary-wait", "3s"],
        ] {
            let mut a = vec!["--tag", "1.0.0", "--dir", "/srv"];
            a.extend(flag);
            assert!(parse(&a).is_err(), "{flag:?} without --env");
            let mut a = vec!["--tag", "1.0.0", "--env", "prod"];
            a.extend(flag);
            assert!(parse(&a).is_ok(), "{flag:?} with --env");
        }
    }
}
