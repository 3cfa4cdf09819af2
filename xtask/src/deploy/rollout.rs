//! Deploy, rollback and status for a fleet: the hosts of an environment of deploy.yaml, or the
//! one target of `--host`/`--dir` (a fleet of one, same code path). Each host runs the phases
//! of `switch.rs`; `fleet.rs` schedules them so the fleet ends on one release.
//!
//! With several hosts every output line starts with `[host]`, and the command ends with a
//! table: host, from, to, result (switched / reverted / never switched / unreachable: ...).
//! `decide` is `deploy --promote` / `--abort` of a traffic canary left on one target or a fleet.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::cmd::Runner;
use crate::deploy::canary::Share;
use crate::deploy::deployment::Deployment;
use crate::deploy::fleet::{self, Fate, Member, Plan, Stage, Wave};
use crate::deploy::history::previous_release;
use crate::deploy::lock::{Lock, LOCK_DIR};
use crate::deploy::stack::{Color, Stack};
use crate::deploy::switch::{self, Prepared, Spec, Strategy};
use crate::deploy::target::Target;
use crate::progress::Steps;

/// One host of a fleet: how output names it, and where it deploys.
#[derive(Clone, Debug)]
pub struct FleetHost {
    pub label: String,
    /// As the deploy config writes it (`deploy@web1`), for `--canary-host`.
    pub spec: String,
    pub target: Target,
}

/// Where a deploy, rollback or status goes, resolved from deploy.yaml and the flags.
#[derive(Clone, Debug)]
pub struct Fleet {
    /// The environment's name; None for `--host`/`--dir`.
    pub env: Option<String>,
    pub hosts: Vec<FleetHost>,
    pub stack: String,
    pub keep_backups: usize,
    pub min_free_disk: u64,
    /// Index into `hosts`.
    pub canary: usize,
    pub canary_wait: Option<Duration>,
    /// How long each host's lock is waited for when a live deploy holds it.
    pub lock_wait: Option<Duration>,
    pub wave: Wave,
    pub strategy: Strategy,
    /// Run each release's command before the switch (`--skip-release-command` clears it).
    pub release_command: bool,
    /// HTTPS at the edge: installed (again) on every host by a deploy or rollback.
    pub tls: Option<crate::deploy::tls::TlsFiles>,
    /// `--canary 10%`: the share of the requests the release gets through the edge before it
    /// is promoted or withdrawn (one host; the comparison lasts `canary_wait`).
    pub traffic_canary: Option<Share>,
}

impl Fleet {
    fn describe(&self) -> String {
        match &self.env {
            Some(env) => format!("{} hosts of {env}", self.hosts.len()),
            None => self.hosts[0].target.describe(),
        }
    }

    /// One deployment per host; with several hosts, their output is prefixed `[label]`.
    pub fn deployments(&self, runner: &Runner) -> Vec<Deployment> {
        let prefixed = self.hosts.len() > 1;
        self.hosts
            .iter()
            .map(|h| {
                let mut d = Deployment::new(&h.target, runner, &self.stack);
                if prefixed {
                    d.remote = d.remote.labelled(&h.label);
                }
                d
            })
            .collect()
    }
}

/// Takes every host of `fleet` to `tag`, or leaves every one where it was. Returns how long after
/// the start the last host's edge began sending traffic to `tag`.
pub fn deploy(runner: &Runner, fleet: &Fleet, tag: &str, operation: &str) -> Result<Duration> {
    deploy_measured(runner, fleet, tag, operation).result
}

/// What the benchmark measures of a deploy.
pub struct Measured {
    /// [`deploy`]'s answer.
    pub result: Result<Duration>,
    /// After a failure: from the failure to the fleet serving one release again.
    pub recovered: Option<Duration>,
    /// When a host's switch step failed (e.g. a broken release was seen), from the start.
    pub failed_after: Option<Duration>,
}

/// [`deploy`], with the timings of a failure (for the benchmark).
pub fn deploy_measured(runner: &Runner, fleet: &Fleet, tag: &str, operation: &str) -> Measured {
    let spec = Spec {
        tag: tag.to_string(),
        strategy: fleet.strategy,
        operation: operation.to_string(),
        deploy_id: switch::new_deploy_id(),
        keep_backups: fleet.keep_backups,
        min_free_disk: fleet.min_free_disk,
        lock_wait: fleet.lock_wait,
        release_command: fleet.release_command,
        tls: fleet.tls.clone(),
        canary: fleet.traffic_canary,
    };
    let several = fleet.hosts.len() > 1;
    let plan = Plan::new(fleet.hosts.len(), fleet.canary, fleet.wave);
    if several {
        let label = |i: usize| fleet.hosts[i].label.clone();
        let waves: Vec<String> = plan
            .waves
            .iter()
            .map(|w| {
                format!(
                    "[{}]",
                    w.iter().map(|&i| label(i)).collect::<Vec<_>>().join(", ")
                )
            })
            .collect();
        runner.say(format!(
            "{operation} {tag} to {} (deploy id {}): canary {}{}, then {}",
            fleet.describe(),
            spec.deploy_id,
            label(plan.canary),
            fleet
                .canary_wait
                .map(|w| format!(" watched for {}", crate::progress::seconds(w)))
                .unwrap_or_default(),
            if waves.is_empty() {
                "nothing else".to_string()
            } else {
                format!("waves {}", waves.join(" "))
            }
        ));
    }
    let mut members: Vec<HostRun> = fleet
        .deployments(runner)
        .into_iter()
        .zip(&fleet.hosts)
        .map(|(d, h)| HostRun::new(d, &spec, h.label.clone(), several))
        .collect();
    let report = fleet::run(
        &mut members,
        &plan,
        fleet::Options {
            parallel: !runner.dry_run,
            canary_wait: fleet.canary_wait,
            // One host keeps the one-target comparison (its `watch`).
            traffic_canary: fleet.traffic_canary.filter(|_| several),
            say: runner.verbosity > crate::progress::Verbosity::Quiet,
            dry_run: runner.dry_run,
        },
    );
    if several {
        let rows: Vec<Vec<String>> = members
            .iter()
            .zip(&report.fates)
            .map(|(m, fate)| {
                vec![
                    m.label.clone(),
                    m.from.clone().unwrap_or_else(|| "?".into()),
                    tag.to_string(),
                    fate.describe(),
                ]
            })
            .collect();
        // Printed even under -q: it is the command's answer.
        eprint!("{}", fleet::table(&["host", "from", "to", "result"], &rows));
    }
    let recovered = report.recovered_after;
    let failed_after = members.iter().filter_map(|m| m.failed_after).min();
    let measured = |result| Measured {
        result,
        recovered,
        failed_after,
    };
    if several {
        if let Some(took) = recovered {
            runner.say(format!(
                "every host was back on its previous release {} after the failure",
                crate::progress::seconds(took)
            ));
        }
    }
    let Some((stage, at, err)) = report.failure else {
        let switched = members.iter().filter_map(|m| m.switched_after).max();
        return measured(Ok(switched.unwrap_or_default()));
    };
    if !several {
        // One host: the same words as always.
        let err = match (stage, &members[0].outcome) {
            (Stage::Canary, Some(outcome)) => {
                err.context(format!("{operation} of {tag} failed; {outcome}"))
            }
            _ => err,
        };
        return measured(Err(err));
    }
    let host = &members[at].label;
    let broken: Vec<&str> = members
        .iter()
        .zip(&report.fates)
        .filter(|(_, f)| matches!(f, Fate::RevertFailed(_)))
        .map(|(m, _)| m.label.as_str())
        .collect();
    let state = match stage {
        Stage::Check | Stage::Lock => "nothing was changed".to_string(),
        Stage::Prepare => "no host switched".to_string(),
        Stage::Finish => format!("{tag} serves on every host"),
        _ if broken.is_empty() => "every host is back on its previous release".to_string(),
        _ => format!(
            "putting the previous release back FAILED on {}: check it with `cargo xtask status`",
            broken.join(", ")
        ),
    };
    let err = err.context(format!(
        "{operation} of {tag} failed at {} on {host}; {state}",
        fleet::stage_name(stage)
    ));
    measured(Err(err))
}

/// Moves every host back to `to`, or to the previous successful release the hosts' histories
/// agree on, with the same all-or-nothing run as a deploy.
pub fn rollback(runner: &Runner, fleet: &Fleet, to: Option<&str>) -> Result<Duration> {
    let mut live = Vec::new();
    let mut previous = Vec::new();
    for (h, d) in fleet.hosts.iter().zip(fleet.deployments(runner)) {
        h.target.check(runner)?;
        let tag = Stack::new(&d).live_release()?.and_then(|(_, tag)| tag);
        let before = previous_release(&d.history()?, tag.as_deref());
        live.push((h.label.clone(), tag));
        previous.push((h.label.clone(), before));
    }
    let tag = match to {
        Some(tag) => tag.to_string(),
        None if fleet.hosts.len() == 1 => match &previous[0].1 {
            Some(tag) => tag.clone(),
            None => bail!(
                "the history of {} names no earlier successful release; use --to TAG",
                fleet.describe()
            ),
        },
        None => fleet::agreed_release(&previous)?,
    };
    if live.iter().all(|(_, t)| t.as_deref() == Some(tag.as_str())) {
        if fleet.hosts.len() == 1 {
            bail!(
                "{tag} is already live on {}; nothing to roll back to",
                fleet.describe()
            );
        }
        bail!("{tag} is already live on every host; nothing to roll back to");
    }
    let fleet = Fleet {
        strategy: Strategy::Rolling,
        traffic_canary: None,
        ..fleet.clone()
    };
    deploy(runner, &fleet, &tag, "rollback")
}

/// What a person decides about a canary left for them (`deploy --canary P --canary-wait 0`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// The canary gets every request; the old release is drained and removed.
    Promote,
    /// The live release gets every request again; the canary is removed.
    Abort,
}

impl Decision {
    fn flag(self) -> &'static str {
        match self {
            Decision::Promote => "--promote",
            Decision::Abort => "--abort",
        }
    }
}

/// A host's canary under its deploy lock, ready for a person's decision.
struct Held {
    d: Deployment,
    steps: Steps,
    _lock: Lock,
    canary: Color,
    share: Share,
    live: Color,
    live_tag: String,
    php: String,
    /// The canary's release.
    tag: String,
}

impl Held {
    fn record(&self, id: &str, result: &str) -> Result<()> {
        record_decision(&self.d, &self.php, &self.tag, id, result)
    }

    /// The live release alone again, the canary removed (a cleanup: also after Ctrl-C).
    fn withdraw(&self) -> Result<()> {
        let undoing = self.d.undoing();
        Stack::new(&undoing).switch(self.live)?;
        // The edge's old workers finish the canary's requests before it goes.
        std::thread::sleep(crate::deploy::switch::drain_time(&undoing));
        crate::deploy::reconcile::run(&undoing)
    }
}

fn record_decision(d: &Deployment, php: &str, tag: &str, id: &str, result: &str) -> Result<()> {
    d.undoing()
        .record(id, tag, &d.revision(php), Strategy::Rolling.name(), result)
}

/// Checks and locks one host and finds its canary. None: nothing left to decide there (a dead
/// deploy's canary withdrawn by the takeover, with --abort; or, over a fleet with --abort, none).
fn hold(runner: &Runner, fleet: &Fleet, d: Deployment, decision: Decision) -> Result<Option<Held>> {
    let several = fleet.hosts.len() > 1;
    let flag = decision.flag();
    let mut steps = Steps::new(4, runner.verbosity);
    if several {
        steps = steps.prefixed(d.remote.label.as_deref().unwrap_or("?"));
    }
    steps.step(&format!("Checking {}", d.target().describe()), || {
        d.target().check(runner)
    })?;
    let mut lock = steps.step("Taking the deploy lock", || {
        d.lock_waiting(&format!("deploy {flag}"), fleet.lock_wait)
    })?;
    let stack = Stack::new(&d);
    if lock.took_over {
        // The deploy that started the canary died: the reconcile withdraws it (the edge's
        // live.conf decides), which is what --abort asks and what --promote cannot do now.
        let left = stack.canary()?;
        crate::deploy::reconcile::run(&d)?;
        lock.reconciled()?;
        if let Some((color, share)) = left {
            let what = format!(
                "the canary ({share} to {}) of a deploy that died",
                stack.project(color)
            );
            if decision == Decision::Promote {
                bail!("{what} was withdrawn when its lock was taken over; deploy its release again to try it");
            }
            d.remote.say(format!(
                "{what} was withdrawn; the live release answers every request"
            ));
            return Ok(None);
        }
    }
    let (Some((canary, share)), Some((live, live_tag))) = (stack.canary()?, stack.live_release()?)
    else {
        if several && decision == Decision::Abort {
            d.remote.say("no canary here: nothing to withdraw");
            return Ok(None);
        }
        bail!(
            "no canary on {}: nothing to {}; `cargo xtask status` shows what serves",
            d.target().describe(),
            &flag[2..]
        );
    };
    let php = stack
        .image_of(canary, "php")?
        .context("the canary's php container is gone; withdraw it with --abort")?;
    let tag = crate::compose_file::release_of(&php).unwrap_or_else(|| php.clone());
    Ok(Some(Held {
        d,
        steps,
        _lock: lock,
        canary,
        share,
        live,
        live_tag: live_tag.unwrap_or_else(|| "the live release".into()),
        php,
        tag,
    }))
}

/// `deploy --promote` / `--abort`: under every host's deploy lock (taken in the fleet's fixed
/// order, before anything changes), the canary the edges split requests with is promoted
/// (switch, verify, drain, record `ok`) or withdrawn (the reconcile of a takeover). A promotion
/// whose check through an edge fails is withdrawn on every host: the fleet stays on one release.
pub fn decide(runner: &Runner, fleet: &Fleet, decision: Decision) -> Result<()> {
    let flag = decision.flag();
    let mut deployments: Vec<(String, Deployment)> = fleet
        .deployments(runner)
        .into_iter()
        .map(|d| (d.target().describe(), d))
        .collect();
    deployments.sort_by(|a, b| a.0.cmp(&b.0));
    let mut held = Vec::new();
    for (_, d) in deployments {
        held.extend(hold(runner, fleet, d, decision)?);
    }
    let Some(first) = held.first() else {
        if fleet.hosts.len() > 1 {
            bail!(
                "no canary on any host of {}: nothing to {}",
                fleet.describe(),
                &flag[2..]
            );
        }
        return Ok(());
    };
    let tag = first.tag.clone();
    if let Some(other) = held.iter().find(|h| h.tag != tag) {
        bail!(
            "the hosts' canaries are of different releases ({tag}, {}): withdraw them with --abort",
            other.tag
        );
    }
    let id = switch::new_deploy_id();
    match decision {
        Decision::Abort => {
            let mut failed = None;
            for h in &mut held {
                let (d, live_tag) = (&h.d, h.live_tag.clone());
                let title = format!("Withdrawing the canary of {tag} ({})", h.share);
                let done = h
                    .steps
                    .step(&title, || crate::deploy::reconcile::run(d))
                    .and_then(|()| {
                        h.steps.step("Recording", || {
                            let result =
                                format!("canary withdrawn by hand; {live_tag} keeps serving");
                            record_decision(d, &h.php, &h.tag, &id, &result)
                        })
                    });
                match done {
                    Ok(()) => h.d.remote.say(format!(
                        "{live_tag} answers every request on {} again",
                        h.d.target().describe()
                    )),
                    Err(err) => {
                        failed.get_or_insert(err.context(format!(
                            "withdrawing the canary on {}",
                            h.d.target().describe()
                        )));
                    }
                }
            }
            if let Some(err) = failed {
                return Err(err);
            }
        }
        Decision::Promote => {
            let mut promoted = Ok(());
            for h in &mut held {
                let (d, canary, php) = (&h.d, h.canary, h.php.clone());
                let title = format!("Promoting the canary of {tag} ({} so far)", h.share);
                promoted = h.steps.step(&title, || {
                    let stack = Stack::new(d);
                    stack.switch(canary)?;
                    if !runner.dry_run {
                        d.http_check(&php, stack.port()?)?;
                    }
                    Ok(())
                });
                if promoted.is_err() {
                    break;
                }
            }
            if let Err(err) = promoted {
                // Every host back on its live release, the canary gone: one release again.
                let mut undo = Ok(());
                for h in &held {
                    let back = h.withdraw();
                    let _ = h.record(
                        &id,
                        &format!(
                            "failed; promotion withdrawn: {} keeps serving ({})",
                            h.live_tag,
                            fleet::one_line(&err)
                        ),
                    );
                    if let Err(e) = back {
                        undo = undo.and(Err(e.context(h.d.target().describe())));
                    }
                }
                let live_tag = &held[0].live_tag;
                return Err(match undo {
                    Ok(()) => {
                        err.context(format!("promoting {tag} failed; {live_tag} keeps serving"))
                    }
                    Err(undo) => err.context(format!(
                        "promoting {tag} failed AND putting {live_tag} back failed: {undo:#}"
                    )),
                });
            }
            let mut untidy = None;
            for h in &mut held {
                let (d, live) = (&h.d, h.live);
                let drained = h.steps.step("Draining the old release and recording", || {
                    std::thread::sleep(crate::deploy::switch::drain_time(d));
                    let removed = Stack::new(d).remove(live);
                    record_decision(d, &h.php, &h.tag, &id, &match &removed {
                        Ok(()) => "ok; canary promoted by hand".to_string(),
                        Err(err) => format!("ok; {tag} serves (canary promoted by hand), but the old release was not removed ({})", fleet::one_line(err)),
                    })?;
                    removed
                });
                match drained {
                    Ok(()) => runner.say(format!("{tag} is live on {}", d.target().describe())),
                    Err(err) => {
                        untidy.get_or_insert(err);
                    }
                }
            }
            if let Some(err) = untidy {
                return Err(err);
            }
        }
    }
    Ok(())
}

/// One row of `status --env`: what a host serves and how it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostStatus {
    pub label: String,
    /// The live release's tag; None when nothing is deployed (or the host is unreachable).
    pub live: Option<String>,
    pub health: String,
    pub last: String,
    pub lock: String,
    /// HTTPS at the edge: off, or the certificate's expiry (a warning under 14 days).
    pub tls: String,
    pub unreachable: Option<String>,
    /// `10% to 1.4.0 (crm-green)` while a traffic canary is on.
    pub canary: Option<String>,
}

/// Asks every host (in parallel) for its live release, health, last history line and lock.
pub fn status(runner: &Runner, fleet: &Fleet) -> Vec<HostStatus> {
    let deployments = fleet.deployments(runner);
    std::thread::scope(|scope| {
        let handles: Vec<_> = deployments
            .iter()
            .zip(&fleet.hosts)
            .map(|(d, h)| scope.spawn(move || host_status(d, &h.label)))
            .collect();
        handles
            .into_iter()
            .zip(&fleet.hosts)
            .map(|(handle, h)| {
                handle.join().unwrap_or_else(|_| HostStatus {
                    label: h.label.clone(),
                    live: None,
                    health: String::new(),
                    last: String::new(),
                    lock: String::new(),
                    tls: String::new(),
                    unreachable: Some("the status thread panicked".into()),
                    canary: None,
                })
            })
            .collect()
    })
}

fn host_status(d: &Deployment, label: &str) -> HostStatus {
    let ask = || -> Result<HostStatus> {
        d.target().check(&d.remote.runner)?;
        let stack = Stack::new(d);
        let (live, health) = match stack.live_release()? {
            Some((color, tag)) => (tag, health(&stack.ps(color)?)),
            None => (None, "-".into()),
        };
        let last = d
            .history()?
            .last()
            .map(|e| format!("{} {} {}", e.time, e.tag, e.result))
            .unwrap_or_else(|| "-".into());
        let lock = if d
            .remote
            .succeeds(crate::cmd::Cmd::new("test").args(["-d", &d.target().path(LOCK_DIR)]))?
        {
            let owner = d
                .read(&format!("{LOCK_DIR}/owner"))
                .unwrap_or_else(|_| "unknown".into());
            format!("held: {}", lock_summary(&owner))
        } else {
            "free".into()
        };
        // A certificate openssl cannot read is shown, not a reason to call the host unreachable.
        let tls = match crate::deploy::tls::state(d) {
            Ok(state) => crate::deploy::tls::short(&state, crate::deploy::tls::now()),
            Err(err) => format!("? ({})", fleet::one_line(&err)),
        };
        Ok(HostStatus {
            label: label.to_string(),
            live,
            health,
            last,
            lock,
            tls,
            unreachable: None,
            canary: stack.canary_summary()?,
        })
    };
    ask().unwrap_or_else(|err| HostStatus {
        label: label.to_string(),
        live: None,
        health: String::new(),
        last: String::new(),
        lock: String::new(),
        tls: String::new(),
        unreachable: Some(fleet::one_line(&err)),
        canary: None,
    })
}

/// One line for a lock's owner file: `key=value` lines (`operation`, `who`, `since`) or the
/// single line older versions wrote.
fn lock_summary(owner: &str) -> String {
    let get = |key: &str| {
        owner
            .lines()
            .find_map(|l| l.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
            .map(str::trim)
    };
    match (get("operation"), get("who"), get("since")) {
        (Some(op), Some(who), Some(since)) => format!("{op} by {who} since {since}"),
        _ => owner.lines().next().unwrap_or("unknown").trim().to_string(),
    }
}

/// `3/3 healthy` from the `docker compose ps` table of the live color.
fn health(ps: &str) -> String {
    let rows: Vec<&str> = ps
        .lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .collect();
    let healthy = rows.iter().filter(|l| l.contains("(healthy)")).count();
    format!("{healthy}/{} healthy", rows.len())
}

/// One host driven by the fleet scheduler through the phases of `switch.rs`.
struct HostRun<'a> {
    d: Deployment,
    spec: &'a Spec,
    label: String,
    /// Output prefixed with the label (fleets of more than one host).
    prefixed: bool,
    steps: Steps,
    lock: Option<Lock>,
    prepared: Option<Prepared>,
    /// The release it served before (for the report).
    from: Option<String>,
    /// When its edge began sending traffic to the new release, from the start.
    switched_after: Option<Duration>,
    /// When its switch step failed, from the start.
    failed_after: Option<Duration>,
    started: Instant,
    /// After a revert: what it serves now, in words (for a one-host error).
    outcome: Option<String>,
    /// Its own step failed (not another host's): its new containers' logs are worth showing.
    failed: bool,
    /// A traffic canary over a fleet: what its edge logged so far.
    tally: crate::deploy::canary::Tally,
}

impl<'a> HostRun<'a> {
    fn new(d: Deployment, spec: &'a Spec, label: String, prefixed: bool) -> HostRun<'a> {
        let mut steps = Steps::new(8, d.remote.runner.verbosity);
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
            from: None,
            switched_after: None,
            failed_after: None,
            started: Instant::now(),
            outcome: None,
            failed: false,
            tally: Default::default(),
        }
    }

    /// Prints the failed release's logs under the host's name.
    fn print_logs(&self, project: &str, logs: &str) {
        let header = format!("--- logs of {project} ({}) ---", self.spec.tag);
        if self.prefixed {
            let lines: Vec<String> = std::iter::once(header.as_str())
                .chain(logs.lines())
                .map(|line| format!("[{}] {line}", self.label))
                .collect();
            crate::progress::print_line(false, &lines.join("\n"));
        } else {
            eprintln!("{header}\n{logs}");
        }
    }
}

impl Member for HostRun<'_> {
    fn label(&self) -> String {
        self.label.clone()
    }

    fn lock_key(&self) -> String {
        self.d.target().describe()
    }

    fn check(&mut self) -> Result<()> {
        let (d, min) = (&self.d, self.spec.min_free_disk);
        self.steps
            .step(&format!("Checking {}", d.target().describe()), || {
                switch::check(d, min)
            })
    }

    fn lock(&mut self) -> Result<()> {
        let d = &self.d;
        let operation = format!("{} {}", self.spec.operation, self.spec.tag);
        let wait = self.spec.lock_wait;
        let mut lock = self.steps.step("Taking the deploy lock", || {
            d.lock_waiting(&operation, wait)
        })?;
        // A dead deploy's lock was taken over, or a canary was left for a decision: put the
        // host in a known state before anything (a canary is withdrawn).
        if lock.took_over {
            crate::deploy::reconcile::run(d)?;
            lock.reconciled()?;
        } else if Stack::new(d).canary()?.is_some() {
            d.remote
                .say("a canary was left for a decision: withdrawing it first (`deploy --promote` would have kept it)");
            crate::deploy::reconcile::run(d)?;
        }
        self.lock = Some(lock);
        Ok(())
    }

    fn prepare(&mut self) -> Result<()> {
        let prepared = switch::prepare(&self.d, self.spec, &mut self.steps)?;
        self.from = Some(prepared.from.clone().unwrap_or_else(|| "nothing".into()));
        self.prepared = Some(prepared);
        Ok(())
    }

    fn switch(&mut self) -> Result<()> {
        let prepared = self
            .prepared
            .as_mut()
            .context("internal: the host was not prepared")?;
        let result = prepared.switch(&self.d, self.spec, &mut self.steps);
        if let (true, Some(at)) = (prepared.switched(), prepared.switched_at()) {
            self.switched_after = Some(at.duration_since(self.started));
        }
        self.failed = result.is_err();
        if self.failed {
            self.failed_after = Some(self.started.elapsed());
        }
        result
    }

    fn watch(&mut self, duration: Duration) -> Result<()> {
        if self.spec.canary.is_some() {
            let result = self
                .prepared
                .as_mut()
                .context("internal: the host was not prepared")?
                .compare(&self.d, duration);
            self.failed = result.is_err();
            return result;
        }
        self.d.remote.say(format!(
            "Watching the canary for {}",
            crate::progress::seconds(duration)
        ));
        let result = self
            .prepared
            .as_ref()
            .context("internal: the host was not prepared")?
            .watch(&self.d, duration);
        self.failed = result.is_err();
        result
    }

    fn tally(&mut self) -> Result<crate::deploy::canary::Tally> {
        self.prepared
            .as_ref()
            .context("internal: the host was not prepared")?
            .poll_canary(&self.d, &mut self.tally)?;
        Ok(self.tally.clone())
    }

    fn promote(&mut self) -> Result<()> {
        let result = self
            .prepared
            .as_mut()
            .context("internal: the host was not prepared")?
            .promote(&self.d);
        self.failed = result.is_err();
        result
    }

    fn finish(&mut self) -> Result<()> {
        let prepared = self
            .prepared
            .take()
            .context("internal: the host was not prepared")?;
        let held = prepared.held();
        prepared.finish(&self.d, self.spec, &mut self.steps)?;
        if held {
            return Ok(());
        }
        self.d.remote.say(format!(
            "{} is live on {} ({} took {})",
            self.spec.tag,
            self.d.target().describe(),
            self.spec.operation,
            self.steps.elapsed()
        ));
        Ok(())
    }

    fn switch_back(&mut self) -> Result<()> {
        match self.prepared.as_mut() {
            Some(prepared) => prepared.switch_back(&self.d),
            None => Ok(()),
        }
    }

    fn revert(&mut self, why: &str) -> Result<()> {
        // Every command a cleanup, so that it also runs after Ctrl-C.
        let (d, spec) = (&self.d.undoing(), self.spec);
        let Some(prepared) = self.prepared.as_ref() else {
            // Locked, not prepared: nothing changed; the history still says what happened.
            let _ = d.record(
                &spec.deploy_id,
                &spec.tag,
                "",
                spec.strategy.name(),
                &format!("failed; never switched ({why})"),
            );
            return Ok(());
        };
        let (undo, logs) = prepared.revert(d);
        if self.failed && !logs.is_empty() {
            self.print_logs(&prepared.next_project(d), &logs);
        }
        let from = prepared.from.as_deref().unwrap_or("nothing");
        let outcome = match (&undo, prepared.serving_before(), prepared.touched()) {
            (Ok(()), _, false) if self.prefixed => "never switched".to_string(),
            (Ok(()), true, _) => format!("rolled back: {from} keeps serving"),
            (Ok(()), false, _) => "nothing was serving before; nothing is now".to_string(),
            (Err(err), _, _) => format!("AND putting {from} back failed: {err:#}"),
        };
        let _ = d.record(
            &spec.deploy_id,
            &spec.tag,
            &prepared.revision(d),
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
    fn a_lock_owner_in_one_line() {
        let owner = "token=abc\noperation=deploy 1.4.0\nwho=ci@runner\npid=42\nsince=2026-12-01T10:00:00Z\n";
        assert_eq!(
            lock_summary(owner),
            "deploy 1.4.0 by ci@runner since 2026-12-01T10:00:00Z"
        );
        assert_eq!(
            lock_summary("deploy 1.4.0 by me@box (pid 1) since 2026"),
            "deploy 1.4.0 by me@box (pid 1) since 2026"
        );
        assert_eq!(lock_summary(""), "unknown");
    }

    #[test]
    fn health_counts_healthy_containers() {
        let ps = "SERVICE   IMAGE   STATUS\nphp  x  Up 2 minutes (healthy)\nworker  y  Up 2 minutes (healthy)\nnginx  z  Up 2 minutes (unhealthy)\n";
        assert_eq!(health(ps), "2/3 healthy");
        assert_eq!(health("SERVICE IMAGE STATUS\n"), "0/0 healthy");
    }

    fn fleet_of(n: usize) -> Fleet {
        Fleet {
            env: Some("production".into()),
            hosts: (1..=n)
                .map(|i| FleetHost {
                    label: format!("web{i}"),
                    spec: format!("deploy@web{i}"),
                    target: Target::new(Some(&format!("deploy@web{i}")), "/srv/crm", None).unwrap(),
                })
                .collect(),
            stack: "crm".into(),
            keep_backups: 5,
            min_free_disk: 1,
            canary: 0,
            canary_wait: None,
            lock_wait: None,
            wave: Wave::Hosts(1),
            strategy: Strategy::Rolling,
            release_command: true,
            tls: None,
            traffic_canary: None,
        }
    }

    #[test]
    fn each_host_of_a_fleet_gets_its_own_labelled_remote() {
        let runner = Runner::new(true, crate::progress::Verbosity::Quiet);
        let ds = fleet_of(3).deployments(&runner);
        let labels: Vec<Option<String>> = ds
            .iter()
            .map(|d| d.remote.label.as_deref().map(String::from))
            .collect();
        assert_eq!(
            labels,
            [
                Some("web1".into()),
                Some("web2".into()),
                Some("web3".into())
            ]
        );
        assert_eq!(fleet_of(1).deployments(&runner)[0].remote.label, None);
        assert_eq!(fleet_of(3).describe(), "3 hosts of production");
    }
}
