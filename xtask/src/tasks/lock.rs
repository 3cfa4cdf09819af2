//! `cargo xtask lock status|release --dir PATH [--host ...]`: the target's deploy lock, for the
//! rare case a person must act. A deploy takes over the lock of a dead holder by itself (see
//! `deploy/lock.rs`); `release` is for a live-looking holder you know is gone. It refuses a holder
//! that is alive unless `--force`, and records the release in the history.

use anyhow::{bail, Result};

use crate::ctx::Ctx;
use crate::deploy::deployment::Deployment;
use crate::deploy::lock::{inspect, Here, Verdict};
use crate::deploy::options::{TargetArgs, TargetOptions};

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub action: Action,
}

#[derive(clap::Subcommand)]
pub enum Action {
    /// Who holds the lock, when its lease was renewed, and whether the holder is alive.
    Status {
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Remove the lock; refused while its holder is alive, unless --force.
    Release {
        /// Release it even though its holder looks alive.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        target: TargetArgs,
    },
}

pub fn run(ctx: &Ctx, args: &Args) -> Result<()> {
    match &args.action {
        Action::Status { target } => status(ctx, &target.options()?),
        Action::Release { force, target } => release(ctx, &target.options()?, *force),
    }
}

fn status(ctx: &Ctx, opts: &TargetOptions) -> Result<()> {
    opts.target.check(&ctx.runner)?;
    let d = Deployment::new(&opts.target, &ctx.runner, &opts.stack);
    let graves = d.graves()?;
    if !graves.is_empty() {
        println!(
            "dead:     {} (locks of dead deploys, moved aside; the next deploy reconciles the target)",
            graves.join(", ")
        );
    }
    let Some(found) = inspect(&d, &Here::detect())? else {
        println!("no deploy lock on {}", opts.target.describe());
        return Ok(());
    };
    println!("lock:     {}", opts.target.describe());
    println!("held by:  {}", found.describe());
    if let Some(age) = found.lease_age {
        println!("lease:    renewed {age} s ago");
    }
    match &found.verdict {
        Verdict::Alive(why) => println!("holder:   alive ({why})"),
        Verdict::Dead(why) => {
            println!("holder:   dead ({why}); the next deploy takes the lock over by itself")
        }
    }
    Ok(())
}

fn release(ctx: &Ctx, opts: &TargetOptions, force: bool) -> Result<()> {
    let runner = &ctx.runner;
    opts.target.check(runner)?;
    let d = Deployment::new(&opts.target, runner, &opts.stack);
    let Some(found) = inspect(&d, &Here::detect())? else {
        runner.say(format!(
            "no deploy lock on {}; nothing to release",
            opts.target.describe()
        ));
        return Ok(());
    };
    let holder = found.describe();
    let why = match (&found.verdict, force) {
        (Verdict::Alive(why), false) => bail!(
            "the deploy lock on {} is held by {holder}, which is alive ({why}); a deploy may be running: wait for it, or use --force if you know it is gone",
            opts.target.describe()
        ),
        (Verdict::Alive(why), true) => format!("forced, holder looked alive: {why}"),
        (Verdict::Dead(why), _) => why.clone(),
    };
    d.force_release()?;
    d.record(
        "-",
        "-",
        "",
        "lock",
        &format!("lock of {holder} released by hand ({why})"),
    )?;
    runner.say(format!("released the deploy lock of {holder} ({why})"));
    Ok(())
}
