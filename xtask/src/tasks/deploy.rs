//! `cargo xtask deploy --tag x.y.z --dir PATH [--host user@host[:port]]`: put a release in
//! production with Docker Compose, on this machine or over ssh.
//!
//! 1. check the target (reachable, host key known, directory and compose.yaml there);
//! 2. take the deploy lock (a second deploy is refused, naming who holds it and since when);
//! 3. pull the release on the target: the tag exists, before anything is stopped;
//! 4. back up the data volume (the last N archives are kept);
//! 5. switch: `rolling` (default) starts the release beside the live one, gates on health,
//!    points the edge at it and drains the old one; `recreate` is the seed's procedure
//!    (stop, clear and copy the assets, start), with downtime;
//! 6. verify `/health` through the edge; on any failure (or Ctrl-C) put the previous release
//!    back, show the new containers' logs and exit non-zero;
//! 7. append to the target's history (time, tag, revision, who, strategy, result).
//!
//! `rollback` runs the same switch towards an earlier tag.

use std::time::Duration;

use anyhow::{Context, Result};

use crate::compose_file;
use crate::config::APP_IMAGES;
use crate::deployment::Deployment;
use crate::progress::Steps;
use crate::reference::check_release_tag;
use crate::stack::{Color, Stack};
use crate::target::Target;
use crate::tasks::Ctx;

/// How a release replaces the live one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Strategy {
    /// Start beside the live release, switch once healthy, drain the old one: no downtime.
    Rolling,
    /// The seed's procedure: stop, clear the assets, start the new release. Has downtime.
    Recreate,
}

impl Strategy {
    fn name(self) -> &'static str {
        match self {
            Strategy::Rolling => "rolling",
            Strategy::Recreate => "recreate",
        }
    }
}

/// Where and how: shared by deploy, rollback, backup and status.
pub struct TargetOptions {
    pub target: Target,
    /// How long to wait for a live holder of the deploy lock (None: refuse at once).
    pub lock_wait: Option<Duration>,
    /// Stack name on the target (Compose projects STACK-blue, STACK-green, STACK-edge).
    pub stack: String,
    pub keep_backups: usize,
}

/// How long a new release may take to become healthy.
const HEALTH_LIMIT: Duration = Duration::from_secs(120);
/// How long the edge's old workers get to finish in-flight requests to the old release.
const DRAIN: Duration = Duration::from_secs(2);

pub fn run(ctx: &Ctx, opts: &TargetOptions, tag: &str, strategy: Strategy) -> Result<()> {
    check_release_tag(tag)?;
    switch_release(ctx, opts, tag, strategy, "deploy").map(drop)
}

/// Takes the target from its live release to `tag`, or leaves it on the live one. Returns how
/// long after the start the edge began sending traffic to `tag`.
pub fn switch_release(
    ctx: &Ctx,
    opts: &TargetOptions,
    tag: &str,
    strategy: Strategy,
    operation: &str,
) -> Result<Duration> {
    let started = std::time::Instant::now();
    let runner = &ctx.runner;
    let target = &opts.target;
    let d = Deployment::new(target, runner, &opts.stack);
    let stack = Stack::new(&d);
    let mut steps = Steps::new(7, runner.verbosity);

    steps.step(&format!("Checking {}", target.describe()), || {
        target.check(runner)
    })?;
    let mut lock = steps.step("Taking the deploy lock", || {
        d.lock_waiting(&format!("{operation} {tag}"), opts.lock_wait)
    })?;
    // From here on, whatever happens, the run leaves one history line saying what serves.
    let mut report = Report::default();
    let result = locked(
        ctx,
        opts,
        &d,
        &stack,
        &mut steps,
        (tag, strategy, operation),
        &mut lock,
        started,
        &mut report,
    );
    if let Err(err) = d.record(
        tag,
        &report.revision,
        strategy.name(),
        &report.line(&result),
    ) {
        eprintln!("warning: could not append to the history: {err:#}");
    }
    result
}

/// What the history line of a run says.
#[derive(Default)]
struct Report {
    revision: String,
    /// The release serving before the switch (`nothing` on a first deploy).
    serving: Option<String>,
    /// Set once the switch was attempted: how it ended.
    outcome: Option<String>,
}

impl Report {
    fn line<T>(&self, result: &Result<T>) -> String {
        match (result, &self.outcome) {
            (Ok(_), _) => "ok".into(),
            (Err(_), Some(outcome)) => outcome.clone(),
            (Err(err), None) => format!(
                "failed before any change ({}); {} serves",
                first_line(err),
                self.serving.as_deref().unwrap_or("what served before")
            ),
        }
    }
}

fn first_line(err: &anyhow::Error) -> String {
    format!("{err:#}")
        .lines()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// The deploy under the lock: everything after taking it.
#[allow(clippy::too_many_arguments)] // one call site; the values are the deploy's state
fn locked(
    ctx: &Ctx,
    opts: &TargetOptions,
    d: &Deployment,
    stack: &Stack,
    steps: &mut Steps,
    (tag, strategy, operation): (&str, Strategy, &str),
    lock: &mut crate::deploy_lock::Guard,
    started: std::time::Instant,
    report: &mut Report,
) -> Result<Duration> {
    let runner = &ctx.runner;
    let target = &opts.target;
    if lock.took_over {
        crate::reconcile::after_takeover(stack)?;
        lock.reconciled()?;
    }
    let old_text = d.read("compose.yaml")?;
    let (new_text, _) = compose_file::set_tag(&old_text, tag, &APP_IMAGES).map_err(|err| {
        anyhow::anyhow!(
            "cannot set tag in compose.yaml on {}: {err}",
            target.describe()
        )
    })?;
    let images =
        compose_file::app_references(&new_text, &APP_IMAGES).expect("set_tag found app images");
    let php = images
        .iter()
        .find(|i| i.contains("/crm-gdb_php:") && !i.ends_with("-supervisor"))
        .cloned()
        .unwrap_or_else(|| images[0].clone());
    let nginx = images
        .iter()
        .find(|i| i.contains("/crm-gdb_nginx:"))
        .cloned()
        .context("compose.yaml names no crm-gdb_nginx image")?;
    let (live, old_tag) = match stack.live_release()? {
        Some((color, tag)) => (Some(color), tag),
        None => (None, None),
    };
    let next = live.map(Color::other).unwrap_or(Color::Blue);
    let from = old_tag.clone().unwrap_or_else(|| "nothing".into());
    report.serving = Some(from.clone());
    runner.say(format!(
        "{operation}: {from} -> {tag} on {} ({} strategy)",
        target.describe(),
        strategy.name()
    ));

    // The edge (pinned) is needed from the first deploy on; images already there are not pulled
    // again, which keeps a rollback fast.
    let edge = compose_file::app_references(&new_text, &[crate::config::EDGE]).unwrap_or_default();
    let wanted: Vec<String> = images.iter().chain(&edge).cloned().collect();
    steps.step(&format!("Pulling {tag} on the target"), || {
        d.pull_missing(&wanted)
    })?;
    steps.step("Backing up the data volume", || {
        match d.backup(
            &php,
            old_tag.as_deref().unwrap_or("initial"),
            opts.keep_backups,
        )? {
            Some(name) => runner.say(format!("  {}/{name}", crate::deployment::BACKUPS)),
            None => runner.say("  no data volume yet: nothing to back up"),
        }
        Ok(())
    })?;

    let mut progress = Progress::default();
    let switched = steps.step(&format!("Switching to {tag} ({})", strategy.name()), || {
        switch(
            stack,
            d,
            strategy,
            live,
            next,
            &nginx,
            &new_text,
            &mut progress,
            started,
        )
    });
    let verified = switched.and_then(|()| {
        steps.step("Verifying /health through the edge", || {
            if runner.dry_run {
                return Ok(());
            }
            d.http_check(&php, stack.port()?)
        })
    });
    let revision = d.revision(&php);
    report.revision = revision.clone();
    if let Err(err) = verified {
        let logs = if progress.started_next {
            stack.logs(next)
        } else {
            String::new()
        };
        let undo = undo(stack, d, live, next, &old_text, &progress);
        if !logs.is_empty() {
            eprintln!("--- logs of {} ({tag}) ---\n{logs}", stack.project(next));
        }
        let outcome = match (&undo, live) {
            (Ok(()), Some(_)) => format!("rolled back: {from} keeps serving"),
            (Ok(()), None) => "nothing was serving before; nothing is now".to_string(),
            (Err(undo_err), _) => format!("AND putting {from} back failed: {undo_err:#}"),
        };
        report.outcome = Some(format!("failed; {outcome}"));
        return Err(err.context(format!("{operation} of {tag} failed; {outcome}")));
    }

    // The new release serves: a failure or a signal from here on leaves it serving.
    report.outcome = Some(format!(
        "ok; {tag} serves, but the old release was not removed"
    ));
    steps
        .step("Draining the old release and recording", || {
            if let Some(old) = live {
                std::thread::sleep(if runner.dry_run {
                    Duration::ZERO
                } else {
                    DRAIN
                });
                stack
                    .remove(old, true)
                    .context("the old release could not be removed (the new one is serving)")?;
            }
            Ok(())
        })
        .inspect_err(|err| {
            report.outcome = Some(format!(
                "ok; {tag} serves, but the old release was not removed ({})",
                err.root_cause()
                    .to_string()
                    .lines()
                    .next()
                    .unwrap_or_default()
            ))
        })?;
    runner.say(format!(
        "{tag} is live on {} ({operation} took {})",
        target.describe(),
        steps.elapsed()
    ));
    Ok(progress.switched_after)
}

/// What has been changed so far, so a failure undoes exactly that.
#[derive(Default)]
struct Progress {
    stopped_live: bool,
    wrote_compose: bool,
    started_next: bool,
    switched: bool,
    /// From the start of the operation to the edge's reload.
    switched_after: Duration,
}

#[allow(clippy::too_many_arguments)] // one call site; the values are the deploy's state
fn switch(
    stack: &Stack,
    d: &Deployment,
    strategy: Strategy,
    live: Option<Color>,
    next: Color,
    nginx: &str,
    new_text: &str,
    progress: &mut Progress,
    started: std::time::Instant,
) -> Result<()> {
    stack.ensure_shared()?;
    if strategy == Strategy::Recreate {
        if let Some(live) = live {
            progress.stopped_live = true;
            stack.stop(live)?;
        }
        stack.clear_assets(nginx)?;
    }
    // Asset bridging: the live release's pages keep finding their hashed files.
    stack.bridge_assets(nginx)?;
    progress.wrote_compose = true;
    d.write_atomically("compose.yaml", new_text.as_bytes(), false)?;
    progress.started_next = true;
    stack.start(next, HEALTH_LIMIT)?;
    stack.ensure_edge(HEALTH_LIMIT)?;
    progress.switched = true;
    stack.switch(next, false)?;
    progress.switched_after = started.elapsed();
    Ok(())
}

/// Puts the previous release back (also after Ctrl-C: every command here is a cleanup).
fn undo(
    stack: &Stack,
    d: &Deployment,
    live: Option<Color>,
    next: Color,
    old_text: &str,
    progress: &Progress,
) -> Result<()> {
    if progress.switched {
        if let Some(live) = live {
            stack.switch(live, true)?;
        }
    }
    if progress.started_next {
        stack.remove(next, true)?;
    }
    if progress.wrote_compose {
        d.write_atomically("compose.yaml", old_text.as_bytes(), true)?;
    }
    if progress.stopped_live {
        if let Some(live) = live {
            stack.restart(live)?;
        }
    }
    Ok(())
}
