//! A deploy across several hosts that ends on ONE release: every host switched, or every host
//! back where it was. One host is a fleet of one: the same code path.
//!
//! The order (each step waits for every host before the next starts):
//!   1. check every host (in parallel): ssh, directory, compose.yaml, free disk space;
//!   2. lock every host, one after the other in a fixed order (sorted by host and directory, so
//!      two fleets naming the same hosts never hold each other's locks half-way);
//!   3. prepare every host (in parallel): pull the release, back up the data;
//!   4. switch the canary and verify it, then optionally watch it for `canary_wait`;
//!   5. switch the rest in waves, the hosts of a wave in parallel.
//!
//! A traffic canary over several hosts (`Options::traffic_canary`) replaces 4 and 5: every host
//! splits its edge's requests at once, the fleet's counts (every edge's log, added up) are
//! judged for `canary_wait`, then every host is promoted, or every host withdraws it (the revert).
//!
//! No host drains or removes its old release until every host has switched and verified: until
//! then a switched host still runs both, and putting it back is an instant edge switch. If any
//! host fails at any step (or on Ctrl-C, which makes the running commands fail), every host
//! that had switched is reverted, the others record that they never switched, and the report
//! says per host what happened.
//!
//! What a host does at each step is behind [`Member`]; this file is only the scheduling, so it
//! is unit-tested with fake hosts.

use std::time::Duration;

use anyhow::{bail, Result};

use crate::deploy::canary::{self, Share, Tally};
use crate::interrupt::Interrupted;

/// One host of the fleet, as the scheduler drives it. Each call does one step on that host;
/// `revert` must work after any of them (also after Ctrl-C: it uses cleanup commands).
pub trait Member: Send {
    /// Short name for output and the report, e.g. `web1` or `10.0.0.2:2222`.
    fn label(&self) -> String;
    /// Sort key of the lock order: the same hosts are always locked in the same order.
    fn lock_key(&self) -> String;
    fn check(&mut self) -> Result<()>;
    fn lock(&mut self) -> Result<()>;
    /// Pull, back up: everything before the switch that changes nothing users see.
    fn prepare(&mut self) -> Result<()>;
    /// Start the new release beside the live one, switch the edge, verify through the edge.
    fn switch(&mut self) -> Result<()>;
    /// Keep checking the switched host for `duration` (the canary's probation).
    fn watch(&mut self, duration: Duration) -> Result<()>;
    /// A traffic canary: this host's edge's counts so far (canary and live requests, 5xx).
    fn tally(&mut self) -> Result<Tally>;
    /// A traffic canary judged good over the fleet: this host's edge sends it every request.
    fn promote(&mut self) -> Result<()>;
    /// Every host switched: drain and remove the old release, record success.
    fn finish(&mut self) -> Result<()>;
    /// Point the edge back at the previous release, if this host switched: the fast part of a
    /// revert, done on every host first so the fleet serves one release again at once.
    /// Cleanup commands only.
    fn switch_back(&mut self) -> Result<()>;
    /// Put back whatever else this host changed (nothing if it never switched) and record the
    /// failure (`why`, in one line). Cleanup commands only.
    fn revert(&mut self, why: &str) -> Result<()>;
    /// Release the lock (if held). Also a cleanup.
    fn unlock(&mut self);
}

/// How many hosts switch together after the canary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wave {
    Hosts(usize),
    /// A share of the whole fleet, rounded up (at least one host).
    Percent(u8),
}

impl Wave {
    /// `N` (hosts, at least 1) or `P%` (1 to 100).
    pub fn parse(text: &str) -> Result<Wave> {
        let bad = || {
            anyhow::anyhow!(
                "invalid wave {text:?}: a number of hosts (e.g. 2) or a share of the fleet (e.g. 50%)"
            )
        };
        match text.trim().strip_suffix('%') {
            Some(p) => match p.parse::<u8>() {
                Ok(p) if (1..=100).contains(&p) => Ok(Wave::Percent(p)),
                _ => Err(bad()),
            },
            None => match text.trim().parse::<usize>() {
                Ok(n) if n >= 1 => Ok(Wave::Hosts(n)),
                _ => Err(bad()),
            },
        }
    }

    fn size(self, fleet: usize) -> usize {
        match self {
            Wave::Hosts(n) => n,
            Wave::Percent(p) => (fleet * usize::from(p)).div_ceil(100),
        }
        .max(1)
    }
}

impl std::fmt::Display for Wave {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Wave::Hosts(n) => write!(f, "{n}"),
            Wave::Percent(p) => write!(f, "{p}%"),
        }
    }
}

/// Who switches when: the canary alone, then the others (in the fleet's order) in waves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub canary: usize,
    pub waves: Vec<Vec<usize>>,
}

impl Plan {
    pub fn new(hosts: usize, canary: usize, wave: Wave) -> Plan {
        assert!(canary < hosts, "the canary is one of the hosts");
        let rest: Vec<usize> = (0..hosts).filter(|&i| i != canary).collect();
        let waves = rest
            .chunks(wave.size(hosts))
            .map(<[usize]>::to_vec)
            .collect();
        Plan { canary, waves }
    }
}

/// Where a host ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fate {
    /// Nothing was changed on it: the fleet stopped at the checks or locks (its own passed).
    Untouched,
    /// Its check or lock failed (`unreachable: ...`, `locked: ...`); nothing was changed.
    Refused(String),
    /// Locked (maybe pulled), but the fleet stopped before it switched; nothing users see changed.
    NeverSwitched,
    /// Its own prepare or switch failed; what it had started was undone.
    Failed(String),
    /// Serves the new release.
    Switched,
    /// Switched, then put back on its previous release because another host failed.
    Reverted,
    /// Putting it back failed too: it needs a look (the message says what failed).
    RevertFailed(String),
    /// Serves the new release, but removing the old one failed.
    SwitchedUntidy(String),
}

impl Fate {
    /// For the report's `result` column.
    pub fn describe(&self) -> String {
        match self {
            Fate::Untouched => "nothing changed".into(),
            Fate::Refused(why) => why.clone(),
            Fate::NeverSwitched => "never switched".into(),
            Fate::Failed(why) => format!("failed, put back: {why}"),
            Fate::Switched => "switched".into(),
            Fate::Reverted => "reverted".into(),
            Fate::RevertFailed(why) => format!("REVERT FAILED: {why}"),
            Fate::SwitchedUntidy(why) => format!("switched; old release left running: {why}"),
        }
    }
}

/// The step at which the fleet stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    Check,
    Lock,
    Prepare,
    Canary,
    /// 1-based, after the canary.
    Wave(usize),
    Finish,
}

/// What happened: each host's fate (in the fleet's order) and, if it failed, why.
#[derive(Debug)]
pub struct Report {
    pub fates: Vec<Fate>,
    /// The step, the host, and its error; None when every host switched.
    pub failure: Option<(Stage, usize, anyhow::Error)>,
    /// From the moment the failing step ended to every host being back on its previous release.
    pub recovered_after: Option<Duration>,
}

#[cfg(test)]
impl Report {
    pub fn succeeded(&self) -> bool {
        self.failure.is_none()
    }

    /// True if a signal stopped the fleet (exit 128 + signal).
    pub fn interrupted(&self) -> Option<i32> {
        self.failure
            .as_ref()
            .and_then(|(_, _, e)| e.downcast_ref::<Interrupted>())
            .map(|i| i.0)
    }
}

/// How the scheduler runs: in parallel (real runs), or one host after the other (--dry-run, so
/// the printed plan reads the same every time).
#[derive(Clone, Copy, Debug)]
pub struct Options {
    pub parallel: bool,
    pub canary_wait: Option<Duration>,
    /// A traffic canary over several hosts: all split at once, judged together, no canary host.
    pub traffic_canary: Option<Share>,
    /// Print the fleet's comparison line (not under -q).
    pub say: bool,
    /// --dry-run: no edge logged anything, so the comparison is not run (the promotion is shown).
    pub dry_run: bool,
}

/// Runs the fleet through the steps above; never returns early without reverting.
pub fn run<M: Member>(members: &mut [M], plan: &Plan, options: Options) -> Report {
    let n = members.len();
    let mut fates = vec![Fate::Untouched; n];
    let all: Vec<usize> = (0..n).collect();

    // 1. Checks: nothing is locked or changed yet, so a failure simply stops here.
    let failed = each(members, &all, options.parallel, |m| m.check());
    if let Some(failure) = first_failure(failed, &mut fates, Stage::Check, |why| {
        Fate::Refused(format!("unreachable: {why}"))
    }) {
        return Report {
            fates,
            failure: Some(failure),
            recovered_after: None,
        };
    }

    // 2. Locks, one by one in a fixed order; a refusal releases those taken.
    let mut order = all.clone();
    order.sort_by_key(|&i| members[i].lock_key());
    let mut locked = Vec::new();
    for &i in &order {
        match members[i].lock().and_then(|()| crate::interrupt::check()) {
            Ok(()) => {
                locked.push(i);
                fates[i] = Fate::NeverSwitched;
            }
            Err(err) => {
                // The lock may have been taken just before the interrupt was seen.
                if err.is::<Interrupted>() {
                    locked.push(i);
                }
                fates[i] = Fate::Refused(format!("locked: {}", one_line(&err)));
                for &j in locked.iter().rev() {
                    members[j].unlock();
                    if fates[j] == Fate::NeverSwitched {
                        fates[j] = Fate::Untouched;
                    }
                }
                return Report {
                    fates,
                    failure: Some((Stage::Lock, i, err)),
                    recovered_after: None,
                };
            }
        }
    }

    let result = switch_all(members, plan, options, &all, &mut fates);
    let mut recovered_after = None;
    let failure = match result {
        Ok(()) => {
            // 6. Every host serves the new release: only now do they drop the old one.
            let failed = each(members, &all, options.parallel, |m| m.finish());
            let mut failure = None;
            for (i, err) in failed {
                fates[i] = Fate::SwitchedUntidy(one_line(&err));
                failure.get_or_insert((Stage::Finish, i, err));
            }
            failure
        }
        Err(failure) => {
            let seen = std::time::Instant::now();
            let why = format!(
                "{} on {}: {}",
                stage_name(failure.0),
                members[failure.1].label(),
                one_line(&failure.2)
            );
            revert_all(members, &all, options.parallel, &mut fates, &why, || {
                recovered_after = Some(seen.elapsed())
            });
            Some(failure)
        }
    };
    for &i in order.iter().rev() {
        members[i].unlock();
    }
    Report {
        fates,
        failure,
        recovered_after,
    }
}

/// Steps 3 to 5. On error, `fates` says who is switched (to be reverted) and who failed.
fn switch_all<M: Member>(
    members: &mut [M],
    plan: &Plan,
    options: Options,
    all: &[usize],
    fates: &mut [Fate],
) -> std::result::Result<(), (Stage, usize, anyhow::Error)> {
    // 3. Prepare everywhere; one host that cannot pull stops the fleet before any switch.
    let failed = each(members, all, options.parallel, |m| m.prepare());
    if let Some(failure) = first_failure(failed, fates, Stage::Prepare, Fate::Failed) {
        return Err(failure);
    }
    if let Some(share) = options.traffic_canary {
        return traffic_canary(members, options, all, fates, share);
    }
    // 4. The canary alone, then its probation.
    let canary = plan.canary;
    let waves = std::iter::once((Stage::Canary, vec![canary])).chain(
        plan.waves
            .iter()
            .enumerate()
            .map(|(k, wave)| (Stage::Wave(k + 1), wave.clone())),
    );
    for (stage, wave) in waves {
        if let Err(err) = crate::interrupt::check() {
            return Err((stage, wave[0], err));
        }
        let failed = each(members, &wave, options.parallel, |m| m.switch());
        for &i in &wave {
            fates[i] = Fate::Switched;
        }
        if let Some(failure) = first_failure(failed, fates, stage, Fate::Failed) {
            return Err(failure);
        }
        if stage == Stage::Canary {
            if let Some(wait) = options.canary_wait {
                if let Err(err) = members[canary].watch(wait) {
                    fates[canary] = Fate::Failed(one_line(&err));
                    return Err((Stage::Canary, canary, err));
                }
            }
        }
    }
    Ok(())
}

/// Every host splits its edge's requests, the fleet's counts are judged for the wait, then every
/// host is promoted (a wait of zero leaves the split on every host for `deploy --promote`).
fn traffic_canary<M: Member>(
    members: &mut [M],
    options: Options,
    all: &[usize],
    fates: &mut [Fate],
    share: Share,
) -> std::result::Result<(), (Stage, usize, anyhow::Error)> {
    if let Err(err) = crate::interrupt::check() {
        return Err((Stage::Canary, 0, err));
    }
    let failed = each(members, all, options.parallel, |m| m.switch());
    for &i in all {
        fates[i] = Fate::Switched;
    }
    if let Some(failure) = first_failure(failed, fates, Stage::Canary, Fate::Failed) {
        return Err(failure);
    }
    let wait = options.canary_wait.unwrap_or_default();
    if wait.is_zero() {
        return Ok(());
    }
    if options.say {
        crate::progress::print_line(
            false,
            &format!(
                "Comparing the canary ({share} of the requests on {} hosts) with the live release for {}",
                all.len(),
                crate::progress::seconds(wait)
            ),
        );
    }
    let say = |line: String| {
        if options.say {
            crate::progress::print_line(false, &line);
        }
    };
    let judged = if options.dry_run {
        Ok(Tally::default())
    } else {
        canary::judge_for(share, wait, say, || {
            members
                .iter_mut()
                .map(|m| Ok((m.label(), m.tally()?)))
                .collect()
        })
    };
    if let Err(err) = judged {
        // No host is to blame: the fleet's canary is withdrawn everywhere.
        return Err((Stage::Canary, 0, err));
    }
    let failed = each(members, all, options.parallel, |m| m.promote());
    first_failure(failed, fates, Stage::Canary, Fate::Failed).map_or(Ok(()), Err)
}

/// Reverts every host that got as far as its lock; a host whose own step failed undoes its part.
/// First every edge goes back (then `back` is called: the fleet serves one release again), then
/// the new containers are removed and the failure recorded.
fn revert_all<M: Member>(
    members: &mut [M],
    all: &[usize],
    parallel: bool,
    fates: &mut [Fate],
    why: &str,
    back: impl FnOnce(),
) {
    let reached: Vec<usize> = all
        .iter()
        .copied()
        .filter(|&i| !matches!(fates[i], Fate::Untouched | Fate::Refused(_)))
        .collect();
    let mut failed = each(members, &reached, parallel, |m| m.switch_back());
    back();
    for (i, err) in each(members, &reached, parallel, |m| m.revert(why)) {
        if !failed.iter().any(|(j, _)| *j == i) {
            failed.push((i, err));
        }
    }
    for &i in &reached {
        if fates[i] == Fate::Switched {
            fates[i] = Fate::Reverted;
        }
    }
    for (i, err) in failed {
        fates[i] = Fate::RevertFailed(one_line(&err));
    }
}

/// Runs `step` on the hosts `which` (in parallel or in order); returns the failures, in the
/// fleet's order.
fn each<M: Member>(
    members: &mut [M],
    which: &[usize],
    parallel: bool,
    step: impl Fn(&mut M) -> Result<()> + Sync,
) -> Vec<(usize, anyhow::Error)> {
    let chosen = members
        .iter_mut()
        .enumerate()
        .filter(|(i, _)| which.contains(i));
    let results: Vec<(usize, Result<()>)> = if parallel && which.len() > 1 {
        std::thread::scope(|scope| {
            let step = &step;
            let handles: Vec<_> = chosen
                .map(|(i, m)| (i, scope.spawn(move || step(m))))
                .collect();
            handles
                .into_iter()
                .map(|(i, h)| {
                    let result = h.join().unwrap_or_else(|_| {
                        Err(anyhow::anyhow!("the thread of this host panicked"))
                    });
                    (i, result)
                })
                .collect()
        })
    } else {
        chosen.map(|(i, m)| (i, step(m))).collect()
    };
    results
        .into_iter()
        .filter_map(|(i, r)| r.err().map(|e| (i, e)))
        .collect()
}

/// Marks the failed hosts and picks the error the command reports: an interrupt first (so the
/// exit code says so), else the first host's in the fleet's order.
fn first_failure(
    failed: Vec<(usize, anyhow::Error)>,
    fates: &mut [Fate],
    stage: Stage,
    fate: impl Fn(String) -> Fate,
) -> Option<(Stage, usize, anyhow::Error)> {
    for (i, err) in &failed {
        fates[*i] = fate(one_line(err));
    }
    let at = failed
        .iter()
        .position(|(_, e)| e.is::<Interrupted>())
        .unwrap_or(0);
    failed.into_iter().nth(at).map(|(i, err)| (stage, i, err))
}

pub fn stage_name(stage: Stage) -> String {
    match stage {
        Stage::Check => "check".into(),
        Stage::Lock => "lock".into(),
        Stage::Prepare => "prepare (pull, backup, release command)".into(),
        Stage::Canary => "canary".into(),
        Stage::Wave(n) => format!("wave {n}"),
        Stage::Finish => "finish".into(),
    }
}

/// An error and its causes on one line.
pub fn one_line(err: &anyhow::Error) -> String {
    format!("{err:#}").replace('\n', " ")
}

/// A plain text table: a header row, then one row per host, columns padded to their widest cell.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        format!("{}\n", padded.join("  ").trim_end())
    };
    let mut out = line(header.to_vec());
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

/// The releases a fleet serves, each with its hosts, when there is more than one (None: one
/// release, or nothing deployed anywhere). `live` is (host, live tag or None).
pub fn split_releases(live: &[(String, Option<String>)]) -> Option<String> {
    let mut groups: Vec<(String, Vec<&str>)> = Vec::new();
    for (host, tag) in live {
        let tag = tag.clone().unwrap_or_else(|| "nothing".into());
        match groups.iter_mut().find(|(t, _)| *t == tag) {
            Some((_, hosts)) => hosts.push(host),
            None => groups.push((tag, vec![host])),
        }
    }
    (groups.len() > 1).then(|| {
        groups
            .iter()
            .map(|(tag, hosts)| format!("{tag} on {}", hosts.join(", ")))
            .collect::<Vec<_>>()
            .join("; ")
    })
}

/// The one release every host agrees to go back to (from each host's history), or a refusal
/// naming who says what. `previous` is (host, that host's previous successful release).
pub fn agreed_release(previous: &[(String, Option<String>)]) -> Result<String> {
    let tags: Vec<&Option<String>> = previous.iter().map(|(_, t)| t).collect();
    match tags.first() {
        Some(Some(first)) if tags.iter().all(|t| t.as_deref() == Some(first)) => Ok(first.clone()),
        _ => {
            let said: Vec<String> = previous
                .iter()
                .map(|(h, t)| format!("{h}: {}", t.as_deref().unwrap_or("none")))
                .collect();
            bail!(
                "the hosts' histories disagree on the previous release ({}); pick one with --to TAG",
                said.join(", ")
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// A host that logs each call and fails where it is told to.
    struct Fake {
        name: String,
        fail_at: Option<String>,
        log: Arc<Mutex<Vec<String>>>,
    }

    impl Fake {
        fn step(&self, step: &'static str) -> Result<()> {
            self.log
                .lock()
                .unwrap()
                .push(format!("{step} {}", self.name));
            match self.fail_at.as_deref() {
                Some(at) if at == step => bail!("{step} broke on {}", self.name),
                Some("interrupt") if step == "switch" => Err(Interrupted(2).into()),
                _ => Ok(()),
            }
        }
    }

    impl Member for Fake {
        fn label(&self) -> String {
            self.name.clone()
        }
        fn lock_key(&self) -> String {
            self.name.clone()
        }
        fn check(&mut self) -> Result<()> {
            self.step("check")
        }
        fn lock(&mut self) -> Result<()> {
            self.step("lock")
        }
        fn prepare(&mut self) -> Result<()> {
            self.step("prepare")
        }
        fn switch(&mut self) -> Result<()> {
            self.step("switch")
        }
        fn watch(&mut self, _: Duration) -> Result<()> {
            self.step("watch")
        }
        fn tally(&mut self) -> Result<Tally> {
            self.step("tally")?;
            // `name!bad`: this host's canary fails every request.
            let errors = if self.fail_at.as_deref() == Some("bad") {
                30
            } else {
                0
            };
            Ok(Tally {
                canary: canary::Count {
                    requests: 30,
                    errors,
                },
                live: canary::Count {
                    requests: 100,
                    errors: 0,
                },
                offset: 0,
            })
        }
        fn promote(&mut self) -> Result<()> {
            self.step("promote")
        }
        fn finish(&mut self) -> Result<()> {
            self.step("finish")
        }
        fn switch_back(&mut self) -> Result<()> {
            self.step("switch_back")
        }
        fn revert(&mut self, _: &str) -> Result<()> {
            self.step("revert")
        }
        fn unlock(&mut self) {
            let _ = self.step("unlock");
        }
    }

    /// Hosts named as given, `name!step` fails at that step; returns the log of calls.
    fn fleet(specs: &[&str], wave: Wave, wait: bool) -> (Report, Vec<String>) {
        fleet_with(specs, wave, wait, None)
    }

    fn fleet_with(
        specs: &[&str],
        wave: Wave,
        wait: bool,
        traffic_canary: Option<Share>,
    ) -> (Report, Vec<String>) {
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut members: Vec<Fake> = specs
            .iter()
            .map(|spec| {
                let (name, fail_at) = match spec.split_once('!') {
                    Some((n, at)) => (n, Some(at.to_string())),
                    None => (*spec, None),
                };
                Fake {
                    name: name.into(),
                    fail_at,
                    log: log.clone(),
                }
            })
            .collect();
        let plan = Plan::new(members.len(), 0, wave);
        let options = Options {
            parallel: true,
            // A traffic canary's wait of 0 leaves the split; a host canary's None skips the watch.
            canary_wait: wait
                .then_some(Duration::from_secs(1))
                .or(traffic_canary.map(|_| Duration::ZERO)),
            traffic_canary,
            say: false,
            dry_run: false,
        };
        let report = run(&mut members, &plan, options);
        let log = log.lock().unwrap().clone();
        (report, log)
    }

    fn calls(log: &[String], step: &str) -> Vec<String> {
        let mut hosts: Vec<String> = log
            .iter()
            .filter_map(|l| l.strip_prefix(&format!("{step} ")).map(String::from))
            .collect();
        hosts.sort();
        hosts
    }

    #[test]
    fn waves_by_count_or_share() {
        assert_eq!(
            Plan::new(5, 0, Wave::Hosts(2)).waves,
            vec![vec![1, 2], vec![3, 4]]
        );
        assert_eq!(
            Plan::new(4, 2, Wave::Hosts(1)).waves,
            vec![vec![0], vec![1], vec![3]]
        );
        // 50% of 5 hosts is 3 (rounded up); 1% is still one host.
        assert_eq!(
            Plan::new(5, 0, Wave::Percent(50)).waves,
            vec![vec![1, 2, 3], vec![4]]
        );
        assert_eq!(Plan::new(3, 0, Wave::Percent(1)).waves.len(), 2);
        assert_eq!(
            Plan::new(1, 0, Wave::Hosts(1)).waves,
            Vec::<Vec<usize>>::new()
        );
        assert_eq!(Wave::parse("3").unwrap(), Wave::Hosts(3));
        assert_eq!(Wave::parse("25%").unwrap(), Wave::Percent(25));
        for bad in ["0", "0%", "101%", "-1", "x", "", "%"] {
            assert!(Wave::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn all_switch_then_all_finish_and_unlock() {
        let (report, log) = fleet(&["a", "b", "c"], Wave::Hosts(1), true);
        assert!(report.succeeded());
        assert_eq!(report.fates, vec![Fate::Switched; 3]);
        // Nobody removes its old release before the last host switched.
        let last_switch = log.iter().rposition(|l| l.starts_with("switch")).unwrap();
        let first_finish = log.iter().position(|l| l.starts_with("finish")).unwrap();
        assert!(last_switch < first_finish, "{log:?}");
        // The canary goes first and alone, then its watch, then the waves in order.
        assert_eq!(log[9..13], ["switch a", "watch a", "switch b", "switch c"]);
        assert_eq!(calls(&log, "unlock"), ["a", "b", "c"]);
        assert!(calls(&log, "revert").is_empty());
    }

    #[test]
    fn locks_are_taken_in_a_fixed_order() {
        let (_, log) = fleet(&["web3", "web1", "web2"], Wave::Hosts(3), false);
        let locks: Vec<&String> = log.iter().filter(|l| l.starts_with("lock")).collect();
        assert_eq!(locks, ["lock web1", "lock web2", "lock web3"]);
    }

    #[test]
    fn a_failed_check_stops_before_any_lock() {
        let (report, log) = fleet(&["a", "b!check", "c"], Wave::Hosts(1), false);
        let (stage, host, _) = report.failure.as_ref().unwrap();
        assert_eq!((*stage, *host), (Stage::Check, 1));
        assert!(calls(&log, "lock").is_empty(), "{log:?}");
        assert!(
            matches!(&report.fates[1], Fate::Refused(w) if w.starts_with("unreachable: check broke on b"))
        );
        assert_eq!(report.fates[0], Fate::Untouched);
    }

    #[test]
    fn a_refused_lock_releases_the_locks_taken() {
        let (report, log) = fleet(&["a", "b!lock", "c"], Wave::Hosts(1), false);
        assert_eq!(report.failure.as_ref().unwrap().0, Stage::Lock);
        assert_eq!(calls(&log, "unlock"), ["a"]);
        assert!(calls(&log, "prepare").is_empty());
        assert!(calls(&log, "lock").contains(&"b".to_string()));
        assert!(
            !calls(&log, "lock").contains(&"c".to_string()),
            "stops at b"
        );
    }

    #[test]
    fn a_failed_pull_stops_before_any_switch() {
        let (report, log) = fleet(&["a", "b", "c!prepare"], Wave::Hosts(1), false);
        assert_eq!(report.failure.as_ref().unwrap().0, Stage::Prepare);
        assert!(calls(&log, "switch").is_empty());
        assert_eq!(
            report.fates,
            [
                Fate::NeverSwitched,
                Fate::NeverSwitched,
                Fate::Failed("prepare broke on c".into())
            ]
        );
        // Every locked host records the failure and unlocks.
        assert_eq!(calls(&log, "revert"), ["a", "b", "c"]);
        assert_eq!(calls(&log, "unlock"), ["a", "b", "c"]);
    }

    #[test]
    fn a_failed_canary_reverts_only_the_canary_and_switches_no_one_else() {
        let (report, log) = fleet(&["a!switch", "b", "c"], Wave::Hosts(1), true);
        assert_eq!(report.failure.as_ref().unwrap().0, Stage::Canary);
        assert_eq!(calls(&log, "switch"), ["a"]);
        assert!(calls(&log, "watch").is_empty());
        assert_eq!(report.fates[0], Fate::Failed("switch broke on a".into()));
        assert_eq!(
            report.fates[1..],
            [Fate::NeverSwitched, Fate::NeverSwitched]
        );
        let (report, _) = fleet(&["a!watch", "b"], Wave::Hosts(1), true);
        assert_eq!(report.failure.as_ref().unwrap().0, Stage::Canary);
        assert_eq!(report.fates[0], Fate::Failed("watch broke on a".into()));
    }

    #[test]
    fn a_failure_mid_wave_reverts_every_switched_host() {
        let (report, log) = fleet(&["a", "b", "c!switch", "d", "e"], Wave::Hosts(2), false);
        let (stage, host, err) = report.failure.as_ref().unwrap();
        assert_eq!((*stage, *host), (Stage::Wave(1), 2));
        assert_eq!(err.to_string(), "switch broke on c");
        assert_eq!(
            report.fates,
            [
                Fate::Reverted,
                Fate::Reverted,
                Fate::Failed("switch broke on c".into()),
                Fate::NeverSwitched,
                Fate::NeverSwitched
            ]
        );
        assert!(
            calls(&log, "finish").is_empty(),
            "nobody drops its old release"
        );
        assert_eq!(calls(&log, "switch"), ["a", "b", "c"]);
        assert_eq!(calls(&log, "unlock").len(), 5);
    }

    #[test]
    fn ctrl_c_mid_wave_reverts_every_switched_host_and_reports_the_signal() {
        let (report, log) = fleet(&["a", "b", "c", "d!interrupt"], Wave::Hosts(1), false);
        assert_eq!(report.interrupted(), Some(2));
        assert_eq!(
            report.fates,
            [
                Fate::Reverted,
                Fate::Reverted,
                Fate::Reverted,
                Fate::Failed(Interrupted(2).to_string())
            ]
        );
        assert_eq!(calls(&log, "unlock").len(), 4);
    }

    #[test]
    fn a_revert_that_fails_is_named() {
        let (report, _) = fleet(&["a!revert", "b!switch"], Wave::Hosts(1), false);
        assert_eq!(
            report.fates,
            [
                Fate::RevertFailed("revert broke on a".into()),
                Fate::Failed("switch broke on b".into())
            ]
        );
        assert!(report.fates[0].describe().starts_with("REVERT FAILED"));
    }

    #[test]
    fn a_traffic_canary_splits_every_host_then_promotes_every_host() {
        let share = Some(Share::parse("20%").unwrap());
        let (report, log) = fleet_with(&["a", "b", "c"], Wave::Hosts(1), true, share);
        assert!(report.succeeded(), "{:?}", report.failure);
        assert_eq!(report.fates, vec![Fate::Switched; 3]);
        // No canary host: every host splits before anything is judged, every host is promoted
        // before any finishes, and the host canary's watch never runs.
        let last = |step: &str| log.iter().rposition(|l| l.starts_with(step)).unwrap();
        let first = |step: &str| log.iter().position(|l| l.starts_with(step)).unwrap();
        assert!(last("switch") < first("tally"), "{log:?}");
        assert!(last("tally") < first("promote") && last("promote") < first("finish"));
        assert_eq!(calls(&log, "promote"), ["a", "b", "c"]);
        assert!(calls(&log, "watch").is_empty());
        // Wait 0: the split stays on every host for a person; nothing judged or promoted.
        let (report, log) = fleet_with(&["a", "b"], Wave::Hosts(1), false, share);
        assert!(report.succeeded());
        assert!(calls(&log, "tally").is_empty() && calls(&log, "promote").is_empty());
        assert_eq!(calls(&log, "finish"), ["a", "b"]);
    }

    #[test]
    fn a_traffic_canary_bad_over_the_fleet_or_failing_a_promotion_is_withdrawn_everywhere() {
        let share = Some(Share::parse("20%").unwrap());
        // One host's canary fails all its requests: the fleet's sum is half 5xx.
        let (report, log) = fleet_with(&["a", "b!bad"], Wave::Hosts(1), true, share);
        let (stage, _, err) = report.failure.as_ref().unwrap();
        assert_eq!(*stage, Stage::Canary);
        assert!(
            err.to_string().starts_with("the canary was withdrawn"),
            "{err}"
        );
        assert_eq!(report.fates, [Fate::Reverted, Fate::Reverted]);
        assert!(calls(&log, "promote").is_empty() && calls(&log, "finish").is_empty());
        assert_eq!(calls(&log, "revert"), ["a", "b"]);
        // A promotion failing on one host: every host goes back, the fleet on one release.
        let (report, log) = fleet_with(&["a", "b!promote", "c"], Wave::Hosts(1), true, share);
        assert_eq!(report.failure.as_ref().unwrap().0, Stage::Canary);
        assert_eq!(
            report.fates,
            [
                Fate::Reverted,
                Fate::Failed("promote broke on b".into()),
                Fate::Reverted
            ]
        );
        assert_eq!(calls(&log, "switch_back"), ["a", "b", "c"]);
        assert!(calls(&log, "finish").is_empty());
    }

    #[test]
    fn a_failed_finish_leaves_the_fleet_on_the_new_release() {
        let (report, _) = fleet(&["a", "b!finish"], Wave::Hosts(1), false);
        assert_eq!(report.failure.as_ref().unwrap().0, Stage::Finish);
        assert_eq!(report.fates[0], Fate::Switched);
        assert!(matches!(report.fates[1], Fate::SwitchedUntidy(_)));
    }
    #[test]
    fn tables_align_their_columns() {
        let t = table(
            &["host", "result"],
            &[
                vec!["web1".into(), "switched".into()],
                vec!["10.0.0.12".into(), "reverted".into()],
            ],
        );
        assert_eq!(
            t,
            "host       result\nweb1       switched\n10.0.0.12  reverted\n"
        );
    }

    #[test]
    fn a_fleet_on_two_releases_is_named() {
        let live = |v: &[(&str, Option<&str>)]| -> Vec<(String, Option<String>)> {
            v.iter()
                .map(|(h, t)| (h.to_string(), t.map(String::from)))
                .collect()
        };
        assert_eq!(
            split_releases(&live(&[("a", Some("1")), ("b", Some("1"))])),
            None
        );
        assert_eq!(
            split_releases(&live(&[
                ("a", Some("1")),
                ("b", Some("2")),
                ("c", Some("1"))
            ])),
            Some("1 on a, c; 2 on b".into())
        );
        assert_eq!(
            split_releases(&live(&[("a", None), ("b", Some("2"))])),
            Some("nothing on a; 2 on b".into())
        );
        assert_eq!(
            agreed_release(&live(&[("a", Some("1")), ("b", Some("1"))])).unwrap(),
            "1"
        );
        let e = agreed_release(&live(&[("a", Some("1")), ("b", Some("0")), ("c", None)]))
            .unwrap_err()
            .to_string();
        assert_eq!(e, "the hosts' histories disagree on the previous release (a: 1, b: 0, c: none); pick one with --to TAG");
    }
}
