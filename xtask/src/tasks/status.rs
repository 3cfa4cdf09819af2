//! `cargo xtask status --dir PATH [--host ...]`: the target's live release, its containers'
//! health, the last lines of the deploy history and the backups.

use anyhow::Result;

use crate::ctx::Ctx;
use crate::deploy::deployment::Deployment;
use crate::deploy::options::TargetArgs;
use crate::deploy::stack::Stack;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub target: TargetArgs,
}

pub fn run(ctx: &Ctx, args: &Args) -> Result<()> {
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
        }
        None => println!("live:     nothing deployed yet"),
    }
    println!("{}", crate::deploy::maintenance::status_line(&d)?);
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
