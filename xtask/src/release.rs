//! One host's deploy in phases, so a fleet can hold every host at the same point: nobody drops
//! its old release before every host has switched (see `fleet.rs`). A one-host deploy is a
//! fleet of one and runs the same phases.
//!
//!   check      ssh, directory, compose.yaml, free disk space            [1/7]
//!   lock       the deploy lock                                           [2/7]
//!   prepare    read compose.yaml, set the tag, pull what is missing,     [3/7]
//!              back up the data volume -> [`Prepared`]                   [4/7]
//!   switch     bridge assets, write compose.yaml, start the next color,  [5/7]
//!              gate on health, ensure the edge, switch it, verify        [6/7]
//!              /health through the edge
//!   finish     drain, remove the old color, record `ok`                  [7/7]
//!   revert     edge back, next color removed, compose.yaml restored, the failure recorded;
//!              every command a cleanup, so it also runs after Ctrl-C.
//!
//! Until `finish`, a switched host still runs its old release, so reverting it is an instant
//! edge switch back.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::cmd::Cmd;
use crate::compose_file;
use crate::config::APP_IMAGES;
use crate::deployment::{Deployment, Lock};
use crate::progress::Steps;
use crate::stack::{Color, Stack};
use crate::tasks::deploy::Strategy;

/// How long a new release may take to become healthy.
const HEALTH_LIMIT: Duration = Duration::from_secs(120);
/// How long the edge's old workers get to finish in-flight requests to the old release.
const DRAIN: Duration = Duration::from_secs(2);
/// How often a watched canary is checked.
const WATCH_EVERY: Duration = Duration::from_secs(2);
/// Less free space than this in the deploy directory refuses the host (pulls and backups need room).
pub const MIN_FREE_DISK: u64 = 1 << 30;

/// What goes where: the same for every host of a fleet.
#[derive(Clone, Debug)]
pub struct Spec {
    pub tag: String,
    pub strategy: Strategy,
    /// `deploy` or `rollback`, for the lock, messages and errors.
    pub operation: String,
    /// Shared by every host's history line of one fleet operation.
    pub deploy_id: String,
    pub keep_backups: usize,
    pub min_free_disk: u64,
}

/// A new deploy id: the start time and our pid, e.g. `20261201T120000Z-4242`.
pub fn new_deploy_id() -> String {
    let stamp: String = crate::project::now_rfc3339()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect();
    format!("{stamp}-{}", std::process::id())
}

/// Refuses a target that cannot take a release: unreachable, no directory or compose.yaml,
/// or less than `min_free` bytes free where the images and backups go.
pub fn check(d: &Deployment, min_free: u64) -> Result<()> {
    d.target.check(d.runner)?;
    let df = d.on_target(Cmd::new("df").args(["-Pk", &d.target.dir]));
    let out = d.runner.query(&df)?;
    let free = parse_df(&out).with_context(|| format!("cannot read `df` output: {out:?}"))?;
    if free < min_free {
        bail!(
            "only {} free in {} (need {}); free some space (e.g. `docker image prune`) or lower min_free_disk",
            crate::environments::show_size(free),
            d.target.describe(),
            crate::environments::show_size(min_free)
        );
    }
    Ok(())
}

/// Available bytes from `df -Pk` (POSIX format: header, then one line whose 4th field is KiB).
fn parse_df(out: &str) -> Option<u64> {
    let line = out.lines().nth(1)?;
    let kib: u64 = line.split_whitespace().nth(3)?.parse().ok()?;
    Some(kib * 1024)
}

/// A host ready to switch: the new compose.yaml, the images pulled, the data backed up.
pub struct Prepared {
    old_text: String,
    new_text: String,
    php: String,
    nginx: String,
    live: Option<Color>,
    next: Color,
    /// The live release's tag, if any.
    pub from: Option<String>,
    progress: Progress,
}

/// What has been changed so far, so a failure undoes exactly that.
#[derive(Default)]
struct Progress {
    stopped_live: bool,
    wrote_compose: bool,
    started_next: bool,
    switched: bool,
}

/// Reads compose.yaml, sets the tag, pulls what the host lacks, backs up the data ([3/7], [4/7]).
pub fn prepare(d: &Deployment, spec: &Spec, steps: &mut Steps) -> Result<Prepared> {
    let (runner, target, tag) = (d.runner, d.target, &spec.tag);
    let stack = Stack::new(d);
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
    let (live, from) = match stack.live_release()? {
        Some((color, tag)) => (Some(color), tag),
        None => (None, None),
    };
    let next = live.map(Color::other).unwrap_or(Color::Blue);
    runner.say(format!(
        "{}: {} -> {tag} on {} ({} strategy)",
        spec.operation,
        from.as_deref().unwrap_or("nothing"),
        target.describe(),
        spec.strategy.name()
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
            from.as_deref().unwrap_or("initial"),
            spec.keep_backups,
        )? {
            Some(name) => runner.say(format!("  {}/{name}", crate::deployment::BACKUPS)),
            None => runner.say("  no data volume yet: nothing to back up"),
        }
        Ok(())
    })?;
    Ok(Prepared {
        old_text,
        new_text,
        php,
        nginx,
        live,
        next,
        from,
        progress: Progress::default(),
    })
}

impl Prepared {
    /// Starts the new release beside the live one, points the edge at it, verifies /health
    /// through the edge ([5/7], [6/7]). On error, [`Prepared::revert`] undoes what was done.
    pub fn switch(&mut self, d: &Deployment, spec: &Spec, steps: &mut Steps) -> Result<()> {
        let stack = Stack::new(d);
        steps.step(
            &format!("Switching to {} ({})", spec.tag, spec.strategy.name()),
            || self.start_and_switch(&stack, d, spec.strategy),
        )?;
        steps.step("Verifying /health through the edge", || self.verify(d))
    }

    fn start_and_switch(&mut self, stack: &Stack, d: &Deployment, strategy: Strategy) -> Result<()> {
        let progress = &mut self.progress;
        stack.ensure_shared()?;
        if strategy == Strategy::Recreate {
            if let Some(live) = self.live {
                progress.stopped_live = true;
                stack.stop(live)?;
            }
            stack.clear_assets(&self.nginx)?;
        }
        // Asset bridging: the live release's pages keep finding their hashed files.
        stack.bridge_assets(&self.nginx)?;
        progress.wrote_compose = true;
        d.write_atomically("compose.yaml", self.new_text.as_bytes(), false)?;
        progress.started_next = true;
        stack.start(self.next, HEALTH_LIMIT)?;
        stack.ensure_edge(HEALTH_LIMIT)?;
        progress.switched = true;
        stack.switch(self.next, false)
    }

    fn verify(&self, d: &Deployment) -> Result<()> {
        if d.runner.dry_run {
            return Ok(());
        }
        d.http_check(&self.php, Stack::new(d).port()?)
    }

    /// Keeps checking /health through the edge for `duration` (a canary's probation).
    pub fn watch(&self, d: &Deployment, duration: Duration) -> Result<()> {
        let start = Instant::now();
        while start.elapsed() < duration {
            crate::interrupt::check()?;
            self.verify(d)
                .context("the canary stopped answering during --canary-wait")?;
            std::thread::sleep(WATCH_EVERY.min(duration.saturating_sub(start.elapsed())));
        }
        Ok(())
    }

    /// Every host switched: drains and removes the old color, records success ([7/7]).
    pub fn finish(self, d: &Deployment, spec: &Spec, steps: &mut Steps) -> Result<()> {
        let stack = Stack::new(d);
        let revision = d.revision(&self.php);
        steps.step("Draining the old release and recording", || {
            if let Some(old) = self.live {
                std::thread::sleep(if d.runner.dry_run { Duration::ZERO } else { DRAIN });
                stack
                    .remove(old, true)
                    .context("the old release could not be removed (the new one is serving)")?;
            }
            d.record(&spec.tag, &revision, spec.strategy.name(), "ok")
        })
    }

    /// Puts the previous release back (cleanup commands: also after Ctrl-C) and returns the
    /// new containers' logs, if any were started.
    pub fn revert(&self, d: &Deployment) -> (Result<()>, String) {
        let stack = Stack::new(d);
        let logs = if self.progress.started_next {
            stack.logs(self.next)
        } else {
            String::new()
        };
        (self.undo(&stack, d), logs)
    }

    fn undo(&self, stack: &Stack, d: &Deployment) -> Result<()> {
        let (progress, live) = (&self.progress, self.live);
        if progress.switched {
            if let Some(live) = live {
                stack.switch(live, true)?;
            }
        }
        if progress.started_next {
            stack.remove(self.next, true)?;
        }
        if progress.wrote_compose {
            d.write_atomically("compose.yaml", self.old_text.as_bytes(), true)?;
        }
        if progress.stopped_live {
            if let Some(live) = live {
                stack.restart(live)?;
            }
        }
        Ok(())
    }

    /// Whether anything users could see was changed (the next color started).
    pub fn touched(&self) -> bool {
        self.progress.wrote_compose || self.progress.stopped_live
    }

    pub fn revision(&self, d: &Deployment) -> String {
        d.revision(&self.php)
    }
}

/// One host driven by the fleet scheduler through the phases above.
pub struct HostRun<'a> {
    pub d: &'a Deployment<'a>,
    pub spec: &'a Spec,
    pub label: String,
    /// Prefix output lines with the label (fleets of more than one host).
    pub prefixed: bool,
    steps: Steps,
    lock: Option<Lock<'a>>,
    pub prepared: Option<Prepared>,
    /// When the edge began sending traffic to the new release, from the start.
    pub switched_after: Option<Duration>,
    started: Instant,
    /// After a revert: what the host serves now, in words (for one-host errors).
    pub outcome: Option<String>,
}

impl<'a> HostRun<'a> {
    pub fn new(d: &'a Deployment<'a>, spec: &'a Spec, label: String, prefixed: bool) -> Self {
        let mut steps = Steps::new(7, d.runner.verbosity);
        if prefixed {
            steps = steps.prefixed(&label);
        }
        HostRun {
            d,
            spec,
            label,
            prefixed,
            steps,
            lock: None,
            prepared: None,
            switched_after: None,
            started: Instant::now(),
            outcome: None,
        }
    }

    fn prepared(&mut self) -> Result<&mut Prepared> {
        self.prepared
            .as_mut()
            .context("internal: the host was not prepared")
    }

    /// Prints the failed release's logs under the host's name.
    fn print_logs(&self, logs: &str) {
        let project = Stack::new(self.d).project(
            self.prepared
                .as_ref()
                .map(|p| p.next)
                .unwrap_or(Color::Blue),
        );
        let header = format!("--- logs of {project} ({}) ---", self.spec.tag);
        if self.prefixed {
            for line in std::iter::once(header.as_str()).chain(logs.lines()) {
                eprintln!("[{}] {line}", self.label);
            }
        } else {
            eprintln!("{header}\n{logs}");
        }
    }
}

impl crate::fleet::Member for HostRun<'_> {
    fn label(&self) -> String {
        self.label.clone()
    }

    fn lock_key(&self) -> String {
        self.d.target.describe()
    }

    fn check(&mut self) -> Result<()> {
        let (d, min) = (self.d, self.spec.min_free_disk);
        self.steps
            .step(&format!("Checking {}", d.target.describe()), || check(d, min))
    }

    fn lock(&mut self) -> Result<()> {
        let d = self.d;
        let operation = format!("{} {}", self.spec.operation, self.spec.tag);
        let lock = self
            .steps
            .step("Taking the deploy lock", || d.lock(&operation))?;
        self.lock = Some(lock);
        Ok(())
    }

    fn prepare(&mut self) -> Result<()> {
        self.prepared = Some(prepare(self.d, self.spec, &mut self.steps)?);
        Ok(())
    }

    fn switch(&mut self) -> Result<()> {
        let (d, spec) = (self.d, self.spec);
        let mut steps = std::mem::replace(&mut self.steps, Steps::new(0, d.runner.verbosity));
        let result = self.prepared().and_then(|p| p.switch(d, spec, &mut steps));
        self.steps = steps;
        if self.prepared.as_ref().is_some_and(|p| p.progress.switched) {
            self.switched_after = Some(self.started.elapsed());
        }
        result
    }

    fn watch(&mut self, duration: Duration) -> Result<()> {
        let d = self.d;
        d.runner.say(format!(
            "Watching the canary for {}s",
            duration.as_secs_f64()
        ));
        self.prepared()?.watch(d, duration)
    }

    fn finish(&mut self) -> Result<()> {
        let prepared = self.prepared.take().context("internal: not prepared")?;
        prepared.finish(self.d, self.spec, &mut self.steps)?;
        self.d.runner.say(format!(
            "{} is live on {} ({} took {})",
            self.spec.tag,
            self.d.target.describe(),
            self.spec.operation,
            self.steps.elapsed()
        ));
        Ok(())
    }

    fn revert(&mut self, why: &str) -> Result<()> {
        let d = self.d;
        let spec = self.spec;
        let Some(prepared) = self.prepared.as_ref() else {
            // Locked, never prepared: nothing changed; the history still says so.
            let _ = d.record(&spec.tag, "", spec.strategy.name(), &format!("failed; never switched: {why}"));
            return Ok(());
        };
        let revision = prepared.revision(d);
        let from = prepared.from.clone();
        let live = prepared.live;
        let touched = prepared.touched();
        let (undo, logs) = prepared.revert(d);
        if !logs.is_empty() {
            self.print_logs(&logs);
        }
        let from_text = from.as_deref().unwrap_or("nothing");
        let outcome = match (&undo, live, touched) {
            (Ok(()), _, false) => "never switched".to_string(),
            (Ok(()), Some(_), true) => format!("rolled back: {from_text} keeps serving"),
            (Ok(()), None, true) => "nothing was serving before; nothing is now".to_string(),
            (Err(err), _, _) => format!("AND putting {from_text} back failed: {err:#}"),
        };
        let _ = d.record(
            &spec.tag,
            &revision,
            spec.strategy.name(),
            &format!("failed; {outcome} ({why})"),
        );
        self.outcome = Some(outcome);
        undo
    }

    fn unlock(&mut self) {
        self.lock = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_space_from_df() {
        let out = "Filesystem     1024-blocks     Used Available Capacity Mounted on\n/dev/vda         264212084 12517728  82768160      14% /";
        assert_eq!(parse_df(out), Some(82768160 * 1024));
        assert_eq!(parse_df("garbage"), None);
    }

    #[test]
    fn deploy_ids_are_time_and_pid() {
        let id = new_deploy_id();
        assert!(id.ends_with(&format!("-{}", std::process::id())), "{id}");
        assert!(id.starts_with("20"), "{id}");
    }
}
