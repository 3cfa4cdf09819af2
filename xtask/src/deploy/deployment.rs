//! What a deploy does on its target, one operation per function: the compose project, files
//! written atomically, pulls and health checks (the deploy lock, the history and the backups are
//! in `lock.rs`, `history.rs` and `backups.rs`). Every command goes through a [`Remote`], so the
//! same code serves a local directory and a server over ssh.
//!
//! On the target, next to `compose.yaml` and `.env`:
//!   .deploy/lock/          the deploy lock: its owner and lease (see `lock.rs`)
//!   .deploy/history.tsv    time, tag, revision, who, strategy, result: one line per operation
//!   .deploy/secrets/db_password  the database's password (0644 in a 0700 directory)
//!   backups/db-*.dump      dumps of the database, the last N kept

use anyhow::{bail, Context, Result};

use crate::cmd::{Cmd, Runner};
use crate::deploy::remote::Remote;
use crate::deploy::target::Target;

/// One deployment: a stack on a target, reached through a [`Remote`]. A value (cloneable, `Send`).
#[derive(Clone, Debug)]
pub struct Deployment {
    pub remote: Remote,
    /// Stack name on the target (Compose projects STACK-blue, STACK-green, STACK-edge); the data
    /// volume is `<stack>_data`.
    pub stack: String,
}

impl Deployment {
    pub fn new(target: &Target, runner: &Runner, stack: &str) -> Deployment {
        Deployment {
            remote: Remote::new(target.clone(), *runner),
            stack: stack.to_string(),
        }
    }

    /// The same deployment, with every action run as a cleanup (putting things back).
    pub fn undoing(&self) -> Deployment {
        Deployment {
            remote: self.remote.undoing(),
            ..self.clone()
        }
    }

    pub fn target(&self) -> &Target {
        &self.remote.target
    }

    /// `docker compose` for the deployed project, with absolute paths (no working directory).
    /// compose.yaml's database password file and dumps' directory are the target's (see
    /// `db.rs`).
    pub fn compose(&self) -> Cmd {
        crate::docker::compose(&self.stack, &self.target().dir)
            .args(["--file", &self.target().path("compose.yaml")])
            .env(
                "CRM_DB_PASSWORD_FILE",
                self.target().path(crate::deploy::db::PASSWORD_FILE),
            )
            .env(
                "CRM_DB_BACKUPS",
                self.target().path(crate::deploy::backups::BACKUPS),
            )
    }

    pub fn data_volume(&self) -> String {
        format!("{}_data", self.stack)
    }

    pub fn read(&self, relative: &str) -> Result<String> {
        self.remote
            .query(Cmd::new("cat").arg(self.target().path(relative)))
            .with_context(|| format!("cannot read {relative} on {}", self.target().describe()))
    }

    /// Writes `bytes` next to the file, then renames it over: a reader sees the old or the new file.
    /// Undoing, as a cleanup (see [`Deployment::undoing`]).
    pub fn write_atomically(&self, relative: &str, bytes: &[u8]) -> Result<()> {
        let path = self.target().path(relative);
        for cmd in write_commands(&path, bytes) {
            self.remote.run(cmd).with_context(|| {
                format!("cannot write {relative} on {}", self.target().describe())
            })?;
        }
        Ok(())
    }

    /// Pulls `images` on the target: the check that the tag exists, before anything stops.
    pub fn pull(&self, images: &[String]) -> Result<()> {
        for image in images {
            if self.remote.dry_run() {
                self.remote.run(Cmd::new("docker").args(["pull", image]))?;
                continue;
            }
            let output = self
                .remote
                .output(Cmd::new("docker").args(["pull", "--quiet", image]))?;
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
            if !self.remote.succeeds(crate::docker::image_exists(image))? {
                missing.push(image.clone());
            }
        }
        if missing.is_empty() {
            self.remote.say("  already on the target");
        }
        self.pull(&missing)
    }

    /// The revision label of an image on the target, for the history.
    pub fn revision(&self, image: &str) -> String {
        let format = "{{index .Config.Labels \"org.opencontainers.image.revision\"}}";
        self.remote
            .query(Cmd::new("docker").args(["image", "inspect", "--format", format, image]))
            .unwrap_or_default()
            .trim()
            .to_string()
    }

    /// GET http://127.0.0.1:PORT/health on the target, from a throwaway container of `image`
    /// on the host network, so the check needs neither curl on the server nor a tunnel.
    /// On this machine the check is a GET from here (the same loopback address), asked again
    /// for up to [`LOCAL_CHECK_LIMIT`]: `nginx -s reload` returns once it signalled the edge,
    /// whose old workers may answer a moment longer (a recreate's with 502).
    pub fn http_check(&self, image: &str, port: u16) -> Result<()> {
        if self.target().ssh.is_none() && !self.remote.dry_run() {
            let url = format!("http://127.0.0.1:{port}/health");
            self.remote.runner.trace(&format!("$ GET {url}"));
            let start = std::time::Instant::now();
            loop {
                let last = match crate::http::get(port, "/health") {
                    Ok(answer) if answer.status == 200 => return Ok(()),
                    Ok(answer) => format!("answers HTTP {}", answer.status),
                    Err(err) => format!("does not answer ({err:#})"),
                };
                if start.elapsed() > LOCAL_CHECK_LIMIT {
                    bail!("{url} {last} on the target");
                }
                crate::interrupt::check()?;
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        }
        let php = format!(
            "exit(@file_get_contents('http://127.0.0.1:{port}/health') === false ? 1 : 0);"
        );
        let cmd = Cmd::new("docker")
            .args(["run", "--rm", "--network", "host"])
            .args(crate::docker::throwaway_label(&self.stack))
            .args(["--entrypoint", "php", image, "-r", &php]);
        self.remote.run(cmd).with_context(|| {
            format!("http://127.0.0.1:{port}/health does not answer 200 on the target")
        })
    }
}

/// How long a local check through the edge is asked again before it fails.
const LOCAL_CHECK_LIMIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Write `bytes` to `path` atomically: next to it, then renamed over it.
fn write_commands(path: &str, bytes: &[u8]) -> [Cmd; 2] {
    let temp = format!("{path}.xtask-new");
    [
        Cmd::new("dd")
            .arg(format!("of={temp}"))
            .arg("status=none")
            .stdin(bytes.to_vec()),
        Cmd::new("mv").args(["-f", &temp, path]),
    ]
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
    let registry = crate::reference::registry_host(image);
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

    fn deployment_for(target: &Target, runner: &Runner) -> Deployment {
        Deployment::new(target, runner, "crm-gdb")
    }

    #[test]
    fn compose_uses_absolute_paths() {
        let target = Target::new(None, "/srv/crm", None).unwrap();
        let runner = Runner::new(true, crate::progress::Verbosity::Quiet);
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
    fn files_are_written_beside_then_renamed_over() {
        let [write, rename] = write_commands("/srv/crm/compose.yaml", b"x");
        assert_eq!(
            write.argv(),
            ["dd", "of=/srv/crm/compose.yaml.xtask-new", "status=none"]
        );
        assert_eq!(write.stdin.as_deref(), Some(&b"x"[..]));
        assert_eq!(
            rename.argv(),
            [
                "mv",
                "-f",
                "/srv/crm/compose.yaml.xtask-new",
                "/srv/crm/compose.yaml"
            ]
        );
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
