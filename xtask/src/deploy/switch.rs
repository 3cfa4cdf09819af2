//! Taking one target from its live release to another, in phases, so that a fleet can hold
//! every host at the same point (see `fleet.rs`): nobody drops its old release before every host
//! has switched. A one-host deploy or rollback is a fleet of one and runs the same phases.
//!
//!   check      ssh, directory, compose.yaml, free disk space             [1/8]
//!   lock       the deploy lock                                            [2/8]
//!   prepare    read compose.yaml, set the tag, pull what is missing,      [3/8]
//!              back up the database (rolling beside a live release: beside [4/8]
//!              it and the release command, add the release's hashed assets
//!              to the shared volume, write compose.yaml and start the next
//!              color's php and nginx, which serve nobody yet),
//!              run the release command (in that php once it runs, else  [5/8]
//!              in a throwaway container) -> [`Prepared`]
//!   switch     (else: write compose.yaml, start the next color's php and  [6/8]
//!              nginx; recreate: bridge assets first), gate on health, ensure
//!              the edge, switch it, then start and gate the worker;
//!              then verify /health through the edge                       [7/8]
//!   finish     drain, stop the old color (kept for a rollback), record `ok` [8/8]
//!   revert     edge back, next color removed, compose.yaml restored: every command a cleanup,
//!              so it also runs after Ctrl-C.
//!
//! Until `finish`, a switched host still runs its old release, so reverting it is an instant
//! edge switch back. With a traffic canary (`Spec::canary`), `switch` points only that share of
//! the requests at the new release; `compare` (the watch) promotes it or fails, and a canary
//! held for a person is recorded by `finish` without draining anything.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::cmd::Cmd;
use crate::compose_file;
use crate::config::APP_IMAGES;
use crate::deploy::canary::{self, Share};
use crate::deploy::deployment::Deployment;
use crate::deploy::environments::show_size;
use crate::deploy::stack::{Color, Stack, Standby};
use crate::deploy::tls::{self, TlsFiles};
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

    pub fn parse(name: &str) -> Option<Strategy> {
        match name {
            "rolling" => Some(Strategy::Rolling),
            "recreate" => Some(Strategy::Recreate),
            _ => None,
        }
    }
}

/// The services that answer requests: started and gated before the edge switches to them; the
/// worker follows once it has.
const SERVING: &[&str] = &["php", "nginx"];
/// How long a new release may take to become healthy.
const HEALTH_LIMIT: Duration = Duration::from_secs(120);
/// How long the edge's old workers get to finish in-flight requests to the old release.
const DRAIN: Duration = Duration::from_secs(2);
/// How often a watched canary is checked.
const WATCH_EVERY: Duration = Duration::from_secs(2);

/// What goes where: the same for every host of a fleet.
#[derive(Clone, Debug)]
pub struct Spec {
    pub tag: String,
    pub strategy: Strategy,
    /// `deploy` or `rollback`, for the lock, messages and errors.
    pub operation: String,
    /// Shared by every host's history line of one operation.
    pub deploy_id: String,
    pub keep_backups: usize,
    pub min_free_disk: u64,
    /// How long to wait for a live holder of a host's deploy lock (None: refuse at once).
    pub lock_wait: Option<Duration>,
    /// Run the release's command (its migrations) before the switch; false for
    /// `--skip-release-command`.
    pub release_command: bool,
    /// HTTPS at the edge: the target's certificate and key, installed before the switch.
    pub tls: Option<TlsFiles>,
    /// A traffic canary: the edge sends this share of the requests to the release, which is
    /// then compared with the live one during the watch (see `canary.rs`).
    pub canary: Option<Share>,
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
    let target = d.target();
    target.check(&d.remote.runner)?;
    let out = d.remote.query(Cmd::new("df").args(["-Pk", &target.dir]))?;
    let free = parse_df(&out).with_context(|| format!("cannot read `df -Pk` output: {out:?}"))?;
    if free < min_free {
        bail!(
            "only {} free in {} (need {}); free some space (e.g. `docker image prune`) or lower min_free_disk",
            show_size(free),
            target.describe(),
            show_size(min_free)
        );
    }
    Ok(())
}

/// Available bytes from `df -Pk` (POSIX format: a header, then one line whose 4th field is KiB).
fn parse_df(out: &str) -> Option<u64> {
    let line = out.lines().nth(1)?;
    let kib: u64 = line.split_whitespace().nth(3)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// A host ready to switch: the new compose.yaml decided, the images pulled, the data backed up,
/// the release command run.
pub struct Prepared {
    plan: Switch,
    old_text: String,
    php: String,
    /// The live release's tag, if any.
    pub from: Option<String>,
    /// A backup left for the drain (a rollback to the running standby), with its label.
    backup_after: Option<String>,
    progress: Progress,
    /// The canary was promoted to every request.
    promoted: bool,
}

/// Reads compose.yaml, sets the tag, pulls what the host lacks, backs up the data, runs the
/// release command ([3/8] to [5/8]); a rolling deploy beside a live release also starts the
/// next color's php and nginx. A failure leaves the live release serving as it was: what was
/// started of the new one is removed and compose.yaml put back before it returns (the release
/// command's container is gone; a rolling deploy's hashed assets may be in the shared volume,
/// under names nothing serving asks for).
pub fn prepare(d: &Deployment, spec: &Spec, steps: &mut Steps) -> Result<Prepared> {
    let (target, tag) = (d.target(), &spec.tag);
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
    // A rollback to the standby whose php and nginx still run: the edge only switches back.
    let fast = spec.operation == "rollback"
        && spec.strategy == Strategy::Rolling
        && spec.canary.is_none()
        && !d.remote.dry_run()
        && matches!(
            stack.standby_state(live)?,
            Some((color, Standby { release: Some(release), serving_ready: true }))
                if color == next && release == *tag
        );
    if spec.canary.is_some() {
        stack.check_canary_support()?;
        if live.is_none() {
            bail!("nothing serves yet on {}: the first release cannot be a canary; deploy it without --canary", target.describe());
        }
    }
    d.remote.say(format!(
        "{}: {} -> {tag} on {} ({} strategy)",
        spec.operation,
        from.as_deref().unwrap_or("nothing"),
        target.describe(),
        spec.strategy.name()
    ));

    // The edge and the database (pinned) are needed from the first deploy on; images already
    // there are not pulled again, which keeps a rollback fast.
    let edge = compose_file::app_references(&new_text, &[crate::config::EDGE, crate::config::DB])
        .unwrap_or_default();
    let wanted: Vec<String> = images.iter().chain(&edge).cloned().collect();
    steps.step(&format!("Pulling {tag} on the target"), || {
        d.pull_missing(&wanted)
    })?;
    let backup_label = from.clone().unwrap_or_else(|| "initial".into());
    // Recreate: a standby of another release in the color this one starts in: `up` would stop
    // its php and nginx before replacing them; stopped now, beside the backup and the release
    // command, that is off the switch's path. (Should this deploy stop before its switch, the
    // standby stays, stopped: a rollback starts it again.) A rolling deploy replaces it in
    // `prepare` (below).
    let replaced_standby = spec.strategy == Strategy::Recreate
        && !d.remote.dry_run()
        && live.is_some()
        && matches!(
            stack.standby_state(live)?,
            Some((color, Standby { release, serving_ready: true }))
                if color == next && release.as_deref() != Some(tag.as_str())
        );
    // A rolling deploy's hashed assets, added to the shared volume beside the backup and the
    // release command, off the switch's path: new names only (a file's name is its hash), which
    // the live release's pages never ask for. Not on a first deploy (the volume is made in
    // [6/8]) nor in a dry run; a fast rollback looks whether they are still there in [6/8].
    let bridge_early =
        spec.strategy == Strategy::Rolling && !fast && !d.remote.dry_run() && live.is_some();
    // A rolling deploy beside a live release starts the next color's php and nginx beside the
    // backup and the release command too: they take no request before the gate and the switch
    // of [6/8], and the worker (which works on the data) starts after the switch. They replace
    // a standby of another release in that color, so a deploy that fails from here on leaves
    // no standby (the previous release is then started again by a rollback, not switched to).
    let start_early = spec.strategy == Strategy::Rolling && !fast && live.is_some();
    let plan = Switch {
        strategy: spec.strategy,
        canary: spec.canary,
        live,
        next,
        nginx,
        new_text,
        tls: spec.tls.clone(),
        fast,
        assets_bridged: bridge_early,
        started_early: start_early,
    };
    let progress = Progress {
        wrote_compose: start_early,
        started_next: start_early,
        ..Progress::default()
    };
    let start = || plan.start_early(&stack, d);
    let prepared = std::thread::scope(|scope| {
        let dry_run = d.remote.dry_run();
        let starting = (start_early && !dry_run).then(|| scope.spawn(start));
        let stopping =
            replaced_standby.then(|| scope.spawn(|| stack.stop_services(next, &["php", "nginx"])));
        let bridging = bridge_early.then(|| scope.spawn(|| stack.bridge_assets(&plan.nginx)));
        let started_inline = match start_early && dry_run {
            true => start(),
            false => Ok(()),
        };
        let prepared = started_inline
            .and_then(|()| {
                back_up_step(d, spec, steps, &stack, fast, &backup_label, &plan.new_text)
            })
            .and_then(|()| match start_early {
                // Once php runs, in it (below).
                true => Ok(()),
                false => release_step(d, spec, steps, &stack, fast, next, &php, None),
            });
        let bridged = match bridging.map(|b| b.join()) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(anyhow::anyhow!("internal: the asset copy panicked")),
            None => Ok(()),
        };
        if let Some(Err(err)) = stopping.map(|s| {
            s.join()
                .unwrap_or_else(|_| Err(anyhow::anyhow!("internal: the stop panicked")))
        }) {
            // `up` stops them itself.
            d.remote.say(format!(
                "  the standby ({}) was not stopped ahead: {}",
                stack.project(next),
                format!("{err:#}").replace('\n', " ")
            ));
        }
        let started = match starting.map(|s| s.join()) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(anyhow::anyhow!("internal: the start panicked")),
            None => Ok(()),
        };
        prepared
            .and_then(|()| {
                bridged.context("copying the release's hashed assets to the shared volume")
            })
            .and_then(|()| {
                started.with_context(|| {
                    format!("starting {tag}'s php and nginx in {}", stack.project(next))
                })
            })
    });
    // In the release's php, started beside the backup: no container of its own to start (each
    // start slows the others on the engine).
    let prepared = match start_early {
        true => prepared.and_then(|()| {
            let php_container = stack.running_php(next)?;
            release_step(
                d,
                spec,
                steps,
                &stack,
                fast,
                next,
                &php,
                Some(&php_container),
            )
        }),
        false => prepared,
    };
    if let Err(err) = prepared {
        if start_early {
            // What started beside the data steps goes, compose.yaml back, as after a failed
            // switch (cleanup commands: also after Ctrl-C).
            if let Err(undo) = plan.undo(d, &old_text, &progress) {
                return Err(err.context(format!(
                    "AND removing what was started of {tag} failed ({undo:#}); check with `cargo xtask status`"
                )));
            }
        }
        return Err(err);
    }
    Ok(Prepared {
        plan,
        old_text,
        php,
        backup_after: fast.then_some(backup_label),
        from,
        progress,
        promoted: false,
    })
}

/// The backup of [`prepare`] ([4/8]); a rollback to the running standby (`fast`) leaves it
/// for the drain.
fn back_up_step(
    d: &Deployment,
    spec: &Spec,
    steps: &mut Steps,
    stack: &Stack,
    fast: bool,
    backup_label: &str,
    text: &str,
) -> Result<()> {
    if fast {
        // Nothing runs before the switch that the backup would protect against: it is taken
        // during the drain, still under the lock.
        steps.skip(
            "Backing up the database",
            "during the drain: the standby serves first",
        );
        return Ok(());
    }
    steps.step("Backing up the database", || {
        // The database first (a first deploy's, or one stopped): the dump and the release
        // command need it, and it never waits for a release.
        stack.ensure_shared()?;
        let db = stack.ensure_db(text)?;
        let name = d.backup_in(&db, backup_label, spec.keep_backups)?;
        say_backup(d, Some(name));
        Ok(())
    })
}

/// The release command of [`prepare`] ([5/8]), in the running php container `inside` or in a
/// throwaway one; a rollback to the running standby (`fast`) skips it.
#[allow(clippy::too_many_arguments)]
fn release_step(
    d: &Deployment,
    spec: &Spec,
    steps: &mut Steps,
    stack: &Stack,
    fast: bool,
    next: Color,
    php: &str,
    inside: Option<&str>,
) -> Result<()> {
    let tag = &spec.tag;
    // After the backup (a migration that went wrong can be undone from it), before anything
    // switches, under the lock (two deploys at once cannot both run it).
    let title = "Running the release command";
    if fast {
        // It ran when this release was deployed, before these very containers served; the
        // migrations are additive, so the data is at least as new as the release needs (and
        // the gate's /health through its nginx would refuse an older schema).
        steps.skip(
            title,
            &format!(
                "the standby ({}) ran it when {tag} was deployed",
                stack.project(next)
            ),
        );
    } else if spec.release_command {
        steps.step(title, || {
            crate::deploy::release_command::run(d, php, tag, inside)
        })?;
    } else {
        steps.skip(title, "--skip-release-command");
    }
    Ok(())
}

/// Backs up the database before a release changes it, saying where to.
fn back_up(d: &Deployment, label: &str, keep: usize) -> Result<()> {
    say_backup(d, d.backup(label, keep)?);
    Ok(())
}

fn say_backup(d: &Deployment, name: Option<String>) {
    match name {
        Some(name) => d
            .remote
            .say(format!("  {}/{name}", crate::deploy::backups::BACKUPS)),
        None => d.remote.say("  no database runs: nothing to back up"),
    }
}

impl Prepared {
    /// Starts the new release beside the live one, points the edge at it ([6/8]), verifies
    /// /health through the edge ([7/8]). On error, [`Prepared::revert`] undoes what was done.
    pub fn switch(&mut self, d: &Deployment, spec: &Spec, steps: &mut Steps) -> Result<()> {
        let stack = Stack::new(d);
        let (plan, progress) = (&self.plan, &mut self.progress);
        steps.step(
            &format!("Switching to {} ({})", spec.tag, spec.strategy.name()),
            || plan.run(&stack, d, progress),
        )?;
        steps.step("Verifying /health through the edge", || self.verify(d))
    }

    /// Whether the edge was pointed at the new release (so it served it).
    pub fn switched(&self) -> bool {
        self.progress.switched
    }

    /// When the edge was pointed at the new release.
    pub fn switched_at(&self) -> Option<Instant> {
        self.progress.switched_at
    }

    fn verify(&self, d: &Deployment) -> Result<()> {
        if d.remote.dry_run() {
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
                .context("the canary stopped answering /health during its wait")?;
            std::thread::sleep(WATCH_EVERY.min(duration.saturating_sub(start.elapsed())));
        }
        Ok(())
    }

    /// A traffic canary's probation: the edge's error rates of both sides compared for `wait`,
    /// then the canary promoted (the edge sends it every request). An error withdraws it (the
    /// revert puts the live release back alone). `wait` zero leaves the split for a person to
    /// decide (`deploy --promote` / `--abort`): nothing is compared or promoted here.
    pub fn compare(&mut self, d: &Deployment, wait: Duration) -> Result<()> {
        let (Some(share), Some(_)) = (self.plan.canary, self.plan.live) else {
            return Ok(());
        };
        if wait.is_zero() {
            return Ok(());
        }
        let stack = Stack::new(d);
        let project = stack.project(self.plan.next);
        d.remote.say(format!(
            "Comparing the canary ({project}, {share} of the requests) with the live release for {}",
            crate::progress::seconds(wait)
        ));
        let edge = stack.running_edge()?;
        canary::compare(d, &edge, &project, share, wait)?;
        stack
            .switch(self.plan.next)
            .context("promoting the canary to every request")?;
        self.promoted = true;
        d.remote.say(format!(
            "the canary is no worse than the live release: promoted, {} answers every request",
            spec_tag(&self.php)
        ));
        Ok(())
    }

    /// A traffic canary over a fleet: adds what this host's edge logged since the last look to
    /// `tally` (the fleet's comparison sums every host's).
    pub fn poll_canary(&self, d: &Deployment, tally: &mut canary::Tally) -> Result<()> {
        let (Some(_), Some(edge)) = (self.plan.canary, &self.progress.edge) else {
            return Ok(());
        };
        if d.remote.dry_run() {
            return Ok(());
        }
        canary::poll(d, edge, &Stack::new(d).project(self.plan.next), tally)
    }

    /// A traffic canary over a fleet, once the fleet's comparison found it no worse: the edge
    /// sends this host's every request to it, checked through the edge. On error the revert
    /// puts the live release back (the edge counts as switched since the split).
    pub fn promote(&mut self, d: &Deployment) -> Result<()> {
        if !self.held() {
            return Ok(());
        }
        Stack::new(d)
            .switch(self.plan.next)
            .context("promoting the canary to every request")?;
        self.promoted = true;
        self.verify(d)
            .context("the promoted canary does not answer /health through the edge")?;
        d.remote.say(format!(
            "promoted: {} answers every request",
            spec_tag(&self.php)
        ));
        Ok(())
    }

    /// A canary left for a person to decide (no comparison ran): nothing to drain yet.
    pub fn held(&self) -> bool {
        self.plan.canary.is_some() && self.plan.live.is_some() && !self.promoted
    }

    /// Every host switched: drains and stops the old color (the standby a rollback starts again),
    /// records success ([8/8]). A canary held for a person is recorded as such, and both colors
    /// stay.
    pub fn finish(self, d: &Deployment, spec: &Spec, steps: &mut Steps) -> Result<()> {
        let stack = Stack::new(d);
        let revision = d.revision(&self.php);
        if let (true, Some(share), Some(live)) = (self.held(), self.plan.canary, self.plan.live) {
            return steps.step("Leaving the canary for a decision and recording", || {
                let from = self.from.as_deref().unwrap_or("?");
                d.undoing().record(
                    &spec.deploy_id,
                    &spec.tag,
                    &revision,
                    spec.strategy.name(),
                    &format!("canary: {share} to {}, {from} keeps the rest ({}); decide with deploy --promote or --abort", spec.tag, stack.project(live)),
                )?;
                d.remote.say(format!(
                    "canary: {share} of the requests go to {} ({}), the rest to {from}; decide with `cargo xtask deploy --promote` or `--abort` (a plain deploy withdraws it)",
                    spec.tag,
                    stack.project(self.plan.next)
                ));
                Ok(())
            });
        }
        steps.step("Draining the old release and recording", || {
            let removed = match self.plan.live {
                Some(old) => {
                    let drain = drain_time(d);
                    // The backup a rollback to the standby left for now, beside the drain.
                    let backed_up = std::thread::scope(|scope| {
                        let backup = self
                            .backup_after
                            .as_ref()
                            .map(|label| scope.spawn(|| back_up(d, label, spec.keep_backups)));
                        std::thread::sleep(drain);
                        backup.map(|b| {
                            b.join().unwrap_or_else(|_| {
                                Err(anyhow::anyhow!("internal: the backup panicked"))
                            })
                        })
                    });
                    if let Some(Err(err)) = backed_up {
                        d.remote.say(format!(
                            "  the backup of the database failed ({}); the release serves",
                            format!("{err:#}").replace('\n', " ")
                        ));
                    }
                    // Its worker stopped, php and nginx kept: a rollback only switches back.
                    stack
                        .park(old)
                        .context("the old release could not be stopped (the new one is serving)")
                }
                None => Ok(()),
            };
            // One history line whatever happens: the new release serves either way.
            let result = match &removed {
                Ok(()) => "ok".to_string(),
                Err(err) => format!(
                    "ok; {} serves, but the old release was not stopped ({})",
                    spec.tag,
                    format!("{err:#}").replace('\n', " ")
                ),
            };
            d.undoing().record(
                &spec.deploy_id,
                &spec.tag,
                &revision,
                spec.strategy.name(),
                &result,
            )?;
            removed
        })
    }

    /// Points the edge back at the live release if it was switched (a cleanup: also after
    /// Ctrl-C); the rest of the undo is [`Prepared::revert`].
    pub fn switch_back(&mut self, d: &Deployment) -> Result<()> {
        if let (true, Some(live)) = (self.progress.switched, self.plan.live) {
            Stack::new(&d.undoing()).switch(live)?;
            self.progress.switched = false;
        }
        Ok(())
    }

    /// Puts the previous release back (cleanup commands: also after Ctrl-C). Returns the undo's
    /// result and the new containers' logs (empty if none were started).
    pub fn revert(&self, d: &Deployment) -> (Result<()>, String) {
        let logs = if self.progress.started_next {
            Stack::new(d).logs(self.plan.next)
        } else {
            String::new()
        };
        (self.plan.undo(d, &self.old_text, &self.progress), logs)
    }

    /// Whether anything users could see was touched (compose.yaml written, the live one stopped).
    pub fn touched(&self) -> bool {
        self.progress.wrote_compose || self.progress.stopped_live
    }

    /// The Compose project the new release starts in.
    pub fn next_project(&self, d: &Deployment) -> String {
        Stack::new(d).project(self.plan.next)
    }

    pub fn serving_before(&self) -> bool {
        self.plan.live.is_some()
    }

    pub fn revision(&self, d: &Deployment) -> String {
        d.revision(&self.php)
    }
}

/// What has been changed so far, so a failure undoes exactly that.
#[derive(Default)]
struct Progress {
    stopped_live: bool,
    wrote_compose: bool,
    started_next: bool,
    switched: bool,
    /// When the edge was switched (for the benchmark's "switched at").
    switched_at: Option<Instant>,
    /// The edge's container id, once known (a fleet's canary log is read from it).
    edge: Option<String>,
}

/// The switch a deploy or rollback makes, decided before anything changes.
struct Switch {
    strategy: Strategy,
    /// A share of the requests instead of all of them.
    canary: Option<Share>,
    /// The color serving now (None before the first deploy).
    live: Option<Color>,
    /// The color the release starts in.
    next: Color,
    /// The release's nginx image (it holds the hashed assets).
    nginx: String,
    /// compose.yaml naming the release.
    new_text: String,
    tls: Option<TlsFiles>,
    /// A rollback to the standby whose php and nginx run: they get the traffic as soon as they
    /// pass the gate; the worker starts after the switch.
    fast: bool,
    /// The release's hashed assets were added to the shared volume in `prepare`.
    assets_bridged: bool,
    /// compose.yaml was written and php and nginx started in `prepare`.
    started_early: bool,
}

impl Switch {
    fn run(&self, stack: &Stack, d: &Deployment, progress: &mut Progress) -> Result<()> {
        let (live, next, nginx) = (self.live, self.next, self.nginx.as_str());
        if self.fast {
            // Otherwise done in `prepare`, before the backup.
            stack.ensure_shared()?;
        }
        if self.strategy == Strategy::Recreate {
            if let Some(live) = live {
                progress.stopped_live = true;
                stack.stop(live)?;
            }
            stack.clear_assets(nginx)?;
        }
        // Asset bridging: the live release's pages keep finding their hashed files. Rolling:
        // beside the start of the release (both must end before the switch: a file copied
        // while the edge serves it could be served half-written), which saves the copy's time;
        // recreate: after the clear above. A standby's files are usually there already. Most
        // rolling deploys added them in `prepare`.
        let beside =
            self.strategy == Strategy::Rolling && !d.remote.dry_run() && !self.assets_bridged;
        let fast = self.fast;
        let started = std::thread::scope(|scope| {
            let bridged = beside.then(|| {
                scope.spawn(move || {
                    let there = fast
                        && match stack.edge()? {
                            Some(edge) => stack.assets_in_volume(next, &edge)?,
                            None => false,
                        };
                    if there {
                        return Ok(());
                    }
                    stack.bridge_assets(nginx)
                })
            });
            if !beside && !self.assets_bridged {
                stack.bridge_assets(nginx)?;
            }
            let started = self.start(stack, d, progress);
            let bridged = match bridged.map(|b| b.join()) {
                Some(Ok(result)) => result,
                Some(Err(_)) => Err(anyhow::anyhow!("internal: the asset copy panicked")),
                None => Ok(()),
            };
            started.and_then(|edge| bridged.map(|()| edge))
        });
        let edge = started?;
        progress.switched = true;
        progress.edge = Some(edge.clone());
        match (self.canary, live) {
            (Some(share), Some(live)) => stack.split(live, next, share)?,
            _ => stack.switch_edge(&edge, next)?,
        }
        progress.switched_at = Some(Instant::now());
        // Now the worker (php and nginx, which answer requests, untouched), still gated and
        // inside the switch: a worker that fails undoes the deploy (the edge goes back). It
        // serves nobody, so it is not on the way to the first answer of the release.
        stack.start_worker(next, HEALTH_LIMIT)?;
        Ok(())
    }

    /// Writes compose.yaml and starts the next color's php and nginx without waiting for them
    /// (`prepare`, beside the backup and the release command; [`Switch::start`] gates them).
    fn start_early(&self, stack: &Stack, d: &Deployment) -> Result<()> {
        d.write_atomically("compose.yaml", self.new_text.as_bytes())?;
        stack.up(self.next, SERVING)
    }

    /// Writes compose.yaml, starts the next color (a standby of the same release is only started
    /// again) and makes sure the edge runs; returns the edge's container id.
    fn start(&self, stack: &Stack, d: &Deployment, progress: &mut Progress) -> Result<String> {
        if self.started_early {
            // Written and started in `prepare`: the gate only.
            stack.ready(self.next, SERVING, HEALTH_LIMIT)?;
        } else {
            progress.wrote_compose = true;
            d.write_atomically("compose.yaml", self.new_text.as_bytes())?;
            progress.started_next = true;
            if self.fast {
                // They run (`prepare` saw them): no `up`, which would find nothing to do in
                // 0.2-0.3 s; the gate still checks them.
                stack.ready(self.next, SERVING, HEALTH_LIMIT)?;
            } else {
                // The worker after the switch (see `run`): `up` of two containers is ~0.3 s
                // shorter than of three.
                stack.start_services(self.next, SERVING, HEALTH_LIMIT)?;
            }
        }
        let edge = stack.ensure_edge(HEALTH_LIMIT)?;
        // The certificate first: the new release is never served over a missing or stale one.
        // Refused, it leaves the edge as it was, and the deploy is undone like any failure.
        if let Some(files) = &self.tls {
            tls::install(d, files)?;
        }
        Ok(edge)
    }

    /// Puts the previous release back (also after Ctrl-C: every command here is a cleanup).
    fn undo(&self, d: &Deployment, old_text: &str, progress: &Progress) -> Result<()> {
        let d = d.undoing();
        let stack = Stack::new(&d);
        let (live, next) = (self.live, self.next);
        if progress.switched {
            if let Some(live) = live {
                stack.switch(live)?;
                // As after a switch forward: the edge's old workers still take requests for the
                // new release until the reload is done, and finish them; then it goes (without
                // this wait, a fleet's revert got one 502 in CI).
                std::thread::sleep(drain_time(&d));
            }
        }
        // The edge is back on the live release (or never left it): from here on, one failed
        // step does not stop the next (compose.yaml must name what serves even if the new
        // containers could not be removed, e.g. the engine died); the first error is returned.
        let removed = if progress.started_next {
            stack.remove(next)
        } else {
            Ok(())
        };
        let restored = if progress.wrote_compose {
            d.write_atomically("compose.yaml", old_text.as_bytes())
        } else {
            Ok(())
        };
        let restarted = match (progress.stopped_live, live) {
            (true, Some(live)) => stack.restart(live),
            _ => Ok(()),
        };
        removed.and(restored).and(restarted)
    }
}

/// [`DRAIN`], or nothing in a dry run.
pub fn drain_time(d: &Deployment) -> Duration {
    if d.remote.dry_run() {
        Duration::ZERO
    } else {
        DRAIN
    }
}

/// The release tag of an image reference, for messages.
fn spec_tag(image: &str) -> String {
    compose_file::release_of(image).unwrap_or_else(|| image.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_space_from_df() {
        let out = "Filesystem     1024-blocks     Used Available Capacity Mounted on\n/dev/vda         264212084 12517728  82768160      14% /";
        assert_eq!(parse_df(out), Some(82768160 * 1024));
        assert_eq!(parse_df("garbage"), None);
        assert_eq!(parse_df("h\n/dev/x 1 2 lots 3% /"), None);
    }

    #[test]
    fn deploy_ids_are_time_and_pid() {
        let id = new_deploy_id();
        assert!(id.ends_with(&format!("-{}", std::process::id())), "{id}");
        assert!(id.starts_with("20") && !id.contains(':'), "{id}");
    }

    #[test]
    fn strategies_by_name() {
        for s in [Strategy::Rolling, Strategy::Recreate] {
            assert_eq!(Strategy::parse(s.name()), Some(s));
        }
        assert_eq!(Strategy::parse("yolo"), None);
    }
}
