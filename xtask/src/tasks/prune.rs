//! `cargo xtask prune [--keep N] --dir PATH [--host ...]`: remove from a target what no kept
//! release needs (release images, stopped containers, hashed assets of the shared volume),
//! backups beyond `--keep-backups`, and trim the local build cache by age and size.
//! `--dry-run` lists what would go and removes nothing. `--env NAME`: every host of the
//! environment in turn, each line prefixed with its host, then a table of what went where.

use std::time::{Duration, SystemTime};

use anyhow::{bail, Result};

use crate::build::{build_cache, cache_trim};
use crate::cmd::Runner;
use crate::ctx::Ctx;
use crate::deploy::deployment::Deployment;
use crate::deploy::options::TargetArgs;
use crate::deploy::prune;
use crate::deploy::target::Target;
use crate::progress::host_line;

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
    let fleet = args.target.fleet(&ctx.root)?;
    let runner = &ctx.runner;
    let verb = if runner.dry_run {
        "would remove"
    } else {
        "removing"
    };
    let width = fleet.hosts.iter().map(|h| h.label.chars().count()).max();
    let mut rows = Vec::new();
    let mut failed = Vec::new();
    for (h, d) in fleet.hosts.iter().zip(fleet.deployments(runner)) {
        let say = |line: &str| match &fleet.env {
            Some(_) => println!("{}", host_line(&h.label, width.unwrap_or(0), line)),
            None => println!("{line}"),
        };
        let done = prune_host(runner, &h.target, &d, args, fleet.keep_backups, verb, &say);
        let (summary, result) = match done {
            Ok(summary) if summary.failures.is_empty() => {
                let result = if runner.dry_run { "plan" } else { "pruned" };
                (Some(summary), result.to_string())
            }
            Ok(summary) => {
                let result = format!(
                    "{} removal(s) failed: {}",
                    summary.failures.len(),
                    summary.failures.join("; ")
                );
                failed.push(format!("{}: {result}", h.target.describe()));
                (Some(summary), result)
            }
            Err(err) if fleet.env.is_none() || err.is::<crate::interrupt::Interrupted>() => {
                return Err(err)
            }
            Err(err) => {
                let result = format!("failed: {}", crate::deploy::fleet::one_line(&err));
                say(&result);
                failed.push(format!("{}: {result}", h.label));
                (None, result)
            }
        };
        let count =
            |n: fn(&Summary) -> usize| summary.as_ref().map_or("-".into(), |s| n(s).to_string());
        rows.push(vec![
            h.label.clone(),
            count(|s| s.containers),
            count(|s| s.images),
            count(|s| s.assets),
            count(|s| s.backups),
            result,
        ]);
    }
    if let Some(env) = &fleet.env {
        println!("environment {env}: {verb}");
        print!(
            "{}",
            crate::deploy::fleet::table(
                &[
                    "host",
                    "containers",
                    "images",
                    "assets",
                    "backups",
                    "result"
                ],
                &rows
            )
        );
    }
    trim_local_cache(runner, args, verb)?;
    if !failed.is_empty() {
        bail!("prune failed on {}", failed.join("; "));
    }
    Ok(())
}

/// What was (or would be) removed on one host, and the removals that failed.
struct Summary {
    containers: usize,
    images: usize,
    assets: usize,
    backups: usize,
    failures: Vec<String>,
}

/// Prunes one target under its deploy lock, saying each line with `say`.
fn prune_host(
    runner: &Runner,
    target: &Target,
    d: &Deployment,
    args: &Args,
    keep_backups: usize,
    verb: &str,
    say: &dyn Fn(&str),
) -> Result<Summary> {
    target.check(runner)?;
    let _lock = d.lock("prune")?;
    let plan = prune::plan(d, args.keep, keep_backups)?;
    let kept = &plan.kept;
    say(&format!(
        "prune on {}: keeping release(s) {} (live: {}, rollback would pick: {})",
        target.describe(),
        if kept.tags.is_empty() {
            "none".to_string()
        } else {
            kept.tags.join(", ")
        },
        kept.live.as_deref().unwrap_or("none"),
        kept.rollback.as_deref().unwrap_or("none"),
    ));
    for c in &plan.containers {
        say(&format!(
            "  {verb} container {} ({}, {})",
            c.name, c.release, c.state
        ));
    }
    for image in &plan.images {
        say(&format!("  {verb} image {image}"));
    }
    let assets = match &plan.assets {
        Ok(files) => {
            for f in files {
                say(&format!("  {verb} asset {f}"));
            }
            files.len()
        }
        Err(why) => {
            say(&format!("  assets volume {why}"));
            0
        }
    };
    for b in &plan.backups {
        say(&format!("  {verb} backup {b}"));
    }
    if plan.is_empty() {
        say("  nothing to remove on the target");
    }
    let failures = prune::apply(d, &plan)?;
    Ok(Summary {
        containers: plan.containers.len(),
        images: plan.images.len(),
        assets,
        backups: plan.backups.len(),
        failures,
    })
}

/// The local build cache, by age then size (once, whatever the number of hosts).
fn trim_local_cache(runner: &Runner, args: &Args, verb: &str) -> Result<()> {
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
            cache_trim::remove(runner, &gone)
        }
        None => {
            println!("local build cache: none (no XTASK_CACHE_DIR, XDG_CACHE_HOME or HOME)");
            Ok(())
        }
    }
}
