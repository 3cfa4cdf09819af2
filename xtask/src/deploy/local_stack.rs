//! The whole stack on this machine as ONE Compose project (the edge and one release), for `up`
//! and `test-image`. The production compose.yaml is used as it is, with the images renamed after
//! the configured registry and the tag, and fed on stdin: the developer's file is never touched.
//! The project's shared networks and volumes (external in compose.yaml, so that blue and green
//! can share them on a server) are created before `up` and removed by `remove(.., true)`. The
//! database starts first (the release command needs it); its password is a file made once,
//! outside the tree (see `password_file`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::cmd::{Cmd, Runner};
use crate::compose_file;
use crate::config::{Config, APP_IMAGES, DB, EDGE, PHP, SUPERVISOR_SUFFIX};
use crate::deploy::db;
use crate::deploy::release_command;
use crate::deploy::remote::Remote;
use crate::deploy::stack;
use crate::deploy::target::Target;
use crate::docker;

pub struct LocalStack {
    pub project: String,
    /// Project directory: where compose finds `.env` (the runtime settings).
    pub dir: PathBuf,
    /// compose.yaml with our images renamed.
    pub text: String,
    pub port: u16,
    /// The database password's file (default: in the project directory, `.deploy/secrets/`).
    pub password_file: PathBuf,
}

/// How long the database may take to accept connections (a first start creates its cluster).
const DB_LIMIT: Duration = Duration::from_secs(120);

impl LocalStack {
    /// Reads `root/compose.yaml` and names the release images `registry/...:tag` (the edge keeps
    /// its pinned tag, under the same registry).
    pub fn new(
        root: &Path,
        config: &Config,
        dir: &Path,
        project: &str,
        tag: &str,
        port: u16,
    ) -> Result<LocalStack> {
        let text = render(root, config, tag)?;
        Ok(LocalStack {
            project: project.to_string(),
            dir: dir.to_path_buf(),
            text,
            port,
            password_file: dir.join(db::PASSWORD_FILE),
        })
    }

    /// The edge image the stack names, e.g. `registry/crm-gdb_edge:0.5.0`.
    pub fn edge_image(&self) -> Option<String> {
        edge_image(&self.text)
    }

    /// The db image the stack names, e.g. `registry/crm-gdb_db:0.6.0`.
    pub fn db_image(&self) -> Option<String> {
        db_image(&self.text)
    }

    /// `docker compose` of the project, with the rendered file on stdin.
    pub fn compose(&self) -> Cmd {
        docker::compose(&self.project, &self.dir.display().to_string())
            .args(["--file", "-"])
            .env("CRM_STACK", &self.project)
            .env("HTTP_PORT", self.port.to_string())
            .env(
                "CRM_DB_PASSWORD_FILE",
                self.password_file.display().to_string(),
            )
            .stdin(self.text.clone())
    }

    /// The networks (edge, db) and the volumes of the project.
    fn shared(&self) -> ([String; 2], [String; 4]) {
        let p = &self.project;
        (
            [format!("{p}_edge"), db::network(p)],
            [
                format!("{p}_data"),
                format!("{p}_assets"),
                format!("{p}_edge-conf"),
                format!("{p}_{}", db::SERVICE),
            ],
        )
    }

    /// Creates the shared networks and volumes and the database password, starts the database,
    /// runs the release command, starts everything and waits for health.
    pub fn up(&self, runner: &Runner) -> Result<()> {
        let ([network, db_network], volumes) = self.shared();
        if !runner.succeeds(&Cmd::new("docker").args(["network", "inspect", &db_network]))? {
            runner.run(&stack::db_network_create(&db_network))?;
        }
        if !runner.succeeds(&Cmd::new("docker").args(["network", "inspect", &network]))? {
            // The edge publishes on HTTP_BIND of the project's .env, else loopback.
            let env = std::fs::read_to_string(self.dir.join(".env")).unwrap_or_default();
            runner.run(&stack::edge_network_create(
                &network,
                stack::edge_bind(&env)?,
            ))?;
        }
        for volume in &volumes {
            if !runner.succeeds(&Cmd::new("docker").args(["volume", "inspect", volume]))? {
                runner.run(&Cmd::new("docker").args(["volume", "create", volume]))?;
            }
        }
        db::ensure_password(
            &self.remote(runner)?,
            &self.password_file.display().to_string(),
        )?;
        self.start_db(runner)?;
        self.release_command(runner)?;
        runner.run(
            &self
                .compose()
                .args(["up", "--detach", "--wait", "--remove-orphans"])
                .args(stack::RELEASE_SERVICES)
                .args(["edge", db::SERVICE]),
        )
    }

    /// This machine, in the project directory, as a deploy's target.
    fn remote(&self, runner: &Runner) -> Result<Remote> {
        let dir = self.dir.display().to_string();
        Ok(Remote::new(Target::new(None, &dir, None)?, *runner))
    }

    /// Starts db and waits until it accepts connections (its health check, asked now: the
    /// engine's first one comes only after its interval).
    fn start_db(&self, runner: &Runner) -> Result<()> {
        runner.run(&self.compose().args(["up", "--detach", db::SERVICE]))?;
        if runner.dry_run {
            return Ok(());
        }
        let id = runner
            .query(&self.compose().args(["ps", "--quiet", db::SERVICE]))?
            .split_whitespace()
            .next()
            .map(String::from)
            .context("the database did not start")?;
        if !db::wait_ready(&self.remote(runner)?, &id, DB_LIMIT)? {
            bail!(
                "the database of {} does not accept connections after {}s",
                self.project,
                DB_LIMIT.as_secs()
            );
        }
        Ok(())
    }

    /// The release's command (its migrations), run as a deploy runs it: once, before the
    /// release starts, with the project's `.env` and data.
    fn release_command(&self, runner: &Runner) -> Result<()> {
        let Some(php) = compose_file::app_references(&self.text, &[PHP])
            .ok()
            .and_then(|images| images.into_iter().find(|i| !i.ends_with(SUPERVISOR_SUFFIX)))
        else {
            return Ok(());
        };
        let dir = self.dir.display().to_string();
        let remote = self.remote(runner)?;
        let password = self.password_file.display().to_string();
        let network = db::network(&self.project);
        let data = format!("{}_data", self.project);
        let stack = release_command::Stack {
            name: &self.project,
            db: release_command::Server {
                network: &network,
                env: &db::CLIENT_ENV,
                password: release_command::Password::File(&password),
            },
            env_file: Some(&format!("{dir}/.env")),
            data: Some(&data),
        };
        let tag = php.rsplit_once(':').map_or("the release", |(_, tag)| tag);
        release_command::run_on(&remote, &stack, &php, tag, None)
    }

    /// Stops and removes the containers; with `data`, also the volumes and the network.
    /// Runs as cleanup (also after Ctrl-C).
    pub fn remove(&self, runner: &Runner, data: bool) -> Result<()> {
        runner.cleanup(&self.compose().args(["down", "--remove-orphans"]))?;
        if data {
            let (networks, volumes) = self.shared();
            // And the dumps' volume compose made (not external).
            let dumps = format!("{}_db-backups", self.project);
            runner.cleanup(
                &Cmd::new("docker")
                    .args(["volume", "rm", "--force"])
                    .args(volumes)
                    .arg(dumps),
            )?;
            for network in networks {
                if runner.succeeds(&Cmd::new("docker").args(["network", "inspect", &network]))? {
                    runner.cleanup(&Cmd::new("docker").args(["network", "rm", &network]))?;
                }
            }
        }
        Ok(())
    }

    pub fn logs(&self, runner: &Runner) -> String {
        let logs = runner.cleanup(&self.compose().args(["logs", "--no-color", "--tail", "100"]));
        crate::progress::strip_escapes(&logs.unwrap_or_default())
    }
}

/// `root/compose.yaml` with the release images named `registry/...:tag` and the edge (which keeps
/// its pinned tag) under the same registry.
pub fn render(root: &Path, config: &Config, tag: &str) -> Result<String> {
    let path = root.join("compose.yaml");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let fail = |err: compose_file::EditError| {
        anyhow::anyhow!("cannot set tag in {}: {err}", path.display())
    };
    let (text, _) =
        compose_file::set_release(&text, Some(&config.registry), tag, &APP_IMAGES).map_err(fail)?;
    let mut text = text;
    for pinned in [EDGE, DB] {
        let tag = pinned_image(&text, pinned)
            .and_then(|r| r.rsplit_once(':').map(|(_, t)| t.to_string()));
        if let Some(tag) = tag {
            text = compose_file::set_release(&text, Some(&config.registry), &tag, &[pinned])
                .map_err(fail)?
                .0;
        }
    }
    Ok(text)
}

/// The edge image a compose file names, if any.
pub fn edge_image(text: &str) -> Option<String> {
    pinned_image(text, EDGE)
}

/// The db image a compose file names, if any.
pub fn db_image(text: &str) -> Option<String> {
    pinned_image(text, DB)
}

fn pinned_image(text: &str, name: &str) -> Option<String> {
    compose_file::app_references(text, &[name])
        .ok()?
        .into_iter()
        .next()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_production_file_for_one_local_project() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let config = Config {
            registry: "127.0.0.1:5000/kiora".into(),
            ..Config::default()
        };
        let stack =
            LocalStack::new(&root, &config, Path::new("/d"), "crm-local", "dev", 8080).unwrap();
        assert!(
            stack
                .text
                .contains("image: 127.0.0.1:5000/kiora/crm-gdb_php:dev\n"),
            "{}",
            stack.text
        );
        assert!(stack
            .text
            .contains("image: 127.0.0.1:5000/kiora/crm-gdb_php:dev-supervisor\n"));
        assert!(stack
            .text
            .contains("image: 127.0.0.1:5000/kiora/crm-gdb_nginx:dev\n"));
        assert_eq!(
            stack.edge_image().as_deref(),
            Some("127.0.0.1:5000/kiora/crm-gdb_edge:0.5.0")
        );
        assert_eq!(
            stack.db_image().as_deref(),
            Some("127.0.0.1:5000/kiora/crm-gdb_db:0.6.0")
        );
        let cmd = stack.compose().arg("ps");
        assert_eq!(
            cmd.argv(),
            [
                "docker",
                "compose",
                "--project-name",
                "crm-local",
                "--project-directory",
                "/d",
                "--file",
                "-",
                "ps"
            ]
        );
        assert!(cmd
            .env
            .contains(&("CRM_STACK".to_string(), "crm-local".to_string())));
        assert!(cmd.env.contains(&(
            "CRM_DB_PASSWORD_FILE".to_string(),
            "/d/.deploy/secrets/db_password".to_string()
        )));
    }
}
