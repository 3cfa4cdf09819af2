//! What a deploy does on its target, one operation per function: the compose project, files
//! written atomically, the deploy lock, the history, backups of the data volume, pulls and
//! health checks. Every command goes through [`Target::cmd`], so the same code serves a local
//! directory and a server over ssh.
//!
//! On the target, next to `compose.yaml` and `.env`:
//!   .deploy/lock/          the deploy lock, its owner and lease (see `deploy_lock`)
//!   .deploy/history.tsv    time, tag, revision, who, strategy, result: one line per operation
//!   backups/data-*.tar.gz  archives of the data volume, the last N kept

use anyhow::{bail, Context, Result};

use crate::cmd::{Cmd, Runner};
use crate::project::now_rfc3339;
use crate::target::Target;

pub const LOCK_DIR: &str = ".deploy/lock";
pub const HISTORY: &str = ".deploy/history.tsv";
pub const BACKUPS: &str = "backups";

pub struct Deployment<'a> {
    pub target: &'a Target,
    pub runner: &'a Runner,
    /// Compose project name on the target; the data volume is `<project>_data`.
    pub project: String,
}

/// One line of the history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub time: String,
    pub tag: String,
    pub revision: String,
    pub who: String,
    pub strategy: String,
    pub result: String,
}

impl Entry {
    fn parse(line: &str) -> Option<Entry> {
        let f: Vec<&str> = line.split('\t').collect();
        let [time, tag, revision, who, strategy, result] = f.as_slice() else {
            return None;
        };
        let s = |v: &&str| v.to_string();
        Some(Entry {
            time: s(time),
            tag: s(tag),
            revision: s(revision),
            who: s(who),
            strategy: s(strategy),
            result: s(result),
        })
    }

    fn line(&self) -> String {
        // Tabs and newlines would break the format; none of our values has them, but be sure.
        let clean = |v: &str| v.replace(['\t', '\n'], " ");
        format!(
            "{}\t{}\t{}\t{}\t{}\t{}\n",
            clean(&self.time),
            clean(&self.tag),
            clean(&self.revision),
            clean(&self.who),
            clean(&self.strategy),
            clean(&self.result)
        )
    }

    /// The release was put in service (`ok`, or `ok; ...` when only the old one's removal failed).
    pub fn succeeded(&self) -> bool {
        self.result == "ok" || self.result.starts_with("ok;")
    }
}

impl<'a> Deployment<'a> {
    pub fn new(target: &'a Target, runner: &'a Runner, project: &str) -> Deployment<'a> {
        Deployment {
            target,
            runner,
            project: project.to_string(),
        }
    }

    /// A command on the target.
    pub fn on_target(&self, cmd: Cmd) -> Cmd {
        self.target.cmd(cmd)
    }

    /// `docker compose` for the deployed project, with absolute paths (no working directory).
    pub fn compose(&self) -> Cmd {
        crate::docker::compose(&self.project, &self.target.dir)
            .args(["--file", &self.target.path("compose.yaml")])
    }

    pub fn data_volume(&self) -> String {
        format!("{}_data", self.project)
    }

    pub fn read(&self, relative: &str) -> Result<String> {
        self.runner
            .query(&self.on_target(Cmd::new("cat").arg(self.target.path(relative))))
            .with_context(|| format!("cannot read {relative} on {}", self.target.describe()))
    }

    /// Writes `bytes` next to the file, then renames it over: a reader sees the old or the new file.
    pub fn write_atomically(&self, relative: &str, bytes: &[u8], cleanup: bool) -> Result<()> {
        let path = self.target.path(relative);
        let temp = format!("{path}.xtask-new");
        let cmds = [
            self.on_target(
                Cmd::new("dd")
                    .arg(format!("of={temp}"))
                    .arg("status=none")
                    .stdin(bytes.to_vec()),
            ),
            self.on_target(Cmd::new("mv").args(["-f", &temp, &path])),
        ];
        for cmd in &cmds {
            if cleanup {
                self.runner.cleanup(cmd).map(drop)
            } else {
                self.runner.run(cmd)
            }
            .with_context(|| format!("cannot write {relative} on {}", self.target.describe()))?;
        }
        Ok(())
    }

    pub fn history(&self) -> Result<Vec<Entry>> {
        let exists = self
            .runner
            .succeeds(&self.on_target(Cmd::new("test").args(["-f", &self.target.path(HISTORY)])))?;
        if !exists {
            return Ok(Vec::new());
        }
        Ok(self
            .read(HISTORY)?
            .lines()
            .filter_map(Entry::parse)
            .collect())
    }

    /// Appends one line (also after Ctrl-C: the history must say what happened).
    pub fn record(&self, tag: &str, revision: &str, strategy: &str, result: &str) -> Result<()> {
        let entry = Entry {
            time: now_rfc3339(),
            tag: tag.into(),
            revision: revision.into(),
            who: who(),
            strategy: strategy.into(),
            result: result.into(),
        };
        let append = Cmd::new("dd")
            .args([
                format!("of={}", self.target.path(HISTORY)),
                "oflag=append".into(),
                "conv=notrunc".into(),
                "status=none".into(),
            ])
            .stdin(entry.line());
        self.runner.cleanup(&self.on_target(append)).map(drop)
    }

    /// Pulls `images` on the target: the check that the tag exists, before anything stops.
    pub fn pull(&self, images: &[String]) -> Result<()> {
        for image in images {
            if self.runner.dry_run {
                self.runner
                    .run(&self.on_target(Cmd::new("docker").args(["pull", image])))?;
                continue;
            }
            let output = self
                .runner
                .output(&self.on_target(Cmd::new("docker").args(["pull", "--quiet", image])))?;
            if !output.status.success() {
                bail!(
                    "{}",
                    pull_failure(image, &String::from_utf8_lossy(&output.stderr))
                );
            }
        }
        Ok(())
    }

    /// [`Deployment::pull`] of the images the target does not have yet.
    pub fn pull_missing(&self, images: &[String]) -> Result<()> {
        let mut missing = Vec::new();
        for image in images {
            if !self
                .runner
                .succeeds(&self.on_target(crate::docker::image_exists(image)))?
            {
                missing.push(image.clone());
            }
        }
        if missing.is_empty() {
            self.runner.say("  already on the target");
        }
        self.pull(&missing)
    }

    /// The revision label of an image on the target, for the history.
    pub fn revision(&self, image: &str) -> String {
        let format = "{{index .Config.Labels \"org.opencontainers.image.revision\"}}";
        self.runner
            .query(&self.on_target(
                Cmd::new("docker").args(["image", "inspect", "--format", format, image]),
            ))
            .unwrap_or_default()
            .trim()
            .to_string()
    }

    /// Archives the data volume into `backups/`, keeps the newest `keep`, returns the archive's
    /// name (None when there is no data volume yet: a first deploy).
    pub fn backup(&self, image: &str, label: &str, keep: usize) -> Result<Option<String>> {
        let volume = self.data_volume();
        if !self.runner.dry_run
            && !self.runner.succeeds(
                &self.on_target(Cmd::new("docker").args(["volume", "inspect", &volume])),
            )?
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
        let backups = self.target.path(BACKUPS);
        self.runner
            .run(&self.on_target(Cmd::new("mkdir").args(["-p", &backups])))?;
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
        self.runner
            .run(&self.on_target(archive))
            .context("backing up the data volume failed; nothing was changed")?;
        self.prune_backups(keep)?;
        Ok(Some(name))
    }

    /// Archive names in `backups/`, oldest first (names sort by time).
    pub fn backups(&self) -> Result<Vec<String>> {
        let backups = self.target.path(BACKUPS);
        if !self
            .runner
            .succeeds(&self.on_target(Cmd::new("test").args(["-d", &backups])))?
        {
            return Ok(Vec::new());
        }
        let listing = self
            .runner
            .query(&self.on_target(Cmd::new("ls").args(["-1", &backups])))?;
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
                .map(|n| self.target.path(&format!("{BACKUPS}/{n}")));
            self.runner
                .run(&self.on_target(Cmd::new("rm").arg("-f").args(paths)))?;
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
            self.runner
                .run(&self.on_target(cmd))
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
                self.target.path(BACKUPS)
            ))
            .arg(image)
            .args(argv[1..].iter().copied())
    }

    /// GET http://127.0.0.1:PORT/health on the target, from a throwaway container of `image`
    /// on the host network, so the check needs neither curl on the server nor a tunnel.
    pub fn http_check(&self, image: &str, port: u16) -> Result<()> {
        let php = format!(
            "exit(@file_get_contents('http://127.0.0.1:{port}/health') === false ? 1 : 0);"
        );
        let cmd = Cmd::new("docker").args([
            "run",
            "--rm",
            "--network",
            "host",
            "--entrypoint",
            "php",
            image,
            "-r",
            &php,
        ]);
        self.runner.run(&self.on_target(cmd)).with_context(|| {
            format!("http://127.0.0.1:{port}/health does not answer 200 on the target")
        })
    }
}

/// `user@machine`, for the lock and the history.
pub fn who() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".into());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    format!("{user}@{}", host.trim())
}

/// One line for a failed `docker pull`.
fn pull_failure(image: &str, stderr: &str) -> String {
    let registry = image.split('/').next().unwrap_or(image);
    if stderr.contains("manifest unknown") || stderr.contains("not found") {
        format!("{image} is not in the registry: build and push it first (cargo xtask build-app --tag ...); nothing was stopped")
    } else if stderr.contains("connection refused")
        || stderr.contains("no such host")
        || stderr.contains("i/o timeout")
    {
        format!("the registry {registry} is unreachable from the target; nothing was stopped")
    } else if stderr.contains("unauthorized") || stderr.contains("denied") {
        format!("the target is not allowed to pull {image}: run `docker login {registry}` on it; nothing was stopped")
    } else {
        let reason = stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
            .trim();
        format!("cannot pull {image} on the target ({reason}); nothing was stopped")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment_for<'a>(target: &'a Target, runner: &'a Runner) -> Deployment<'a> {
        Deployment::new(target, runner, "crm-gdb")
    }

    #[test]
    fn compose_uses_absolute_paths() {
        let target = Target::new(None, "/srv/crm", None).unwrap();
        let runner = Runner::new(true, crate::cmd::Verbosity::Quiet);
        let d = deployment_for(&target, &runner);
        assert_eq!(
            d.compose().arg("ps").argv(),
            [
                "docker",
                "compose",
                "--project-name",
                "crm-gdb",
                "--project-directory",
                "/srv/crm",
                "--file",
                "/srv/crm/compose.yaml",
                "ps"
            ]
        );
        assert_eq!(d.data_volume(), "crm-gdb_data");
    }

    #[test]
    fn backup_container_reads_the_volume_and_writes_the_archive() {
        let target = Target::new(None, "/srv/crm", None).unwrap();
        let runner = Runner::new(true, crate::cmd::Verbosity::Quiet);
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

    #[test]
    fn history_lines_round_trip() {
        let entry = Entry {
            time: "2026-11-21T10:00:00Z".into(),
            tag: "1.4.0".into(),
            revision: "abc".into(),
            who: "me@box".into(),
            strategy: "rolling".into(),
            result: "ok".into(),
        };
        assert_eq!(Entry::parse(entry.line().trim_end()), Some(entry.clone()));
        assert!(entry.succeeded());
        assert_eq!(Entry::parse("garbage"), None);
    }

    #[test]
    fn pull_failures_in_one_line() {
        let msg = pull_failure(
            "127.0.0.1:5000/k/crm-gdb_php:9.9.9",
            "Error response from daemon: manifest for x not found: manifest unknown",
        );
        assert!(
            msg.starts_with("127.0.0.1:5000/k/crm-gdb_php:9.9.9 is not in the registry"),
            "{msg}"
        );
        let msg = pull_failure("127.0.0.1:5000/k/x:1", "Get \"http://127.0.0.1:5000/v2/\": dial tcp 127.0.0.1:5000: connect: connection refused");
        assert_eq!(
            msg,
            "the registry 127.0.0.1:5000 is unreachable from the target; nothing was stopped"
        );
    }
}
