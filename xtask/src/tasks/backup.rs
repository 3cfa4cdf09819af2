//! `cargo xtask backup --dir PATH [--host ...]` archives the data volume on the target into
//! `backups/` (the last N kept); `--restore ARCHIVE` puts one back (after backing up the current
//! data first), stopping the php and worker containers of the live release meanwhile.
//! On a swarm (`--env` of kind swarm, `--swarm --host MANAGER`): a `pg_dump` of the stack's
//! database through its task, kept on its node (`--restore db-....dump` puts one back, after a
//! safety dump, while the app serves on).

use anyhow::{bail, Context, Result};

use crate::ctx::Ctx;
use crate::deploy::deployment::Deployment;
use crate::deploy::options::TargetArgs;
use crate::deploy::stack::Stack;
use crate::deploy::swarm::Swarm;
use crate::deploy::swarm_db;

#[derive(clap::Args)]
pub struct Args {
    /// Archive (a file name in the target's backups/) to restore.
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
    if let Some(archive) = restore {
        let valid =
            archive.starts_with("data-") && archive.ends_with(".tar.gz") && !archive.contains('/');
        if !valid {
            bail!("invalid archive name {archive:?}: expected a file name from backups/ such as data-20261121T100000Z-1.4.0.tar.gz");
        }
    }
    let runner = &ctx.runner;
    opts.target.check(runner)?;
    let d = Deployment::new(&opts.target, runner, &opts.stack);
    let stack = Stack::new(&d);
    let live = stack
        .live()?
        .context("nothing is deployed on the target yet: no data volume to back up or restore")?;
    let image = stack
        .image_of(live, "php")?
        .context("the live release has no php container")?;
    // Before a restore: check the archive is there first, and prune nothing (it could be it).
    if let Some(archive) = restore {
        if !d.backups()?.iter().any(|name| name == archive) {
            bail!(
                "no backups/{archive} on {}; `cargo xtask status` lists the archives",
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
        .backup(&image, label, keep)?
        .context("the data volume does not exist")?;
    runner.say(format!("backed up the data volume to backups/{safety}"));
    let Some(archive) = restore else {
        return Ok(());
    };
    stack.stop_services(live, &["worker", "php"])?;
    // The standby's php too: nothing may have the data open while it is replaced (a rollback
    // then starts it again).
    if stack.standby(Some(live))?.is_some() {
        stack.stop_services(live.other(), &["php"])?;
    }
    let restored = d.restore(&image, archive);
    let started = stack
        .start(live, std::time::Duration::from_secs(120))
        // The php just restarted: every nginx worker must find it, not only the one the
        // check reached.
        .and_then(|()| stack.reload_nginx(live))
        // Done when the public port serves again, as after a deploy: the reloaded workers
        // take a moment to replace the old ones, which answer 502 meanwhile.
        .and_then(|()| d.http_check(&image, stack.port()?));
    restored?;
    started.context("the live release did not come back healthy after the restore")?;
    runner.say(format!(
        "restored backups/{archive} (the data before it is in backups/{safety})"
    ));
    Ok(())
}

fn on_swarm(swarm: &Swarm, restore: Option<&str>, keep: usize) -> Result<()> {
    if let Some(name) = restore {
        if !swarm_db::is_dump_name(name) {
            bail!("invalid dump name {name:?}: expected a name a swarm backup printed, such as db-20261121T100000Z-manual.dump");
        }
    }
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
