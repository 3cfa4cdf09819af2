//! The deploy lock of a target, `.deploy/lock/`, and how a later deploy gets past the lock of a
//! deploy that died (SIGKILL, a closed laptop, a cancelled CI runner) without anyone logging in.
//!
//!   .deploy/lock/               taken with `mkdir` (atomic: one deploy at a time)
//!   .deploy/lock/owner          key=value lines: token, operation, who, host, pid, the pid's
//!                               start time, the boot id of the machine running xtask, since
//!   .deploy/lock/lease-TOKEN    its mtime is the holder's heartbeat, renewed (`touch -c`) every
//!                               5 s by a thread while the guard lives; expired after 30 s
//!   .deploy/lock.dead-TOKEN/    a dead holder's lock, moved aside; it stays until the target
//!                               was reconciled, so whoever holds the lock next knows to do it
//!
//! A holder is provably dead when it ran on this machine (same host name and boot id) and its
//! pid is gone or belongs to another process now, when this machine rebooted since, or when its
//! lease expired. The lease is compared on the target's clock only (the lease file's mtime
//! against the target's `date +%s`), so clock skew between machines does not matter. A lock
//! from another machine can only be taken over once its lease expired.
//!
//! Taking over is race-free: the dead lock is renamed to `lock.dead-<its token>` (one rename
//! wins; the name is the same for every contender, and a non-empty directory of that name makes
//! any later rename fail), the renamed lock is checked to be the one judged dead (else it goes
//! back), then the usual `mkdir`. The takeover is said in one line and recorded in the history.
//! Whoever then holds the lock sees `lock.dead-*` ([`Lock::took_over`]): deploy reconciles the
//! target (`reconcile.rs`) and calls [`Lock::reconciled`].

use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::cmd::{Cmd, Runner};
use crate::deploy::deployment::{who, Deployment};
use crate::deploy::target::Target;
use crate::progress::Verbosity;
use crate::project::now_rfc3339;

pub const LOCK_DIR: &str = ".deploy/lock";

/// How long a lease lasts without renewal.
pub const LEASE: Duration = Duration::from_secs(30);
/// How often the holder renews its lease.
const RENEW_EVERY: Duration = Duration::from_secs(5);
/// How often a waiting deploy (`--lock-wait`) looks at the lock again.
const POLL: Duration = Duration::from_secs(2);

/// Who holds the lock: the `owner` file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Holder {
    /// Unique per acquisition; names the lease file and the dead lock's grave.
    pub token: String,
    pub operation: String,
    /// `user@machine`.
    pub who: String,
    /// Host name of the machine running xtask (not the target).
    pub host: String,
    pub pid: u32,
    /// The pid's start time (clock ticks since boot, /proc/PID/stat): a reused pid is not ours.
    pub pid_start: Option<u64>,
    /// `/proc/sys/kernel/random/boot_id` of the machine running xtask.
    pub boot_id: String,
    pub since: String,
    pub lease_secs: u64,
}

impl Holder {
    /// `key=value` lines; values never hold a newline.
    pub fn to_text(&self) -> String {
        let clean = |v: &str| v.replace(['\n', '\r'], " ");
        let mut text = String::new();
        for (key, value) in [
            ("token", self.token.clone()),
            ("operation", self.operation.clone()),
            ("who", self.who.clone()),
            ("host", self.host.clone()),
            ("pid", self.pid.to_string()),
            (
                "pid_start",
                self.pid_start.map(|s| s.to_string()).unwrap_or_default(),
            ),
            ("boot_id", self.boot_id.clone()),
            ("since", self.since.clone()),
            ("lease_secs", self.lease_secs.to_string()),
        ] {
            text.push_str(&format!("{key}={}\n", clean(&value)));
        }
        text
    }

    /// None for anything else, e.g. the one-line owner of older xtask versions.
    pub fn parse(text: &str) -> Option<Holder> {
        let get = |key: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
                .map(str::trim)
        };
        let token = get("token").filter(|t| is_token(t))?.to_string();
        Some(Holder {
            token,
            operation: get("operation").unwrap_or("?").to_string(),
            who: get("who").unwrap_or("?").to_string(),
            host: get("host")?.to_string(),
            pid: get("pid")?.parse().ok()?,
            pid_start: get("pid_start").and_then(|s| s.parse().ok()),
            boot_id: get("boot_id")?.to_string(),
            since: get("since").unwrap_or("?").to_string(),
            lease_secs: get("lease_secs")
                .and_then(|s| s.parse().ok())
                .unwrap_or(LEASE.as_secs()),
        })
    }

    /// `deploy 1.4.0 by me@ci (pid 4242 on ci) since 2026-...`
    pub fn describe(&self) -> String {
        format!(
            "{} by {} (pid {} on {}) since {}",
            self.operation, self.who, self.pid, self.host, self.since
        )
    }
}

/// A token is used in file names: letters, digits, `.`, `_`, `-` only.
fn is_token(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= 200
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        && !t.starts_with('.')
}

/// The machine running xtask, as the lock records it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Here {
    pub host: String,
    pub boot_id: String,
}

impl Here {
    pub fn detect() -> Here {
        let read = |p: &str| {
            std::fs::read_to_string(p)
                .unwrap_or_default()
                .trim()
                .to_string()
        };
        Here {
            host: read("/proc/sys/kernel/hostname"),
            boot_id: read("/proc/sys/kernel/random/boot_id"),
        }
    }
}

/// What this machine says about a pid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pid {
    Gone,
    /// Running, with its start time when /proc tells it.
    Running(Option<u64>),
}

/// The pid's state on this machine: kill(pid, 0), and its start time from /proc.
pub fn local_pid(pid: u32) -> Pid {
    let Ok(pid_t) = libc::pid_t::try_from(pid) else {
        return Pid::Gone;
    };
    if pid_t <= 0 {
        return Pid::Gone;
    }
    // SAFETY: signal 0 only checks that the process exists; no memory is touched.
    let exists = unsafe { libc::kill(pid_t, 0) } == 0
        || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
    if !exists {
        return Pid::Gone;
    }
    Pid::Running(pid_start(pid))
}

/// Field 22 of /proc/PID/stat (start time in clock ticks after boot).
fn pid_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_start(&stat)
}

fn parse_start(stat: &str) -> Option<u64> {
    // "PID (COMM) STATE PPID ...": COMM may hold spaces and parentheses; field 3 is STATE.
    let (_, rest) = stat.rsplit_once(") ")?;
    rest.split(' ').nth(19)?.parse().ok()
}

/// Whether the holder may still be working.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Alive(String),
    Dead(String),
}

/// The decision table. `lease_age`: seconds since the last renewal on the target's clock (None
/// when it could not be read: then only a local pid can prove death). Without a readable owner
/// (a lock being taken right now, or written by an older xtask), the lock's own mtime is the
/// lease.
pub fn judge(
    holder: Option<&Holder>,
    lease_age: Option<u64>,
    here: &Here,
    pid: impl Fn(u32) -> Pid,
) -> Verdict {
    let lease = holder.map_or(LEASE.as_secs(), |h| h.lease_secs);
    let expired = lease_age.filter(|age| *age > lease);
    if let Some(h) = holder {
        if h.host == here.host && !here.host.is_empty() {
            if h.boot_id != here.boot_id {
                return Verdict::Dead(format!("{} has rebooted since", h.host));
            }
            match (pid(h.pid), h.pid_start) {
                (Pid::Gone, _) => {
                    return Verdict::Dead(format!("its process {} is gone", h.pid));
                }
                (Pid::Running(Some(now)), Some(then)) if now != then => {
                    return Verdict::Dead(format!(
                        "its process {} is gone (the pid is another process's now)",
                        h.pid
                    ));
                }
                _ => {}
            }
        }
    }
    match (expired, lease_age) {
        (Some(age), _) => Verdict::Dead(format!(
            "its lease expired: not renewed for {age} s (limit {lease} s)"
        )),
        (None, Some(age)) if holder.is_some() => {
            Verdict::Alive(format!("lease renewed {age} s ago"))
        }
        (None, Some(age)) => Verdict::Alive(format!(
            "no owner record yet, changed {age} s ago (being taken, or an older xtask)"
        )),
        (None, None) => Verdict::Alive("its lease could not be read".into()),
    }
}

/// What `inspect` found in `.deploy/lock`.
#[derive(Clone, Debug)]
pub struct Found {
    pub holder: Option<Holder>,
    /// The owner file as read, when it does not parse (older xtask versions).
    pub raw_owner: Option<String>,
    pub lease_age: Option<u64>,
    /// The lock directory's inode: names the grave of an ownerless lock.
    pub inode: Option<String>,
    pub verdict: Verdict,
}

impl Found {
    pub fn describe(&self) -> String {
        match (&self.holder, &self.raw_owner) {
            (Some(h), _) => h.describe(),
            (None, Some(raw)) if !raw.trim().is_empty() => raw.trim().to_string(),
            _ => "unknown holder (no owner record)".into(),
        }
    }

    /// The name a dead lock is moved to: the same for every deploy that judged it dead.
    fn grave(&self) -> String {
        match &self.holder {
            Some(h) => format!("lock.dead-{}", h.token),
            None => format!(
                "lock.dead-ownerless-{}",
                self.inode.as_deref().unwrap_or("0")
            ),
        }
    }
}

// ---- commands on the target: pure functions, asserted by the unit tests ----

fn path(target: &Target, rel: &str) -> String {
    target.path(rel)
}

pub fn mkdir_lock(target: &Target) -> Cmd {
    target.cmd(Cmd::new("mkdir").arg(path(target, LOCK_DIR)))
}

fn lease_file(token: &str) -> String {
    format!("{LOCK_DIR}/lease-{token}")
}

/// Creates the lease file (its mtime is the first heartbeat).
pub fn start_lease(target: &Target, token: &str) -> Cmd {
    target.cmd(Cmd::new("touch").arg(path(target, &lease_file(token))))
}

/// A heartbeat: updates the lease's mtime, and never creates it (after a takeover our lock is
/// gone, and the new holder's must not be renewed by us).
pub fn renew_lease(target: &Target, token: &str) -> Cmd {
    target.cmd(Cmd::new("touch").args(["-c", &path(target, &lease_file(token))]))
}

/// `inode mtime` of a file or directory, on the target's clock.
pub fn stat(target: &Target, rel: &str) -> Cmd {
    target.cmd(Cmd::new("stat").args(["-c", "%i %Y", &path(target, rel)]))
}

/// The target's clock.
pub fn target_now(target: &Target) -> Cmd {
    target.cmd(Cmd::new("date").arg("+%s"))
}

/// rename(2) of the dead lock; fails when another deploy moved it first.
pub fn bury(target: &Target, grave: &str) -> Cmd {
    target.cmd(Cmd::new("mv").args([
        "-T",
        &path(target, LOCK_DIR),
        &path(target, &format!(".deploy/{grave}")),
    ]))
}

/// Puts back a lock moved aside by mistake (its holder turned out to be alive).
pub fn unbury(target: &Target, grave: &str) -> Cmd {
    target.cmd(Cmd::new("mv").args([
        "-T",
        &path(target, &format!(".deploy/{grave}")),
        &path(target, LOCK_DIR),
    ]))
}

pub fn remove(target: &Target, rel: &str) -> Cmd {
    target.cmd(Cmd::new("rm").args(["-rf", &path(target, rel)]))
}

fn new_token(here: &Here) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let host: String = here
        .host
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .take(60)
        .collect();
    format!("{host}-{}-{nanos:09}", std::process::id())
}

// ---- on a target ----

/// Reads the lock: its holder, how long ago it was renewed, and whether it may still work.
/// None when there is no lock.
pub fn inspect(d: &Deployment, here: &Here) -> Result<Option<Found>> {
    let runner = &d.remote.runner;
    let target = d.target();
    let dir_stat = runner.output(&stat(target, LOCK_DIR))?;
    if !dir_stat.status.success() {
        let exists =
            runner.succeeds(&target.cmd(Cmd::new("test").args(["-e", &path(target, LOCK_DIR)])))?;
        if !exists {
            return Ok(None);
        }
    }
    let dir_stat = String::from_utf8_lossy(&dir_stat.stdout).trim().to_string();
    let owner_path = format!("{LOCK_DIR}/owner");
    let raw = runner
        .output(&target.cmd(Cmd::new("cat").arg(path(target, &owner_path))))
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
    let holder = raw.as_deref().and_then(Holder::parse);
    let lease_stat = match &holder {
        Some(h) => runner
            .output(&stat(target, &lease_file(&h.token)))
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string()),
        None => Some(dir_stat.clone()),
    };
    let now = runner
        .query(&target_now(target))
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok());
    let mtime = |s: &str| s.split(' ').nth(1).and_then(|m| m.parse::<u64>().ok());
    // A holder whose lease file is missing (killed between mkdir and its first heartbeat): the
    // owner file's age stands for it.
    let renewed = match lease_stat.as_deref().and_then(mtime) {
        Some(m) => Some(m),
        None => mtime(&dir_stat),
    };
    let lease_age = match (now, renewed) {
        (Some(now), Some(at)) => Some(now.saturating_sub(at)),
        _ => None,
    };
    let verdict = judge(holder.as_ref(), lease_age, here, local_pid);
    Ok(Some(Found {
        raw_owner: if holder.is_none() { raw } else { None },
        holder,
        lease_age,
        inode: dir_stat.split(' ').next().map(String::from),
        verdict,
    }))
}

/// Held while a deploy runs: renews the lease, and releases the lock when dropped (also after
/// an error or Ctrl-C).
pub struct Lock {
    d: Deployment,
    /// Dead deploys' locks were found beside this one (`lock.dead-*`): the target may be half
    /// changed, and the caller reconciles it, then calls [`Lock::reconciled`].
    pub took_over: bool,
    token: String,
    /// The owner record was written: from then on the lock is ours only if it names our token.
    written: bool,
    graves: Vec<String>,
    renewal: Option<(mpsc::Sender<()>, std::thread::JoinHandle<()>)>,
}

impl Drop for Lock {
    fn drop(&mut self) {
        if let Some((stop, handle)) = self.renewal.take() {
            drop(stop);
            let _ = handle.join();
        }
        if let Err(err) = self.release() {
            eprintln!("warning: could not release the deploy lock: {err:#}");
        }
    }
}

impl Lock {
    /// The target agrees with itself again: the dead locks are removed. Until then they stay, so
    /// whoever takes the lock next (this run may die too) knows to reconcile.
    pub fn reconciled(&mut self) -> Result<()> {
        for grave in std::mem::take(&mut self.graves) {
            self.d
                .remote
                .runner
                .run(&remove(self.d.target(), &format!(".deploy/{grave}")))?;
        }
        Ok(())
    }

    /// Removes the lock if it is still ours: moved aside first (atomic), then checked, so a
    /// holder that lost its lock (taken over after its lease expired, or `lock release --force`)
    /// never removes its successor's.
    fn release(&self) -> Result<()> {
        let d = &self.d;
        let runner = &d.remote.runner;
        if runner.dry_run {
            return runner.cleanup(&remove(d.target(), LOCK_DIR)).map(drop);
        }
        let aside = format!("lock.release-{}", self.token);
        if runner.cleanup(&bury(d.target(), &aside)).is_err() {
            eprintln!("warning: the deploy lock was no longer there when this run ended (released by hand?)");
            return Ok(());
        }
        // A cleanup read: after Ctrl-C a query is refused, and the lock would be put back.
        let owner = runner
            .cleanup(
                &d.target()
                    .cmd(Cmd::new("cat").arg(path(d.target(), &format!(".deploy/{aside}/owner")))),
            )
            .unwrap_or_default();
        let ours = match Holder::parse(&owner) {
            Some(h) => h.token == self.token,
            // Ours only if our owner record was never written (a failed start).
            None => !self.written,
        };
        if !ours {
            runner.cleanup(&unbury(d.target(), &aside))?;
            eprintln!("warning: the deploy lock was taken over while this run held it; left to its new holder");
            return Ok(());
        }
        runner.cleanup(&remove(d.target(), &format!(".deploy/{aside}")))?;
        Ok(())
    }
}

impl Deployment {
    /// Takes the deploy lock, or refuses naming who holds it and since when. A dead holder's lock
    /// is taken over.
    pub fn lock(&self, operation: &str) -> Result<Lock> {
        self.lock_waiting(operation, None)
    }

    /// [`Deployment::lock`], waiting up to `wait` for a live holder to finish.
    pub fn lock_waiting(&self, operation: &str, wait: Option<Duration>) -> Result<Lock> {
        let runner = &self.remote.runner;
        let target = self.target();
        runner.run(&target.cmd(Cmd::new("mkdir").args(["-p", &path(target, ".deploy")])))?;
        let here = Here::detect();
        let deadline = wait.map(|w| Instant::now() + w);
        let mut said_waiting = false;
        let mut lost_races = 0;
        // Each round either takes the lock, takes over a dead one, waits, or refuses; a lost race
        // only starts another round.
        loop {
            let taken = if runner.dry_run {
                runner.run(&mkdir_lock(target)).is_ok()
            } else {
                runner.output(&mkdir_lock(target))?.status.success()
            };
            if taken {
                return self.hold(operation, &here);
            }
            let Some(found) = inspect(self, &here)? else {
                continue; // released meanwhile
            };
            match &found.verdict {
                Verdict::Dead(why) => {
                    let grave = found.grave();
                    let moved = runner.output(&bury(target, &grave))?;
                    if !moved.status.success() {
                        // Another deploy took it over first, or the rename cannot work at all
                        // (permissions, a leftover of that name): then say so, do not spin.
                        lost_races += 1;
                        if lost_races > 20 {
                            bail!(
                                "cannot move the dead deploy lock {} aside on {} ({}); remove it with: cargo xtask lock release --dir {}",
                                found.describe(),
                                target.describe(),
                                String::from_utf8_lossy(&moved.stderr).trim(),
                                target.dir
                            );
                        }
                        std::thread::sleep(Duration::from_millis(100));
                        continue;
                    }
                    // Check it is the lock judged dead: a deploy that stalled between its look
                    // and the rename could have moved a live successor's lock.
                    let moved = self
                        .read(&format!(".deploy/{grave}/owner"))
                        .ok()
                        .and_then(|t| Holder::parse(&t))
                        .map(|h| h.token);
                    if moved != found.holder.as_ref().map(|h| h.token.clone()) {
                        runner.cleanup(&unbury(target, &grave))?;
                        continue;
                    }
                    // Non-empty from now on, so no later rename can reuse this name.
                    runner.cleanup(&target.cmd(Cmd::new("touch").arg(path(
                        target,
                        &format!(".deploy/{grave}/taken-over-by-{}", std::process::id()),
                    ))))?;
                    let previous = found.describe();
                    runner.say(format!("took over the deploy lock of {previous}: {why}"));
                    if let Err(err) = self.record(
                        "-",
                        "-",
                        "",
                        "lock",
                        &format!("took over the lock of {previous}: {why}"),
                    ) {
                        eprintln!("warning: could not record the takeover in the history: {err:#}");
                    }
                }
                Verdict::Alive(why) => {
                    let holder = found.describe();
                    match deadline {
                        Some(until) if Instant::now() < until => {
                            if !said_waiting {
                                runner.say(format!(
                                    "waiting for the deploy lock, held by {holder} ({why})"
                                ));
                                said_waiting = true;
                            }
                            std::thread::sleep(POLL);
                            crate::interrupt::check()?;
                        }
                        _ => bail!(
                            "another deploy holds the lock on {}: {holder} ({why}); wait for it (--lock-wait 10m), or if it is stuck: cargo xtask lock release --dir {}{}",
                            target.describe(),
                            target.dir,
                            if deadline.is_some() { " (waited for --lock-wait)" } else { "" }
                        ),
                    }
                }
            }
        }
    }

    /// Writes the owner record and the first heartbeat, then starts renewing.
    fn hold(&self, operation: &str, here: &Here) -> Result<Lock> {
        let token = new_token(here);
        let mut guard = Lock {
            d: self.clone(),
            took_over: false,
            token: token.clone(),
            written: false,
            graves: Vec::new(),
            renewal: None,
        };
        let holder = Holder {
            token,
            operation: operation.to_string(),
            who: who(),
            host: here.host.clone(),
            pid: std::process::id(),
            pid_start: pid_start(std::process::id()),
            boot_id: here.boot_id.clone(),
            since: now_rfc3339(),
            lease_secs: LEASE.as_secs(),
        };
        self.remote
            .runner
            .run(&start_lease(self.target(), &holder.token))?;
        self.write_atomically(&format!("{LOCK_DIR}/owner"), holder.to_text().as_bytes())?;
        guard.written = true;
        if !self.remote.runner.dry_run {
            guard.renewal = Some(renew(self.target().clone(), &holder.token));
        }
        // Whoever moved a dead lock aside (maybe another deploy, which then lost the mkdir race),
        // the one that holds the lock now reconciles.
        guard.graves = self.graves().context("listing the locks of dead deploys")?;
        guard.took_over = !guard.graves.is_empty();
        Ok(guard)
    }

    /// `lock.dead-*`: locks of dead deploys, moved aside, the target not reconciled since.
    pub fn graves(&self) -> Result<Vec<String>> {
        let deploy_dir = path(self.target(), ".deploy");
        if self.remote.runner.dry_run
            || !self.remote.runner.succeeds(
                &self
                    .target()
                    .cmd(Cmd::new("test").args(["-d", &deploy_dir])),
            )?
        {
            return Ok(Vec::new());
        }
        let listing = self.remote.runner.query(
            &self
                .target()
                .cmd(Cmd::new("ls").args(["-1", &path(self.target(), ".deploy")])),
        )?;
        Ok(listing
            .lines()
            .filter(|name| name.starts_with("lock.dead-"))
            .map(String::from)
            .collect())
    }

    /// `lock release`: removes the lock whoever holds it. Dead locks moved aside stay: the next
    /// deploy reconciles the target and removes them.
    pub fn force_release(&self) -> Result<()> {
        self.remote.runner.run(&remove(self.target(), LOCK_DIR))
    }
}

/// Starts the heartbeat thread: `touch -c` of the lease every 5 s until the sender is dropped.
fn renew(target: Target, token: &str) -> (mpsc::Sender<()>, std::thread::JoinHandle<()>) {
    let (stop, stopped) = mpsc::channel::<()>();
    let cmd = renew_lease(&target, token);
    // Quiet: `-v` would print a heartbeat every 5 s. Runs as cleanup: a Ctrl-C stops the deploy,
    // not the lease of its undo.
    let runner = Runner::new(false, Verbosity::Quiet);
    let handle = std::thread::spawn(move || {
        let mut failing = false;
        while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(RENEW_EVERY) {
            match runner.cleanup(&cmd) {
                Ok(_) => failing = false,
                Err(err) if !failing => {
                    failing = true;
                    eprintln!("warning: could not renew the deploy lock's lease: {err:#}");
                }
                Err(_) => {}
            }
        }
    });
    (stop, handle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holder() -> Holder {
        Holder {
            token: "ci-4242-000000001".into(),
            operation: "deploy 1.4.0".into(),
            who: "me@ci".into(),
            host: "ci".into(),
            pid: 4242,
            pid_start: Some(777),
            boot_id: "boot-1".into(),
            since: "2026-12-01T10:00:00Z".into(),
            lease_secs: 30,
        }
    }

    fn here(host: &str, boot: &str) -> Here {
        Here {
            host: host.into(),
            boot_id: boot.into(),
        }
    }

    #[test]
    fn owner_record_round_trips() {
        let h = holder();
        assert_eq!(Holder::parse(&h.to_text()), Some(h.clone()));
        assert!(h
            .to_text()
            .starts_with("token=ci-4242-000000001\noperation=deploy 1.4.0\n"));
        let mut no_start = h.clone();
        no_start.pid_start = None;
        assert_eq!(Holder::parse(&no_start.to_text()), Some(no_start));
        // Older xtask versions wrote one line; a token that is not a file name is refused.
        assert_eq!(
            Holder::parse("deploy 9.9.9 by someone@else (pid 1) since 2026-01-01T00:00:00Z"),
            None
        );
        assert_eq!(Holder::parse(&h.to_text().replace("ci-4242", "../x")), None);
        assert_eq!(
            h.describe(),
            "deploy 1.4.0 by me@ci (pid 4242 on ci) since 2026-12-01T10:00:00Z"
        );
    }

    #[test]
    fn liveness_decision_table() {
        let h = holder();
        let same = here("ci", "boot-1");
        let running = |_| Pid::Running(Some(777));
        let dead = |v: Verdict| matches!(v, Verdict::Dead(_));
        // Same machine: the pid decides at once, whatever the lease says.
        assert!(dead(judge(Some(&h), Some(1), &same, |_| Pid::Gone)));
        assert!(dead(judge(
            Some(&h),
            Some(1),
            &here("ci", "boot-2"),
            running
        )));
        assert!(dead(judge(Some(&h), Some(1), &same, |_| Pid::Running(
            Some(9)
        ))));
        assert!(!dead(judge(Some(&h), Some(1), &same, running)));
        assert!(!dead(judge(Some(&h), Some(1), &same, |_| Pid::Running(
            None
        ))));
        // A live local pid whose lease expired (stopped, or cut from the target) loses it.
        assert!(dead(judge(Some(&h), Some(31), &same, running)));
        // Another machine: only the lease counts; its pid means nothing here.
        let other = here("laptop", "boot-9");
        assert!(!dead(judge(Some(&h), Some(29), &other, |_| Pid::Gone)));
        assert!(!dead(judge(Some(&h), Some(30), &other, |_| Pid::Gone)));
        assert!(dead(judge(Some(&h), Some(31), &other, |_| Pid::Gone)));
        assert!(!dead(judge(Some(&h), None, &other, |_| Pid::Gone)));
        // No owner record: the lock's own age is the lease.
        assert!(!dead(judge(None, Some(3), &same, |_| Pid::Gone)));
        assert!(dead(judge(None, Some(31), &same, |_| Pid::Gone)));
        assert_eq!(
            judge(Some(&h), Some(1), &same, |_| Pid::Gone),
            Verdict::Dead("its process 4242 is gone".into())
        );
    }

    #[test]
    fn this_process_is_alive_and_a_reaped_child_is_gone() {
        let me = std::process::id();
        assert_eq!(local_pid(me), Pid::Running(pid_start(me)));
        assert!(pid_start(me).is_some());
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        assert_eq!(local_pid(pid), Pid::Gone);
        assert_eq!(local_pid(0), Pid::Gone);
        assert_eq!(
            parse_start("12 (a b) c) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 4321 99"),
            Some(4321)
        );
    }

    #[test]
    fn lock_commands() {
        let local = Target::new(None, "/srv/crm", None).unwrap();
        assert_eq!(
            mkdir_lock(&local).argv(),
            ["mkdir", "/srv/crm/.deploy/lock"]
        );
        assert_eq!(
            renew_lease(&local, "t1").argv(),
            ["touch", "-c", "/srv/crm/.deploy/lock/lease-t1"]
        );
        assert_eq!(
            start_lease(&local, "t1").argv(),
            ["touch", "/srv/crm/.deploy/lock/lease-t1"]
        );
        assert_eq!(
            stat(&local, LOCK_DIR).argv(),
            ["stat", "-c", "%i %Y", "/srv/crm/.deploy/lock"]
        );
        assert_eq!(target_now(&local).argv(), ["date", "+%s"]);
        assert_eq!(
            bury(&local, "lock.dead-t0").argv(),
            [
                "mv",
                "-T",
                "/srv/crm/.deploy/lock",
                "/srv/crm/.deploy/lock.dead-t0"
            ]
        );
        assert_eq!(
            unbury(&local, "lock.dead-t0").argv(),
            [
                "mv",
                "-T",
                "/srv/crm/.deploy/lock.dead-t0",
                "/srv/crm/.deploy/lock"
            ]
        );
        let remote = Target::new(Some("deploy@web1:2222"), "/srv/crm", None).unwrap();
        assert_eq!(
            renew_lease(&remote, "t1").args.last().unwrap(),
            "touch -c /srv/crm/.deploy/lock/lease-t1"
        );
    }

    #[test]
    fn graves_are_named_after_the_dead_lock() {
        let found = |holder: Option<Holder>, inode: Option<&str>| Found {
            holder,
            raw_owner: None,
            lease_age: Some(40),
            inode: inode.map(String::from),
            verdict: Verdict::Dead("x".into()),
        };
        assert_eq!(
            found(Some(holder()), Some("12")).grave(),
            "lock.dead-ci-4242-000000001"
        );
        assert_eq!(found(None, Some("12")).grave(), "lock.dead-ownerless-12");
        let legacy = Found {
            raw_owner: Some("deploy 9 by a@b (pid 1) since x\n".into()),
            ..found(None, None)
        };
        assert_eq!(legacy.describe(), "deploy 9 by a@b (pid 1) since x");
    }

    /// A target directory on this machine holding the lock of `holder`, renewed `age` s ago.
    fn target_with_lock(holder: &Holder, age: u64) -> (tempfile::TempDir, Target) {
        let dir = tempfile::tempdir().unwrap();
        let lock = dir.path().join(LOCK_DIR);
        std::fs::create_dir_all(&lock).unwrap();
        std::fs::write(lock.join("owner"), holder.to_text()).unwrap();
        let lease = lock.join(format!("lease-{}", holder.token));
        std::fs::write(&lease, "").unwrap();
        let then = std::time::SystemTime::now() - Duration::from_secs(age);
        std::fs::File::options()
            .write(true)
            .open(&lease)
            .unwrap()
            .set_modified(then)
            .unwrap();
        let target = Target::new(None, dir.path().to_str().unwrap(), None).unwrap();
        (dir, target)
    }

    fn history(dir: &std::path::Path) -> String {
        std::fs::read_to_string(dir.join(".deploy/history.tsv")).unwrap_or_default()
    }

    #[test]
    fn of_several_deploys_finding_a_dead_lock_one_takes_it_over() {
        let here = Here::detect();
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        let dead = Holder {
            host: here.host.clone(),
            boot_id: here.boot_id.clone(),
            pid,
            pid_start: None,
            ..holder()
        };
        let (dir, target) = target_with_lock(&dead, 0);
        let runner = Runner::new(false, Verbosity::Quiet);
        let barrier = std::sync::Barrier::new(4);
        let results: Vec<std::result::Result<bool, String>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..4)
                .map(|_| {
                    scope.spawn(|| {
                        let d = Deployment::new(&target, &runner, "t");
                        let guard = d.lock("deploy 2.0.0");
                        // Whoever won holds the lock until every contender has tried.
                        barrier.wait();
                        guard
                            .and_then(|mut g| g.reconciled().map(|()| g.took_over))
                            .map_err(|e| format!("{e:#}"))
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let won: Vec<_> = results.iter().filter(|r| r.is_ok()).collect();
        assert_eq!(won, [&Ok(true)], "{results:?}");
        for lost in results.iter().filter_map(|r| r.as_ref().err()) {
            assert!(lost.contains("another deploy holds the lock"), "{lost}");
        }
        let history = history(dir.path());
        assert_eq!(
            history
                .matches("took over the lock of deploy 1.4.0")
                .count(),
            1,
            "{history}"
        );
        assert!(
            history.contains(&format!("its process {pid} is gone")),
            "{history}"
        );
        // Released, and no dead lock left behind.
        let left: Vec<_> = std::fs::read_dir(dir.path().join(".deploy"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(left, ["history.tsv"]);
    }

    #[test]
    fn a_lock_from_another_machine_is_taken_over_only_once_its_lease_expired() {
        let runner = Runner::new(false, Verbosity::Quiet);
        let elsewhere = Holder {
            host: "elsewhere".into(),
            ..holder()
        };
        let (dir, target) = target_with_lock(&elsewhere, 5);
        let d = Deployment::new(&target, &runner, "t");
        let err = format!("{:#}", d.lock("deploy 2.0.0").err().unwrap());
        assert!(
            err.contains("another deploy holds the lock")
                && err.contains("deploy 1.4.0 by me@ci (pid 4242 on elsewhere)")
                && err.contains("lease renewed"),
            "{err}"
        );
        assert_eq!(history(dir.path()), "");
        // --lock-wait gives up too, after waiting.
        let started = Instant::now();
        assert!(d
            .lock_waiting("deploy 2.0.0", Some(Duration::from_secs(1)))
            .is_err());
        assert!(started.elapsed() >= Duration::from_secs(1));

        let (dir, target) = target_with_lock(&elsewhere, 45);
        let d = Deployment::new(&target, &runner, "t");
        let guard = d.lock("deploy 2.0.0").unwrap();
        assert!(guard.took_over);
        let owner =
            Holder::parse(&std::fs::read_to_string(dir.path().join(".deploy/lock/owner")).unwrap())
                .unwrap();
        assert_eq!(owner.pid, std::process::id());
        assert_eq!(owner.operation, "deploy 2.0.0");
        assert!(history(dir.path()).contains("its lease expired"));
        drop(guard);
        assert!(!dir.path().join(LOCK_DIR).exists());
        // Not reconciled: the next holder is told to.
        let mut guard = d.lock("deploy 2.0.0").unwrap();
        assert!(guard.took_over);
        guard.reconciled().unwrap();
        drop(guard);
        assert!(!d.lock("deploy 2.0.0").unwrap().took_over);
    }

    #[test]
    fn a_holder_that_lost_its_lock_leaves_the_new_one_alone() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("compose.yaml"), "").unwrap();
        let target = Target::new(None, dir.path().to_str().unwrap(), None).unwrap();
        let runner = Runner::new(false, Verbosity::Quiet);
        let d = Deployment::new(&target, &runner, "t");
        let guard = d.lock("deploy 1.0.0").unwrap();
        assert!(!guard.took_over);
        // Released by hand (--force), then taken by another deploy.
        d.force_release().unwrap();
        let other = Holder {
            host: "elsewhere".into(),
            ..holder()
        };
        std::fs::create_dir_all(dir.path().join(LOCK_DIR)).unwrap();
        std::fs::write(dir.path().join(LOCK_DIR).join("owner"), other.to_text()).unwrap();
        drop(guard);
        let owner = std::fs::read_to_string(dir.path().join(LOCK_DIR).join("owner")).unwrap();
        assert_eq!(Holder::parse(&owner), Some(other));
    }
}
