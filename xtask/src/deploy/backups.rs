//! Backups of a target's data volume: archives in `backups/` (the newest N kept), made and
//! restored by a throwaway container with the volume at /data and the archives at /backup.

use anyhow::{Context, Result};

use crate::cmd::Cmd;
use crate::deploy::deployment::Deployment;
use crate::project::now_rfc3339;

pub const BACKUPS: &str = "backups";

/// How many times an archive is taken when files change under tar.
const TAR_ATTEMPTS: usize = 3;

impl Deployment {
    /// Archives the data volume into `backups/`, keeps the newest `keep`, returns the archive's
    /// name (None when there is no data volume yet: a first deploy).
    pub fn backup(&self, image: &str, label: &str, keep: usize) -> Result<Option<String>> {
        let volume = self.data_volume();
        if !self.remote.dry_run()
            && !self
                .remote
                .succeeds(Cmd::new("docker").args(["volume", "inspect", &volume]))?
        {
            return Ok(None);
        }
        let stamp: String = now_rfc3339()
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .collect();
        // Never overwrite an archive, even two backups in the same second.
        let existing = self.backups()?;
        let mut name = format!("data-{stamp}-{label}.tar.gz");
        for n in 2.. {
            if !existing.contains(&name) {
                break;
            }
            name = format!("data-{stamp}-{label}-{n}.tar.gz");
        }
        let backups = self.target().path(BACKUPS);
        self.remote.run(Cmd::new("mkdir").args(["-p", &backups]))?;
        let archive = self.volume_tool(
            image,
            &volume,
            true,
            &[
                "tar",
                "-czf",
                &format!("/backup/{name}"),
                "-C",
                "/data",
                ".",
            ],
        );
        // tar exits 1 when a file changed while it read it (the live worker rewrites its stats
        // every few seconds): that archive is not consistent, so it is taken again.
        let mut attempt = 1;
        while let Err(err) = self.remote.run(archive.clone()) {
            if attempt == TAR_ATTEMPTS || !err.to_string().ends_with("(exit code 1)") {
                return Err(err.context("backing up the data volume failed; nothing was changed"));
            }
            attempt += 1;
            self.remote.say(format!(
                "  a file changed while it was archived; again ({attempt}/{TAR_ATTEMPTS})"
            ));
        }
        self.prune_backups(keep)?;
        Ok(Some(name))
    }

    /// Archive names in `backups/`, oldest first (names sort by time).
    pub fn backups(&self) -> Result<Vec<String>> {
        let backups = self.target().path(BACKUPS);
        if !self
            .remote
            .succeeds(Cmd::new("test").args(["-d", &backups]))?
        {
            return Ok(Vec::new());
        }
        let listing = self.remote.query(Cmd::new("ls").args(["-1", &backups]))?;
        let mut names: Vec<String> = listing
            .lines()
            .filter(|n| n.starts_with("data-") && n.ends_with(".tar.gz"))
            .map(String::from)
            .collect();
        names.sort();
        Ok(names)
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

    /// Replaces the data volume's content with `archive` (the services using it must be stopped).
    pub fn restore(&self, image: &str, archive: &str) -> Result<()> {
        let volume = self.data_volume();
        let steps = [
            self.volume_tool(
                image,
                &volume,
                false,
                &["find", "/data", "-mindepth", "1", "-delete"],
            ),
            self.volume_tool(
                image,
                &volume,
                false,
                &["tar", "-xzf", &format!("/backup/{archive}"), "-C", "/data"],
            ),
        ];
        for cmd in steps {
            self.remote
                .run(cmd)
                .with_context(|| format!("restoring {archive} failed"))?;
        }
        Ok(())
    }

    /// A throwaway container (root, to read and write any file of the volume) with the data
    /// volume at /data and the backups directory at /backup.
    fn volume_tool(&self, image: &str, volume: &str, data_read_only: bool, argv: &[&str]) -> Cmd {
        let (data_mode, backup_mode) = if data_read_only {
            (":ro", "")
        } else {
            ("", ":ro")
        };
        Cmd::new("docker")
            .args(["run", "--rm", "--user", "0:0", "--entrypoint", argv[0]])
            .arg("--volume")
            .arg(format!("{volume}:/data{data_mode}"))
            .arg("--volume")
            .arg(format!(
                "{}:/backup{backup_mode}",
                self.target().path(BACKUPS)
            ))
            .arg(image)
            .args(argv[1..].iter().copied())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::Runner;
    use crate::deploy::target::Target;

    fn deployment_for(target: &Target, runner: &Runner) -> Deployment {
        Deployment::new(target, runner, "crm-gdb")
    }

    #[test]
    fn backup_container_reads_the_volume_and_writes_the_archive() {
        let target = Target::new(None, "/srv/crm", None).unwrap();
        let runner = Runner::new(true, crate::progress::Verbosity::Quiet);
        let d = deployment_for(&target, &runner);
        let cmd = d.volume_tool(
            "r/crm-gdb_php:1",
            "crm-gdb_data",
            true,
            &["tar", "-czf", "/backup/a.tar.gz", "-C", "/data", "."],
        );
        assert_eq!(
            cmd.argv(),
            [
                "docker",
                "run",
                "--rm",
                "--user",
                "0:0",
                "--entrypoint",
                "tar",
                "--volume",
                "crm-gdb_data:/data:ro",
                "--volume",
                "/srv/crm/backups:/backup",
                "r/crm-gdb_php:1",
                "-czf",
                "/backup/a.tar.gz",
                "-C",
                "/data",
                ".",
            ]
        );
    }
}
