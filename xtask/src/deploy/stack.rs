//! The production stack on a target, for zero-downtime switches: blue/green releases behind a
//! stable edge proxy (see compose.yaml and docker/edge/).
//!
//! One compose.yaml, run as three Compose projects:
//!   STACK-edge    the `edge` service: the only published port; never recreated by a deploy
//!   STACK-blue    php + worker + nginx of one release
//!   STACK-green   the same, for the next release
//! They meet on the network STACK_edge, where each release's nginx answers to its project
//! name. The edge's live.conf names the live one; a switch rewrites it and reloads nginx
//! gracefully. The data (STACK_data) and the hashed assets of past releases (STACK_assets)
//! are shared volumes, so a page rendered by the old release still gets its CSS and JS.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::cmd::Cmd;
use crate::deploy::deployment::Deployment;
use crate::deploy::remote::Remote;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Color {
    Blue,
    Green,
}

impl Color {
    pub fn name(self) -> &'static str {
        match self {
            Color::Blue => "blue",
            Color::Green => "green",
        }
    }

    pub fn other(self) -> Color {
        match self {
            Color::Blue => Color::Green,
            Color::Green => Color::Blue,
        }
    }
}

const LIVE_CONF: &str = "/etc/nginx/crm-edge/live.conf";
/// How long a healthy release's nginx may take to answer /health (its resolver caches 5 s).
const SMOKE_LIMIT: Duration = Duration::from_secs(15);
/// Copies a release's hashed assets into the shared volume the edge serves. `--no-clobber`:
/// a file already there has the same content (its name is its hash), and overwriting it would let
/// the edge serve it half-written to a page of the live release.
const BRIDGE_ASSETS: &[&str] = &[
    "cp",
    "-a",
    "--no-clobber",
    "/var/www/app/public/build/.",
    "/assets/",
];

pub struct Stack<'a> {
    deployment: &'a Deployment,
}

impl<'a> Stack<'a> {
    pub fn new(deployment: &'a Deployment) -> Stack<'a> {
        Stack { deployment }
    }

    fn name(&self) -> &str {
        &self.deployment.stack
    }

    fn remote(&self) -> &Remote {
        &self.deployment.remote
    }

    pub fn project(&self, color: Color) -> String {
        format!("{}-{}", self.name(), color.name())
    }

    /// `docker compose` of one project of the stack (the file interpolates CRM_STACK).
    pub fn compose(&self, project: &str) -> Cmd {
        let mut cmd = self.deployment.compose();
        let at = cmd
            .args
            .iter()
            .position(|a| a == "--project-name")
            .expect("compose names its project")
            + 1;
        cmd.args[at] = project.to_string();
        cmd.env("CRM_STACK", self.name())
    }

    fn run(&self, cmd: Cmd) -> Result<()> {
        self.remote().run(cmd)
    }

    fn query(&self, cmd: Cmd) -> Result<String> {
        self.remote().query(cmd)
    }

    /// The edge network and the shared volumes, created once (Compose never deletes them).
    pub fn ensure_shared(&self) -> Result<()> {
        let network = format!("{}_edge", self.name());
        if !self
            .remote()
            .succeeds(Cmd::new("docker").args(["network", "inspect", &network]))?
        {
            self.run(Cmd::new("docker").args(["network", "create", &network]))?;
        }
        for volume in ["data", "assets"] {
            let volume = format!("{}_{volume}", self.name());
            if !self
                .remote()
                .succeeds(Cmd::new("docker").args(["volume", "inspect", &volume]))?
            {
                self.run(Cmd::new("docker").args(["volume", "create", &volume]))?;
            }
        }
        Ok(())
    }

    /// Container ids of a project's service (all of them when `service` is None).
    pub fn containers(&self, project: &str, service: Option<&str>) -> Result<Vec<String>> {
        let mut cmd = self.compose(project).args(["ps", "--all", "--quiet"]);
        if let Some(service) = service {
            cmd = cmd.arg(service);
        }
        Ok(self
            .query(cmd)?
            .lines()
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect())
    }

    /// The edge container's id, None before the first deploy.
    pub fn edge(&self) -> Result<Option<String>> {
        Ok(self
            .containers(&format!("{}-edge", self.name()), Some("edge"))?
            .into_iter()
            .next())
    }

    /// The live release's color, from the edge's live.conf; None before the first deploy.
    pub fn live(&self) -> Result<Option<Color>> {
        let Some(edge) = self.edge()? else {
            return Ok(None);
        };
        let conf = self.query(Cmd::new("docker").args(["exec", &edge, "cat", LIVE_CONF]))?;
        Ok([Color::Blue, Color::Green]
            .into_iter()
            .find(|c| conf.contains(&format!("\"{}:80\"", self.project(*c)))))
    }

    /// The live color and its release tag (from its php image), None before the first deploy.
    pub fn live_release(&self) -> Result<Option<(Color, Option<String>)>> {
        let Some(color) = self.live()? else {
            return Ok(None);
        };
        let tag = self
            .image_of(color, "php")?
            .and_then(|image| crate::compose_file::release_of(&image));
        Ok(Some((color, tag)))
    }

    /// The image a color's `service` container runs (`.../crm-gdb_php:TAG`), if it runs.
    pub fn image_of(&self, color: Color, service: &str) -> Result<Option<String>> {
        let Some(id) = self
            .containers(&self.project(color), Some(service))?
            .into_iter()
            .next()
        else {
            return Ok(None);
        };
        Ok(Some(self.query(Cmd::new("docker").args([
            "inspect",
            "--format",
            "{{.Config.Image}}",
            &id,
        ]))?))
    }

    /// Adds a release's hashed assets to the shared archive the edge serves.
    pub fn bridge_assets(&self, nginx_image: &str) -> Result<()> {
        self.run(asset_tool(self.name(), nginx_image, BRIDGE_ASSETS))
    }

    /// The old Makefile's "clear the assets volume" (recreate strategy only: old pages lose their assets).
    pub fn clear_assets(&self, nginx_image: &str) -> Result<()> {
        self.run(asset_tool(
            self.name(),
            nginx_image,
            &["find", "/assets", "-mindepth", "1", "-delete"],
        ))
    }

    /// Starts a color's containers (not the edge) and waits until every one is ready.
    pub fn start(&self, color: Color, limit: Duration) -> Result<()> {
        let project = self.project(color);
        self.run(
            self.compose(&project)
                .args(["up", "--detach", "--remove-orphans"]),
        )?;
        if self.remote().dry_run() {
            return Ok(());
        }
        self.gate(&project, limit)
            .with_context(|| format!("the new release ({project}) is not healthy"))?;
        // The healthchecks test each container alone; this proves nginx -> php -> storage of
        // the new release before it gets any traffic.
        let nginx = self
            .containers(&project, Some("nginx"))?
            .into_iter()
            .next()
            .context("the new release has no nginx")?;
        // Polled: an nginx whose php was just restarted re-resolves it within 5 s.
        let probe = Cmd::new("docker").args(["exec", &nginx, "nginx-healthcheck", "/health"]);
        let start = Instant::now();
        while !self.remote().succeeds(probe.clone())? {
            if start.elapsed() > SMOKE_LIMIT {
                bail!("the new release ({project}) does not answer /health through its nginx");
            }
            crate::interrupt::check()?;
            std::thread::sleep(Duration::from_millis(500));
        }
        Ok(())
    }

    /// Ready = each container answers its own healthcheck command, run now with `docker exec`
    /// (the engine's healthcheck only runs every 10 s), and the worker's supervisor says RUNNING.
    /// A container Docker already calls unhealthy, or that exited, fails at once.
    fn gate(&self, project: &str, limit: Duration) -> Result<()> {
        let start = Instant::now();
        let mut pending = self.containers(project, None)?;
        if pending.is_empty() {
            bail!("no container was started");
        }
        let format = "{{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}} {{index .Config.Labels \"com.docker.compose.service\"}}{{range $i, $a := .Config.Healthcheck.Test}} {{$a}}{{end}}";
        loop {
            let mut still = Vec::new();
            for id in pending {
                let line =
                    self.query(Cmd::new("docker").args(["inspect", "--format", format, &id]))?;
                let words: Vec<&str> = line.split(' ').collect();
                let (status, health, service) =
                    (words[0], words[1], words.get(2).copied().unwrap_or("?"));
                if status != "running" || health == "unhealthy" {
                    bail!("{service} is {status} ({health})");
                }
                if self
                    .remote()
                    .succeeds(ready_probe(&id, service, &words[3..]))?
                {
                    continue;
                }
                still.push(id);
            }
            if still.is_empty() {
                return Ok(());
            }
            if start.elapsed() > limit {
                bail!("not ready after {}s", limit.as_secs());
            }
            crate::interrupt::check()?;
            std::thread::sleep(Duration::from_millis(500));
            pending = still;
        }
    }

    /// Starts the edge if it is not running (first deploy).
    pub fn ensure_edge(&self, limit: Duration) -> Result<()> {
        if self.edge()?.is_some() && !self.remote().dry_run() {
            return Ok(());
        }
        let project = format!("{}-edge", self.name());
        self.run(
            self.compose(&project)
                .args(["--profile", "edge", "up", "--detach", "edge"]),
        )?;
        if self.remote().dry_run() {
            return Ok(());
        }
        self.gate(&project, limit)
            .context("the edge proxy is not healthy")
    }

    /// Points the edge at `color`: new live.conf (written, then renamed), config check, graceful
    /// reload (old workers finish their requests). On an undoing deployment it runs as cleanup,
    /// since putting the old release back must happen even after Ctrl-C.
    pub fn switch(&self, color: Color) -> Result<()> {
        let Some(edge) = self
            .edge()?
            .or_else(|| self.remote().dry_run().then(|| "EDGE".to_string()))
        else {
            bail!("the edge proxy is not running")
        };
        for cmd in switch_commands(&edge, &self.project(color)) {
            self.remote()
                .run(cmd)
                .with_context(|| format!("switching the edge to {}", self.project(color)))?;
        }
        Ok(())
    }

    /// Stops and removes a color's containers (its volumes are shared and stay).
    /// A cleanup: it runs after Ctrl-C too (draining the old release, or undoing the new one).
    pub fn remove(&self, color: Color) -> Result<()> {
        let cmd = self.compose(&self.project(color)).args([
            "down",
            "--remove-orphans",
            "--timeout",
            "10",
        ]);
        self.remote().cleanup(cmd).map(drop)
    }

    /// Stops a color without removing it (recreate strategy: the old Makefile's `docker compose stop`).
    pub fn stop(&self, color: Color) -> Result<()> {
        self.run(
            self.compose(&self.project(color))
                .args(["stop", "--timeout", "10"]),
        )
    }

    /// Starts a stopped color again and puts its assets back (undoing a recreate); a cleanup.
    pub fn restart(&self, color: Color) -> Result<()> {
        let project = self.project(color);
        self.remote()
            .cleanup(self.compose(&project).args(["up", "--detach"]))?;
        if let Some(image) = self.image_of(color, "nginx")? {
            self.remote()
                .cleanup(asset_tool(self.name(), &image, BRIDGE_ASSETS))?;
        }
        Ok(())
    }

    /// Stops some services of a color (restore: nothing may write the data meanwhile).
    pub fn stop_services(&self, color: Color, services: &[&str]) -> Result<()> {
        self.run(
            self.compose(&self.project(color))
                .args(["stop", "--timeout", "10"])
                .args(services.iter().copied()),
        )
    }

    /// `docker compose ps` of a color, as a table.
    pub fn ps(&self, color: Color) -> Result<String> {
        self.query(self.compose(&self.project(color)).args([
            "ps",
            "--all",
            "--format",
            "table {{.Service}}\t{{.Image}}\t{{.Status}}",
        ]))
    }

    /// The published port of the edge (`127.0.0.1:8080` -> 8080).
    pub fn port(&self) -> Result<u16> {
        let out = self.query(self.compose(&format!("{}-edge", self.name())).args([
            "--profile",
            "edge",
            "port",
            "edge",
            "80",
        ]))?;
        out.rsplit(':')
            .next()
            .and_then(|p| p.trim().parse().ok())
            .with_context(|| format!("cannot read the edge's port from {out:?}"))
    }

    /// The last lines of a color's logs (printed when a release fails).
    pub fn logs(&self, color: Color) -> String {
        let cmd = self
            .compose(&self.project(color))
            .args(["logs", "--no-color", "--tail", "60"]);
        crate::progress::strip_escapes(&self.remote().cleanup(cmd).unwrap_or_default())
    }
}

/// `docker exec` of a container's own healthcheck (`CMD` form), plus supervisor's word for the
/// worker: its healthcheck reads a stats file the old worker also writes.
fn ready_probe(id: &str, service: &str, healthcheck: &[&str]) -> Cmd {
    let mut cmd = Cmd::new("docker").args(["exec", id]);
    match (service, healthcheck) {
        ("worker", _) => {
            cmd = cmd.args([
                "supervisorctl",
                "-c",
                "/etc/supervisor/crm.conf",
                "status",
                "worker",
            ])
        }
        (_, ["CMD", argv @ ..]) if !argv.is_empty() => cmd = cmd.args(argv.iter().copied()),
        // No healthcheck (or a shell one): running is ready.
        _ => cmd = cmd.arg("true"),
    }
    cmd
}

/// Points the edge container `edge` at `project`: new live.conf (written, then renamed), config
/// check, graceful reload.
fn switch_commands(edge: &str, project: &str) -> [Cmd; 4] {
    let conf = format!("set $crm_live \"{project}:80\";\n");
    let new = format!("{LIVE_CONF}.new");
    [
        Cmd::new("docker")
            .args([
                "exec",
                "-i",
                edge,
                "dd",
                &format!("of={new}"),
                "status=none",
            ])
            .stdin(conf),
        Cmd::new("docker").args(["exec", edge, "mv", "-f", &new, LIVE_CONF]),
        Cmd::new("docker").args(["exec", edge, "nginx", "-t", "-q"]),
        Cmd::new("docker").args(["exec", edge, "nginx", "-s", "reload"]),
    ]
}

/// A throwaway container of the nginx image with the shared assets volume at /assets.
fn asset_tool(stack: &str, nginx_image: &str, argv: &[&str]) -> Cmd {
    Cmd::new("docker")
        .args([
            "run",
            "--rm",
            "--user",
            "0:0",
            "--entrypoint",
            argv[0],
            "--volume",
        ])
        .arg(format!("{stack}_assets:/assets"))
        .arg(nginx_image)
        .args(argv[1..].iter().copied())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::Runner;
    use crate::deploy::target::Target;
    use crate::progress::Verbosity;

    #[test]
    fn each_color_is_its_own_project_of_the_same_file() {
        let target = Target::new(None, "/srv/crm", None).unwrap();
        let runner = Runner::new(true, Verbosity::Quiet);
        let d = Deployment::new(&target, &runner, "crm");
        let stack = Stack::new(&d);
        let cmd = stack.compose(&stack.project(Color::Green)).arg("ps");
        assert_eq!(
            cmd.argv(),
            [
                "docker",
                "compose",
                "--project-name",
                "crm-green",
                "--project-directory",
                "/srv/crm",
                "--file",
                "/srv/crm/compose.yaml",
                "ps"
            ]
        );
        assert_eq!(cmd.env, [("CRM_STACK".to_string(), "crm".to_string())]);
        assert_eq!(Color::Blue.other(), Color::Green);
    }

    #[test]
    fn a_switch_rewrites_live_conf_then_reloads_gracefully() {
        let [write, rename, check, reload] = switch_commands("e1", "crm-green");
        assert_eq!(
            write.argv(),
            [
                "docker",
                "exec",
                "-i",
                "e1",
                "dd",
                "of=/etc/nginx/crm-edge/live.conf.new",
                "status=none"
            ]
        );
        assert_eq!(
            write.stdin.as_deref(),
            Some(&b"set $crm_live \"crm-green:80\";\n"[..])
        );
        assert_eq!(
            rename.argv(),
            [
                "docker",
                "exec",
                "e1",
                "mv",
                "-f",
                "/etc/nginx/crm-edge/live.conf.new",
                "/etc/nginx/crm-edge/live.conf"
            ]
        );
        assert_eq!(check.argv(), ["docker", "exec", "e1", "nginx", "-t", "-q"]);
        assert_eq!(
            reload.argv(),
            ["docker", "exec", "e1", "nginx", "-s", "reload"]
        );
    }

    #[test]
    fn readiness_probes() {
        let php = ready_probe(
            "abc",
            "php",
            &["CMD", "php", "/var/www/app/bin/healthcheck.php"],
        );
        assert_eq!(
            php.argv(),
            [
                "docker",
                "exec",
                "abc",
                "php",
                "/var/www/app/bin/healthcheck.php"
            ]
        );
        let worker = ready_probe("w", "worker", &["CMD", "php", "x", "worker"]);
        assert_eq!(
            worker.argv(),
            [
                "docker",
                "exec",
                "w",
                "supervisorctl",
                "-c",
                "/etc/supervisor/crm.conf",
                "status",
                "worker"
            ]
        );
        assert_eq!(
            ready_probe("n", "nginx", &["CMD-SHELL", "x"]).argv(),
            ["docker", "exec", "n", "true"]
        );
    }

    #[test]
    fn assets_are_copied_from_the_release_image() {
        let cmd = asset_tool("crm", "r/crm-gdb_nginx:2", BRIDGE_ASSETS);
        assert_eq!(
            cmd.argv(),
            [
                "docker",
                "run",
                "--rm",
                "--user",
                "0:0",
                "--entrypoint",
                "cp",
                "--volume",
                "crm_assets:/assets",
                "r/crm-gdb_nginx:2",
                "-a",
                "--no-clobber",
                "/var/www/app/public/build/.",
                "/assets/",
            ]
        );
    }
}
