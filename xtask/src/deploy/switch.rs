//! Taking a target from its live release to another one: the switch shared by `deploy` and
//! `rollback` (see `tasks/deploy.rs` for the steps).

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::compose_file;
use crate::config::APP_IMAGES;
use crate::ctx::Ctx;
use crate::deploy::deployment::Deployment;
use crate::deploy::options::TargetOptions;
use crate::deploy::stack::{Color, Stack};
use crate::progress::Steps;

/// How a release replaces the live one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Strategy {
    /// Start beside the live release, switch once healthy, drain the old one: no downtime.
    Rolling,
    /// The old Makefile's procedure: stop, clear the assets, start the new release. Has downtime.
    Recreate,
}

impl Strategy {
    pub fn name(self) -> &'static str {
        match self {
            Strategy::Rolling => "rolling",
            Strategy::Recreate => "recreate",
        }
    }
}

/// How long a new release may take to become healthy.
const HEALTH_LIMIT: Duration = Duration::from_secs(120);
/// How long the edge's old workers get to finish in-flight requests to the old release.
const DRAIN: Duration = Duration::from_secs(2);

/// Takes the target from its live release to `tag`, or leaves it on the live one. Returns how
/// long after the start the edge began sending traffic to `tag`.
pub fn switch_release(
    ctx: &Ctx,
    opts: &TargetOptions,
    tag: &str,
    strategy: Strategy,
    operation: &str,
) -> Result<Duration> {
    let started = Instant::now();
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
        (&d, &stack, &mut lock),
        &mut steps,
        (tag, strategy, operation),
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
                format!("{err:#}").lines().next().unwrap_or_default(),
                self.serving.as_deref().unwrap_or("what served before")
            ),
        }
    }
}

/// The deploy under the lock: everything after taking it.
fn locked(
    ctx: &Ctx,
    opts: &TargetOptions,
    (d, stack, lock): (&Deployment, &Stack, &mut crate::deploy::lock::Lock),
    steps: &mut Steps,
    (tag, strategy, operation): (&str, Strategy, &str),
    started: Instant,
    report: &mut Report,
) -> Result<Duration> {
    let runner = &ctx.runner;
    let target = &opts.target;
    if lock.took_over {
        crate::deploy::reconcile::after_takeover(d)?;
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
            Some(name) => runner.say(format!("  {}/{name}", crate::deploy::backups::BACKUPS)),
            None => runner.say("  no data volume yet: nothing to back up"),
        }
        Ok(())
    })?;

    let plan = Switch {
        strategy,
        live,
        next,
        nginx,
        new_text,
        started,
    };
    let mut progress = Progress::default();
    let switched = steps.step(&format!("Switching to {tag} ({})", strategy.name()), || {
        plan.run(stack, d, &mut progress)
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
        let undo = plan.undo(d, &old_text, &progress);
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
                    .remove(old)
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

/// Returns how long after the start the edge began sending traffic to the earlier release.
/// `rollback`: to `to`, or to the previous successful release in the target's history.
pub fn rollback(ctx: &Ctx, opts: &TargetOptions, to: Option<&str>) -> Result<Duration> {
    opts.target.check(&ctx.runner)?;
    let d = Deployment::new(&opts.target, &ctx.runner, &opts.stack);
    let stack = Stack::new(&d);
    let live = stack.live_release()?.and_then(|(_, tag)| tag);
    let tag = match to {
        Some(tag) => tag.to_string(),
        None => {
            let history = d.history()?;
            match crate::deploy::history::previous_release(&history, live.as_deref()) {
                Some(tag) => tag,
                None => bail!(
                    "the history of {} names no earlier successful release; use --to TAG",
                    opts.target.describe()
                ),
            }
        }
    };
    if live.as_deref() == Some(tag.as_str()) {
        bail!(
            "{tag} is already live on {}; nothing to roll back to",
            opts.target.describe()
        );
    }
    switch_release(ctx, opts, &tag, Strategy::Rolling, "rollback")
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

/// The switch a deploy or rollback makes, decided before anything changes.
struct Switch {
    strategy: Strategy,
    /// The color serving now (None before the first deploy).
    live: Option<Color>,
    /// The color the release starts in.
    next: Color,
    /// The release's nginx image (it holds the hashed assets).
    nginx: String,
    /// compose.yaml naming the release.
    new_text: String,
    /// When the operation started, for [`Progress::switched_after`].
    started: Instant,
}

impl Switch {
    fn run(&self, stack: &Stack, d: &Deployment, progress: &mut Progress) -> Result<()> {
        let (live, next, nginx) = (self.live, self.next, self.nginx.as_str());
        stack.ensure_shared()?;
        if self.strategy == Strategy::Recreate {
            if let Some(live) = live {
                progress.stopped_live = true;
                stack.stop(live)?;
            }
            stack.clear_assets(nginx)?;
        }
        // Asset bridging: the live release's pages keep finding their hashed files.
        stack.bridge_assets(nginx)?;
        progress.wrote_compose = true;
        d.write_atomically("compose.yaml", self.new_text.as_bytes())?;
        progress.started_next = true;
        stack.start(next, HEALTH_LIMIT)?;
        stack.ensure_edge(HEALTH_LIMIT)?;
        progress.switched = true;
        stack.switch(next)?;
        progress.switched_after = self.started.elapsed();
        Ok(())
    }

    /// Puts the previous release back (also after Ctrl-C: every command here is a cleanup).
    fn undo(&self, d: &Deployment, old_text: &str, progress: &Progress) -> Result<()> {
        let d = d.undoing();
        let stack = Stack::new(&d);
        let (live, next) = (self.live, self.next);
        if progress.switched {
            if let Some(live) = live {
                stack.switch(live)?;
            }
        }
        if progress.started_next {
            stack.remove(next)?;
        }
        if progress.wrote_compose {
            d.write_atomically("compose.yaml", old_text.as_bytes())?;
        }
        if progress.stopped_live {
            if let Some(live) = live {
                stack.restart(live)?;
            }
        }
        Ok(())
    }
}
