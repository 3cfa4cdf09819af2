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
//! After a switch the old color's worker is stopped and its php and nginx keep running, idle
//! (the edge names the other color): the standby. A rollback to its release switches the edge
//! back to them at once, then starts the worker again (`up` keeps containers whose configuration
//! is unchanged, and recreates them after an edit of `.env`); the next deploy to that color
//! replaces them. A standby left by older versions is stopped altogether; a rollback starts it.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::api_shortcut::STANDBY_FORMAT;
use crate::cmd::Cmd;
use crate::deploy::canary::{self, Share};
use crate::deploy::db;
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
/// How long the database may take to accept connections (a first start creates its cluster).
const DB_LIMIT: Duration = Duration::from_secs(180);
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

/// A release's services, named on every `up` of a color: compose.yaml also holds the edge (its
/// own project) and a swarm's db (no task under Compose, but `up` of the whole file would pull
/// its image).
pub const RELEASE_SERVICES: [&str; 3] = ["php", "worker", "nginx"];

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

    /// The edge network and the shared volumes, created once (Compose never deletes them). The
    /// network binds the edge's published ports to HTTP_BIND of the target's `.env` (loopback
    /// when unset): compose.yaml cannot name the address (see [`edge_network_create`]).
    pub fn ensure_shared(&self) -> Result<()> {
        let network = format!("{}_edge", self.name());
        // No .env is no HTTP_BIND (the file is optional).
        let env = self.deployment.read(".env").unwrap_or_default();
        let bind = edge_bind(&env)?;
        let bound = self.remote().output(edge_network_binding(&network))?;
        if !bound.status.success() {
            self.run(edge_network_create(&network, bind))?;
        } else {
            let bound = String::from_utf8_lossy(&bound.stdout).trim().to_string();
            if bound != bind.to_string() {
                let bound = match bound.as_str() {
                    "" | "<no value>" => "every address (a network made before xtask bound it)",
                    bound => bound,
                };
                let fix = "remove the edge and the network, then deploy again (or set HTTP_BIND to match)";
                // A running edge keeps the ports it was created with; a new one would publish
                // on the network's address, maybe the internet's: refuse to make it.
                if self.edge()?.is_none() {
                    bail!("the network {network} would publish the new edge on {bound}, not HTTP_BIND={bind}; {fix}");
                }
                self.remote().say(format!(
                    "warning: the network {network} would publish a recreated edge on {bound}, not HTTP_BIND={bind}; to change it, {fix}"
                ));
            }
        }
        let db_network = db::network(self.name());
        if !self
            .remote()
            .succeeds(Cmd::new("docker").args(["network", "inspect", &db_network]))?
        {
            self.run(db_network_create(&db_network))?;
        }
        let volumes =
            ["data", "assets", "edge-conf", db::SERVICE].map(|v| format!("{}_{v}", self.name()));
        // One look at all of them (each command is a round trip over ssh): usually all exist.
        let all = Cmd::new("docker")
            .args(["volume", "inspect", "--format", "{{.Name}}"])
            .args(&volumes);
        if !self.remote().succeeds(all)? {
            for volume in &volumes {
                if !self
                    .remote()
                    .succeeds(Cmd::new("docker").args(["volume", "inspect", volume]))?
                {
                    self.run(Cmd::new("docker").args(["volume", "create", volume]))?;
                }
            }
        }
        // Made by us, before Compose would make it (as root) to bind-mount it into db.
        let backups = self
            .deployment
            .target()
            .path(crate::deploy::backups::BACKUPS);
        self.run(Cmd::new("mkdir").args(["-p", &backups]))?;
        db::ensure_password(
            self.remote(),
            &self.deployment.target().path(db::PASSWORD_FILE),
        )
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

    /// The color kept after a switch (see the module doc): the color `live` is not, when it has
    /// containers and its worker does not run; with its release (from its php container's image).
    pub fn standby(&self, live: Option<Color>) -> Result<Option<(Color, Option<String>)>> {
        Ok(self
            .standby_state(live)?
            .map(|(color, standby)| (color, standby.release)))
    }

    /// [`Stack::standby`], and whether its php and nginx run (a rollback then only switches).
    pub fn standby_state(&self, live: Option<Color>) -> Result<Option<(Color, Standby)>> {
        let Some(color) = live.map(Color::other) else {
            return Ok(None);
        };
        let Some(out) = self.states(color, None)? else {
            return Ok(None);
        };
        Ok(standby_release(&out).map(|standby| (color, standby)))
    }

    /// Whether `color`'s worker is not running: no container, or one never started or stopped
    /// (not one the engine is restarting). The live color's, after a deploy died between its
    /// switch and its worker's start.
    pub fn worker_stopped(&self, color: Color) -> Result<bool> {
        let Some(out) = self.states(color, Some("worker"))? else {
            return Ok(true);
        };
        Ok(out
            .lines()
            .all(|l| matches!(l.split_whitespace().next(), Some("exited" | "created"))))
    }

    /// One [`STANDBY_FORMAT`] line (state, image, service) per container of `color`'s `service`
    /// (None: all of them); None when it has no container.
    fn states(&self, color: Color, service: Option<&str>) -> Result<Option<String>> {
        let ids = self.containers(&self.project(color), service)?;
        if ids.is_empty() {
            return Ok(None);
        }
        self.query(
            Cmd::new("docker")
                .args(["inspect", "--format", STANDBY_FORMAT])
                .args(&ids),
        )
        .map(Some)
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
            crate::api_shortcut::IMAGE_FORMAT,
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

    /// Starts some services of a color (none: all of [`RELEASE_SERVICES`]) and waits until
    /// every one is ready.
    pub fn start_services(&self, color: Color, services: &[&str], limit: Duration) -> Result<()> {
        self.up(color, services)?;
        self.ready(color, services, limit)
    }

    /// Starts (or recreates, if their image or configuration changed) some services of a color
    /// (none: all of [`RELEASE_SERVICES`]), without waiting until they are ready.
    pub fn up(&self, color: Color, services: &[&str]) -> Result<()> {
        let named = if services.is_empty() {
            &RELEASE_SERVICES[..]
        } else {
            services
        };
        self.run(
            self.compose(&self.project(color))
                .args(["up", "--detach", "--remove-orphans"])
                .args(named.iter().copied()),
        )
    }

    /// Starts a color's worker once its php and nginx serve (a standby serving again, a release
    /// just switched to), leaving those two as they are. Then waits until all is ready.
    pub fn start_worker(&self, color: Color, limit: Duration) -> Result<()> {
        self.run(start_worker_command(self.compose(&self.project(color))))?;
        self.ready(color, &[], limit)
    }

    /// Waits until a color's `services` (none: all) that already run are ready, as
    /// [`Stack::start_services`] does after starting them: a standby about to serve again.
    pub fn ready(&self, color: Color, services: &[&str], limit: Duration) -> Result<()> {
        let project = self.project(color);
        if self.remote().dry_run() {
            return Ok(());
        }
        let answered = self
            .gate(&project, services, limit)
            .with_context(|| format!("the new release ({project}) is not healthy"))?;
        if answered {
            // The gate's last look already saw /health answer 200 through this nginx.
            return Ok(());
        }
        // The healthchecks test each container alone; this proves nginx -> php -> storage of
        // the new release before it gets any traffic.
        let nginx = self
            .containers(&project, Some("nginx"))?
            .into_iter()
            .next()
            .context("the new release has no nginx")?;
        // Polled: an nginx whose php was just restarted re-resolves it within 5 s.
        let probe = health_probe(&nginx);
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

    /// Whether every hashed asset of `color`'s running nginx is already in the shared volume the
    /// edge serves (then a rollback to it needs no copy). Read in both containers, no new one.
    pub fn assets_in_volume(&self, color: Color, edge: &str) -> Result<bool> {
        let Some(nginx) = self
            .containers(&self.project(color), Some("nginx"))?
            .into_iter()
            .next()
        else {
            return Ok(false);
        };
        let list = |id: &str, dir: &str| {
            self.remote().output(
                Cmd::new("docker")
                    .args(["exec", id, "find", dir, "-type", "f", "-printf", "%P\\n"]),
            )
        };
        let (release, volume) = std::thread::scope(|scope| {
            let release = scope.spawn(|| list(&nginx, "/var/www/app/public/build"));
            let volume = list(edge, "/srv/crm-assets/build");
            (joined(release), volume)
        });
        let (release, volume) = (release?, volume?);
        if !release.status.success() || !volume.status.success() {
            return Ok(false);
        }
        let have: std::collections::BTreeSet<&str> = std::str::from_utf8(&volume.stdout)
            .unwrap_or("")
            .lines()
            .collect();
        Ok(std::str::from_utf8(&release.stdout)
            .unwrap_or("\u{0}")
            .lines()
            .all(|file| have.contains(file)))
    }

    /// Ready = each container answers its own healthcheck command, run now with `docker exec`
    /// (the engine's healthcheck only runs every 10 s), and the worker's supervisor says RUNNING.
    /// A broken release fails as soon as that is certain (see [`Watch`]): a container that
    /// exited, restarts or is called unhealthy; /health answering 5xx [`HEALTH_5XX_LIMIT`]
    /// times in a row once the app has answered; or, once it has, a container failing its own
    /// check for [`PROBE_FAILURE_FOR`] (and [`PROBE_FAILURE_LOOKS`] looks) in a row. Until the
    /// app answers at all, only `limit` ends the wait: a slow start is not a failure.
    /// Each look asks /health and every pending container side by side; looks come every
    /// [`FAST_POLL`] where the engine's API answers them (a local target), else every [`POLL`].
    /// Returns whether its last look saw /health answer 200 through the release's nginx.
    fn gate(&self, project: &str, services: &[&str], limit: Duration) -> Result<bool> {
        let start = Instant::now();
        let mut pending = Vec::new();
        if services.is_empty() {
            pending = self.containers(project, None)?;
        }
        for service in services {
            pending.extend(self.containers(project, Some(service))?);
        }
        if pending.is_empty() {
            bail!("no container was started");
        }
        let nginx = self.containers(project, Some("nginx"))?.into_iter().next();
        let poll = if self.deployment.target().ssh.is_none()
            && crate::docker_api::Engine::local().is_some()
        {
            FAST_POLL
        } else {
            POLL
        };
        let mut watch = Watch::default();
        loop {
            let (health, looks) = std::thread::scope(|scope| {
                let health = nginx
                    .as_ref()
                    .map(|nginx| scope.spawn(move || self.remote().output(health_probe(nginx))));
                let looks: Vec<_> = pending
                    .iter()
                    .map(|id| scope.spawn(move || self.look(id)))
                    .collect();
                (
                    health.map(joined),
                    looks.into_iter().map(joined).collect::<Vec<_>>(),
                )
            });
            let mut healthy = false;
            // The app's own answer first: it decides whether failures below are certain.
            if let Some(output) = health {
                let output = output?;
                let status = answered_status(
                    output.status.success(),
                    &String::from_utf8_lossy(&output.stderr),
                );
                healthy = status == Some(200);
                if let Some(why) = watch.health(status) {
                    bail!("{why}");
                }
            }
            let now = Instant::now();
            let mut still = Vec::new();
            for (id, look) in pending.into_iter().zip(looks) {
                let (service, ready) = match look? {
                    Look::Failed(why) => bail!("{why}"),
                    Look::Checked { service, ready } => (service, ready),
                };
                if watch.probe(&id, ready, now) {
                    bail!(
                        "{service} failed its own check for {} in a row while the release answers /health",
                        crate::progress::seconds(PROBE_FAILURE_FOR)
                    );
                }
                if !ready {
                    still.push(id);
                }
            }
            if still.is_empty() {
                return Ok(healthy);
            }
            if start.elapsed() > limit {
                bail!("not ready after {}s", limit.as_secs());
            }
            crate::interrupt::check()?;
            std::thread::sleep(poll);
            pending = still;
        }
    }

    /// The id of a color's running php container (a dry run: a placeholder), for a command run
    /// in it.
    pub fn running_php(&self, color: Color) -> Result<String> {
        let project = self.project(color);
        if self.remote().dry_run() {
            return Ok(format!("<php of {project}>"));
        }
        let id = self
            .containers(&project, Some("php"))?
            .into_iter()
            .next()
            .with_context(|| format!("{project} has no php container"))?;
        let state = self.state(&id)?;
        if !state.starts_with("running ") {
            let status = state.split(' ').next().unwrap_or("?");
            bail!("the new release's php in {project} is not running ({status}); `docker logs {id}` on the target says why");
        }
        Ok(id)
    }

    /// A container's state line ([`crate::api_shortcut::STATE_FORMAT`]: status, health,
    /// restarts, service, healthcheck).
    fn state(&self, id: &str) -> Result<String> {
        self.query(Cmd::new("docker").args([
            "inspect",
            "--format",
            crate::api_shortcut::STATE_FORMAT,
            id,
        ]))
    }

    /// Whether the engine's health check of a running container last passed.
    fn healthy(&self, id: &str) -> Result<bool> {
        Ok(self.state(id)?.starts_with("running healthy "))
    }

    /// One look at a starting container: its state, then (unless that already tells a failure)
    /// its own check.
    fn look(&self, id: &str) -> Result<Look> {
        let line = self.state(id)?;
        let words: Vec<&str> = line.split(' ').collect();
        let (status, health, restarts, service) = (
            words[0],
            words.get(1).copied().unwrap_or("none"),
            words.get(2).and_then(|r| r.parse().ok()).unwrap_or(0),
            words.get(3).copied().unwrap_or("?"),
        );
        if let Some(why) = state_failure(status, health, restarts) {
            return Ok(Look::Failed(format!("{service} {why}")));
        }
        let test = words.get(4..).unwrap_or_default();
        // The engine's own check passed within its interval (a running standby): no need to
        // run it again.
        let ready =
            health == "healthy" || self.remote().succeeds(ready_probe(id, service, test))?;
        Ok(Look::Checked {
            service: service.to_string(),
            ready,
        })
    }

    /// The Compose project of the database (see compose.yaml's header).
    pub fn db_project(&self) -> String {
        format!("{}-{}", self.name(), db::SERVICE)
    }

    /// Starts the database if it is not running (a first deploy, or after a reboot that did
    /// not restart it), from `text` (the compose.yaml being deployed, the target's may predate
    /// db), and waits until it accepts connections; returns its container's id. Like the edge,
    /// a running db is left as it is: a release deploy never recreates it.
    pub fn ensure_db(&self, text: &str) -> Result<String> {
        let dry_run = self.remote().dry_run();
        if let (Some(id), false) = (self.deployment.db_container()?, dry_run) {
            // Its image's check (pg_isready) passed within its interval, as a running standby's
            // (see `look`): not asked again.
            if self.healthy(&id)? || self.remote().succeeds(db::ready(&id))? {
                return Ok(id);
            }
        }
        self.run(db_up(self.compose(&self.db_project()), text))?;
        if dry_run {
            return Ok("DB".into());
        }
        let id = self
            .deployment
            .db_container()?
            .context("the database did not start")?;
        if !db::wait_ready(self.remote(), &id, DB_LIMIT)? {
            bail!(
                "the database ({}) does not accept connections after {}s; see `docker logs {id}` on the target",
                self.db_project(),
                DB_LIMIT.as_secs()
            );
        }
        Ok(id)
    }

    /// Starts the edge if it is not running (first deploy); returns its container's id.
    pub fn ensure_edge(&self, limit: Duration) -> Result<String> {
        let edge = self.edge()?;
        if let (Some(edge), false) = (&edge, self.remote().dry_run()) {
            return Ok(edge.clone());
        }
        let project = format!("{}-edge", self.name());
        self.run(
            self.compose(&project)
                .args(["--profile", "edge", "up", "--detach", "edge"]),
        )?;
        if self.remote().dry_run() {
            return Ok(edge.unwrap_or_else(|| "EDGE".to_string()));
        }
        self.gate(&project, &[], limit)
            .context("the edge proxy is not healthy")?;
        self.edge()?.context("the edge proxy did not start")
    }

    /// Points the edge at `color`: new live.conf (written, then renamed), graceful reload, which
    /// checks the configuration first (old workers finish their requests). On an undoing deployment it runs as cleanup,
    /// since putting the old release back must happen even after Ctrl-C.
    pub fn switch(&self, color: Color) -> Result<()> {
        let edge = self.running_edge()?;
        self.switch_edge(&edge, color)
    }

    /// [`Stack::switch`] with the edge container's id already known.
    pub fn switch_edge(&self, edge: &str, color: Color) -> Result<()> {
        let project = self.project(color);
        let run = |cmd: Cmd| {
            self.remote()
                .run(cmd)
                .with_context(|| format!("switching the edge to {project}"))
        };
        let [write, rename, clear, reload] = switch_commands(edge, &project);
        if self.remote().dry_run() {
            return [write, rename, clear, reload].into_iter().try_for_each(run);
        }
        // The new live.conf and the end of any canary split are independent files: side by
        // side, then one reload for both.
        std::thread::scope(|scope| {
            let cleared = scope.spawn(|| {
                // Usually there is no canary: where the engine's API answers, looking for its
                // files reads them without a process, less than the `rm` exec that would compete
                // with the write and the rename (over ssh, one `rm` is the fewer round trips).
                let looks = canary::FILES.map(|file| canary::file_probe(edge, file));
                if !looks
                    .iter()
                    .all(|look| crate::api_shortcut::applies(&self.remote().cmd(look.clone())))
                {
                    return run(clear);
                }
                let mut present = Vec::new();
                for (file, look) in canary::FILES.iter().zip(looks) {
                    if self.remote().succeeds(look)? {
                        present.push(*file);
                    }
                }
                if present.is_empty() {
                    return Ok(());
                }
                run(canary::clear_files_command(edge, &present))
            });
            let written = run(write).and_then(|()| run(rename));
            joined(cleared).and(written)
        })?;
        run(reload)
    }

    /// Sends `share` of the requests to `canary`, the rest to `live` (see `canary.rs`); the
    /// live.conf stays as it is, so a switch (either way) ends the split. Refused, before
    /// anything changes, on an edge older than the canary files.
    pub fn split(&self, live: Color, canary: Color, share: Share) -> Result<()> {
        let edge = self.running_edge()?;
        for cmd in canary::start_commands(&edge, share, &self.project(canary), &self.project(live))
        {
            self.run(cmd).with_context(|| {
                format!(
                    "sending {share} of the requests to {}",
                    self.project(canary)
                )
            })?;
        }
        Ok(())
    }

    /// Refuses an edge that cannot split the requests (crm-gdb_edge before 0.4.0).
    pub fn check_canary_support(&self) -> Result<()> {
        let Some(edge) = self.edge()? else {
            bail!("nothing serves yet: the first release cannot be a canary; deploy it without --canary")
        };
        if !self.remote().succeeds(canary::supported_probe(&edge))? {
            let image = self
                .query(Cmd::new("docker").args(["inspect", "--format", "{{.Config.Image}}", &edge]))
                .unwrap_or_default();
            bail!(
                "the edge on {} ({image}) predates canaries; put crm-gdb_edge:0.4.0 in its compose.yaml and recreate the edge (docker compose -p {}-edge --profile edge up -d edge: a few seconds without service)",
                self.deployment.target().describe(),
                self.name()
            );
        }
        Ok(())
    }

    /// The canary the edge splits the requests with, if one is on: its color and share.
    pub fn canary(&self) -> Result<Option<(Color, Share)>> {
        let Some(edge) = self.edge()? else {
            return Ok(None);
        };
        if !self.remote().succeeds(canary::on_probe(&edge))? {
            return Ok(None);
        }
        let text = self.query(canary::read_split(&edge)).unwrap_or_default();
        Ok(canary::parse_split(&text).and_then(|(share, project)| {
            [Color::Blue, Color::Green]
                .into_iter()
                .find(|c| self.project(*c) == project)
                .map(|c| (c, share))
        }))
    }

    /// `10% to 1.4.0 (crm-green)` when a canary is on (for `status`).
    pub fn canary_summary(&self) -> Result<Option<String>> {
        let Some((color, share)) = self.canary()? else {
            return Ok(None);
        };
        let tag = self
            .image_of(color, "php")?
            .and_then(|image| crate::compose_file::release_of(&image))
            .unwrap_or_else(|| "?".into());
        Ok(Some(format!("{share} to {tag} ({})", self.project(color))))
    }

    /// The edge's container id; in a dry run a placeholder when none runs yet.
    pub fn running_edge(&self) -> Result<String> {
        match self
            .edge()?
            .or_else(|| self.remote().dry_run().then(|| "EDGE".to_string()))
        {
            Some(edge) => Ok(edge),
            None => bail!("the edge proxy is not running"),
        }
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

    /// Stops a color's worker and keeps its php and nginx running, idle: the standby a rollback
    /// switches back to. A cleanup, like [`Stack::remove`] which it replaces after a switch.
    pub fn park(&self, color: Color) -> Result<()> {
        self.remote()
            .cleanup(park_command(self.compose(&self.project(color))))
            .map(drop)
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
        self.remote().cleanup(
            self.compose(&project)
                .args(["up", "--detach"])
                .args(RELEASE_SERVICES),
        )?;
        if let Some(image) = self.image_of(color, "nginx")? {
            self.remote()
                .cleanup(asset_tool(self.name(), &image, BRIDGE_ASSETS))?;
        }
        Ok(())
    }

    /// Stops some services of a color (a standby replaced by the next deploy).
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
        let out = self.query(self.edge_port(80))?;
        out.rsplit(':')
            .next()
            .and_then(|p| p.trim().parse().ok())
            .with_context(|| format!("cannot read the edge's port from {out:?}"))
    }

    /// The host port the edge's `inner` port is published on; None when it is not published
    /// (an edge created from an older compose.yaml).
    pub fn published_port(&self, inner: u16) -> Result<Option<u16>> {
        let out = self.remote().output(self.edge_port(inner))?;
        let text = String::from_utf8_lossy(&out.stdout);
        Ok(out
            .status
            .success()
            .then(|| text.trim().rsplit(':').next()?.parse().ok())
            .flatten()
            .filter(|&p: &u16| p != 0))
    }

    fn edge_port(&self, inner: u16) -> Cmd {
        self.compose(&format!("{}-edge", self.name()))
            .args(["--profile", "edge", "port", "edge"])
            .arg(inner.to_string())
    }

    /// The last lines of a color's logs (printed when a release fails).
    pub fn logs(&self, color: Color) -> String {
        let cmd = self
            .compose(&self.project(color))
            .args(["logs", "--no-color", "--tail", "60"]);
        crate::progress::strip_escapes(&self.remote().cleanup(cmd).unwrap_or_default())
    }
}

/// A color kept for a rollback: its release, and whether its php and nginx run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Standby {
    pub release: Option<String>,
    pub serving_ready: bool,
}

/// From [`STANDBY_FORMAT`] lines: a [`Standby`] when its worker does not run (or, without a
/// worker, nothing runs); None when it does (a release starting or being drained is no standby).
fn standby_release(inspect: &str) -> Option<Standby> {
    let lines: Vec<Vec<&str>> = inspect
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.split_whitespace().collect())
        .collect();
    let stopped =
        |words: &&Vec<&str>| matches!(words.first(), Some(&("exited" | "created" | "dead")));
    fn service(name: &'static str) -> impl Fn(&&Vec<&str>) -> bool {
        move |words| words.get(2) == Some(&name)
    }
    let workers: Vec<&Vec<&str>> = lines.iter().filter(service("worker")).collect();
    let idle = if workers.is_empty() {
        lines.iter().all(|w| stopped(&w))
    } else {
        workers.iter().all(stopped)
    };
    if lines.is_empty() || !idle {
        return None;
    }
    let runs = |name: &'static str| {
        let of: Vec<&Vec<&str>> = lines.iter().filter(service(name)).collect();
        !of.is_empty() && of.iter().all(|w| w.first() == Some(&"running"))
    };
    let php = lines.iter().find(service("php")).and_then(|w| w.get(1));
    Some(Standby {
        release: php.and_then(|image| crate::compose_file::release_of(image)),
        serving_ready: runs("php") && runs("nginx"),
    })
}

/// `docker compose up` of the db project's one service, from `text` on stdin (see
/// [`Stack::ensure_db`]).
fn db_up(compose: Cmd, text: &str) -> Cmd {
    let mut cmd = compose;
    if let Some(at) = cmd.args.iter().position(|a| a == "--file") {
        cmd.args[at + 1] = "-".into();
    }
    cmd.args(["up", "--detach", db::SERVICE])
        .stdin(text.as_bytes().to_vec())
}

/// `docker compose up` of a color's worker alone: php and nginx, which answer requests, are
/// not touched (the worker depends on neither). The worker is created anew when compose.yaml
/// changed it: a standby of another release replaced by `up php nginx` still has its old
/// release's worker container, stopped.
fn start_worker_command(compose: Cmd) -> Cmd {
    compose.args(["up", "--detach", "--remove-orphans", "worker"])
}

/// The bridge option that sets the host address of the ports published by containers on a
/// network: how a Compose edge publishes on loopback only, as a swarm stack file (the same
/// compose.yaml) cannot name an address in `ports:`.
const HOST_BINDING: &str = "com.docker.network.bridge.host_binding_ipv4";

/// The address the edge publishes on: `HTTP_BIND=` of a `.env` text, else loopback.
pub fn edge_bind(env: &str) -> Result<std::net::Ipv4Addr> {
    let value = env
        .lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix("HTTP_BIND="))
        .map(|v| v.trim().trim_matches('"').trim_matches('\''));
    match value {
        None | Some("") => Ok(std::net::Ipv4Addr::LOCALHOST),
        Some(value) => value.parse().with_context(|| {
            format!("HTTP_BIND={value} in .env is no IPv4 address; give one, e.g. 0.0.0.0 for every interface")
        }),
    }
}

/// `docker network create` of the stack's database network (see `db.rs`).
pub fn db_network_create(network: &str) -> Cmd {
    Cmd::new("docker").args(["network", "create", network])
}

/// `docker network create` of the stack's edge network, its published ports bound to `bind`.
pub fn edge_network_create(network: &str, bind: std::net::Ipv4Addr) -> Cmd {
    Cmd::new("docker")
        .args(["network", "create", "--opt"])
        .arg(format!("{HOST_BINDING}={bind}"))
        .arg(network)
}

/// The address the network binds published ports to (fails when there is no such network).
pub fn edge_network_binding(network: &str) -> Cmd {
    Cmd::new("docker").args([
        "network",
        "inspect",
        "--format",
        &format!("{{{{index .Options \"{HOST_BINDING}\"}}}}"),
        network,
    ])
}

/// `docker compose stop` of a color's worker (its containers stay for a rollback; only the worker
/// would do work, on the shared data, for a release that no longer serves).
fn park_command(compose: Cmd) -> Cmd {
    compose.args(["stop", "--timeout", "10", "worker"])
}

/// How often the gate looks at a starting release over ssh (each look is several commands).
const POLL: Duration = Duration::from_millis(500);
/// How often it looks where the engine's API answers (a local target: a look is ~10 ms of
/// API calls plus the probes themselves).
const FAST_POLL: Duration = Duration::from_millis(100);
/// 5xx answers of /health in a row, once the app has answered at all, that make a release broken.
const HEALTH_5XX_LIMIT: u32 = 3;
/// How long a container may fail its own check, once the app answers /health, before the
/// release is broken: once php answers through nginx, php's own check (the same /health over
/// FastCGI) and nginx's pass at once, and the worker's is its running state.
const PROBE_FAILURE_FOR: Duration = Duration::from_millis(1500);
/// And at least this many failed looks in a row (a look that took long is still one look).
const PROBE_FAILURE_LOOKS: u32 = 3;

fn joined<T>(handle: std::thread::ScopedJoinHandle<'_, Result<T>>) -> Result<T> {
    handle
        .join()
        .unwrap_or_else(|_| Err(anyhow::anyhow!("internal: a probe panicked")))
}

/// What one look at a starting container found.
enum Look {
    /// Its state tells a certain failure.
    Failed(String),
    Checked {
        service: String,
        ready: bool,
    },
}

/// What the gate has seen so far of a starting release, to tell a slow start (wait, up to the
/// deadline) from a certain failure (stop now).
#[derive(Debug, Default)]
struct Watch {
    /// The app (php behind nginx) has answered /health at least once, whatever the status.
    answered: bool,
    health_5xx: u32,
    /// Each container's failed looks in a row since the app answered, and when the first was.
    failures: Vec<(String, u32, Option<Instant>)>,
}

impl Watch {
    /// One look at /health through the release's nginx (`None`: no answer from the app, e.g.
    /// nginx not up, or 502/504 while php starts). Returns why the release is broken, if it is.
    fn health(&mut self, status: Option<u16>) -> Option<String> {
        let status = status?;
        self.answered = true;
        if (500..600).contains(&status) {
            self.health_5xx += 1;
        } else {
            self.health_5xx = 0;
        }
        (self.health_5xx >= HEALTH_5XX_LIMIT)
            .then(|| format!("/health answered HTTP {status} {HEALTH_5XX_LIMIT} times in a row"))
    }

    /// One run, at `now`, of container `id`'s own check; true when its failures have become
    /// certain.
    fn probe(&mut self, id: &str, ready: bool, now: Instant) -> bool {
        let at = match self.failures.iter().position(|(i, _, _)| i == id) {
            Some(at) => at,
            None => {
                self.failures.push((id.to_string(), 0, None));
                self.failures.len() - 1
            }
        };
        let (_, count, since) = &mut self.failures[at];
        if ready || !self.answered {
            (*count, *since) = (0, None);
            return false;
        }
        *count += 1;
        let since = *since.get_or_insert(now);
        *count >= PROBE_FAILURE_LOOKS && now.duration_since(since) >= PROBE_FAILURE_FOR
    }
}

/// Why a container's state already tells a broken release: it stopped, it is being restarted
/// (or was: a crash loop), or the engine's own healthcheck gave up on it.
fn state_failure(status: &str, health: &str, restarts: u32) -> Option<String> {
    if status != "running" {
        return Some(format!("is {status} ({health})"));
    }
    if restarts > 0 {
        return Some(format!("restarted {restarts} time(s)"));
    }
    (health == "unhealthy").then(|| "is running (unhealthy)".to_string())
}

/// `/health` through a release's nginx, from inside it (its port is not published).
fn health_probe(nginx: &str) -> Cmd {
    Cmd::new("docker").args(["exec", nginx, "nginx-healthcheck", "/health"])
}

/// The status of the app's answer to [`health_probe`]: 200 on success, else the `HTTP NNN`
/// nginx-healthcheck prints; `None` when the app did not answer (no connection, or nginx's
/// own 502/504 while php is not reachable yet).
fn answered_status(success: bool, stderr: &str) -> Option<u16> {
    if success {
        return Some(200);
    }
    let status: u16 = stderr
        .lines()
        .find_map(|l| l.trim().strip_prefix("nginx-healthcheck: HTTP "))?
        .trim()
        .parse()
        .ok()?;
    (!matches!(status, 502 | 504)).then_some(status)
}

/// `docker exec` of a container's own healthcheck (`CMD` form). Not for the worker: its
/// healthcheck reads a stats file the old worker also writes; the worker is the container's
/// process, so a running container is a running worker (an exit shows as a restart, which the
/// state check catches). Releases built before base 0.5.0 run supervisord: the same holds.
fn ready_probe(id: &str, service: &str, healthcheck: &[&str]) -> Cmd {
    let mut cmd = Cmd::new("docker").args(["exec", id]);
    match (service, healthcheck) {
        ("worker", _) => cmd = cmd.arg("true"),
        (_, ["CMD", argv @ ..]) if !argv.is_empty() => cmd = cmd.args(argv.iter().copied()),
        // No healthcheck (or a shell one): running is ready.
        _ => cmd = cmd.arg("true"),
    }
    cmd
}

/// Points the edge container `edge` at `project`: new live.conf (written, then renamed), no
/// canary split any more, graceful reload. `nginx -s reload` parses the configuration first and
/// exits 1 without signalling on an error, so it is its own check (one `docker exec` less).
fn switch_commands(edge: &str, project: &str) -> [Cmd; 4] {
    let conf = format!("set $crm_live \"{project}:80\";\n");
    let [write, rename] = write_in_edge(edge, LIVE_CONF, conf);
    let [_, reload] = check_and_reload(edge);
    [write, rename, canary::clear_command(edge), reload]
}

/// Writes `bytes` to `path` in the edge container: beside it, then renamed over it, so nginx
/// never reads a half-written file.
pub fn write_in_edge(edge: &str, path: &str, bytes: String) -> [Cmd; 2] {
    let new = format!("{path}.new");
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
            .stdin(bytes),
        Cmd::new("docker").args(["exec", edge, "mv", "-f", &new, path]),
    ]
}

/// The edge's configuration check, then its graceful reload (old workers finish their requests).
pub fn check_and_reload(edge: &str) -> [Cmd; 2] {
    [
        Cmd::new("docker").args(["exec", edge, "nginx", "-t", "-q"]),
        Cmd::new("docker").args(["exec", edge, "nginx", "-s", "reload"]),
    ]
}

/// A throwaway container of the nginx image with the shared assets volume at /assets.
fn asset_tool(stack: &str, nginx_image: &str, argv: &[&str]) -> Cmd {
    // No network (a copy needs none, and attaching one is a good part of a start); labelled, so
    // that one a killed deploy left created, never started, is removed by the next (reconcile).
    Cmd::new("docker")
        .args(["run", "--rm", "--network", "none", "--user", "0:0"])
        .args(crate::docker::throwaway_label(stack))
        .args(["--entrypoint", argv[0], "--volume"])
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
        assert_eq!(
            cmd.env,
            [
                (
                    "CRM_DB_PASSWORD_FILE".to_string(),
                    "/srv/crm/.deploy/secrets/db_password".to_string()
                ),
                ("CRM_DB_BACKUPS".to_string(), "/srv/crm/backups".to_string()),
                ("CRM_STACK".to_string(), "crm".to_string())
            ]
        );
        assert_eq!(Color::Blue.other(), Color::Green);
        // The database: its own project, started from the file being deployed (on stdin).
        let up = db_up(stack.compose(&stack.db_project()), "services: {}\n");
        assert_eq!(
            up.argv(),
            [
                "docker",
                "compose",
                "--project-name",
                "crm-db",
                "--project-directory",
                "/srv/crm",
                "--file",
                "-",
                "up",
                "--detach",
                "db"
            ]
        );
        assert_eq!(up.stdin.as_deref(), Some(&b"services: {}\n"[..]));
        assert_eq!(
            db_network_create("crm_db").argv(),
            ["docker", "network", "create", "crm_db"]
        );
    }

    #[test]
    fn a_switch_rewrites_live_conf_then_reloads_gracefully() {
        let [write, rename, clear, reload] = switch_commands("e1", "crm-green");
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
        assert_eq!(clear.argv(), canary::clear_command("e1").argv());
        assert_eq!(
            reload.argv(),
            ["docker", "exec", "e1", "nginx", "-s", "reload"]
        );
    }

    #[test]
    fn a_slow_start_waits_and_a_certain_failure_stops_at_once() {
        let mut watch = Watch::default();
        let t0 = Instant::now();
        // Nothing answers yet (nginx down, or 502 while php starts): failing checks are a slow start.
        for _ in 0..20 {
            assert_eq!(
                watch.health(answered_status(false, "connect: Connection refused")),
                None
            );
            assert_eq!(
                watch.health(answered_status(false, "nginx-healthcheck: HTTP 502")),
                None
            );
            assert!(!watch.probe("php", false, t0));
        }
        assert!(!watch.answered);
        // The app answers: from now on failures count, for a while and a few looks.
        assert_eq!(watch.health(Some(200)), None);
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        assert!(!watch.probe("php", false, at(0)));
        assert!(!watch.probe("php", false, at(100)));
        assert!(!watch.probe("php", false, at(1400)), "not for long enough");
        assert!(
            !watch.probe("worker", false, at(1500)),
            "counted per container"
        );
        assert!(watch.probe("php", false, at(1500)));
        // A success resets the count.
        assert!(!watch.probe("worker", true, at(1600)));
        assert!(!watch.probe("worker", false, at(1700)));
        assert!(
            !watch.probe("worker", false, at(5000)),
            "two looks are not enough"
        );
        assert!(watch.probe("worker", false, at(5100)));
        // 5xx from the app, in a row.
        let mut watch = Watch::default();
        let mut said = None;
        for n in 1..=HEALTH_5XX_LIMIT {
            said = watch.health(answered_status(false, "nginx-healthcheck: HTTP 500\n"));
            assert_eq!(said.is_some(), n == HEALTH_5XX_LIMIT);
            if n == 1 {
                assert_eq!(watch.health(Some(200)), None, "a 200 in between resets");
                watch.health(Some(503));
            }
        }
        assert_eq!(said.unwrap(), "/health answered HTTP 500 3 times in a row");
    }

    #[test]
    fn container_states_that_are_certain_failures() {
        assert_eq!(state_failure("running", "starting", 0), None);
        assert_eq!(state_failure("running", "none", 0), None);
        assert_eq!(
            state_failure("exited", "unhealthy", 0).unwrap(),
            "is exited (unhealthy)"
        );
        assert_eq!(
            state_failure("restarting", "starting", 1).unwrap(),
            "is restarting (starting)"
        );
        assert_eq!(
            state_failure("running", "starting", 2).unwrap(),
            "restarted 2 time(s)"
        );
        assert_eq!(
            state_failure("running", "unhealthy", 0).unwrap(),
            "is running (unhealthy)"
        );
        assert_eq!(
            health_probe("c1").argv(),
            ["docker", "exec", "c1", "nginx-healthcheck", "/health"]
        );
        assert_eq!(answered_status(true, ""), Some(200));
        assert_eq!(
            answered_status(false, "nginx-healthcheck: HTTP 404"),
            Some(404)
        );
        assert_eq!(
            answered_status(false, ""),
            None,
            "an old nginx-healthcheck says nothing"
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
        assert_eq!(worker.argv(), ["docker", "exec", "w", "true"]);
        assert_eq!(
            ready_probe("n", "nginx", &["CMD-SHELL", "x"]).argv(),
            ["docker", "exec", "n", "true"]
        );
    }

    #[test]
    fn the_old_colors_worker_is_stopped_and_it_is_kept_as_the_standby() {
        let target = Target::new(None, "/srv/crm", None).unwrap();
        let runner = Runner::new(true, Verbosity::Quiet);
        let d = Deployment::new(&target, &runner, "crm");
        let stack = Stack::new(&d);
        assert_eq!(
            park_command(stack.compose(&stack.project(Color::Blue))).argv(),
            [
                "docker",
                "compose",
                "--project-name",
                "crm-blue",
                "--project-directory",
                "/srv/crm",
                "--file",
                "/srv/crm/compose.yaml",
                "stop",
                "--timeout",
                "10",
                "worker"
            ]
        );
        // Serving again: the worker starts, nothing that answers requests is named.
        let up = start_worker_command(stack.compose(&stack.project(Color::Blue)));
        let up = up.argv();
        assert_eq!(
            up[up.len() - 4..],
            ["up", "--detach", "--remove-orphans", "worker"]
        );
        let stopped = "exited r/crm-gdb_php:1.3.0 php\nexited r/crm-gdb_php:1.3.0-supervisor worker\nexited r/crm-gdb_nginx:1.3.0 nginx\n";
        let standby = |release: Option<&str>, serving_ready| {
            Some(Standby {
                release: release.map(String::from),
                serving_ready,
            })
        };
        assert_eq!(standby_release(stopped), standby(Some("1.3.0"), false));
        let parked = "running r/crm-gdb_php:1.3.0 php\nexited r/crm-gdb_php:1.3.0-supervisor worker\nrunning r/crm-gdb_nginx:1.3.0 nginx\n";
        assert_eq!(standby_release(parked), standby(Some("1.3.0"), true));
        let draining = parked.replacen("exited", "running", 1);
        assert_eq!(
            standby_release(&draining),
            None,
            "its worker runs: no standby"
        );
        assert_eq!(standby_release("created x worker\n"), standby(None, false));
        assert_eq!(standby_release("running x nginx\n"), None);
        assert_eq!(standby_release(""), None);
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
                "--network",
                "none",
                "--user",
                "0:0",
                "--label",
                "org.kiora.crm.throwaway=crm",
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

    #[test]
    fn the_edge_network_binds_the_published_ports_to_http_bind() {
        use std::net::Ipv4Addr;
        assert_eq!(edge_bind("").unwrap(), Ipv4Addr::LOCALHOST);
        assert_eq!(
            edge_bind("APP_SECRET=x\nHTTP_BIND=\n").unwrap(),
            Ipv4Addr::LOCALHOST
        );
        assert_eq!(
            edge_bind("HTTP_PORT=80\nHTTP_BIND=0.0.0.0\n").unwrap(),
            Ipv4Addr::UNSPECIFIED
        );
        assert_eq!(
            edge_bind("HTTP_BIND=\"10.0.0.2\"\n").unwrap(),
            Ipv4Addr::new(10, 0, 0, 2)
        );
        let err = edge_bind("HTTP_BIND=example.org\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("no IPv4 address"), "{err}");
        assert_eq!(
            edge_network_create("crm_edge", Ipv4Addr::LOCALHOST).argv(),
            [
                "docker",
                "network",
                "create",
                "--opt",
                "com.docker.network.bridge.host_binding_ipv4=127.0.0.1",
                "crm_edge"
            ]
        );
        assert_eq!(
            edge_network_binding("crm_edge").argv()[4],
            "{{index .Options \"com.docker.network.bridge.host_binding_ipv4\"}}"
        );
        // compose.yaml's edge names no address: the network's binding is the only one.
        let file = include_str!("../../../compose.yaml");
        assert!(!file.contains("host_ip"));
        assert!(file.contains("        published: ${HTTP_PORT:-8080}\n"));
    }
}
