//! `cargo xtask maintenance on|off|status --dir PATH [--host ...]`: the edge's maintenance page
//! (503 with Retry-After for everything but the health checks), turned on or off without
//! touching the releases.

use anyhow::Result;

use crate::ctx::Ctx;
use crate::deploy::deployment::Deployment;
use crate::deploy::maintenance::{self, DEFAULT_MESSAGE};
use crate::deploy::options::TargetArgs;

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
