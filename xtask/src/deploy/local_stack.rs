//! The whole stack on this machine as ONE Compose project (the edge and one release), for `up`
//! and `test-image`. The production compose.yaml is used as it is, with the images renamed after
//! the configured registry and the tag, and fed on stdin: the developer's file is never touched.
//! The project's shared network and volumes (external in compose.yaml, so that blue and green
//! can share them on a server) are created before `up` and removed by `remove(.., true)`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::cmd::{Cmd, Runner};
use crate::compose_file;
use crate::config::{Config, APP_IMAGES, EDGE, PHP, SUPERVISOR_SUFFIX};
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
}

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
        })
    }

    /// The edge image the stack names, e.g. `registry/crm-gdb_edge:0.5.0`.
    pub fn edge_image(&self) -> Option<String> {
        edge_image(&self.text)
    }

    /// `docker compose` of the project, with the rendered file on stdin.
    pub fn compose(&self) -> Cmd {
        docker::compose(&self.project, &self.dir.display().to_string())
            .args(["--file", "-"])
            .env("CRM_STACK", &self.project)
            .env("HTTP_PORT", self.port.to_string())
            .stdin(self.text.clone())
    }

    fn shared(&self) -> ([String; 1], [String; 3]) {
        let p = &self.project;
        (
            [format!("{p}_edge")],
            [
                format!("{p}_data"),
                format!("{p}_assets"),
                format!("{p}_edge-conf"),
            ],
        )
    }

    /// Creates the shared network and volumes, starts everything and waits for health.
    pub fn up(&self, runner: &Runner) -> Result<()> {
        let ([network], volumes) = self.shared();
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
        self.release_command(runner)?;
        // Named: the file's db is a swarm's (no task here, but `up` of all would pull it).
        runner.run(
            &self
                .compose()
                .args(["up", "--detach", "--wait", "--remove-orphans"])
                .args(stack::RELEASE_SERVICES)
                .arg("edge"),
        )
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
        let remote = Remote::new(Target::new(None, &dir, None)?, *runner);
        let stack = release_command::Stack {
            name: &self.project,
            data: release_command::Data::Volume(&format!("{}_data", self.project)),
            env_file: Some(&format!("{dir}/.env")),
        };
        let tag = php.rsplit_once(':').map_or("the release", |(_, tag)| tag);
        release_command::run_on(&remote, &stack, &php, tag)
    }

    /// Stops and removes the containers; with `data`, also the volumes and the network.
    /// Runs as cleanup (also after Ctrl-C).
    pub fn remove(&self, runner: &Runner, data: bool) -> Result<()> {
        runner.cleanup(&self.compose().args(["down", "--remove-orphans"]))?;
        if data {
            let ([network], volumes) = self.shared();
            runner.cleanup(
                &Cmd::new("docker")
                    .args(["volume", "rm", "--force"])
                    .args(volumes),
            )?;
            if runner.succeeds(&Cmd::new("docker").args(["network", "inspect", &network]))? {
                runner.cleanup(&Cmd::new("docker").args(["network", "rm", &network]))?;
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
    let edge_tag = edge_image(&text).and_then(|r| r.rsplit_once(':').map(|(_, t)| t.to_string()));
    match edge_tag {
        Some(edge_tag) => {
            Ok(
                compose_file::set_release(&text, Some(&config.registry), &edge_tag, &[EDGE])
                    .map_err(fail)?
                    .0,
            )
        }
        None => Ok(text),
    }
}

/// The edge image a compose file names, if any.
pub fn edge_image(text: &str) -> Option<String> {
    compose_file::app_references(text, &[EDGE])
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
    }
}
