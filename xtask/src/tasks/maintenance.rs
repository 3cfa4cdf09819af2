//! `cargo xtask maintenance on|off|status --dir PATH [--host ...]`: the edge's maintenance page
//! (503 with Retry-After for everything but the health checks), turned on or off without
//! touching the releases. `--env NAME`: every host of the environment, which ends on one state:
//! nothing changes unless every host can change, and a host that fails puts every host back as
//! it was.

use anyhow::{bail, Result};

use crate::ctx::Ctx;
use crate::deploy::deployment::Deployment;
use crate::deploy::maintenance::{self, Change, DEFAULT_MESSAGE};
use crate::deploy::options::TargetArgs;
use crate::deploy::rollout::Fleet;
use crate::progress::{host_line, print_line};

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub action: Action,
}

#[derive(clap::Subcommand)]
pub enum Action {
    /// Serve the 503 maintenance page (again: a new message replaces the old one).
    On {
        /// The text of the page (HTML-escaped).
        #[arg(long, default_value = DEFAULT_MESSAGE)]
        message: String,
        /// Seconds clients are told to wait (Retry-After).
        #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u32).range(1..=86400))]
        retry_after: u32,
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Back to the live release.
    Off {
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Say whether maintenance mode is on.
    Status {
        #[command(flatten)]
        target: TargetArgs,
    },
}

pub fn run(ctx: &Ctx, args: &Args) -> Result<()> {
    let target = match &args.action {
        Action::On { target, .. } | Action::Off { target } | Action::Status { target } => target,
    };
    let fleet = target.fleet(&ctx.root)?;
    if let Some(env) = &fleet.env {
        return on_fleet(ctx, env, &fleet, &args.action);
    }
    let opts = target.options()?;
    opts.target.check(&ctx.runner)?;
    let d = Deployment::new(&opts.target, &ctx.runner, &opts.stack);
    let where_ = opts.target.describe();
    match &args.action {
        Action::On {
            message,
            retry_after,
            ..
        } => {
            maintenance::on(&d, message, *retry_after)?;
            ctx.runner.say(format!(
                "maintenance mode is on at {where_}: 503 (Retry-After: {retry_after}) except health checks"
            ));
        }
        Action::Off { .. } => {
            maintenance::off(&d)?;
            ctx.runner.say(format!(
                "maintenance mode is off at {where_}: the live release serves"
            ));
        }
        Action::Status { .. } => {
            println!("{}", maintenance::status_line(&d)?);
        }
    }
    Ok(())
}

/// `maintenance on|off|status --env`: every host at once (see [`maintenance::change_fleet`]).
fn on_fleet(ctx: &Ctx, env: &str, fleet: &Fleet, action: &Action) -> Result<()> {
    let hosts: Vec<(String, Deployment)> = fleet
        .hosts
        .iter()
        .map(|h| h.label.clone())
        .zip(fleet.deployments(&ctx.runner))
        .collect();
    let names: Vec<&str> = fleet.hosts.iter().map(|h| h.label.as_str()).collect();
    let where_ = format!("the {} hosts of {env} ({})", names.len(), names.join(", "));
    let change = match action {
        Action::On {
            message,
            retry_after,
            ..
        } => Change::On {
            message: message.clone(),
            retry_after: *retry_after,
        },
        Action::Off { .. } => Change::Off,
        Action::Status { .. } => return fleet_status(env, &hosts),
    };
    maintenance::change_fleet(&hosts, &change)?;
    ctx.runner.say(match change {
        Change::On { retry_after, .. } => format!(
            "maintenance mode is on at {where_}: 503 (Retry-After: {retry_after}) except health checks"
        ),
        Change::Off => format!("maintenance mode is off at {where_}: the live release serves"),
    });
    Ok(())
}

/// One line per host; an error when they are not all in the same state, or one cannot be asked.
fn fleet_status(env: &str, hosts: &[(String, Deployment)]) -> Result<()> {
    let states = maintenance::fleet_states(hosts);
    let width = hosts.iter().map(|(l, _)| l.chars().count()).max();
    let mut seen = std::collections::BTreeSet::new();
    let mut down = Vec::new();
    for ((label, _), state) in hosts.iter().zip(&states) {
        let text = match state {
            Ok(state) => {
                seen.insert(state.describe());
                format!("maintenance: {}", state.describe())
            }
            Err(err) => {
                down.push(label.as_str());
                format!("cannot ask: {}", crate::deploy::fleet::one_line(err))
            }
        };
        print_line(true, &host_line(label, width.unwrap_or(0), &text));
    }
    if seen.len() > 1 {
        bail!("the hosts of {env} are not in one maintenance state; run `cargo xtask maintenance on --env {env}` (or off) to put them all in one");
    }
    if !down.is_empty() {
        bail!("cannot ask {} of environment {env}", down.join(", "));
    }
    Ok(())
}
