//! The database of a swarm stack: PostgreSQL (service `db` of compose.yaml, the image of
//! docker/db) pinned with its volume to the node labelled `org.kiora.crm.db=true`.
//!
//! - the deploy labels the manager's own node when no node carries the label yet, so the first
//!   deploy decides where the data lives and every later one keeps it there;
//! - backups are `pg_dump`s made by `docker exec` in the db task's container, on its node (the
//!   manager, or the node reached over ssh with the manager's user and ssh config), into the
//!   stack's `db-backups` volume beside the data; a restore is `pg_restore --clean` of one, in
//!   one transaction, while the app keeps serving.
//!
//! Commands are built by pure functions (unit-tested argv) and run by a [`Remote`].

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::cmd::Cmd;
use crate::deploy::remote::Remote;
use crate::deploy::swarm::Swarm;
use crate::deploy::target::Target;

use crate::deploy::db::{self, dumps_of, new_dump_name};
pub use crate::deploy::db::{image_tag, CLIENT_ENV, SERVICE};

/// The node label that pins db and its volume to one node.
pub const NODE_LABEL: &str = "org.kiora.crm.db";
/// How long db may take to run (its image pulled, its cluster created on a first start).
const READY_TIMEOUT: Duration = Duration::from_secs(180);

/// `docker node inspect` of the nodes: id and the value of the db label. One line each.
pub fn node_labels(ids: &[String]) -> Cmd {
    Cmd::new("docker")
        .args([
            "node",
            "inspect",
            "--format",
            &format!("{{{{.ID}}}}\t{{{{index .Spec.Labels \"{NODE_LABEL}\"}}}}"),
        ])
        .args(ids)
}

/// The id of the node the client talks to (the manager's own).
pub fn own_node() -> Cmd {
    Cmd::new("docker").args(["info", "--format", "{{.Swarm.NodeID}}"])
}

/// `docker node update --label-add org.kiora.crm.db=true NODE`.
pub fn label_node(id: &str) -> Cmd {
    Cmd::new("docker")
        .args(["node", "update", "--label-add"])
        .arg(format!("{NODE_LABEL}=true"))
        .arg(id)
}

/// The running container of the stack's db task on this node (empty when it is elsewhere).
pub fn container(stack: &str) -> Cmd {
    Cmd::new("docker").args([
        "ps",
        "--quiet",
        "--filter",
        &format!("label=com.docker.swarm.service.name={stack}_{SERVICE}"),
        "--filter",
        "status=running",
    ])
}

/// The node holding the label, from `node_labels` output.
pub fn labelled(lines: &str) -> Option<String> {
    lines.lines().find_map(|l| {
        let (id, value) = l.split_once('\t')?;
        (value.trim() == "true").then(|| id.to_string())
    })
}

/// The db task's container, and the remote that reaches its node.
pub struct Db {
    pub remote: Remote,
    pub container: String,
}

impl Swarm {
    /// Labels the manager's own node for db when no node carries the label yet.
    pub fn pin_db(&self) -> Result<()> {
        let ids: Vec<String> = self
            .manager
            .query(Cmd::new("docker").args(["node", "ls", "--quiet"]))
            .context("cannot list the swarm's nodes on the manager; is it a manager?")?
            .split_whitespace()
            .map(String::from)
            .collect();
        if ids.is_empty() && self.manager.dry_run() {
            return self.manager.run(label_node("<this node>"));
        }
        if labelled(&self.manager.query(node_labels(&ids))?).is_some() {
            return Ok(());
        }
        let own = self.manager.query(own_node())?;
        self.manager.run(label_node(&own))?;
        self.manager.say(format!(
            "db and its volume live on the manager's node {own} (label {NODE_LABEL}=true)"
        ));
        Ok(())
    }

    /// True when the stack has a db service.
    pub fn has_db(&self) -> Result<bool> {
        Ok(self.services()?.contains_key(SERVICE))
    }

    /// Waits until the db task runs (swarm counts it running once its health check passed).
    pub fn wait_for_db(&self) -> Result<()> {
        if self.manager.dry_run() {
            return Ok(());
        }
        let start = Instant::now();
        let mut said = false;
        while self.running_tasks(SERVICE)?.is_empty() {
            if start.elapsed() > READY_TIMEOUT {
                bail!(
                    "the database ({}_{SERVICE}) is not running after {}s; see `docker service ps --no-trunc {}_{SERVICE}` on the manager",
                    self.stack,
                    READY_TIMEOUT.as_secs(),
                    self.stack
                );
            }
            if !said {
                self.manager.say("waiting for the database to run");
                said = true;
            }
            std::thread::sleep(Duration::from_secs(1));
        }
        Ok(())
    }

    /// The db task's container and a remote on its node: the manager itself, or the node's
    /// address over ssh as the manager's user with its ssh config.
    pub fn db(&self) -> Result<Db> {
        let service = format!("{}_{SERVICE}", self.stack);
        let tasks = self.manager.query(Cmd::new("docker").args([
            "service",
            "ps",
            "--quiet",
            "--no-trunc",
            "--filter",
            "desired-state=running",
            &service,
        ]))?;
        let Some(task) = tasks.split_whitespace().next() else {
            bail!(
                "swarm stack {} runs no database task ({service}): nothing to back up or restore",
                self.stack
            );
        };
        let node = self.manager.query(Cmd::new("docker").args([
            "inspect",
            "--format",
            "{{.NodeID}}",
            task,
        ]))?;
        let remote = if node == self.manager.query(own_node())? {
            self.manager.clone()
        } else {
            let addr = self.manager.query(Cmd::new("docker").args([
                "node",
                "inspect",
                "--format",
                "{{.Status.Addr}}",
                &node,
            ]))?;
            let manager = &self.manager.target;
            let user = manager.ssh.as_ref().and_then(|s| s.user.clone());
            let spec = match user {
                Some(user) => format!("{user}@{addr}"),
                None => addr.clone(),
            };
            let target = Target::new(Some(&spec), "/", manager.ssh_config.clone())?;
            Remote::new(target, self.manager.runner)
        };
        let container = remote.query(container(&self.stack))?;
        let container = container.split_whitespace().next().map(String::from);
        let Some(container) = container else {
            bail!(
                "the database task of {service} is not running on its node ({}); see `docker service ps {service}` on the manager",
                remote.target.describe()
            );
        };
        Ok(Db { remote, container })
    }

    /// The dumps on db's node, oldest first.
    pub fn dumps(&self, db: &Db) -> Result<Vec<String>> {
        Ok(dumps_of(&db.remote.query(db::list(&db.container))?))
    }

    /// A dump of the database labelled `label`; the newest `keep` kept. Its name.
    pub fn backup_db(&self, db: &Db, label: &str, keep: usize) -> Result<String> {
        let name = new_dump_name(&self.dumps(db)?, label);
        for cmd in db::dump_commands(&db.container, &name) {
            db.remote
                .run(cmd)
                .context("dumping the database failed; nothing was changed")?;
        }
        let names = self.dumps(db)?;
        let old = names.len().saturating_sub(keep.max(1));
        if old > 0 {
            db.remote.run(db::remove(&db.container, &names[..old]))?;
        }
        Ok(name)
    }

    /// Puts the dump `name` back, after a safety dump of the database as it is. Returns the
    /// safety dump's name.
    pub fn restore_db(&self, db: &Db, name: &str) -> Result<String> {
        if !self.dumps(db)?.iter().any(|n| n == name) {
            bail!(
                "no dump {name} on the database's node ({}); `cargo xtask backup --env ...` lists them after each backup",
                db.remote.target.describe()
            );
        }
        let safety = self.backup_db(db, "before-restore", usize::MAX)?;
        db.remote.run(db::restore(&db.container, false, name)).with_context(|| {
            format!("restoring {name} failed; the database is as it was (pg_restore runs in one transaction; its state before is in {safety})")
        })?;
        Ok(safety)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_db_task_container_is_found_by_its_service_label() {
        assert_eq!(
            container("e2e").argv(),
            [
                "docker",
                "ps",
                "--quiet",
                "--filter",
                "label=com.docker.swarm.service.name=e2e_db",
                "--filter",
                "status=running"
            ]
        );
    }

    #[test]
    fn the_db_node_is_found_by_its_label() {
        assert_eq!(
            node_labels(&["n1".into()]).argv(),
            [
                "docker",
                "node",
                "inspect",
                "--format",
                "{{.ID}}\t{{index .Spec.Labels \"org.kiora.crm.db\"}}",
                "n1"
            ]
        );
        assert_eq!(labelled("n1\t\nn2\ttrue\n"), Some("n2".into()));
        assert_eq!(labelled("n1\t<no value>\nn2\tfalse\n"), None);
        assert_eq!(
            label_node("n2").argv(),
            [
                "docker",
                "node",
                "update",
                "--label-add",
                "org.kiora.crm.db=true",
                "n2"
            ]
        );
    }

    #[test]
    fn the_stack_file_pins_db_to_the_labelled_node() {
        let file = include_str!("../../../compose.yaml");
        assert!(file.contains(&format!("node.labels.{NODE_LABEL} == true")));
    }
}
