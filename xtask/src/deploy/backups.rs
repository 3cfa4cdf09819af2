//! Backups of a target's data volume: archives in `backups/` (the newest N kept), made and
//! restored by a throwaway container with the volume at /data and the archives at /backup.

use anyhow::{Context, Result};

use crate::cmd::Cmd;
use crate::deploy::deployment::Deployment;
use crate::project::now_rfc3339;

pub const BACKUPS: &str = "backups";

/// How many times an archive is taken when the data changes under tar.
const TAR_ATTEMPTS: usize = 3;

/// True when tar's complaints are only about the worker's stats file and the directory that
/// holds it (`tar: ./stats.json: file changed as we read it`, `tar: .: file changed ...`).
fn only_stats_changed(stderr: &str) -> bool {
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    !lines.is_empty()
        && lines.iter().all(|line| {
            let Some(path) = line
                .strip_prefix("tar: ")
                .and_then(|l| l.strip_suffix(": file changed as we read it"))
            else {
                return false;
            };
            matches!(path, "." | "./stats.json" | "./stats.json.tmp")
        })
}

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
        if self.remote.dry_run() {
            self.remote.run(archive)?;
        } else {
            self.archive(archive)
                .context("backing up the data volume failed; nothing was changed")?;
        }
        self.prune_backups(keep)?;
        Ok(Some(name))
    }

    /// Runs the archiving container. tar exits 1 when something changed while it read it: the
    /// live worker rewrites its stats file (a temp file renamed over it, so the directory
    /// changes too) every few seconds, which is harmless; any other file changing makes the
    /// archive inconsistent, so it is taken again.
    fn archive(&self, archive: Cmd) -> Result<()> {
        for attempt in 1..=TAR_ATTEMPTS {
            let output = self.remote.output(archive.clone())?;
            let stderr = String::from_utf8_lossy(&output.stderr);
            match output.status.code() {
                Some(0) => return Ok(()),
                Some(1) if only_stats_changed(&stderr) => return Ok(()),
                Some(1) if attempt < TAR_ATTEMPTS => self.remote.say(format!(
                    "  data changed while it was archived; again ({}/{TAR_ATTEMPTS})",
                    attempt + 1
                )),
                _ => anyhow::bail!(
                    "the archiving container failed ({}): {}",
                    output.status,
                    stderr.trim()
                ),
            }
        }
        anyhow::bail!("the data kept changing while it was archived ({TAR_ATTEMPTS} times)")
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
        // No network: tar needs none, and attaching one is a good part of a start.
        Cmd::new("docker")
            .args(["run", "--rm", "--network", "none", "--user", "0:0"])
            .args(crate::docker::throwaway_label(&self.stack))
            .args(["--entrypoint", argv[0]])
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
    fn only_the_workers_stats_may_change_under_tar() {
        assert!(only_stats_changed("tar: .: file changed as we read it\n"));
        assert!(only_stats_changed(
            "tar: ./stats.json: file changed as we read it\ntar: .: file changed as we read it\n"
        ));
        assert!(!only_stats_changed(
            "tar: ./crm.sqlite: file changed as we read it\ntar: .: file changed as we read it\n"
        ));
        assert!(!only_stats_changed(
            "tar: /backup/x: Cannot open: Permission denied\n"
        ));
        assert!(!only_stats_changed(""));
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
                "--network",
                "none",
                "--user",
                "0:0",
                "--label",
                "org.kiora.crm.throwaway=crm-gdb",
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
