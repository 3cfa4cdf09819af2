//! `logs` and `exec` on a swarm: `docker service logs` of the stack's services on the manager
//! (every task's lines, whatever node runs it), and a command in the container of a running
//! task, on the node that runs it (reached over ssh like the manager: same user, port and
//! ssh config, the node's swarm address as host).

use anyhow::{bail, Context, Result};

use crate::cmd::Cmd;
use crate::deploy::ops::{LogOptions, Service};
use crate::deploy::swarm::{node_inspect, service_tasks, Swarm};
use crate::deploy::target::Target;

/// `docker service logs` of one service of the stack.
pub fn service_logs(stack: &str, service: Service, options: &LogOptions) -> Cmd {
    let mut cmd = Cmd::new("docker").args(["service", "logs", "--no-trunc"]);
    if options.follow {
        cmd = cmd.arg("--follow");
    }
    if let Some(since) = &options.since {
        cmd = cmd.args(["--since", since.as_str()]);
    }
    if let Some(tail) = options.tail {
        cmd = cmd.args(["--tail", &tail.to_string()]);
    }
    cmd.arg(format!("{stack}_{}", service.name()))
}

/// The services whose logs are shown: those asked, else the release's (as on one host).
pub fn log_services(asked: &[Service]) -> Vec<Service> {
    if asked.is_empty() {
        vec![Service::Php, Service::Worker, Service::Nginx]
    } else {
        asked.to_vec()
    }
}

/// `docker inspect` of tasks: node id, state and container id. One line each.
pub fn task_containers(ids: &[String]) -> Cmd {
    Cmd::new("docker")
        .args([
            "inspect",
            "--format",
            "{{.NodeID}}\t{{.Status.State}}\t{{.Status.ContainerStatus.ContainerID}}",
        ])
        .args(ids)
}

/// From `task_containers` and `node_inspect` output: the address of a ready node and the
/// container of a running task there (the first one).
pub fn pick_task(tasks: &str, nodes: &str) -> Option<(String, String)> {
    tasks.lines().find_map(|task| {
        let t: Vec<&str> = task.split('\t').collect();
        let [node, "running", container] = t[..] else {
            return None;
        };
        (!container.is_empty()).then_some(())?;
        nodes.lines().find_map(|line| {
            let n: Vec<&str> = line.split('\t').collect();
            (n.len() == 3 && n[0] == node && n[1] == "ready")
                .then(|| (n[2].to_string(), container.to_string()))
        })
    })
}

/// `docker exec` of `argv` in `container` (`-i`/`-t` as asked), never through a shell.
pub fn exec_in(container: &str, interactive: bool, tty: bool, argv: &[String]) -> Cmd {
    let mut cmd = Cmd::new("docker").arg("exec");
    if interactive {
        cmd = cmd.arg("--interactive");
    }
    if tty {
        cmd = cmd.arg("--tty");
    }
    cmd.arg(container).args(argv.iter().cloned())
}

/// The manager's target with another host: the node at `addr`.
fn node_target(manager: &Target, addr: &str) -> Result<Target> {
    let Some(ssh) = &manager.ssh else {
        // A manager on this machine (`--swarm` without ssh): its nodes are not reached here.
        bail!("the swarm manager is this machine; run `docker exec` on node {addr} yourself");
    };
    let mut node = manager.clone();
    node.ssh = Some(crate::deploy::target::SshHost {
        host: addr.to_string(),
        ..ssh.clone()
    });
    Ok(node)
}

impl Swarm {
    /// The node (as a target) and container of a running task of `service`.
    pub fn task_container(&self, service: Service) -> Result<(Target, String)> {
        let split =
            |text: String| -> Vec<String> { text.split_whitespace().map(String::from).collect() };
        let task_ids = split(
            self.manager
                .query(service_tasks(&self.stack, service.name()))
                .with_context(|| {
                    format!(
                        "cannot list the tasks of {}_{} on the swarm manager",
                        self.stack,
                        service.name()
                    )
                })?,
        );
        if task_ids.is_empty() {
            bail!(
                "no task of {}_{} should be running: is the stack deployed (`status --env`)?",
                self.stack,
                service.name()
            );
        }
        let tasks = self.manager.query(task_containers(&task_ids))?;
        let node_ids = split(
            self.manager
                .query(Cmd::new("docker").args(["node", "ls", "-q"]))?,
        );
        let nodes = self.manager.query(node_inspect(&node_ids))?;
        let (addr, container) = pick_task(&tasks, &nodes).with_context(|| {
            format!(
                "no task of {}_{} is running on a ready node now; try again in a few seconds",
                self.stack,
                service.name()
            )
        })?;
        Ok((node_target(&self.manager.target, &addr)?, container))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_logs_of_the_stack() {
        let options = LogOptions {
            follow: true,
            since: Some("10m".parse().unwrap()),
            tail: Some(20),
        };
        assert_eq!(
            service_logs("crm", Service::Nginx, &options).argv(),
            [
                "docker",
                "service",
                "logs",
                "--no-trunc",
                "--follow",
                "--since",
                "10m",
                "--tail",
                "20",
                "crm_nginx"
            ]
        );
        assert_eq!(
            service_logs("crm", Service::Php, &LogOptions::default()).argv(),
            ["docker", "service", "logs", "--no-trunc", "crm_php"]
        );
        assert_eq!(
            log_services(&[]),
            [Service::Php, Service::Worker, Service::Nginx]
        );
        assert_eq!(log_services(&[Service::Edge]), [Service::Edge]);
    }

    #[test]
    fn a_running_task_on_a_ready_node() {
        let tasks = "n1\tshutdown\tc0\nn2\trunning\tc2\nn3\trunning\tc3";
        let nodes = "n1\tready\t10.0.0.1\nn2\tdown\t10.0.0.2\nn3\tready\t10.0.0.3";
        assert_eq!(
            pick_task(tasks, nodes),
            Some(("10.0.0.3".into(), "c3".into()))
        );
        assert_eq!(pick_task("n3\trunning\t", nodes), None);
        assert_eq!(pick_task(tasks, ""), None);
    }

    #[test]
    fn exec_keeps_every_argument_whole() {
        let argv = vec!["php".to_string(), "-r".into(), "echo 1; echo 2;".into()];
        assert_eq!(
            exec_in("c3", true, false, &argv).argv(),
            [
                "docker",
                "exec",
                "--interactive",
                "c3",
                "php",
                "-r",
                "echo 1; echo 2;"
            ]
        );
    }

    #[test]
    fn a_node_is_reached_like_the_manager() {
        let manager = Target::new(
            Some("deploy@10.0.0.1:2222"),
            "/",
            Some("/tmp/ssh_config".into()),
        )
        .unwrap();
        let node = node_target(&manager, "10.0.0.3").unwrap();
        let ssh = node.ssh.unwrap();
        assert_eq!(
            (ssh.user.as_deref(), ssh.host.as_str(), ssh.port),
            (Some("deploy"), "10.0.0.3", Some(2222))
        );
        assert_eq!(node.ssh_config, manager.ssh_config);
        assert!(node_target(&Target::new(None, "/", None).unwrap(), "10.0.0.3").is_err());
    }
}
