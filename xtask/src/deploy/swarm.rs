//! A release on a Docker Swarm: the project's one `compose.yaml` deployed as a stack from a
//! manager reached over ssh (or this machine), and the swarm's own rolling update watched until
//! it converges. The file serves Compose too: the release's tags are written in, and the
//! variables of [`SWARM_ENV`] turn on what only a swarm needs (its header lists them).
//!
//! 1. APP_SECRET and the database password become swarm secrets named after a fingerprint of
//!    their value (secrets are immutable: a new value is a new secret, the stack file names it),
//!    sent on stdin;
//! 2. the database (service db, see [`crate::deploy::swarm_db`]) pinned to a node; once it runs,
//!    a dump of it, then the release command (the migrations) in a throwaway container on the
//!    manager, on the database's network `STACK_db`, the password on its stdin. On the first
//!    deploy db comes with the stack, so the command runs once db answers, and php becomes
//!    healthy after it;
//! 3. the stack's edge and db networks made attachable overlays when missing (compose.yaml
//!    names them external, as the Compose projects share them), then
//!    `docker stack deploy -c - --prune --with-registry-auth STACK` with the file on stdin and
//!    the rest in variables (`env CRM_PREVIOUS=...`), so nothing is written on the manager;
//! 4. every service polled (`service ls`, `service inspect` UpdateStatus) until each one runs
//!    all its replicas and its update completed, or swarm rolled one back by itself
//!    (`failure_action: rollback`): then the stack is deployed again with the previous release,
//!    so no service stays on the new one, and the deploy fails;
//! 5. a per-service report: image tag, tasks running/desired, update state.
//!
//! Commands are built by pure functions (unit-tested argv) and run by the [`Remote`].

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::cmd::Cmd;
use crate::compose_file;
use crate::config::{APP_IMAGES, DB, EDGE};
use crate::deploy::release_command;
use crate::deploy::remote::Remote;
use crate::deploy::swarm_db;
use crate::secret::Secret;

/// The stack file, at the project root: the same one Compose runs.
pub const STACK_FILE: &str = "compose.yaml";

/// compose.yaml's variables on a swarm (unset, each one is what Compose needs; the file's
/// header says what each does). The stack's name, the release and the secrets' names come
/// with them ([`stack_deploy`]).
pub const SWARM_ENV: [(&str, &str); 11] = [
    ("CRM_SWARM", "true"),
    ("CRM_APP_SECRET_FILE", "/run/secrets/app_secret"),
    // Never APP_SECRET itself on a swarm (it would show in `docker inspect`): empty.
    ("APP_SECRET", ""),
    ("CRM_REPLICAS", "2"),
    ("CRM_DB_DATA", "db"),
    ("CRM_DB_BACKUPS", "db-backups"),
    ("CRM_NETWORK_DRIVER", "overlay"),
    ("CRM_DRAIN_SIGNAL", "SIGWINCH"),
    ("CRM_DRAIN_GRACE", "20s"),
    ("CRM_HEALTH_INTERVAL", "3s"),
    ("CRM_RESTART_CONDITION", "any"),
];

/// Where APP_SECRET and the database password come from for a swarm deploy when no env file
/// is given (never passed on to a child).
pub use crate::secret::{APP_SECRET_ENV, DB_PASSWORD_ENV};

/// How long the services may take to converge, by default.
pub const TIMEOUT: Duration = Duration::from_secs(300);

/// The service whose image names the release (and whose labels keep the previous one).
const RELEASE_SERVICE: &str = "php";

/// The secrets of a swarm stack: made swarm secrets, never written on a node.
#[derive(Clone, Debug)]
pub struct Secrets {
    pub app: Secret,
    /// The database password: db's superuser's (set when its cluster is created), php's.
    pub db: Secret,
}

/// What a swarm deploy needs: where the manager is, the stack, the file and the secret.
#[derive(Clone, Debug)]
pub struct Swarm {
    pub manager: Remote,
    pub stack: String,
    /// Registry and namespace of the images (written in the file per deploy).
    pub registry: String,
    /// The text of compose.yaml, as it is in the tree (tags written in per deploy).
    pub file: String,
    /// The edge's published port on every node (`HTTP_PORT`), when not the file's default.
    pub http_port: Option<u16>,
    /// How long the services may take to converge.
    pub timeout: Duration,
}

/// One service as `docker service ls` and `service inspect` show it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Service {
    /// Without the stack prefix: `php`, `nginx`...
    pub name: String,
    pub running: u32,
    pub desired: u32,
    /// The release tag of its image (`1.4.0`, `1.4.0-supervisor`, `0.2.0` for the edge).
    pub tag: String,
    /// UpdateStatus.State: `updating`, `completed`, `rollback_completed`..., empty when none.
    pub state: String,
    pub started_at: String,
    pub message: String,
    /// Label org.kiora.crm.previous (the release before this one), empty when none.
    pub previous: String,
}

impl Service {
    fn rolled_back(&self) -> bool {
        self.state.starts_with("rollback")
    }

    /// An update or a rollback of swarm's still replaces its tasks.
    fn moving(&self) -> bool {
        self.state == "updating" || self.state == "rollback_started"
    }
}

/// The name of the swarm secret holding `value`: the same value, the same name (a deploy that
/// changes nothing updates nothing); a new value, a new secret. The fingerprint is a 64-bit hash,
/// not the value, and only tells two values apart.
pub fn secret_name(stack: &str, what: &str, value: &Secret) -> String {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    ("xtask-swarm-secret", stack, what, value.expose()).hash(&mut hasher);
    format!("{stack}_{what}_{:016x}", hasher.finish())
}

/// `docker secret inspect NAME`: exit 0 when it exists.
pub fn secret_exists(name: &str) -> Cmd {
    Cmd::new("docker").args(["secret", "inspect", "--format", "{{.ID}}", name])
}

/// `docker secret create NAME -` with the value on stdin (never on a command line).
pub fn secret_create(stack: &str, name: &str, value: &Secret) -> Cmd {
    Cmd::new("docker")
        .args(["secret", "create", "--label"])
        .arg(format!("com.docker.stack.namespace={stack}"))
        .args([name, "-"])
        .stdin(value.expose().as_bytes().to_vec())
}

/// The names of the swarm secrets of a deploy.
struct SecretNames {
    app: String,
    db: String,
}

/// The release's stack file: compose.yaml with the php and nginx images named
/// `registry/...:tag`, and the pinned edge and db images (their own tags) under `registry`.
pub fn stack_text(file: &str, registry: &str, tag: &str) -> Result<String> {
    let fail =
        |err: compose_file::EditError| anyhow::anyhow!("cannot write {tag} in {STACK_FILE}: {err}");
    let (mut text, _) =
        compose_file::set_release(file, Some(registry), tag, &APP_IMAGES).map_err(fail)?;
    for pinned in [EDGE, DB] {
        let reference = compose_file::app_references(&text, &[pinned])
            .map_err(fail)?
            .remove(0);
        let own_tag = reference
            .rsplit_once(':')
            .map(|(_, t)| t.to_string())
            .with_context(|| format!("{STACK_FILE}: {reference} has no tag"))?;
        text = compose_file::set_release(&text, Some(registry), &own_tag, &[pinned])
            .map_err(fail)?
            .0;
    }
    Ok(text)
}

/// `docker network create` of the stack's edge network (compose.yaml's external `edge`): an
/// attachable overlay, so that the services of every node join it.
pub fn edge_network_create(stack: &str) -> Cmd {
    overlay_create(stack, &edge_network(stack))
}

/// The same for the database's network (compose.yaml's external `db`): php, worker, db and
/// the release command's container on the manager.
pub fn db_network_create(stack: &str) -> Cmd {
    overlay_create(stack, &crate::deploy::db::network(stack))
}

fn overlay_create(stack: &str, network: &str) -> Cmd {
    Cmd::new("docker")
        .args([
            "network",
            "create",
            "--driver",
            "overlay",
            "--attachable",
            "--label",
        ])
        .arg(format!("com.docker.stack.namespace={stack}"))
        .arg(network)
}

/// `docker service inspect` printing the ids of the networks a service's tasks join.
pub fn service_networks(service: &str) -> Cmd {
    Cmd::new("docker").args([
        "service",
        "inspect",
        "--format",
        "{{range .Spec.TaskTemplate.Networks}}{{.Target}} {{end}}",
        service,
    ])
}

/// The name of the stack's edge network (compose.yaml: `${CRM_STACK}_edge`).
pub fn edge_network(stack: &str) -> String {
    format!("{stack}_edge")
}

/// The variables the stack file reads.
pub struct Release<'a> {
    pub tag: &'a str,
    pub previous: &'a str,
    /// The names of the swarm secrets of APP_SECRET and the database password.
    pub secret: &'a str,
    pub db_secret: &'a str,
}

/// `env CRM_...=... docker stack deploy -c - --prune --with-registry-auth STACK`, the release's
/// file on stdin. `--with-registry-auth` sends the manager client's login (if any) to the
/// nodes, so they can pull from a private registry.
pub fn stack_deploy(swarm: &Swarm, release: &Release) -> Result<Cmd> {
    let text = stack_text(&swarm.file, &swarm.registry, release.tag)?;
    let mut cmd = Cmd::new("docker")
        .args([
            "stack",
            "deploy",
            "--compose-file",
            "-",
            "--prune",
            "--with-registry-auth",
        ])
        .arg(&swarm.stack)
        .env("CRM_STACK", &swarm.stack)
        .env("COMPOSE_PROJECT_NAME", &swarm.stack)
        .env("CRM_PREVIOUS", release.previous)
        .env("CRM_APP_SECRET", release.secret)
        .env("CRM_DB_PASSWORD", release.db_secret);
    for (key, value) in SWARM_ENV {
        cmd = cmd.env(key, value);
    }
    if let Some(port) = swarm.http_port {
        cmd = cmd.env("HTTP_PORT", port.to_string());
    }
    Ok(cmd.stdin(text.into_bytes()))
}

/// `docker service ls` of the stack: name, replicas (`2/2`), image.
pub fn service_ls(stack: &str) -> Cmd {
    Cmd::new("docker").args([
        "service",
        "ls",
        "--filter",
        &format!("label=com.docker.stack.namespace={stack}"),
        "--format",
        "{{.Name}}\t{{.Replicas}}\t{{.Image}}",
    ])
}

/// `docker service inspect` of the services: name, update state, when it started, its message,
/// the previous-release label. One line each.
pub fn service_inspect(names: &[String]) -> Cmd {
    Cmd::new("docker")
        .args([
            "service",
            "inspect",
            "--format",
            "{{.Spec.Name}}\t{{if .UpdateStatus}}{{.UpdateStatus.State}}\t{{.UpdateStatus.StartedAt}}\t{{.UpdateStatus.Message}}{{else}}\t\t{{end}}\t{{index .Spec.Labels \"org.kiora.crm.previous\"}}",
        ])
        .args(names)
}

/// `docker node inspect` of the nodes: id, state (`ready`, `down`), address. One line each.
pub fn node_inspect(ids: &[String]) -> Cmd {
    Cmd::new("docker")
        .args([
            "node",
            "inspect",
            "--format",
            "{{.ID}}\t{{.Status.State}}\t{{.Status.Addr}}",
        ])
        .args(ids)
}

/// The tasks of a service that should run: `docker service ps -q --no-trunc`.
pub fn service_tasks(stack: &str, service: &str) -> Cmd {
    Cmd::new("docker").args([
        "service",
        "ps",
        "--quiet",
        "--no-trunc",
        "--filter",
        "desired-state=running",
        &format!("{stack}_{service}"),
    ])
}

/// `docker inspect` of tasks: node id and state. One line each.
pub fn task_inspect(ids: &[String]) -> Cmd {
    Cmd::new("docker")
        .args(["inspect", "--format", "{{.NodeID}}\t{{.Status.State}}"])
        .args(ids)
}

/// From `node_inspect` and `task_inspect` output: the addresses of the ready nodes running a
/// task (one entry per running task).
pub fn running_on_ready_nodes(nodes: &str, tasks: &str) -> Vec<String> {
    let ready: BTreeMap<&str, &str> = nodes
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (f.len() == 3 && f[1] == "ready").then(|| (f[0], f[2]))
        })
        .collect();
    tasks
        .lines()
        .filter_map(|l| {
            let (node, state) = l.split_once('\t')?;
            (state.trim() == "running")
                .then(|| ready.get(node).map(|a| a.to_string()))
                .flatten()
        })
        .collect()
}

/// The release tag in an image reference: `reg:5000/ns/crm-gdb_php:1.4.0@sha256:..` -> `1.4.0`.
pub fn tag_of(image: &str) -> String {
    let image = image.split('@').next().unwrap_or(image);
    match image.rfind(':') {
        Some(i) if !image[i..].contains('/') => image[i + 1..].to_string(),
        _ => String::new(),
    }
}

/// The services of `docker service ls` and `service inspect` output, by short name.
pub fn parse_services(stack: &str, ls: &str, inspect: &str) -> BTreeMap<String, Service> {
    let short = |name: &str| {
        name.strip_prefix(&format!("{stack}_"))
            .unwrap_or(name)
            .to_string()
    };
    let mut out = BTreeMap::new();
    for line in ls.lines().filter(|l| !l.trim().is_empty()) {
        let f: Vec<&str> = line.split('\t').collect();
        let (running, desired) = f
            .get(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|r| r.split_once('/'))
            .map(|(a, b)| (a.parse().unwrap_or(0), b.parse().unwrap_or(0)))
            .unwrap_or((0, 0));
        let name = short(f[0]);
        out.insert(
            name.clone(),
            Service {
                name,
                running,
                desired,
                tag: tag_of(f.get(2).copied().unwrap_or_default()),
                ..Service::default()
            },
        );
    }
    for line in inspect.lines().filter(|l| !l.trim().is_empty()) {
        let f: Vec<&str> = line.split('\t').collect();
        if let Some(s) = out.get_mut(&short(f[0])) {
            let field = |i: usize| f.get(i).map(|v| v.trim().to_string()).unwrap_or_default();
            s.state = field(1);
            s.started_at = field(2);
            s.message = field(3);
            s.previous = field(4).replace("<no value>", "");
        }
    }
    out
}

/// Where the stack stands, against what the services were before the deploy.
#[derive(Debug, PartialEq, Eq)]
pub enum Convergence {
    /// Every service runs all its replicas and no update is under way.
    Done,
    /// Swarm rolled these services back (their update failed); it is over when none is still
    /// rolling back.
    RolledBack {
        services: Vec<String>,
        over: bool,
    },
    Waiting(String),
}

/// Decides from `now` and `before` (the services before the deploy; empty on the first one)
/// and the tags each service must run now.
pub fn convergence(
    before: &BTreeMap<String, Service>,
    now: &BTreeMap<String, Service>,
    wanted: &BTreeMap<String, String>,
) -> Convergence {
    let fresh = |s: &Service| before.get(&s.name).map(|b| &b.started_at) != Some(&s.started_at);
    let rolled: Vec<&Service> = now
        .values()
        .filter(|s| fresh(s) && s.rolled_back())
        .collect();
    if !rolled.is_empty() {
        // Over once every service is still: the others may be mid-update (or rolling back
        // by themselves), and putting the live release back must not race with swarm.
        let over = rolled
            .iter()
            .all(|s| s.state == "rollback_completed" || s.state == "rollback_paused")
            && now.values().all(|s| s.running >= s.desired && !s.moving());
        return Convergence::RolledBack {
            services: rolled.iter().map(|s| s.name.clone()).collect(),
            over,
        };
    }
    for (name, tag) in wanted {
        let Some(s) = now.get(name) else {
            return Convergence::Waiting(format!("{name} not created yet"));
        };
        let changed = before.get(name).is_some_and(|b| &b.tag != tag);
        if changed && !fresh(s) {
            return Convergence::Waiting(format!("{name}: update not started"));
        }
        if s.state == "paused" && fresh(s) {
            return Convergence::RolledBack {
                services: vec![format!("{name} (update paused: {})", s.message)],
                over: true,
            };
        }
        if s.state == "updating" {
            return Convergence::Waiting(format!("{name}: {}", s.state));
        }
        if s.running < s.desired || s.desired == 0 {
            return Convergence::Waiting(format!("{name}: {}/{} running", s.running, s.desired));
        }
    }
    Convergence::Done
}

/// Every wanted service runs its wanted tag, at full strength, with no update under way.
pub fn runs(now: &BTreeMap<String, Service>, wanted: &BTreeMap<String, String>) -> bool {
    wanted.iter().all(|(name, tag)| {
        now.get(name)
            .is_some_and(|s| &s.tag == tag && s.running >= s.desired && !s.moving())
    })
}

/// The per-service report lines.
pub fn report(services: &BTreeMap<String, Service>) -> Vec<String> {
    let mut lines = vec![format!(
        "{:<10} {:<22} {:<9} {}",
        "service", "release", "tasks", "update"
    )];
    for s in services.values() {
        let update = match (s.state.as_str(), s.message.as_str()) {
            ("", _) => "-".to_string(),
            (state, "") => state.to_string(),
            (state, message) => format!("{state} ({message})"),
        };
        lines.push(format!(
            "{:<10} {:<22} {:<9} {update}",
            s.name,
            s.tag,
            format!("{}/{}", s.running, s.desired)
        ));
    }
    lines
}

impl Swarm {
    /// The services of the stack now (empty before the first deploy).
    pub fn services(&self) -> Result<BTreeMap<String, Service>> {
        let ls = self
            .manager
            .query(service_ls(&self.stack))
            .context("cannot list the stack's services on the swarm manager; is it a manager (`docker node ls` there)?")?;
        let names: Vec<String> = ls
            .lines()
            .filter_map(|l| l.split('\t').next())
            .filter(|n| !n.is_empty())
            .map(String::from)
            .collect();
        let inspect = if names.is_empty() {
            String::new()
        } else {
            self.manager.query(service_inspect(&names))?
        };
        Ok(parse_services(&self.stack, &ls, &inspect))
    }

    /// The addresses of the ready nodes that run a task of `service` (one per running task): a
    /// task on a node that went down is not counted, even before swarm notices.
    pub fn running_tasks(&self, service: &str) -> Result<Vec<String>> {
        let split =
            |text: String| -> Vec<String> { text.split_whitespace().map(String::from).collect() };
        let node_ids = split(
            self.manager
                .query(Cmd::new("docker").args(["node", "ls", "-q"]))?,
        );
        let nodes = self.manager.query(node_inspect(&node_ids))?;
        let task_ids = split(self.manager.query(service_tasks(&self.stack, service))?);
        if task_ids.is_empty() {
            return Ok(Vec::new());
        }
        let tasks = self.manager.query(task_inspect(&task_ids))?;
        Ok(running_on_ready_nodes(&nodes, &tasks))
    }

    /// The release the stack runs now (the php service's tag), if any.
    pub fn live(&self) -> Result<Option<(String, String)>> {
        Ok(self
            .services()?
            .remove(RELEASE_SERVICE)
            .map(|s| (s.tag, s.previous)))
    }

    /// The swarm secret `what` (app_secret, db_password) holding `value`, made when missing;
    /// its name.
    fn secret(&self, what: &str, value: &Secret) -> Result<String> {
        let name = secret_name(&self.stack, what, value);
        if !self.manager.succeeds(secret_exists(&name))? {
            self.manager
                .run(secret_create(&self.stack, &name, value))
                .with_context(|| format!("cannot create the swarm secret for {what}"))?;
        }
        Ok(name)
    }

    fn wanted(&self, tag: &str) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("php".to_string(), tag.to_string()),
            ("worker".to_string(), format!("{tag}-supervisor")),
            ("nginx".to_string(), tag.to_string()),
        ])
    }

    /// `docker stack deploy` of `tag`.
    fn stack_deploy(&self, tag: &str, previous: &str, names: &SecretNames) -> Result<()> {
        let cmd = stack_deploy(
            self,
            &Release {
                tag,
                previous,
                secret: &names.app,
                db_secret: &names.db,
            },
        )?;
        self.manager
            .run(cmd)
            .with_context(|| format!("docker stack deploy of {tag} failed on the manager"))
    }

    /// The stack's edge and db networks, made on the manager when missing (once, like the
    /// secrets).
    fn ensure_networks(&self) -> Result<()> {
        for (network, create) in [
            (edge_network(&self.stack), edge_network_create(&self.stack)),
            (
                crate::deploy::db::network(&self.stack),
                db_network_create(&self.stack),
            ),
        ] {
            if !self
                .manager
                .succeeds(Cmd::new("docker").args(["network", "inspect", &network]))?
            {
                self.manager
                    .run(create)
                    .with_context(|| format!("cannot create the overlay network {network}"))?;
            }
        }
        Ok(())
    }

    /// Deploys `tag` and waits; `Ok(true)` converged, `Ok(false)` swarm rolled back.
    fn deploy_and_wait(
        &self,
        tag: &str,
        previous: &str,
        names: &SecretNames,
        rolled_back: &mut Vec<String>,
    ) -> Result<bool> {
        let before = self.services()?;
        self.stack_deploy(tag, previous, names)?;
        self.wait(tag, &before, rolled_back)
    }

    /// Waits until the services run `tag` (`Ok(true)`), or swarm rolled one back (`Ok(false)`).
    fn wait(
        &self,
        tag: &str,
        before: &BTreeMap<String, Service>,
        rolled_back: &mut Vec<String>,
    ) -> Result<bool> {
        if self.manager.dry_run() {
            return Ok(true);
        }
        let wanted = self.wanted(tag);
        let start = Instant::now();
        let mut last = String::new();
        loop {
            let now = self.services()?;
            match convergence(before, &now, &wanted) {
                Convergence::Done => return Ok(true),
                Convergence::RolledBack { services, over } => {
                    if over {
                        *rolled_back = services;
                        return Ok(false);
                    }
                    let line = format!("swarm is rolling back {}", services.join(", "));
                    if line != last {
                        self.manager.say(&line);
                        last = line;
                    }
                }
                Convergence::Waiting(why) => {
                    if why != last {
                        self.manager.say(format!("waiting: {why}"));
                        last = why;
                    }
                }
            }
            if start.elapsed() > self.timeout {
                for line in report(&now) {
                    self.manager.say(line);
                }
                bail!(
                    "the swarm did not converge on {tag} within {}s ({last}); see `docker service ps {}_{RELEASE_SERVICE}` on the manager",
                    self.timeout.as_secs(),
                    self.stack
                );
            }
            std::thread::sleep(Duration::from_millis(1000));
        }
    }

    /// The network the release command reaches db on: `STACK_db`, unless the running db task
    /// predates it (a stack deployed before db had its own network, which this deploy's stack
    /// update moves it to): then the stack's default network, where it still is.
    fn db_reachable_on(&self) -> Result<String> {
        let network = crate::deploy::db::network(&self.stack);
        if self.manager.dry_run() {
            return Ok(network);
        }
        let attached = self.manager.output(service_networks(&format!(
            "{}_{}",
            self.stack,
            swarm_db::SERVICE
        )))?;
        let id = self.manager.query(
            Cmd::new("docker").args(["network", "inspect", "--format", "{{.Id}}", &network]),
        )?;
        let attached = String::from_utf8_lossy(&attached.stdout);
        // No db service yet (the first deploy makes it with the new spec): its own network.
        // The spec names the network by id (by name where a client kept it).
        let joined = attached.split_whitespace().any(|n| n == id || n == network);
        if !attached.trim().is_empty() && !joined {
            return Ok(format!("{}_default", self.stack));
        }
        Ok(network)
    }

    /// The release's command (its migrations), once, before any task of the release starts: on
    /// the manager, in a container on the stack's network that reaches db. A failure stops the
    /// deploy there, the live release untouched.
    fn release_command(&self, tag: &str, db_password: &Secret) -> Result<()> {
        let image = format!("{}/{}:{tag}", self.registry, crate::config::PHP);
        self.manager
            .run(Cmd::new("docker").args(["pull", "--quiet", &image]))
            .with_context(|| format!("pulling {image} on the manager"))?;
        self.manager
            .say(format!("Running the release command of {tag}"));
        let network = self.db_reachable_on()?;
        let stack = release_command::Stack {
            name: &self.stack,
            db: release_command::Server {
                network: &network,
                env: &swarm_db::CLIENT_ENV,
                password: release_command::Password::Stdin(db_password),
            },
            // No .env on a swarm node: the command gets the database password on its stdin.
            env_file: None,
            data: None,
        };
        release_command::run_on(&self.manager, &stack, &image, tag, None)
    }

    /// Puts `tag` on the swarm. When swarm rolls a service back, the whole stack goes back to
    /// the release it ran before, and this fails saying so.
    pub fn deploy(&self, tag: &str, secrets: &Secrets) -> Result<()> {
        let start = Instant::now();
        let live = self.live()?;
        let (live_tag, live_previous) = live.clone().unwrap_or_default();
        self.manager.say(format!(
            "Deploying {tag} to swarm stack {} ({}; live: {})",
            self.stack,
            self.manager.target.describe(),
            if live_tag.is_empty() {
                "nothing"
            } else {
                &live_tag
            }
        ));
        let names = SecretNames {
            app: self.secret("app_secret", &secrets.app)?,
            db: self.secret("db_password", &secrets.db)?,
        };
        self.pin_db()?;
        self.ensure_networks()?;
        let previous = if live_tag == tag {
            live_previous.clone()
        } else {
            live_tag.clone()
        };
        let mut rolled_back = Vec::new();
        let converged = if self.has_db()? {
            self.wait_for_db()?;
            if !self.manager.dry_run() {
                let db = self.db()?;
                let label = if live_tag.is_empty() {
                    "none"
                } else {
                    &live_tag
                };
                let dump = self.backup_db(&db, label, crate::config::DEFAULT_KEEP_BACKUPS)?;
                self.manager
                    .say(format!("backed up the database to {dump} on its node"));
            }
            self.release_command(tag, &secrets.db)?;
            self.deploy_and_wait(tag, &previous, &names, &mut rolled_back)?
        } else {
            // The first deploy (or the first with a database): db comes with the stack, the
            // migrations run once it answers, and php's tasks become healthy after them.
            let before = self.services()?;
            self.stack_deploy(tag, &previous, &names)?;
            self.wait_for_db()?;
            self.release_command(tag, &secrets.db)?;
            self.wait(tag, &before, &mut rolled_back)?
        };
        if converged {
            for line in report(&self.services()?) {
                self.manager.say(line);
            }
            self.manager.say(format!(
                "Swarm stack {} runs {tag} ({}s)",
                self.stack,
                start.elapsed().as_secs()
            ));
            return Ok(());
        }
        self.manager.say(format!(
            "swarm rolled back {}: the update to {tag} failed",
            rolled_back.join(", ")
        ));
        if live_tag.is_empty() {
            bail!(
                "swarm rolled back {} on the first deploy of {tag}; see `docker service ps --no-trunc {}_{RELEASE_SERVICE}` on the manager",
                rolled_back.join(", "),
                self.stack
            );
        }
        // Services that did update would stay on the new release: the whole stack goes back.
        let mut again = Vec::new();
        let put_back = self.deploy_and_wait(&live_tag, &live_previous, &names, &mut again)?;
        let now = self.services()?;
        // A service swarm rolled back by itself meanwhile is back on the live release too.
        let back = put_back || runs(&now, &self.wanted(&live_tag));
        for line in report(&now) {
            self.manager.say(line);
        }
        if back {
            bail!(
                "swarm rolled back {} (the update to {tag} failed); every service is back on {live_tag}",
                rolled_back.join(", ")
            )
        }
        bail!(
            "swarm rolled back {} (the update to {tag} failed), and putting {live_tag} back on every service failed too ({}); check `docker stack ps {}` on the manager",
            rolled_back.join(", "),
            again.join(", "),
            self.stack
        )
    }

    /// Back to `to`, else the release deployed before the live one.
    pub fn rollback(&self, to: Option<&str>, secrets: &Secrets) -> Result<()> {
        let Some((live, previous)) = self.live()? else {
            bail!(
                "nothing is deployed on swarm stack {}: nothing to roll back",
                self.stack
            );
        };
        let to = match to {
            Some(to) => to.to_string(),
            None if previous.is_empty() => bail!(
                "swarm stack {} runs {live} and has no previous release: give --to TAG",
                self.stack
            ),
            None => previous,
        };
        self.deploy(&to, secrets)
    }

    /// Per-service lines; an error when a service is short of replicas or was rolled back.
    pub fn status(&self) -> Result<()> {
        let services = self.services()?;
        println!(
            "swarm stack {} on {}",
            self.stack,
            self.manager.target.describe()
        );
        if services.is_empty() {
            println!("nothing deployed yet");
            return Ok(());
        }
        for line in report(&services) {
            println!("{line}");
        }
        let short: Vec<String> = services
            .values()
            .filter(|s| s.running < s.desired)
            .map(|s| format!("{} ({}/{})", s.name, s.running, s.desired))
            .collect();
        if !short.is_empty() {
            bail!(
                "swarm stack {}: {} short of replicas",
                self.stack,
                short.join(", ")
            );
        }
        Ok(())
    }
}

/// The swarm's secrets: APP_SECRET from `XTASK_APP_SECRET`, else the `APP_SECRET=` line of
/// `env_file` (a file on this machine, such as the environment's `env_file:`); the database
/// password from `XTASK_DB_PASSWORD`, else its `DB_PASSWORD=` line.
pub fn secrets(env_file: Option<&std::path::Path>) -> Result<Secrets> {
    Ok(Secrets {
        app: secret_from(env_file, APP_SECRET_ENV, "APP_SECRET")?,
        db: secret_from(env_file, DB_PASSWORD_ENV, "DB_PASSWORD")?,
    })
}

/// The value of `var`, else of the `key=` line of `env_file`; at least 16 characters.
fn secret_from(env_file: Option<&std::path::Path>, var: &str, key: &str) -> Result<Secret> {
    if let Ok(value) = std::env::var(var) {
        if !value.is_empty() {
            return Ok(Secret::new(value));
        }
    }
    let Some(file) = env_file else {
        bail!("no {key} for the swarm: set {var}, or `env_file:` in the environment (a file on this machine with a {key}= line)");
    };
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("cannot read {} (the swarm's {key})", file.display()))?;
    let prefix = format!("{key}=");
    text.lines()
        .find_map(|l| l.trim().strip_prefix(&prefix))
        .map(|v| Secret::new(v.trim().trim_matches('"')))
        .filter(|s| s.expose().len() >= 16)
        .with_context(|| {
            format!(
                "{}: no {key}= line of at least 16 characters",
                file.display()
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::Runner;
    use crate::deploy::target::Target;
    use crate::progress::Verbosity;

    const COMPOSE_YAML: &str = include_str!("../../../compose.yaml");

    fn swarm() -> Swarm {
        Swarm {
            manager: Remote::new(
                Target::new(Some("root@10.0.0.1"), "/", None).unwrap(),
                Runner::new(true, Verbosity::Quiet),
            ),
            stack: "crm".into(),
            registry: "127.0.0.1:5000/kiora".into(),
            file: COMPOSE_YAML.into(),
            http_port: Some(8080),
            timeout: Duration::from_secs(60),
        }
    }

    #[test]
    fn the_stack_is_deployed_from_stdin_with_the_release_written_in() {
        let s = swarm();
        let cmd = stack_deploy(
            &s,
            &Release {
                tag: "1.2.0",
                previous: "1.1.0",
                secret: "crm_app_secret_ab",
                db_secret: "crm_db_password_cd",
            },
        )
        .unwrap();
        assert_eq!(
            cmd.argv(),
            [
                "docker",
                "stack",
                "deploy",
                "--compose-file",
                "-",
                "--prune",
                "--with-registry-auth",
                "crm"
            ]
        );
        let text = String::from_utf8(cmd.stdin.clone().unwrap()).unwrap();
        for image in [
            "image: 127.0.0.1:5000/kiora/crm-gdb_php:1.2.0\n",
            "image: 127.0.0.1:5000/kiora/crm-gdb_php:1.2.0-supervisor\n",
            "image: 127.0.0.1:5000/kiora/crm-gdb_nginx:1.2.0\n",
            "image: 127.0.0.1:5000/kiora/crm-gdb_edge:0.5.0\n",
            "image: 127.0.0.1:5000/kiora/crm-gdb_db:0.6.0\n",
        ] {
            assert!(text.contains(image), "{image}");
        }
        assert!(!text.contains("registry.kiora.tech"));
        let remote = s.manager.cmd(cmd).argv().join(" ");
        assert!(
            remote.contains("-- env CRM_STACK=crm COMPOSE_PROJECT_NAME=crm CRM_PREVIOUS=1.1.0 CRM_APP_SECRET=crm_app_secret_ab CRM_DB_PASSWORD=crm_db_password_cd CRM_SWARM=true "),
            "{remote}"
        );
        assert!(
            remote.ends_with(" CRM_DRAIN_GRACE=20s CRM_HEALTH_INTERVAL=3s CRM_RESTART_CONDITION=any HTTP_PORT=8080 docker stack deploy --compose-file - --prune --with-registry-auth crm"),
            "{remote}"
        );
        // Every variable set here is one the file reads.
        for (key, _) in SWARM_ENV {
            assert!(
                COMPOSE_YAML.contains(&format!("${{{key}:-")),
                "compose.yaml does not read {key}"
            );
        }
        let bad = Release {
            tag: "no tag",
            previous: "",
            secret: "a",
            db_secret: "b",
        };
        assert!(stack_deploy(&s, &bad).is_err());
    }

    #[test]
    fn the_edge_network_is_an_attachable_overlay_of_the_stack() {
        assert_eq!(
            edge_network_create("crm").argv(),
            [
                "docker",
                "network",
                "create",
                "--driver",
                "overlay",
                "--attachable",
                "--label",
                "com.docker.stack.namespace=crm",
                "crm_edge"
            ]
        );
        assert!(COMPOSE_YAML.contains("    name: ${CRM_STACK:-crm}_edge\n    external: true\n"));
        assert_eq!(
            db_network_create("crm").argv().last().copied(),
            Some("crm_db")
        );
        assert_eq!(
            service_networks("crm_db").argv(),
            [
                "docker",
                "service",
                "inspect",
                "--format",
                "{{range .Spec.TaskTemplate.Networks}}{{.Target}} {{end}}",
                "crm_db"
            ]
        );
    }

    #[test]
    fn secrets_go_on_stdin_under_a_name_that_follows_the_value() {
        let a = Secret::new("a-long-enough-secret-1");
        let name = secret_name("crm", "app_secret", &a);
        assert!(
            name.starts_with("crm_app_secret_") && name.len() == 31,
            "{name}"
        );
        assert_eq!(name, secret_name("crm", "app_secret", &a));
        assert_ne!(
            name,
            secret_name("crm", "app_secret", &Secret::new("a-long-enough-secret-2"))
        );
        let cmd = secret_create("crm", &name, &a);
        assert_eq!(
            cmd.argv(),
            [
                "docker",
                "secret",
                "create",
                "--label",
                "com.docker.stack.namespace=crm",
                &name,
                "-"
            ]
        );
        assert!(!cmd.argv().join(" ").contains("a-long-enough"));
        assert_eq!(cmd.stdin.as_deref(), Some(a.expose().as_bytes()));
    }

    #[test]
    fn tags_are_read_from_resolved_image_references() {
        assert_eq!(
            tag_of("127.0.0.1:5000/kiora/crm-gdb_php:1.4.0@sha256:abc"),
            "1.4.0"
        );
        assert_eq!(
            tag_of("reg/crm-gdb_php:1.4.0-supervisor"),
            "1.4.0-supervisor"
        );
        assert_eq!(tag_of("127.0.0.1:5000/kiora/crm-gdb_php"), "");
    }

    const LS: &str = "crm_php\t2/2\t127.0.0.1:5000/kiora/crm-gdb_php:b@sha256:1\ncrm_worker\t1/1\tr/crm-gdb_php:b-supervisor\ncrm_nginx\t1/2\tr/crm-gdb_nginx:b\ncrm_edge\t3/3 (max 1 per node)\tr/crm-gdb_edge:0.2.0\n";

    fn parsed(ls: &str, inspect: &str) -> BTreeMap<String, Service> {
        parse_services("crm", ls, inspect)
    }

    #[test]
    fn services_are_parsed_from_ls_and_inspect() {
        let s = parsed(
            LS,
            "crm_php\tupdating\t2026-12-01 10:00:00\tupdate in progress\ta\ncrm_edge\t\t\t\t<no value>\n",
        );
        assert_eq!(s.len(), 4);
        let php = &s["php"];
        assert_eq!((php.running, php.desired, php.tag.as_str()), (2, 2, "b"));
        assert_eq!(
            (php.state.as_str(), php.previous.as_str()),
            ("updating", "a")
        );
        assert_eq!((s["edge"].running, s["edge"].desired), (3, 3));
        assert_eq!(s["edge"].previous, "");
        assert_eq!(s["nginx"].running, 1);
    }

    fn wanted(tag: &str) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("php".into(), tag.into()),
            ("worker".into(), format!("{tag}-supervisor")),
            ("nginx".into(), tag.into()),
        ])
    }

    #[test]
    fn convergence_waits_for_updates_to_start_and_finish() {
        let before = parsed(&LS.replace(":b", ":a"), "crm_php\tcompleted\tT0\t\t\n");
        // Right after `stack deploy`: the old tasks still run, no update started yet.
        let now = parsed(
            &LS.replace("1/2", "2/2").replace(":b", ":a"),
            "crm_php\tcompleted\tT0\t\t\n",
        );
        assert!(matches!(
            convergence(&before, &now, &wanted("b")),
            Convergence::Waiting(_)
        ));
        let updating = parsed(
            &LS.replace("1/2", "2/2"),
            "crm_php\tupdating\tT1\t\t\ncrm_worker\tcompleted\tT1\t\t\ncrm_nginx\tcompleted\tT1\t\t\n",
        );
        assert!(matches!(
            convergence(&before, &updating, &wanted("b")),
            Convergence::Waiting(w) if w.contains("php: updating")
        ));
        let inspect = "crm_php\tcompleted\tT1\t\t\ncrm_worker\tcompleted\tT1\t\t\ncrm_nginx\tcompleted\tT1\t\t\n";
        let short = parsed(LS, inspect);
        assert!(matches!(
            convergence(&before, &short, &wanted("b")),
            Convergence::Waiting(w) if w.contains("nginx: 1/2")
        ));
        let done = parsed(&LS.replace("1/2", "2/2"), inspect);
        assert_eq!(convergence(&before, &done, &wanted("b")), Convergence::Done);
        // The first deploy: no service before, none has an update status.
        let first = parsed(&LS.replace("1/2", "2/2"), "");
        assert_eq!(
            convergence(&BTreeMap::new(), &first, &wanted("b")),
            Convergence::Done
        );
    }

    #[test]
    fn a_rollback_by_swarm_is_seen_and_an_old_one_is_not() {
        let before = parsed(LS, "crm_php\trollback_completed\tT0\t\t\n");
        let same = parsed(
            &LS.replace("1/2", "2/2"),
            "crm_php\trollback_completed\tT0\t\t\n",
        );
        assert_eq!(
            convergence(&before, &same, &wanted("b")),
            Convergence::Done,
            "a rollback of an earlier deploy is not this one's"
        );
        let rolling = parsed(
            &LS.replace(":b", ":c"),
            "crm_php\trollback_started\tT1\t\t\n",
        );
        assert_eq!(
            convergence(&before, &rolling, &wanted("c")),
            Convergence::RolledBack {
                services: vec!["php".into()],
                over: false
            }
        );
        let over = parsed(
            &LS.replace("1/2", "2/2"),
            "crm_php\trollback_completed\tT1\trollback completed\t\n",
        );
        assert_eq!(
            convergence(&before, &over, &wanted("c")),
            Convergence::RolledBack {
                services: vec!["php".into()],
                over: true
            }
        );
    }

    #[test]
    fn a_rollback_is_over_once_no_other_service_moves() {
        let before = parsed(
            LS,
            "crm_php\tcompleted\tT0\t\t\ncrm_worker\tcompleted\tT0\t\t\n",
        );
        let worker_back_php_updating = parsed(
            &LS.replace("1/2", "2/2"),
            "crm_php\tupdating\tT1\t\t\ncrm_worker\trollback_completed\tT1\t\t\n",
        );
        assert_eq!(
            convergence(&before, &worker_back_php_updating, &wanted("c")),
            Convergence::RolledBack {
                services: vec!["worker".into()],
                over: false
            }
        );
        let still = parsed(
            &LS.replace("1/2", "2/2"),
            "crm_php\trollback_completed\tT1\t\t\ncrm_worker\trollback_completed\tT1\t\t\n",
        );
        assert!(matches!(
            convergence(&before, &still, &wanted("c")),
            Convergence::RolledBack { over: true, .. }
        ));
    }

    #[test]
    fn runs_needs_every_tag_full_strength_and_no_update() {
        let done = parsed(
            &LS.replace("1/2", "2/2"),
            "crm_php\trollback_completed\tT1\t\t\n",
        );
        assert!(runs(&done, &wanted("b")));
        assert!(!runs(&done, &wanted("c")));
        let short = parsed(LS, "crm_php\trollback_completed\tT1\t\t\n");
        assert!(!runs(&short, &wanted("b")));
        let moving = parsed(
            &LS.replace("1/2", "2/2"),
            "crm_php\trollback_started\tT1\t\t\n",
        );
        assert!(!runs(&moving, &wanted("b")));
    }

    #[test]
    fn tasks_count_on_ready_nodes_only() {
        let nodes = "n1\tready\t10.0.0.11\nn2\tdown\t10.0.0.12\nn3\tready\t10.0.0.13\n";
        let tasks = "n1\trunning\nn2\trunning\nn3\tstarting\nn3\trunning\n";
        assert_eq!(
            running_on_ready_nodes(nodes, tasks),
            ["10.0.0.11", "10.0.0.13"]
        );
        assert_eq!(
            service_tasks("crm", "nginx").argv(),
            [
                "docker",
                "service",
                "ps",
                "--quiet",
                "--no-trunc",
                "--filter",
                "desired-state=running",
                "crm_nginx"
            ]
        );
    }

    #[test]
    fn the_report_has_one_line_per_service() {
        let s = parsed(LS, "crm_php\tcompleted\tT1\t\t\n");
        let lines = report(&s);
        assert_eq!(lines.len(), 5);
        assert!(lines[0].starts_with("service"));
        assert!(
            lines.iter().any(|l| l.starts_with("php")
                && l.contains(" b ")
                && l.contains("2/2")
                && l.ends_with("completed")),
            "{lines:?}"
        );
        assert!(lines
            .iter()
            .any(|l| l.starts_with("nginx") && l.contains("1/2")));
    }

    #[test]
    fn the_app_secret_comes_from_the_env_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("swarm.env");
        std::fs::write(
            &file,
            "# x\nAPP_SECRET=0123456789abcdef01\nDB_PASSWORD=\"fedcba9876543210fe\"\n",
        )
        .unwrap();
        if std::env::var(APP_SECRET_ENV).is_err() && std::env::var(DB_PASSWORD_ENV).is_err() {
            let s = secrets(Some(&file)).unwrap();
            assert_eq!(s.app.expose(), "0123456789abcdef01");
            assert_eq!(s.db.expose(), "fedcba9876543210fe");
            std::fs::write(&file, "APP_SECRET=0123456789abcdef01\nDB_PASSWORD=short\n").unwrap();
            let err = secrets(Some(&file)).unwrap_err().to_string();
            assert!(err.contains("no DB_PASSWORD= line"), "{err}");
            assert!(secrets(None).is_err());
        }
    }
}
