//! `cargo xtask prune [--keep N] --dir PATH [--host ...]`: remove from a target what no kept
//! release needs (release images, stopped containers, hashed assets of the shared volume),
//! backups beyond `--keep-backups`, and trim the local build cache by age and size.
//! `--dry-run` lists what would go and removes nothing.

use std::time::{Duration, SystemTime};

use anyhow::{bail, Result};

use crate::build::{build_cache, cache_trim};
use crate::ctx::Ctx;
use crate::deploy::deployment::Deployment;
use crate::deploy::options::TargetArgs;
use crate::deploy::prune;

#[derive(clap::Args)]
pub struct Args {
    /// Releases kept: those of the last N successful deploys or rollbacks (the live release and
    /// the one `rollback` would pick are always kept).
    #[arg(long, default_value_t = 5)]
    pub keep: usize,
    /// Local build cache entries older than this many days are removed.
    #[arg(long, default_value_t = 30)]
    pub cache_max_age_days: u64,
    /// Then the oldest entries go until the local build cache is under this size (e.g. 2G).
    #[arg(long, default_value = "5G", value_parser = cache_trim::parse_size)]
    pub cache_max_size: u64,
    #[command(flatten)]
    pub target: TargetArgs,
}

pub fn run(ctx: &Ctx, args: &Args) -> Result<()> {
    let opts = args.target.options()?;
    let runner = &ctx.runner;
    opts.target.check(runner)?;
    let d = Deployment::new(&opts.target, runner, &opts.stack);
    let _lock = d.lock("prune")?;
    let plan = prune::plan(&d, args.keep, opts.keep_backups)?;
    let verb = if runner.dry_run {
        "would remove"
    } else {
        "removing"
    };

    let kept = &plan.kept;
    println!(
        "prune on {}: keeping release(s) {} (live: {}, rollback would pick: {})",
        opts.target.describe(),
        if kept.tags.is_empty() {
            "none".to_string()
        } else {
            kept.tags.join(", ")
        },
        kept.live.as_deref().unwrap_or("none"),
        kept.rollback.as_deref().unwrap_or("none"),
    );
    for c in &plan.containers {
        println!("  {verb} container {} ({}, {})", c.name, c.release, c.state);
    }
    for image in &plan.images {
        println!("  {verb} image {image}");
    }
    match &plan.assets {
        Ok(files) => {
            for f in files {
                println!("  {verb} asset {f}");
            }
        }
        Err(why) => println!("  assets volume {why}"),
    }
    for b in &plan.backups {
        println!("  {verb} backup {b}");
    }
    if plan.is_empty() {
        println!("  nothing to remove on the target");
    }
    let failures = prune::apply(&d, &plan)?;
    drop(_lock);

    match build_cache::cache_dir() {
        Some(cache) => {
            let entries = cache_trim::entries(&cache);
            let gone = cache_trim::to_remove(
                &entries,
                SystemTime::now(),
                Duration::from_secs(args.cache_max_age_days * 86400),
                args.cache_max_size,
            );
            for path in &gone {
                println!("  {verb} cache entry {}", path.display());
            }
            let total: u64 = entries.iter().map(|e| e.bytes).sum();
            println!(
                "local build cache {}: {} entries, {} MiB; {} to remove",
                cache.display(),
                entries.len(),
                total >> 20,
                gone.len()
            );
            cache_trim::remove(runner, &gone)?;
        }
        None => println!("local build cache: none (no XTASK_CACHE_DIR, XDG_CACHE_HOME or HOME)"),
    }
    if !failures.is_empty() {
        bail!(
            "{} removal(s) failed on {}: {}",
            failures.len(),
            opts.target.describe(),
            failures.join("; ")
        );
    }
    Ok(())
}
