//! `cargo xtask backup --dir PATH [--host ...]` dumps the stack's database (`pg_dump` in its
//! db container) into the target's `backups/` (the last N kept); `--restore NAME` puts one
//! back (after a safety dump of the database as it is), in one transaction, while the app
//! serves on. On a swarm (`--env` of kind swarm, `--swarm --host MANAGER`): the same through
//! the db task, the dumps kept on its node.

use anyhow::{bail, Context, Result};

use crate::ctx::Ctx;
use crate::deploy::db;
use crate::deploy::deployment::Deployment;
use crate::deploy::options::TargetArgs;
use crate::deploy::swarm::Swarm;

#[derive(clap::Args)]
pub struct Args {
    /// Dump to restore (a file name in the target's backups/, or on a swarm's db node).
    #[arg(long)]
    pub restore: Option<String>,
    #[command(flatten)]
    pub target: TargetArgs,
}

pub fn run(ctx: &Ctx, args: &Args) -> Result<()> {
    if let Some((swarm, _)) = args
        .target
        .swarm(&ctx.root, &ctx.config.registry, &ctx.runner)?
    {
        return on_swarm(&swarm, args.restore.as_deref(), args.target.keep_backups());
    }
    let (opts, restore) = (&args.target.options()?, args.restore.as_deref());
    check_name(restore)?;
    let runner = &ctx.runner;
    opts.target.check(runner)?;
    let d = Deployment::new(&opts.target, runner, &opts.stack);
    if d.db_container()?.is_none() && !runner.dry_run {
        bail!(
            "no database runs on {} yet (project {}-db): deploy first",
            opts.target.describe(),
            opts.stack
        );
    }
    // Before a restore: check the dump is there first, and prune nothing (it could be it).
    if let Some(name) = restore {
        if !d.backups()?.iter().any(|n| n == name) {
            bail!(
                "no backups/{name} on {}; `cargo xtask status` lists the dumps",
                opts.target.describe()
            );
        }
    }
    let (label, keep) = if restore.is_some() {
        ("before-restore", usize::MAX)
    } else {
        ("manual", opts.keep_backups)
    };
    let _lock = d.lock(if restore.is_some() {
        "restore"
    } else {
        "backup"
    })?;
    let safety = d
        .backup(label, keep)?
        .context("no database runs on the target")?;
    runner.say(format!("backed up the database to backups/{safety}"));
    let Some(name) = restore else {
        return Ok(());
    };
    d.restore(name)?;
    runner.say(format!(
        "restored backups/{name} (the database before it is in backups/{safety})"
    ));
    Ok(())
}

/// A name `--restore` accepts: a dump's file name (never a path elsewhere).
fn check_name(restore: Option<&str>) -> Result<()> {
    match restore {
        Some(name) if !db::is_dump_name(name) => bail!("invalid dump name {name:?}: expected a file name a backup printed, such as db-20261121T100000Z-manual.dump"),
        _ => Ok(()),
    }
}

fn on_swarm(swarm: &Swarm, restore: Option<&str>, keep: usize) -> Result<()> {
    check_name(restore)?;
    let db = swarm.db()?;
    let say = |line: String| swarm.manager.say(line);
    match restore {
        None => {
            let name = swarm.backup_db(&db, "manual", keep)?;
            say(format!(
                "backed up the database to {name} on its node ({})",
                db.remote.target.describe()
            ));
        }
        Some(name) => {
            let safety = swarm.restore_db(&db, name)?;
            say(format!(
                "restored {name} (the database before it is in {safety})"
            ));
        }
    }
    Ok(())
}
