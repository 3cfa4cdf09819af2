//! Backups of a Compose target's database: `pg_dump`s made by `docker exec` in its db container
//! (project `STACK-db`) into the target's `backups/` directory, which is bind-mounted into db
//! (the newest N kept); a restore is `pg_restore --clean` of one, in one transaction, while the
//! app serves on. The same commands as a swarm's (`db.rs`).
//!
//! Bind-mounted rather than copied out of the container: a dump is written once, where it is
//! kept, and is a plain file of the target (listed, pruned and copied elsewhere by its user).
//! pg_dump runs in the container as the directory's owner (the deploying user), so the dump is
//! theirs, and the finished file is renamed on the target itself. The worker's stats.json stays
//! in the data volume, node-local and not backed up, as on a swarm.

use anyhow::{Context, Result};

use crate::cmd::Cmd;
use crate::deploy::db;
use crate::deploy::deployment::Deployment;

pub const BACKUPS: &str = "backups";

/// `docker ps` of the db container of the stack's db project (whatever compose.yaml the
/// target has: the project's label, not the file, finds it).
pub fn db_container_query(stack: &str) -> Cmd {
    Cmd::new("docker").args([
        "ps".to_string(),
        "--quiet".into(),
        "--filter".into(),
        format!("label=com.docker.compose.project={stack}-{}", db::SERVICE),
        "--filter".into(),
        format!("label=com.docker.compose.service={}", db::SERVICE),
        "--filter".into(),
        "status=running".into(),
    ])
}

impl Deployment {
    /// The running db container, None before the first deploy.
    pub fn db_container(&self) -> Result<Option<String>> {
        Ok(self
            .remote
            .query(db_container_query(&self.stack))?
            .split_whitespace()
            .next()
            .map(String::from))
    }

    /// Dumps the database into `backups/`, keeps the newest `keep`, returns the dump's name
    /// (None when no database runs: a dry run's first deploy).
    pub fn backup(&self, label: &str, keep: usize) -> Result<Option<String>> {
        match self.db_container()? {
            Some(id) => self.backup_in(&id, label, keep).map(Some),
            None if self.remote.dry_run() => self.backup_in("DB", label, keep).map(Some),
            None => Ok(None),
        }
    }

    /// [`Deployment::backup`] with the db container already known (a deploy just made sure it
    /// runs). Written as its partial name by the owner of `backups/`, then renamed there: a
    /// dump cut short is never listed.
    pub fn backup_in(&self, container: &str, label: &str, keep: usize) -> Result<String> {
        let name = db::new_dump_name(&self.backups()?, label);
        let partial = db::partial(&name);
        let owner = self.backups_owner()?;
        let path = |file: &str| self.target().path(&format!("{BACKUPS}/{file}"));
        for cmd in [
            db::dump(container, Some(&owner), &partial),
            Cmd::new("mv").args([path(&partial), path(&name)]),
        ] {
            self.remote
                .run(cmd)
                .context("dumping the database failed; nothing was changed")?;
        }
        self.prune_backups(keep)?;
        Ok(name)
    }

    /// `UID:GID` of the target's `backups/` (made by the deploy before db mounts it).
    fn backups_owner(&self) -> Result<String> {
        let dir = self.target().path(BACKUPS);
        match self
            .remote
            .query(Cmd::new("stat").args(["-c", "%u:%g", &dir]))
        {
            Ok(owner) if is_owner(owner.trim()) => Ok(owner.trim().to_string()),
            Ok(owner) => anyhow::bail!("`stat -c %u:%g {dir}` said {owner:?}, not UID:GID"),
            // A dry run's first deploy: the directory is made in the same run.
            Err(_) if self.remote.dry_run() => Ok("OWNER".into()),
            Err(err) => Err(err.context(format!("reading the owner of {dir}"))),
        }
    }

    /// Dump names in `backups/`, oldest first (names sort by time).
    pub fn backups(&self) -> Result<Vec<String>> {
        let backups = self.target().path(BACKUPS);
        if !self
            .remote
            .succeeds(Cmd::new("test").args(["-d", &backups]))?
        {
            return Ok(Vec::new());
        }
        let listing = self.remote.query(Cmd::new("ls").args(["-1", &backups]))?;
        Ok(db::dumps_of(&listing))
    }

    fn prune_backups(&self, keep: usize) -> Result<()> {
        let names = self.backups()?;
        let old = names.len().saturating_sub(keep.max(1));
        if old > 0 {
            let paths = names[..old]
                .iter()
                .map(|n| self.target().path(&format!("{BACKUPS}/{n}")));
            self.remote.run(Cmd::new("rm").arg("-f").args(paths))?;
        }
        Ok(())
    }

    /// Puts the dump `name` back (the app may serve meanwhile: one transaction).
    pub fn restore(&self, name: &str) -> Result<()> {
        let container = match self.db_container()? {
            Some(id) => id,
            None if self.remote.dry_run() => "DB".into(),
            None => anyhow::bail!(
                "no database runs on {} (project {}-{}): nothing to restore into; deploy first",
                self.target().describe(),
                self.stack,
                db::SERVICE
            ),
        };
        self.remote
            .run(db::restore(&container, true, name))
            .with_context(|| {
                format!("restoring {name} failed; the database is as it was (pg_restore runs in one transaction)")
            })
    }
}

/// `UID:GID`, as `stat -c %u:%g` prints it.
fn is_owner(text: &str) -> bool {
    let mut parts = text.split(':');
    let number =
        |p: Option<&str>| p.is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    number(parts.next()) && number(parts.next()) && parts.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dumps_owner_is_uid_and_gid() {
        assert!(is_owner("1000:1000") && is_owner("0:0"));
        for text in ["", "1000", "root:root", "1:2:3", ":1", "1:"] {
            assert!(!is_owner(text), "{text:?}");
        }
    }

    #[test]
    fn the_db_container_is_found_by_its_projects_labels() {
        assert_eq!(
            db_container_query("crm").argv(),
            [
                "docker",
                "ps",
                "--quiet",
                "--filter",
                "label=com.docker.compose.project=crm-db",
                "--filter",
                "label=com.docker.compose.service=db",
                "--filter",
                "status=running"
            ]
        );
    }
}
