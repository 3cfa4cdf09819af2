//! `cargo xtask deploy --tag x.y.z --dir PATH [--host user@host[:port]]`: put a release in
//! production with Docker Compose, on this machine or over ssh; `--env NAME` on every host of an
//! environment of deploy.yaml (a canary first, then waves), all switched or all put back.
//!
//! 1. check the target (reachable, host key known, directory and compose.yaml there, free disk);
//! 2. take the deploy lock (a second deploy is refused, naming who holds it and since when, or
//!    waits with `--lock-wait`; a dead deploy's lock is taken over and the target reconciled);
//! 3. pull the release on the target: the tag exists, before anything is stopped;
//! 4. back up the data volume (the last N archives are kept);
//! 5. run the release command (the label org.kiora.release-command of its php image, e.g. the
//!    database migrations) once, in a throwaway container of the release with the target's
//!    `.env` and data; if it fails, stop: nothing was switched, the live release serves;
//! 6. switch: `rolling` (default) starts the release beside the live one, gates on health,
//!    points the edge at it and drains the old one; `recreate` is the old Makefile's procedure
//!    (stop, clear and copy the assets, start), with downtime;
//! 7. verify `/health` through the edge; on any failure (or Ctrl-C) put the previous release
//!    back, show the new containers' logs and exit non-zero;
//! 8. append to the target's history (time, tag, revision, who, strategy, result, deploy id).
//!
//! With `--env`, every host runs these steps, scheduled by `deploy/fleet.rs`: checks and pulls in
//! parallel, locks in a fixed order, a canary, then waves; no host drops its old release before
//! every host switched, and any failure (or Ctrl-C) puts every switched host back.
//! `rollback` runs the same switch towards an earlier tag.
//!
//! `--canary 10%`: at step 5 the edge sends that share of the requests to the new
//! release, the rest to the live one; the edge's 5xx rates of both are compared for
//! `--canary-wait`, then the canary is promoted (no worse) or withdrawn (the live release alone
//! again, as after any failure). `--canary-wait 0` leaves the split for a person:
//! `deploy --promote` or `deploy --abort` decides (a plain deploy withdraws it first). With
//! `--env` every host splits at once (no canary host, no waves), the hosts' counts are added up
//! and judged once, and every host is promoted, or every host withdraws it.
//! On a swarm (an environment of `kind: swarm`, or `--swarm --host MANAGER`), `deploy/swarm.rs`
//! deploys compose.yaml as a stack and swarm's own rolling update does the switch.

use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::config::CANARY_WAIT;
use crate::ctx::Ctx;
use crate::deploy::canary::Share;
use crate::deploy::environments::parse_duration;
use crate::deploy::fleet::Wave;
use crate::deploy::options::TargetArgs;
use crate::deploy::rollout::{self, Decision};
use crate::deploy::swarm;
use crate::deploy::switch::Strategy;
use crate::reference::ReleaseTag;

#[derive(clap::Args)]
pub struct Args {
    /// Release tag to deploy (must be in the registry).
    #[arg(long, required_unless_present_any = ["promote", "abort"])]
    pub tag: Option<ReleaseTag>,
    /// Send this share of the requests (1% to 99%) to the release through the edge (with --env: every host's edge at once), compare the error rates for --canary-wait, then promote or withdraw it.
    #[arg(long, value_name = "PERCENT", value_parser = parse_share, conflicts_with_all = ["wave", "canary_host"])]
    pub canary: Option<Share>,
    /// Promote the canary left by `--canary P --canary-wait 0` to every request (with --env: on every host).
    #[arg(long, conflicts_with_all = ["tag", "abort", "canary"])]
    pub promote: bool,
    /// Withdraw the canary left by `--canary P --canary-wait 0`: the live release gets every request again (with --env: on every host).
    #[arg(long, conflicts_with_all = ["tag", "canary"])]
    pub abort: bool,
    /// rolling: new containers beside the old, switch once healthy; recreate: the old Makefile's stop-and-start [default: rolling].
    #[arg(long, value_enum)]
    pub strategy: Option<Strategy>,
    /// Hosts switched together after the canary: a number, or a share of the fleet such as 50% [default: 1]. With --env only.
    #[arg(long, conflicts_with = "dir", value_parser = parse_wave)]
    pub wave: Option<Wave>,
    /// The host that switches first, alone [default: the environment's canary, else its first host].
    #[arg(long, conflicts_with = "dir", value_name = "HOST")]
    pub canary_host: Option<String>,
    /// With --env: keep checking the canary host this long before the other hosts switch, e.g. 30s or 2m. With --canary: compare the error rates this long [default: 60s]; 0 leaves the decision to --promote/--abort.
    #[arg(long, value_parser = parse_wait)]
    pub canary_wait: Option<Duration>,
    /// When another deploy holds a host's lock, wait for it this long (90s, 10m, 1h) instead of failing.
    #[arg(long, value_name = "DURATION", value_parser = parse_wait)]
    pub lock_wait: Option<Duration>,
    /// Do not run the release's command (org.kiora.release-command of its php image: its database migrations) before the switch.
    #[arg(long)]
    pub skip_release_command: bool,
    #[command(flatten)]
    pub target: TargetArgs,
}

fn parse_wave(text: &str) -> Result<Wave, String> {
    Wave::parse(text).map_err(|e| e.to_string())
}

fn parse_wait(text: &str) -> Result<Duration, String> {
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    parse_duration(text).map_err(|e| e.to_string())
}

fn parse_share(text: &str) -> Result<Share, String> {
    Share::parse(text).map_err(|e| e.to_string())
}

/// Flag combinations clap cannot express, refused before anything connects.
fn check_flags(args: &Args, env: bool) -> Result<()> {
    if args.canary_wait.is_some() && !env && args.canary.is_none() {
        bail!("--canary-wait needs --env (how long the canary host is watched) or --canary PERCENT (how long the shares are compared)");
    }
    if args.canary.is_some() && args.strategy == Some(Strategy::Recreate) {
        bail!("--canary needs the rolling strategy: recreate stops the live release the canary is compared with");
    }
    Ok(())
}

pub fn run(ctx: &Ctx, args: &Args) -> Result<()> {
    if let Some((swarm, env_file)) =
        args.target
            .swarm(&ctx.root, &ctx.config.registry, &ctx.runner)?
    {
        if args.canary.is_some() || args.promote || args.abort {
            bail!("--canary, --promote and --abort split an edge's traffic on Compose targets; on a swarm, its start-first rolling update (update_config in compose.yaml) checks each new task instead");
        }
        let tag = args.tag.as_ref().context("--tag is required")?;
        let secrets = swarm::secrets(env_file.as_deref())?;
        return swarm.deploy(tag.as_str(), &secrets);
    }
    let mut fleet = args.target.fleet(&ctx.root)?;
    check_flags(args, fleet.env.is_some())?;
    if args.promote || args.abort {
        fleet.lock_wait = args.lock_wait;
        let decision = if args.promote {
            Decision::Promote
        } else {
            Decision::Abort
        };
        return rollout::decide(&ctx.runner, &fleet, decision);
    }
    let tag = args.tag.as_ref().context("--tag is required")?;
    if let Some(strategy) = args.strategy {
        fleet.strategy = strategy;
    }
    if let Some(wave) = args.wave {
        fleet.wave = wave;
    }
    if let Some(host) = &args.canary_host {
        fleet.canary = fleet.host_index(host).context("--canary-host")?;
    }
    if let Some(wait) = args.canary_wait {
        fleet.canary_wait = Some(wait);
    }
    fleet.lock_wait = args.lock_wait;
    fleet.release_command = !args.skip_release_command;
    if let Some(share) = args.canary {
        fleet.traffic_canary = Some(share);
        fleet.canary_wait = Some(args.canary_wait.unwrap_or(CANARY_WAIT));
    }
    rollout::deploy(&ctx.runner, &fleet, tag, "deploy").map(drop)
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
    fn the_release_command_runs_unless_skipped() {
        let parse = |a: &[&str]| {
            Cli::try_parse_from(["x", "--tag", "1.0.0", "--dir", "/srv"].iter().chain(a))
                .unwrap()
                .args
        };
        assert!(!parse(&[]).skip_release_command);
        assert!(parse(&["--skip-release-command"]).skip_release_command);
    }

    #[test]
    fn fleet_flags_need_an_environment() {
        let parse = |a: &[&str]| Cli::try_parse_from(std::iter::once("x").chain(a.iter().copied()));
        for flag in [["--wave", "2"], ["--canary-host", "web1"]] {
            let mut a = vec!["--tag", "1.0.0", "--dir", "/srv"];
            a.extend(flag);
            assert!(parse(&a).is_err(), "{flag:?} without --env");
            let mut a = vec!["--tag", "1.0.0", "--env", "prod"];
            a.extend(flag);
            assert!(parse(&a).is_ok(), "{flag:?} with --env");
        }
        // --canary-wait: the canary host's watch (--env) or the comparison of a --canary.
        let wait = |a: &[&str]| check_flags(&parse(a).unwrap().args, a.contains(&"--env"));
        assert!(wait(&["--tag", "1", "--dir", "/srv", "--canary-wait", "3s"]).is_err());
        assert!(wait(&["--tag", "1", "--env", "p", "--canary-wait", "3s"]).is_ok());
        let a = [
            "--tag",
            "1",
            "--dir",
            "/s",
            "--canary",
            "10%",
            "--canary-wait",
            "0",
        ];
        assert!(wait(&a).is_ok());
        assert_eq!(parse(&a).unwrap().args.canary_wait, Some(Duration::ZERO));
        assert!(wait(&[
            "--tag",
            "1",
            "--dir",
            "/s",
            "--canary",
            "5",
            "--strategy",
            "recreate"
        ])
        .is_err());
    }

    #[test]
    fn canary_promote_and_abort_flags() {
        let parse = |a: &[&str]| Cli::try_parse_from(std::iter::once("x").chain(a.iter().copied()));
        let args = parse(&["--tag", "1.0.0", "--dir", "/s", "--canary", "10%"])
            .unwrap()
            .args;
        assert_eq!(args.canary.unwrap().to_string(), "10%");
        assert!(parse(&["--tag", "1.0.0", "--dir", "/s", "--canary", "100%"]).is_err());
        assert!(parse(&["--tag", "1.0.0", "--env", "p", "--canary", "10%"]).is_ok());
        // Over a fleet every host splits at once: no canary host, no waves.
        for flag in [["--canary-host", "web1"], ["--wave", "2"]] {
            let mut a = vec!["--tag", "1.0.0", "--env", "p", "--canary", "10%"];
            a.extend(flag);
            assert!(parse(&a).is_err(), "{flag:?}");
        }
        // --promote / --abort need no tag, and take none.
        assert!(parse(&["--promote", "--dir", "/s"]).unwrap().args.promote);
        assert!(parse(&["--abort", "--dir", "/s"]).unwrap().args.abort);
        assert!(parse(&["--dir", "/s"]).is_err(), "--tag or a decision");
        assert!(parse(&["--promote", "--tag", "1.0.0", "--dir", "/s"]).is_err());
        assert!(parse(&["--promote", "--abort", "--dir", "/s"]).is_err());
    }
}
