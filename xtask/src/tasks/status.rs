//! `cargo xtask status --dir PATH [--host ...]`: the target's live release, its containers'
//! health, the standby (what a rollback switches back to), maintenance mode, HTTPS (the
//! certificate's expiry; a warning under 14 days), the last lines of the deploy history and the
//! backups. `--env NAME`: a table of the environment's hosts (live release, health, last deploy,
//! lock, certificate), and an error when the fleet
//! serves more than one release or a host cannot be asked. On a swarm: one line per service
//! (release, tasks running/desired, last update), an error when one is short of replicas.

use anyhow::{bail, Result};

use crate::ctx::Ctx;
use crate::deploy::deployment::Deployment;
use crate::deploy::fleet;
use crate::deploy::options::TargetArgs;
use crate::deploy::rollout;
use crate::deploy::stack::Stack;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub target: TargetArgs,
}

pub fn run(ctx: &Ctx, args: &Args) -> Result<()> {
    if let Some((swarm, _)) = args
        .target
        .swarm(&ctx.root, &ctx.config.registry, &ctx.runner)?
    {
        return swarm.status();
    }
    let fleet = args.target.fleet(&ctx.root)?;
    if let Some(env) = &fleet.env {
        return fleet_status(ctx, env, &fleet);
    }
    let opts = &args.target.options()?;
    let runner = &ctx.runner;
    opts.target.check(runner)?;
    let d = Deployment::new(&opts.target, runner, &opts.stack);
    let stack = Stack::new(&d);
    println!("target:   {}", opts.target.describe());
    match stack.live_release()? {
        Some((color, tag)) => {
            let tag = tag.unwrap_or_default();
            println!("live:     {tag} ({})", stack.project(color));
            println!("{}", stack.ps(color)?);
            if let Some((color, standby)) = stack.standby_state(Some(color))? {
                let tag = standby
                    .release
                    .unwrap_or_else(|| "an unknown release".into());
                let state = if standby.serving_ready {
                    "php and nginx ready, worker stopped"
                } else {
                    "stopped"
                };
                println!("standby:  {tag} ({state}, {})", stack.project(color));
            }
        }
        None => println!("live:     nothing deployed yet"),
    }
    if let Some(canary) = stack.canary_summary()? {
        println!("canary:   {canary}; decide with `deploy --promote` or `deploy --abort`");
    }
    println!("{}", crate::deploy::maintenance::status_line(&d)?);
    let tls = crate::deploy::tls::state(&d)?;
    println!(
        "{}",
        crate::deploy::tls::describe(&tls, crate::deploy::tls::now())
    );
    println!("history (last 5):");
    let history = d.history()?;
    for e in history.iter().rev().take(5).rev() {
        println!(
            "  {}  {:<12} {:<10} {:<9} {:<20} {}",
            e.time,
            e.tag,
            e.revision.get(..10).unwrap_or(&e.revision),
            e.strategy,
            e.who,
            e.result
        );
    }
    let backups = d.backups()?;
    println!(
        "backups:  {}",
        if backups.is_empty() {
            "none".to_string()
        } else {
            backups.join(", ")
        }
    );
    Ok(())
}

/// One line per host; the fleet's problems (two releases, hosts that did not answer) after it.
fn fleet_status(ctx: &Ctx, env: &str, fleet: &rollout::Fleet) -> Result<()> {
    let hosts = rollout::status(&ctx.runner, fleet);
    let rows: Vec<Vec<String>> = hosts
        .iter()
        .map(|h| match &h.unreachable {
            Some(why) => vec![
                h.label.clone(),
                "?".into(),
                format!("unreachable: {why}"),
                String::new(),
                String::new(),
                String::new(),
            ],
            None => vec![
                h.label.clone(),
                match &h.canary {
                    Some(canary) => format!(
                        "{} (canary: {canary})",
                        h.live.as_deref().unwrap_or("nothing")
                    ),
                    None => h.live.clone().unwrap_or_else(|| "nothing".into()),
                },
                h.health.clone(),
                h.last.clone(),
                h.lock.clone(),
                h.tls.clone(),
            ],
        })
        .collect();
    println!("environment {env} (stack {})", fleet.stack);
    print!(
        "{}",
        fleet::table(
            &["host", "live", "health", "last deploy", "lock", "tls"],
            &rows
        )
    );
    let reachable: Vec<(String, Option<String>)> = hosts
        .iter()
        .filter(|h| h.unreachable.is_none())
        .map(|h| (h.label.clone(), h.live.clone()))
        .collect();
    let split = fleet::split_releases(&reachable);
    if let Some(split) = &split {
        println!("TWO RELEASES: the fleet serves {split}");
    }
    let down: Vec<&str> = hosts
        .iter()
        .filter(|h| h.unreachable.is_some())
        .map(|h| h.label.as_str())
        .collect();
    match (split, down.is_empty()) {
        (Some(split), _) => bail!("environment {env} serves more than one release ({split}); deploy one release to all of it, or roll it back"),
        (None, false) => bail!("cannot ask {} of environment {env}", down.join(", ")),
        (None, true) => Ok(()),
    }
}
